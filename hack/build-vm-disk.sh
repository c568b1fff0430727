#!/bin/sh
# Builds the bootable test disks for the VM tests from Debian packages only,
# with no mounting (mkfs.vfat, syslinux --install, mcopy, qemu-img convert):
# a FAT volume holding syslinux, Debian's kernel and a busybox initramfs.
#
#   $OUT/disk.qcow2      boots to an init that prints "AURAE-VM-READY" on the
#                        serial console, then powers off when the ACPI power
#                        button is pressed (QMP system_powerdown)
#   $OUT/poweroff.qcow2  the same, but the guest powers itself off right
#                        after printing "AURAE-VM-READY"
#   $OUT/not-a-disk.qcow2  a text file with a disk image's name
#   $OUT/SHA256SUMS
#
# Cached: a second run with the same kernel package does nothing. Needs
# (installed by .ci/run): busybox-static, cpio, dosfstools, mtools, syslinux,
# syslinux-common, qemu-utils, apt-get (the kernel package is downloaded with
# `apt-get download`, never installed on the host).
#
#   hack/build-vm-disk.sh [OUT]     OUT defaults to $AURAE_VM_FIXTURES or /var/cache/aurae-test/vm
set -eu

OUT=${1:-${AURAE_VM_FIXTURES:-/var/cache/aurae-test/vm}}
BUSYBOX=/bin/busybox
for tool in mkfs.vfat syslinux mcopy qemu-img cpio dpkg-deb apt-cache apt-get gzip; do
	command -v "$tool" >/dev/null || { echo "build-vm-disk: $tool is missing (see .ci/run)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "build-vm-disk: $BUSYBOX is missing: apt-get install busybox-static" >&2; exit 1; }

. "$(dirname "$0")/debian-kernel.sh"
kernel_package build-vm-disk
STAMP="$KPKG $KPKG_VERSION v3"
if [ -f "$OUT/SHA256SUMS" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
	echo "build-vm-disk: $OUT is up to date ($STAMP)"
	exit 0
fi

mkdir -p "$OUT"
unpack_kernel aurae-vm-disk
MODS=kernel/lib/modules/$KVER/kernel

# $1: what the init does after the marker ("button" or "poweroff").
initramfs() {
	root=$WORK/initramfs-$1
	mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/lib/modules"
	cp "$BUSYBOX" "$root/bin/busybox"
	for m in drivers/acpi/button.ko drivers/input/evdev.ko; do
		cp "$MODS/$m" "$root/lib/modules/"
	done
	cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /lib/modules/evdev.ko 2>/dev/null
insmod /lib/modules/button.ko 2>/dev/null
echo "AURAE-VM-READY kernel=$(uname -r)"
EOF
	if [ "$1" = poweroff ]; then
		echo 'echo "AURAE-VM-POWEROFF"; poweroff -f' >>"$root/init"
	else
		cat >>"$root/init" <<'EOF'
# The ACPI power button (QMP system_powerdown): any event on its input
# device powers the guest off.
for dev in /sys/class/input/event*; do
	if grep -q "Power Button" "$dev/device/name" 2>/dev/null; then
		(head -c 1 "/dev/input/${dev##*/}" >/dev/null && echo "AURAE-VM-POWEROFF" && poweroff -f) &
	fi
done
n=0
while true; do
	sleep 5
	n=$((n + 5))
	echo "AURAE-VM-ALIVE uptime=${n}s"
done
EOF
	fi
	chmod 755 "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$WORK/initrd-$1.gz"
}

# $1: variant, $2: output file name
disk() {
	img=$WORK/$1.raw
	rm -f "$img"
	truncate -s 24M "$img"
	mkfs.vfat -n AURAEVM "$img" >/dev/null
	syslinux --install "$img"
	cat >"$WORK/syslinux.cfg" <<EOF
DEFAULT aurae
PROMPT 0
TIMEOUT 0
LABEL aurae
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 quiet panic=-1
EOF
	mcopy -i "$img" "$VMLINUZ" ::vmlinuz
	mcopy -i "$img" "$WORK/initrd-$1.gz" ::initrd.gz
	mcopy -i "$img" "$WORK/syslinux.cfg" ::syslinux.cfg
	qemu-img convert -q -c -f raw -O qcow2 "$img" "$WORK/$2"
}

initramfs button
initramfs poweroff
disk button disk.qcow2
disk poweroff poweroff.qcow2
echo "this is a text file, not a disk image" >"$WORK/not-a-disk.qcow2"
for f in disk.qcow2 poweroff.qcow2 not-a-disk.qcow2; do
	mv "$WORK/$f" "$OUT/$f"
done
(cd "$OUT" && sha256sum disk.qcow2 poweroff.qcow2 not-a-disk.qcow2 >SHA256SUMS)
echo "$STAMP" >"$OUT/.stamp"
ls -l "$OUT"
