"""`corehead demo`: the paper's finding reproduced on the toy VLM embedded in the package.

1. answer a few held-out probes (greedy, through the GGUF files);
2. rank every attention head by Retrieval Attention Mass on 100 probes, print the CoRe heads;
3. the ablation curve: accuracy with the top / bottom / random 5% and 10% of heads zeroed
   (random: mean of 5 seeds), on 200 other probes;
4. CoRe-sparse decoding against dense: accuracy, decode speed and KV bytes with 16 images;
5. write ram.png, ablation.png and attention.png (the top head over an image) to ``out``, with
   heads.json, ablation.json and probes/probes.jsonl for ``corehead explore``.
"""

from __future__ import annotations

import contextlib
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
        # A probe file of the first eval probes, for `corehead explore` (docs/explore.md).
        toy.save_probes(toy.probes(8, seed=EVAL_SEED), out / "probes", eng.image_marker)
        results.update(base_accuracy=curve.base_accuracy, summary=curve.summary())

        _section("4. CoRe-sparse decoding (only the top 10% of heads keep the images)")
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


def _sparse_demo(eng, ranking, probes, n_frames: int = 16, n_gen: int = 64) -> dict:
    """Dense vs CoRe-sparse: greedy accuracy on the probes, and decode speed + KV bytes held for
    one prompt with `n_frames` images (a video-like sequence), median of 3 runs."""
    from corehead.sparse import median_generation

    heads = ranking.top(0.1)
    frames = [p.image for p in probes[:n_frames]]
    prompt = eng.image_marker * n_frames + "What changes from one image to the next?"
    rows = {}
    for mode in ("dense", "sparse"):
        with eng.sparse(heads) if mode == "sparse" else contextlib.nullcontext():
            report = eng.evaluate(probes, metric="exact", progress=False)
            timing = median_generation(eng, prompt, frames, n_gen)
        rows[mode] = {"accuracy": report.accuracy, "decode_tok_s": timing["decode_tok_s"],
                      "kv_bytes": timing["kv_bytes"]}
    print(f"CoRe heads: top 10% by RAM ({len(heads)} query heads); accuracy = greedy exact match on "
          f"{len(probes)} probes; speed and KV = one prompt with {n_frames} images, {n_gen} tokens")
    print(f"{'mode':8} {'accuracy':>9} {'decode tok/s':>13} {'KV held':>10}")
    for mode, r in rows.items():
        print(f"{mode:8} {r['accuracy']:9.3f} {r['decode_tok_s']:13.0f} {r['kv_bytes'] / 1024:7.0f} KiB")
    d, s = rows["dense"], rows["sparse"]
    print(f"sparse keeps {100 * s['accuracy'] / max(d['accuracy'], 1e-9):.1f}% of dense accuracy with "
          f"{100 * s['kv_bytes'] / d['kv_bytes']:.0f}% of its KV bytes, decoding "
          f"{s['decode_tok_s'] / d['decode_tok_s']:.2f}x as fast")
    return rows
