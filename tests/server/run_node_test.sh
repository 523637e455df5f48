#!/usr/bin/env bash
# Runs a node client (tests/server/node/*.mjs) against a real `assistgen serve`
# on loopback, bounded in time. Usage:
#   run_node_test.sh install WORKDIR NODEDIR
#       npm ci of the pinned packages (package.json + package-lock.json) into WORKDIR
#   run_node_test.sh openai|load WORKDIR NODEDIR CLI MODELS TEMPLATE
#       starts `assistgen serve` (kjv-target assisted by kjv-draft, --port 0,
#       an API key), runs the client, then stops the server with SIGTERM,
#       which must exit 0 (graceful shutdown).
# Without node and npm, or without the npm registry, it prints the skip
# marker (tests/test_skip.hpp) and exits 0: ctest reports "Skipped".
# scripts/install-deps.sh --test installs nodejs and npm, so CI runs it.
set -euo pipefail
mode=$1 work=$2 nodedir=$3
skip() { echo "ASSISTGEN_TEST_SKIPPED: $*"; exit 0; }
command -v node > /dev/null || skip "node is not installed (scripts/install-deps.sh --test installs nodejs and npm)"
command -v npm > /dev/null || skip "npm is not installed (scripts/install-deps.sh --test installs nodejs and npm)"
mkdir -p "$work"

if [[ $mode == install ]]; then
  if [[ -d $work/node_modules ]] && cmp -s "$nodedir/package-lock.json" "$work/package-lock.json"; then
    echo "pinned packages already installed in $work"
    exit 0
  fi
  timeout 60 npm ping > /dev/null 2>&1 || skip "the npm registry is unreachable (npm ping failed)"
  rm -rf "$work/node_modules"
  cp "$nodedir/package.json" "$nodedir/package-lock.json" "$work/"
  (cd "$work" && timeout 300 npm ci --no-audit --no-fund)
  exit 0
fi

cli=$4 models=$5 template=$6
[[ -d $work/node_modules/openai && -d $work/node_modules/autocannon ]] ||
  skip "the pinned npm packages are not installed (the server_node:npm_ci test was skipped)"
cp "$nodedir"/*.mjs "$work/"
key="test-key-$$"
log="$work/serve-$mode.log"
: > "$log"
"$cli" serve -m "$models/kjv-target" -a "$models/kjv-draft" --template "$template" --port 0 \
  --api-key "$key" --max-batch 8 --shutdown-grace 5 > "$log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2> /dev/null || true' EXIT
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9][0-9]*\).*/\1/p' "$log")
  [[ -n $port ]] && break
  kill -0 $pid 2> /dev/null || { cat "$log"; echo "FAIL: assistgen serve exited at start"; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { cat "$log"; echo "FAIL: assistgen serve did not start in 60 s"; exit 1; }
model=$(sed -n 's/.*(model "\([^"]*\)".*/\1/p' "$log")
base="http://127.0.0.1:$port"
echo "assistgen serve on $base (model $model)"
rc=0
case $mode in
  openai) timeout 300 node "$work/openai_client.mjs" "$base" "$key" "$cli" "$models" "$template" "$model" || rc=$? ;;
  load) timeout 120 node "$work/load.mjs" "$base" "$key" "$model" 16 10 || rc=$? ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
kill -TERM $pid
for _ in $(seq 1 300); do kill -0 $pid 2> /dev/null || break; sleep 0.1; done
if kill -0 $pid 2> /dev/null; then
  echo "FAIL: assistgen serve did not stop within 30 s of SIGTERM"
  rc=1
else
  wait $pid || { echo "FAIL: assistgen serve exited $? after SIGTERM"; rc=1; }
fi
trap - EXIT
tail -n 3 "$log"
exit $rc
