#!/usr/bin/env bash
# Builds the libFuzzer targets with ASan + UBSan (clang) and fuzzes them at once.
#
#   tools/fuzz/run.sh SECONDS           # each target for SECONDS (default 60), one core each
#   tools/fuzz/run.sh 0                 # build + seed corpora only
#   FUZZ_BUILD=build/fuzz FUZZ_NICE=19 tools/fuzz/run.sh 1800
#   FUZZ_TARGETS=gguf tools/fuzz/run.sh 600   # one target only (gguf, image or capi)
#   FUZZ_NO_BUILD=1 tools/fuzz/run.sh 3600    # skip the (incremental) build
#
# Corpora grow in $FUZZ_BUILD/corpus/{gguf,image,capi} (seeded from tests/data by make_seeds.py;
# capi, the C API target, starts from the GGUF corpus);
# crashes, leaks, timeouts and OOMs land in $FUZZ_BUILD/artifacts/ and make the script exit 1.
# Logs: $FUZZ_BUILD/fuzz_{gguf,image,capi}.log (the last "#N DONE cov: ... ft: ... exec/s" line is the summary).
# Replay one input: $FUZZ_BUILD/fuzz_gguf FILE
set -euo pipefail
SECONDS_PER_TARGET=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build/fuzz}
NICE=${FUZZ_NICE:-19}
JOBS=${FUZZ_BUILD_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-gguf image capi}

if [ -z "${FUZZ_NO_BUILD:-}" ]; then  # FUZZ_NO_BUILD=1: fuzz the binaries as they are
  CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$ROOT/tools/fuzz" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD" -j "$JOBS" $(for t in $TARGETS; do echo "fuzz_$t"; done)
fi

if [ ! -d "$BUILD/corpus/gguf" ]; then
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -m tools.fuzz.make_seeds "$BUILD/corpus"
fi
# The C API target loads the same kind of input: it starts from the GGUF corpus.
[ -d "$BUILD/corpus/capi" ] || cp -r "$BUILD/corpus/gguf" "$BUILD/corpus/capi"
mkdir -p "$BUILD/artifacts"
[ "$SECONDS_PER_TARGET" -gt 0 ] || exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# -timeout is wall-clock: on a loaded machine at nice 19 a 0.2 s (CPU) input can take a minute.
common=(-max_total_time="$SECONDS_PER_TARGET" -timeout="${FUZZ_TIMEOUT:-120}" -rss_limit_mb=4096 -malloc_limit_mb=2048
        -print_final_stats=1 -reload=60 -report_slow_units="${FUZZ_SLOW_UNIT:-60}")
pids=()
for t in $TARGETS; do
  extra=()
  case $t in gguf | capi) extra=(-max_len=262144 -dict="$ROOT/tools/fuzz/gguf.dict") ;; esac
  timer=()
  command -v /usr/bin/time >/dev/null && timer=(/usr/bin/time -f "cpu %U s user + %S s sys, wall %e s" -o "$BUILD/fuzz_$t.time")
  "${timer[@]}" nice -n "$NICE" "$BUILD/fuzz_$t" "${common[@]}" "${extra[@]}" -artifact_prefix="$BUILD/artifacts/$t-" \
    "$BUILD/corpus/$t" >"$BUILD/fuzz_$t.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for t in $TARGETS; do
  echo "== fuzz_$t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$BUILD/fuzz_$t.log" | tail -1)"
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$BUILD/fuzz_$t.log" || true
  cat "$BUILD/fuzz_$t.time" 2>/dev/null || true
done
# slow-unit-* files are informational (inputs slower than -report_slow_units seconds, wall clock).
if ls "$BUILD"/artifacts/{crash,leak,timeout,oom}-* "$BUILD"/artifacts/*-{crash,leak,timeout,oom}-* >/dev/null 2>&1; then
  echo "findings in $BUILD/artifacts:"; ls -l "$BUILD/artifacts"; rc=1
fi
exit $rc
