#!/usr/bin/env bash
# Builds the codec's libFuzzer target in build-fuzz (clang++) and fuzzes it
# for SECONDS (default 60) on a scratch copy of tests/fuzz/corpus. Fails on
# any crash, leak or timeout; the reproducer is left in build-fuzz/artifacts/.
# Extra arguments go to libFuzzer and override the defaults below, e.g.
# run.sh 3600 -jobs=2 -workers=2 -max_len=4096.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
build=${SMSP_FUZZ_BUILD:-build-fuzz}

cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DSMSP_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target codec_fuzz

# New inputs go to a scratch corpus, never into the committed one. libFuzzer
# runs inside the build directory, so that -jobs' fuzz-N.log files land there.
corpus=$PWD/tests/fuzz/corpus
cd "$build"
work=fuzz-corpus
rm -rf "$work"
mkdir -p "$work" artifacts
cp "$corpus"/* "$work/"
log=fuzz.log

set +e
bin/codec_fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=1024 -print_final_stats=1 -artifact_prefix=artifacts/ "$@" \
  "$work" >"$log" 2>&1
status=$?
set -e
grep -E '^(INFO: seed corpus|#[0-9]+ +(INITED|DONE))|ERROR|SUMMARY|invariant|^artifact' \
  "$log" || true

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
echo "codec_fuzz: ${runs:-?} executions, ${rate:-?} exec/s (run of at most" \
     "${seconds} s), corpus $(ls "$work" | wc -l) inputs (log: $build/$log)"
if [ "$status" -ne 0 ]; then
  echo "codec_fuzz FAILED (exit $status); reproducer(s):" >&2
  ls -l "$PWD/artifacts/" >&2
  exit 1
fi
