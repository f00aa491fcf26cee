"""Python baseline for tests/bench/fmnist_throughput.sh.

Trains fmnist-mlp (784-256-256-10, ReLU) with Madam written per-op from the
paper's Algorithm 1 (Bernstein et al., NeurIPS 2020), in plain PyTorch, with
the same data pipeline as madam-worker (whole split in one tensor, batches by
index_select, the same per-epoch permutations, the same initialisation
order) so the comparison is loop against loop: with the same seed both runs
follow the same trajectory (train/loss agrees to ~7 digits over the first
steps; --debug prints it). Prints one JSON line.
"""
import argparse
import gzip
import json
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        raise SystemExit(f"{path}: bad magic {got}, expected {magic}")
    dims = 3 if magic == 2051 else 1
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    return torch.from_numpy(arr.copy()).reshape(shape)


class Madam:
    """Algorithm 1: multiplicative Adam, one tensor op at a time."""

    def __init__(self, params, lr=0.01, beta=0.999, g_bound=10.0, p_scale=3.0):
        self.params = list(params)
        self.lr, self.beta, self.g_bound, self.p_scale = lr, beta, g_bound, p_scale
        self.state = {}

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            st = self.state.get(p)
            if st is None:
                st = {"step": 0, "max": self.p_scale * p.pow(2).mean().sqrt().item(),
                      "v": torch.zeros_like(p)}
                self.state[p] = st
            st["step"] += 1
            g = p.grad
            st["v"].mul_(self.beta).addcmul_(g, g, value=1 - self.beta)
            bias_correction = 1 - self.beta ** st["step"]
            g_hat = g / (st["v"] / bias_correction).sqrt()
            g_hat[g_hat != g_hat] = 0
            g_hat.clamp_(-self.g_bound, self.g_bound)
            p.mul_(torch.exp(-self.lr * g_hat * p.sign()))
            p.clamp_(-st["max"], st["max"])


def epoch_seed(seed, epoch):
    """The per-epoch shuffle seed madam-worker uses (trainer.cc EpochSeed)."""
    m = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + epoch) & m
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & m
    x ^= x >> 29
    x &= (1 << 62) - 1
    return x ^ 0x5bd1e995


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bias-init", type=float, default=0.01)
    ap.add_argument("--norm", default="standard", choices=["standard", "unit"])
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = args.data_dir
    tx = read_idx(f"{d}/train-images-idx3-ubyte.gz", 2051).float().div_(255).reshape(-1, 784)
    ty = read_idx(f"{d}/train-labels-idx1-ubyte.gz", 2049).long()
    vx = read_idx(f"{d}/t10k-images-idx3-ubyte.gz", 2051).float().div_(255).reshape(-1, 784)
    vy = read_idx(f"{d}/t10k-labels-idx1-ubyte.gz", 2049).long()
    if args.norm == "standard":
        mean, std = tx.mean(), tx.std()
        tx, vx = (tx - mean) / std, (vx - mean) / std

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and args.bias_init > 0:
                p.copy_((torch.randint(0, 2, p.shape) * 2 - 1).float() * args.bias_init)
    opt = Madam(model.parameters(), lr=args.lr)
    n = tx.shape[0]
    train_seconds = 0.0
    samples = 0
    for epoch in range(1, args.epochs + 1):
        g = torch.Generator().manual_seed(epoch_seed(args.seed, epoch))
        perm = torch.randperm(n, generator=g)
        t0 = time.perf_counter()
        for s in range(0, n, args.batch_size):
            idx = perm[s:s + args.batch_size]
            x, y = tx.index_select(0, idx), ty.index_select(0, idx)
            for p in model.parameters():
                p.grad = None
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            samples += idx.numel()
            if args.debug and (s // args.batch_size + 1) % 10 == 0 and s < 50 * args.batch_size:
                print("step", s // args.batch_size + 1, loss.item())
        train_seconds += time.perf_counter() - t0
    with torch.no_grad():
        err = (model(vx).argmax(1) != vy).float().mean().item() * 100
    print(json.dumps({"samples_per_second": samples / train_seconds,
                      "train_seconds": train_seconds, "test_error": err}))


if __name__ == "__main__":
    main()
