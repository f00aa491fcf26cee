#!/usr/bin/env bash
# Static checks of everything in deploy/ (run by deploy/test.sh before the
# build; needs the packages deploy/install-deps.sh installs, no network, no
# Docker, no cluster):
#   scripts           shellcheck on every script in deploy/ and the deploy tests
#   systemd           systemd-analyze verify + security of deploy/systemd/
#   k8s               deploy/k8s/ against the Kubernetes API types, offline
#   docker + packages deploy/docker/ lint; package lists shared with CI
#   slurm             madam-workers.sbatch run with a stand-in worker
# Each check runs even when an earlier one failed; the exit status is 1 if
# any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

failed=()
step() {  # step NAME COMMAND...
  local name=$1; shift
  if ! "$@"; then
    failed+=("$name")
  fi
}

mapfile -t scripts < <(
  { find deploy -type f \( -name '*.sh' -o -name '*.sbatch' \)
    printf '%s\n' tests/integration/netns_test.sh tests/integration/deploy_config_test.sh; } | sort)
if step shellcheck shellcheck --severity=style "${scripts[@]}"; then
  echo "shellcheck: ${#scripts[@]} scripts clean"
fi
step systemd deploy/checks/systemd_verify.sh
step k8s /usr/bin/python3 deploy/checks/k8s_manifests.py
step docker /usr/bin/python3 deploy/checks/dockerfiles.py
step slurm deploy/checks/slurm_workers.sh

if ((${#failed[@]})); then
  echo "lint: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint: all deployment checks passed"
