#!/usr/bin/env bash
# Installs every Debian package that building madam, its tests, its benchmarks
# and the main job need. Idempotent and non-interactive: packages already
# present are left as they are, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates python3
  # LibTorch and the BLAS it must use (without OpenBLAS LibTorch falls back
  # to the reference BLAS and trains ~15x slower)
  libtorch-dev libopenblas0-openmp
  # wire protocol
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # store, metrics, HTTP
  libsqlite3-dev sqlite3 prometheus-cpp-dev libboost-dev
  # configuration, CLI, JSON, logging, compression
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libspdlog-dev zlib1g-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3-torch python3-optuna
  # data
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if ((EUID != 0)); then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
