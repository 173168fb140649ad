#!/usr/bin/env python3
"""llama.cpp's own tools as the speed peer: `llama-bench`, `llama-mtmd-cli` and `llama-quantize`
built from the pinned tarball's llama.cpp tree (tools/fetch_ggml.py --with-llama-cpp) into the
cache folder, as a user builds them (Release, GGML_NATIVE, llama.cpp's defaults otherwise;
nothing is downloaded: no server, web UI, curl or OpenSSL).

    python tools/native_peer.py            # build (about 10 minutes on 2 cores, once) and print the bin folder

Every run passes `--repack 0` / `--no-repack` (no extra CPU buffer types, see tools/llama_cpp_peer.py):
on AMX hosts llama-bench otherwise dies with SIGILL, and corehead uses none of them either.
A tool that dies raises llama_cpp_peer.PeerCrashed (signal and CPU named).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from fetch_ggml import default_cache  # noqa: E402
from llama_cpp_peer import PeerCrashed, host_cpu  # noqa: E402

TARGETS = ("llama-bench", "llama-mtmd-cli", "llama-quantize")
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]


def llama_cpp_tree() -> Path:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "fetch_ggml.py"), "--with-llama-cpp"],
                         check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def build_dir() -> Path:
    return default_cache() / "llama.cpp-native"


def bin_dir(targets=TARGETS) -> Path:
    """The folder holding the built tools; builds what is missing (incremental)."""
    build = build_dir()
    out = build / "bin"
    if all((out / t).exists() for t in targets):
        return out
    if shutil.which("cmake") is None:
        sys.exit("cmake is needed to build llama.cpp's tools (pip install cmake ninja)")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not (build / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(llama_cpp_tree()), "-B", str(build), *gen, *CMAKE_FLAGS], check=True)
    t = time.perf_counter()
    subprocess.run(["cmake", "--build", str(build), "--target", *targets, "-j", str(os.cpu_count() or 2)], check=True)
    print(f"built {', '.join(targets)} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def run_tool(args: list[str], timeout: float = 1800.0) -> subprocess.CompletedProcess:
    try:
        # random-weight models print arbitrary bytes: decode leniently
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise PeerCrashed(f"{Path(args[0]).name} hung (no answer in {timeout:.0f} s) on {host_cpu()}") from e
    if proc.returncode < 0:
        raise PeerCrashed(f"{Path(args[0]).name} died with {signal.Signals(-proc.returncode).name} on {host_cpu()}")
    if proc.returncode != 0:
        raise PeerCrashed(f"{Path(args[0]).name} exited with {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def llama_bench(model: Path, threads: int, n_prompt: int = 512, n_gen: int = 128, reps: int = 5) -> dict:
    """llama-bench's pp{n_prompt} and tg{n_gen} tokens/s (its own warm-up, mean of `reps` runs;
    tg decodes from an empty cache), flash attention on, batch 512, extra buffer types off."""
    exe = bin_dir() / "llama-bench"
    proc = run_tool([str(exe), "-m", str(model), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
                     "-r", str(reps), "-fa", "1", "-b", "512", "-ub", "512", "--repack", "0", "-o", "json"])
    rows = json.loads(proc.stdout)
    out = {}
    for r in rows:
        key = "prefill_tok_s" if r["n_prompt"] > 0 else "decode_tok_s"
        out[key] = float(r["avg_ts"])
        out[key.replace("tok_s", "stdev")] = float(r["stddev_ts"])
    out["build"] = f"{rows[0].get('build_commit', '?')} ({rows[0].get('build_number', '?')})"
    return out


_ENCODE_MS = re.compile(r"mtmd batch encoding done in\s+(\d+)\s*ms|slice encoded in\s+(\d+)\s*ms")
_STAMP = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) I encoding mtmd batch", re.M)


def _mtmd_once(args: list[str], n_gen: int) -> dict:
    t = time.perf_counter()
    proc = run_tool(args + ["-n", str(n_gen)])
    wall = time.perf_counter() - t
    log = proc.stdout + proc.stderr
    m = _STAMP.search(log)
    if not m:
        raise PeerCrashed("llama-mtmd-cli printed no 'encoding mtmd batch' line (log format changed?)")
    mn, ss, ms, us = (int(x) for x in m.groups())
    return {"wall_s": wall, "ready_s": mn * 60 + ss + ms / 1e3 + us / 1e6,
            "encode_ms": [float(a or b) for a, b in _ENCODE_MS.findall(log)]}


def mtmd_cli(model: Path, mmproj: Path, images: list[Path], prompt: str, threads: int, n_gen: int,
             n_ctx: int = 8192, extra: list[str] | None = None) -> dict:
    """llama-mtmd-cli (greedy, fixed seed, EOS ignored), twice: generating 1 token and 1 + n_gen.
    This build does not print its perf counters in this mode (the log worker is not flushed at
    exit), so times come from its timestamped log and the process wall time:
    ttft = wall(1 token) - the log time at which it starts encoding the images (model load and
    tokenization before it are excluded; encode, prefill, the first token and exit included);
    decode tok/s = n_gen / the difference of the two runs' (wall - log time of encoding - encode
    time), so the load and encode times of the two runs, which vary by seconds for many images,
    cancel; encode = its own "encoding done in" ms. Decode stays the least exact of the three
    (prefill time varies between the runs too): use it for long generations."""
    exe = bin_dir() / "llama-mtmd-cli"
    args = [str(exe), "-m", str(model), "--mmproj", str(mmproj), "-p", prompt, "-t", str(threads),
            "-c", str(n_ctx), "-b", "2048", "-ub", "2048", "--temp", "0", "--seed", "1", "-fa", "on", "--no-repack",
            "--no-warmup", "--ignore-eos", *(extra or [])]
    for img in images:
        args += ["--image", str(img)]
    one = _mtmd_once(args, 1)
    more = _mtmd_once(args, 1 + n_gen)
    def after_encode(r: dict) -> float:
        return r["wall_s"] - r["ready_s"] - sum(r["encode_ms"]) / 1000

    decode = after_encode(more) - after_encode(one)
    return {"encode_ms": one["encode_ms"], "ttft_s": one["wall_s"] - one["ready_s"],
            "decode_tok_s": n_gen / decode if decode > 0 else float("nan"), "wall_s": [one["wall_s"], more["wall_s"]]}


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None) -> Path:
    exe = bin_dir() / "llama-quantize"
    run_tool([str(exe), str(src), str(dst), quant, str(threads or os.cpu_count() or 2)])
    return dst


if __name__ == "__main__":
    print(bin_dir())
