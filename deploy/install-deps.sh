#!/usr/bin/env bash
# Installs every Debian package that building madam, its tests, its benchmarks
# and the main job need. Idempotent and non-interactive: packages already
# present are left as they are, so a second run costs one dpkg query.
set -euo pipefail

# What madam builds and runs with lives in deploy/packages/*.txt,
# shared with the container images (deploy/docker/); this script adds what
# tests, benchmarks and the deployment checks need on top.
here=$(dirname "$0")
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' \
  "$here"/packages/*.txt)
packages+=(
  # tests and benchmarks (sqlite3: the CLI, to inspect stores)
  libgtest-dev libgmock-dev libbenchmark-dev python3-torch python3-optuna
  # the ImageNet input pipeline benchmark's baseline (tests/bench/imagenet_loader_bench.py)
  python3-torchvision
  # the Frechet distance fixture's generator (tests/unit/worker/fid_reference.py)
  python3-scipy
  # the brief fuzz run in CI: clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev sqlite3
  # security tests: certificates for TLS / mutual TLS are made with openssl
  openssl
  # observability integration tests: a real Prometheus (and promtool), headless
  # Chromium for the dashboard, and a font for its screenshots
  prometheus chromium fonts-dejavu-core
  # the CPU-scale language model's corpus (tools/make_kjv_corpus.py)
  bible-kjv bible-kjv-text
  # deployment checks (deploy/lint.sh) and the network-namespace test
  shellcheck systemd iproute2 python3-yaml python3-kubernetes
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

sudo_cmd=()
if ((EUID != 0)); then sudo_cmd=(sudo); fi
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The kjv-transformer task's corpus, converted from bible-kjv-text once
# (a few seconds; the same bytes every time, tests/integration/kjv_corpus_test.sh).
kjv_dir=/usr/local/share/madam/kjv-lm
if [[ ! -s "$kjv_dir/wiki.test.tokens" ]]; then
  echo "install-deps: writing the King James corpus to $kjv_dir"
  "${sudo_cmd[@]}" python3 "$here/../tools/make_kjv_corpus.py" --out "$kjv_dir" \
    --vocab 5000 --train-every 4
fi
