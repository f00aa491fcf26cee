#!/usr/bin/python3
"""Generates golden trajectories for the Madam and IntegerMadam unit tests.

The reference below is the paper's Algorithm 1 (Bernstein et al., NeurIPS
2020) written as plain per-op PyTorch, in the operation order of the authors'
reference implementation; IntegerMadam follows ARCHITECTURE.md sections 1
and 6. Inputs are fixed and include zero, tiny (g^2 underflows) and huge
gradients, zero weights and weights beyond sigma*. Re-run with:

    /usr/bin/python3 tests/unit/optim/golden/make_golden.py > tests/unit/optim/golden/golden.json
"""
import json
import math

import torch


def madam_reference(w, grads, lr, beta=0.999, g_bound=10.0, p_scale=3.0):
    p = w.clone()
    sigma = p_scale * (p * p).mean().sqrt().item()
    v = torch.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        bias_correction = 1 - beta ** t
        v = beta * v + (1 - beta) * g ** 2
        g_hat = g / (v / bias_correction).sqrt()
        g_hat[torch.isnan(g_hat)] = 0
        g_hat.clamp_(-g_bound, g_bound)
        p = p * torch.exp(-lr * g_hat * torch.sign(p))
        p.clamp_(-sigma, sigma)
        out.append(p.clone())
    return sigma, out


def integer_madam_reference(w, grads, base_lr, lr_factor, bits, beta=0.999, g_bound=10.0,
                            p_scale=3.0):
    """init = "nearest": k = clamp(round(ln(sigma/|w|)/eta0), 0, 2^B-1)."""
    max_level = 2 ** bits - 1
    p = w.clone()
    sigma = p_scale * (p * p).mean().sqrt().item()
    k = torch.round(torch.log(sigma / p.abs()) / base_lr)
    k = torch.nan_to_num(k, nan=0.0, posinf=float(max_level), neginf=0.0).clamp(0, max_level)
    sign = torch.sign(p)
    v = torch.zeros_like(p)
    weights, levels = [], []
    for t, g in enumerate(grads, start=1):
        bias_correction = 1 - beta ** t
        v = beta * v + (1 - beta) * g ** 2
        g_hat = g / (v / bias_correction).sqrt()
        g_hat[torch.isnan(g_hat)] = 0
        g_hat.clamp_(-g_bound, g_bound)
        k = (k + torch.round(g_hat * lr_factor) * sign).clamp(0, max_level)
        p = sign * sigma * torch.exp(-base_lr * k)
        weights.append(p.clone())
        levels.append(k.clone())
    return sigma, weights, levels


def fixed_inputs(n, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=gen)
    w[0] = 0.0          # a zero weight never moves
    w[1] = 25.0         # beyond sigma*: clamped on the first step
    w[2] = -1e-3        # small negative weight
    grads = []
    for t in range(steps):
        g = torch.randn(n, generator=gen)
        g[3] = 0.0                         # always zero: v = 0, 0/0 -> NaN -> 0
        g[4] = 1e-30 if t % 2 == 0 else 0  # tiny: g^2 underflows, g/0 -> inf -> clamp
        g[5] = 1e30 if t == 0 else -1.0    # huge first step
        if t == 2:
            g[6:9] = 0.0                   # a zero gradient after non-zero ones
        grads.append(g)
    return w, grads


def as_list(t):
    return [float(x) for x in t.tolist()]


def main():
    torch.set_num_threads(1)
    cases = []
    for name, n, steps, seed, lr in [("small", 16, 6, 1, 0.01), ("large_lr", 64, 8, 2, 0.5)]:
        w, grads = fixed_inputs(n, steps, seed)
        sigma, traj = madam_reference(w, grads, lr)
        cases.append({"name": "madam_" + name, "optimizer": "madam", "lr": lr,
                      "sigma": sigma, "init": as_list(w), "grads": [as_list(g) for g in grads],
                      "weights": [as_list(p) for p in traj]})
    for name, n, steps, seed, base_lr, lr_factor, bits in [
            ("12bit", 16, 6, 3, 0.001, 10.0, 12), ("8bit", 64, 8, 4, math.log(60) / 255, 1.0, 8),
            ("4bit_saturating", 32, 8, 5, 0.3, 3.0, 4)]:
        w, grads = fixed_inputs(n, steps, seed)
        sigma, traj, levels = integer_madam_reference(w, grads, base_lr, lr_factor, bits)
        cases.append({"name": "int_madam_" + name, "optimizer": "int_madam", "base_lr": base_lr,
                      "lr_factor": lr_factor, "bits": bits, "sigma": sigma, "init": as_list(w),
                      "grads": [as_list(g) for g in grads], "weights": [as_list(p) for p in traj],
                      "levels": [[int(x) for x in k.tolist()] for k in levels]})
    json.dump({"generator": "tests/unit/optim/golden/make_golden.py",
               "torch_version": torch.__version__, "cases": cases}, __import__("sys").stdout,
              indent=1)


if __name__ == "__main__":
    main()
