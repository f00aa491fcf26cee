"""A local madam stack for integration tests: a real madamd and real
madam-worker processes on loopback, driven through madamctl, with the SQLite
file checked directly for the run invariants (ARCHITECTURE.md section 5).

Stdlib only. Every process is killed when the Stack is closed.
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time


class TestFailure(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


class Process:
    """A child process whose stdout is collected line by line."""

    def __init__(self, argv, name, env=None):
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern, timeout=20):
        deadline = time.time() + timeout
        regex = re.compile(pattern)
        while time.time() < deadline:
            for line in list(self.lines):
                m = regex.search(line)
                if m:
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise TestFailure(f"{self.name}: no line matching {pattern!r}; output:\n" +
                          "\n".join(self.lines[-30:]))

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)


class Stack:
    def __init__(self, build_dir, source_dir, lease_seconds=3, madamd_flags=()):
        self.build = build_dir
        self.source = source_dir
        self.madamd_bin = os.path.join(build_dir, "server", "madamd")
        self.worker_bin = os.path.join(build_dir, "worker", "madam-worker")
        self.ctl_bin = os.path.join(build_dir, "cli", "madamctl")
        self.tmp = tempfile.mkdtemp(prefix="madam-e2e-")
        self.db = os.path.join(self.tmp, "madam.db")
        self.lease_seconds = lease_seconds
        self.madamd_flags = list(madamd_flags)
        self.madamd = None
        self.address = None
        self.workers = []

    # ---- processes ----
    def start_madamd(self, port=0):
        # --http on a free port: tests run in parallel and must not fight
        # over the default 7071.
        http = [] if any(f.startswith("--http") for f in self.madamd_flags) else ["--http", "127.0.0.1:0"]
        self.madamd = Process([self.madamd_bin, "--listen", f"127.0.0.1:{port}", "--db", self.db] + http + [
                               "--lease-seconds", str(self.lease_seconds),
                               "--checkpoint-dir", os.path.join(self.tmp, "checkpoints")] +
                              self.madamd_flags, "madamd")
        m = self.madamd.wait_for(r"listening on (\S+:\d+)")
        self.address = m.group(1)
        return self.address

    def restart_madamd(self, delay=0.0, sig=signal.SIGKILL):
        port = self.address.rsplit(":", 1)[1]
        self.madamd.signal(sig)
        self.madamd.proc.wait(timeout=20)
        time.sleep(delay)
        self.start_madamd(port)

    def start_worker(self, name):
        w = Process([self.worker_bin, "--coordinator", self.address, "--threads", "1",
                     "--name", name, "--checkpoint-dir", os.path.join(self.tmp, "wk-" + name)],
                    name)
        self.workers.append(w)
        return w

    def print_logs(self, lines=20):
        """The last output lines of madamd and of every worker, for a failed test."""
        print("madamd output (last lines):\n" + "\n".join(self.madamd.lines[-lines:] if self.madamd else []))
        for w in self.workers:
            print(f"{w.name} output (last lines):\n" + "\n".join(w.lines[-lines:]))

    def close(self):
        for w in self.workers:
            w.kill()
        if self.madamd:
            self.madamd.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- madamctl ----
    def ctl(self, *args, expect=0, timeout=120):
        argv = [self.ctl_bin, "--coordinator", self.address] + list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if expect is not None and r.returncode != expect:
            raise TestFailure(f"madamctl {' '.join(args)} exited {r.returncode}, expected {expect}\n"
                              f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def ctl_json(self, *args, **kw):
        return json.loads(self.ctl("--json", *args, **kw).stdout)

    def submit(self, text, name="sweep.yaml"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        out = self.ctl_json("sweep", "submit", path)
        return out["id"], out["runs"]

    def show(self, sweep_id):
        return self.ctl_json("sweep", "show", sweep_id)

    def wait_until(self, predicate, timeout, what):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.2)
        raise TestFailure(f"timed out after {timeout} s waiting for {what}")

    def wait_finished(self, sweep_id, timeout=180):
        return self.wait_until(lambda: (lambda s: s if s["state"] != "running" else None)(
            self.show(sweep_id)), timeout, f"sweep {sweep_id} to end")

    def export(self, sweep_id):
        return self.ctl_json("sweep", "export", sweep_id, "--format", "json")

    # ---- the SQLite file, read-only ----
    def query(self, sql, args=()):
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql, args).fetchall()]
        finally:
            db.close()

    def run_row(self, run_id):
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        check(rows, f"no run {run_id} in the database")
        return rows[0]

    def worker_ids(self):
        return {r["name"]: r["id"] for r in self.query("SELECT id, name FROM workers")}

    # ---- invariants, read straight from the SQLite file ----
    def check_invariants(self, sweep_id, expected_runs):
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            ok = db.execute("PRAGMA integrity_check").fetchone()[0]
            check(ok == "ok", f"integrity_check: {ok}")
            n = db.execute("SELECT COUNT(*) FROM runs WHERE sweep_id = ?", (sweep_id,)).fetchone()[0]
            check(n == expected_runs, f"sweep {sweep_id} has {n} runs, expected {expected_runs}")
            dups = db.execute("SELECT run_id, name, step, COUNT(*) FROM metrics "
                              "GROUP BY run_id, name, step HAVING COUNT(*) > 1").fetchall()
            check(not dups, f"duplicate metric points: {dups[:5]}")
        finally:
            db.close()

    def check_series_complete(self, run):
        """Every metric series of a succeeded run has one point per logged
        step, with no gaps: test metrics at each epoch end, train/loss every
        10th step and at each epoch end."""
        points = self.ctl_json("run", "metrics", run["id"], "--format", "json")["points"]
        series = {}
        for p in points:
            series.setdefault(p["name"], []).append(p["step"])
        epochs = int(run["params"]["epochs"])
        tests = sorted(series.get("test/error", []))
        check(len(tests) == epochs, f"run {run['id']}: {len(tests)} test/error points for {epochs} epochs")
        per_epoch = tests[0]
        check(tests == [per_epoch * e for e in range(1, epochs + 1)],
              f"run {run['id']}: test/error steps {tests[:5]}... are not epoch ends")
        # Losses and optim/* every 10th step and at each epoch's end; the
        # per-layer telemetry (layer/*) keeps steps of its own.
        expected_train = sorted(s for s in range(1, per_epoch * epochs + 1)
                                if s % 10 == 0 or s % per_epoch == 0)
        for name in ("train/loss", "optim/relative_update", "optim/at_bound_fraction",
                     "optim/sign_flips"):
            got = sorted(series.get(name, []))
            check(got == expected_train,
                  f"run {run['id']}: {name} has {len(got)} points, expected {len(expected_train)} "
                  f"(missing {sorted(set(expected_train) - set(got))[:5]}, "
                  f"extra {sorted(set(got) - set(expected_train))[:5]})")
        for name in ("test/loss", "lr", "samples_per_second"):
            check(sorted(series.get(name, [])) == tests, f"run {run['id']}: {name} not at every epoch end")
