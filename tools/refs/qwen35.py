#!/usr/bin/env python3
"""Transformers references for the heads of the hybrid Qwen3.5 fixtures (qwen35, qwen35moe):
tests/data/<family>/heads_ref.npz and sparse_ref.npz.

A Qwen3.5 head is a head of one of its full-attention layers (3 and 7 in the fixture); the Gated
DeltaNet layers have none. Heads are named by their model layer, (3, h) or (7, h). The HF model is
rebuilt from the fixture recipe (tools.refs.ablation.rebuild; checked against the committed
ref.npz), then on the multimodal prompt:

- zero ablation (`zeroA`, `zeroB`): head h's slice of the o_proj input, which in Qwen3.5 is the
  gated attention output (attention · sigmoid(gate)), set to 0 by a forward pre-hook; the same
  result with the o_proj weight columns zeroed is checked here;
- mean ablation (`mean`): head (3, 1)'s o_proj input replaced by its mean over every position of
  ref.npz's two text prompts;
- knockout as the literature defines it (`after`): for the heads, -inf on the visual keys of
  every query at or after the image's end (tools.refs.ablation.Knockout with an edge mask);
- the edge-knockout preset Image->Last (`image_last_logits_last`, one row per attention layer):
  every head of that layer, the last query blocked from the visual keys;
- CoRe-sparse (sparse_ref.npz, the keys of tools/refs/sparse.py): CoRe KV head (i + 1) % n_kv in
  the i-th attention layer, sink 4: every query head of the other KV heads blocked from the
  queries after each visual run to that run's keys; `core_kv` has one entry per attention layer,
  `knocked` holds model layers.

    nice -n 10 python -m tools.refs.qwen35 [qwen35 qwen35moe]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tools.fixtures import check_families
from tools.fixtures import common as C
from tools.refs.ablation import (
    REBUILD_TOL,
    Knockout,
    capture_hooks,
    in_work_dir,
    maxdiff,
    mean_hooks,
    rebuild,
    run,
    save_refs,
    text_attn_layers,
    text_attn_modules,
    zero_hooks,
)

FAMILIES = ("qwen35", "qwen35moe")
SINK = 4


def make(family: str, data, work, log) -> tuple[dict, dict]:
    import torch

    ref = np.load(data / family / "ref.npz")
    model, inputs, _, _ = rebuild(family, work)
    assert np.array_equal(inputs["input_ids"][0].numpy(), ref["prompt_ids"])
    base, att = run(model, inputs, attentions=True)
    d = max(maxdiff(base, ref["logits_all"]), maxdiff(att, ref["attn_all"]))
    log(f"[{family}] rebuild vs ref.npz: {d:.3g}")
    assert d <= REBUILD_TOL, d
    layers = text_attn_layers(model)  # model layer of each attention module
    order = {layer: i for i, layer in enumerate(layers)}
    attn = text_attn_modules(model)
    cfg = model.config.get_text_config()
    n_head, n_kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    n = int(ref["prompt_ids"].shape[0])
    vis = ref["visual_positions"].astype(np.int64)
    end = int(vis.max()) + 1
    heads_ref: dict = {"attention_layers": np.array(layers, np.int32)}

    # zero ablation; zero_hooks takes attention-module indices
    last = layers[-1]
    for key, heads in {"zeroA": [(last, 1)], "zeroB": [(layers[0], 0), (layers[0], 3), (last, 2)]}.items():
        with zero_hooks(model, [(order[la], h) for la, h in heads]):
            lg, _ = run(model, inputs)
        saved = {}
        with torch.no_grad():
            for la, h in heads:
                w = attn[order[la]].o_proj.weight
                saved.setdefault(la, w.detach().clone())
                w[:, h * hd:(h + 1) * hd] = 0
        lg2, _ = run(model, inputs)
        with torch.no_grad():
            for la, w0 in saved.items():
                attn[order[la]].o_proj.weight.copy_(w0)
        assert maxdiff(run(model, inputs)[0], base) == 0.0
        log(f"[{family}] {key} {heads}: |d vs base| {maxdiff(lg, base):.3g}, "
            f"hook vs zeroed weights {maxdiff(lg, lg2):.3g}")
        assert maxdiff(lg, lg2) < 1e-5 and maxdiff(lg, base) > 1e-4
        heads_ref[key + "_heads"] = np.array(heads, np.int32)
        heads_ref[key + "_logits_all"] = lg

    # mean ablation: head (3, 1)'s o_proj input replaced by its mean over every position of the
    # two text prompts of ref.npz (text_, p1_), at every position of the multimodal prompt
    mhead = (layers[0], 1)
    store: dict = {}
    with capture_hooks(model, [(order[mhead[0]], mhead[1])], store):
        for p in ("text_", "p1_"):
            ids = torch.tensor([ref[p + "prompt_ids"].tolist()])
            run(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    rows = torch.cat([x for x in store[(order[mhead[0]], mhead[1])]], dim=0)  # [n_positions, hd]
    mean = rows.double().mean(0).float()
    with mean_hooks(model, [(order[mhead[0]], mhead[1])], [mean]):
        lg, _ = run(model, inputs)
    log(f"[{family}] mean {mhead} over {rows.shape[0]} positions: |d vs base| {maxdiff(lg, base):.3g}")
    assert maxdiff(lg, base) > 1e-4
    heads_ref["mean_heads"] = np.array([mhead], np.int32)
    heads_ref["mean_vector"] = mean.numpy().astype(np.float32)
    heads_ref["mean_logits_all"] = lg

    # knockout: the visual keys for the queries after the image
    kheads = [(layers[0], 1), (last, 0)]
    block = np.zeros((n, n), bool)
    block[end:, vis] = True
    with Knockout(model, [(order[la], h) for la, h in kheads], [], block=block) as ko:
        lg, katt = run(model, inputs, attentions=True)
    assert not ko.empty
    for la, h in kheads:
        assert float(katt[order[la], h][end:][:, vis].max()) == 0.0
    log(f"[{family}] knockout after the image {kheads}: |d logits| {maxdiff(lg, base):.3g}")
    assert maxdiff(lg, base) > 1e-5
    heads_ref["after_heads"] = np.array(kheads, np.int32)
    heads_ref["after_logits_all"] = lg
    heads_ref["after_attn_all"] = katt

    # edge knockout preset Image->Last (Zhang et al.): the last query blocked from the visual keys,
    # for every head of one attention layer at a time (a window of layers knocks its attention layers)
    block = np.zeros((n, n), bool)
    block[n - 1, vis] = True
    flow = []
    for la in layers:
        with Knockout(model, [(order[la], h) for h in range(n_head)], [], block=block) as ko:
            lg, _ = run(model, inputs)
        assert not ko.empty
        flow.append(lg[-1])
        log(f"[{family}] Image->Last in layer {la}: |d last logits| {maxdiff(lg[-1], base[-1]):.3g}")
    heads_ref["image_last_logits_last"] = np.stack(flow).astype(np.float32)

    # CoRe-sparse
    group = n_head // n_kv
    core_kv = [(i + 1) % n_kv for i in range(len(layers))]
    knocked = [(la, h) for i, la in enumerate(layers) for h in range(n_head) if h // group != core_kv[i]]
    query_from = np.empty_like(vis)
    for i in range(len(vis) - 1, -1, -1):
        query_from[i] = query_from[i + 1] if i + 1 < len(vis) and vis[i + 1] == vis[i] + 1 else vis[i] + 1
    keep = vis >= SINK
    with Knockout(model, [(order[la], h) for la, h in knocked], vis[keep], query_from=query_from[keep]) as ko:
        sl, _ = run(model, inputs)
    assert not ko.empty
    log(f"[{family}] sparse: {len(knocked)} query heads blocked: |d logits vs dense| {maxdiff(sl, base):.3g}")
    assert maxdiff(sl, base) > 1e-3
    sparse_ref = {"core_kv": np.array(core_kv, np.int32), "sink": np.int32(SINK),
                  "query_from": query_from.astype(np.int32), "knocked": np.array(knocked, np.int32),
                  "logits_all": sl}
    return heads_ref, sparse_ref


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {list(FAMILIES)}")
    args = ap.parse_args()
    C.deterministic_torch()
    data = C.REPO / "tests" / "data"
    for fam in check_families(ap, args.families, FAMILIES):
        heads_ref, sparse_ref = in_work_dir(fam, "heads", lambda work, f=fam: make(f, data, work, print))
        save_refs(fam, data / fam / "heads_ref.npz", heads_ref)
        save_refs(fam, data / fam / "sparse_ref.npz", sparse_ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
