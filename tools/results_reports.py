#!/usr/bin/env python3
"""Recompute the committed reports of a results directory from its exports.

The directory holds `reports.txt`: one report per line,

    OUTPUT_FILE  KIND  [madamctl report flags...]

e.g. `fig1-kjv.md lr-sensitivity --from-export exports/fig1-kjv.json`. The
format comes from OUTPUT_FILE's extension (md, csv, json, svg, tex). Paths
in the flags are relative to the directory. Lines starting with # are
comments.

    results_reports.py --madamctl PATH DIR           check (the ctest check)
    results_reports.py --madamctl PATH DIR --write   regenerate the files

The check runs `madamctl report KIND ... --from-export` (offline, the same
code madamd runs) and compares with the committed file: CSV byte for byte;
md, json and svg with the build-dependent provenance (git revision, LibTorch,
devices) left out, since a later build recomputes the same numbers under
another revision. It fails when a report differs, when reports.txt lists
nothing, or when a report file in DIR is not listed.
"""
import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys

FORMATS = {".md": "md", ".csv": "csv", ".json": "json", ".svg": "svg", ".tex": "latex"}
# What depends on the build or the machine rather than on the runs.
VOLATILE = re.compile(r"git revision|\"git_revision\"|\"libtorch_version\"|\"devices\"")


def read_manifest(directory):
    path = os.path.join(directory, "reports.txt")
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            if len(words) < 2:
                sys.exit(f"{path}:{number}: want OUTPUT KIND [flags...]")
            ext = os.path.splitext(words[0])[1]
            if ext not in FORMATS:
                sys.exit(f"{path}:{number}: {words[0]}: unknown extension {ext!r}")
            entries.append((words[0], words[1], words[2:]))
    return entries


def render(madamctl, directory, kind, flags, fmt):
    cmd = [madamctl, "report", kind, *flags, "--format", fmt]
    out = subprocess.run(cmd, cwd=directory, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def stable(text, fmt):
    if fmt == "csv":
        return text.splitlines()
    if fmt == "json":
        # One line of JSON: split it so the provenance keys drop out.
        text = re.sub(r"([{,\[])", r"\1\n", text)
    return [line for line in text.splitlines() if not VOLATILE.search(line)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--madamctl", required=True)
    parser.add_argument("--write", action="store_true", help="regenerate instead of checking")
    parser.add_argument("directory")
    args = parser.parse_args()
    madamctl = os.path.abspath(args.madamctl)
    entries = read_manifest(args.directory)
    if not entries:
        sys.exit(f"{args.directory}/reports.txt lists no report: nothing would be checked")
    failures = 0
    listed = set()
    for output, kind, flags in entries:
        fmt = FORMATS[os.path.splitext(output)[1]]
        listed.add(os.path.normpath(output))
        fresh = render(madamctl, args.directory, kind, flags, fmt)
        path = os.path.join(args.directory, output)
        if args.write:
            with open(path, "w", encoding="utf-8") as f:
                f.write(fresh)
            print(f"wrote {path}")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                committed = f.read()
        except OSError as e:
            print(f"FAIL {output}: {e}")
            failures += 1
            continue
        a, b = stable(committed, fmt), stable(fresh, fmt)
        if a != b:
            failures += 1
            print(f"FAIL {output}: differs from `madamctl report {kind} {' '.join(flags)}`")
            sys.stdout.writelines(line + "\n" for line in
                                  list(difflib.unified_diff(a, b, "committed", "recomputed", lineterm=""))[:40])
        else:
            print(f"ok   {output} ({len(a)} lines)")
    if not args.write:
        for name in sorted(os.listdir(args.directory)):
            if os.path.splitext(name)[1] in FORMATS and name not in listed and name != "README.md":
                print(f"FAIL {name}: a report file that reports.txt does not list (so nothing checks it)")
                failures += 1
    if failures:
        sys.exit(f"{failures} report(s) do not match their exports")


if __name__ == "__main__":
    main()
