#!/usr/bin/env bash
# Data-parallel scaling on CPU (ARCHITECTURE.md section 6, `devices`):
# fmnist-mlp with Madam, the same global batch of 2b examples a step, as
#   1rank-1t  one rank, one intra-op thread        (the single-core baseline)
#   1rank-2t  one rank, two intra-op threads       (both cores, no c10d)
#   2rank     two ranks of one thread each (Gloo)  (both cores, data parallel)
# in REPS alternating rounds after one warm-up round of each, so load from
# other processes hits all alike. Prints the median training-loop samples/s
# of each (evaluation excluded) and the scaling efficiency, 2rank / (2 x
# 1rank-1t), with 2rank / 1rank-2t beside it.
#
# Usage: tests/bench/ranks_scaling.sh [path/to/madam-worker] [reps] [b]
# Env: MADAM_DATA_DIR (default /usr/share/datasets/fashion-mnist).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
worker="${1:-${here}/../../build/worker/madam-worker}"
reps="${2:-3}"
b="${3:-128}"
data_dir="${MADAM_DATA_DIR:-/usr/share/datasets/fashion-mnist}"
[[ -x "$worker" ]] || { echo "madam-worker not found at $worker (pass its path)" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

one() {  # NAME ROUND ARGS...
  local name="$1" round="$2"
  shift 2
  "$worker" train --task fmnist-mlp --optimizer madam --lr 0.01 --epochs 1 --seed 0 \
    --device cpu --data-dir "$data_dir" --no-progress --param layer_stats_per_epoch=0 \
    --summary-json "$tmp/$name-$round.json" "$@" 2>"$tmp/worker.log" \
    || { cat "$tmp/worker.log" >&2; exit 1; }
}

for ((r = 0; r <= reps; r++)); do  # round 0 warms up
  one 1rank-1t "$r" --threads 1 --batch-size $((2 * b))
  one 2rank "$r" --threads 2 --cpu-ranks 2 --param devices=2 --batch-size "$b"
  one 1rank-2t "$r" --threads 2 --batch-size $((2 * b))
done

python3 - "$tmp" "$reps" "$b" <<'PY'
import json, statistics, sys
tmp, reps, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
med = {}
for name in ("1rank-1t", "1rank-2t", "2rank"):
    runs = [json.load(open(f"{tmp}/{name}-{r}.json"))["final"] for r in range(1, reps + 1)]
    med[name] = statistics.median(f["samples_per_second"] for f in runs)
    print(f"{name:9s} median {med[name]:9.0f} samples/s  test/error {runs[0]['test/error']:.2f}%")
print(f"fmnist-mlp, madam, global batch {2 * b} ({b} per rank), {reps} alternating rounds")
print(f"scaling efficiency 2rank / (2 x 1rank-1t): {med['2rank'] / (2 * med['1rank-1t']):.2f}")
print(f"2rank / 1rank-2t (same two cores, threads instead of ranks): {med['2rank'] / med['1rank-2t']:.2f}")
PY
