#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan + UBSan in build-fuzz and runs
# them. Usage: tests/fuzz/run.sh [seconds per target] [target...]
# Targets: safetensors config tokenizer_json tokenizer_codec gguf (default: all, one
# after the other). New inputs go to build-fuzz/fuzz-work/<target> (the
# committed seeds in tests/fuzz/corpus/<target> are only read); crashes go to
# build-fuzz/fuzz-artifacts/. To keep a finding as a regression test, fix it,
# then copy the reproducer to tests/fuzz/corpus/<target>/crash-<what> so that
# the fuzz_replay:<target> ctest replays it in every CI run.
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-600}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors config tokenizer_json tokenizer_codec gguf)
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DASSISTGEN_SANITIZE=address -DASSISTGEN_BUILD_FUZZERS=ON \
  -DASSISTGEN_BUILD_BENCHMARKS=OFF -DASSISTGEN_BUILD_EXAMPLES=OFF
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
mkdir -p build-fuzz/fuzz-artifacts
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/fuzz-work/$t"
  echo "== fuzz_$t for ${seconds}s"
  # -timeout is generous: on a loaded machine a normal input can stall for seconds.
  "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/fuzz-artifacts/$t-" \
    "build-fuzz/fuzz-work/$t" "tests/fuzz/corpus/$t"
done
