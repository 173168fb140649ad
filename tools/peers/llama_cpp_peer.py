#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python 0.3.36) as a peer that cannot take its caller down.

Every call runs llama.cpp in a child process. A crash there (SIGILL, SIGSEGV, an abort) or a hang
raises `PeerCrashed`, whose message names the signal and the host CPU, instead of killing the test
run or the benchmark; tests turn it into a skip (`tests/peer_fixture.py`).

The peer is loaded with `use_extra_bufts = false` (llama.cpp's `--no-repack` / llama-bench
`--repack 0`): no extra CPU buffer types, i.e. neither the AMX buffer type (built in when
GGML_NATIVE sees amx_int8 / amx_tile) nor repacked weights. On Intel Xeon hosts with AMX the
default path crashed on Q4_1 (segfault in the first decode; llama-bench died with SIGILL), and
corehead does not use those buffer types either, so both engines run the same plain CPU kernels.

    python tools/peers/llama_cpp_peer.py < request.json > reply.json     (the child; used by run())

The child runs this file by its path and imports nothing from tools/ (only the standard library,
numpy and llama_cpp), so it needs no package context.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

CPU_FLAGS_OF_INTEREST = ("amx_int8", "amx_tile", "amx_bf16", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                         "avx_vnni", "avx2", "f16c", "fma")


class PeerCrashed(RuntimeError):
    """llama.cpp died (signal), exited with an error, or hung in the child process."""


class PeerUnavailable(RuntimeError):
    """llama-cpp-python is not installed or cannot be imported here."""


def host_cpu() -> str:
    """'Intel(R) Xeon(R) ... (amx_int8 amx_tile avx512f ...)': the model and the flags that decide
    which ggml kernels and buffer types run."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    seen = [f for f in CPU_FLAGS_OF_INTEREST if f in flags]
    return f"{model} ({' '.join(seen) or 'no AVX2/AVX-512/AMX flags'})"


def kernel_class() -> str:
    """The CPU flags that pick ggml's CPU kernels in a native build (-march=native), joined by '-',
    e.g. 'avx2-f16c-fma' or 'avx512f-avx512bw-avx512_vnni-avx2-f16c-fma'. Quantized dot products
    and their activation quantization differ between these paths, so a Q4_1 model's logits and
    greedy text can differ from one class to another (measured: 3% of the logit range on
    SmolLM2 Q4_1 between AVX2 and AVX-512 hosts). AMX is left out: it only adds buffer types,
    which every run here turns off."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                break
    except OSError:
        pass
    seen = [f for f in CPU_FLAGS_OF_INTEREST if f in flags and not f.startswith("amx")]
    return "-".join(seen) or "generic"


def check_exit(name: str, returncode: int, stderr: str) -> None:
    """Raises PeerCrashed when a peer process `name` died of a signal or exited with an error."""
    if returncode < 0:
        raise PeerCrashed(f"{name} died with {signal.Signals(-returncode).name} on {host_cpu()}; "
                          f"stderr: {stderr.strip()[-300:]!r}")
    if returncode != 0:
        raise PeerCrashed(f"{name} exited with status {returncode} on {host_cpu()}: {stderr.strip()[-800:]}")


def load_llama(model: str | Path, **kwargs):
    """`llama_cpp.Llama(model, **kwargs)` with extra CPU buffer types off (see the module doc).
    The high-level class builds its model params from `llama_model_default_params()` inside its
    constructor and has no argument for this field, so the default is wrapped for that call."""
    import llama_cpp
    import llama_cpp.llama_cpp as C

    default = C.llama_model_default_params

    def no_extra_bufts():
        params = default()
        params.use_extra_bufts = False
        return params

    C.llama_model_default_params = no_extra_bufts
    try:
        llm = llama_cpp.Llama(str(model), **kwargs)
    finally:
        C.llama_model_default_params = default
    assert llm.model_params.use_extra_bufts is False
    return llm


def run(request: dict, timeout: float = 600.0) -> dict:
    """Runs `request` (see `serve`) in a child process and returns its reply.
    Raises PeerUnavailable when llama-cpp-python cannot be imported, PeerCrashed otherwise."""
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve())], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise PeerCrashed(f"llama.cpp peer hung (no answer in {timeout:.0f} s) on {host_cpu()}") from e
    if proc.returncode == 3:
        raise PeerUnavailable(proc.stderr.strip()[-500:])
    check_exit("llama.cpp peer (llama-cpp-python, in its child process)", proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def last_logits(llm):
    """Logits of the last evaluated token (llama-cpp-python 0.3.36 fills `scores` only with
    logits_all=True, which would also make llama.cpp compute every prompt position)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def greedy(llm, ids: list[int], n: int) -> list[int]:
    import numpy as np

    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(last_logits(llm)))
        out.append(tok)
        llm.eval([tok])
    return out


def mtmd_image_tokens(llm, mmproj: str, prompt: str, image: str, threads: int) -> list[int]:
    import ctypes

    import llama_cpp.mtmd_cpp as m

    p = m.mtmd_context_params_default()
    p.use_gpu, p.print_timings, p.n_threads = False, False, threads
    ctx = m.mtmd_init_from_file(mmproj.encode(), llm.model, p)
    if not ctx:
        raise RuntimeError(f"mtmd_init_from_file failed for {mmproj}")
    import numpy as np
    from PIL import Image

    rgb = np.ascontiguousarray(np.asarray(Image.open(image).convert("RGB")))
    bitmap = m.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    text = m.mtmd_input_text()
    raw = prompt.encode()
    text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
    chunks = m.mtmd_input_chunks_init()
    rc = m.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (m.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
    if rc != 0:
        raise RuntimeError(f"mtmd_tokenize failed ({rc})")
    counts = []
    for i in range(m.mtmd_input_chunks_size(chunks)):
        chunk = m.mtmd_input_chunks_get(chunks, i)
        if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            counts.append(int(m.mtmd_input_chunk_get_n_tokens(chunk)))
    m.mtmd_input_chunks_free(chunks)
    m.mtmd_bitmap_free(bitmap)
    m.mtmd_free(ctx)
    return counts


def serve(request: dict) -> dict:
    """The child: load `request["model"]` (`"vocab_only": true`: its vocabulary only) and answer
    `request["ops"]` in order:
    {"op": "tokenize", "text": s} -> ids (add_bos, special tokens parsed);
    {"op": "greedy", "ids": [...], "n": k} -> k greedy ids after the prompt;
    {"op": "logits", "ids": [...]} -> the last position's logits;
    {"op": "mtmd_image_tokens", "mmproj": path, "prompt": s, "image": path} -> the token count of every
    image chunk mtmd lays out for `prompt` (its marker <__media__>) with that image file;
    {"op": "raise", "signal": "SIGILL"} -> the process kills itself (tests of the crash path)."""
    for op in request["ops"]:  # before importing anything heavy: the crash tests need no model
        if op["op"] == "raise":
            os.kill(os.getpid(), getattr(signal, op["signal"]))
    # YaRN settings -1: from the model file, as llama.cpp's own tools default them (common.h);
    # llama-cpp-python's defaults (beta_fast 32, beta_slow 1) would override the file's betas.
    llm = load_llama(request["model"], vocab_only=request.get("vocab_only", False), n_ctx=request.get("n_ctx", 512),
                     n_batch=512, n_threads=request.get("threads", 2), flash_attn=True, verbose=False,
                     yarn_beta_fast=-1.0, yarn_beta_slow=-1.0, yarn_attn_factor=-1.0)
    out = []
    for op in request["ops"]:
        if op["op"] == "tokenize":
            out.append(llm.tokenize(op["text"].encode(), add_bos=True, special=True))
        elif op["op"] == "greedy":
            out.append(greedy(llm, op["ids"], op["n"]))
        elif op["op"] == "logits":
            llm.reset()
            llm.eval(op["ids"])
            out.append(last_logits(llm).tolist())
        elif op["op"] == "mtmd_image_tokens":
            out.append(mtmd_image_tokens(llm, op["mmproj"], op["prompt"], op["image"], request.get("threads", 2)))
        else:
            raise ValueError(f"unknown op {op['op']!r}")
    llm.close()
    import llama_cpp

    return {"results": out, "llama_cpp_python": llama_cpp.__version__, "cpu": host_cpu()}


if __name__ == "__main__":
    req = json.load(sys.stdin)
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        if not any(op["op"] == "raise" for op in req["ops"]):
            print(f"llama-cpp-python cannot be imported: {e}", file=sys.stderr)
            sys.exit(3)
    json.dump(serve(req), sys.stdout)
