#!/usr/bin/env bash
# qemu-v2.sh — the cgroup v2 cycle (scripts/v2-cycle.sh) on a machine that has
# only cgroup v1, inside a Debian kernel booted under qemu.
#
# Usage (as root):
#   scripts/qemu-v2.sh [BIN_DIR]        # BIN_DIR holds oom-tracer and stress
#                                       # (default: target/release)
#   KERNEL_PKG=linux-image-6.12.107+deb12-amd64-unsigned scripts/qemu-v2.sh
#   KERNEL_PKG=linux-image-6.1.0-57-amd64-unsigned=6.1.192-3 scripts/qemu-v2.sh
#   KERNEL_DEB=path/to/linux-image-*.deb scripts/qemu-v2.sh
#
# The kernel: KERNEL_DEB names a .deb; else KERNEL_PKG names a package apt
# knows (optionally =version); else the kernel Debian's linux-image-amd64
# depends on now (its -unsigned twin). Packages are fetched with
# apt-get download into $QEMU_V2_WORK and kept there. List the choices with
#   apt-cache search --names-only '^linux-image-[0-9].*-amd64-unsigned$'
#
# The guest is this machine's own root file system, shared read-only over
# virtio-9p, with that kernel underneath, booted with a small busybox
# initramfs. The initramfs loads the modules the 9p root needs (virtio PCI,
# 9p over virtio, the 9p file system) together with their dependencies as the
# package's modules.dep gives them (depmod -b builds it: the .deb does not
# ship it), skipping modules built into the kernel (modules.builtin). It then
# mounts cgroup2 (and no cgroup v1 hierarchy) at /sys/fs/cgroup, tracefs, and
# tmpfs on /tmp, /run and /var/tmp, chroots into the shared root and runs
# scripts/v2-cycle.sh. The cycle's records come back in $OUT/v2-out through a
# second, writable 9p share; $OUT/summary.txt names the kernel package
# (Package and Version), the modules loaded and the result.
#
# Needs: qemu-system-x86, busybox-static, kmod (depmod), installed from
# Debian if missing; xz/zstd for compressed modules.
# TCG (software emulation) by default: 35-50 s of guest time for the cycle here.
# QEMU_V2_ACCEL=kvm uses /dev/kvm (a nested guest hung at boot on the
# development VM).
# QEMU_V2_CMD replaces the cycle with another command for the guest (bash,
# run in the shared root; $BIN_DIR and $OUT=/mnt/v2-out are set), e.g.
#   QEMU_V2_CMD='$BIN_DIR/oom-tracer check' scripts/qemu-v2.sh
# QEMU_V2_MODULES (default "virtio_pci 9pnet_virtio 9p") are the modules the
# guest needs; their dependencies are added from modules.dep.
# Exit status: v2-cycle.sh's (0 PASS, 1 FAIL, 2 cannot run), 3 for a guest
# that did not report one.
set -euo pipefail

say() { printf 'qemu-v2: %s\n' "$*" >&2; }
die() {
    printf 'qemu-v2: ERROR: %s\n' "$*" >&2
    exit 2
}
# first PATH...: the first of the paths that exists (a glob that matched nothing does not).
first() {
    local f
    for f in "$@"; do [ -e "$f" ] && printf '%s\n' "$f" && return 0; done
    return 0
}

export PATH=$PATH:/usr/sbin:/sbin # depmod
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN_DIR=$(cd "${1:-$REPO/target/release}" && pwd) || die "no binary directory ${1:-$REPO/target/release}"
OUT=$(mkdir -p "${OUT:-./v2-vm-out}" && cd "${OUT:-./v2-vm-out}" && pwd)
WORK=${QEMU_V2_WORK:-/var/tmp/oom-tracer-qemu-v2}
MEM=${QEMU_V2_MEM:-2G}
TIMEOUT=${QEMU_V2_TIMEOUT:-900}
ROOT_MODULES=${QEMU_V2_MODULES:-virtio_pci 9pnet_virtio 9p}
GUEST_CMD=${QEMU_V2_CMD:-"$REPO/scripts/v2-cycle.sh \"\$BIN_DIR\""}
case $GUEST_CMD in *"'"*) die "QEMU_V2_CMD must not contain single quotes" ;; esac

[ "$(id -u)" -eq 0 ] || die "run as root (9p passthrough of / and the cgroup runs need it)"
for b in oom-tracer stress; do [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (cargo xtask build)"; done
# The guest sees this machine's / except where it mounts its own file systems.
for p in "$REPO" "$BIN_DIR"; do
    case $p/ in
    /tmp/* | /run/* | /var/tmp/* | /mnt/* | /proc/* | /sys/* | /dev/*)
        die "$p is hidden in the guest (it mounts tmpfs on /tmp, /run, /var/tmp and the output on /mnt): use a checkout and binaries elsewhere" ;;
    esac
done
case $OUT in / | "$REPO" | "${HOME:-/}") die "OUT=$OUT: use a directory of its own" ;; esac

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx switch_root || missing+=(busybox-static)
command -v depmod >/dev/null || missing+=(kmod)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    # The package lists may be absent or stale on a fresh machine.
    apt_install || { apt-get update -qq && apt_install; } || die "apt-get install ${missing[*]} failed"
fi
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not static (install busybox-static)"

mkdir -p "$WORK"
# ------------------------------------------------------------------ kernel package
if [ -n "${KERNEL_DEB:-}" ]; then
    [ -z "${KERNEL_PKG:-}" ] || die "set KERNEL_DEB or KERNEL_PKG, not both"
    [ -f "$KERNEL_DEB" ] || die "KERNEL_DEB=$KERNEL_DEB: no such file"
else
    want=${KERNEL_PKG:-}
    if [ -z "$want" ]; then
        dep=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
        [ -n "$dep" ] || die "cannot tell which linux-image linux-image-amd64 depends on (apt-get update?); set KERNEL_PKG or KERNEL_DEB"
        want=$dep-unsigned
        say "KERNEL_PKG not set: the kernel linux-image-amd64 depends on now, $want"
    fi
    name=${want%%=*}
    candidate() { apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'; }
    known() { # apt knows $name (at version $1, if given)
        if [ -n "$1" ]; then
            apt-cache madison "$name" 2>/dev/null | awk -F' [|] ' '{print $2}' | grep -qxF "$1"
        else
            [ -n "$(candidate)" ] && [ "$(candidate)" != "(none)" ]
        fi
    }
    pinned=
    [ "$name" != "$want" ] && pinned=${want#*=}
    # A fresh machine's package lists may lack it: update them once (not
    # when the pinned .deb was downloaded before).
    if ! known "$pinned" && { [ -z "$pinned" ] || [ -z "$(first "$WORK/${name}_${pinned//:/%3a}_"*.deb)" ]; }; then
        say "apt-get update (apt does not know $want)"
        apt-get update -qq || say "apt-get update failed"
    fi
    if [ -n "$pinned" ]; then
        version=$pinned
    else
        version=$(candidate)
    fi
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        die "apt has no package $name (list them: apt-cache search --names-only '^linux-image-[0-9].*-amd64-unsigned\$')"
    fi
    KERNEL_DEB=$(first "$WORK/${name}_${version//:/%3a}_"*.deb)
    if [ -z "$KERNEL_DEB" ]; then
        say "downloading $name $version"
        if ! log=$(cd "$WORK" && apt-get download -qq "$name=$version" 2>&1); then
            printf '%s\n' "$log" >&2
            die "apt-get download $name=$version failed"
        fi
        KERNEL_DEB=$(first "$WORK/${name}_${version//:/%3a}_"*.deb)
        [ -n "$KERNEL_DEB" ] || die "apt-get download $name=$version left no .deb in $WORK"
    fi
fi
PKG_NAME=$(dpkg-deb -f "$KERNEL_DEB" Package) || die "$KERNEL_DEB is not a .deb"
PKG_VERSION=$(dpkg-deb -f "$KERNEL_DEB" Version)
case $PKG_NAME in linux-image-*) ;; *) die "$KERNEL_DEB holds $PKG_NAME, not a linux-image package" ;; esac
KDIR=$WORK/kernel-${PKG_NAME}_${PKG_VERSION//:/%3a}
if [ ! -d "$KDIR" ]; then
    tmp=$(mktemp -d "$KDIR.XXXXXX")
    dpkg-deb -x "$KERNEL_DEB" "$tmp" || die "dpkg-deb -x $KERNEL_DEB failed"
    mv -T "$tmp" "$KDIR" 2>/dev/null || rm -rf "$tmp" # another run may have won
fi
VMLINUZ=$(first "$KDIR"/boot/vmlinuz-*)
[ -n "$VMLINUZ" ] || die "$PKG_NAME $PKG_VERSION has no /boot/vmlinuz-*"
KVER=${VMLINUZ##*/vmlinuz-}
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$KDIR/boot/config-$KVER" || die "kernel $KVER has no BTF"
say "kernel package $PKG_NAME $PKG_VERSION, release $KVER ($(basename "$KERNEL_DEB"))"

# ------------------------------------------------------------------ modules
MODDIR=
for d in "$KDIR/lib/modules/$KVER" "$KDIR/usr/lib/modules/$KVER"; do [ -d "$d" ] && MODDIR=$d && break; done
[ -n "$MODDIR" ] || die "$PKG_NAME has no lib/modules/$KVER"
if [ ! -s "$MODDIR/modules.dep" ]; then
    # depmod -b BASE reads BASE/lib/modules/$KVER.
    depmod -b "${MODDIR%/lib/modules/"$KVER"}" "$KVER" || die "depmod failed on $MODDIR"
fi
[ -s "$MODDIR/modules.dep" ] || die "no modules.dep in $MODDIR after depmod"
[ -f "$MODDIR/modules.builtin" ] || die "$PKG_NAME has no modules.builtin"

# A module's name: the file name without .ko[.xz|.zst|.gz], '-' as '_' (as the kernel does).
declare -A MOD_PATH MOD_DEPS BUILTIN
while IFS=: read -r path deps; do
    n=${path##*/} && n=${n%%.ko*} && n=${n//-/_}
    MOD_PATH[$n]=$path
    MOD_DEPS[$n]=$deps
done <"$MODDIR/modules.dep"
while read -r path; do
    n=${path##*/} && n=${n%%.ko*} && BUILTIN[${n//-/_}]=1
done <"$MODDIR/modules.builtin"

# need MODULE WHO: MODULE's dependencies first, then MODULE, into LOAD_ORDER.
LOAD_ORDER=()
BUILT_IN=()
declare -A SEEN
need() {
    local m=${1//-/_} d n
    [ -z "${SEEN[$m]:-}" ] || return 0
    SEEN[$m]=1
    if [ -n "${BUILTIN[$m]:-}" ]; then
        BUILT_IN+=("$m")
        return 0
    fi
    [ -n "${MOD_PATH[$m]:-}" ] ||
        die "module $m (needed by $2) is neither in modules.dep nor in modules.builtin of $PKG_NAME $PKG_VERSION ($MODDIR)"
    for d in ${MOD_DEPS[$m]}; do
        n=${d##*/} && n=${n%%.ko*}
        need "$n" "$m"
    done
    LOAD_ORDER+=("$m")
}
for m in $ROOT_MODULES; do need "$m" "QEMU_V2_MODULES"; done
say "modules to load, in order: ${LOAD_ORDER[*]:-(none)}; built in: ${BUILT_IN[*]:-(none)}"

# ------------------------------------------------------------------ initramfs
IR=$(mktemp -d "$WORK/initramfs.XXXXXX")
INITRD=$IR.cpio.gz
trap 'rm -rf "$IR" "$INITRD"' EXIT
mkdir -p "$IR"/{bin,dev,proc,sys,host,out,lib/modules}
cp /bin/busybox "$IR/bin/busybox"
for m in "${LOAD_ORDER[@]}"; do
    src=$MODDIR/${MOD_PATH[$m]}
    case $src in
    *.ko.xz) unpack=(xz -dc) ;;
    *.ko.zst) unpack=(zstd -dcq) ;;
    *.ko.gz) unpack=(gzip -dc) ;;
    *.ko) unpack=(cat) ;;
    *) die "module $m: unknown file type $src" ;;
    esac
    command -v "${unpack[0]}" >/dev/null || die "module $m is ${src##*.ko.}-compressed and ${unpack[0]} is missing"
    "${unpack[@]}" "$src" >"$IR/lib/modules/$m.ko" || die "cannot unpack module $m from $src"
done
printf '%s\n' "${LOAD_ORDER[@]}" >"$IR/lib/modules/load-order"
cat >"$IR/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "qemu-v2-guest: \$*"; dmesg | tail -n 8; poweroff -f; }
while read -r m; do
    [ -n "\$m" ] || continue
    insmod /lib/modules/\$m.ko || fail "insmod \$m failed (modules.dep order: \$(tr '\n' ' ' </lib/modules/load-order))"
done </lib/modules/load-order
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || fail "9p root failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || fail "9p out failed"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
ln -sf /proc/self/fd /host/dev/fd; ln -sf fd/0 /host/dev/stdin; ln -sf fd/1 /host/dev/stdout; ln -sf fd/2 /host/dev/stderr
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup
mount -t tracefs tracefs /host/sys/kernel/tracing
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/var/tmp
mount -t bind /out /host/mnt 2>/dev/null || mount -o bind /out /host/mnt
echo "qemu-v2-guest: kernel \$(uname -r) (\$(uname -v)), cgroup root \$(cat /host/sys/fs/cgroup/cgroup.controllers)"
chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
    OUT=/mnt/v2-out V2_CYCLE_TIMEOUT=300 BIN_DIR="$BIN_DIR" \
    /bin/bash -c '$GUEST_CMD' >/out/v2-cycle.log 2>&1
echo \$? >/out/rc
cat /out/v2-cycle.log
echo "qemu-v2-guest: v2-cycle.sh exit \$(cat /out/rc)"
sync
poweroff -f
INIT
chmod +x "$IR/init"
(cd "$IR" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$INITRD")

# ------------------------------------------------------------------ boot
# Only what this script and the guest write: OUT may be a directory of the user's.
rm -rf "$OUT"/{console.log,rc,v2-cycle.log,v2-out,summary.txt}
ACCEL=(-accel tcg)
if [ -w /dev/kvm ] && [ "${QEMU_V2_ACCEL:-tcg}" = kvm ] &&
    timeout 10 qemu-system-x86_64 -accel kvm -machine none -display none -S -qmp stdio \
        <<<'{"execute":"qmp_capabilities"}{"execute":"quit"}' >/dev/null 2>&1; then
    ACCEL=(-accel kvm -cpu host)
fi
say "booting with ${ACCEL[*]}, $MEM, 2 vCPUs (log: $OUT/console.log)"
start=$(date +%s)
timeout "$TIMEOUT" qemu-system-x86_64 "${ACCEL[@]}" -m "$MEM" -smp 2 -nographic -no-reboot \
    -kernel "$VMLINUZ" -initrd "$INITRD" \
    -append "console=ttyS0 earlyprintk=serial panic=-1 loglevel=${QEMU_V2_LOGLEVEL:-4} cgroup_no_v1=all" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap,id=hostroot" \
    -virtfs "local,path=$OUT,mount_tag=out,security_model=passthrough,id=out" \
    </dev/null >"$OUT/console.log" 2>&1 || say "qemu exited with $?"
guest_s=$(($(date +%s) - start))
say "guest ran $guest_s s"
grep -E '^qemu-v2-guest:' "$OUT/console.log" >&2 || true

rc=3
[ -f "$OUT/rc" ] && rc=$(cat "$OUT/rc")
case $rc in 0) result=PASS ;; 1) result=FAIL ;; 2) result="cannot run (exit 2)" ;; *) result="no result from the guest" ;; esac
if [ -n "${QEMU_V2_CMD:-}" ]; then
    cycle="the guest command's output: v2-cycle.log"
else
    cycle=$(tail -n1 "$OUT/v2-out/summary.txt" 2>/dev/null || echo "no v2-out/summary.txt")
fi
{
    echo "kernel package: $PKG_NAME $PKG_VERSION"
    echo "kernel file: $(basename "$KERNEL_DEB")"
    echo "kernel release: $KVER"
    echo "guest uname -v: $(sed -n 's/^qemu-v2-guest: kernel [^ ]* (\(.*\)), cgroup root.*/\1/p' "$OUT/console.log" | head -n1)"
    echo "modules loaded (modules.dep order): ${LOAD_ORDER[*]:-(none)}"
    echo "modules built in: ${BUILT_IN[*]:-(none)}"
    echo "qemu: ${ACCEL[*]}, $MEM, 2 vCPUs; guest ran $guest_s s"
    echo "guest command: $GUEST_CMD"
    echo "result: $result (exit $rc); v2-cycle: $cycle"
} >"$OUT/summary.txt"
# The cycle's own machine description says which package the kernel came from.
[ -f "$OUT/v2-out/machine.txt" ] && echo "kernel package: $PKG_NAME $PKG_VERSION (qemu-v2.sh)" >>"$OUT/v2-out/machine.txt"
say "kernel package $PKG_NAME $PKG_VERSION: $result; $cycle (summary: $OUT/summary.txt)"
if [ "$rc" = 3 ]; then
    tail -n 40 "$OUT/console.log" >&2
    say "the guest reported no result"
fi
exit "$rc"
