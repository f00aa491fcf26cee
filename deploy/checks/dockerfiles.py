#!/usr/bin/python3
"""Lint for deploy/docker/*.Dockerfile, and the package lists they share with CI.

No Docker engine runs here and Debian packages no Dockerfile linter, so this
parses the Dockerfiles itself and checks what would otherwise drift silently:

- structure: known instructions only, FROM first, every stage on
  debian:bookworm-slim, JSON (exec) form ENTRYPOINT/CMD, a non-root USER in
  the final stage whose uid is the runAsUser of deploy/k8s/, no ADD of local
  files, tests and benchmarks switched off in the image builds;
- apt: `apt-get update` and `rm -rf /var/lib/apt/lists/*` in the same RUN as
  every install, `-y --no-install-recommends`, and Debian packages taken only
  from deploy/packages/*.txt (no package named in a Dockerfile), each image
  reading exactly the lists it is meant to (EXPECTED_LISTS);
- the package lists: well-formed Debian names, no duplicates within a list,
  and deploy/install-deps.sh installing every list, so CI builds and tests
  with exactly the packages the images install.

    /usr/bin/python3 deploy/checks/dockerfiles.py [REPO_ROOT]
"""

import glob
import json
import os
import re
import sys

import yaml

# For each Dockerfile: the package lists of its build stage and of its final
# stage (deploy/packages/NAME).
EXPECTED_LISTS = {
    "coordinator.Dockerfile": [{"build.txt"}, {"runtime.txt"}],
    "worker-cpu.Dockerfile": [{"build.txt"}, {"runtime.txt", "worker-cpu.txt"}],
    "worker-cuda.Dockerfile": [{"build.txt", "cuda-build.txt"}, {"runtime.txt", "worker-cuda.txt"}],
}
# Packages from outside Debian, installable by name through an ARG: only the
# CUDA toolkit from NVIDIA's repository.
NON_DEBIAN = re.compile(r"cuda-toolkit-\d+-\d+")
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE",
                "VOLUME", "ENTRYPOINT", "CMD", "LABEL", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")

errors = []


def error(where, message):
    errors.append(f"{where}: {message}")


def read_list(path):
    names = []
    with open(path) as f:
        for line in f:
            name = line.split("#", 1)[0].strip()
            if name:
                names.append(name)
    return names


def logical_lines(path):
    """(line number, instruction, arguments), continuations joined, comments dropped."""
    out, buf, start = [], "", None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if buf and line.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if start is None:
                start = n
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            word, _, rest = buf.strip().partition(" ")
            out.append((start, word.upper(), rest.strip()))
            buf, start = "", None
    if buf:
        error(path, "ends inside a continued line")
    return out


def k8s_run_as_users(root):
    uids = set()
    for path in glob.glob(os.path.join(root, "deploy", "k8s", "*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
                uid = pod.get("securityContext", {}).get("runAsUser")
                if uid is not None:
                    uids.add(uid)
    return uids


def check_dockerfile(path, lists, root, k8s_uids):
    name = os.path.basename(path)
    lines = logical_lines(path)
    stages = []  # per stage: {"lists": set, "user": str|None, "entrypoint": str|None}
    args = {}
    for n, word, rest in lines:
        where = f"{name}:{n}"
        if word not in INSTRUCTIONS:
            error(where, f"unknown instruction {word}")
            continue
        if not stages and word not in ("FROM", "ARG"):
            error(where, f"{word} before the first FROM")
            continue
        if word == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        elif word == "FROM":
            image = rest.split()[0]
            if image != "debian:bookworm-slim":
                error(where, f"stage built FROM {image}; every stage starts from debian:bookworm-slim")
            stages.append({"lists": set(), "user": None, "entrypoint": None, "cmd": None})
        elif word == "ADD":
            sources = rest.split()[:-1]
            if not all(s.startswith(("https://", "${")) for s in sources):
                error(where, "ADD of local files: use COPY")
        elif word == "COPY":
            if "--from=" not in rest and rest.split()[0] not in ("deploy/packages/", "."):
                error(where, f"COPY {rest}: copies the package lists or the source tree only")
        elif word == "USER":
            stages[-1]["user"] = rest
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            except ValueError:
                ok = False
            if not ok:
                error(where, f"{word} must use the JSON (exec) form so signals reach the program")
            stages[-1][word.lower()] = rest
        elif word == "RUN":
            check_run(where, rest, stages[-1], args, root)
    if not stages:
        error(name, "no FROM")
        return
    final = stages[-1]
    uid = (final["user"] or "").split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        error(name, f"the final stage must run as a numeric non-root USER, not {final['user']!r}")
    elif k8s_uids and {int(uid)} != k8s_uids:
        error(name, f"USER {uid} differs from runAsUser {sorted(k8s_uids)} in deploy/k8s/")
    if not final["entrypoint"]:
        error(name, "the final stage has no ENTRYPOINT")
    expected = EXPECTED_LISTS.get(name)
    if expected is None:
        error(name, "not in EXPECTED_LISTS of deploy/checks/dockerfiles.py")
    else:
        got = [stages[0]["lists"], final["lists"]] if len(stages) > 1 else [final["lists"]]
        if got != expected:
            error(name, f"installs package lists {got} (build, final stage); expected {expected}")
    text = open(path).read()
    if "-DMADAM_BUILD_TESTS=OFF" not in text or "-DMADAM_BUILD_BENCH=OFF" not in text:
        error(name, "image builds switch tests and benchmarks off")
    if name == "worker-cuda.Dockerfile" and "torch.utils.cmake_prefix_path" not in text:
        error(name, "the CUDA worker builds against the wheel's LibTorch (torch.utils.cmake_prefix_path)")


def check_run(where, command, stage, args, root):
    parts = [p.strip() for p in re.split(r"&&|;", command)]
    installs = [p for p in parts if re.search(r"\bapt-get\b.*\binstall\b", p)]
    if not installs:
        if re.search(r"\bapt\b|\bapt-get\s+upgrade\b|\bpip3? install\b(?!.*torch)", command):
            error(where, "installs software outside deploy/packages/")
        return
    if "apt-get update" not in command:
        error(where, "apt-get install without apt-get update in the same RUN (stale index)")
    if "rm -rf /var/lib/apt/lists/*" not in command:
        error(where, "apt-get install without rm -rf /var/lib/apt/lists/* in the same RUN")
    for install in installs:
        if "--no-install-recommends" not in install or " -y" not in install:
            error(where, "apt-get install needs -y --no-install-recommends")
        names = install.split("install", 1)[1].split()
        for token in names:
            if token.startswith("-"):
                continue
            value = args.get(token.strip("${}"), token) if token.startswith("$") else token
            if not NON_DEBIAN.fullmatch(value):
                error(where, f"package {value!r} named in the Dockerfile: add it to a deploy/packages/ list")
    files = re.findall(r"/tmp/packages/([A-Za-z0-9._-]+)", command)
    for f in files:
        if not os.path.exists(os.path.join(root, "deploy", "packages", f)):
            error(where, f"reads deploy/packages/{f}, which does not exist")
    stage["lists"] |= {f for f in files if f.endswith(".txt")}
    for excluded in re.findall(r"-e\s+([a-z0-9][a-z0-9+.-]+)", command.split("grep -vx", 1)[1]
                               if "grep -vx" in command else ""):
        listed = set()
        for f in files:
            listed |= set(read_list(os.path.join(root, "deploy", "packages", f)))
        if excluded not in listed:
            error(where, f"filters out {excluded}, which none of its lists names (stale filter)")


def check_package_lists(root):
    lists = sorted(glob.glob(os.path.join(root, "deploy", "packages", "*.txt")))
    for path in lists:
        names = read_list(path)
        where = os.path.relpath(path, root)
        for name in names:
            if not DEBIAN_NAME.fullmatch(name):
                error(where, f"{name!r} is not a Debian package name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            error(where, f"listed twice: {dupes}")
    with open(os.path.join(root, "deploy", "install-deps.sh")) as f:
        install_deps = f.read()
    if '"$here"/packages/*.txt' not in install_deps:
        error("deploy/install-deps.sh", "must install every deploy/packages/*.txt list")
    used = {f for stages in EXPECTED_LISTS.values() for s in stages for f in s}
    unused = {os.path.basename(p) for p in lists} - used
    if unused:
        error("deploy/packages", f"lists no image installs: {sorted(unused)}")
    return len(lists)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), "..", ".."))
    k8s_uids = k8s_run_as_users(root)
    dockerfiles = sorted(glob.glob(os.path.join(root, "deploy", "docker", "*.Dockerfile")))
    if {os.path.basename(p) for p in dockerfiles} != set(EXPECTED_LISTS):
        error("deploy/docker", f"expected exactly {sorted(EXPECTED_LISTS)}")
    for path in dockerfiles:
        check_dockerfile(path, EXPECTED_LISTS, root, k8s_uids)
    n_lists = check_package_lists(root)
    if not os.path.exists(os.path.join(root, ".dockerignore")):
        error(".dockerignore", "missing: the build context would carry build trees and databases")
    if not errors:
        print(f"docker: {len(dockerfiles)} Dockerfiles lint clean; they and deploy/install-deps.sh "
              f"share the {n_lists} lists in deploy/packages/")


if __name__ == "__main__":
    main()
    for e in errors:
        print(f"docker: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)
