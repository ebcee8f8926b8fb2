#!/usr/bin/env bash
# qemu-v2.sh — the cgroup v2 cycle (scripts/v2-cycle.sh) on a machine that has
# only cgroup v1, inside a Debian kernel booted under qemu.
#
# Usage (as root):
#   scripts/qemu-v2.sh [BIN_DIR]        # BIN_DIR holds oom-tracer and stress
#                                       # (default: target/release)
#   KERNEL_DEB=path/to/linux-image-*.deb scripts/qemu-v2.sh
#
# The guest is this machine's own root file system, shared read-only over
# virtio-9p, with a fresh kernel underneath: Debian's linux-image (downloaded
# with apt-get download unless KERNEL_DEB names one), booted with a small
# busybox initramfs that mounts cgroup2 (and no cgroup v1 hierarchy) at
# /sys/fs/cgroup, tracefs, and tmpfs on /tmp and /run, then chroots into the
# shared root and runs scripts/v2-cycle.sh. Its records come back in
# $OUT (default: ./v2-vm-out) through a second, writable 9p share.
#
# Needs: qemu-system-x86, busybox-static (installed from Debian if missing).
# TCG (software emulation) by default: about 90 s for the whole cycle here.
# QEMU_V2_ACCEL=kvm uses /dev/kvm (a nested guest hung at boot on the
# development VM).
# QEMU_V2_CMD replaces the cycle with another command for the guest (bash,
# run in the shared root; $BIN_DIR and $OUT=/mnt/v2-out are set), e.g.
#   QEMU_V2_CMD='$BIN_DIR/oom-tracer check' scripts/qemu-v2.sh
# Exit status: v2-cycle.sh's (0 PASS, 1 FAIL, 2 cannot run), 3 for a guest
# that did not report one.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN_DIR=$(cd "${1:-$REPO/target/release}" && pwd)
OUT=$(mkdir -p "${OUT:-./v2-vm-out}" && cd "${OUT:-./v2-vm-out}" && pwd)
WORK=${QEMU_V2_WORK:-/var/tmp/oom-tracer-qemu-v2}
MEM=${QEMU_V2_MEM:-2G}
TIMEOUT=${QEMU_V2_TIMEOUT:-900}
GUEST_CMD=${QEMU_V2_CMD:-"$REPO/scripts/v2-cycle.sh \"\$BIN_DIR\""}
case $GUEST_CMD in *"'"*) die "QEMU_V2_CMD must not contain single quotes" ;; esac

say() { printf 'qemu-v2: %s\n' "$*" >&2; }
die() {
    printf 'qemu-v2: ERROR: %s\n' "$*" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "run as root (9p passthrough of / and the cgroup runs need it)"
for b in oom-tracer stress; do [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (cargo xtask build)"; done
case $BIN_DIR/ in "$REPO"/* | /*) ;; esac

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list | grep -qx switch_root || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi
ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not static (install busybox-static)"

mkdir -p "$WORK"
# ------------------------------------------------------------------ kernel
if [ -z "${KERNEL_DEB:-}" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot tell which linux-image linux-image-amd64 depends on"
    pkg=${pkg%-amd64}-amd64-unsigned
    KERNEL_DEB=$(ls "$WORK"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$KERNEL_DEB" ]; then
        say "downloading $pkg"
        (cd "$WORK" && apt-get download -qq "$pkg" 2>/dev/null) || die "apt-get download $pkg failed"
        KERNEL_DEB=$(ls "$WORK"/"${pkg}"_*.deb | head -n1)
    fi
fi
KDIR=$WORK/kernel-$(basename "$KERNEL_DEB" .deb)
if [ ! -d "$KDIR" ]; then
    dpkg-deb -x "$KERNEL_DEB" "$KDIR.tmp" && mv "$KDIR.tmp" "$KDIR"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$KDIR/boot/config-$KVER" || die "kernel $KVER has no BTF"
say "kernel $KVER ($(basename "$KERNEL_DEB"))"

# ------------------------------------------------------------------ initramfs
INITRD=$WORK/initrd-$KVER.cpio.gz
IR=$WORK/initramfs
rm -rf "$IR"
mkdir -p "$IR"/{bin,dev,proc,sys,host,out,lib/modules}
cp /bin/busybox "$IR/bin/busybox"
# Modules for the 9p root, in load order (modules.dep is not shipped in the .deb).
MODS="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"
for m in $MODS; do
    f=$(find "$KDIR"/lib/modules/"$KVER" "$KDIR"/usr/lib/modules/"$KVER" \( -name "$m.ko" -o -name "$m.ko.xz" \) 2>/dev/null | head -n1 || true)
    if [ -z "$f" ]; then
        [ -n "${QEMU_V2_VERBOSE:-}" ] && say "module $m not in the package (built in)"
        continue
    fi
    case $f in *.xz) xz -dc "$f" >"$IR/lib/modules/$m.ko" ;; *) cp "$f" "$IR/lib/modules/$m.ko" ;; esac
done
cat >"$IR/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $MODS; do [ -f /lib/modules/\$m.ko ] && insmod /lib/modules/\$m.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || { echo "qemu-v2-guest: 9p root failed"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || { echo "qemu-v2-guest: 9p out failed"; poweroff -f; }
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
echo "qemu-v2-guest: kernel \$(uname -r), cgroup root \$(cat /host/sys/fs/cgroup/cgroup.controllers)"
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
rm -rf "$OUT"/*
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
say "guest ran $(($(date +%s) - start)) s"
grep -E '^qemu-v2-guest:' "$OUT/console.log" >&2 || true
[ -f "$OUT/rc" ] || {
    tail -n 40 "$OUT/console.log" >&2
    say "the guest reported no result"
    exit 3
}
exit "$(cat "$OUT/rc")"
