#!/usr/bin/env bash
# Multi-host test on one machine: madamd in one network namespace, a worker
# in each of two others, each worker joined to the coordinator by its own
# veth pair and subnet (ARCHITECTURE.md section 5: leases).
#
#   coordinator ns   10.77.0.1/32 on lo (madamd listens here)
#                    10.77.1.1/24 -- veth -- 10.77.1.2/24   w1 ns
#                    10.77.2.1/24 -- veth -- 10.77.2.2/24   w2 ns
#
# A sweep starts on both workers; one of its runs pauses at a step on its
# first attempt (the pause_at_step run parameter) and the link of the worker
# holding it is cut. That run's lease expires, the other worker leases it
# (attempt 2) and the sweep finishes with every run succeeded. Nothing
# depends on how long training takes. Only the
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

# Three runs. The sgd run pauses at step 50 on its first attempt and stays
# there (heartbeating) until its lease is lost, so whichever worker leases
# it is certainly mid-run when its link is cut, however fast this machine
# trains; its second attempt runs through.
cat >"$work/sweep.yaml" <<'EOF'
name: netns
task: synthetic-mlp
metric: {name: test/error, goal: minimize}
epochs: 2
batch_size: 2
params: {lr: 0.01}
grid:
  case:
    - {optimizer: sgd, pause_at_step: 50, pause_attempt: 1}
    - {optimizer: adam}
    - {optimizer: madam}
seeds: [0]
max_attempts: 3
resources: {device: cpu}
EOF
sweep=$(ctl sweep submit "$work/sweep.yaml" | json id)
held=$sweep-00000
echo "submitted sweep $sweep; run $held pauses on its first attempt"

# worker_field NAME FIELD: a field of the worker called NAME in `worker list`.
worker_field() {
  ctl worker list | python3 -c 'import json, sys
for w in json.load(sys.stdin)["workers"]:
    if w["name"] == sys.argv[1] and w["connected"]:
        print(w[sys.argv[2]]); break' "$@"
}

# Wait until a worker holds the pausing run, then cut that worker's link
# from the coordinator's side. The run cannot finish on this attempt.
holder=
for _ in $(seq 300); do
  for w in w1 w2; do
    if [[ "$(worker_field "$w" current_run)" == "$held" ]]; then holder=$w; fi
  done
  [[ -n "$holder" ]] && break
  sleep 0.1
done
[[ -n "$holder" ]] || { echo "no worker leased run $held" >&2; exit 1; }
other=w2
[[ "$holder" == w2 ]] && other=w1
holder_id=$(worker_field "$holder" id)
other_id=$(worker_field "$other" id)
[[ "$(ctl run show "$held" | json state)" == running ]] ||
  { echo "run $held is not running though $holder holds it" >&2; exit 1; }
echo "$holder ($holder_id) holds $held; cutting its link"
ip -n "$ns_c" link set "mc${holder#w}-$tag" down
cut_at=$SECONDS

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
[[ "$(json worker <<<"$run")" == "$other_id" ]] || fail "run $held: expected $other ($other_id) to finish it: $run"
((failures == 0)) || exit 1
echo "PASS: run $held moved from $holder to $other after $holder's link was cut; sweep succeeded"
