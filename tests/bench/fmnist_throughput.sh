#!/usr/bin/env bash
# fmnist-mlp training throughput at one thread: madam-worker (LibTorch, fused
# Madam) against an equivalent plain PyTorch loop with a per-op Madam written
# from the paper's Algorithm 1 (fmnist_throughput.py), measured in the same
# run. The two alternate REPS times so that load from other processes hits
# both alike; the best and the median of each are printed, with their ratios
# (target: >= 1.5). Both count training-loop time only (no evaluation).
#
# Usage: tests/bench/fmnist_throughput.sh [path/to/madam-worker] [epochs] [reps]
# Env: MADAM_DATA_DIR (default /usr/share/datasets/fashion-mnist),
#      PYTHON (default /usr/bin/python3, Debian's python3-torch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
worker="${1:-${here}/../../build/worker/madam-worker}"
epochs="${2:-1}"
reps="${3:-3}"
data_dir="${MADAM_DATA_DIR:-/usr/share/datasets/fashion-mnist}"
python="${PYTHON:-/usr/bin/python3}"
[[ -x "$worker" ]] || { echo "madam-worker not found at $worker (pass its path)" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

for ((r = 1; r <= reps; r++)); do
  "$worker" train --task fmnist-mlp --optimizer madam --lr 0.01 --epochs "$epochs" \
    --batch-size 128 --seed 0 --threads 1 --device cpu --data-dir "$data_dir" \
    --no-progress --metrics-out "$tmp/metrics-$r.jsonl" \
    --summary-json "$tmp/summary-$r.json" 2>"$tmp/worker.log" \
    || { cat "$tmp/worker.log" >&2; exit 1; }
  "$python" "$here/fmnist_throughput.py" --epochs "$epochs" --threads 1 \
    --data-dir "$data_dir" >"$tmp/python-$r.json"
done

"$python" - "$tmp" "$reps" <<'PY'
import json, statistics, sys
tmp, reps = sys.argv[1], int(sys.argv[2])
cpp, py = [], []
for r in range(1, reps + 1):
    points = [json.loads(l) for l in open(f"{tmp}/metrics-{r}.jsonl")]
    epochs = [p["value"] for p in points if p["name"] == "samples_per_second"]
    cpp.append(sum(epochs) / len(epochs))
    py.append(json.load(open(f"{tmp}/python-{r}.json"))["samples_per_second"])
err_cpp = json.load(open(f"{tmp}/summary-1.json"))["final"]["test/error"]
err_py = json.load(open(f"{tmp}/python-1.json"))["test_error"]
print(f"fmnist-mlp, madam, batch 128, 1 thread, {reps} alternating runs each")
print(f"madam-worker (C++, fused Madam):  best {max(cpp):8.0f}  median {statistics.median(cpp):8.0f} samples/s  test/error {err_cpp:.2f}%")
print(f"PyTorch (Python, per-op Madam):   best {max(py):8.0f}  median {statistics.median(py):8.0f} samples/s  test/error {err_py:.2f}%")
print(f"ratio: best {max(cpp) / max(py):.2f}x  median {statistics.median(cpp) / statistics.median(py):.2f}x")
PY
