#!/usr/bin/env bash
# Configure and compile corehead with the ggml CUDA backend for one GPU architecture, timed.
#
#   tools/build/check_cuda_build.sh [-j N] [--arch 80] [--build-dir build/h-cuda]
#
# It needs nvcc, and no GPU: it checks that the CUDA build compiles and links (the import
# check at the end reports whether a device is usable). The pinned ggml comes from
# tools/build/fetch_ggml.py's cache like any other build.
#
# Minimal CUDA installs (nvcc + cudart, as on the CI machines) lack cuBLAS and the driver
# stub libcuda.so. Then the script:
#   - installs the `nvidia-cublas` wheel of nvcc's major.minor version from PyPI into
#     ~/.cache/corehead/cuda-extras (headers + libcublas/libcublasLt; never into the
#     Python environment) and points CMake at it;
#   - builds with GGML_CUDA_NO_VMM=ON when no libcuda.so is found (ggml then does not link
#     the driver library directly; only its virtual-memory pool is compiled out).
# A full toolkit (or a GPU machine) uses neither fallback.
#
# Environment: CUDA_HOME (toolkit root; default: from nvcc), NICE (default 19), JOBS.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARCH="${CUDA_ARCH:-80}"
BUILD_DIR="${BUILD_DIR:-$REPO/build/h-cuda}"
JOBS="${JOBS:-$(nproc)}"
NICE="${NICE:-19}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -j) JOBS="$2"; shift 2 ;;
    -j*) JOBS="${1#-j}"; shift ;;
    --arch) ARCH="$2"; shift 2 ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"
LOG="$BUILD_DIR.log"
PY="${PYTHON:-python3}"

say() { echo "[check_cuda_build] $*" | tee -a "$LOG"; }
mkdir -p "$(dirname "$LOG")"; : > "$LOG"

# --- the toolkit ------------------------------------------------------------------------
NVCC="$(command -v nvcc || true)"
[[ -n "$NVCC" ]] || { say "nvcc not found on PATH: install the CUDA toolkit"; exit 1; }
if [[ -z "${CUDA_HOME:-}" ]]; then
  # nvcc may be a wrapper script: ask it where its toolkit is (its _TOP_).
  top="$("$NVCC" --dryrun -x cu -E /dev/null 2>&1 | sed -n 's/^#\$ _TOP_=//p' | head -1)"
  for c in "$top" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda; do
    if [[ -n "$c" && -f "$c/include/cuda_runtime.h" ]]; then CUDA_HOME="$(cd "$c" && pwd)"; break; fi
  done
fi
[[ -n "${CUDA_HOME:-}" ]] || { say "cannot find the CUDA toolkit root: set CUDA_HOME"; exit 1; }
CUDA_VER="$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')"
say "nvcc $CUDA_VER at $CUDA_HOME; arch $ARCH; build dir $BUILD_DIR; -j$JOBS; nice $NICE"

CMAKE_EXTRA=()
CUDA_FLAGS=""
LIB_PATH=""
if [[ ! -f "$CUDA_HOME/include/cublas_v2.h" ]]; then
  extras="${COREHEAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/corehead}/cuda-extras/cublas-$CUDA_VER"
  if [[ ! -f "$extras/.complete" ]]; then
    say "no cuBLAS in the toolkit: installing nvidia-cublas==$CUDA_VER.* into $extras"
    "$PY" -m pip install --quiet --no-deps --target "$extras" "nvidia-cublas==$CUDA_VER.*" >>"$LOG" 2>&1 \
      || { say "pip install nvidia-cublas==$CUDA_VER.* failed (see $LOG)"; exit 1; }
    touch "$extras/.complete"
  fi
  inc="$(dirname "$(find "$extras" -name cublas_v2.h | head -1)")"
  lib="$(dirname "$(find "$extras" -name 'libcublas.so*' | head -1)")"
  [[ -d "$inc" && -d "$lib" ]] || { say "nvidia-cublas wheel has no headers/libraries under $extras"; exit 1; }
  say "cuBLAS from the wheel: $inc, $lib"
  CUDA_FLAGS="-I$inc"
  LIB_PATH="$lib"
  CMAKE_EXTRA+=("-DCUDA_cublas_LIBRARY=$(ls "$lib"/libcublas.so* | head -1)"
                "-DCUDA_cublasLt_LIBRARY=$(ls "$lib"/libcublasLt.so* | head -1)")
fi
if ! ls "$CUDA_HOME"/lib64/stubs/libcuda.so "$CUDA_HOME"/lib/stubs/libcuda.so "$CUDA_HOME"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1 \
   && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\b'; then
  say "no libcuda.so (driver or toolkit stub): building with GGML_CUDA_NO_VMM=ON"
  CMAKE_EXTRA+=("-DGGML_CUDA_NO_VMM=ON")
fi

# --- configure + build ------------------------------------------------------------------
t0=$(date +%s)
nice -n "$NICE" cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc" \
  "-DCUDAToolkit_ROOT=$CUDA_HOME" "-DCMAKE_CUDA_FLAGS=$CUDA_FLAGS" "${CMAKE_EXTRA[@]}" >>"$LOG" 2>&1 \
  || { say "configure FAILED after $(( $(date +%s) - t0 ))s (see $LOG)"; exit 1; }
t1=$(date +%s)
say "configured in $((t1 - t0))s"
set +e
nice -n "$NICE" cmake --build "$BUILD_DIR" -j "$JOBS" >>"$LOG" 2>&1
rc=$?
set -e
t2=$(date +%s)
progress="$(grep -o '^\[[0-9]*/[0-9]*\]' "$LOG" | tail -1)"
cuda_files="$(find "$BUILD_DIR" -name '*.cu.o' | wc -l)"
if [[ $rc -ne 0 ]]; then
  say "build FAILED after $((t2 - t1))s at step $progress ($cuda_files .cu files compiled); see $LOG"
  exit 1
fi
say "build OK: configure $((t1 - t0))s + build $((t2 - t1))s = $((t2 - t0))s with -j$JOBS ($cuda_files .cu files, last step $progress)"

# --- the module loads, and says whether CUDA is usable here ------------------------------
so="$(ls "$BUILD_DIR"/_core*.so 2>/dev/null | head -1)"
if [[ -n "$so" ]]; then
  pkg="$(mktemp -d)"; trap 'rm -rf "$pkg"' EXIT
  cp -r "$REPO/python/corehead" "$pkg/"; cp "$so" "$pkg/corehead/"
  LD_LIBRARY_PATH="${LIB_PATH:+$LIB_PATH:}${LD_LIBRARY_PATH:-}" PYTHONPATH="$pkg" "$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import corehead._core as core
print("[check_cuda_build] compiled backends:", core.compiled_backends())
EOF
fi
