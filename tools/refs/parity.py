#!/usr/bin/env python3
"""The parity table of the vision fixtures: how far corehead is from the committed transformers
references (tests/data/<family>/ref.npz, ablation_ref.npz), per family and quantity. The tests
assert tolerances; this prints the measured distances (what an issue note or a PR reports).

    python -m tools.refs.parity [FAMILY ...] [--dtype f32 f16] [--json out.json]

Quantities (max |d| over every element; "rel" = max |d| / max |reference|):
embeds (projector output), logits (every position, rel), last (last-position logits, abs),
attn (per-head attention of every query, or of the last where the reference holds only that, abs),
zero (two heads zeroed, logits rel, the worse of the two head sets), knock (knockout of the visual
keys for every query, logits rel), greedy (8 greedy tokens equal).
Needs only corehead and numpy (no torch): the references are committed.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def family_parity(family: str, dtype: str) -> dict:
    from tests.families import DATA, meta, vision_engine

    d = DATA / family
    ref = np.load(d / "ref.npz")
    abl = np.load(d / "ablation_ref.npz") if (d / "ablation_ref.npz").exists() else None
    prompt, img = meta(family)["prompt"], str(d / "image.png")
    n = len(ref["prompt_ids"])
    out: dict = {"family": family, "dtype": dtype}
    with vision_engine(family, dtype) as eng:
        emb = np.asarray(eng.encode_image(img))[:, : ref["image_embeds"].shape[1]]
        out["embeds"] = float(np.abs(emb[: len(ref["image_embeds"])] - ref["image_embeds"]).max())
        logits = eng.logits(prompt, images=[img], all_positions=True)
        out["logits_rel"] = _rel(logits, ref["logits_all"])
        out["last_abs"] = float(np.abs(logits[-1] - ref["logits_last"]).max())
        if "attn_all" in ref.files:  # every query; some references hold only the last one (gemma4vl)
            attn = eng.attention(prompt, images=[img], positions=range(n))
            out["attn_abs"] = float(np.abs(attn - ref["attn_all"]).max())
        else:
            attn = eng.attention(prompt, images=[img], positions=[n - 1])
            out["attn_abs"] = float(np.abs(attn.reshape(ref["attn_last"].shape) - ref["attn_last"]).max())
        greedy = eng.generate_ids(prompt, images=[img], max_tokens=len(ref["greedy_ids"]), stop_at_eog=False)
        out["greedy_equal"] = list(greedy) == ref["greedy_ids"].tolist()
        if abl is not None:
            zero = []
            for which in ("zeroA", "zeroB"):
                with eng.ablated([tuple(h) for h in abl[f"{which}_heads"].tolist()]):
                    zero.append(_rel(eng.logits(prompt, images=[img], all_positions=True), abl[f"{which}_logits_all"]))
            out["zero_rel"] = max(zero)
            # The references knock the visual keys out for every query (tests/test_multimodal_heads.py),
            # not only for the question tokens (the knockout default).
            with eng.ablated([tuple(h) for h in abl["knock_heads"].tolist()], method="knockout", queries="all"):
                out["knock_rel"] = _rel(eng.logits(prompt, images=[img], all_positions=True), abl["knock_logits_all"])
    return out


COLUMNS = [("embeds", ".1e"), ("logits_rel", ".1e"), ("last_abs", ".1e"), ("attn_abs", ".1e"), ("zero_rel", ".1e"),
           ("knock_rel", ".1e")]


def markdown(rows: list[dict]) -> str:
    head = ("| family | dtype | embeds | logits (rel) | last logits | attention | zero-ablation (rel) "
            "| knockout (rel) | greedy equal |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        cells = [format(r[k], f) if k in r else "-" for k, f in COLUMNS]
        lines.append(f"| {r['family']} | {r['dtype']} | " + " | ".join(cells) + f" | {r['greedy_equal']} |")
    return "\n".join(lines)


def main() -> None:
    from tests.families import VISION

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"default: every vision fixture ({', '.join(VISION)})")
    ap.add_argument("--dtype", nargs="+", default=["f32", "f16"], choices=["f32", "f16"])
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    for fam in args.families or VISION:
        for dt in args.dtype:
            rows.append(family_parity(fam, dt))
            print(rows[-1], file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
