"""`python -m tools.bench ablate`: the ablation curve of issue 6 (5 fractions x top/bottom/random,
5 random seeds) over 200 probes of the embedded toy VLM, timed against one unablated evaluation
pass over the same probes, each in a fresh process; reports the ratio curve / (configurations x
pass) and peak RSS."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tools.bench.common import in_child, peak_rss_mib


def _ablate_pass(n_probes: int, threads: int) -> dict:
    from corehead import Engine, toy

    probes = toy.as_probes(toy.probes(n_probes, seed=5))
    with Engine.toy(n_threads=threads) as eng:
        t = time.perf_counter()
        report = eng.evaluate(probes, metric="choice", progress=False)
        dt = time.perf_counter() - t
    return {"seconds": dt, "accuracy": report.accuracy, "peak_rss_mib": peak_rss_mib()}


def _ablate_curve(n_probes: int, threads: int, ranking_path: str, seeds: int) -> dict:
    from corehead import Engine, HeadRanking, toy

    probes = toy.as_probes(toy.probes(n_probes, seed=5))
    ranking = HeadRanking.load(ranking_path)
    with Engine.toy(n_threads=threads) as eng:
        t = time.perf_counter()
        curve = eng.ablation_curve(ranking, probes, fractions=(0.01, 0.02, 0.05, 0.1, 0.2), seeds=seeds,
                                   metric="choice", progress=False)
        dt = time.perf_counter() - t
        cache = eng.image_cache
    evaluated = len({tuple(sorted(map(tuple, r["heads"]))) for r in curve.runs}) + 1
    return {"seconds": dt, "runs": len(curve.runs), "distinct_head_sets_evaluated": evaluated,
            "image_encodes": cache["misses"], "image_cache_hits": cache["hits"], "peak_rss_mib": peak_rss_mib(),
            "summary": curve.summary(), "base_accuracy": curve.base_accuracy}


def run(args) -> dict:
    """Ablation curve (5 fractions x top/bottom/random, `seeds` random draws) over the toy VLM's
    probes against one unablated evaluation pass, each in a fresh process (cold caches)."""
    import tempfile

    from corehead import Engine, toy

    n = args.probes
    probes = toy.as_probes(toy.probes(n, seed=5))
    with Engine.toy(n_threads=args.threads) as eng:
        ranking = eng.rank_heads(probes, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "heads.json")
        ranking.save(path)
        single = [in_child(_ablate_pass, n, args.threads) for _ in range(args.reps)]
        curve = in_child(_ablate_curve, n, args.threads, path, args.seeds)
    t_pass = statistics.median(r["seconds"] for r in single)
    configs = curve["runs"] + 1  # every (fraction, baseline, seed) run + the unablated pass
    return {"bench": "ablate", "model": "embedded toy VLM", "probes": n, "metric": "choice", "threads": args.threads,
            "seeds": args.seeds, "one_pass_seconds": t_pass, "one_pass_peak_rss_mib": single[0]["peak_rss_mib"],
            "curve": curve, "configurations": configs,
            "curve_over_configs_x_pass": curve["seconds"] / (configs * t_pass), "target": 0.8}


def markdown(r: dict) -> str:
    c = r["curve"]
    return "\n".join([
        "| probes | configurations | head sets evaluated | image encodes | one pass s | curve s "
        "| curve / (configs x pass) | peak RSS pass / curve MiB |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['probes']} | {r['configurations']} | {c['distinct_head_sets_evaluated']} | {c['image_encodes']} | "
        f"{r['one_pass_seconds']:.2f} | {c['seconds']:.2f} | {r['curve_over_configs_x_pass']:.2f} "
        f"(target <= {r['target']}) | {r['one_pass_peak_rss_mib']:.0f} / {c['peak_rss_mib']:.0f} |",
    ])
