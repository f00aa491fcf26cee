#!/usr/bin/env bash
# Verifies deploy/systemd/*.service with `systemd-analyze verify`, which needs
# no running systemd (it loads the units offline), and fails on any message:
# verify reports unknown keys and bad values as warnings with status 0.
# ExecStart points at /usr/local/bin, where `cmake --install` puts the
# binaries; verify insists that the command exists, so the units are checked
# in a scratch directory with /usr/local/bin replaced by stand-in executables.
# Then `systemd-analyze security --offline` scores each unit's sandbox.
set -euo pipefail
units_dir=$(cd "$(dirname "$0")/../systemd" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/bin" "$work/units"
for bin in madamd madam-worker madamctl; do
  printf '#!/bin/sh\nexit 0\n' >"$work/bin/$bin"
  chmod +x "$work/bin/$bin"
done
for unit in "$units_dir"/*.service; do
  sed "s|/usr/local/bin/|$work/bin/|g" "$unit" >"$work/units/$(basename "$unit")"
done

status=0
check() {  # check UNIT_FILE: verify one unit, any output is a failure
  local out
  out=$(cd "$work/units" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$1" 2>&1) || status=1
  if [[ -n "$out" ]]; then
    printf 'systemd-analyze verify %s:\n%s\n' "$1" "$out" >&2
    status=1
  fi
}
check madamd.service
check madam-worker@0.service   # an instance of the template, as systemctl would load it

# Exposure scores run from 0 (sandboxed) to 10 (unprotected); both units
# score about 2 today: fail if either drifts to 3 or worse. (--threshold
# counts tenths.)
for unit in madamd.service madam-worker@0.service; do
  if ! out=$(cd "$work/units" && systemd-analyze security --offline=yes --threshold=30 --no-pager "$unit" 2>&1); then
    printf 'systemd-analyze security %s: exposure 3.0 or worse\n%s\n' "$unit" "$(tail -n 3 <<<"$out")" >&2
    status=1
  else
    printf 'systemd: %s verified, exposure %s\n' "$unit" \
      "$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]* [A-Z]*\).*/\1/p' <<<"$out")"
  fi
done
exit "$status"
