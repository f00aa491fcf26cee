#!/usr/bin/env bash
# Checks that the runtime stages of the images (deploy/docker/) install every
# library the built binaries load: for each shared library a binary names
# (DT_NEEDED), the Debian package that owns the file it resolves to must be
# in deploy/packages/runtime.txt (madamd, madamctl) or runtime.txt plus
# worker-cpu.txt (madam-worker). Run by ctest (deploy.runtime_packages) on
# the binaries of the build; a library added to CMake without its runtime
# package fails here instead of in a container at start-up.
#   runtime_packages.sh MADAMD MADAM_WORKER MADAMCTL
set -euo pipefail
packages_dir="$(cd "$(dirname "$0")/../packages" && pwd)"
list() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$@"; }
# In every Debian image, debian:bookworm-slim included.
base="libc6 libgcc-s1 libstdc++6"

status=0
check() {  # check BINARY LIST_FILE...
  local binary=$1; shift
  local allowed so path owner
  allowed=" $base $(list "$@" | tr '\n' ' ') "
  while read -r so; do
    path=$(ldd "$binary" | awk -v so="$so" '$1 == so && $2 == "=>" { print $3 }')
    if [[ -z "$path" || ! -e "$path" ]]; then
      [[ "$so" == ld-linux* ]] && continue
      echo "runtime_packages: $(basename "$binary") needs $so, which does not resolve here" >&2
      status=1
      continue
    fi
    owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)
    owner=${owner%%:*}
    if [[ -z "$owner" ]]; then
      echo "runtime_packages: $(basename "$binary") needs $so ($path), which no Debian package owns" >&2
      status=1
    elif [[ "$allowed" != *" $owner "* ]]; then
      echo "runtime_packages: $(basename "$binary") needs $so from $owner; add $owner to $(basename "$1")" >&2
      status=1
    fi
  done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
}
check "$1" "$packages_dir/runtime.txt"
check "$2" "$packages_dir/runtime.txt" "$packages_dir/worker-cpu.txt"
check "$3" "$packages_dir/runtime.txt"
if ((status == 0)); then
  echo "runtime_packages: the images' runtime lists cover every library madamd, madam-worker and madamctl load"
fi
exit "$status"
