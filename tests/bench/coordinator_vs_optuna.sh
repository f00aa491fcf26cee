#!/usr/bin/env bash
# Side by side, in one run: madamd's trial throughput (acquire a run, report
# 10 intermediate values, complete) against Optuna on SQLite doing the same
# grid as ask/tell with 10 reports per trial. Prints trials/s and ratios.
#   coordinator_vs_optuna.sh BUILD_DIR [TRIALS]
set -euo pipefail
build=${1:?usage: coordinator_vs_optuna.sh BUILD_DIR [TRIALS]}
trials=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
bench="$build/tests/bench/coordinator_bench"
madamd="$build/server/madamd"

result() { sed -n "s/^RESULT $1 //p"; }

ours_1=$("$bench" "$madamd" --only trials --workers 1 --runs 3000 | result trials_per_second)
ours_32=$("$bench" "$madamd" --only trials --workers 32 --runs 5000 | result trials_per_second)
optuna_1=$(/usr/bin/python3 "$here/optuna_peer.py" --trials "$trials" --processes 1 | result optuna_trials_per_second)
optuna_2=$(/usr/bin/python3 "$here/optuna_peer.py" --trials "$trials" --processes 2 | result optuna_trials_per_second)

best_optuna=$(python3 -c "print(max($optuna_1, $optuna_2))")
cat <<REPORT
trials/s (acquire or ask, 10 intermediate values, complete or tell; SQLite underneath both)
  madamd, 1 worker          $ours_1
  madamd, 32 workers        $ours_32
  optuna, 1 process         $optuna_1
  optuna, 2 processes       $optuna_2
RATIO same concurrency (1 client each): $(python3 -c "print(round($ours_1 / $optuna_1, 1))")x
RATIO each at its best here:           $(python3 -c "print(round($ours_32 / $best_optuna, 1))")x
REPORT
