#!/usr/bin/python3
"""Offline schema and consistency check for deploy/k8s/.

No cluster is needed: every object is checked against the API types of
Debian's python3-kubernetes (its generated models carry each type's fields,
their types and which are required), then the objects are checked against
each other and against what madamd and madam-worker expect (ARCHITECTURE.md
sections 3 and 9). Where `kubectl` is installed, `kubectl kustomize` renders
the kustomization with throw-away tokens and the rendered objects are checked
too.

    /usr/bin/python3 deploy/checks/k8s_manifests.py [K8S_DIR]

Exits 1 and names file, object and field path for every problem found.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import kubernetes.client as k8s
import yaml

errors = []


def error(where, message):
    errors.append(f"{where}: {message}")


# --- schema --------------------------------------------------------------

def model_class(api_version, kind):
    """The python3-kubernetes model for apiVersion/kind, e.g. apps/v1 StatefulSet -> V1StatefulSet."""
    version = api_version.split("/")[-1]
    return getattr(k8s, version[0].upper() + version[1:] + kind, None)


def check_value(value, type_name, where):
    if type_name == "object":  # IntOrString, Quantity and free-form fields
        return
    if type_name == "str" or type_name == "datetime":
        if not isinstance(value, str):
            error(where, f"expected a string, got {type(value).__name__} {value!r}")
        return
    if type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            error(where, f"expected an integer, got {value!r}")
        return
    if type_name == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            error(where, f"expected a number, got {value!r}")
        return
    if type_name == "bool":
        if not isinstance(value, bool):
            error(where, f"expected true or false, got {value!r}")
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            error(where, f"expected a list, got {value!r}")
            return
        for i, item in enumerate(value):
            check_value(item, m.group(1), f"{where}[{i}]")
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if not isinstance(value, dict):
            error(where, f"expected a map, got {value!r}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                error(where, f"map key {key!r} is not a string")
            check_value(item, m.group(1), f"{where}.{key}")
        return
    cls = getattr(k8s, type_name, None)
    if cls is None:
        error(where, f"unknown type {type_name} in python3-kubernetes")
        return
    check_object(value, cls, where)


def check_object(value, cls, where):
    if not isinstance(value, dict):
        error(where, f"expected a {cls.__name__} map, got {value!r}")
        return
    by_json_name = {json: attr for attr, json in cls.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        attr = by_json_name.get(key)
        if attr is None:
            error(where, f"unknown field {key!r} for {cls.__name__} "
                         f"(known: {', '.join(sorted(by_json_name))})")
            continue
        check_value(item, cls.openapi_types[attr], f"{where}.{key}")
        kwargs[attr] = item
    try:  # the generated setters refuse a missing required field
        cls(**kwargs)
    except ValueError as e:
        error(where, f"{cls.__name__}: {e}")


def check_schema(doc, where):
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        error(where, "apiVersion and kind are required")
        return
    cls = model_class(api_version, kind)
    if cls is None:
        error(where, f"no API type for apiVersion {api_version} kind {kind}")
        return
    check_object(doc, cls, where)
    if not doc.get("metadata", {}).get("name"):
        error(where, "metadata.name is required")


# --- consistency ---------------------------------------------------------

def pod_spec(doc):
    return doc.get("spec", {}).get("template", {}).get("spec", {})


def containers(doc):
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec.get("containers", [])


def check_workload(doc, where, services, secrets):
    spec = doc.get("spec", {})
    template = spec.get("template", {})
    labels = template.get("metadata", {}).get("labels", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        error(where, f"selector {selector} does not match the pod labels {labels}")

    volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    for c in containers(doc):
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes and m["name"] not in claims:
                error(where, f"container {c['name']} mounts undefined volume {m['name']!r}")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("key") not in secrets.get(ref.get("name"), set()):
                error(where, f"env {e['name']} names secret key {ref.get('name')}/{ref.get('key')}, "
                             "which the kustomization does not generate")
        probes = [c.get(p, {}) for p in ("readinessProbe", "livenessProbe")]
        port_names = {p.get("name") for p in c.get("ports", [])}
        for probe in probes:
            port = probe.get("tcpSocket", probe.get("httpGet", {})).get("port")
            if isinstance(port, str) and port not in port_names:
                error(where, f"container {c['name']} probes unknown port {port!r}")
    for name, v in volumes.items():
        s = v.get("secret")
        if s:
            keys = secrets.get(s.get("secretName"))
            if keys is None:
                error(where, f"volume {name} names secret {s.get('secretName')!r}, which is not generated")
            for item in s.get("items", []):
                if keys is not None and item["key"] not in keys:
                    error(where, f"volume {name} names missing secret key {item['key']!r}")

    if doc["kind"] == "StatefulSet":
        svc = services.get(spec.get("serviceName"))
        if svc is None or svc.get("spec", {}).get("clusterIP") != "None":
            error(where, f"serviceName {spec.get('serviceName')!r} must name a headless Service")
        if not claims:
            error(where, "the coordinator keeps its database on a volumeClaimTemplate")


def flag_value(args, flag):
    for a in args:
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_madam(objects):
    """What the deployment promises: ARCHITECTURE.md sections 3 and 9."""
    by_kind = {}
    for where, doc in objects:
        by_kind.setdefault(doc["kind"], []).append((where, doc))
    sts = by_kind.get("StatefulSet", [])
    if len(sts) != 1:
        error("k8s", f"expected one coordinator StatefulSet, found {len(sts)}")
        return
    where, coord = sts[0]
    if coord["spec"].get("replicas", 1) != 1:
        error(where, "the coordinator must run as a single replica (one SQLite writer)")
    madamd = next((c for c in pod_spec(coord)["containers"] if c["name"] == "madamd"), None)
    if madamd is None:
        error(where, "no container named madamd")
        return
    args = madamd.get("args", [])
    mounts = {m["mountPath"]: m for m in madamd.get("volumeMounts", [])}
    claims = {c["metadata"]["name"] for c in coord["spec"].get("volumeClaimTemplates", [])}

    def mounted_from(path):
        best = max((p for p in mounts if path.startswith(p.rstrip("/") + "/")), key=len, default=None)
        return mounts[best]["name"] if best else None

    for flag in ("--db", "--checkpoint-dir"):
        value = flag_value(args, flag)
        if value is None or mounted_from(value) not in claims:
            error(where, f"madamd {flag} ({value}) must lie on the PersistentVolumeClaim")
    tokens = flag_value(args, "--auth-tokens")
    if tokens is None or mounted_from(tokens) is None:
        error(where, "madamd must read --auth-tokens from a mounted file")
    listen, http = flag_value(args, "--listen"), flag_value(args, "--http")
    ports = {p["name"]: p["containerPort"] for p in madamd.get("ports", [])}
    if listen is None or not listen.endswith(f":{ports.get('grpc')}"):
        error(where, f"--listen {listen} does not match the grpc port {ports.get('grpc')}")
    if http is None or not http.endswith(f":{ports.get('http')}"):
        error(where, f"--http {http} does not match the http port {ports.get('http')}")

    # madamd serves HTTP beyond loopback only with --auth-tokens (HTTP then
    # needs a reader token) or --http-insecure; gRPC's --insecure has no say
    # over HTTP. The deployment keeps both closed: tokens, no insecure flag,
    # and the HTTP port fenced off by a NetworkPolicy as well.
    if "--insecure" in args or "--http-insecure" in args:
        error(where, "madamd must not run with --insecure or --http-insecure: the tokens close both")
    if http and not http.startswith(("127.", "localhost:", "[::1]:")):
        if tokens is None and "--http-insecure" not in args:
            error(where, f"madamd refuses --http={http} beyond loopback without --auth-tokens")
        fenced = False
        for w, policy in by_kind.get("NetworkPolicy", []):
            selector = policy["spec"].get("podSelector", {}).get("matchLabels", {})
            if not all(coord["spec"]["template"]["metadata"]["labels"].get(k) == v
                       for k, v in selector.items()):
                continue
            http_rules = [r for r in policy["spec"].get("ingress", [])
                          if any(p.get("port") in ("http", ports.get("http")) for p in r.get("ports", []))
                          or not r.get("ports")]
            if http_rules and all(r.get("from") for r in http_rules):
                fenced = True
        if not fenced:
            error(where, "HTTP beyond loopback: a NetworkPolicy must also restrict who "
                         "reaches the http port")

    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(ports.get("http")),
              "prometheus.io/path": "/metrics"}
    annotations = coord["spec"]["template"].get("metadata", {}).get("annotations", {})
    for key, value in scrape.items():
        if annotations.get(key) != value:
            error(where, f"pod annotation {key} must be {value!r}, is {annotations.get(key)!r}")

    services = [(w, d) for w, d in by_kind.get("Service", []) if d["spec"].get("clusterIP") != "None"]
    pod_labels = coord["spec"]["template"]["metadata"]["labels"]
    service_ports = set()
    for w, svc in services:
        if all(pod_labels.get(k) == v for k, v in svc["spec"].get("selector", {}).items()):
            for p in svc["spec"]["ports"]:
                if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                    error(w, f"Service port {p.get('name')} targets unknown port {p.get('targetPort')!r}")
                service_ports.add(p["port"])
    if not {ports.get("grpc"), ports.get("http")} <= service_ports:
        error(where, "a Service must expose the coordinator's grpc and http ports")

    gpu, cpu = [], []
    for w, dep in by_kind.get("Deployment", []):
        for c in pod_spec(dep)["containers"]:
            limits = c.get("resources", {}).get("limits", {})
            env = {e["name"]: e for e in c.get("env", [])}
            device = flag_value(c.get("args", []), "--device")
            if "MADAM_TOKEN" not in env or "secretKeyRef" not in env["MADAM_TOKEN"].get("valueFrom", {}):
                error(w, f"container {c['name']}: MADAM_TOKEN must come from a Secret")
            if "MADAM_COORDINATOR" not in env:
                error(w, f"container {c['name']}: MADAM_COORDINATOR is not set")
            if "nvidia.com/gpu" in limits:
                # N GPUs: the device plugin exposes them as cuda:0..cuda:N-1,
                # named one by one or as --device=all (a data-parallel worker).
                count = str(limits["nvidia.com/gpu"])
                n = int(count) if count.isdigit() else 0
                listed = ",".join(f"cuda:{i}" for i in range(n))
                if n < 1 or device not in ({listed, "all"} if n > 1 else {"cuda:0"}):
                    error(w, f"a GPU worker with nvidia.com/gpu {count} must use --device=cuda:0 "
                             "(one GPU) or --device=all / the list cuda:0,...,cuda:N-1 (N GPUs), "
                             f"not {device}")
                gpu.append(w)
            elif device == "cpu":
                cpu.append(w)
            else:
                error(w, f"worker without a GPU must use --device=cpu, not {device}")
    if not gpu or not cpu:
        error("k8s", f"expected a GPU and a CPU worker Deployment (GPU: {len(gpu)}, CPU: {len(cpu)})")


def load_kustomization(k8s_dir):
    with open(os.path.join(k8s_dir, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    secrets = {}
    for gen in kust.get("secretGenerator", []):
        secrets[gen["name"]] = {entry.split("=", 1)[0] for entry in gen.get("files", [])}
    return kust, secrets


def load_objects(paths):
    objects = []
    for path in paths:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is not None:
                    name = doc.get("metadata", {}).get("name", f"#{i}")
                    objects.append((f"{os.path.basename(path)}:{doc.get('kind')}/{name}", doc))
    return objects


def check_rendered(k8s_dir):
    """kubectl kustomize with throw-away tokens; the rendered objects get the schema check too."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("k8s: kubectl not installed; kustomize rendering not checked")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "k8s")
        shutil.copytree(k8s_dir, copy, ignore=shutil.ignore_patterns("secrets"))
        subprocess.run([os.path.join(copy, "make-tokens.sh")], check=True, stdout=subprocess.DEVNULL)
        done = subprocess.run([kubectl, "kustomize", copy], capture_output=True, text=True)
        if done.returncode != 0:
            error("kubectl kustomize", done.stderr.strip())
            return
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        for doc in docs:
            check_schema(doc, f"rendered:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
            if doc.get("metadata", {}).get("namespace", "madam") != "madam" and doc["kind"] != "Namespace":
                error("rendered", f"{doc['kind']} outside namespace madam")
        print(f"k8s: kubectl kustomize rendered {len(docs)} objects")


def main():
    k8s_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "k8s")
    kust, secrets = load_kustomization(k8s_dir)
    manifests = sorted(f for f in os.listdir(k8s_dir)
                       if f.endswith(".yaml") and f != "kustomization.yaml")
    if sorted(kust.get("resources", [])) != manifests:
        error("kustomization.yaml", f"resources {kust.get('resources')} must list exactly {manifests}")
    objects = load_objects(os.path.join(k8s_dir, f) for f in manifests)
    services = {d["metadata"]["name"]: d for _, d in objects if d.get("kind") == "Service"}
    for where, doc in objects:
        check_schema(doc, where)
    if errors:  # consistency checks assume well-formed objects
        return
    for where, doc in objects:
        if doc["kind"] in ("StatefulSet", "Deployment"):
            check_workload(doc, where, services, secrets)
    check_madam(objects)
    check_rendered(k8s_dir)
    if not errors:
            print(f"k8s: {len(objects)} objects in {len(manifests)} files match the Kubernetes API "
              f"types of python3-kubernetes {getattr(k8s, '__version__', '')}".rstrip())


if __name__ == "__main__":
    main()
    for e in errors:
        print(f"k8s: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)
