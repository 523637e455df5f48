#!/usr/bin/env bash
# Installs the Debian 12 packages assistgen needs. Idempotent; run as root.
#   scripts/install-deps.sh          what the library, the CLI and the demo
#                                    (scripts/demo.sh) need to build and run
#   scripts/install-deps.sh --test   also what the test suite, the benchmarks,
#                                    the docs check and the fresh-machine
#                                    stage (scripts/test.sh) need
# Packages are installed without their Recommends, so everything needed is
# named here; the fresh-root stage of the test suite (scripts/fresh-root.sh)
# proves it on a bare Debian 12 system.
set -euo pipefail
# ocl-icd-opencl-dev: only a Recommends of libdnnl-dev, but Debian's
# dnnl-config.cmake (oneDNN built with the OpenCL GPU runtime) runs
# find_package(OpenCL REQUIRED), so CMake's configure fails without it.
# libcli11-dev: the command-line tool's option parser. libcpp-httplib-dev:
# the HTTP server (assistgen::server, `assistgen serve`). libopenmpi-dev and
# openmpi-bin (mpirun): the tensor-parallel target (assistgen::mpi,
# `mpirun -np N assistgen ...`, docs/distributed.md) and its tests.
pkgs=(g++ cmake ninja-build pkg-config libeigen3-dev libdnnl-dev ocl-icd-opencl-dev
      nlohmann-json3-dev libpcre2-dev libutf8proc-dev libcli11-dev libcpp-httplib-dev
      libopenmpi-dev openmpi-bin)
case "${1:-}" in
  "") ;;
  --test)
    # catch2 (v2) and libbenchmark-dev: the tests and benchmarks; doxygen: the
    # docs:doxygen test; debootstrap: the fresh-root stage; tmux: the test
    # of `assistgen chat` on a terminal (skipped without it).
    pkgs+=(catch2 libbenchmark-dev doxygen debootstrap tmux)
    # nodejs and npm: the server's tests with real clients (tests/server/node:
    # the `openai` client and `autocannon`, pinned, installed by `npm ci`).
    # A machine with node and npm already (e.g. NodeSource's nodejs, which
    # bundles npm and conflicts with Debian's npm package) keeps its own.
    if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
      pkgs+=(nodejs npm)
    fi ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
