#!/bin/sh
# The results check must fail when a committed table no longer matches its
# exports: change one number in a copy of sweeps/results and expect a FAIL.
#   results_drift_test.sh MADAMCTL SOURCE_DIR
set -eu
ctl=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$src/sweeps/results" "$tmp/results"
python3 "$src/tools/results_reports.py" --madamctl "$ctl" "$tmp/results" > "$tmp/clean.log" ||
  { cat "$tmp/clean.log"; echo "the unchanged copy should pass"; exit 1; }
csv=$(ls "$tmp"/results/*.csv | head -n 1)
# The second line's last field is a count of seeds or runs: make it 99.
sed -i '2s/,[^,]*$/,99/' "$csv"
if python3 "$src/tools/results_reports.py" --madamctl "$ctl" "$tmp/results" > "$tmp/drift.log"; then
  cat "$tmp/drift.log"; echo "a changed $(basename "$csv") was not detected"; exit 1
fi
grep -q "FAIL $(basename "$csv")" "$tmp/drift.log" || { cat "$tmp/drift.log"; exit 1; }
echo "drift in $(basename "$csv") detected"
