#!/usr/bin/python3
"""Fault-tolerance scenarios (ARCHITECTURE.md section 5): real madamd and
madam-worker processes on loopback, lease 5 s (workers heartbeat every
lease/3), runs of a few hundred steps with a checkpoint every epoch. After
each scenario the run invariants are checked on the SQLite file: integrity,
one run per grid cell and seed, one point per (run, metric, step) with no
gaps, and no run completed twice (every run ends in one terminal state with
attempts matching the leases it took).

    fault_test.py SCENARIO BUILD_DIR SOURCE_DIR
    SCENARIO: worker_kill | worker_stop | madamd_kill | lost_responses
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import Stack, check  # noqa: E402

LEASE = 5


def fmnist_sweep(name, runs=1, epochs=8):
    # batch 1000: 55 steps an epoch (the recipe holds 5,000 of the 60,000 out
    # for validation), so 8 epochs are 440 steps, ~1 s an epoch. No per-layer
    # telemetry: its extra logged steps are not in check_series_complete's
    # expected series.
    lrs = ", ".join(str(0.01 * (i + 1)) for i in range(runs))
    return f"""name: {name}
task: fmnist-mlp
metric: {{name: test/error, goal: minimize}}
epochs: {epochs}
batch_size: 1000
params: {{optimizer: madam, lr_schedule: constant, layer_stats_per_epoch: 0}}
grid:
  lr: [{lrs}]
max_attempts: 3
"""


def wait_checkpoint(stack, run_id, timeout=90):
    return stack.wait_until(lambda: stack.run_row(run_id)["resume_checkpoint"] or None, timeout,
                            f"a checkpoint of {run_id}")


def first_run(stack, sweep_id):
    return stack.export(sweep_id)["runs"][0]["id"]


def finish_and_check(stack, sweep_id, runs):
    final = stack.wait_finished(sweep_id, timeout=240)
    check(final["counts"]["succeeded"] == runs, f"counts {final['counts']}")
    stack.check_invariants(sweep_id, runs)
    for run in stack.export(sweep_id)["runs"]:
        stack.check_series_complete(run)
    return final


def scenario_worker_kill(stack):
    """kill -9 a worker mid-run: the run is leased again within lease + 5 s and
    resumes from its last checkpoint; attempts rise by one."""
    w1 = stack.start_worker("w1")
    sweep_id, runs = stack.submit(fmnist_sweep("worker-kill"))
    run_id = first_run(stack, sweep_id)
    checkpoint = wait_checkpoint(stack, run_id)
    w1.signal(signal.SIGKILL)
    killed_at = time.time()
    w2 = stack.start_worker("w2")
    stack.wait_until(lambda: stack.run_row(run_id)["attempts"] == 2, LEASE + 30, "a second lease")
    delay = time.time() - killed_at
    check(delay <= LEASE + 5, f"run leased again {delay:.1f} s after the kill (limit {LEASE + 5})")
    m = w2.wait_for(r"run \S+: resuming from (\S+)", timeout=30)
    epoch = int(re.search(r"epoch-(\d+)\.pt", m.group(1)).group(1))
    check(epoch >= 1, f"resumed from {m.group(1)}, not a checkpoint after step 0")
    print(f"worker_kill: leased again after {delay:.1f} s, resumed from epoch {epoch} "
          f"(checkpoint seen before the kill: {checkpoint})")
    finish_and_check(stack, sweep_id, runs)
    row = stack.run_row(run_id)
    check(row["attempts"] == 2, f"attempts {row['attempts']}, expected 2")
    check(row["lease_worker"] == stack.worker_ids()["w2"], "the run was not completed by w2")


def scenario_worker_stop(stack):
    """SIGSTOP a worker for 3 leases: the run is leased elsewhere; on SIGCONT
    every RPC of the stale worker is refused and it stops its run."""
    w1 = stack.start_worker("w1")
    sweep_id, runs = stack.submit(fmnist_sweep("worker-stop", epochs=12))
    run_id = first_run(stack, sweep_id)
    wait_checkpoint(stack, run_id)
    w1.signal(signal.SIGSTOP)
    stopped_at = time.time()
    stack.start_worker("w2")
    stack.wait_until(lambda: stack.run_row(run_id)["attempts"] == 2, LEASE + 30, "a second lease")
    # Keep w1 stopped for three lease periods in all.
    time.sleep(max(0.0, stopped_at + 3 * LEASE - time.time()))
    w1.signal(signal.SIGCONT)
    w1.wait_for(r"FAILED_PRECONDITION", timeout=30)
    w1.wait_for(r"stopping the run|lease lost", timeout=30)
    finish_and_check(stack, sweep_id, runs)
    row = stack.run_row(run_id)
    check(row["lease_worker"] == stack.worker_ids()["w2"], "the stale worker completed the run")
    check(not any("RUN_STATE_SUCCEEDED" in line for line in w1.lines),
          "the stale worker reported a completion")
    # Every call the stale worker made after SIGCONT was refused.
    after = [line for line in w1.lines if "refused" in line or "FAILED_PRECONDITION" in line]
    check(after, "no refusal seen by the stale worker")
    check(not any("rejected" in line for line in w1.lines), "a stale call got another error")


def scenario_madamd_kill(stack):
    """kill -9 madamd during a metric burst and restart it after 0 s, then
    after 10 s: workers reconnect; no acknowledged metric or submission is
    lost."""
    stack.start_worker("w1")
    stack.start_worker("w2")
    sweep_id, runs = stack.submit(fmnist_sweep("madamd-kill", runs=4, epochs=6))
    # A submission acknowledged just before a crash survives it.
    other_id, other_runs = stack.submit(fmnist_sweep("acked-before-crash", runs=1, epochs=1))
    stack.restart_madamd(delay=0)
    check(stack.show(other_id)["counts"]["pending"] + stack.show(other_id)["counts"]["running"]
          + stack.show(other_id)["counts"]["succeeded"] == other_runs, "submission lost")
    stack.wait_until(lambda: stack.show(sweep_id)["counts"]["running"] >= 2, 60, "two running runs")
    time.sleep(2)  # mid-burst
    stack.restart_madamd(delay=10)
    finish_and_check(stack, sweep_id, runs)
    finish_and_check(stack, other_id, other_runs)


def scenario_lost_responses(stack):
    """Responses lost (injected) on submit, acquire, report and complete: no
    double lease, no duplicate points; the retried submit makes one sweep."""
    stack.start_worker("w1")
    stack.start_worker("w2")
    with open(os.path.join(stack.source, "sweeps", "smoke.yaml")) as f:
        sweep_id, runs = stack.submit(f.read(), "smoke.yaml")
    sweeps = stack.ctl_json("sweep", "list")["sweeps"]
    check(len(sweeps) == 1, f"{len(sweeps)} sweeps after one retried submit")
    final = finish_and_check(stack, sweep_id, runs)
    for run in stack.ctl_json("run", "list", "--sweep", sweep_id)["runs"]:
        check(run["attempts"] == 1, f"run {run['id']} took {run['attempts']} leases (a double lease)")
    lost = [line for line in stack.madamd.lines if "fault injection" in line]
    check(lost, "fault injection was not on")
    print(f"lost_responses: {final['counts']}")


def main():
    scenario, build, source = sys.argv[1:4]
    flags = []
    if scenario == "lost_responses":
        flags = ["--inject-lost-responses", "SubmitSweep=1,AcquireRun=2,ReportMetrics=3,CompleteRun=2"]
    stack = Stack(build, source, lease_seconds=LEASE, madamd_flags=flags)
    try:
        stack.start_madamd()
        globals()["scenario_" + scenario](stack)
    except Exception:
        stack.print_logs(25)
        raise
    finally:
        stack.close()
    print(f"fault {scenario}: passed")


if __name__ == "__main__":
    main()
