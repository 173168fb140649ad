"""corehead.system_info(): how ggml was built and what it runs on this CPU, checked against the
CPU's own flags (/proc/cpuinfo), which share nothing with ggml's feature detection."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import corehead

# ggml's feature names -> the Linux cpuinfo flag that says the CPU has it.
CPUINFO_FLAG = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma",
                "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
                "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8"}

# The x86-64 levels of a portable build and the instructions each one's code uses (Intel's and
# AMD's manuals; cpuinfo names).
_HASWELL = {"sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"}
_SKYLAKEX = _HASWELL | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
X86_LEVELS = {
    "x64": set(), "sse42": {"sse4_2"}, "sandybridge": {"sse4_2", "avx"}, "ivybridge": {"sse4_2", "avx", "f16c"},
    "piledriver": {"sse4_2", "avx", "f16c", "fma"}, "haswell": _HASWELL, "skylakex": _SKYLAKEX,
    "cannonlake": _SKYLAKEX | {"avx512vbmi"}, "cascadelake": _SKYLAKEX | {"avx512_vnni"},
    "icelake": _SKYLAKEX | {"avx512vbmi", "avx512_vnni"}, "cooperlake": _SKYLAKEX | {"avx512_vnni", "avx512_bf16"},
    "zen4": _SKYLAKEX | {"avx512vbmi", "avx512_vnni", "avx512_bf16"}, "alderlake": _HASWELL | {"avx_vnni"},
    "sapphirerapids": _SKYLAKEX | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}


def _cpu_flags() -> set[str]:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the CPU flags are read from Linux x86-64's /proc/cpuinfo")
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("/proc/cpuinfo has no flags line")


def test_system_info_shape_and_cli():
    info = corehead.system_info()
    assert info["build"] in ("native", "portable")
    assert "cpu" in info["backends"] and info["devices"] and info["corehead"] == corehead.__version__
    out = subprocess.run([sys.executable, "-m", "corehead.cli", "info", "--system", "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == info
    text = subprocess.run([sys.executable, "-m", "corehead.cli", "info", "--system"], capture_output=True, text=True,
                          check=True).stdout
    assert info["cpu_variant"] in text and info["build"] in text


def test_cpu_code_uses_only_instructions_this_cpu_has():
    """Whatever the build, the CPU code ggml runs was compiled for features this CPU has (a
    native build: the build machine's; a portable one: the level it picked)."""
    flags = _cpu_flags()
    info = corehead.system_info()
    used = [f.split("=")[0] for f in info["cpu_features"] if f.split("=")[0] in CPUINFO_FLAG]
    assert used, info["cpu_features"]
    missing = [f for f in used if CPUINFO_FLAG[f] not in flags]
    assert not missing, f"ggml's CPU code uses {missing}, which this CPU lacks"


def test_portable_build_picks_the_best_level_for_this_cpu():
    info = corehead.system_info()
    if info["build"] != "portable":
        pytest.skip("a native build (pip install .); a portable one is built with "
                    "-C cmake.define.COREHEAD_PORTABLE=ON (docs/architecture.md, 'Portable builds')")
    flags = _cpu_flags()
    lib = Path(info["cpu_variant_path"]).parent
    shipped = {p.name.split("libggml-cpu-")[1].split(".so")[0] for p in lib.glob("libggml-cpu-*.so*")}
    assert shipped >= set(X86_LEVELS), f"missing CPU levels in {lib}: {set(X86_LEVELS) - shipped}"
    runnable = {name for name in shipped if X86_LEVELS.get(name, {"?"}) <= flags}
    picked = info["cpu_variant"]
    assert picked in runnable, f"picked {picked}, which needs {X86_LEVELS[picked] - flags} this CPU lacks"
    better = [n for n in runnable if X86_LEVELS[n] > X86_LEVELS[picked]]
    assert not better, f"picked {picked} although this CPU runs {better}"
