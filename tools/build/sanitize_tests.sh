#!/usr/bin/env bash
# Opt-in job: the pytest suite against a corehead._core built with AddressSanitizer + UBSan
# (gcc, -DCOREHEAD_SANITIZE=address,undefined). Not part of the default test run: the build
# takes ~15 minutes on 2 cores and the suite runs ~3x slower.
#
#   tools/build/sanitize_tests.sh                 # build (incremental) + full suite
#   tools/build/sanitize_tests.sh -k vision -x    # extra arguments go to pytest
#   SAN_BUILD=build/asan SAN_JOBS=2 tools/build/sanitize_tests.sh
#   SAN_TESTS="tests/test_reliability.py tests/test_vision.py" tools/build/sanitize_tests.sh -v   # some files, in this order
#
# Python is not instrumented, so libasan is preloaded; leak detection is off because the
# interpreter keeps allocations alive until exit by design. Every report is written to
# $SAN_BUILD/reports/ (UBSan keeps going, ASan stops the process); the job fails when pytest
# fails or when any report was written.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${SAN_BUILD:-$ROOT/build/asan}
JOBS=${SAN_JOBS:-2}
CC=${CC:-gcc} CXX=${CXX:-g++}

CC=$CC CXX=$CXX cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOREHEAD_SANITIZE=address,undefined >/dev/null || exit 1
nice -n "${SAN_NICE:-10}" ninja -C "$BUILD" -j "$JOBS" _core || exit 1

PKG=$BUILD/pkg
rm -rf "$PKG" && mkdir -p "$PKG"
cp -r "$ROOT/python/corehead" "$PKG/"
rm -f "$PKG"/corehead/_core*.so
cp "$BUILD"/_core*.so "$PKG/corehead/"

REPORTS=$BUILD/reports
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
if [[ "$CXX" == *clang* ]]; then
  LIBASAN=$($CXX -print-file-name=libclang_rt.asan-x86_64.so)
else
  LIBASAN=$($CXX -print-file-name=libasan.so)
fi
# libstdc++ too: python does not link it, and ASan's __cxa_throw interceptor must find the real
# one when it starts ("CHECK failed: ... real___cxa_throw != 0" on the first C++ exception otherwise).
export LD_PRELOAD="$LIBASAN $($CXX -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:log_path=$REPORTS/asan:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:log_path=$REPORTS/ubsan
export PYTHONMALLOC=malloc  # Python's own allocations go through ASan's malloc too
export PYTHONPATH=$PKG
export COREHEAD_SANITIZED=1  # tests with timing bounds relax them

cd "$ROOT"
# shellcheck disable=SC2086  # SAN_TESTS is a list of paths
python -m pytest -q -p no:cacheprovider ${SAN_TESTS:-tests} --deselect tests/test_gguf_files.py::test_version_is_set "$@"
rc=$?
unset LD_PRELOAD
n=$(find "$REPORTS" -type f | wc -l)
if [ "$n" -gt 0 ]; then
  echo "sanitizer reports ($n) in $REPORTS:"
  for f in "$REPORTS"/*; do echo "== $f"; head -40 "$f"; done
  exit 1
fi
echo "sanitizers: 0 reports (pytest exit $rc)"
exit $rc
