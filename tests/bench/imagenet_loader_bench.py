#!/usr/bin/python3
"""The ImageNet training input pipeline: madam-worker against torchvision.

Measures `madam-worker bench-data --task imagenet-resnet50` (TurboJPEG with
DCT scaling, C++ threads) side by side with torchvision (Debian's
python3-torchvision: ImageFolder, the same transforms -- RandomResizedCrop(224,
scale=(0.1, 1.0), ratio=(0.8, 1.25)), RandomHorizontalFlip, ToTensor,
Normalize(ImageNet mean, std) -- and a DataLoader with the same number of
workers and batch size), in one run: rounds alternate between the two (and
which goes first), each side skips the same number of warm-up batches, and
the medians over rounds are printed with their ratio, at each thread count.
Target (ARCHITECTURE.md section 6, the ImageNet pipeline): ratio >= 1.5 at 1
and at 2 threads.

The data is an ImageFolder this script generates (cached in --data-dir):
JPEGs of ImageNet-like sizes (mostly 500x375, 375x500 and 500x333, a tail of
smaller and larger ones) and quality 90, 4:2:0, with a 1/f (natural-image)
spectrum so that they compress to ImageNet-like byte counts.

    tests/bench/imagenet_loader_bench.py [--worker build/worker/madam-worker]
        [--rounds 5] [--seconds 6] [--threads 1,2] [--images 1000]
    tests/bench/imagenet_loader_bench.py --quick   # ctest: one short round, no assertion
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# (width, height, weight): most ImageNet photos are 500 on the long side.
SIZES = [(500, 375, 30), (375, 500, 12), (500, 333, 14), (333, 500, 5), (500, 400, 5),
         (500, 500, 3), (400, 300, 10), (320, 240, 8), (640, 480, 5), (800, 600, 2),
         (1024, 768, 1), (1600, 1200, 0.5)]


def natural_image(rng, h, w):
    """An RGB uint8 image with a 1/f amplitude spectrum (like photographs)."""
    import numpy as np
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = 1.0 / f
    def field():
        phase = np.exp(2j * np.pi * rng.random((h, w // 2 + 1)))
        return np.fft.irfft2(amp * phase, s=(h, w))
    shared = field()
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        ch = 0.7 * shared + 0.3 * field()
        ch = (ch - ch.mean()) / (ch.std() + 1e-9)
        img[..., c] = 128 + 45 * ch + rng.uniform(-20, 20)
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def generate(root, images, classes, seed=0):
    """Writes root/{train,val}/cNNN/*.JPEG unless a complete copy is there."""
    import numpy as np
    from PIL import Image
    stamp = os.path.join(root, f".complete-v2-{images}-{classes}-{seed}")
    if os.path.exists(stamp):
        return
    rng = np.random.default_rng(seed)
    weights = np.array([s[2] for s in SIZES], dtype=float)
    weights /= weights.sum()
    total_bytes = total_pixels = 0
    for split, n in (("train", images), ("val", max(classes, images // 10))):
        for i in range(n):
            cls = f"c{i % classes:03d}"
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            w, h, _ = SIZES[rng.choice(len(SIZES), p=weights)]
            buf = io.BytesIO()
            Image.fromarray(natural_image(rng, h, w)).save(buf, "JPEG", quality=90)
            with open(os.path.join(root, split, cls, f"{split}_{i:06d}.JPEG"), "wb") as f:
                f.write(buf.getvalue())
            if split == "train":
                total_bytes += buf.tell()
                total_pixels += w * h
    print(f"generated {images} train JPEGs in {root}: mean {total_pixels / images / 1000:.0f} kpixel "
          f"(500x375 = 188), mean {total_bytes / images / 1000:.0f} kB", file=sys.stderr)
    open(stamp, "w").close()


def torchvision_side(args):
    """Runs in a child process: the torchvision pipeline, one JSON line."""
    import torch
    import torchvision.datasets as datasets
    import torchvision.transforms as T
    torch.set_num_threads(1)
    transform = T.Compose([
        T.RandomResizedCrop(args.image_size, scale=(0.1, 1.0), ratio=(0.8, 1.25)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])
    dataset = datasets.ImageFolder(os.path.join(args.data_dir, "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.threads, persistent_workers=True,
                                         drop_last=True)
    seen = images = 0
    start = None
    elapsed = 0.0
    while start is None or elapsed < args.seconds:
        for x, _ in loader:
            seen += 1
            if start is not None:
                images += x.shape[0]
            del x
            if start is None and seen == args.warmup_batches:
                start = time.perf_counter()
            if start is not None:
                elapsed = time.perf_counter() - start
                if elapsed >= args.seconds:
                    break
    print(json.dumps({"images_per_second": images / elapsed if elapsed > 0 else 0.0,
                      "images": images, "seconds": elapsed}))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", default=os.path.join(HERE, "..", "..", "build", "worker", "madam-worker"))
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "madam-imagenet-bench"))
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--warmup-batches", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="one short round on a small folder (ctest)")
    p.add_argument("--torchvision-side", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torchvision_side:
        args.threads = int(args.threads)
        return torchvision_side(args)
    if args.quick:
        args.data_dir = os.path.join(tempfile.gettempdir(), f"madam-imagenet-bench-quick-{os.getuid()}")
        args.images, args.classes, args.rounds, args.seconds = 60, 3, 1, 0.5
        args.batch_size, args.warmup_batches = 10, 1
    if not os.access(args.worker, os.X_OK):
        sys.exit(f"madam-worker not found at {args.worker} (pass --worker)")
    generate(args.data_dir, args.images, args.classes)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    os.environ.update(env)
    threads = [int(t) for t in args.threads.split(",")]
    common = ["--seconds", str(args.seconds), "--batch-size", str(args.batch_size),
              "--warmup-batches", str(args.warmup_batches)]
    ours = {t: [] for t in threads}
    theirs = {t: [] for t in threads}
    for r in range(args.rounds):
        for t in threads:
            sides = [("ours", [args.worker, "bench-data", "--task", "imagenet-resnet50", "--data-dir",
                               args.data_dir, "--threads", str(t), "--image-size", str(args.image_size),
                               "--json"] + common),
                     ("torchvision", [sys.executable, os.path.abspath(__file__), "--torchvision-side",
                                      "--data-dir", args.data_dir, "--threads", str(t), "--image-size",
                                      str(args.image_size)] + common)]
            if r % 2 == 1:
                sides.reverse()
            for name, cmd in sides:
                rate = run_json(cmd)["images_per_second"]
                (ours if name == "ours" else theirs)[t].append(rate)
                print(f"round {r + 1} threads {t} {name:12s} {rate:8.1f} images/s", file=sys.stderr)
    print(f"ImageNet input pipeline (read, decode, RandomResizedCrop {args.image_size} + flip, normalise, "
          f"batch {args.batch_size}), {args.rounds} alternating rounds of {args.seconds:g} s, medians")
    for t in threads:
        a, b = statistics.median(ours[t]), statistics.median(theirs[t])
        print(f"{t} thread{'s' if t > 1 else ' '}: madam-worker {a:8.1f} images/s   torchvision {b:8.1f} "
              f"images/s   ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()
