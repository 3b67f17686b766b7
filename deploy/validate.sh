#!/usr/bin/env bash
# Validates every manifest under deploy/ (or the files given) against the
# Kubernetes OpenAPI schemas with kubernetes-validate (installed from PyPI if
# missing), strictly: unknown fields are errors. Then checks what a schema
# cannot, for each workload that runs lameduck (as the entrypoint, or as a
# native sidecar: an init container with restartPolicy Always): its
# terminationGracePeriodSeconds equals the grace_period of the lameduck.yaml
# it mounts; the readiness probe of lameduck's container is /readyz and the
# app's preStop hook /prestop on the admin port (a liveness probe there must
# be /healthz); and that lameduck.yaml loads (`lameduck check`, when a
# lameduck binary is at hand).
#
#   deploy/validate.sh                 # every *.yaml under deploy/, then
#                                      # deploy/validate-inject.sh
#   deploy/validate.sh some.yaml ...   # just these
#
# Env: K8S_VERSION (default 1.35.0), LAMEDUCK (the binary for the config
# check and for inject; default the newer of target/{release,debug}/lameduck,
# else both are skipped). Exits non-zero if any manifest is invalid.
set -euo pipefail

KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION="${K8S_VERSION:-1.35.0}"
deploy="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$deploy")"

if ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
    pip=(python3 -m pip install --quiet --disable-pip-version-check
         "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi

all=$(( $# == 0 ))
if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(find "$deploy" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
fi
[ ${#files[@]} -gt 0 ] || { echo "validate: no manifests found" >&2; exit 1; }

echo "validate: schemas of Kubernetes $K8S_VERSION (kubernetes-validate, strict)"
python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "${files[@]}"

lameduck="${LAMEDUCK:-}"
if [ -z "$lameduck" ]; then  # the most recently built one
    for candidate in "$root/target/release/lameduck" "$root/target/debug/lameduck"; do
        if [ -x "$candidate" ] && { [ -z "$lameduck" ] || [ "$candidate" -nt "$lameduck" ]; }; then
            lameduck="$candidate"
        fi
    done
fi

echo "validate: lameduck wiring${lameduck:+ (configs checked with $lameduck)}"
LAMEDUCK_BIN="$lameduck" python3 - "${files[@]}" <<'PY'
import os, re, subprocess, sys, tempfile
import yaml

TEMPLATES = {  # where each workload kind keeps its pod template
    "Pod": [], "Deployment": ["spec", "template"], "StatefulSet": ["spec", "template"],
    "DaemonSet": ["spec", "template"], "ReplicaSet": ["spec", "template"],
    "Job": ["spec", "template"], "CronJob": ["spec", "jobTemplate", "spec", "template"],
}
lameduck = os.environ.get("LAMEDUCK_BIN") or None
errors = []

def seconds(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", str(text))
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]

def http_get(handler):
    return (handler or {}).get("httpGet")

def check_get(where, container, what, handler, path, port):
    """`what` of `container` is an HTTP GET of `path` on the admin port."""
    get = http_get(handler)
    if not get:
        errors.append(f"{where}: {container['name']}: no {what} httpGet {path}")
    elif get.get("path") != path or get.get("port") not in (port, "admin"):
        errors.append(f"{where}: {container['name']}: {what} should be GET {path} "
                      f"on port {port}, not {get.get('path')} on {get.get('port')}")

def lameducks(spec):
    """lameduck's containers and their modes: an app container it wraps, or a sidecar."""
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    for mode, containers in (("entrypoint", spec.get("containers", [])), ("sidecar", sidecars)):
        for c in containers:
            command = c.get("command", []) + c.get("args", [])
            if command and str(command[0]).endswith("lameduck"):
                yield mode, c, command

for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    for d in docs:
        if d.get("kind") not in TEMPLATES:
            continue
        where = f"{path}: {d['kind']}/{d['metadata']['name']}"
        template = d
        for key in TEMPLATES[d["kind"]]:
            template = template[key]
        spec = template["spec"]
        grace = spec.get("terminationGracePeriodSeconds", 30)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mode, c, command in lameducks(spec):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            config_path = env.get("LAMEDUCK_CONFIG")
            if "--config" in command:
                config_path = command[command.index("--config") + 1]
            if not config_path:
                continue
            # The ConfigMap mounted where LAMEDUCK_CONFIG points.
            text = None
            for m in c.get("volumeMounts", []):
                prefix = m["mountPath"].rstrip("/") + "/"
                cm = volumes.get(m["name"], {}).get("configMap")
                if cm and config_path.startswith(prefix):
                    key = config_path[len(prefix):]
                    text = configmaps.get(cm["name"], {}).get("data", {}).get(key)
            before = len(errors)
            if text is None:
                errors.append(f"{where}: {config_path} is not a key of a ConfigMap in this file")
                continue
            config = yaml.safe_load(text) or {}
            want = seconds(config.get("grace_period", "30s"))
            if want != grace:
                errors.append(f"{where}: terminationGracePeriodSeconds is {grace} "
                              f"but lameduck's grace_period is {config.get('grace_period', '30s (default)')}")
            admin = config.get("admin", {}) or {}
            if admin.get("enabled") is False:
                errors.append(f"{where}: the admin server is off, but the probes need it")
            port = int(str(admin.get("listen", "0.0.0.0:9911")).rsplit(":", 1)[1])
            check_get(where, c, "readinessProbe", c.get("readinessProbe"), "/readyz", port)
            # The hook holds the app's TERM until the drain lets it go: on the
            # wrapped app, or on the app containers beside the sidecar.
            apps = [c] if mode == "entrypoint" else [
                a for a in spec.get("containers", [])
                if http_get((a.get("lifecycle") or {}).get("preStop"))]
            if not apps:
                errors.append(f"{where}: no container has the preStop hook GET /prestop on {port}")
            for a in apps:
                check_get(where, a, "preStop", (a.get("lifecycle") or {}).get("preStop"), "/prestop", port)
            live = http_get(c.get("livenessProbe"))
            if live and live.get("port") in (port, "admin") and live.get("path") != "/healthz":
                errors.append(f"{where}: {c['name']}: livenessProbe on the admin port should be /healthz")
            if lameduck:
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
                    tmp.write(text)
                    tmp.flush()
                    r = subprocess.run([lameduck, "check", "--config", tmp.name, "--cache-dir", "off"],
                                       capture_output=True, text=True)
                if r.returncode != 0:
                    errors.append(f"{where}: lameduck check refused {config_path}:\n"
                                  + (r.stdout + r.stderr).strip())
            if len(errors) == before:
                print(f"ok {where}: {c['name']} ({mode}): grace {grace}s, admin :{port}")

for e in errors:
    print(f"ERROR {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "validate: all ${#files[@]} manifest file(s) valid"

if (( all )); then
    if [ -n "$lameduck" ]; then
        LAMEDUCK="$lameduck" "$deploy/validate-inject.sh"
    else
        echo "validate: no lameduck binary: lameduck inject's output not validated"
    fi
fi
