#!/usr/bin/env python3
"""Transformers references for edge-level attention knockout: tests/data/<family>/knockout_ref.npz.

The HF model of each multimodal fixture is rebuilt exactly as tools/refs/ablation.py does (and
checked against the committed ref.npz), then run with a patched eager attention that adds −inf
at the blocked (head, query, key) entries before the softmax (`tools.refs.ablation.Knockout`
with an explicit edge mask). Everything about *which* edges are blocked is computed here, from
the HF inputs, without corehead:

- visual positions: `ref.npz` `visual_positions` (one image per fixture); its span = [first, last + 1);
- "last": the last prompt position; "question": the prompt tokens whose decoded text overlaps
  the last occurrence of QUESTION in the concatenation of every token's decoded text;
- default knockout ("queries after the image"): the visual keys blocked for every query at or
  after the image's end (image -> image and the text before the image untouched);
- presets (Zhang et al., CVPR 2025): Image->Question = question queries x visual keys,
  Image->Last = last x visual, Question->Last = last x question; all heads of a window of layers
  around layer l: [max(0, l - w // 2), min(L, l - w // 2 + w)), for w in WINDOWS.

Keys:
- `after_heads` [2, 2], `after_logits_all` [T, V], `after_attn_all` [L, H, T, T], `after_empty_rows`;
- `question_positions`, `windows` (= WINDOWS), `preset_names`;
- `flow_logits_last` [n_presets, n_windows, L, V]: last-row logits with preset p blocked in the
  window of size windows[w] around layer l; `base_logits_last` [V].

    nice -n 10 python -m tools.refs.knockout                # every multimodal family
    nice -n 10 python -m tools.refs.knockout llava gemma3vl
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tools.fixtures import VISION_FAMILIES, check_families
from tools.fixtures import common as C
from tools.refs.ablation import REBUILD_TOL, Knockout, in_work_dir, maxdiff, rebuild, run, save_refs, text_attn_modules

QUESTION = "What is this?"
PRESETS = [("Image->Question", "question", "image"), ("Image->Last", "last", "image"),
           ("Question->Last", "last", "question")]
WINDOWS = [1, 9]


def question_positions(tok, ids) -> np.ndarray:
    """Tokens whose decoded text overlaps the last occurrence of QUESTION in the decoded prompt."""
    pieces = [tok.decode([int(i)]) for i in ids]
    text = "".join(pieces)
    start = text.rfind(QUESTION)
    assert start >= 0, (QUESTION, text[:300])
    end = start + len(QUESTION)
    out, at = [], 0
    for j, p in enumerate(pieces):
        a, b = at, at + len(p)
        at = b
        if a < end and b > start and p:
            out.append(j)
    return np.array(out, dtype=np.int64)


def window(layer: int, w: int, n_layer: int) -> range:
    lo = max(0, layer - w // 2)
    return range(lo, min(n_layer, layer - w // 2 + w))


def make_refs(family: str, data, work, log) -> dict:
    ref = np.load(data / family / "ref.npz")
    toks: list = []
    model, inputs, _, _ = rebuild(family, work, toks)
    n_layer = len(text_attn_modules(model))
    n_head = int(model.config.get_text_config().num_attention_heads)
    ids = inputs["input_ids"][0].numpy()
    assert np.array_equal(ids, ref["prompt_ids"]), f"{family}: prompt_ids differ"
    base_logits, base_att = run(model, inputs, attentions=True)  # eager attention, as ref.npz
    d = maxdiff(base_logits, ref["logits_all"])
    # The committed fixtures were rebuilt bit-exactly on the machine that made them; on another
    # CPU, BLAS rounding (amplified by llava's / gemma3vl's f16 emulation) moves logits a little,
    # so the rebuild is accepted within 1e-3 of the logits' scale (the tests' tolerance) and logged.
    scale = float(np.abs(ref["logits_all"]).max())
    log(f"[{family}] rebuild vs ref.npz: max|logits diff| {d:.3g} (scale {scale:.3g})")
    assert d <= max(REBUILD_TOL, 1e-3 * scale), d
    n = len(ids)
    vis = ref["visual_positions"].astype(np.int64)
    end = int(vis.max()) + 1
    r: dict = {}

    # --- the default knockout: the queries after the image lose the visual keys ---
    block = np.zeros((n, n), bool)
    block[end:, vis] = True
    kheads = [(0, 1), (n_layer - 1, 0)]
    with Knockout(model, kheads, [], block=block) as ko:
        lg, att = run(model, inputs, attentions=True)
    for layer, h in kheads:
        assert float(att[layer, h][end:][:, vis].max()) == 0.0
        # image -> image and the text before the image keep their attention in layer 0
        if layer == 0:
            assert maxdiff(att[0, h][:end], base_att[0, h][:end]) == 0.0
    eff = maxdiff(lg, base_logits)
    log(f"[{family}] knockout after the image {kheads}: |Δ logits| {eff:.3g}, empty rows {sorted(ko.empty)}")
    assert eff > 1e-5
    r["after_heads"] = np.array(kheads, dtype=np.int32)
    r["after_logits_all"] = lg
    r["after_attn_all"] = att
    r["after_empty_rows"] = np.array(sorted(ko.empty), dtype=np.int32).reshape(-1, 3)

    # --- presets over windows of layers ---
    q = question_positions(toks[-1], ids)
    assert len(q) and q.min() >= end and q.max() < n - 1, (q, end, n)
    log(f"[{family}] question positions {q.tolist()} (image {int(vis.min())}..{end - 1}, last {n - 1})")
    span = {"image": vis, "question": q, "last": np.array([n - 1])}
    flow = np.zeros((len(PRESETS), len(WINDOWS), n_layer, base_logits.shape[1]), np.float32)
    for p, (name, qs, ks) in enumerate(PRESETS):
        block = np.zeros((n, n), bool)
        block[np.ix_(span[qs], span[ks])] = True
        for wi, w in enumerate(WINDOWS):
            for layer in range(n_layer):
                heads = [(li, h) for li in window(layer, w, n_layer) for h in range(n_head)]
                with Knockout(model, heads, [], block=block) as ko:
                    lg, _ = run(model, inputs, attentions=True)
                assert not ko.empty, (name, ko.empty)  # every blocked query keeps some key
                flow[p, wi, layer] = lg[-1]
        log(f"[{family}] {name}: |Δ last logits| per layer (w=1) "
            f"{[round(maxdiff(flow[p, 0, li], base_logits[-1]), 5) for li in range(n_layer)]}")
    r["question_positions"] = q
    r["windows"] = np.array(WINDOWS, dtype=np.int32)
    r["preset_names"] = np.array([p[0] for p in PRESETS])
    r["flow_logits_last"] = flow
    r["base_logits_last"] = base_logits[-1].astype(np.float32)
    for k, v in r.items():
        if v.dtype.kind == "f":
            assert v.dtype == np.float32 and np.isfinite(v).all(), k
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {VISION_FAMILIES}")
    ap.add_argument("--data", default=str(C.REPO / "tests" / "data"))
    ap.add_argument("--dry-run", action="store_true", help="verify and compute, write nothing")
    args = ap.parse_args()
    from pathlib import Path

    data = Path(args.data)
    C.deterministic_torch()
    fams = check_families(ap, args.families) if args.families else list(VISION_FAMILIES)
    for f in fams:
        if f not in VISION_FAMILIES:
            ap.error(f"{f} is not a multimodal family")
        r = in_work_dir(f, "ko", lambda work, f=f: make_refs(f, data, work, lambda s: print(s, flush=True)))
        if not args.dry_run:
            save_refs(f, data / f / "knockout_ref.npz", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
