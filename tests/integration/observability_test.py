#!/usr/bin/python3
"""Observability integration tests (ARCHITECTURE.md section 8).

Real processes on loopback: madamd, madam-worker, madamctl, and the Debian
programs the issue names — Prometheus, promtool and headless Chromium. A
missing program is a FAILURE naming deploy/install-deps.sh, never a skip.

Usage: observability_test.py CASE MADAMD WORKER MADAMCTL SOURCE_DIR OUT_DIR
CASE: prometheus | promtool | chromium | http | deploy
Stdlib only.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


class TestFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def require_program(name):
    path = shutil.which(name)
    if path is None:
        raise TestFailure(f"'{name}' is not installed: run deploy/install-deps.sh (it installs "
                          f"prometheus, chromium and fonts-dejavu-core)")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_until(what, fn, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise TestFailure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Process:
    """A child process owned by the test (killed on exit); stdout lines kept."""

    def __init__(self, argv, log_path, capture=False):
        self.argv = argv
        self.log_path = log_path
        self.lines = []
        self._cv = threading.Condition()
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else self._log,
                                     stderr=self._log, stdin=subprocess.DEVNULL)
        if capture:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log.write(raw)
            self._log.flush()
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TestFailure(f"{self.argv[0]} never printed /{pattern}/; log {self.log_path}:\n"
                                      + self.tail())
                self._cv.wait(min(left, 0.2))

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Stack:
    """madamd (gRPC and HTTP on free loopback ports) plus workers, in a temp dir."""

    def __init__(self, args, lease_seconds=5):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="madam-obs-")
        self.procs = []
        self.madamd = self.spawn([args.madamd, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                  "--db", os.path.join(self.dir, "madam.db"),
                                  "--lease-seconds", str(lease_seconds)], "madamd.log", capture=True)
        m = self.madamd.wait_line(r"listening on (\S+):(\d+)", 30)
        self.grpc = f"127.0.0.1:{m.group(2)}"
        m = self.madamd.wait_line(r"madamd: http on (\S+):(\d+)", 30)
        self.http = f"http://127.0.0.1:{m.group(2)}"
        self.http_port = int(m.group(2))

    def spawn(self, argv, log_name, capture=False):
        p = Process(argv, os.path.join(self.dir, log_name), capture=capture)
        self.procs.append(p)
        return p

    def start_workers(self, n):
        for i in range(n):
            self.spawn([self.args.worker, "--coordinator", self.grpc, "--threads", "1", "--name", f"w{i}",
                        "--data-dir", self.dir], f"worker{i}.log")

    def madamctl(self, *argv, timeout=30):
        r = subprocess.run([self.args.madamctl, "--coordinator", self.grpc, "--json", *argv],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise TestFailure(f"madamctl {' '.join(argv)} failed ({r.returncode}): {r.stderr}")
        return json.loads(r.stdout) if r.stdout.strip() else None

    def submit(self, path):
        return self.madamctl("sweep", "submit", path)["id"]

    def sweep(self, sweep_id):
        return self.madamctl("sweep", "show", sweep_id)

    def api(self, path):
        status, _, body = http_get(self.http + path)
        check(status == 200, f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def close(self, keep=False):
        for p in reversed(self.procs):
            p.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return "\n".join(f"--- {os.path.basename(p.log_path)}\n{p.tail(15)}" for p in self.procs)


def write_slow_sweep(stack, name="dashboard-slow"):
    """A sweep whose runs stay running for minutes (cancelled by the tests)."""
    path = os.path.join(stack.dir, "slow.yaml")
    with open(path, "w") as f:
        f.write(f"name: {name}\ntask: synthetic-mlp\nmetric: {{name: test/error, goal: minimize}}\n"
                "epochs: 400\nbatch_size: 16\ngrid:\n  optimizer: [sgd, madam, adam, int_madam]\n"
                "  lr: [0.01]\nseeds: [0]\nresources: {device: cpu}\n")
    return path


def wait_sweep_finished(stack, sweep_id, timeout):
    def done():
        s = stack.sweep(sweep_id)
        return s if s["state"] != "running" else None
    return wait_until(f"sweep {sweep_id} to finish", done, timeout, interval=0.5)


# ---- cases ------------------------------------------------------------------

def case_prometheus(args):
    """A real Prometheus scrapes madamd during the smoke sweep; series read back via its API."""
    prometheus = require_program("prometheus")
    stack = Stack(args)
    prom = None
    try:
        port = free_port()
        config = os.path.join(stack.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: madamd\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{stack.http_port}']\n")
        prom = stack.spawn([prometheus, f"--config.file={config}",
                            f"--storage.tsdb.path={os.path.join(stack.dir, 'tsdb')}",
                            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], "prometheus.log")
        base = f"http://127.0.0.1:{port}"
        wait_until("Prometheus to be ready", lambda: http_get(base + "/-/ready", 2)[0] == 200, 30)

        def query(expr):
            url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            status, _, body = http_get(url, 5)
            check(status == 200, f"Prometheus query {expr}: HTTP {status} {body[:200]!r}")
            data = json.loads(body)
            check(data["status"] == "success", f"Prometheus query {expr}: {data}")
            return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

        # The target is up before any sweep exists.
        wait_until("Prometheus to scrape madamd (up == 1)",
                   lambda: any(v == 1 for _, v in query('up{job="madamd"}')), 20)
        stack.start_workers(2)
        sweep_id = stack.submit(os.path.join(args.source_dir, "sweeps", "smoke.yaml"))
        final = wait_sweep_finished(stack, sweep_id, 90)
        check(final["counts"]["succeeded"] == 8, f"smoke sweep did not succeed 8 runs: {final}")

        def settled():
            succeeded = query('madam_runs{state="succeeded"}')
            return succeeded and succeeded[0][1] == 8
        wait_until('Prometheus to see madam_runs{state="succeeded"} == 8', settled, 15)
        points = query("madam_metric_points_ingested_total")
        check(points and points[0][1] > 0, f"madam_metric_points_ingested_total not > 0: {points}")
        granted = query("madam_leases_granted_total")
        check(granted and granted[0][1] >= 8, f"madam_leases_granted_total < 8: {granted}")
        rpc = query('madam_rpc_duration_seconds_count{method="WorkerApi/ReportMetrics"}')
        check(rpc and rpc[0][1] > 0, f"no ReportMetrics latency observations: {rpc}")
        batches = query("madam_store_write_batch_duration_seconds_count")
        check(batches and batches[0][1] > 0, f"no store write batches observed: {batches}")
        build = query("madam_build_info")
        check(build and build[0][1] == 1 and "revision" in build[0][0], f"madam_build_info: {build}")
        finished = query('madam_sweeps{state="finished"}')
        check(finished and finished[0][1] == 1, f'madam_sweeps{{state="finished"}} != 1: {finished}')
        quantile = query('histogram_quantile(0.99, sum by (le) (rate(madam_rpc_duration_seconds_bucket[1m])))')
        check(quantile, "histogram_quantile over madam_rpc_duration_seconds returned nothing")
        # Per-run gauges go when their runs end: none left in a fresh scrape.
        status, _, body = http_get(stack.http + "/metrics")
        leftover = [l for l in body.decode().splitlines() if l.startswith("madam_run_train_loss{")]
        check(not leftover, f"per-run gauges outlived their runs: {leftover[:3]}")
        print(f"prometheus: sweep {sweep_id} scraped; points={points[0][1]:.0f} leases={granted[0][1]:.0f}")
    except TestFailure:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.close()


def case_promtool(args):
    """`promtool check metrics` accepts madamd's exposition, with runs live and after they end."""
    promtool = require_program("promtool")
    stack = Stack(args)
    try:
        stack.start_workers(1)
        sweep_id = stack.submit(write_slow_sweep(stack))

        def lint(label):
            status, headers, body = http_get(stack.http + "/metrics")
            check(status == 200, f"/metrics: HTTP {status}")
            ctype = headers.get("Content-Type", "")
            check(ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"/metrics Content-Type {ctype!r}")
            r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
            check(r.returncode == 0, f"promtool check metrics ({label}) failed:\n"
                  f"{r.stdout.decode()}{r.stderr.decode()}")
            return body.decode()

        # While a run is live its per-run gauges are in the exposition too.
        def live_gauges():
            text = lint("during the sweep")
            return "madam_run_train_loss{" in text
        wait_until("a running run's madam_run_train_loss series", live_gauges, 45, interval=0.2)
        # Cancelling ends the runs; their series go with them.
        stack.madamctl("sweep", "cancel", sweep_id)
        wait_sweep_finished(stack, sweep_id, 30)
        wait_until("per-run series to go after the runs ended",
                   lambda: "madam_run_train_loss{" not in lint("after the sweep"), 10)
        text = lint("after the sweep")
        for name in ["madam_runs", "madam_sweeps", "madam_workers_connected", "madam_leases_granted_total",
                     "madam_leases_expired_total", "madam_leases_fenced_total", "madam_run_retries_total",
                     "madam_metric_points_ingested_total", "madam_rpc_duration_seconds_bucket",
                     "madam_store_write_batch_duration_seconds_bucket", "madam_build_info"]:
            check(re.search(rf"^{name}[{{ ]", text, re.M), f"/metrics lacks {name}")
        print("promtool: exposition accepted during and after the sweep")
    except TestFailure:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.close()


def chromium_argv(chromium, profile):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--virtual-time-budget=5000"]


def rendered(dom):
    """The rendered DOM without the page's own script (whose strings look like markup)."""
    return re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)


def case_chromium(args):
    """Headless Chromium renders the dashboard during a running sweep."""
    chromium = require_program("chromium")
    stack = Stack(args)
    try:
        stack.start_workers(2)
        sweep_id = stack.submit(write_slow_sweep(stack))

        # Wait until two runs are running with several train/loss points each.
        def live_with_points():
            runs = stack.api(f"/api/v1/sweeps/{sweep_id}/runs")["runs"]
            running = [r for r in runs if r["state"] == "running"]
            ok = 0
            for r in running:
                pts = stack.api(f"/api/v1/runs/{r['id']}/metrics?name=train%2Floss")["points"]
                ok += len(pts) >= 3
            return ok >= 2
        wait_until("two running runs with train/loss points", live_with_points, 45, interval=0.5)

        # The incremental metrics API returns only later steps.
        run_id = next(r["id"] for r in stack.api(f"/api/v1/sweeps/{sweep_id}/runs")["runs"] if r["state"] == "running")
        pts = stack.api(f"/api/v1/runs/{run_id}/metrics?name=train%2Floss")["points"]
        mid = pts[len(pts) // 2]["step"]
        later = stack.api(f"/api/v1/runs/{run_id}/metrics?name=train%2Floss&after_step={mid}")["points"]
        check(later and all(p["step"] > mid for p in later), f"after_step={mid} returned {later[:3]}")

        profile = tempfile.mkdtemp(prefix="chromium-", dir=stack.dir)
        url = f"{stack.http}/#/sweep/{sweep_id}"
        r = subprocess.run(chromium_argv(chromium, profile) + ["--dump-dom", url],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"chromium --dump-dom failed ({r.returncode}): {r.stderr[-2000:]}")
        dom = rendered(r.stdout)
        with open(os.path.join(args.out_dir, "dashboard-sweep.html"), "w") as f:
            f.write(dom)
        rows = re.findall(r'<tr class="run" data-state="(\w+)"', dom)
        check(len(rows) == 4, f"runs table has {len(rows)} rows, want 4 (DOM saved to {args.out_dir})")
        check("running" in rows, f"no running row in the runs table: {rows}")
        paths = re.findall(r'<path[^>]*class="series"[^>]*\sd="([^"]+)"', dom) + \
            re.findall(r'<path[^>]*\sd="([^"]+)"[^>]*class="series"', dom)
        best = max((len(re.findall(r"[ML]\s*-?[0-9.]+[ ,]-?[0-9.]+", d)) for d in paths), default=0)
        check(best >= 3, f"no SVG curve with points in the page (series paths: {len(paths)}, most points {best})")
        check(sweep_id in dom and "dashboard-slow" in dom, "sweep id/name not rendered")

        shot = os.path.join(args.out_dir, "dashboard-sweep.png")
        if os.path.exists(shot):
            os.remove(shot)
        r = subprocess.run(chromium_argv(chromium, profile) + [f"--screenshot={shot}", "--window-size=1280,900", url],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and os.path.exists(shot) and os.path.getsize(shot) > 10000,
              f"chromium --screenshot failed ({r.returncode}): {r.stderr[-2000:]}")

        # The sweeps list and workers pages render too.
        r = subprocess.run(chromium_argv(chromium, profile) + ["--dump-dom", f"{stack.http}/#/"],
                           capture_output=True, text=True, timeout=60)
        check(re.search(r'<tr class="sweep">', rendered(r.stdout)) and 'class="bar"' in rendered(r.stdout),
              "sweeps page has no sweep row with a progress bar")
        subprocess.run(chromium_argv(chromium, profile) + [f"--screenshot={os.path.join(args.out_dir, 'dashboard-sweeps.png')}",
                                                         "--window-size=1280,900", f"{stack.http}/#/"],
                       capture_output=True, timeout=60)
        r = subprocess.run(chromium_argv(chromium, profile) + ["--dump-dom", f"{stack.http}/#/workers"],
                           capture_output=True, text=True, timeout=60)
        with open(os.path.join(args.out_dir, "dashboard-workers.html"), "w") as f:
            f.write(r.stdout)
        workers = len(re.findall(r'<tr class="worker">', rendered(r.stdout)))
        check(workers == 2, f"workers page lists {workers} workers, want 2 (DOM saved to {args.out_dir})")
        print(f"chromium: {len(rows)} run rows, a curve with {best} points; screenshot {shot}")
        stack.madamctl("sweep", "cancel", sweep_id)
    except TestFailure:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.close()


def raw_exchange(port, data, timeout=5):
    """Sends raw bytes; returns (status or None, response bytes, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        closed = False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                got += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
        m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
        return (int(m.group(1)) if m else None), got, closed
    finally:
        s.close()


def case_http(args):
    """Bad HTTP input: 404, 405, 413, 400, keep-alive, and slow clients stall nobody."""
    stack = Stack(args)
    slow = []
    try:
        port = stack.http_port
        status, _, body = http_get(stack.http + "/no/such/path")
        check(status == 404, f"unknown path: HTTP {status}")
        status, _, _ = http_get(stack.http + "/api/v1/sweeps/sw-00000000")
        check(status == 404, f"unknown sweep: HTTP {status}")
        status, _, _ = http_get(stack.http + "/api/v1/runs/sw-00000000-00000/metrics?after_step=x")
        check(status in (400, 404), f"bad after_step: HTTP {status}")
        status, _, _ = raw_exchange(port, b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                                          b"Connection: close\r\n\r\n")
        check(status == 405, f"POST: HTTP {status}")

        # Oversized: a huge header, and a huge body; 413 (or 400) and closed.
        big_header = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n"
        status, _, closed = raw_exchange(port, big_header)
        check(status in (413, 400, 431) and closed, f"oversized header: HTTP {status}, closed={closed}")
        big_body = b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 100000
        status, _, closed = raw_exchange(port, big_body)
        check(status in (413, 400) and closed, f"oversized body: HTTP {status}, closed={closed}")

        # Malformed.
        for junk in [b"GARBAGE\r\n\r\n", b"GET /metrics HTTP/9.9\r\n\r\n", b"GET  HTTP/1.1\r\n\r\n",
                     b"GET /%zz HTTP/1.1\r\nHost: localhost\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"]:
            status, got, closed = raw_exchange(port, junk)
            check(status == 400 and closed, f"malformed {junk!r}: HTTP {status}, closed={closed}, got {got[:80]!r}")

        # Keep-alive: two requests on one connection.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /api/v1/sweeps HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/v1/workers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        deadline = time.monotonic() + 5
        while got.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            got += s.recv(65536)
        s.close()
        check(got.count(b"HTTP/1.1 200") == 2, f"keep-alive: {got[:200]!r}")

        # Slow clients: connections that send half a request and then nothing,
        # and one trickling a byte at a time. Others must stay fast meanwhile.
        for _ in range(50):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            slow.append(c)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.append(trickle)
        stop = threading.Event()

        def trickle_bytes():
            try:
                for b in b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-A: " + b"z" * 1000:
                    if stop.is_set():
                        return
                    trickle.send(bytes([b]))
                    time.sleep(0.05)
            except OSError:
                pass
        t = threading.Thread(target=trickle_bytes, daemon=True)
        t.start()
        time.sleep(0.3)
        for i in range(5):
            started = time.monotonic()
            status, _, _ = http_get(stack.http + "/metrics", timeout=5)
            took = time.monotonic() - started
            check(status == 200 and took < 1.0, f"/metrics with slow clients open: HTTP {status} in {took:.2f}s")
            started = time.monotonic()
            stack.madamctl("sweep", "list", timeout=10)
            took = time.monotonic() - started
            check(took < 2.0, f"gRPC ListSweeps (madamctl sweep list) with slow clients open took {took:.2f}s")
        # The read deadline (10 s) closes the stalled connections.
        stalled = slow[0]
        stalled.settimeout(15)
        started = time.monotonic()
        try:
            data = stalled.recv(100)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - started
        check(data == b"" and took < 12, f"stalled client not closed by the read timeout ({took:.1f}s, {data!r})")
        stop.set()
        print("http: 404/405/413/400, keep-alive, slow clients isolated")
    except TestFailure:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        for c in slow:
            c.close()
        stack.close()


def case_deploy(args):
    """deploy/prometheus/prometheus.yml passes promtool; the Grafana dashboard is importable JSON."""
    promtool = require_program("promtool")
    source = os.path.join(args.source_dir, "deploy", "prometheus", "prometheus.yml")
    # promtool checks that the reader token file it names exists: check a
    # copy with a (throw-away) token beside it, as a deployment mounts it.
    checked = tempfile.mkdtemp(prefix="madam-promtool-")
    config = os.path.join(checked, "prometheus.yml")
    shutil.copyfile(source, config)
    with open(os.path.join(checked, "reader-token"), "w") as f:
        f.write(os.urandom(16).hex())
    try:
        r = subprocess.run([promtool, "check", "config", config], capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(checked, ignore_errors=True)
    check(r.returncode == 0, f"promtool check config {source}:\n{r.stdout}{r.stderr}")
    with open(source) as f:
        check("metrics_path: /metrics" in f.read(), "prometheus.yml does not scrape /metrics")

    path = os.path.join(args.source_dir, "deploy", "grafana", "madam-dashboard.json")
    with open(path) as f:
        dash = json.load(f)
    for key in ["title", "uid", "panels", "schemaVersion", "time"]:
        check(key in dash, f"{path}: no '{key}'")
    check(isinstance(dash["panels"], list) and dash["panels"], f"{path}: no panels")
    exprs = []
    ids = set()
    for p in dash["panels"]:
        for key in ["id", "type", "title", "gridPos", "targets"]:
            check(key in p, f"{path}: panel {p.get('title')!r} has no '{key}'")
        check(p["id"] not in ids, f"{path}: duplicate panel id {p['id']}")
        ids.add(p["id"])
        for k in ["x", "y", "w", "h"]:
            check(isinstance(p["gridPos"].get(k), int), f"{path}: panel {p['title']!r} gridPos.{k}")
        for t in p["targets"]:
            check(t.get("expr") and t.get("refId"), f"{path}: panel {p['title']!r} target without expr/refId")
            exprs.append(t["expr"])
    text = "\n".join(exprs)
    for needle in ["madam_sweep_progress_ratio", "madam_runs", "rate(madam_metric_points_ingested_total",
                   "histogram_quantile", "madam_rpc_duration_seconds_bucket", "madam_run_train_loss"]:
        check(needle in text, f"{path}: no panel queries {needle}")
    # Every metric the dashboard queries is one madamd exposes (names in server/metrics.h).
    with open(os.path.join(args.source_dir, "server", "metrics.h")) as f:
        exposed = set(re.findall(r"\b(madam_[a-z_]+)", f.read()))
    for name in set(re.findall(r"\b(madam_[a-z_]+)", text)):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        check(name in exposed or base in exposed, f"{path}: queries {name}, which madamd does not expose")
    # Rules use a checked config: promtool parses every expression.
    rules = os.path.join(tempfile.mkdtemp(prefix="madam-rules-"), "rules.yml")
    with open(rules, "w") as f:
        f.write("groups:\n  - name: grafana-exprs\n    rules:\n")
        for i, e in enumerate(exprs):
            f.write(f"      - record: madam:grafana_expr_{i}\n        expr: {json.dumps(e)}\n")
    r = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"a Grafana panel query does not parse as PromQL:\n{r.stdout}{r.stderr}")
    print(f"deploy: prometheus.yml ok; grafana dashboard with {len(dash['panels'])} panels, {len(exprs)} queries")


CASES = {"prometheus": case_prometheus, "promtool": case_promtool, "chromium": case_chromium,
         "http": case_http, "deploy": case_deploy}


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("madamd")
    p.add_argument("worker")
    p.add_argument("madamctl")
    p.add_argument("source_dir")
    p.add_argument("out_dir")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    try:
        CASES[args.case](args)
    except TestFailure as e:
        print(f"FAIL {args.case}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
