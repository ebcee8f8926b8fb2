#!/usr/bin/env bash
# Stops the containerd that setup.sh started and cleans up what its pods left.
#
# Usage (as root):
#   tests/containerd/teardown.sh            # stop; keep config, images, build
#   tests/containerd/teardown.sh --purge    # also delete /etc, /var/lib, /var/log
#                                           # and /run dirs of the test runtime
#                                           # and its pod bridge (oomtr0)
#
# In order: removes every task and container (CRI sandboxes included) through
# ctr while containerd still answers; stops containerd by its pid file; kills
# and deletes any container that runc still knows in this runtime's own runc
# root; ends leftover shims of this runtime; unmounts what is left under its
# state and root dirs; removes the empty /kubepods/... cgroups its pods left.
# Installed packages stay. Safe to run any number of times.
set -euo pipefail

CONF_DIR=/etc/oom-tracer-test
CONFIG=$CONF_DIR/containerd.toml
LIB_DIR=/var/lib/oom-tracer-test
ROOT_DIR=$LIB_DIR/containerd
RUN_DIR=/run/oom-tracer-test
STATE_DIR=$RUN_DIR/containerd
RUNC_ROOT=$RUN_DIR/runc
SOCK=$RUN_DIR/containerd.sock
PIDFILE=$RUN_DIR/containerd.pid
LOG=/var/log/oom-tracer-test-containerd.log

purge=0
case ${1:-} in
'') ;;
--purge) purge=1 ;;
-h | --help)
    sed -n '2,15p' "$0"
    exit 0
    ;;
*)
    echo "usage: $0 [--purge]" >&2
    exit 2
    ;;
esac

say() { printf 'teardown: %s\n' "$*" >&2; }
die() {
    printf 'teardown: ERROR: %s\n' "$*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || die "must run as root"

cleaned=0 # 1 once containerd itself has deleted every container
have_ctr=0
command -v ctr >/dev/null && have_ctr=1
ctr_() { ctr --address "$SOCK" --connect-timeout 2s --timeout 30s "$@"; }
answering() { [ $have_ctr -eq 1 ] && [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1; }

# 1. Containers, through containerd while it answers.
if answering; then
    for ns in $(ctr_ namespaces ls -q); do
        for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
            say "killing task $ns/$id"
            ctr_ -n "$ns" tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
            # Waits for the exit, then deletes the task (and its shim).
            ctr_ -n "$ns" tasks delete --force "$id" >/dev/null 2>&1 ||
                say "warning: could not delete task $ns/$id"
        done
        for id in $(ctr_ -n "$ns" containers ls -q 2>/dev/null); do
            say "deleting container $ns/$id"
            ctr_ -n "$ns" containers delete "$id" >/dev/null 2>&1 ||
                say "warning: could not delete container $ns/$id"
        done
    done
    cleaned=1
else
    say "containerd is not answering on $SOCK: skipping the ctr clean-up"
fi

# 2. containerd itself, by its pid file.
if pid=$(cat "$PIDFILE" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^containerd .*--config $CONFIG"; then
    say "stopping containerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "containerd ignored SIGTERM for 10s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
else
    say "no running containerd from $PIDFILE"
fi
rm -f "$PIDFILE"

# 3. Containers that runc still knows (containerd was dead or a delete failed).
if command -v runc >/dev/null && [ -d "$RUNC_ROOT" ]; then
    for root in "$RUNC_ROOT"/*/; do
        [ -d "$root" ] || continue
        for id in $(runc --root "$root" list -q 2>/dev/null); do
            say "runc: removing leftover container $id"
            runc --root "$root" kill --all "$id" KILL 2>/dev/null || true
            runc --root "$root" delete --force "$id" 2>/dev/null ||
                say "warning: runc could not delete $id"
        done
    done
fi

# 4. Shims of this runtime (each names our socket in its command line).
for d in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    case $cmd in
    *containerd-shim*"-address $SOCK "*)
        say "killing leftover shim ${d#/proc/}"
        kill -KILL "${d#/proc/}" 2>/dev/null || true
        ;;
    esac
done

# 5. Mounts left under the state and root dirs (rootfs overlays, sandbox shm),
#    deepest first.
mapfile -t mounts < <(awk -v s="$STATE_DIR/" -v r="$ROOT_DIR/" \
    'index($5, s) == 1 || index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)
for m in "${mounts[@]}"; do
    say "unmounting $m"
    umount "$m" 2>/dev/null || umount -l "$m" || say "warning: could not unmount $m"
done

# The CRI plugin keeps per-sandbox and per-container dirs (logs links, hosts,
# resolv.conf) that a ctr delete does not remove. Only once containerd has
# dropped every container: otherwise its CRI plugin would still recover them.
if [ $cleaned -eq 1 ]; then
    for d in "$STATE_DIR" "$ROOT_DIR"; do
        rm -rf "$d/io.containerd.grpc.v1.cri/sandboxes" "$d/io.containerd.grpc.v1.cri/containers"
    done
    # The pod network's address leases (ctr deletes containers without the
    # CRI's network teardown): no sandbox is left to hold one.
    rm -rf "$LIB_DIR/cni/networks"
fi

# 6. Empty pod cgroups under /kubepods (runc removes only the container's own
#    cgroup, not the parents it created). rmdir fails on a cgroup that still
#    has tasks or children, so only unused ones go.
for hier in /sys/fs/cgroup/*/kubepods; do
    [ -d "$hier" ] || continue
    find "$hier" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$hier" ] && say "note: $hier still has cgroups in use"
done

# 7. Optionally, everything the setup created (not the packages).
if [ $purge -eq 1 ]; then
    say "purging $LIB_DIR $RUN_DIR $CONF_DIR $LOG and the pod bridge"
    rm -rf "$LIB_DIR" "$RUN_DIR" "$CONF_DIR" "$LOG" /var/log/oom-tracer-test
    ip link delete oomtr0 2>/dev/null || true
fi
say "done"
