#!/usr/bin/env python3
"""Transformers references for the zero-ablation of Gated DeltaNet value heads (Qwen3.5 fixtures:
qwen35, qwen35moe): tests/data/<family>/deltanet_ablation_ref.npz. Nothing else is written.

The HF model is rebuilt from the fixture recipe (tools.refs.ablation.rebuild, checked against the
committed ref.npz). A value head v of a DeltaNet layer (transformers' numbering, grouped: v reads
key head v // (value heads / key heads)) is ablated by a forward pre-hook on that layer's
`linear_attn.out_proj` zeroing the slice [v*d, (v+1)*d) of its input, i.e. of `core_attn_out`
after the gated RMSNorm (`self.norm(core_attn_out, z)`); the same result with those out_proj weight
columns zeroed is checked here. f32 eager, no cache (every forward from the start).

Keys, for each set S in (A, B):
  S_heads             int32 [n, 2]  (layer, value head)
  S_text_logits_all   f32 [17, vocab]  ref.npz's `text_` prompt, every position
  S_text_greedy_ids   int32 [16]  greedy continuation of that prompt (argmax, full recompute each
                      step, no EOS stop), ablated throughout
  S_mm_logits_last    f32 [vocab]  the multimodal prompt (image), last position

    nice -n 10 python -m tools.refs.deltanet [qwen35 qwen35moe]
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

import numpy as np

from tools.fixtures import check_families
from tools.fixtures import common as C
from tools.refs.ablation import in_work_dir, maxdiff, rebuild, run, save_refs, zeroed_head_columns

FAMILIES = ("qwen35", "qwen35moe")
# A: one value head whose file index differs (transformers 1 -> tiled 2 with 2 key / 4 value heads);
# B: several layers, two heads of one layer, both key groups.
SETS = {"A": [(0, 1)], "B": [(1, 2), (2, 0), (2, 3), (5, 1)]}
N_GREEDY = 16
REBUILD_REL = 5e-5


def deltanet_modules(model) -> dict:
    """{layer: linear_attn module} of the language model's Gated DeltaNet layers."""
    import re

    found = {}
    for name, mod in model.named_modules():
        if "vision" in name or "visual" in name:
            continue
        m = re.search(r"layers\.(\d+)\.linear_attn$", name)
        if m:
            found[int(m.group(1))] = mod
    assert found
    return found


@contextmanager
def zero_value_heads(model, heads):
    mods = deltanet_modules(model)
    handles = []
    for layer in sorted({la for la, _ in heads}):
        mod = mods[layer]
        d = mod.head_v_dim
        vs = [v for la, v in heads if la == layer]

        def pre(_m, args, vs=vs, d=d):
            x = args[0].clone()
            for v in vs:
                x[..., v * d:(v + 1) * d] = 0
            return (x,) + tuple(args[1:])

        handles.append(mod.out_proj.register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def greedy(model, ids: list[int], n: int) -> list[int]:
    import torch

    ids = list(ids)
    out = []
    for _ in range(n):
        t = torch.tensor([ids])
        lg, _ = run(model, {"input_ids": t, "attention_mask": torch.ones_like(t)})
        nxt = int(lg[-1].argmax())
        out.append(nxt)
        ids.append(nxt)
    return out


def make(family: str, data, work, log) -> dict:
    import torch

    ref = np.load(data / family / "ref.npz")
    model, inputs, _, _ = rebuild(family, work)
    base_mm, _ = run(model, inputs)
    d = maxdiff(base_mm, ref["logits_all"])
    ids = torch.tensor([ref["text_prompt_ids"].tolist()])
    text = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    base_text, _ = run(model, text)
    d = max(d, maxdiff(base_text, ref["text_logits_all"]))
    # Relative: the committed ref.npz may come from another CPU / torch build, whose f32 rounding
    # differs (4.3e-4 of logits up to ~35 measured on a 2-core x86 box); a different model would be off by >> 1e-2.
    scale = float(np.abs(ref["logits_all"]).max())
    log(f"[{family}] rebuild vs ref.npz: {d:.3g} (logits up to {scale:.3g})")
    assert d <= REBUILD_REL * scale, d
    assert greedy(model, ref["text_prompt_ids"].tolist(), N_GREEDY) == ref["text_greedy_ids"].tolist()
    mods = deltanet_modules(model)
    out: dict = {}
    for key, heads in SETS.items():
        assert all(la in mods and 0 <= v < mods[la].num_v_heads for la, v in heads), heads
        with zero_value_heads(model, heads):
            lg, _ = run(model, text)
            mm, _ = run(model, inputs)
            gids = greedy(model, ref["text_prompt_ids"].tolist(), N_GREEDY)
        # The same ablation as zeroed out_proj columns: the hook zeroes what we mean it to.
        with zeroed_head_columns({la: mods[la].out_proj for la, _ in heads}, heads, lambda la: mods[la].head_v_dim):
            lg2, _ = run(model, text)
        assert maxdiff(run(model, text)[0], base_text) == 0.0
        log(f"[{family}] {key} {heads}: |d text vs base| {maxdiff(lg, base_text):.3g}, "
            f"|d mm last vs base| {maxdiff(mm[-1], base_mm[-1]):.3g}, hook vs zeroed weights {maxdiff(lg, lg2):.3g}, "
            f"greedy changed at {[i for i, (a, b) in enumerate(zip(gids, ref['text_greedy_ids'])) if a != b][:3]}")
        assert maxdiff(lg, lg2) < 1e-5 and maxdiff(lg, base_text) > 1e-2
        out[key + "_heads"] = np.array(heads, np.int32)
        out[key + "_text_logits_all"] = lg
        out[key + "_text_greedy_ids"] = np.array(gids, np.int32)
        out[key + "_mm_logits_last"] = mm[-1]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {list(FAMILIES)}")
    ap.add_argument("--dry-run", action="store_true", help="verify and compute, write nothing")
    args = ap.parse_args()
    C.deterministic_torch()
    data = C.REPO / "tests" / "data"
    for fam in check_families(ap, args.families, FAMILIES):
        r = in_work_dir(fam, "deltanet", lambda work, f=fam: make(f, data, work, lambda s: print(s, flush=True)))
        if not args.dry_run:
            save_refs(fam, data / fam / "deltanet_ablation_ref.npz", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
