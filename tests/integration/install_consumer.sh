#!/usr/bin/env bash
# Installs the build into a temporary prefix, then configures, builds and runs
# an outside CMake project that links madam::optim through find_package.
# Usage: install_consumer.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
required=(include/madam/optim/madam.h include/madam/optim/integer_madam.h)
# Each binary the build made must be installed too.
for bin in madamd madam-worker madamctl; do
  if [[ -n "$(find "$build_dir" -name "$bin" -type f -perm -u+x -print -quit)" ]]; then
    required+=("bin/$bin")
  fi
done
for f in "${required[@]}"; do
  if [[ ! -e "$work/prefix/$f" ]]; then
    echo "install_consumer: cmake --install did not install $f" >&2
    exit 1
  fi
done
if ! compgen -G "$work/prefix/lib*/cmake/madam/madamConfig.cmake" >/dev/null; then
  echo "install_consumer: no madamConfig.cmake under $work/prefix" >&2
  exit 1
fi
cmake -S "$src_dir/tests/integration/install_consumer" -B "$work/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" -j2 >/dev/null
"$work/build/consumer"
