#!/usr/bin/env python3
"""Transformers references for the CoRe-sparse KV cache: tests/data/<family>/sparse_ref.npz.

The CoRe-sparse mode keeps every token for the CoRe KV heads, and for the other KV heads drops
the visual tokens (past the first `sink` positions) once their image chunk is prefilled. Its
meaning on the full model: every query head of a non-CoRe KV head gets -inf on the (query, key)
edges from the queries after the image to that image's visual keys; image -> image and
everything else is untouched. This script computes exactly that with transformers' eager
attention (tools/refs/ablation.Knockout with `query_from` = the first position after the
image), on the model rebuilt from the fixture recipe (tools.refs.ablation.rebuild; checked
against the committed ref.npz first), so tests/test_sparse.py has a reference that shares no
code with corehead's masks.

CoRe set: in layer l the KV head (l + 1) % n_head_kv (a different one per layer), sink = 4; under
KV sharing (gemma4vl) a KV head listed by any layer reading it is CoRe for all of them.
Keys: core_kv [L] (the CoRe KV head per layer), sink, query_from [n_visual] (first blocked query
of each visual key), knocked [n, 2] (query heads
blocked), logits_all [T, V].

    nice -n 10 python -m tools.refs.sparse [family ...]     # needs the fixture toolchain
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tools.fixtures import VISION_FAMILIES, check_families
from tools.fixtures import common as C
from tools.refs.ablation import (
    REBUILD_TOL,
    Knockout,
    in_work_dir,
    maxdiff,
    rebuild,
    run,
    save_refs,
    text_attn_modules,
)

SINK = 4


def kv_source_layers(model, n_layer: int) -> list[int]:
    """transformers' KV sharing (Gemma4TextConfig.kv_sharing_modes): from layer n_layer -
    num_kv_shared_layers on, each layer reuses the K/V of the last earlier unshared layer of its
    type; every layer of other families is its own source."""
    cfg = model.config.get_text_config()
    n_shared = int(getattr(cfg, "num_kv_shared_layers", 0) or 0)
    types = list(getattr(cfg, "layer_types", None) or [None] * n_layer)
    first = n_layer - n_shared
    return [layer if layer < first else max(j for j in range(first) if types[j] == types[layer])
            for layer in range(n_layer)]


def make(family: str, data: Path, work: Path) -> dict:
    ref = np.load(data / family / "ref.npz")
    model, inputs, _, _ = rebuild(family, work)
    assert np.array_equal(inputs["input_ids"][0].numpy(), ref["prompt_ids"]), f"{family}: prompt_ids differ"
    d = maxdiff(run(model, inputs)[0], ref["logits_all"])
    assert d <= REBUILD_TOL, f"{family}: rebuilt model differs from ref.npz ({d})"
    cfg = model.config.get_text_config()
    n_layer, n_head, n_kv = len(text_attn_modules(model)), cfg.num_attention_heads, cfg.num_key_value_heads
    group = n_head // n_kv
    core_kv = [(layer + 1) % n_kv for layer in range(n_layer)]
    # KV sharing (Gemma 4): a layer attends over the K/V of the layer `src` names; a KV head is CoRe
    # for every layer reading it when any of them lists it (one visual KV set per shared KV head).
    src = kv_source_layers(model, n_layer)
    core = {(src[layer], core_kv[layer]) for layer in range(n_layer)}
    knocked = [(layer, h) for layer in range(n_layer) for h in range(n_head) if (src[layer], h // group) not in core]
    vis = ref["visual_positions"].astype(np.int64)
    # Each run of consecutive visual tokens (a tile, a view) is one chunk: its keys are blocked for
    # the queries after the run.
    query_from = np.empty_like(vis)
    for i in range(len(vis) - 1, -1, -1):
        query_from[i] = query_from[i + 1] if i + 1 < len(vis) and vis[i + 1] == vis[i] + 1 else vis[i] + 1
    keep = vis >= SINK
    with Knockout(model, knocked, vis[keep], query_from=query_from[keep]) as ko:
        logits, _ = run(model, inputs)
    assert not ko.empty, f"{family}: a blocked query row lost every key"
    effect = maxdiff(logits, ref["logits_all"])
    print(f"[{family}] {len(knocked)} query heads blocked from {keep.sum()} visual keys for the queries after "
          f"their runs (first at {sorted(set(query_from.tolist()))}): |d logits vs dense| {effect:.3g}", flush=True)
    assert effect > 1e-3
    return {"core_kv": np.array(core_kv, np.int32), "sink": np.int32(SINK), "query_from": query_from.astype(np.int32),
            "knocked": np.array(knocked, np.int32), "logits_all": logits}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {VISION_FAMILIES}")
    ap.add_argument("--data", type=Path, default=C.REPO / "tests" / "data")
    args = ap.parse_args()
    C.deterministic_torch()
    for f in check_families(ap, args.families, VISION_FAMILIES):
        r = in_work_dir(f, "sparse", lambda work, f=f: make(f, args.data, work))
        save_refs(f, args.data / f / "sparse_ref.npz", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
