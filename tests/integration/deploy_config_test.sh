#!/usr/bin/env bash
# The deployment files' command lines against the real binaries: madamd and
# madam-worker are started with the flags written in deploy/k8s/,
# deploy/systemd/ and deploy/docker/ (paths moved into a scratch directory,
# tokens made here), and a smoke sweep must finish on each setup. Linters
# check the files' syntax; this checks that the binaries accept what the files
# say. madamd listens on 0.0.0.0 as deployed, so it runs in a private network
# namespace of its own; workers use --device cpu where a file says cuda.
#
#   deploy_config_test.sh MADAMD MADAM_WORKER MADAMCTL SOURCE_DIR
# Exits 77 (ctest: skipped) with the reason when network namespaces cannot
# be created here.
set -euo pipefail
madamd=$1
worker=$2
madamctl=$3
src=$4

skip() { echo "SKIP: $*"; exit 77; }
command -v ip >/dev/null || skip "the ip command (iproute2) is not installed"

ns=madam-cfg-$$
work=$(mktemp -d)
pids=()
have_ns=0
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((have_ns)); then
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  fi
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

# A namespace left by an earlier run killed by a ctest timeout (SIGKILL).
while read -r old _; do
  if [[ "$old" =~ ^madam-cfg-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
    ip netns delete "$old" 2>/dev/null || true
  fi
done < <(ip netns list 2>/dev/null)

if ! err=$(ip netns add "$ns" 2>&1); then
  skip "cannot create a network namespace: $err"
fi
have_ns=1
ip -n "$ns" link set lo up

# Tokens as deploy/k8s/make-tokens.sh writes them (a copy, so the checkout's
# deploy/k8s/secrets/ is never touched).
cp -r "$src/deploy/k8s" "$work/k8s"
rm -rf "$work/k8s/secrets"
"$work/k8s/make-tokens.sh" >/dev/null
admin=$(awk '$2 == "admin" { print $1 }' "$work/k8s/secrets/auth-tokens")
worker_token=$(<"$work/k8s/secrets/worker-token")

# command_line SOURCE: the arguments (NUL-separated, argv[0] dropped) the
# deployment file SOURCE gives madamd or madam-worker, paths moved under
# $work: /var/lib/madam -> state, /run/madam -> run, systemd's credentials
# directory (%d) -> creds.
command_line() {
  /usr/bin/python3 - "$src" "$work" "$1" <<'EOF'
import json, os, re, shlex, sys
import yaml
src, work, source = sys.argv[1:4]

def k8s(kind, name, container):
    with open(os.path.join(src, "deploy/k8s", "coordinator.yaml" if kind == "StatefulSet" else "workers.yaml")) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
                spec = doc["spec"]["template"]["spec"]
                return next(c for c in spec["containers"] if c["name"] == container)["args"]
    raise SystemExit(f"no {kind}/{name} in deploy/k8s")

def systemd(unit, instance="0"):
    env, exec_start = {}, None
    text = open(os.path.join(src, "deploy/systemd", unit)).read().replace("\\\n", " ")
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            k, _, v = value.strip('"').partition("=")
            env[k] = v
        elif key == "ExecStart":
            exec_start = value
    out = []
    for word in shlex.split(exec_start)[1:]:
        word = word.replace("%d", os.path.join(work, "creds")).replace("%i", instance).replace("%H", "host")
        m = re.fullmatch(r"\$([A-Z_]+)", word)
        if m:  # $VAR: split into words, possibly none
            out += env.get(m.group(1), "").split()
        else:
            out.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), word))
    return out

def docker(dockerfile):
    for line in open(os.path.join(src, "deploy/docker", dockerfile)).read().replace("\\\n", " ").splitlines():
        if line.startswith("CMD "):
            return json.loads(line[4:])
    raise SystemExit(f"no CMD in {dockerfile}")

args = {
    "k8s-madamd": lambda: k8s("StatefulSet", "madamd", "madamd"),
    "k8s-worker": lambda: k8s("Deployment", "madam-worker-cpu", "worker"),
    "systemd-madamd": lambda: systemd("madamd.service"),
    "systemd-worker": lambda: systemd("madam-worker@.service"),
    "docker-madamd": lambda: docker("coordinator.Dockerfile"),
    "docker-worker": lambda: docker("worker-cpu.Dockerfile"),
}[source]()
moved = []
for a in args:
    a = a.replace("/var/lib/madam", os.path.join(work, "state")).replace("/run/madam", os.path.join(work, "run"))
    moved.append(re.sub(r"cuda:\d+", "cpu", a))
sys.stdout.write("".join(a + "\0" for a in moved))
EOF
}

failures=0
# setup NAME: madamd and one worker with NAME's command lines, then the smoke sweep.
setup() {
  local name=$1 daemon_args worker_args line
  mapfile -d '' -t daemon_args < <(command_line "$name-madamd")
  mapfile -d '' -t worker_args < <(command_line "$name-worker")
  rm -rf "$work/state" "$work/run" "$work/creds"
  mkdir -p "$work/state/checkpoints" "$work/run" "$work/creds"
  install -m 0400 "$work/k8s/secrets/auth-tokens" "$work/run/auth-tokens"
  install -m 0400 "$work/k8s/secrets/auth-tokens" "$work/creds/auth-tokens"
  echo "$name: madamd ${daemon_args[*]}"
  echo "$name: madam-worker ${worker_args[*]}"

  ip netns exec "$ns" "$madamd" "${daemon_args[@]}" >"$work/$name-madamd.log" 2>&1 &
  pids+=($!)
  local daemon=$!
  for _ in $(seq 100); do
    grep -qs "listening on" "$work/$name-madamd.log" && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -qs "listening on" "$work/$name-madamd.log"; then
    echo "FAIL: $name: madamd did not start with these flags" >&2
    cat "$work/$name-madamd.log" >&2
    failures=$((failures + 1))
    return
  fi
  ip netns exec "$ns" env MADAM_COORDINATOR=127.0.0.1:7070 MADAM_TOKEN="$worker_token" \
    "$worker" "${worker_args[@]}" >"$work/$name-worker.log" 2>&1 &
  pids+=($!)
  local worker_pid=$!
  for _ in $(seq 30); do
    grep -qs "registered with" "$work/$name-worker.log" && break
    kill -0 "$worker_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -qs "registered with" "$work/$name-worker.log"; then
    echo "FAIL: $name: madam-worker did not start with these flags" >&2
    cat "$work/$name-worker.log" >&2
    failures=$((failures + 1))
    kill "$worker_pid" "$daemon" 2>/dev/null || true
    wait "$worker_pid" "$daemon" 2>/dev/null || true
    return
  fi
  if line=$(ip netns exec "$ns" env MADAM_TOKEN="$admin" timeout 60 \
              "$madamctl" --coordinator 127.0.0.1:7070 sweep submit "$src/sweeps/smoke.yaml" --wait 2>&1 | tail -n 1) &&
     [[ "$line" == *"8 succeeded"* ]]; then
    echo "$name: $line"
  else
    echo "FAIL: $name: the smoke sweep did not succeed: $line" >&2
    failures=$((failures + 1))
  fi
  kill "$worker_pid" "$daemon" 2>/dev/null || true
  wait "$worker_pid" "$daemon" 2>/dev/null || true
}

setup k8s
setup systemd
setup docker
((failures == 0)) || exit 1
echo "PASS: madamd and madam-worker accept the k8s, systemd and docker command lines"
