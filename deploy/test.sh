#!/usr/bin/env bash
# The one test command (README.md, .ci/run): installs the dependencies,
# lints the deployment files (deploy/lint.sh), configures, builds and runs
# every test with ctest.
#   deploy/test.sh [extra ctest args...]
# Environment: BUILD_DIR (default build), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-2}

./deploy/install-deps.sh
./deploy/lint.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$jobs"
cd "$build_dir"
ctest --output-on-failure --no-tests=error "$@"
