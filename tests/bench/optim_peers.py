#!/usr/bin/python3
"""Python peers for optim_bench: one more side of its alternating rounds.

optim_bench (run with --peer, as tests/bench/optim_bench.sh does) starts this
script and speaks a line protocol on its stdin/stdout:

    threads N                  torch.set_num_threads(N)
    clock cpu|wall             time by process CPU time or by wall clock
    device cpu|cuda            where the parameters live (default cpu)
    shape D0 D1 ...            one parameter tensor's shape (repeated)
    go WARMUP                  build the peers, take WARMUP untimed steps each,
                               answer "ready"
    round STEPS                time STEPS steps of every peer (order rotates
                               from round to round), answer one
                               "NAME SECONDS_PER_STEP" line per peer, then "end"
    quit

The peers, each on its own parameters, all with gradients that alternate
between g and -g as optim_bench's do:
    py_adam            torch.optim.Adam(foreach=False): one op at a time
    py_adam_foreach    torch.optim.Adam(foreach=True): the multi-tensor path
    py_adam_fused      torch.optim.Adam(fused=True), on CUDA only: one kernel
    py_madam_perop     Madam written per-op from the paper's Algorithm 1
                       (Bernstein et al., NeurIPS 2020), as a PyTorch user
                       would write it
Uses Debian's /usr/bin/python3 with python3-torch.
"""
import sys
import time

import torch


class PerOpMadam:
    """Algorithm 1, one tensor op at a time (ARCHITECTURE.md section 1)."""

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
            g_hat.nan_to_num_(nan=0.0).clamp_(-self.g_bound, self.g_bound)
            p.mul_(torch.exp(-self.lr * g_hat * p.sign()))
            p.clamp_(-st["max"], st["max"])


class Side:
    def __init__(self, name, shapes, make_opt, device):
        self.name = name
        self.params = [(torch.randn(s, device=device) * 0.05).requires_grad_() for s in shapes]
        grads = [torch.randn(s, device=device) * 0.01 for s in shapes]
        self.grads = (grads, [-g for g in grads])
        self.parity = 0
        self.opt = make_opt(self.params)

    def step(self):
        self.parity ^= 1
        for p, g in zip(self.params, self.grads[self.parity]):
            p.grad = g
        self.opt.step()


def main():
    shapes = []
    sides = []
    rounds = 0
    clock = time.perf_counter
    device = "cpu"

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "threads":
            torch.set_num_threads(int(words[1]))
        elif words[0] == "clock":
            clock = time.process_time if words[1] == "cpu" else time.perf_counter
        elif words[0] == "device":
            device = words[1]
        elif words[0] == "shape":
            shapes.append([int(w) for w in words[1:]])
        elif words[0] == "go":
            torch.manual_seed(0)
            sides = [
                Side("py_adam", shapes, lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
                     device),
                Side("py_adam_foreach", shapes,
                     lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True), device),
                Side("py_madam_perop", shapes, lambda ps: PerOpMadam(ps, lr=0.01), device),
            ]
            if device == "cuda":
                sides.append(Side("py_adam_fused", shapes,
                                  lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True), device))
            for _ in range(int(words[1])):
                for s in sides:
                    s.step()
            sync()
            print("ready", flush=True)
        elif words[0] == "round":
            steps = int(words[1])
            results = {}
            for j in range(len(sides)):
                s = sides[(j + rounds) % len(sides)]
                start = clock()
                for _ in range(steps):
                    s.step()
                sync()
                results[s.name] = (clock() - start) / steps
            rounds += 1
            for name, seconds in results.items():
                print(f"{name} {seconds:.9g}")
            print("end", flush=True)
        elif words[0] == "quit":
            break


if __name__ == "__main__":
    main()
