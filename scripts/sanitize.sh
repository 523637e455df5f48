#!/usr/bin/env bash
# The sanitizer stages of CI (scripts/test.sh runs them after the Release
# suite; a failure fails CI). Usage: scripts/sanitize.sh [asan|tsan|all]
#
#   asan  the whole test suite built with AddressSanitizer + UndefinedBehavior-
#         Sanitizer (-DASSISTGEN_SANITIZE=address, Debug at -O1 for speed) in
#         build-asan, run with ctest; the fuzz corpora replay in it too
#         (fuzz_replay:*). Not run here: package:* and custom_backend:*, which
#         build an unsanitized project against the installed library (they test
#         packaging and run in the Release stage).
#   tsan  tests/integration/test_concurrency.cpp and the CPU backend's worker
#         pool (tests/unit/test_parallel.cpp) built with ThreadSanitizer
#         (-DASSISTGEN_SANITIZE=thread) in build-tsan. Run with ctest
#         (-R '^(test_concurrency|test_parallel):'); OMP_NUM_THREADS=1 comes
#         from the tests' ctest properties: libgomp and oneDNN are not TSan-
#         instrumented, so their worker pools would be reported as false
#         races; with one OpenMP
#         thread each std::thread runs its parallel regions inline, and the
#         races that matter (between our threads, on shared model state) are
#         still seen. scripts/tsan.supp names what remains uninstrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
jobs="$(nproc)"
common=(-G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" -DASSISTGEN_BUILD_BENCHMARKS=OFF)

run_asan() {
  echo "== sanitize: ASan + UBSan, whole test suite (build-asan)"
  cmake -S . -B build-asan "${common[@]}" -DASSISTGEN_SANITIZE=address
  # Every executable (tests, the CLI test_cli runs, fuzz replays), but not the
  # compile-only checks (tests/headers), which the Release stage already did.
  mapfile -t exes < <(ninja -C build-asan -t targets all |
    awk -F': ' '$2 ~ /EXECUTABLE_LINKER/ && $1 !~ /\.cmake$/ { print $1 }')
  cmake --build build-asan -j"$jobs" --target "${exes[@]}"
  ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^(package|custom_backend):'
}

run_tsan() {
  echo "== sanitize: TSan, concurrency and worker pool tests (build-tsan)"
  cmake -S . -B build-tsan "${common[@]}" -DASSISTGEN_SANITIZE=thread -DASSISTGEN_BUILD_EXAMPLES=OFF -DASSISTGEN_BUILD_CLI=OFF
  cmake --build build-tsan -j"$jobs" --target test_concurrency test_parallel
  # Through ctest, so that the log ends with its summary like the other
  # stages; the test properties already set OMP_NUM_THREADS=1 (tests/CMakeLists.txt).
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp" \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" -R '^(test_concurrency|test_parallel):'
}

case "$stage" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
