#!/usr/bin/env bash
# What the compiler emitted for the fused CPU kernels: for each range kernel
# in kernels.cc's object file, the widest vector registers it uses and how
# many divisions, square roots, min/max (the clamps) and fused multiply-adds
# (there must be none: detail/elementwise.h) it holds. Reads the object file
# of an existing build; changes nothing.
#
# Usage: tests/bench/kernel_asm.sh [build_dir]
set -euo pipefail
build="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}"
obj="$(find "$build" -path '*madam_optim.dir*' -name 'kernels.cc.o' -print -quit)"
[[ -n "$obj" ]] || { echo "no kernels.cc.o under $build (build madam_optim first)" >&2; exit 2; }
command -v objdump >/dev/null || { echo "objdump not found (binutils)" >&2; exit 2; }
objdump -d --no-show-raw-insn -C "$obj" | awk '
  function flush() {
    if (name != "") {
      width = zmm ? "zmm (512-bit)" : (ymm ? "ymm (256-bit)" : "xmm (128-bit)")
      printf "%-26s %-14s zmm %4d  ymm %4d  div %2d  sqrt %2d  min/max %2d  fma %d\n",
             name, width, zmm, ymm, ndiv, nsqrt, minmax, fma
    }
    name = ""; zmm = ymm = ndiv = nsqrt = minmax = fma = 0
  }
  /^[0-9a-f]+ <.*Range[A-Za-z0-9]*\(/ {
    flush()
    match($0, /[A-Za-z]*Range[A-Za-z0-9]*\(/)
    name = substr($0, RSTART, RLENGTH - 1)
    next
  }
  /^[0-9a-f]+ </ { flush(); next }
  name != "" {
    if ($0 ~ /%zmm/) zmm++
    if ($0 ~ /%ymm/) ymm++
    if ($0 ~ /divp[sd]/) ndiv++
    if ($0 ~ /sqrtp[sd]/) nsqrt++
    if ($0 ~ /(v)?(min|max)ps/) minmax++
    if ($0 ~ /vfn?m(add|sub)/) fma++
  }
  END { flush() }'
