"""Max |Δ| of every committed fixture family against its transformers reference, on a GPU backend
and on the CPU side by side: the numbers behind the suite's pass/fail on that backend.

    python -m tools.gpu.parity --backend cuda --out parity.json

Per family (tests/data/<family>/ref.npz, ablation_ref.npz): f32 logits at every position and the
last-query attention rows (text prompts or the fixture image), the image embeddings, zero ablation
and knockout of the referenced heads, f16 argmax agreement and greedy tokens; plus which ggml
backend ran each part and the ops that fell back to the CPU (Engine.info["placement"])."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


def _engine(family: str, dtype: str, backend: str, vision: bool):
    from corehead import Engine

    d = DATA / family
    mmproj = d / f"mmproj-{dtype}.gguf" if vision else None
    return Engine(d / f"model-{dtype}.gguf", mmproj=mmproj, backend=backend, n_threads=2)


def family_parity(family: str, backend: str) -> dict:
    d = DATA / family
    r = np.load(d / "ref.npz")
    abl = np.load(d / "ablation_ref.npz") if (d / "ablation_ref.npz").is_file() else None
    vision = (d / "mmproj-f32.gguf").is_file()
    meta = json.loads((d / "meta.json").read_text())
    out: dict = {}
    with _engine(family, "f32", backend, vision) as eng:
        if vision:
            img = str(d / "image.png")
            args, kw = (meta["prompt"],), {"images": [img]}
            emb = eng.encode_image(img)
            want = r["image_embeds"]
            if "deepstack_embeds" in r:
                want = np.concatenate([want, *r["deepstack_embeds"]], axis=1)
            out["image_embeds_rel"] = _rel(emb, want)
            prompts = [("", args, kw)]
        else:
            prompts = [(p, (r[p + "prompt_ids"],), {}) for p in ("", "p1_", "p2_", "p3_") if p + "prompt_ids" in r]
        out["logits_all_rel"] = max(_rel(eng.logits(*a, all_positions=True, **k), r[p + "logits_all"])
                                    for p, a, k in prompts)
        p, a, k = prompts[0]
        if p + "attn_all" in r:
            n = r[p + "attn_all"].shape[-1]
            att = eng.attention(*a, positions=range(n), **k)
            out["attention_all_max_abs"] = float(np.abs(att - r[p + "attn_all"]).max())
        if abl is not None and "zeroA_heads" in abl.files:
            with eng.ablated([tuple(h) for h in abl["zeroA_heads"].tolist()]):
                out["zero_ablation_rel"] = _rel(eng.logits(*a, all_positions=True, **k), abl["zeroA_logits_all"])
        if abl is not None and "knock_heads" in abl.files and vision:
            with eng.ablated([tuple(h) for h in abl["knock_heads"].tolist()], method="knockout", queries="all"):
                out["knockout_rel"] = _rel(eng.logits(*a, all_positions=True, **k), abl["knock_logits_all"])
        info = eng.info
        out["placement"] = info["placement"]
        out["cpu_fallback_ops"] = info["cpu_fallback_ops"]
        out["backend"] = info["backend"]
    if (d / "model-f16.gguf").is_file() and (not vision or (d / "mmproj-f16.gguf").is_file()):
        with _engine(family, "f16", backend, vision) as eng:
            agree = []
            for p, a, k in prompts:
                got = eng.logits(*a, all_positions=True, **k)
                agree.append(float((got.argmax(-1) == r[p + "logits_all"].argmax(-1)).mean()))
            out["f16_argmax_agreement"] = min(agree)
            want = r[p + "greedy_ids"].tolist()
            got_ids = eng.generate_ids(*a, max_tokens=len(want), stop_at_eog=False, **k)
            out["f16_greedy_equal"] = got_ids == want
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--also-cpu", action="store_true", help="the same numbers on the CPU beside it")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--families", nargs="*", help="default: every tests/data family with a ref.npz")
    a = ap.parse_args(argv)
    families = a.families or sorted(p.parent.name for p in DATA.glob("*/meta.json") if (p.parent / "ref.npz").is_file())
    result: dict = {"backend": a.backend, "families": {}}
    for fam in families:
        for be in [a.backend] + (["cpu"] if a.also_cpu else []):
            t0 = time.perf_counter()
            try:
                row = family_parity(fam, be)
            except Exception as e:  # one family's failure is a result, not the end of the report
                row = {"error": f"{type(e).__name__}: {e}"}
            row["seconds"] = round(time.perf_counter() - t0, 2)
            result["families"].setdefault(fam, {})[be] = row
            print(fam, be, {k: v for k, v in row.items() if k not in ("placement", "cpu_fallback_ops")}, flush=True)
        a.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
