#!/usr/bin/env bash
# The training loop never compares a task or optimiser name
# (ARCHITECTURE.md section 6): behaviour comes from the catalogue, the task
# implementations and the optimiser factory. Fails listing any line of
# worker/trainer.cc that spells a catalogue name in quotes.
#   no_name_branches.sh SOURCE_DIR
set -euo pipefail
src=$1
pattern='"(sgd|adam|madam|int_madam|fmnist[a-z0-9-]*|cifar[a-z0-9-]*|wikitext[a-z0-9-]*|synthetic[a-z0-9-]*|imagenet[a-z0-9-]*)"'
if grep -nE "$pattern" "$src/worker/trainer.cc"; then
  echo "worker/trainer.cc compares task or optimiser names (above); use the catalogue" >&2
  exit 1
fi
echo "worker/trainer.cc: no task or optimiser name in quotes"
