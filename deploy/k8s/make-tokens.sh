#!/usr/bin/env bash
# Writes fresh random tokens for the Kubernetes deployment into
# deploy/k8s/secrets/ (mode 0600, ignored by git), where kustomization.yaml's
# secretGenerator reads them:
#   auth-tokens   madamd's --auth-tokens file: one admin, one reader and one
#                 worker token ("TOKEN ROLE" lines)
#   worker-token  the worker token alone, handed to workers as MADAM_TOKEN
#   reader-token  the reader token alone, for Prometheus's scrape of /metrics
#                 (the credentials_file of deploy/prometheus/prometheus.yml)
# Prints the admin token once, for madamctl (MADAM_TOKEN). Refuses to replace
# existing tokens unless --force is given.
#   deploy/k8s/make-tokens.sh [--force]
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
if [[ -e "$dir/auth-tokens" && "${1:-}" != --force ]]; then
  echo "make-tokens: $dir/auth-tokens exists; pass --force to replace it" >&2
  exit 1
fi
token() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
admin=$(token)
reader=$(token)
worker=$(token)
umask 077
mkdir -p "$dir"
printf '# TOKEN ROLE, written by make-tokens.sh\n%s admin\n%s reader\n%s worker\n' \
  "$admin" "$reader" "$worker" >"$dir/auth-tokens"
printf '%s' "$worker" >"$dir/worker-token"
printf '%s' "$reader" >"$dir/reader-token"
echo "make-tokens: wrote $dir/auth-tokens, $dir/worker-token and $dir/reader-token"
echo "admin token (for madamctl --token / MADAM_TOKEN): $admin"
