#!/usr/bin/env bash
# The main job (README.md): installs the dependencies, builds, starts a local
# coordinator and two workers on loopback, submits a sweep (Figure 1 at CPU
# scale by default), watches it and prints the results.
#   deploy/run-local.sh [SWEEP_FILE]
# Environment: STATE_DIR (default madam-local: the SQLite store, checkpoints
# and logs, kept for later `madamctl report` runs), BUILD_DIR (default build),
# WORKERS (default 2), PORT (default 7070: gRPC), HTTP_PORT (default 7071:
# the dashboard and /metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-sweeps/lr_grid.yaml}
build_dir=${BUILD_DIR:-build}
state_dir=${STATE_DIR:-madam-local}
workers=${WORKERS:-2}
port=${PORT:-7070}
http_port=${HTTP_PORT:-7071}
address=127.0.0.1:$port

./deploy/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j 2 --target madamd madam-worker madamctl

mkdir -p "$state_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$build_dir/server/madamd" --listen "$address" --http "127.0.0.1:$http_port" --db "$state_dir/madam.db" \
  --checkpoint-dir "$state_dir/checkpoints" >"$state_dir/madamd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q "listening on" "$state_dir/madamd.log" && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "madamd did not start:" >&2
    cat "$state_dir/madamd.log" >&2
    exit 1
  fi
  sleep 0.1
done
for i in $(seq "$workers"); do
  "$build_dir/worker/madam-worker" --coordinator "$address" --threads 1 --name "local-$i" \
    >"$state_dir/worker-$i.log" 2>&1 &
  pids+=($!)
done

ctl=("$build_dir/cli/madamctl" --coordinator "$address")
sweep_id=$("${ctl[@]}" --json sweep submit "$sweep" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
echo "submitted $sweep as sweep $sweep_id; logs and store in $state_dir/"
echo "live dashboard: http://127.0.0.1:$http_port/#/sweep/$sweep_id"
"${ctl[@]}" sweep watch "$sweep_id" || true
echo
"${ctl[@]}" sweep show "$sweep_id"
echo
"${ctl[@]}" sweep export "$sweep_id" --format csv
if "${ctl[@]}" report lr-sensitivity --sweep "$sweep_id" >/dev/null 2>&1; then
  echo
  "${ctl[@]}" report lr-sensitivity --sweep "$sweep_id"
fi
