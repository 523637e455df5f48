#!/usr/bin/env bash
# The main job: builds the CLI (Release) and runs assisted generation on the
# demo pair in models/, comparing it with the target alone in the same run.
# Extra arguments are passed to `assistgen generate` (e.g. --draft-max 6).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== configuring (Release) ..."
# The demo needs neither the tests nor the benchmarks (nor their packages);
# scripts/test.sh turns them back on in the same build folder.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DASSISTGEN_BUILD_TESTS=OFF -DASSISTGEN_BUILD_BENCHMARKS=OFF > /dev/null
echo "== building the assistgen CLI ..."
cmake --build build -j"$(nproc)" --target assistgen_cli
# OpenMP only packs the weights at load (generation runs on the backend's own
# worker threads); passive waiting keeps its idle threads off shared cores.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
echo "== assisted generation: target models/kjv-target-50m (bf16), draft models/kjv-draft-4m (int4)"
echo
# The draft's weights are stored in 4 bits (--draft-dtype int4): its steps get
# cheaper and it agrees with the target as often; the output is still the
# target's own, token for token.
./build/tools/assistgen/assistgen generate -m models/kjv-target-50m -a models/kjv-draft-4m \
  --draft-dtype int4 -p "And God said" -n 128 --draft-max 7 --compare --repeat 5 "$@"
