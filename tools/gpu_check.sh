#!/usr/bin/env bash
# The GPU check: build corehead with ggml's CUDA backend for this GPU only, run the test suite on
# it (COREHEAD_BACKEND=cuda), measure parity against the committed transformers references and
# speed against llama.cpp's CUDA tools built from the same ggml; a log and a JSON summary go to OUT.
#
#   tools/gpu_check.sh OUT [--arch 90] [-j N] [--prebuilt DIR] [--llama-cpp DIR] [--compile-only]
#                          [--tests "tests/test_x.py ..."] [--test-timeout S] [--xdist N] [--no-tests] [--no-bench]
#                          [--backend cuda] [--wheels DIR] [--export-prebuilt DIR]
#
# Made for a GPU machine that reaches no package registry and receives a copy of the working tree
# plus a few carried folders: everything comes from the tree, the machine's own python3 (with
# numpy, pytest, Pillow, jinja2; more as wheels: --wheels DIR is pip-installed offline first) and
# its CUDA toolkit (nvcc; cuBLAS from the toolkit or from the nvidia-cublas package beside torch).
#
# ggml + llama.cpp: one CMake build of the pinned llama.cpp tree (ggml shared, GGML_CUDA=ON,
# CMAKE_CUDA_ARCHITECTURES=$ARCH, ccache when present) gives libggml*, llama-bench, llama-mtmd-cli
# and llama-quantize; corehead then links that ggml (COREHEAD_GGML_PREFIX), so ggml-cuda compiles
# once for both. Its source: --llama-cpp DIR, else .gpu/llama.cpp.tar.xz (carried), else the
# fetch_ggml cache. --prebuilt DIR takes that build from DIR (prefix/ and bin/, made by this script
# with --export-prebuilt on another machine) and skips it: the device run then only builds corehead.
#
# --compile-only: no GPU needed (nvcc only): configure the CUDA build, compile two CUDA files of
# ggml-cuda and all of corehead against a prebuilt or CPU ggml, then stop (what CI-less hosts can
# check). PARITY_TIMEOUT / BENCH_TIMEOUT (s) cap those steps.  Steps, their times and exit codes: OUT/steps.jsonl; everything printed: OUT/gpu_check.log.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: tools/gpu_check.sh OUT [options]}"; shift
ARCH=90
JOBS="$(nproc)"
PREBUILT=""
LLAMA_SRC=""
WHEELS=""
COMPILE_ONLY=0
RUN_TESTS=1
RUN_BENCH=1
EXPORT_PREBUILT=""
TEST_TIMEOUT=240
XDIST=8
BACKEND=cuda
TESTS="tests/test_toy.py tests/test_text_parity.py tests/test_attention.py tests/test_ablation.py
 tests/test_knockout.py tests/test_multimodal_heads.py tests/test_sparse.py tests/test_ram.py tests/test_vision.py
 tests/test_qwen3vl.py tests/test_internvl.py tests/test_ministral3.py tests/test_gemma4.py tests/test_qwen35.py
 tests/test_evaluate.py tests/test_capi.py tests/test_video.py tests/test_chat.py tests/test_reliability.py
 tests/test_system.py"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) ARCH="$2"; shift 2 ;;
    -j) JOBS="$2"; shift 2 ;;
    --prebuilt) PREBUILT="$2"; shift 2 ;;
    --llama-cpp) LLAMA_SRC="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --compile-only) COMPILE_ONLY=1; shift ;;
    --tests) TESTS="$2"; shift 2 ;;
    --test-timeout) TEST_TIMEOUT="$2"; shift 2 ;;
    --xdist) XDIST="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --no-tests) RUN_TESTS=0; shift ;;
    --no-bench) RUN_BENCH=0; shift ;;
    --export-prebuilt) EXPORT_PREBUILT="$2"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
WORK="${GPU_CHECK_WORK:-/tmp/corehead-gpu-check}"
mkdir -p "$WORK"
LOG="$OUT/gpu_check.log"; : > "$LOG"
STEPS="$OUT/steps.jsonl"; : > "$STEPS"
PY="${PYTHON:-python3}"
T_START=$(date +%s)

say() { echo "[gpu_check +$(( $(date +%s) - T_START ))s] $*" | tee -a "$LOG"; }
# step NAME TIMEOUT CMD...: runs CMD with its output in the log, records seconds and exit code.
step() {
  local name="$1" limit="$2"; shift 2
  local t0 rc; t0=$(date +%s)
  say "--- $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1; rc=$?
  local dt=$(( $(date +%s) - t0 ))
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $dt}" >> "$STEPS"
  say "--- $name: rc=$rc in ${dt}s"
  return $rc
}

# --- the machine ---------------------------------------------------------------------------------
{
  echo "== $(date -u)"; uname -a; nproc; grep -m1 "model name" /proc/cpuinfo || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 || echo "no nvidia-smi"
  command -v nvcc && nvcc --version | tail -2
  "$PY" --version; cmake --version | head -1; ninja --version; command -v ccache || echo "no ccache"
} >>"$LOG" 2>&1
if [[ -n "$WHEELS" ]]; then
  step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# --- CUDA toolkit and cuBLAS ---------------------------------------------------------------------
NVCC="$(command -v nvcc || true)"
[[ -n "$NVCC" ]] || { say "nvcc not found: install the CUDA toolkit"; exit 1; }
if [[ -z "${CUDA_HOME:-}" ]]; then  # nvcc may be a wrapper script: ask it where it lives
  here="$("$NVCC" --dryrun -x cu -E /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -1)"
  for c in "${here%/bin}" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda; do
    if [[ -n "$c" && -f "$c/include/cuda_runtime.h" ]]; then CUDA_HOME="$(cd "$c" && pwd)"; break; fi
  done
fi
[[ -n "${CUDA_HOME:-}" ]] || { say "cannot find the CUDA toolkit of $NVCC: set CUDA_HOME"; exit 1; }
CUDA_VER="$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')"
CMAKE_CUDA=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DCMAKE_CUDA_COMPILER=$NVCC" "-DCUDAToolkit_ROOT=$CUDA_HOME")
LIB_PATH=""
cublas_lib="$(find "$CUDA_HOME/" -name 'libcublas.so*' 2>/dev/null | head -1)"
cublas_inc="$(find "$CUDA_HOME/" -name cublas_v2.h 2>/dev/null | head -1)"
if [[ -z "$cublas_lib" || -z "$cublas_inc" ]]; then
  # cuBLAS as Python packages ship it: beside torch (nvidia-cublas), or an unpacked wheel.
  for d in ${CUBLAS_DIR:-} $("$PY" -c 'import nvidia, os; print(*nvidia.__path__)' 2>/dev/null) \
           "${COREHEAD_CACHE:-$HOME/.cache/corehead}/cuda-extras/cublas-$CUDA_VER"; do
    [[ -d "$d" ]] || continue
    cublas_lib="$(find "$d" -name 'libcublas.so*' | head -1)"; cublas_inc="$(find "$d" -name cublas_v2.h | head -1)"
    [[ -n "$cublas_lib" ]] && break
  done
fi
if [[ -n "$cublas_lib" ]]; then
  LIB_PATH="$(dirname "$cublas_lib")"
  CMAKE_CUDA+=("-DCUDA_cublas_LIBRARY=$cublas_lib" "-DCUDA_cublasLt_LIBRARY=$(ls "$LIB_PATH"/libcublasLt.so* | head -1)")
  [[ -n "$cublas_inc" ]] && CMAKE_CUDA+=("-DCMAKE_CUDA_FLAGS=-I$(dirname "$cublas_inc")")
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\b' && ! ls "$CUDA_HOME"/lib64/stubs/libcuda.so >/dev/null 2>&1; then
  CMAKE_CUDA+=(-DGGML_CUDA_NO_VMM=ON)  # no driver library to link: ggml's VMM pool compiled out
fi
if command -v ccache >/dev/null; then CMAKE_CUDA+=(-DGGML_CCACHE=ON); else CMAKE_CUDA+=(-DGGML_CCACHE=OFF); fi
say "nvcc $CUDA_VER ($CUDA_HOME), arch $ARCH, -j$JOBS, cuBLAS ${cublas_lib:-not found}"
export LD_LIBRARY_PATH="${LIB_PATH:+$LIB_PATH:}${LD_LIBRARY_PATH:-}"

# --- ggml-cuda + llama.cpp's tools (one build), or the prebuilt one -------------------------------
if [[ -n "$PREBUILT" ]]; then
  PREFIX="$PREBUILT/prefix"; BIN="$PREBUILT/bin"
  say "prebuilt ggml + llama.cpp tools from $PREBUILT"
else
  if [[ -z "$LLAMA_SRC" ]]; then
    if [[ -f "$REPO/.gpu/llama.cpp.tar.xz" ]]; then
      rm -rf "$WORK/llama.cpp"; mkdir -p "$WORK/llama.cpp"
      tar -xJf "$REPO/.gpu/llama.cpp.tar.xz" -C "$WORK/llama.cpp"; LLAMA_SRC="$WORK/llama.cpp"
    else
      LLAMA_SRC="$("$PY" "$REPO/tools/build/fetch_ggml.py" --with-llama-cpp | tail -1)"
    fi
  fi
  LB="$WORK/llama.cpp-build"; PREFIX="$WORK/prefix"; BIN="$LB/bin"
  # ggml's CPU code for any x86-64 with AVX2 (the GPU host's CPU is not this one; no AMX repacking).
  step llama_cpp_configure 120 cmake -S "$LLAMA_SRC" -B "$LB" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF \
    -DGGML_LLAMAFILE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF "-DCMAKE_INSTALL_PREFIX=$PREFIX" \
    '-DCMAKE_INSTALL_RPATH=$ORIGIN' '-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON' "${CMAKE_CUDA[@]}" || exit 1
  if [[ $COMPILE_ONLY -eq 1 ]]; then
    objs=$(ninja -C "$LB" -t targets all | sed -n 's/^\(ggml\/src\/ggml-cuda\/CMakeFiles\/ggml-cuda.dir\/\(argmax\|clamp\)\.cu\.o\):.*/\1/p')
    # shellcheck disable=SC2086
    step cuda_compile_sample 900 ninja -C "$LB" -j "$JOBS" $objs || exit 1
    step ggml_cpu_build 1800 ninja -C "$LB" -j "$JOBS" ggml-base ggml-cpu || exit 1
  else
    step llama_cpp_build 3600 ninja -C "$LB" -j "$JOBS" llama-bench llama-mtmd-cli llama-quantize || exit 1
    step ggml_install 120 cmake --install "$LB/ggml" --prefix "$PREFIX" || exit 1
  fi
fi
if [[ -n "$EXPORT_PREBUILT" ]]; then  # for a later run with --prebuilt: the prefix and the tools
  mkdir -p "$EXPORT_PREBUILT/bin"
  cp -a "$PREFIX" "$EXPORT_PREBUILT/prefix"
  cp -a "$BIN"/llama-bench "$BIN"/llama-mtmd-cli "$BIN"/llama-quantize "$EXPORT_PREBUILT/bin/"
  for f in "$BIN"/lib*.so*; do  # llama.cpp's own libraries; ggml's are in prefix/lib
    case "$(basename "$f")" in libggml*) ;; *) cp -a "$f" "$EXPORT_PREBUILT/bin/" ;; esac
  done
  say "prebuilt build exported to $EXPORT_PREBUILT"
fi
[[ $COMPILE_ONLY -eq 1 && -z "$PREBUILT" ]] && { say "compile-only: CUDA configure + sample compile done"; exit 0; }

# --- corehead on that ggml ---------------------------------------------------------------------------
CB="$WORK/corehead-build"
step corehead_configure 120 cmake -S "$REPO" -B "$CB" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCOREHEAD_GGML_PREFIX=$PREFIX" "-DPython_EXECUTABLE=$(command -v "$PY")" || exit 1
step corehead_build 900 ninja -C "$CB" -j "$JOBS" _core corehead_shared || exit 1
PKG="$WORK/pkg"; rm -rf "$PKG"; mkdir -p "$PKG"
cp -r "$REPO/python/corehead" "$PKG/"
rm -f "$PKG"/corehead/_core*.so; mkdir -p "$PKG/corehead/lib"
cp "$CB"/_core*.so "$PKG/corehead/"; cp "$CB"/libcorehead.so "$PKG/corehead/lib/"
mkdir -p "$PKG/corehead/include"; cp -r "$REPO/cpp/include/corehead" "$PKG/corehead/include/"  # the C API header, as a wheel has it
export PYTHONPATH="$PKG:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$PREFIX/lib:$BIN:$LD_LIBRARY_PATH"
export COREHEAD_LLAMA_CPP_BIN="$BIN"
[[ $COMPILE_ONLY -eq 1 ]] && { say "compile-only: corehead built against $PREFIX"; exit 0; }

step import 60 "$PY" -c "
import corehead, json
from corehead import Engine, _core
print('compiled backends', _core.compiled_backends())
with Engine.toy(backend='$BACKEND') as e:
    e.generate('hello', max_tokens=4)
    print(json.dumps({'backend': e.info['backend'], 'placement': e.info['placement'],
                      'cpu_fallback_ops': e.info['cpu_fallback_ops']}))
" || say "import / toy run on $BACKEND FAILED"

# --- the suite, parity, speed ------------------------------------------------------------------------
if [[ $RUN_TESTS -eq 1 ]]; then
  par=()
  "$PY" -c "import xdist" 2>/dev/null && [[ "$XDIST" -gt 1 ]] && par=(-n "$XDIST")
  # shellcheck disable=SC2086
  COREHEAD_BACKEND=$BACKEND step tests "$TEST_TIMEOUT" "$PY" -m pytest $TESTS -q -rfEs -p no:cacheprovider \
    "${par[@]}" --junitxml="$OUT/junit.xml" -o junit_family=xunit1
  COREHEAD_BACKEND=$BACKEND step parity "${PARITY_TIMEOUT:-180}" "$PY" -m tools.gpu.parity --backend "$BACKEND" --also-cpu \
    --out "$OUT/parity.json"
fi
if [[ $RUN_BENCH -eq 1 ]]; then
  COREHEAD_BACKEND=$BACKEND step bench "${BENCH_TIMEOUT:-300}" "$PY" -m tools.gpu.bench --out "$OUT/bench.json"
fi

# --- summary -----------------------------------------------------------------------------------------
"$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
s = {"steps": [json.loads(l) for l in (out / "steps.jsonl").read_text().splitlines() if l.strip()]}
if (out / "junit.xml").is_file():
    r = ET.parse(out / "junit.xml").getroot()
    suites = [r] if r.tag == "testsuite" else list(r)
    s["tests"] = {k: sum(int(x.get(k, 0)) for x in suites) for k in ("tests", "failures", "errors", "skipped")}
    s["tests"]["failed"] = sorted(f"{c.get('classname')}::{c.get('name')}" for x in suites for c in x.iter("testcase")
                                  if c.find("failure") is not None or c.find("error") is not None)
for name in ("parity", "bench"):
    if (out / f"{name}.json").is_file():
        s[name] = json.loads((out / f"{name}.json").read_text())
(out / "summary.json").write_text(json.dumps(s, indent=1))
print(json.dumps({k: v for k, v in s.items() if k in ("steps", "tests")}, indent=1))
EOF
say "done in $(( $(date +%s) - T_START ))s; summary in $OUT/summary.json"
