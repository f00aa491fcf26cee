#!/usr/bin/env bash
# Multi-host test on one machine: madamd in one network namespace, a worker
# in each of two others, each worker joined to the coordinator by its own
# veth pair and subnet (ARCHITECTURE.md section 5: leases).
#
#   coordinator ns   10.77.0.1/32 on lo (madamd listens here)
#                    10.77.1.1/24 -- veth -- 10.77.1.2/24   w1 ns
#                    10.77.2.1/24 -- veth -- 10.77.2.2/24   w2 ns
#
# A sweep of runs lasting a few seconds each starts on both workers; then
# w1's link is cut while it holds a run. That run's lease expires, w2 leases
# it (attempt 2) and the sweep finishes with every run succeeded. Only the
# test's own namespaces and addresses are ever touched; every namespace and
# process is removed on exit.
#
#   netns_test.sh MADAMD MADAM_WORKER MADAMCTL
# Exits 77 (ctest: skipped) with the reason when network namespaces cannot
# be created here (not root, no CAP_SYS_ADMIN/CAP_NET_ADMIN, no ip).
set -euo pipefail
madamd=$1
worker=$2
madamctl=$3

skip() { echo "SKIP: $*"; exit 77; }
command -v ip >/dev/null || skip "the ip command (iproute2) is not installed"
[[ -x "$madamd" && -x "$worker" && -x "$madamctl" ]] || { echo "missing binaries: $*" >&2; exit 1; }

tag=$$
ns_c=madam-c-$tag
ns_1=madam-w1-$tag
ns_2=madam-w2-$tag
work=$(mktemp -d)
pids=()
namespaces=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do
    # Anything still running inside our namespaces was started by this test.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  if ((status != 0 && status != 77)); then
    for log in "$work"/*.log; do
      [[ -e "$log" ]] || continue
      echo "---- $(basename "$log") (last 20 lines)"
      tail -n 20 "$log"
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces left by an earlier run that was killed (a ctest timeout sends
# SIGKILL, which no trap sees): ours are named after a pid no longer running.
while read -r ns _; do
  if [[ "$ns" =~ ^madam-(c|w1|w2)-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[2]}" 2>/dev/null; then
    ip netns delete "$ns" 2>/dev/null || true
  fi
done < <(ip netns list 2>/dev/null)

if ! err=$(ip netns add "$ns_c" 2>&1); then
  skip "cannot create a network namespace: ${err}"
fi
namespaces+=("$ns_c")
ip netns add "$ns_1"
namespaces+=("$ns_1")
ip netns add "$ns_2"
namespaces+=("$ns_2")

in_c() { ip netns exec "$ns_c" "$@"; }
ip -n "$ns_c" link set lo up
ip -n "$ns_c" addr add 10.77.0.1/32 dev lo
for i in 1 2; do
  ns=madam-w$i-$tag
  ip link add "mc$i-$tag" netns "$ns_c" type veth peer name "mw$i-$tag" netns "$ns"
  ip -n "$ns_c" addr add "10.77.$i.1/24" dev "mc$i-$tag"
  ip -n "$ns_c" link set "mc$i-$tag" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.77.$i.2/24" dev "mw$i-$tag"
  ip -n "$ns" link set "mw$i-$tag" up
  ip -n "$ns" route add 10.77.0.1/32 via "10.77.$i.1"
done

address=10.77.0.1:7070
ctl() { in_c "$madamctl" --coordinator "$address" --json "$@"; }
# json FIELD-PATH: reads JSON on stdin and prints one value (python3 for
# parsing only; the test needs no Python packages).
json() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for key in sys.argv[1:]:
    v = v[int(key)] if isinstance(v, list) else v[key]
print(v)' "$@"; }

ip netns exec "$ns_c" "$madamd" --listen "$address" --insecure --lease-seconds 3 \
  --db "$work/madam.db" >"$work/madamd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -qs "listening on" "$work/madamd.log" && break
  sleep 0.1
done
grep -qs "listening on" "$work/madamd.log" || { echo "madamd did not start" >&2; exit 1; }

for i in 1 2; do
  ip netns exec "madam-w$i-$tag" "$worker" --coordinator "$address" --device cpu --threads 1 \
    --name "w$i" --checkpoint-dir "$work/checkpoints-w$i" >"$work/w$i.log" 2>&1 &
  pids+=($!)
done

# Three runs of 16,000 small steps: several seconds each, so w1 is mid-run
# when its link is cut half a second into its first run.
cat >"$work/sweep.yaml" <<'EOF'
name: netns
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 16
batch_size: 2
grid:
  optimizer: [sgd, adam, madam]
  lr: [0.01]
seeds: [0]
max_attempts: 3
resources: {device: cpu}
EOF
sweep=$(ctl sweep submit "$work/sweep.yaml" | json id)
echo "submitted sweep $sweep"

# worker_field NAME FIELD: a field of the worker called NAME in `worker list`.
worker_field() {
  ctl worker list | python3 -c 'import json, sys
for w in json.load(sys.stdin)["workers"]:
    if w["name"] == sys.argv[1] and w["connected"]:
        print(w[sys.argv[2]]); break' "$@"
}

# Wait until w1 holds a run (and has trained on it for a moment), then cut
# w1's link from the coordinator's side.
held=
for _ in $(seq 150); do
  held=$(worker_field w1 current_run)
  [[ -n "$held" ]] && break
  sleep 0.1
done
[[ -n "$held" ]] || { echo "w1 never leased a run" >&2; exit 1; }
w1_id=$(worker_field w1 id)
w2_id=$(worker_field w2 id)
sleep 0.5
echo "w1 ($w1_id) holds $held; cutting its link"
ip -n "$ns_c" link set "mc1-$tag" down
cut_at=$SECONDS
if [[ "$(ctl run show "$held" | json state)" != running ]]; then
  echo "run $held was no longer running when w1's link was cut: runs are too short here" >&2
  exit 1
fi

# The sweep must finish within the deadline with every run succeeded.
state=
for _ in $(seq 600); do
  show=$(ctl sweep show "$sweep")
  state=$(json state <<<"$show")
  [[ "$state" == running || "$state" == pending ]] || break
  sleep 0.1
done
echo "sweep $sweep: $show ($((SECONDS - cut_at)) s after the cut)"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
[[ "$(json counts succeeded <<<"$show")" == 3 ]] || fail "expected 3 runs succeeded: $show"

run=$(ctl run show "$held")
echo "run $held: state $(json state <<<"$run"), attempts $(json attempts <<<"$run"), worker $(json worker <<<"$run")"
[[ "$(json state <<<"$run")" == succeeded ]] || fail "run $held did not succeed: $run"
[[ "$(json attempts <<<"$run")" == 2 ]] || fail "run $held: expected attempt 2 after the cut: $run"
[[ "$(json worker <<<"$run")" == "$w2_id" ]] || fail "run $held: expected w2 ($w2_id) to finish it: $run"
((failures == 0)) || exit 1
echo "PASS: run $held moved from w1 to w2 after w1's link was cut; sweep succeeded"
