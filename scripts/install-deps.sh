#!/usr/bin/env bash
# Installs the Debian 12 packages assistgen builds and tests with. Idempotent;
# run as root (or with sudo).
set -euo pipefail
# ocl-icd-opencl-dev: only a Recommends of libdnnl-dev, but Debian's
# dnnl-config.cmake (built with the OpenCL GPU runtime) runs
# find_package(OpenCL REQUIRED), so CMake configure fails without it.
pkgs=(g++ cmake ninja-build pkg-config libeigen3-dev libdnnl-dev ocl-icd-opencl-dev catch2
      libbenchmark-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev doxygen libcli11-dev)
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
