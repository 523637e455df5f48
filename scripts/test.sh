#!/usr/bin/env bash
# The README's test command (and all that CI runs, through .ci/run): installs
# the packages it needs, then
#   1. builds everything (Release) and runs the whole test suite with ctest;
#   2. the sanitizer stages (scripts/sanitize.sh: the whole suite under ASan +
#      UBSan, the concurrency tests under TSan);
#   3. the fresh-machine stage (scripts/fresh-root.sh): a bare Debian 12 root
#      made by debootstrap, where the README's run command must pass, so a
#      package missing from scripts/install-deps.sh fails here even on a
#      machine that has it installed.
# Each stage prints how long it took. Any failure fails the script.
# ASSISTGEN_SKIP_SANITIZERS=1 skips stage 2 (local quick runs only): it is
# ignored when CI is set, so CI always runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
stage_start=$SECONDS
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DASSISTGEN_BUILD_TESTS=ON -DASSISTGEN_BUILD_BENCHMARKS=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure --no-tests=error -j"$(nproc)"
echo "== Release build and test suite: $((SECONDS - stage_start)) s"
if [[ -n "${CI:-}" || "${ASSISTGEN_SKIP_SANITIZERS:-0}" != 1 ]]; then
  stage_start=$SECONDS
  bash scripts/sanitize.sh all
  echo "== sanitizer stages: $((SECONDS - stage_start)) s"
fi
bash scripts/fresh-root.sh
