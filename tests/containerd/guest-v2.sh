#!/usr/bin/env bash
# guest-v2.sh — the test containerd inside the cgroup v2 guest of
# scripts/qemu-v2.sh, then one test of a test binary against it.
#
# Usage (QEMU_V2_CMD runs it in the guest, as root; oom-tracer/tests/daemonset_v2.rs
# does that):
#   tests/containerd/guest-v2.sh TEST_BINARY TEST_NAME
#
# The guest's root is this machine's root, read-only, with tmpfs on /tmp,
# /run and /var/tmp, and $OUT (/mnt/v2-out) a writable share back to the
# host. The test runtime that tests/containerd/setup.sh set up on the host
# is reused as far as it can be: its containerd config, its pod network
# (CNI bridge) config and its pause image archive, read from the shared root
# before tmpfs is mounted over their directories. Then, in the guest only:
#   1. tmpfs on /etc/oom-tracer-test (the config, copied back),
#      /var/lib/oom-tracer-test (containerd's root, the CNI leases, the pod
#      directories), /var/lib/cni (the CNI results cache) and /var/log (the
#      CRI logs);
#   2. the loopback interface up (the CRI's stream server listens on it);
#   3. containerd (Debian's, from the shared root) with that config: on
#      cgroup v2 with the cgroupfs driver, runc puts pods under
#      /sys/fs/cgroup/kubepods/... and, as containerd does on every v2 node,
#      gives each container a cgroup namespace of its own;
#   4. the pause image imported; then TEST_BINARY --exact TEST_NAME with
#      OOM_TRACER_V2_GUEST=1 (the test imports the DaemonSet's images
#      itself).
# containerd's log, the test's output and, if the test failed, the pods'
# CRI logs are left in $OUT. Exit status: the test's; 2 when the guest
# cannot run it (it names what is missing).
set -uo pipefail

TEST_BIN=${1:?usage: guest-v2.sh TEST_BINARY TEST_NAME}
TEST_NAME=${2:?usage: guest-v2.sh TEST_BINARY TEST_NAME}
OUT=${OUT:?OUT: the writable share (qemu-v2.sh sets it)}
CONF_DIR=/etc/oom-tracer-test
CONFIG=$CONF_DIR/containerd.toml
CNI_CONFIG=$CONF_DIR/cni-pods/10-oom-tracer-test.conflist
LIB_DIR=/var/lib/oom-tracer-test
PAUSE_ARCHIVE=$LIB_DIR/build/pause.oci.tar
RUN_DIR=/run/oom-tracer-test
SOCK=$RUN_DIR/containerd.sock
STAGE=/run/oom-tracer-guest-stage
START_TIMEOUT_S=180

mkdir -p "$OUT"
t0=$(date +%s%N)
say() { printf 'guest-v2: [%5d ms] %s\n' "$((($(date +%s%N) - t0) / 1000000))" "$*"; }
die() {
    printf 'guest-v2: CANNOT RUN: %s\n' "$*" >&2
    exit 2
}

# ---------------------------------------------------------------- the guest
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || die "/sys/fs/cgroup is not cgroup2 (not the qemu-v2.sh guest?)"
grep -qw memory /sys/fs/cgroup/cgroup.controllers || die "the cgroup v2 root offers no memory controller"
for c in containerd containerd-shim-runc-v2 runc ctr ip nsenter; do
    command -v "$c" >/dev/null || die "$c is missing from the shared root (tests/containerd/setup.sh installs containerd, runc; ip: iproute2; nsenter: util-linux)"
done
for f in "$CONFIG" "$CNI_CONFIG" "$PAUSE_ARCHIVE"; do
    [ -f "$f" ] || die "$f is missing: run tests/containerd/setup.sh on the host first (cargo xtask test does)"
done
[ -x "$TEST_BIN" ] || die "test binary $TEST_BIN is missing"
say "kernel $(uname -r); cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers); containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"

# ---------------------------------------------------------------- 1. writable state
mkdir -p "$STAGE"
cp "$CONFIG" "$CNI_CONFIG" "$PAUSE_ARCHIVE" "$STAGE/" || die "cannot stage the host's test runtime files"
mount -t tmpfs -o mode=0755 tmpfs "$CONF_DIR" || die "tmpfs on $CONF_DIR"
mount -t tmpfs -o mode=0711 tmpfs "$LIB_DIR" || die "tmpfs on $LIB_DIR"
mount -t tmpfs -o mode=0755 tmpfs /var/log || die "tmpfs on /var/log"
# The CNI library caches each attachment's result there.
[ -d /var/lib/cni ] || die "/var/lib/cni is missing on the host (its pod network has never run: run tests/containerd/setup.sh and a pod)"
mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni || die "tmpfs on /var/lib/cni"
mkdir -p "$CONF_DIR/cni" "$CONF_DIR/cni-pods" "$LIB_DIR/build" "$RUN_DIR"
cp "$STAGE/containerd.toml" "$CONFIG"
cp "$STAGE/10-oom-tracer-test.conflist" "$CNI_CONFIG"
chmod 0711 "$RUN_DIR"
snapshotter=$(sed -n 's/^ *snapshotter = "\(.*\)"/\1/p' "$CONFIG")
say "config from the host's setup.sh: snapshotter ${snapshotter:-?}, SystemdCgroup $(sed -n 's/^ *SystemdCgroup = //p' "$CONFIG")"

# ---------------------------------------------------------------- 2. network
ip link set lo up || die "cannot bring lo up"
# The CNI bridge plugin forwards between the pods and the node.
echo 1 >/proc/sys/net/ipv4/ip_forward

# ---------------------------------------------------------------- 3. containerd
ctr_() { ctr --address "$SOCK" --connect-timeout 5s --namespace k8s.io "$@"; }
containerd --config "$CONFIG" >"$OUT/containerd.log" 2>&1 </dev/null &
cpid=$!
deadline=$(($(date +%s) + START_TIMEOUT_S))
until [ -S "$SOCK" ] && ctr_ --timeout 20s version >/dev/null 2>&1; do
    kill -0 "$cpid" 2>/dev/null || {
        tail -n 30 "$OUT/containerd.log" >&2
        die "containerd exited during start-up (log: containerd.log)"
    }
    [ "$(date +%s)" -lt $deadline ] || die "containerd did not answer within ${START_TIMEOUT_S}s"
    sleep 0.5
done
cri=$(ctr_ plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" {print $NF}')
[ "$cri" = ok ] || {
    grep -iE 'cri|error' "$OUT/containerd.log" | tail -n 20 >&2
    die "the CRI plugin is not running (status: '${cri:-absent}')"
}
say "containerd is up (pid $cpid), CRI plugin ok"

# ---------------------------------------------------------------- 4. the test
ctr_ images import --snapshotter "$snapshotter" "$STAGE/pause.oci.tar" >/dev/null || die "ctr images import pause.oci.tar failed"
say "pause image imported; running $TEST_NAME"
OOM_TRACER_V2_GUEST=1 RUST_BACKTRACE=1 "$TEST_BIN" --exact "$TEST_NAME" --nocapture --test-threads 1 \
    >"$OUT/test.log" 2>&1
rc=$?
say "test exit $rc"
tail -n 60 "$OUT/test.log"
if [ $rc -ne 0 ]; then
    cp -r /var/log/oom-tracer-test "$OUT/pod-logs" 2>/dev/null || true
    dmesg | tail -n 60 >"$OUT/dmesg.txt" 2>/dev/null || true
fi
kill -TERM "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
say "done"
exit $rc
