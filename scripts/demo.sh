#!/usr/bin/env bash
# The main job: builds the CLI (Release) and runs generation on the demo models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== configuring and building (Release) ..."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DASSISTGEN_BUILD_TESTS=OFF -DASSISTGEN_BUILD_BENCHMARKS=OFF > build-demo-configure.log 2>&1 || { cat build-demo-configure.log; exit 1; }
cmake --build build -j"$(nproc)" --target assistgen_cli
rm -f build-demo-configure.log
./build/examples/assistgen generate -m tests/data/models/llama-gqa -a tests/data/models/llama-gqa-noisy --tokens 1,17,42,99 -n 32
