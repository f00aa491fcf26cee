#!/usr/bin/python3
"""End-to-end scenarios (ARCHITECTURE.md sections 2-5): a real madamd, two real madam-worker
processes and madamctl on loopback.

    e2e_test.py SCENARIO BUILD_DIR SOURCE_DIR
    SCENARIO: smoke | cancel_rerun | rerun_failed | restart
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import Stack, check  # noqa: E402

# A sweep of synthetic runs long enough (a second or two each) to be caught
# mid-flight.
SLOW_SWEEP = """name: slow
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 150
params: {lr_schedule: constant}
grid:
  optimizer: [madam, adam]
  lr: [0.01, 0.02, 0.03]
seeds: [0]
resources: {device: cpu}
"""


def scenario_smoke(stack):
    with open(os.path.join(stack.source, "sweeps", "smoke.yaml")) as f:
        sweep_id, runs = stack.submit(f.read(), "smoke.yaml")
    check(runs == 8, f"smoke.yaml expands to {runs} runs, expected 8")
    watch = stack.ctl("sweep", "watch", sweep_id, timeout=180)
    check("8/8" in watch.stdout, f"watch did not report 8/8 runs done: {watch.stdout[-500:]}")
    show = stack.show(sweep_id)
    check(show["state"] == "finished", f"state {show['state']}")
    check(show["counts"]["succeeded"] == 8, f"counts {show['counts']}")
    export = stack.export(sweep_id)
    check(export["sweep"] == sweep_id and len(export["runs"]) == 8, "export shape")
    for run in export["runs"]:
        check(run["state"] == "succeeded", f"run {run['id']} {run['state']}")
        check(isinstance(run["params"]["lr"], (int, float)), "params hold numbers as numbers")
        check("seed" in run["params"], "params hold the seed")
        check("test/error" in run["final"], f"run {run['id']} final {run['final']}")
        stack.check_series_complete(run)
    stack.check_invariants(sweep_id, 8)


def scenario_cancel_rerun(stack):
    sweep_id, runs = stack.submit(SLOW_SWEEP)
    stack.wait_until(lambda: stack.show(sweep_id)["counts"]["running"] >= 1, 60, "a running run")
    cancelled = stack.ctl_json("sweep", "cancel", sweep_id)
    check(cancelled["state"] == "cancelled", f"cancel answered {cancelled}")
    # Running runs see the cancel at their next heartbeat (lease/3).
    show = stack.wait_until(lambda: (lambda s: s if s["counts"]["running"] == 0 else None)(
        stack.show(sweep_id)), 30, "running runs to stop")
    c = show["counts"]
    check(c["pending"] == 0, f"pending runs after cancel: {c}")
    check(c["cancelled"] >= 1, f"nothing cancelled: {c}")
    check(c["cancelled"] + c["succeeded"] == runs, f"counts {c}")
    time.sleep(1)
    check(stack.show(sweep_id)["counts"] == c, "runs changed after the sweep was cancelled")
    # Rerun the cancelled runs: they go back to pending and finish.
    rerun = stack.ctl_json("sweep", "rerun", sweep_id, "--state", "cancelled")
    check(rerun.get("runs") == c["cancelled"], f"rerun answered {rerun}, expected {c['cancelled']} runs")
    final = stack.wait_finished(sweep_id, timeout=240)
    check(final["counts"]["succeeded"] == runs, f"after rerun: {final['counts']}")
    stack.check_invariants(sweep_id, runs)
    for run in stack.export(sweep_id)["runs"]:
        stack.check_series_complete(run)


def scenario_rerun_failed(stack):
    sweep = """name: failing
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 2
max_attempts: 2
params: {optimizer: madam}
grid:
  lr: [0.01, 0.02]
  fail_at_step: [-1, 5]
"""
    sweep_id, runs = stack.submit(sweep)
    show = stack.wait_finished(sweep_id, timeout=120)
    check(show["counts"]["failed"] == 2 and show["counts"]["succeeded"] == 2, f"{show['counts']}")
    failed = stack.ctl_json("run", "list", "--sweep", sweep_id, "--state", "failed")["runs"]
    for run in failed:
        check(run["attempts"] == 2, f"run {run['id']} attempts {run['attempts']}, expected 2")
        detail = stack.ctl("run", "show", run["id"]).stdout
        check("injected failure at step 5" in detail, f"run show lacks the error:\n{detail}")
    rerun = stack.ctl_json("sweep", "rerun", sweep_id, "--state", "failed")
    check(rerun.get("runs") == 2, f"rerun answered {rerun}, expected 2 runs requeued")
    show = stack.wait_finished(sweep_id, timeout=120)
    check(show["counts"]["failed"] == 2 and show["counts"]["succeeded"] == 2,
          f"after rerun: {show['counts']}")
    for run in stack.ctl_json("run", "list", "--sweep", sweep_id, "--state", "failed")["runs"]:
        check(run["attempts"] == 2, f"rerun did not reset attempts: {run['id']} has {run['attempts']}")
    stack.check_invariants(sweep_id, runs)


def scenario_restart(stack):
    sweep_id, runs = stack.submit(SLOW_SWEEP)
    stack.wait_until(lambda: stack.show(sweep_id)["counts"]["running"] >= 2, 60, "two running runs")
    stack.restart_madamd(delay=0, sig=signal.SIGKILL)
    mid = stack.show(sweep_id)
    check(sum(mid["counts"].values()) == runs, f"runs lost in the restart: {mid['counts']}")
    final = stack.wait_finished(sweep_id, timeout=240)
    check(final["counts"]["succeeded"] == runs, f"after restart: {final['counts']}")
    stack.check_invariants(sweep_id, runs)
    for run in stack.export(sweep_id)["runs"]:
        stack.check_series_complete(run)


def main():
    scenario, build, source = sys.argv[1:4]
    stack = Stack(build, source)
    try:
        stack.start_madamd()
        stack.start_worker("w1")
        stack.start_worker("w2")
        globals()["scenario_" + scenario](stack)
    except Exception:
        stack.print_logs(20)
        raise
    finally:
        stack.close()
    print(f"e2e {scenario}: passed")


if __name__ == "__main__":
    main()
