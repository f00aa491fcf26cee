#!/usr/bin/env bash
# Runs deploy/slurm/madam-workers.sbatch outside Slurm with a stand-in
# madam-worker and the environment Slurm's gres plugin would set, and checks
# that it starts one worker per allocated GPU with the right flags, hands the
# token over through the environment, fails when a worker fails, forwards
# SIGTERM (the time limit) and refuses to start without a coordinator or GPUs.
set -euo pipefail
script="$(cd "$(dirname "$0")/../slurm" && pwd)/madam-workers.sbatch"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The stand-in records its flags and environment, then behaves as
# STUB_MODE says: exit 0, exit 3, or serve until signalled.
cat >"$work/madam-worker" <<'STUB'
#!/usr/bin/env bash
printf '%s coordinator=%s token=%s\n' "$*" "$MADAM_COORDINATOR" "${MADAM_TOKEN:-}" >>"$STUB_LOG"
case "$STUB_MODE" in
  ok) exit 0 ;;
  fail) exit 3 ;;
  serve) trap 'echo stopped >>"$STUB_LOG"; exit 143' TERM; while true; do sleep 0.1; done ;;
esac
STUB
chmod +x "$work/madam-worker"
printf 's3cret\n' >"$work/token"

failures=0
fail() { echo "slurm: $*" >&2; failures=$((failures + 1)); }
run() {  # run MODE [env...] -- args: the sbatch script with a fresh log
  local mode=$1; shift
  : >"$work/log"
  env -i PATH="$PATH" HOME="$work" STUB_LOG="$work/log" STUB_MODE="$mode" \
    MADAM_WORKER="$work/madam-worker" SLURM_ARRAY_JOB_ID=41 SLURM_ARRAY_TASK_ID=2 "$@" \
    bash "$script" coord.example:7070 >"$work/out" 2>&1
}

# Two GPUs, 8 CPUs: two workers, cuda:0 and cuda:1, 4 threads each.
rc=0; run ok CUDA_VISIBLE_DEVICES=3,5 SLURM_CPUS_PER_TASK=8 MADAM_TOKEN_FILE="$work/token" || rc=$?
((rc == 0)) || fail "two GPUs: exit status $rc: $(cat "$work/out")"
[[ $(wc -l <"$work/log") -eq 2 ]] || fail "two GPUs: expected 2 workers, got: $(cat "$work/log")"
for i in 0 1; do
  grep -q -- "--device cuda:$i --threads 4 --name .*-41_2-gpu$i .*coordinator=coord.example:7070 token=s3cret$" "$work/log" ||
    fail "two GPUs: no worker on cuda:$i with 4 threads, the coordinator and the token: $(cat "$work/log")"
done

# MADAM_ONE_WORKER=1: one worker with every GPU, as a device list, and every CPU.
rc=0; run ok CUDA_VISIBLE_DEVICES=3,5,6 SLURM_CPUS_PER_TASK=12 MADAM_ONE_WORKER=1 || rc=$?
((rc == 0)) || fail "one worker: exit status $rc: $(cat "$work/out")"
[[ $(wc -l <"$work/log") -eq 1 ]] || fail "one worker: expected 1 worker, got: $(cat "$work/log")"
grep -q -- "--device cuda:0,cuda:1,cuda:2 --threads 12 --name .*-41_2-gpus " "$work/log" ||
  fail "one worker: not on cuda:0,cuda:1,cuda:2 with 12 threads: $(cat "$work/log")"

# SLURM_GPUS_ON_NODE alone (no CUDA_VISIBLE_DEVICES): that many workers.
rc=0; run ok SLURM_GPUS_ON_NODE=3 SLURM_CPUS_PER_TASK=3 || rc=$?
if ((rc != 0)) || [[ $(wc -l <"$work/log") -ne 3 ]]; then
  fail "SLURM_GPUS_ON_NODE=3: status $rc, workers: $(cat "$work/log")"
fi

# A failing worker fails the job.
rc=0; run fail CUDA_VISIBLE_DEVICES=0 || rc=$?
((rc == 1)) || fail "failing worker: expected status 1, got $rc"

# No GPU, no coordinator: refused with a message.
rc=0; run ok || rc=$?
if ((rc != 1)) || ! grep -q "no GPU allocated" "$work/out"; then
  fail "no GPU: status $rc: $(cat "$work/out")"
fi
rc=0; env -i PATH="$PATH" CUDA_VISIBLE_DEVICES=0 bash "$script" >"$work/out" 2>&1 || rc=$?
if ((rc != 2)) || ! grep -q "coordinator" "$work/out"; then
  fail "no coordinator: status $rc: $(cat "$work/out")"
fi

# SIGTERM (Slurm's time limit) reaches every worker; the job ends cleanly.
# The job runs in its own process group so nothing outlives the check.
: >"$work/log"
setsid env -i PATH="$PATH" STUB_LOG="$work/log" STUB_MODE=serve MADAM_WORKER="$work/madam-worker" \
  CUDA_VISIBLE_DEVICES=0,1 bash "$script" coord.example:7070 >"$work/out" 2>&1 &
job=$!
for _ in $(seq 50); do [[ $(wc -l <"$work/log") -ge 2 ]] && break; sleep 0.1; done
kill -TERM "$job"
for _ in $(seq 50); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then
  kill -KILL -- "-$job" 2>/dev/null || true
  fail "SIGTERM: the job was still running 5 s later"
fi
rc=0; wait "$job" || rc=$?
if ((rc != 0)) || [[ $(grep -c stopped "$work/log") -ne 2 ]]; then
  fail "SIGTERM: status $rc, log: $(cat "$work/log") $(cat "$work/out")"
fi

if ((failures)); then exit 1; fi
echo "slurm: madam-workers.sbatch starts one worker per GPU, forwards SIGTERM, fails on failure"
