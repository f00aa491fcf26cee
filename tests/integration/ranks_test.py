#!/usr/bin/python3
"""Data-parallel runs through madamd (ARCHITECTURE.md sections 3, 5 and 6):
real madamd and madam-worker processes on loopback, the worker registering
two CPU ranks (--cpu-ranks 2).

  * a `resources: {devices: 2}` sweep is leased to the 2-device worker; its
    run's rank 1 fails on the first attempt (fail_at_step with fault_rank 1
    and fail_attempt 1), the attempt fails naming the rank, and the retry
    succeeds;
  * a run needing 4 devices stays PENDING and `sweep show` says why;
  * bad input: devices 0 and 65 are refused at submit, naming the value; a
    worker whose --device list names a GPU twice refuses to start, and
    madamd refuses such a registration.

    ranks_test.py BUILD_DIR SOURCE_DIR
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import Process, Stack, TestFailure, check  # noqa: E402


def sweep(name, devices, params="{}", epochs=2):
    return f"""name: {name}
task: synthetic-mlp
metric: {{name: test/error, goal: minimize}}
epochs: {epochs}
params: {params}
grid:
  optimizer: [madam]
resources: {{device: cpu, devices: {devices}}}
max_attempts: 3
"""


def main(build, source):
    stack = Stack(build, source, lease_seconds=5)
    try:
        stack.start_madamd()
        worker = Process([stack.worker_bin, "--coordinator", stack.address, "--threads", "2",
                          "--cpu-ranks", "2", "--name", "ranks",
                          "--checkpoint-dir", os.path.join(stack.tmp, "wk-ranks")], "ranks")
        stack.workers.append(worker)
        stack.wait_until(lambda: stack.query("SELECT device FROM workers"), 30, "the worker to register")
        devices = stack.query("SELECT device FROM workers")[0]["device"]
        check(devices == "cpu,cpu", f"the worker registered {devices!r}, expected 'cpu,cpu'")

        # A rank that fails ends the attempt; the retry succeeds.
        sid, runs = stack.submit(sweep("two-ranks", 2, "{fail_at_step: 5, fault_rank: 1, fail_attempt: 1, "
                                                   "layer_stats_per_epoch: 0}"), "two.yaml")
        check(runs == 1, f"{runs} runs")
        final = stack.wait_finished(sid, timeout=240)
        check(final["counts"]["succeeded"] == 1, f"counts {final['counts']}")
        run = stack.export(sid)["runs"][0]
        row = stack.run_row(run["id"])
        check(row["attempts"] == 2, f"attempts {row['attempts']}, expected 2 (one failed, one retried)")
        worker.wait_for(r"rank 1: injected failure at step 5", timeout=10)
        check(run["params"]["devices"] == 2, f"params {run['params']}")
        stack.check_invariants(sid, 1)
        stack.check_series_complete(run)

        # More devices than any worker has: pending, and sweep show says why.
        wide, _ = stack.submit(sweep("four-ranks", 4), "four.yaml")
        shown = stack.wait_until(
            lambda: (lambda s: s if (s.get("cost") or {}).get("waiting_because") else None)(stack.show(wide)),
            30, "sweep show to say why the 4-device run waits")
        why = shown["cost"]["waiting_because"]
        check("need 4 devices" in why and "no connected worker has more than 2" in why, why)
        text = stack.ctl("sweep", "show", wide).stdout
        check("need 4 devices" in text, f"sweep show text lacks the reason:\n{text}")
        check(shown["counts"].get("pending") == 1, f"counts {shown['counts']}")
        stack.ctl("sweep", "cancel", wide)

        # Bad input, refused by name.
        for bad in ("0", "65"):
            path = os.path.join(stack.tmp, f"bad{bad}.yaml")
            with open(path, "w") as f:
                f.write(sweep(f"bad-{bad}", bad))
            r = stack.ctl("sweep", "submit", path, expect=None)
            check(r.returncode != 0, f"devices {bad} was accepted")
            check("devices" in r.stderr and bad in r.stderr, f"devices {bad}: {r.stderr}")
        r = subprocess.run([stack.worker_bin, "--coordinator", stack.address, "--device", "cuda:0,cuda:0"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2 and "named twice" in r.stderr, f"exit {r.returncode}: {r.stderr}")
        print("ranks: ok")
    except TestFailure:
        stack.print_logs(40)
        raise
    finally:
        stack.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
