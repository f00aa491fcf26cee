#!/usr/bin/env python3
"""Is the ranking of learning rates stable? For a Figure 1 export, the best lr
per optimiser (mean over seeds of the sweep's metric) at the last epoch and
at two thirds of the training, from the per-epoch series.

    stability.py exports/fig1-fmnist-mlp
"""
import collections
import csv
import json
import math
import sys


def main():
    base = sys.argv[1]
    export = json.load(open(base + ".json"))
    metric = export["sweep_info"]["metric"]["name"]
    maximize = export["sweep_info"]["metric"]["goal"] == "maximize"
    # The runs a report counts: succeeded, or diverged (the worst value).
    cell = {r["id"]: (r["params"]["optimizer"], r["params"]["lr"]) for r in export["runs"]
            if r["state"] in ("succeeded", "diverged")}
    series = collections.defaultdict(list)  # run -> [(step, value)]
    with open(base + "-series.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["name"] == metric:
                series[row["run"]].append((int(row["step"]), float(row["value"])))
    epochs = max(len(points) for points in series.values())
    at = {"last": epochs, "two thirds": max(1, round(2 * epochs / 3))}
    worst = -math.inf if maximize else math.inf
    print(f"{base}: {metric}, {epochs} epochs; best lr per optimiser at epoch {at['two thirds']} and {at['last']}")
    for optimizer in sorted({o for o, _ in cell.values()}):
        best = {}
        for label, epoch in at.items():
            means = collections.defaultdict(list)
            for run, (o, lr) in cell.items():
                if o != optimizer:
                    continue
                points = sorted(series.get(run, []))
                value = points[epoch - 1][1] if len(points) >= epoch else worst  # diverged or cut short
                means[lr].append(value if math.isfinite(value) else worst)
            mean = {lr: sum(v) / len(v) for lr, v in means.items()}
            pick = max if maximize else min
            best[label] = pick(sorted(mean), key=lambda lr: mean[lr])
        same = "same" if best["last"] == best["two thirds"] else "DIFFERS"
        print(f"  {optimizer:6s} epoch {at['two thirds']}: {best['two thirds']:g}  epoch {at['last']}: {best['last']:g}  ({same})")


if __name__ == "__main__":
    main()
