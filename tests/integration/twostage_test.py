#!/usr/bin/python3
"""The two stages of Figure 1 and Table 1 (ARCHITECTURE.md section 4, "Two
stages"; section 7) on a real madamd with two real madam-worker processes,
driven through madamctl:

  a small Figure 1 sweep -> `sweep promote` -> `report table1` from the
  promoted runs, checked against a hand computation from `sweep export`;
  `sweep extend` adds exactly the missing runs once; a promote and an extend
  whose responses are lost (madamd's --inject-lost-responses) and then
  repeated create nothing twice; the refusals; every report type's CSV
  parsed with Python's csv module; `report table2 --paper` printing the
  paper's CIFAR-10 row; and headless Chromium rendering the promoted sweep's
  dashboard page (parent link, readable legends, per-epoch markers).

    twostage_test.py BUILD_DIR SOURCE_DIR OUT_DIR

Stdlib only; Chromium is Debian's `chromium` (deploy/install-deps.sh).
"""
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import Stack, check  # noqa: E402

# Figure 1 at toy scale: no grid point is 0.01, so madam's promoted lr
# cannot come from the grid. 9 runs of 2 epochs.
FIG1 = """name: fig1-toy
figure: 1
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 2
grid:
  optimizer: [sgd, adam, madam]
  lr: {log10: {from: -2.5, to: -0.5, count: 3}}
seeds: [0]
resources: {device: cpu}
"""

# Never granted to CPU workers: stays pending, deterministically.
PENDING_FIG1 = """name: fig1-waiting
figure: 1
task: synthetic-mlp
epochs: 1
grid:
  optimizer: [sgd, madam]
  lr: [0.01, 0.1]
resources: {device: cuda}
"""

NO_LR_AXIS = """name: fig1-no-lr
figure: 1
task: synthetic-mlp
epochs: 1
params: {lr: 0.01}
grid:
  optimizer: [sgd, adam, madam]
resources: {device: cuda}
"""

PAPER_TABLE2_CIFAR10 = ["7.8 ± 0.2", "7.0 ± 0.1", "7.8 ± 0.3", "8.6 ± 1.5"]


def final_error(run):
    """A run's final test/error as Table 1 and promote count it: a diverged,
    failed or metric-less run is +inf (the worst)."""
    v = run["final"].get("test/error")
    if run["state"] != "succeeded" or v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return math.inf
    return float(v)


def best_lr_by_hand(export, optimizer):
    by_lr = {}
    for run in export["runs"]:
        if run["params"]["optimizer"] == optimizer:
            by_lr.setdefault(run["params"]["lr"], []).append(final_error(run))
    best = None
    for lr in sorted(by_lr):  # ascending: a tie keeps the smaller lr
        mean = sum(by_lr[lr]) / len(by_lr[lr])
        if best is None or mean < best[1]:
            best = (lr, mean)
    return best[0]


def table1_by_hand(export):
    """{column: (lr, mean, half_range, n)} from a promoted sweep's export."""
    cols = {}
    for run in export["runs"]:
        opt = run["params"]["optimizer"]
        if opt in ("sgd", "adam", "madam"):
            cols.setdefault(opt, []).append((run["params"]["lr"], final_error(run)))
    out = {}
    for opt, pairs in cols.items():
        lrs = {lr for lr, _ in pairs}
        check(len(lrs) == 1, f"promoted {opt} runs at several lrs: {lrs}")
        values = [v for _, v in pairs]
        out[opt] = (lrs.pop(), sum(values) / len(values), (max(values) - min(values)) / 2, len(values))
    return out


def close(a, b):
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def check_table1_matches(stack, promoted_id, expected_n):
    export = stack.export(promoted_id)
    hand = table1_by_hand(export)
    report = json.loads(stack.ctl("report", "table1", "--sweep", promoted_id, "--format", "json").stdout)
    rows = {r["column"]: r for r in report["rows"] if r["task"] == "synthetic-mlp"}
    check(set(rows) == {"sgd", "adam", "madam"}, f"table1 columns {sorted(rows)}")
    for col, (lr, mean, half, n) in hand.items():
        r = rows[col]
        check(r["n"] == n == expected_n, f"table1 {col}: n {r['n']}, by hand {n}, expected {expected_n}")
        check(close(r["lr"], lr), f"table1 {col}: lr {r['lr']}, by hand {lr}")
        check(close(r["mean"], mean), f"table1 {col}: mean {r['mean']}, by hand {mean}")
        check(close(r["half_range"], half), f"table1 {col}: half range {r['half_range']}, by hand {half}")
    return hand


def parse_csv(text, header, what):
    check(text.splitlines()[0] == header, f"{what} CSV: first line {text.splitlines()[0]!r}, want {header!r}")
    rows = list(csv.reader(io.StringIO(text)))
    check(rows[0] == header.split(","), f"{what} CSV header {rows[0]}")
    check(len(rows) > 1, f"{what} CSV has no rows")
    for row in rows[1:]:
        check(len(row) == len(rows[0]), f"{what} CSV row {row} has {len(row)} fields, header {len(rows[0])}")
    return rows


def expect_failure(stack, args, words):
    r = stack.ctl(*args, expect=1)
    for w in words:
        check(w in r.stderr, f"madamctl {' '.join(args)}: stderr lacks {w!r}:\n{r.stderr}")
    return r


def sweep_ids(stack):
    return [s["id"] for s in stack.ctl_json("sweep", "list")["sweeps"]]


def chromium_dom(chromium, url, profile):
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--virtual-time-budget=8000", "--dump-dom", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    check(r.returncode == 0, f"chromium --dump-dom failed ({r.returncode}): {r.stderr[-2000:]}")
    return re.sub(r"<script\b.*?</script>", "", r.stdout, flags=re.S)


def main():
    build, source, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    chromium = shutil.which("chromium")
    check(chromium is not None, "'chromium' is not installed: run deploy/install-deps.sh")
    # The first response of each is lost after madamd committed it: madamctl
    # retries, and the retry must find what the first call made.
    stack = Stack(build, source, madamd_flags=["--inject-lost-responses", "PromoteSweep=1,ExtendSweep=1"])
    try:
        stack.start_madamd()
        http = "http://" + stack.madamd.wait_for(r"http on (\S+:\d+)").group(1)
        stack.start_worker("w1")
        stack.start_worker("w2")

        fig1, runs = stack.submit(FIG1, "fig1.yaml")
        check(runs == 9, f"fig1 has {runs} runs")
        waiting, _ = stack.submit(PENDING_FIG1, "waiting.yaml")
        no_lr, _ = stack.submit(NO_LR_AXIS, "no-lr.yaml")
        with open(os.path.join(source, "sweeps", "paper", "cifar10-resnet18-table2.yaml")) as f:
            cifar_t2, _ = stack.submit(f.read(), "cifar10-resnet18-table2.yaml")

        show = stack.wait_finished(fig1, timeout=240)
        check(show["counts"]["succeeded"] + show["counts"]["diverged"] == 9, f"fig1 counts {show['counts']}")
        expect_failure(stack, ["report", "table1", "--sweep", fig1], ["madamctl sweep promote " + fig1])
        fig1_export = stack.export(fig1)
        want = {opt: best_lr_by_hand(fig1_export, opt) for opt in ("sgd", "adam")}

        before = sweep_ids(stack)

        # Promote: madamd commits the first call but its response is lost;
        # madamctl retries and gets the same sweep. An explicit second call
        # does too.
        r = stack.ctl("--json", "sweep", "promote", fig1, "--seeds", "0,1")
        check("retrying the promote" in r.stderr, f"the first promote response was not lost: {r.stderr}")
        first = json.loads(r.stdout)
        promoted = first["id"]
        check(first["runs"] == 6 and first["existing"], f"the retried promote answered {first}")
        again = stack.ctl_json("sweep", "promote", fig1, "--seeds", "0,1")
        check(again["id"] == promoted and again["existing"], f"a repeated promote answered {again}")
        after = sweep_ids(stack)
        check(len(after) == len(before) + 1, f"promote made {len(after) - len(before)} sweeps, expected 1")
        dry = stack.ctl("sweep", "promote", fig1, "--seeds", "0,1", "--dry-run").stdout
        with open(os.path.join(out_dir, "promoted-dry-run.yaml"), "w") as f:
            f.write(dry)
        check("table: 1" in dry and "seeds: [0, 1]" in dry, f"dry run printed:\n{dry}")
        check(sweep_ids(stack) == after, "a dry-run promote stored a sweep")
        spec_path = os.path.join(stack.tmp, "promoted-dry.yaml")
        with open(spec_path, "w") as f:
            f.write(dry)
        valid = stack.ctl("sweep", "submit", spec_path, "--dry-run").stdout
        check("valid: 6 runs" in valid, f"the promoted file does not resubmit as 6 runs: {valid}")

        # Refusals, each naming its cause.
        expect_failure(stack, ["sweep", "promote", waiting], ["not finished", "still pending or running",
                                                              waiting + "-00000 (pending)"])
        expect_failure(stack, ["sweep", "promote", no_lr], ["no lr axis"])
        expect_failure(stack, ["sweep", "promote", cifar_t2], ["Table 2 sweep (table: 2)"])
        expect_failure(stack, ["sweep", "promote", fig1, "--seeds", "0,0"], ["0 is given twice"])

        text = stack.ctl("sweep", "show", promoted).stdout
        check(f"promoted from {fig1}" in text, f"sweep show lacks the parent:\n{text}")
        check(re.search(r"sgd .*lr .*: best mean test/error", text), f"sweep show lacks the reasons:\n{text}")

        p_export = stack.export(promoted)
        lrs = {}
        for run in p_export["runs"]:
            lrs.setdefault(run["params"]["optimizer"], set()).add(run["params"]["lr"])
        check(lrs == {"sgd": {want["sgd"]}, "adam": {want["adam"]}, "madam": {0.01}},
              f"promoted lrs {lrs}, by hand {want} and madam 0.01")
        seeds = sorted(r["params"]["seed"] for r in p_export["runs"])
        check(seeds == [0, 0, 0, 1, 1, 1], f"promoted seeds {seeds}")

        stack.wait_finished(promoted, timeout=240)
        check_table1_matches(stack, promoted, expected_n=2)

        # Extend by seed 2: the first response is lost, the retry adds
        # nothing more; an explicit repeat adds nothing either.
        r = stack.ctl("--json", "sweep", "extend", promoted, "--seeds", "2")
        check("retrying the extend" in r.stderr, f"the first extend response was not lost: {r.stderr}")
        ext = json.loads(r.stdout)
        check(ext["runs_added"] == 0, f"the retried extend added {ext['runs_added']} runs (the lost one added them)")
        total = stack.show(promoted)
        check(sum(total["counts"].values()) == 9, f"after extend: {total['counts']} (expected 9 runs)")
        expect_failure(stack, ["sweep", "extend", promoted, "--seeds=-1"], ["-1 is negative"])
        expect_failure(stack, ["sweep", "extend", promoted, "--seeds", "3,3"], ["3 is given twice"])
        expect_failure(stack, ["sweep", "extend", promoted, "--seeds", ""], ["empty"])
        ext2 = stack.ctl_json("sweep", "extend", promoted, "--seeds", "1,2")
        check(ext2["runs_added"] == 0, f"a repeated extend added {ext2['runs_added']} runs")
        check(sum(stack.show(promoted)["counts"].values()) == 9, "a repeated extend changed the run count")
        stack.wait_finished(promoted, timeout=240)
        check_table1_matches(stack, promoted, expected_n=3)
        stack.check_invariants(promoted, 9)

        # A cancelled sweep extends only with --force.
        stack.ctl("sweep", "cancel", waiting)
        expect_failure(stack, ["sweep", "extend", waiting, "--seeds", "1"], ["cancelled", "--force"])
        forced = stack.ctl_json("sweep", "extend", waiting, "--seeds", "1", "--force")
        check(forced["runs_added"] == 4 and forced["sweep"]["state"] == "running", f"forced extend {forced}")
        stack.ctl("sweep", "cancel", waiting)

        # CSV of every report type: plain CSV, the header first.
        parse_csv(stack.ctl("report", "lr-sensitivity", "--sweep", fig1, "--format", "csv").stdout,
                  "task,optimizer,lr,err,value,seeds", "lr-sensitivity")
        rows = parse_csv(stack.ctl("report", "table1", "--sweep", promoted, "--format", "csv").stdout,
                         "task,column,lr,mean,half_range,n", "table1")
        check({r[1] for r in rows[1:]} == {"sgd", "adam", "madam"}, f"table1 CSV columns {rows}")
        parse_csv(stack.ctl("report", "table2", "--sweep", cifar_t2, "--format", "csv").stdout,
                  "task,column,lr,mean,half_range,n", "table2")
        for kind, sid in (("lr-sensitivity", fig1), ("table1", promoted)):
            paper_csv = stack.ctl("report", kind, "--sweep", sid, "--format", "csv", "--paper").stdout
            check(paper_csv.splitlines()[0].startswith("task,"), f"{kind} --paper CSV starts {paper_csv[:80]!r}")
            list(csv.reader(io.StringIO(paper_csv)))

        # The paper's Table 2 row for CIFAR-10 beside ours (no runs yet).
        t2 = stack.ctl("report", "table2", "--sweep", cifar_t2, "--paper").stdout
        line = next((l for l in t2.splitlines() if l.startswith("| cifar10-resnet18 (paper")), "")
        cells = [c.strip() for c in line.strip("|").split("|")][2:]
        check(cells == PAPER_TABLE2_CIFAR10, f"paper row {cells}, want {PAPER_TABLE2_CIFAR10}:\n{t2}")
        stack.ctl("sweep", "cancel", cifar_t2)

        # The dashboard: the promoted sweep's page links to its parent, its
        # legends read lr as 1e-2, never 17 digits, and test/error (one point
        # per epoch) is drawn with markers.
        profile = tempfile.mkdtemp(prefix="chromium-", dir=stack.tmp)
        dom = chromium_dom(chromium, f"{http}/#/sweep/{promoted}", profile)
        with open(os.path.join(out_dir, "promoted-sweep.html"), "w") as f:
            f.write(dom)
        link = re.search(r'<a class="parent-link[^"]*" href="#/sweep/([^"]+)"', dom)
        check(link and link.group(1) == fig1, f"no parent link to {fig1} (DOM in {out_dir})")
        legends = re.findall(r'<g class="legend-entry" data-series="([^"]+)"', dom)
        check(legends, f"no legend in the promoted sweep's curves (DOM in {out_dir})")
        check(any("lr=1e-2" in l for l in legends), f"no madam legend with lr=1e-2: {legends}")
        check(not any(re.search(r"\d{6,}", l) for l in legends), f"a legend has a long number: {legends}")
        check(re.search(r'<circle class="marker point"', dom), "test/error is not drawn with markers")
        check("best mean test/error" in dom, "the promotion reasons are not on the page")

        dom = chromium_dom(chromium, f"{http}/#/sweep/{fig1}", profile)
        with open(os.path.join(out_dir, "fig1-sweep.html"), "w") as f:
            f.write(dom)
        legends = re.findall(r'<g class="legend-entry" data-series="([^"]+)"', dom)
        check(any("lr=10^-1.5" in l for l in legends), f"fig1 legends do not read 10^-1.5: {legends}")
        check(not any(re.search(r"\d{6,}", l) for l in legends), f"a legend has a long number: {legends}")
        check(f'href="#/sweep/{promoted}"' in dom, "the Figure 1 page does not link to its promoted sweep")
    except Exception:
        stack.print_logs(20)
        raise
    finally:
        stack.close()
    print("twostage: passed")


if __name__ == "__main__":
    main()
