# Sourced (not run) by the scripts that build guests from Debian's kernel
# package: hack/build-vm-disk.sh, hack/build-instance-image.sh. The package
# is downloaded with `apt-get download` and unpacked, never installed.

# kernel_package NAME: sets KPKG (the package linux-image-amd64 points at
# today) and KPKG_VERSION, or exits saying why as NAME.
kernel_package() {
	KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$KPKG" ] || { echo "$1: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
	KPKG_VERSION=$(apt-cache policy "$KPKG" | awk '/Candidate:/{print $2}')
}

# unpack_kernel PREFIX: makes a work directory /var/tmp/PREFIX.* (removed at
# exit) the current directory and unpacks $KPKG into ./kernel there; sets
# WORK, VMLINUZ (the bzImage) and KVER (its release).
unpack_kernel() {
	WORK=$(mktemp -d "/var/tmp/$1.XXXXXX")
	trap 'rm -rf "$WORK"' EXIT
	cd "$WORK"
	chmod 755 "$WORK"
	apt-get download -q "$KPKG" >/dev/null 2>&1 || apt-get download "$KPKG"
	dpkg-deb -x ./"$KPKG"_*.deb kernel
	VMLINUZ=$(ls kernel/boot/vmlinuz-*)
	KVER=${VMLINUZ##*/vmlinuz-}
}
