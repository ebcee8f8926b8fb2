#!/usr/bin/env bash
# Validates the manifests under deploy/ offline, against the real Kubernetes
# OpenAPI schema, with kubernetes-validate (PyPI; it bundles the schemas, so
# no cluster and no network are needed once it is installed).
#
#   deploy/validate.sh            # every deploy/*.yaml except kustomization.yaml
#   deploy/validate.sh FILE...    # only these files
#
# Environment:
#   K8S_VERSION   Kubernetes schema version (default: the newest one the
#                 installed kubernetes-validate bundles)
#   PYTHON        the Python interpreter (default: python3)
#
# Also checks that every resource listed in kustomization.yaml exists, and,
# when kubectl is on PATH, that `kubectl kustomize deploy/` renders and that
# what it renders (what `kubectl apply -k` would send) validates too.
# Exits non-zero, naming the file, on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

fail() {
    echo "validate.sh: FAIL: $*" >&2
    exit 1
}

command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (Python 3 is needed for kubernetes-validate)"

if ! "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
    # A virtual environment of its own: a distribution's Python refuses pip
    # installs into itself (PEP 668), and may lack pip altogether.
    venv="${OOM_TRACER_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/oom-tracer}/validate-venv"
    if ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
        if ! "$PYTHON" -m venv --clear "$venv" >/dev/null 2>&1; then
            # Debian splits venv (and ensurepip) into python3-venv.
            [ "$(id -u)" -eq 0 ] || fail "$PYTHON -m venv failed: install python3-venv (or run as root, which installs it)"
            echo "validate.sh: installing python3-venv" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 python3-venv >/dev/null ||
                { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; } ||
                fail "apt-get install python3-venv failed"
            "$PYTHON" -m venv --clear "$venv" || fail "$PYTHON -m venv $venv failed"
        fi
        echo "validate.sh: installing kubernetes-validate with pip into $venv" >&2
        "$venv/bin/python" -m pip install --quiet kubernetes-validate ||
            fail "pip install kubernetes-validate failed"
    fi
    PYTHON="$venv/bin/python"
fi
# The module is what the `kubernetes-validate` command runs; calling it through
# the interpreter works even where pip's script directory is not on PATH.
kv() { "$PYTHON" -m kubernetes_validate "$@"; }

kv_version="$(kv --version)"
version="${K8S_VERSION:-$("$PYTHON" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')}"
echo "validate.sh: kubernetes-validate $kv_version, Kubernetes schema $version (strict)"

if [ $# -gt 0 ]; then
    files=("$@")
else
    files=()
    for f in "$here"/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || fail "no manifests in $here"
fi

failed=()
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "validate.sh: $f: no such file" >&2; failed+=("$f"); continue; }
    # --strict: unknown fields are errors too (a typo is not silently dropped).
    if ! kv --strict --no-warn --quiet -k "$version" "$f"; then
        failed+=("$f")
        continue
    fi
    echo "ok    $f"
done

# kustomization.yaml: every listed resource must be an existing file.
kust="$here/kustomization.yaml"
if [ $# -eq 0 ] && [ -f "$kust" ]; then
    if ! "$PYTHON" - "$kust" <<'EOF'; then
import os, sys, yaml
path = sys.argv[1]
base = os.path.dirname(path)
with open(path) as fh:
    k = yaml.safe_load(fh) or {}
bad = []
if k.get("kind") != "Kustomization":
    bad.append("kind is not Kustomization")
listed = k.get("resources") or []
if not listed:
    bad.append("no resources listed")
for key in ("resources", "components", "patchesStrategicMerge", "crds"):
    for r in k.get(key) or []:
        if not os.path.isfile(os.path.join(base, r)):
            bad.append(f"{key}: {r} does not exist")
for msg in bad:
    print(f"{path}: {msg}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
        failed+=("$kust")
    else
        echo "ok    $kust (lists only existing files)"
        if command -v kubectl >/dev/null; then
            rendered="$(mktemp --suffix=.yaml)"
            trap 'rm -f "$rendered"' EXIT
            if ! kubectl kustomize "$here" >"$rendered"; then
                echo "validate.sh: kubectl kustomize $here failed" >&2
                failed+=("$kust")
            elif ! kv --strict --no-warn --quiet -k "$version" "$rendered"; then
                echo "validate.sh: the output of kubectl kustomize $here does not validate" >&2
                failed+=("$kust")
            else
                echo "ok    kubectl kustomize $here ($(grep -c '^kind:' "$rendered") objects)"
            fi
        fi
    fi
fi

if [ ${#failed[@]} -gt 0 ]; then
    for f in "${failed[@]}"; do
        echo "validate.sh: FAIL: $f" >&2
    done
    exit 1
fi
echo "validate.sh: all manifests valid against Kubernetes $version"
