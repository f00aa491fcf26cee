#!/usr/bin/python3
"""The dashboard's insight views (ARCHITECTURE.md section 8) on a real
madamd with a real madam-worker: a short synthetic-mlp sweep (madam and
int_madam, 2 epochs, layer_stats_per_epoch 4) runs to the end, then

  - /api/v1/runs/{id}/layers.svg draws one heatmap cell per logged
    (tensor, step), each carrying the value stored for it (checked against
    the metrics API), for all four layer metrics; a bad metric is a 400
    naming it; a metric the run never logged is an empty-state SVG;
  - /api/v1/sweeps/{id}/claims answers the same claims and verdicts as
    `madamctl report claims --format json --paper`;
  - `madamctl sweep show`, the sweep JSON and the page give the device
    time the SQLite file's started_at..ended_at add up to, and the ETA 0;
  - headless Chromium renders the run page with the heatmap (cells and
    tensor names) and the sweep page with the claims table.

    insight_test.py BUILD_DIR SOURCE_DIR OUT_DIR

Stdlib only; Chromium is Debian's `chromium` (deploy/install-deps.sh).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import Stack, check  # noqa: E402

SWEEP = """name: insight
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 2
params: {lr: 0.01, layer_stats_per_epoch: 4}
grid:
  optimizer: [madam, int_madam]
seeds: [0]
resources: {device: cpu}
"""

LAYER_METRICS = ["relative_update", "at_bound_fraction", "level_top_fraction", "level_bottom_fraction"]
CLAIM_IDS = ["madam_best_lr", "baseline_lr_moves", "madam_within_margin", "bits12_near_fp32", "madam_signs_fixed"]

CELL = re.compile(r'<rect class="cell[^"]*" data-row="([^"]+)" data-x="([^"]+)" data-value="([^"]+)"')


def http_get(url, timeout=20):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def chromium_dom(chromium, url, profile):
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--virtual-time-budget=8000", "--dump-dom", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    check(r.returncode == 0, f"chromium --dump-dom failed ({r.returncode}): {r.stderr[-2000:]}")
    return re.sub(r"<script\b.*?</script>", "", r.stdout, flags=re.S)


def layer_series(http, run_id):
    """{metric: {tensor: {step: value}}} from the metrics API."""
    status, _, body = http_get(f"{http}/api/v1/runs/{run_id}/metrics")
    check(status == 200, f"metrics of {run_id}: HTTP {status} {body[:300]}")
    data = json.loads(body)
    check(not data["truncated"], "the metrics answer was cut")
    out = {m: {} for m in LAYER_METRICS}
    for p in data["points"]:
        parts = p["name"].split("/")
        if parts[0] != "layer" or len(parts) < 3:
            continue
        tensor, metric = "/".join(parts[1:-1]), parts[-1]
        check(metric in out, f"an unknown layer metric {p['name']}")
        out[metric].setdefault(tensor, {})[p["step"]] = p["value"]
    return out


def check_heatmap(http, run_id, metric, want):
    """The heatmap's cells are exactly the stored (tensor, step, value)s."""
    url = f"{http}/api/v1/runs/{run_id}/layers.svg?metric={metric}"
    status, headers, svg = http_get(url)
    check(status == 200, f"{url}: HTTP {status} {svg[:300]}")
    check(headers.get("Content-Type", "").startswith("image/svg+xml"), f"{url}: {headers.get('Content-Type')}")
    got = {}
    for row, x, value in CELL.findall(svg):
        got.setdefault(row, {})[int(x)] = float(value)
    if not want:
        check(not got and 'class="empty"' in svg, f"{url}: expected the empty state, got {len(got)} rows")
        return svg
    check(sorted(got) == sorted(want), f"{url}: rows {sorted(got)}, stored tensors {sorted(want)}")
    for tensor, steps in want.items():
        check(sorted(got[tensor]) == sorted(steps), f"{url}: {tensor} steps {sorted(got[tensor])} vs {sorted(steps)}")
        for step, value in steps.items():
            check(abs(got[tensor][step] - value) <= 1e-5 * max(1.0, abs(value)),
                  f"{url}: {tensor}@{step} drawn {got[tensor][step]}, stored {value}")
        check(f'<text class="row-label"' in svg and f">{tensor}</text>" in svg, f"{url}: no label {tensor}")
    check('<g class="colour-legend">' in svg, f"{url}: no legend")
    return svg


def main():
    build, source, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    chromium = shutil.which("chromium")
    check(chromium is not None, "'chromium' is not installed: run deploy/install-deps.sh")
    stack = Stack(build, source)
    try:
        stack.start_madamd()
        http = "http://" + stack.madamd.wait_for(r"http on (\S+:\d+)").group(1)
        stack.start_worker("w1")
        sweep, n = stack.submit(SWEEP, "insight.yaml")
        check(n == 2, f"the sweep has {n} runs")
        show = stack.wait_finished(sweep, timeout=240)
        check(show["counts"]["succeeded"] == 2, f"counts {show['counts']}")
        runs = {r["params"]["optimizer"]: r for r in
                json.loads(http_get(f"{http}/api/v1/sweeps/{sweep}/runs")[2])["runs"]}
        madam, int_madam = runs["madam"]["id"], runs["int_madam"]["id"]

        # Layer telemetry: 2 epochs x 4 layer steps, per weight tensor.
        series = {run: layer_series(http, run) for run in (madam, int_madam)}
        ru = series[madam]["relative_update"]
        check(len(ru) >= 2, f"madam logged relative_update for {sorted(ru)}")
        for tensor, steps in ru.items():
            check(len(steps) == 8, f"{tensor} has {len(steps)} layer steps, expected 2 epochs x 4")
        check(not series[madam]["level_top_fraction"], "madam logged level shares")
        check(series[int_madam]["level_top_fraction"], "int_madam logged no level shares")
        for run in (madam, int_madam):
            for metric in LAYER_METRICS:
                check_heatmap(http, run, metric, series[run][metric])
        svg = check_heatmap(http, madam, "level_top_fraction", {})
        check("int_madam" in svg, "the level-share empty state does not say why")
        # The default metric is relative_update.
        default = http_get(f"{http}/api/v1/runs/{madam}/layers.svg")[2]
        check(default == http_get(f"{http}/api/v1/runs/{madam}/layers.svg?metric=relative_update")[2],
              "layers.svg without metric is not relative_update")
        status, _, body = http_get(f"{http}/api/v1/runs/{madam}/layers.svg?metric=train%2Floss")
        check(status == 400 and "train/loss" in json.loads(body)["error"], f"a bad metric answered {status} {body}")
        status, _, body = http_get(f"{http}/api/v1/runs/{sweep}-999/layers.svg")
        check(status == 404, f"an unknown run answered {status} {body}")

        # Claims: the route and madamctl judge alike.
        status, _, body = http_get(f"{http}/api/v1/sweeps/{sweep}/claims")
        check(status == 200, f"claims: HTTP {status} {body[:300]}")
        route = json.loads(body)
        cli = stack.ctl_json("report", "claims", "--sweep", sweep, "--format", "json", "--paper")
        pairs = [(c["id"], c["verdict"]) for c in route["claims"]]
        check(pairs == [(c["id"], c["verdict"]) for c in cli["claims"]], f"route {pairs} vs madamctl {cli['claims']}")
        check([c["id"] for c in route["claims"]] == CLAIM_IDS, f"claim ids {pairs}")
        signs = dict(pairs)["madam_signs_fixed"]
        check(signs == "holds", f"madam_signs_fixed is '{signs}' on two multiplicative runs")
        status, _, _ = http_get(f"{http}/api/v1/sweeps/nosuch/claims")
        check(status == 404, f"claims of an unknown sweep answered {status}")

        # Cost: device time from started_at..ended_at, a median per task,
        # nothing left to wait for; madamctl, the sweep JSON and /metrics agree.
        rows = stack.query("SELECT started_at, ended_at FROM runs WHERE sweep_id = ?", (sweep,))
        spent = sum(r["ended_at"] - r["started_at"] for r in rows) / 1000.0
        shown = stack.ctl_json("sweep", "show", sweep)
        check(abs(shown["cost"]["device_seconds"] - spent) < 1e-6, f"sweep show cost {shown['cost']}, SQLite {spent}")
        check(list(shown["cost"]["median_run_seconds"]) == ["synthetic-mlp"], f"medians {shown['cost']}")
        check(shown["cost"]["eta_seconds"] == 0, f"a finished sweep's ETA is {shown['cost']['eta_seconds']}")
        text = stack.ctl("sweep", "show", sweep).stdout
        check(re.search(r"^device_hours: +\d+\.\d{3}$", text, re.M) and re.search(r"^eta: +0 s on 1 device", text, re.M),
              f"sweep show text lacks the cost lines:\n{text}")
        page = json.loads(http_get(f"{http}/api/v1/sweeps/{sweep}")[2])
        check(abs(page["cost"]["device_seconds"] - spent) < 1e-6, f"sweep JSON cost {page['cost']}")
        metrics = http_get(f"{http}/metrics")[2]
        check(f'madam_sweep_device_seconds_total{{sweep="{sweep}"}}' not in metrics,
              "a finished sweep still has a device-seconds series")

        # The pages, rendered.
        profile = tempfile.mkdtemp(prefix="chromium-", dir=stack.tmp)
        dom = chromium_dom(chromium, f"{http}/#/run/{int_madam}", profile)
        with open(os.path.join(out_dir, "run.html"), "w") as f:
            f.write(dom)
        cells = CELL.findall(dom)
        want_cells = sum(len(s) for s in series[int_madam]["relative_update"].values())
        check(len(cells) == want_cells, f"the run page has {len(cells)} heatmap cells, want {want_cells} "
              f"(DOM in {out_dir})")
        for tensor in series[int_madam]["relative_update"]:
            check(re.search(r'<text class="row-label"[^>]*>' + re.escape(tensor) + "</text>", dom),
                  f"the run page does not name tensor {tensor}")
        check('data-metric="level_top_fraction"' in dom, "no metric switch on the run page")

        dom = chromium_dom(chromium, f"{http}/#/sweep/{sweep}", profile)
        with open(os.path.join(out_dir, "sweep.html"), "w") as f:
            f.write(dom)
        rows = re.findall(r'<tr class="claim" data-claim="([^"]+)" data-verdict="([^"]+)"', dom)
        check(rows == pairs, f"the sweep page's claims table {rows}, want {pairs} (DOM in {out_dir})")
        check(f'href="#/run/{madam}"' in dom, "the sweep page does not link to its runs' pages")
        cost = re.search(r'<div class="cost" data-device-seconds="([^"]+)">([^<]*)', dom)
        check(cost and abs(float(cost.group(1)) - spent) < 1e-6 and "device-hours" in cost.group(2),
              f"the sweep page's cost line: {cost and cost.group(0)}")
    except Exception:
        stack.print_logs(20)
        raise
    finally:
        stack.close()
    print("insight: passed")


if __name__ == "__main__":
    main()
