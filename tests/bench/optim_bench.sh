#!/usr/bin/env bash
# The optimiser step benchmark as it is quoted: optim_bench with the Python
# peers (optim_peers.py: torch.optim.Adam with foreach off and on, a per-op
# Madam) as one more side of every round, run twice in a row; prints the
# machine, both runs' RATIO lines and how far each ratio moved between runs.
# A figure is worth quoting only when the two runs agree (within 10% here).
#
# Usage: tests/bench/optim_bench.sh [path/to/optim_bench] [extra optim_bench flags]
# Env:   PYTHON (default /usr/bin/python3, Debian's python3-torch); NO_PEER=1
#        runs without the Python peers.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="${1:-${here}/../../build/tests/bench/optim_bench}"
shift || true
python="${PYTHON:-/usr/bin/python3}"
[[ -x "$bench" ]] || { echo "optim_bench not found at $bench (pass its path)" >&2; exit 2; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

peer=()
if [[ -z "${NO_PEER:-}" ]]; then
  if "$python" -c 'import torch' 2>/dev/null; then
    peer=(--peer "$python $here/optim_peers.py")
  else
    echo "note: $python has no torch; running without the Python peers" >&2
  fi
fi

model="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
echo "machine: ${model:-unknown} ($(getconf _NPROCESSORS_ONLN) CPUs), $(uname -m)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for run in 1 2; do
  echo "=== run $run"
  "$bench" "${peer[@]}" "$@" | tee "$tmp/run$run.txt"
done

echo
echo "=== ratios, run 1 vs run 2 (change relative to run 1)"
"$python" - "$tmp/run1.txt" "$tmp/run2.txt" <<'EOF'
import sys

def ratios(path):
    out = {}
    for line in open(path):
        if line.startswith("RATIO "):
            words = line.split()
            label = words[1]
            for name, value in zip(words[2::2], words[3::2]):
                out[(label, name)] = float(value)
    return out

a, b = ratios(sys.argv[1]), ratios(sys.argv[2])
worst = 0.0
for key in a:
    if key not in b:
        continue
    change = (b[key] - a[key]) / a[key]
    worst = max(worst, abs(change))
    print(f"  {key[0]:<20} {key[1]:<22} {a[key]:8.3f} {b[key]:8.3f} {change:+7.1%}")
print(f"largest change between runs: {worst:.1%}" + ("" if worst <= 0.10 else "  (> 10%: rerun)"))
EOF
