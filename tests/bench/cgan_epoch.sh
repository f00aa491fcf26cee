#!/usr/bin/env bash
# cifar10-cgan on the CPU at a reduced size: the training loop's seconds per
# epoch (one D step and one G step per batch; evaluation excluded, as in
# samples_per_second), on generated CIFAR-10 binary batches. Prints the
# median over REPS runs. No FID model: FID evaluation is not timed here.
#
# Usage: tests/bench/cgan_epoch.sh [path/to/madam-worker] [images] [channels] [reps]
#   images: training images (default 1280), channels: gan_channels (default 32)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
worker="${1:-${here}/../../build/worker/madam-worker}"
images="${2:-1280}"
channels="${3:-32}"
reps="${4:-3}"
[[ -x "$worker" ]] || { echo "madam-worker not found at $worker (pass its path)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# CIFAR-10's binary layout: per record one label byte and 3072 pixel bytes.
python3 - "$tmp/cifar" "$images" <<'PY'
import os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = random.Random(0)
def batch(path, count):
    with open(path, "wb") as f:
        for i in range(count):
            f.write(bytes([i % 10]) + rng.randbytes(3072))
per = (n + 4) // 5
for b in range(1, 6):
    batch(os.path.join(out, "data_batch_%d.bin" % b), per)
batch(os.path.join(out, "test_batch.bin"), 10)
PY

for ((r = 1; r <= reps; r++)); do
  "$worker" train --task cifar10-cgan --optimizer madam --epochs 2 --batch-size 64 \
    --param gan_channels="$channels" --param fid_samples=100 --param lr_milestones=[1] \
    --threads 1 --device cpu --data-dir "$tmp/cifar" --no-progress \
    --summary-json "$tmp/summary-$r.json" 2>"$tmp/worker.log" \
    || { cat "$tmp/worker.log" >&2; exit 1; }
done
python3 - "$tmp" "$reps" "$images" "$channels" <<'PY'
import json, statistics, sys
tmp, reps, images, channels = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
secs = [json.load(open("%s/summary-%d.json" % (tmp, r)))["train_seconds"] / 2 for r in range(1, reps + 1)]
print("cifar10-cgan, %s images, gan_channels %s, batch 64, 1 thread: %.2f s/epoch (median of %d; runs %s)"
      % (images, channels, statistics.median(secs), reps, ", ".join("%.2f" % s for s in secs)))
PY
