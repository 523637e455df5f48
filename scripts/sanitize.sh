#!/usr/bin/env bash
# The sanitizer stages of CI (scripts/test.sh runs them after the Release
# suite; a failure fails CI). Usage: scripts/sanitize.sh [asan|tsan|all]
#
#   asan  the whole test suite built with AddressSanitizer + UndefinedBehavior-
#         Sanitizer (-DASSISTGEN_SANITIZE=address, Debug at -O1 -g1 for speed;
#         UBSan without its null and alignment checks, CMakeLists.txt) in
#         build-asan, run with ctest; the fuzz corpora replay in it too
#         (fuzz_replay:*). Not run here: package:* and custom_backend:*, which
#         build an unsanitized project against the installed library (they test
#         packaging and run in the Release stage), and compile_fail:*, which
#         only run the compiler (the Release stage runs them). A sanitizer report exits
#         with code 86 (ASan, LSan and UBSan alike: the runtimes share their
#         common flags, so both option strings set the same exitcode), never
#         1: test_cli expects exit 1 from the CLI for user errors, and a report
#         in a CLI child process must not pass for one.
#         The mpi:* tests run with LSan's leak check off
#         (tests/mpi/CMakeLists.txt): Open MPI leaks in the components it
#         unloads at MPI_Finalize, stacks no suppression can name.
#   tsan  every test that runs threads, built with ThreadSanitizer
#         (-DASSISTGEN_SANITIZE=thread) in build-tsan and run with ctest:
#         test_concurrency (models and tokenizers shared between threads),
#         test_parallel (the CPU backend's worker pool), conformance (its
#         concurrent_forward check, on every backend), hpu_test_concurrency
#         (hpu::Transformer shared between threads), the two-thread cases of
#         test_batch_invariance and test_kernels (forward passes and matmuls
#         split over the worker pool; weight buffers allocated and freed from
#         several threads), test_tokenizer's threaded case, and
#         test_server (the HTTP server: request threads, the engine thread,
#         cancellation and shutdown; cpp-httplib's own code is Debian's
#         uninstrumented library, its locks seen through TSan's interceptors).
#         OMP_NUM_THREADS=1 comes from the tests' ctest properties: libgomp and
#         oneDNN are not TSan-instrumented, so their worker pools would be
#         reported as false races; with one OpenMP thread each std::thread
#         runs its parallel regions inline (OpenMP only packs weights at load),
#         while the backend's own worker pool (instrumented) still runs the
#         threads the tests ask for. scripts/tsan.supp names what remains
#         uninstrumented.
#
# Every ctest run uses --no-tests=error, and the TSan stage checks each of its
# patterns on its own, so a renamed test cannot make a stage pass by
# matching nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
jobs="$(nproc)"
# -g1: line tables only (the reports' stacks keep file:line), a quarter less
# compile time and a smaller build than -g.
common=(-G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" -DASSISTGEN_BUILD_BENCHMARKS=OFF)

run_asan() {
  echo "== sanitize: ASan + UBSan, whole test suite (build-asan)"
  cmake -S . -B build-asan "${common[@]}" -DASSISTGEN_SANITIZE=address
  # Every executable (tests, the CLI test_cli runs, fuzz replays), but not the
  # compile-only checks (tests/headers), which the Release stage already did.
  mapfile -t exes < <(ninja -C build-asan -t targets all |
    awk -F': ' '$2 ~ /EXECUTABLE_LINKER/ && $1 !~ /\.cmake$/ { print $1 }')
  cmake --build build-asan -j"$jobs" --target "${exes[@]}"
  ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:exitcode=86" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86" \
    ctest --test-dir build-asan --output-on-failure --no-tests=error -j"$jobs" -E '^(package|custom_backend|compile_fail):'
}

# The TSan stage's tests, one ctest regular expression each.
tsan_tests=(
  '^test_concurrency:'
  '^test_parallel:'
  '^conformance:'
  '^hpu_test_concurrency:'
  '^test_batch_invariance:two threads splitting every call'
  '^test_batch_invariance:logits are bit-identical on one thread and two'
  '^test_batch_invariance:attention tasks'
  '^test_batch_invariance:forward into a reused Logits allocates nothing'
  '^test_kernels:kernels are batch-invariant'
  '^test_kernels:weight buffers'
  '^test_tokenizer:encode and decode are safe to call from several threads'
  '^test_server:'
)

run_tsan() {
  echo "== sanitize: TSan, every threaded test (build-tsan)"
  cmake -S . -B build-tsan "${common[@]}" -DASSISTGEN_SANITIZE=thread -DASSISTGEN_BUILD_EXAMPLES=OFF -DASSISTGEN_BUILD_CLI=OFF
  cmake --build build-tsan -j"$jobs" --target test_concurrency test_parallel conformance hpu_test_concurrency \
    test_batch_invariance test_kernels test_tokenizer test_server
  local re count
  for re in "${tsan_tests[@]}"; do
    # (ctest -N exits 0 even when nothing matches: count instead.)
    count="$(ctest --test-dir build-tsan -N -R "$re" | awk '/^Total Tests:/ { print $3 }')"
    if [[ "${count:-0}" -eq 0 ]]; then
      echo "sanitize.sh: no ctest test matches '$re' (renamed?): fix tsan_tests" >&2
      exit 1
    fi
  done
  local all
  all="$(IFS='|'; echo "${tsan_tests[*]}")"
  # Through ctest, so that the log ends with its summary like the other
  # stages; the test properties already set OMP_NUM_THREADS=1 (tests/CMakeLists.txt).
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66:suppressions=$PWD/scripts/tsan.supp" \
    ctest --test-dir build-tsan --output-on-failure --no-tests=error -j"$jobs" -R "$all"
}

case "$stage" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
