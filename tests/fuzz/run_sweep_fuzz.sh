#!/usr/bin/env bash
# Fuzzes the sweep-file parser with libFuzzer, ASan and UBSan.
#
#   tests/fuzz/run_sweep_fuzz.sh [SECONDS] [BUILD_DIR]
#
# Configures tests/fuzz on its own with clang (no LibTorch, no gRPC), builds
# sweep_spec_fuzz, and fuzzes for SECONDS (default 60) starting from the
# committed corpus. New interesting inputs go to a scratch directory, never
# into the repository. A crash, leak, timeout or out-of-memory leaves its
# input under BUILD_DIR/artifacts/; copy it into tests/fuzz/corpus/sweep_spec/
# (named for what it found) so it replays in every build from then on.
#
# Needs Debian packages: clang, libclang-rt-dev (libFuzzer and the
# sanitizer runtimes), cmake, libyaml-cpp-dev. CXX picks the compiler.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${2:-$root/build-fuzz}"
cxx="${CXX:-clang++}"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "run_sweep_fuzz.sh: $cxx not found; install clang and libclang-rt-dev" >&2
  exit 2
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$root/tests/fuzz" -B "$build" "${generator[@]}" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target sweep_spec_fuzz -j "${JOBS:-1}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/artifacts"

# Limits mirror the parser's promise: each input within 1 s (2 s allows for
# the sanitizers) and no single allocation of 64 MiB.
set +e
"$build/sweep_spec_fuzz" \
  -max_total_time="$seconds" \
  -timeout="${FUZZ_TIMEOUT:-2}" \
  -malloc_limit_mb=64 \
  -rss_limit_mb=1024 \
  -max_len=65536 \
  -dict="$root/tests/fuzz/sweep_spec.dict" \
  -artifact_prefix="$build/artifacts/" \
  -print_final_stats=1 \
  "$scratch" "$root/tests/fuzz/corpus/sweep_spec"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "run_sweep_fuzz.sh: the fuzzer found a problem (exit $status); inputs in $build/artifacts/" >&2
  echo "add each as a regression input under tests/fuzz/corpus/sweep_spec/" >&2
fi
exit "$status"
