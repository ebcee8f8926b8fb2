#!/usr/bin/env bash
# Prepares a private containerd (CRI plugin) for integration tests that play
# the kubelet's part: they talk CRI gRPC to the socket this script prints and
# run real pods whose containers get real OOM kills.
#
# Usage (as root, any number of times; a re-run only fixes what is missing):
#   tests/containerd/setup.sh
#   tests/containerd/teardown.sh [--purge]     # stop it again
#
# What it does, in order:
#   1. installs containerd, runc, the CNI plugins, gcc and python3 from
#      Debian if missing;
#   2. builds two static binaries: pause (tests/containerd/pause.c, gcc
#      -static) and the workspace's `stress` (cargo, +crt-static, in
#      target/static so other builds are not disturbed);
#   3. packs each into an OCI image archive (oci-pack.py, no pulls anywhere);
#   4. writes /etc/oom-tracer-test/containerd.toml and a pod network (CNI
#      bridge oomtr0, 10.77.0.0/24, for pods that do not use the host's
#      network) and starts that containerd on its own socket, root and state
#      (it never touches a system one);
#   5. imports both images into the k8s.io namespace.
#
# Environment:
#   OOM_TRACER_TEST_SNAPSHOTTER  overlayfs | native (default: overlayfs when a
#                                test overlay mount works here, else native)
#   CARGO                        the cargo to use (default: cargo on PATH, then
#                                ~/.cargo/bin/cargo)
#
# See README.md beside this file for the reasons behind every setting.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

CONF_DIR=/etc/oom-tracer-test
CONFIG=$CONF_DIR/containerd.toml
# Left empty (the pod network's config once lived here; an older setup.sh
# insists that it stays empty).
OLD_CNI_CONF_DIR=$CONF_DIR/cni
# The pod network: Debian's CNI plugins, one bridge network.
CNI_CONF_DIR=$CONF_DIR/cni-pods
CNI_CONFIG=$CNI_CONF_DIR/10-oom-tracer-test.conflist
CNI_PLUGINS=/usr/lib/cni
POD_BRIDGE=oomtr0
POD_SUBNET=10.77.0.0/24
POD_GATEWAY=10.77.0.1
LIB_DIR=/var/lib/oom-tracer-test
ROOT_DIR=$LIB_DIR/containerd
BUILD_DIR=$LIB_DIR/build
RUN_DIR=/run/oom-tracer-test
STATE_DIR=$RUN_DIR/containerd
SOCK=$RUN_DIR/containerd.sock
PIDFILE=$RUN_DIR/containerd.pid
LOCKFILE=$RUN_DIR/setup.lock
LOG=/var/log/oom-tracer-test-containerd.log

NAMESPACE=k8s.io
PAUSE_IMAGE=localhost/oom-tracer/pause:test
STRESS_IMAGE=localhost/oom-tracer/stress:test
RUST_TARGET=x86_64-unknown-linux-gnu
STATIC_TARGET_DIR=$REPO/target/static
START_TIMEOUT_S=20

say() { printf 'setup: %s\n' "$*" >&2; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}
trap 'rc=$?; [ $rc -eq 0 ] || printf "setup: FAILED (exit %d) at line %d: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' EXIT

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, mounts and starts containerd)"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (images are amd64)"

mkdir -p "$CONF_DIR" "$OLD_CNI_CONF_DIR" "$CNI_CONF_DIR" "$ROOT_DIR" "$BUILD_DIR" "$STATE_DIR"
chmod 0711 "$RUN_DIR" "$LIB_DIR"

# One setup at a time (test runners may call this from parallel jobs).
exec 9>"$LOCKFILE"
flock -w 600 9 || die "another setup.sh has held $LOCKFILE for 10 minutes (holders: $(fuser "$LOCKFILE" 2>/dev/null || echo unknown))"

START_NS=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - START_NS) / 1000000 ))ms"; }

# ---------------------------------------------------------------- 1. packages
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v ctr >/dev/null || missing+=(containerd)
command -v containerd-shim-runc-v2 >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
command -v gcc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3)
[ -x "$CNI_PLUGINS/bridge" ] || missing+=(containernetworking-plugins)
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'ok installed' || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    say "installing ${missing[*]} ($(elapsed))"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be absent or stale on a fresh machine.
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi
PYTHON=$(command -v python3) || die "python3 is not on PATH after installing it (oci-pack.py needs it)"
for plugin in bridge host-local loopback; do
    [ -x "$CNI_PLUGINS/$plugin" ] || die "CNI plugin $CNI_PLUGINS/$plugin is missing (package containernetworking-plugins)"
done
RUNC=$(command -v runc) || die "runc is not on PATH after installing it"
say "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}') ($(elapsed))"

# ---------------------------------------------------------------- 2. binaries
is_static() {
    # No program interpreter and no needed shared library (a static-pie
    # binary still has a DYNAMIC segment, for relocating itself).
    readelf -lW "$1" >/dev/null 2>&1 || return 1
    ! readelf -lW "$1" | grep -qE '^\s*INTERP\b' && ! readelf -dW "$1" | grep -q '(NEEDED)'
}

PAUSE_BIN=$BUILD_DIR/pause
if [ ! -x "$PAUSE_BIN" ] || [ "$HERE/pause.c" -nt "$PAUSE_BIN" ]; then
    say "compiling pause"
    gcc -static -O2 -s -Wall -Wextra -o "$PAUSE_BIN.tmp" "$HERE/pause.c" ||
        die "gcc -static failed for pause.c (is libc6-dev installed?)"
    mv -f "$PAUSE_BIN.tmp" "$PAUSE_BIN"
fi
is_static "$PAUSE_BIN" || die "$PAUSE_BIN is not statically linked"

CARGO=${CARGO:-$(command -v cargo || echo "${HOME:-/root}/.cargo/bin/cargo")}
[ -x "$CARGO" ] || die "cargo not found (set CARGO=/path/to/cargo)"
say "building stress (static, $STATIC_TARGET_DIR) ($(elapsed))"
(
    cd "$REPO"
    # RUSTFLAGS only reach the target crates because --target is given, so
    # build scripts and proc macros stay dynamic and build normally.
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$STATIC_TARGET_DIR" \
        "$CARGO" build --quiet --release -p stress --target "$RUST_TARGET"
) || die "cargo build of the static stress binary failed"
STRESS_BIN=$STATIC_TARGET_DIR/$RUST_TARGET/release/stress
[ -x "$STRESS_BIN" ] || die "$STRESS_BIN was not built"
is_static "$STRESS_BIN" || die "$STRESS_BIN is not statically linked"
"$STRESS_BIN" --help >/dev/null || die "$STRESS_BIN does not run"

# ---------------------------------------------------------------- 3. images
pack() { # binary ref entrypoint out -> prints the manifest digest
    local out
    out=$("$PYTHON" "$HERE/oci-pack.py" "$1" "$2" "$3" "$4") || die "oci-pack.py failed for $2"
    printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["manifest"])'
}
PAUSE_DIGEST=$(pack "$PAUSE_BIN" "$PAUSE_IMAGE" /pause "$BUILD_DIR/pause.oci.tar")
STRESS_DIGEST=$(pack "$STRESS_BIN" "$STRESS_IMAGE" /stress "$BUILD_DIR/stress.oci.tar")
say "packed $PAUSE_IMAGE ($PAUSE_DIGEST), $STRESS_IMAGE ($STRESS_DIGEST) ($(elapsed))"

# ---------------------------------------------------------------- 4. config
probe_overlayfs() {
    # The snapshotter needs overlay mounts on the filesystem of $ROOT_DIR.
    local d rc=1
    d=$(mktemp -d "$LIB_DIR/overlay-probe.XXXXXX")
    mkdir -p "$d/lower" "$d/upper" "$d/work" "$d/merged"
    : >"$d/lower/file"
    if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
        [ -e "$d/merged/file" ] && touch "$d/merged/new" 2>/dev/null && rc=0
        umount "$d/merged" || true
    fi
    rm -rf "$d"
    return $rc
}
SNAPSHOTTER=${OOM_TRACER_TEST_SNAPSHOTTER:-}
if [ -z "$SNAPSHOTTER" ]; then
    if probe_overlayfs; then SNAPSHOTTER=overlayfs; else SNAPSHOTTER=native; fi
fi
case $SNAPSHOTTER in overlayfs | native) ;; *) die "OOM_TRACER_TEST_SNAPSHOTTER must be overlayfs or native" ;; esac
say "snapshotter: $SNAPSHOTTER"

CRI='plugins."io.containerd.grpc.v1.cri"'
NEW_CONFIG=$(
    cat <<EOF
# Written by tests/containerd/setup.sh; overwritten on every run.
# A private containerd for oom-tracer's CRI integration tests (see
# tests/containerd/README.md). It shares nothing with a system containerd.
version = 2
root = "$ROOT_DIR"
state = "$STATE_DIR"
oom_score = 0
# Snapshotters and services that cannot work here or that the tests do not use;
# disabling them keeps start-up quick and the log free of "skip plugin" noise.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$SOCK"
  uid = 0
  gid = 0

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$LIB_DIR/opt"

  [$CRI]
    # The only image the CRI plugin would otherwise pull (no registry here).
    sandbox_image = "$PAUSE_IMAGE"
    # root here lacks CAP_SYS_RESOURCE: never lower a container's
    # oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    disable_cgroup = false
    disable_hugetlb_controller = true
    tolerate_missing_hugetlb_controller = true
    enable_tls_streaming = false
    # Exec/attach/port-forward stream server: loopback only, any free port.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    max_container_log_line_size = 16384

    [$CRI.containerd]
      snapshotter = "$SNAPSHOTTER"
      default_runtime_name = "runc"
      discard_unpacked_layers = false

      [$CRI.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [$CRI.containerd.runtimes.runc.options]
          BinaryName = "$RUNC"
          # runc's state, apart from any system containerd's /run/containerd/runc.
          Root = "$RUN_DIR/runc"
          # cgroupfs driver: cgroup_parent "/kubepods/burstable/pod<uid>" is a
          # plain path under each v1 hierarchy, as with the kubelet's cgroupfs.
          SystemdCgroup = false

    # The pod network (CNI_CONFIG): pods that do not use the host's network
    # get their own network namespace on the bridge $POD_BRIDGE. Pods with
    # NamespaceMode NODE use the host's network as before.
    [$CRI.cni]
      bin_dir = "$CNI_PLUGINS"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1

    [$CRI.registry]
      config_path = ""
EOF
)

restart=0
if [ ! -f "$CONFIG" ] || [ "$(cat "$CONFIG")" != "$NEW_CONFIG" ]; then
    printf '%s\n' "$NEW_CONFIG" >"$CONFIG.tmp"
    mv -f "$CONFIG.tmp" "$CONFIG"
    say "wrote $CONFIG"
    restart=1
fi
# The pod network: one bridge, host-local addresses, the host as gateway
# (10.77.0.1: the kubelet's probes and the API server stand-in are reached
# there). No masquerading, no port mapping: nothing leaves the machine.
NEW_CNI=$(
    cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "oom-tracer-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$POD_GATEWAY"}]],
        "dataDir": "$LIB_DIR/cni/networks"
      }
    }
  ]
}
EOF
)
if [ ! -f "$CNI_CONFIG" ] || [ "$(cat "$CNI_CONFIG")" != "$NEW_CNI" ]; then
    printf '%s\n' "$NEW_CNI" >"$CNI_CONFIG.tmp"
    mv -f "$CNI_CONFIG.tmp" "$CNI_CONFIG"
    say "wrote $CNI_CONFIG"
fi
for f in "$CNI_CONF_DIR"/*; do
    [ "$f" = "$CNI_CONFIG" ] || die "$CNI_CONF_DIR holds a stray network config: $f"
done

# ---------------------------------------------------------------- 5. containerd
# ctr blocks for 10 s on a socket nobody serves unless told otherwise.
ctr_() { ctr --address "$SOCK" --connect-timeout 2s --namespace "$NAMESPACE" "$@"; }
answering() {
    [ -S "$SOCK" ] && timeout 10 ctr --address "$SOCK" --connect-timeout 2s --timeout 5s version >/dev/null 2>&1
}
our_pid() { # prints the pid from $PIDFILE if it is our live containerd
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(command -v containerd)" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $CONFIG" || return 1
    echo "$pid"
}
stop_containerd() {
    local pid i
    pid=$(our_pid) || return 0
    say "stopping containerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

if [ $restart -eq 1 ] && our_pid >/dev/null; then
    # Running containers survive: their shims are separate processes.
    say "config changed: restarting containerd"
    stop_containerd
fi

if answering; then
    our_pid >/dev/null || say "note: $SOCK answers but $PIDFILE does not name it; using it as it is"
else
    stop_containerd # a hung one, if any
    rm -f "$SOCK"
    say "starting containerd (log: $LOG)"
    printf '\n==== %s setup.sh starting containerd --config %s\n' "$(date -Is)" "$CONFIG" >>"$LOG"
    # containerd must inherit no descriptor but stdio: not the setup lock
    # (9), nor a lock its caller holds (`flock /tmp/privileged.lock cargo
    # test`, whose tests restart the runtime), or it would hold that lock
    # for as long as it runs and everyone waiting on it would wait for
    # nothing.
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec setsid nohup containerd --config "$CONFIG" >>"$LOG" 2>&1 </dev/null
    ) &
    pid=$!
    echo "$pid" >"$PIDFILE"
    deadline=$(($(date +%s) + START_TIMEOUT_S))
    until answering; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG" >&2
            die "containerd exited during start-up (log above, full log: $LOG)"
        fi
        if [ "$(date +%s)" -ge $deadline ]; then
            tail -n 30 "$LOG" >&2
            die "containerd did not answer on $SOCK within ${START_TIMEOUT_S}s (log: $LOG)"
        fi
        sleep 0.2
    done
    say "containerd is up (pid $pid) ($(elapsed))"
fi

# The CRI plugin loads even when it cannot work; check that it did.
cri_status=$(ctr_ plugins ls 2>/dev/null | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" {print $NF}')
if [ "$cri_status" != ok ]; then
    grep -iE 'cri|error' "$LOG" | tail -n 20 >&2 || true
    die "the CRI plugin is not running (status: '${cri_status:-absent}'; log: $LOG)"
fi
snap_status=$(ctr_ plugins ls 2>/dev/null | awk -v s="$SNAPSHOTTER" '$1 == "io.containerd.snapshotter.v1" && $2 == s {print $NF}')
[ "$snap_status" = ok ] || die "snapshotter $SNAPSHOTTER is not available in containerd (status: '${snap_status:-absent}')"

# ---------------------------------------------------------------- 6. images
import_image() { # ref digest archive
    local have
    have=$(ctr_ images ls "name==$1" 2>/dev/null | awk -v r="$1" '$1 == r {print $3}')
    # Already there with the same digest, complete and unpacked for the CRI
    # snapshotter: nothing to do.
    if [ "$have" = "$2" ] &&
        ctr_ images check --quiet --snapshotter "$SNAPSHOTTER" "name==$1" 2>/dev/null | grep -qxF "$1"; then
        return 0
    fi
    say "importing $1${have:+ (replacing $have)}"
    ctr_ images import --snapshotter "$SNAPSHOTTER" "$3" >/dev/null ||
        die "ctr images import $3 failed"
    have=$(ctr_ images ls "name==$1" | awk -v r="$1" '$1 == r {print $3}')
    [ "$have" = "$2" ] || die "$1 has digest '${have:-none}' after import, expected $2"
}
import_image "$PAUSE_IMAGE" "$PAUSE_DIGEST" "$BUILD_DIR/pause.oci.tar"
import_image "$STRESS_IMAGE" "$STRESS_DIGEST" "$BUILD_DIR/stress.oci.tar"

# The CRI plugin also names each image by its ID ("sha256:<config digest>").
# Such a name outlives a re-import with a new binary and keeps the old image
# alive: drop the ID names whose manifest no named image uses any more.
listing=$(ctr_ images ls 2>/dev/null | awk 'NR > 1 {print $1, $3}')
live=$(awk '$1 !~ /^sha256:/ {print $2}' <<<"$listing")
while read -r ref digest; do
    [ -n "$ref" ] || continue
    if [[ $ref == sha256:* ]] && ! grep -qxF "$digest" <<<"$live"; then
        say "removing stale image name $ref"
        ctr_ images rm "$ref" >/dev/null || say "warning: could not remove $ref"
    fi
done <<<"$listing"

say "ready in $(elapsed)"
cat <<EOF
oom-tracer containerd test runtime is ready
  socket:        $SOCK
  CRI endpoint:  unix://$SOCK
  pause image:   $PAUSE_IMAGE
  stress image:  $STRESS_IMAGE
  snapshotter:   $SNAPSHOTTER
  pod network:   $POD_BRIDGE $POD_SUBNET (gateway $POD_GATEWAY, $CNI_CONFIG)
  config:        $CONFIG
  log:           $LOG
EOF
