#!/usr/bin/env bash
# Builds everything (Release) and runs the whole test suite with ctest, then
# the sanitizer stages (scripts/sanitize.sh: the whole suite under ASan +
# UBSan, the concurrency test under TSan). Any failure fails the script.
# ASSISTGEN_SKIP_SANITIZERS=1 skips the sanitizer stages (local quick runs
# only): it is ignored when CI is set, so CI always runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure --no-tests=error -j"$(nproc)"
if [[ -n "${CI:-}" || "${ASSISTGEN_SKIP_SANITIZERS:-0}" != 1 ]]; then
  bash scripts/sanitize.sh all
fi
