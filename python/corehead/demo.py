"""`corehead demo`: the paper's finding reproduced on the toy VLM embedded in the package.

1. answer a few held-out probes (greedy, through the GGUF files);
2. rank every attention head by Retrieval Attention Mass on 100 probes, print the CoRe heads;
3. the ablation curve: accuracy with the top / bottom / random 5% and 10% of heads zeroed
   (random: mean of 5 seeds), on 200 other probes;
4. CoRe-sparse decoding against dense, when this build has it (speed, KV bytes, accuracy);
5. write ram.png, ablation.png and attention.png (the top head over an image) to ``out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import corehead
from corehead import toy

RANK_PROBES, EVAL_PROBES = 100, 200
RANK_SEED, EVAL_SEED, SHOW_SEED = 101, 202, 303  # held-out seeds (< toy.TRAIN_SEED_BASE)


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def run(out: str | Path = "corehead-demo", threads: int | None = None, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict = {}
    with corehead.Engine.toy(n_threads=threads) as eng:
        info = eng.info
        print(f"corehead {corehead.__version__}: toy VLM ({info['n_layer']} layers x {info['n_head']} heads, "
              f"{info['weight_bytes'] / 2**20:.1f} MiB of weights) on {info['backend']}, {info['n_threads']} threads")

        _section("1. the model answers")
        for p in toy.as_probes(toy.probes(4, seed=SHOW_SEED), eng.image_marker):
            got = eng.generate(p.prompt, images=[p.image], max_tokens=4).strip()
            mark = "ok " if got == p.answer.strip() else "bad"
            print(f"  [{mark}] {p.question:32s} -> {got!r} (truth {p.answer.strip()!r})")

        _section(f"2. Retrieval Attention Mass over {RANK_PROBES} probes")
        rank_probes = toy.as_probes(toy.probes(RANK_PROBES, seed=RANK_SEED), eng.image_marker)
        ranking = eng.rank_heads(rank_probes, progress=progress)
        print(ranking.table(8))
        top = ranking.top(0.05)
        print(f"CoRe heads (top 5% by RAM): {', '.join(f'L{a}H{b}' for a, b in top)}")
        ranking.save(out / "heads.json")
        ranking.plot(out / "ram.png")

        _section(f"3. ablation on {EVAL_PROBES} other probes (zero the heads' outputs)")
        eval_probes = toy.as_probes(toy.probes(EVAL_PROBES, seed=EVAL_SEED), eng.image_marker)
        curve = eng.ablation_curve(ranking, eval_probes, fractions=(0.05, 0.1), seeds=5, method="zero",
                                   progress=progress)
        print(curve.table())
        curve.plot(out / "ablation.png")
        curve.save(out / "ablation.json")
        results.update(base_accuracy=curve.base_accuracy, summary=curve.summary())

        if hasattr(eng, "sparse"):
            _section("4. CoRe-sparse decoding (10% of KV heads keep the image)")
            results["sparse"] = _sparse_demo(eng, ranking, eval_probes)

        from corehead.plot import attention_overlay
        from corehead.ram import score_probe

        # Draw the top head on the probe (of the first ten) where it retrieves the most.
        layer, head = top[0]
        best = max(eval_probes[:10], key=lambda p: score_probe(eng, p).ram[layer, head])
        attention_overlay(eng, best, layer, head, out / "attention.png", query="answer")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    _section("done")
    print(f"wrote {out / 'ram.png'}, {out / 'ablation.png'}, {out / 'attention.png'} in "
          f"{time.perf_counter() - t0:.0f} s")
    return results


def _sparse_demo(eng, ranking, probes) -> dict:
    """Dense vs CoRe-sparse accuracy and KV bytes on the same probes."""
    dense = eng.evaluate(probes, metric="exact", progress=False)
    heads = ranking.top(0.1)
    with eng.sparse(heads):
        sparse = eng.evaluate(probes, metric="exact", progress=False)
        stats = eng.kv_stats()
    print(f"  dense accuracy {dense.accuracy:.3f}, sparse {sparse.accuracy:.3f} "
          f"({100 * sparse.accuracy / max(dense.accuracy, 1e-9):.1f}% of dense)")
    print(f"  KV cache held after the last probe: {stats.get('bytes', stats)} bytes")
    return {"dense_accuracy": dense.accuracy, "sparse_accuracy": sparse.accuracy, "kv_stats": stats}
