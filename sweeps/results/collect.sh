#!/bin/sh
# Writes the raw data of one finished sweep under exports/: the runs with
# their parameters and final metrics (NAME.json for `report --from-export`,
# NAME.csv for a spreadsheet) and the per-epoch series of every run's
# test/*, val/* and lr metrics (NAME-series.csv: run,name,step,value).
#   MADAMCTL=build/cli/madamctl MADAM_COORDINATOR=HOST:PORT ./collect.sh SWEEP_ID NAME
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SWEEP_ID NAME" >&2; exit 2; }
ctl=${MADAMCTL:-madamctl}
here=$(dirname "$0")
mkdir -p "$here/exports"
"$ctl" sweep export "$1" --format json > "$here/exports/$2.json"
"$ctl" sweep export "$1" --format csv > "$here/exports/$2.csv"
out="$here/exports/$2-series.csv"
echo "run,name,step,value" > "$out"
for run in $("$ctl" --json run list --sweep "$1" | python3 -c 'import json,sys; [print(r["id"]) for r in json.load(sys.stdin)["runs"]]'); do
  "$ctl" run metrics "$run" --format csv |
    awk -F, -v run="$run" 'NR > 1 && ($1 ~ /^(test|val)\// || $1 == "lr") { print run "," $1 "," $2 "," $3 }' >> "$out"
done
