#!/usr/bin/env python3
"""llama.cpp's own tools as the speed peer: `llama-bench`, `llama-mtmd-cli` and `llama-quantize`
built from the pinned tarball's llama.cpp tree (tools/build/fetch_ggml.py --with-llama-cpp) into the
cache folder, as a user builds them (Release, GGML_NATIVE, llama.cpp's defaults otherwise;
nothing is downloaded: no server, web UI, curl or OpenSSL).

    python -m tools.peers.native_peer      # build (about 7 minutes on 2 cores, once) and print the bin folder

Every run passes `--repack 0` / `--no-repack` (no extra CPU buffer types, see tools/peers/llama_cpp_peer.py):
on AMX hosts llama-bench otherwise dies with SIGILL, and corehead uses none of them either.
A tool that dies raises llama_cpp_peer.PeerCrashed (signal and CPU named).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.build.fetch_ggml import default_cache, llama_cpp_tree
from tools.peers.llama_cpp_peer import PeerCrashed, check_exit, host_cpu

TARGETS = ("llama-bench", "llama-mtmd-cli", "llama-quantize")
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]


def build_dir() -> Path:
    return default_cache() / "llama.cpp-native"


def bin_dir(targets=TARGETS) -> Path:
    """The folder holding the built tools; builds what is missing (incremental).
    COREHEAD_LLAMA_CPP_BIN names a folder of tools built elsewhere (tools/gpu_check.sh: the CUDA build)."""
    if os.environ.get("COREHEAD_LLAMA_CPP_BIN"):
        return Path(os.environ["COREHEAD_LLAMA_CPP_BIN"])
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
    check_exit(Path(args[0]).name, proc.returncode, proc.stderr)
    return proc


def llama_bench(model: Path, threads: int, n_prompt: int = 512, n_gen: int = 128, reps: int = 5,
                extra: list[str] | None = None) -> dict:
    """llama-bench's pp{n_prompt} and tg{n_gen} tokens/s (its own warm-up, mean of `reps` runs;
    tg decodes from an empty cache), flash attention on, batch 512, extra buffer types off
    (`extra`: more arguments, e.g. -ngl 99 on a GPU)."""
    exe = bin_dir() / "llama-bench"
    proc = run_tool([str(exe), "-m", str(model), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
                     "-r", str(reps), "-fa", "1", "-b", "512", "-ub", "512", "--repack", "0", "-o", "json",
                     *(extra or [])])
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


def _mtmd_run(args: list[str], timeout: float) -> dict:
    """One llama-mtmd-cli process: stdout (the generated text only, flushed per token) read as it
    arrives, with the time of each chunk; stderr (its timestamped log) at the end."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    stamps: list[float] = []
    while proc.stdout.read1(4096):  # one chunk per flushed token, or several when this reader lags
        stamps.append(time.perf_counter() - t0)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        raise PeerCrashed(f"llama-mtmd-cli hung (no answer in {timeout:.0f} s) on {host_cpu()}") from e
    wall = time.perf_counter() - t0
    reader.join()
    log = b"".join(err).decode("utf-8", "replace")
    check_exit("llama-mtmd-cli", rc, log)
    m = _STAMP.search(log)
    if not m:
        raise PeerCrashed("llama-mtmd-cli printed no 'encoding mtmd batch' line (log format changed?)")
    mn, ss, ms, us = (int(x) for x in m.groups())
    return {"stamps": stamps, "wall_s": wall, "ready_s": mn * 60 + ss + ms / 1e3 + us / 1e6,
            "encode_ms": [float(a or b) for a, b in _ENCODE_MS.findall(log)]}


def mtmd_cli(model: Path, mmproj: Path, images: list[Path], prompt: str, threads: int, n_gen: int,
             n_ctx: int = 8192, extra: list[str] | None = None, timeout: float = 3600.0) -> dict:
    """llama-mtmd-cli (greedy, fixed seed, EOS ignored), timed from the outside: this build prints
    no perf counters in single-turn mode (its log worker is not flushed at exit). Its stdout holds
    only the generated text, flushed per token: ttft = its first byte - the log time at which it
    starts encoding the images (model load and tokenization excluded); decode tok/s = tokens after
    the first / (last byte - first byte); encode = its own "encoding done in" ms. Tokens whose text
    is empty (random-weight models greedy-decode unused tokens) print nothing; then a second run
    of 1 token is made, ttft = its wall time - that log time, and decode = n_gen - 1 tokens over
    the difference of the two runs' times after their encodes (`timing` says which was used)."""
    exe = bin_dir() / "llama-mtmd-cli"

    def args(n: int) -> list[str]:
        a = [str(exe), "-m", str(model), "--mmproj", str(mmproj), "-p", prompt, "-t", str(threads), "-n", str(n),
             "-c", str(n_ctx), "-b", "2048", "-ub", "2048", "--temp", "0", "--seed", "1", "-fa", "on", "--no-repack",
             "--no-warmup", "--ignore-eos", *(extra or [])]
        for img in images:
            a += ["--image", str(img)]
        return a

    r = _mtmd_run(args(n_gen), timeout)
    out = {"encode_ms": r["encode_ms"], "wall_s": r["wall_s"]}
    if len(r["stamps"]) >= 2:  # text arrived (a fast model's tokens may share chunks: first/last still hold)
        st = r["stamps"]
        return {**out, "timing": "stdout", "ttft_s": st[0] - r["ready_s"],
                "decode_tok_s": (n_gen - 1) / (st[-1] - st[0])}
    one = _mtmd_run(args(1), timeout)

    def after_encode(x: dict) -> float:
        return x["wall_s"] - x["ready_s"] - sum(x["encode_ms"]) / 1000

    decode = after_encode(r) - after_encode(one)
    return {**out, "timing": "two runs (no text output)", "ttft_s": one["wall_s"] - one["ready_s"],
            "decode_tok_s": (n_gen - 1) / decode if decode > 0 else float("nan")}


def mtmd_cli_on_arrays(model: Path, mmproj: Path, images: list, question: str, threads: int, n_gen: int,
                       n_ctx: int, extra: list[str] | None = None) -> dict:
    """mtmd_cli on RGB8 arrays (each distinct array written once as a PNG), the question in the
    chatml template (the random-weight bench models carry none, so llama-mtmd-cli needs one named;
    its prompt then differs from corehead's by a few text tokens)."""
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        files: dict[int, Path] = {}
        for img in images:
            if id(img) not in files:
                files[id(img)] = Path(tmp) / f"image{len(files)}.png"
                Image.fromarray(img).save(files[id(img)])
        return mtmd_cli(model, mmproj, [files[id(img)] for img in images], question, threads, n_gen, n_ctx=n_ctx,
                        extra=["--chat-template", "chatml", *(extra or [])])


if __name__ == "__main__":
    print(bin_dir())
