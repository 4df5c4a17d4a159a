#!/usr/bin/env bash
# Builds the whole project and test suite with ASan+UBSan (-DSMSP_SANITIZE=ON,
# clang++) in build-asan and runs every test there. Any finding fails its
# test: ASan and UBSan abort, LeakSanitizer exits non-zero at exit. Findings
# inside CAF 0.17 itself are exempted narrowly in tests/sanitizers/ (see the
# comments there). Extra arguments go to ctest, e.g. tests/sanitize.sh -R codec.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SMSP_ASAN_BUILD:-build-asan}
supp=$PWD/tests/sanitizers

cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DSMSP_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j2

export ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1
export LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" --output-on-failure -j2 "$@"
