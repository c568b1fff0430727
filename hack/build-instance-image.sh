#!/bin/sh
# Builds the instance image, what every nested instance (runtime.Core/Spawn)
# boots, from Debian packages and this repository only:
#
#   $OUT/vmlinux         Debian's kernel, uncompressed out of its bzImage, for
#                        QEMU's PVH direct boot (-kernel; argv in docs/instances.md)
#   $OUT/initramfs.cpio  newc cpio: a static auraed as /init, a static busybox
#                        with its applet links, /dev/console, the kernel
#                        modules an instance loads and their modules.dep
#   $OUT/kernel.release  the kernel's release (uname -r)
#   $OUT/.stamp          what the image was built from
#
# The per-instance part (its certificates and key) is a second cpio that the
# parent appends (auraed::instances::cpio). See docs/instances.md.
#
# Cached: a second run with the same kernel package, busybox and auraed
# sources does nothing. The outputs are replaced atomically (rename), the
# stamp last. Needs (installed by .ci/run): busybox-static, cpio, kmod
# (depmod), xz-utils, apt-get (the kernel package is downloaded with
# `apt-get download`, never installed on the host), cargo; root (mknod).
#
#   hack/build-instance-image.sh [OUT]   OUT defaults to $AURAE_INSTANCE_DIR or /var/lib/aurae/instance
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-${AURAE_INSTANCE_DIR:-/var/lib/aurae/instance}}
BUSYBOX=/bin/busybox
TARGET=x86_64-unknown-linux-gnu
# The modules PID 1 loads (crates/auraed/src/init/modules.rs); their
# dependencies come along from modules.dep.
MODULES="virtio_mmio virtio_pci virtio_net virtio_blk overlay 9pnet_virtio 9p"

say() { echo "build-instance-image: $*" >&2; }
for tool in cpio dpkg-deb dpkg-query apt-cache apt-get depmod xz cargo sha256sum; do
	command -v "$tool" >/dev/null || { say "$tool is missing (see .ci/run)"; exit 1; }
done
[ -x "$BUSYBOX" ] || { say "$BUSYBOX is missing: apt-get install busybox-static"; exit 1; }
[ -f /etc/ssl/certs/ca-certificates.crt ] || { say "no CA bundle: apt-get install ca-certificates"; exit 1; }

. "$REPO/hack/debian-kernel.sh"
kernel_package build-instance-image
# The stamp hashes every crate of the workspace, not only crates/auraed: the
# static auraed is also built from the crates it depends on (aurae-kernel,
# aurae-images, aurae-policy, aurae-proto, aurae-client).
SOURCES=$(cd "$REPO" && find Cargo.toml Cargo.lock proto crates hack/build-instance-image.sh hack/debian-kernel.sh \
	-path '*/tests' -prune -o -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.proto' -o -name '*.sh' -o -name Cargo.lock \) -print |
	LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
STAMP="$KPKG $KPKG_VERSION ca $(sha256sum </etc/ssl/certs/ca-certificates.crt | cut -c1-8) busybox $(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo unknown) auraed $SOURCES"
if [ -f "$OUT/initramfs.cpio" ] && [ -f "$OUT/vmlinux" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
	say "$OUT is up to date ($STAMP)"
	exit 0
fi

# The static auraed, in a target directory of its own so the normal build
# stays as it is (crt-static only applies to the target, not build scripts).
# libseccomp-sys links the shared library unless told otherwise.
say "building a static auraed (profile instance)"
(cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
	LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu cargo build -q --locked \
	--profile instance --target "$TARGET" --target-dir "$REPO/target/instance" -p auraed)
AURAED=$REPO/target/instance/$TARGET/instance/auraed
if readelf -ld "$AURAED" | grep -q -e 'Requesting program interpreter' -e '(NEEDED)'; then
	say "$AURAED is not static"; exit 1
fi

mkdir -p "$OUT"
unpack_kernel aurae-instance
KMOD=kernel/lib/modules/$KVER

# vmlinux: the bzImage's payload is an XZ stream; the first one that
# decompresses to an ELF file is the kernel (as scripts/extract-vmlinux).
for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | cut -d: -f1); do
	tail -c +$((off + 1)) "$VMLINUZ" | xz -dc --single-stream >vmlinux 2>/dev/null || true
	[ "$(head -c 4 vmlinux | od -An -c | tr -d ' ')" = '177ELF' ] && break
	rm -f vmlinux
done
[ -s vmlinux ] || { say "no XZ-compressed ELF kernel in $VMLINUZ"; exit 1; }

# The initramfs tree.
root=$WORK/root
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin "$root"/dev "$root"/proc \
	"$root"/sys "$root"/run "$root"/tmp "$root"/root "$root"/etc/aurae/pki "$root"/var/lib/aurae \
	"$root/lib/modules/$KVER"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
ln -s ../run "$root/var/run"
cp "$AURAED" "$root/init"
chmod 755 "$root/init"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
mknod -m 600 "$root/dev/console" c 5 1
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
# The system CA bundle (Debian's ca-certificates): the image store's HTTPS
# client needs one to start, and pulls over TLS verify against it.
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"

# Modules: the closure of $MODULES in the package's modules.dep (made by
# depmod on the unpacked tree: the package has no modules.dep of its own).
depmod -b kernel "$KVER"
for m in $MODULES; do
	line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$KMOD/modules.dep") || { say "$KPKG has no module $m"; exit 1; }
	echo "$line" | tr -d ':' | tr ' ' '\n'
done | sed '/^$/d' | sort -u >modules.list
while read -r f; do
	mkdir -p "$root/lib/modules/$KVER/$(dirname "$f")"
	cp "$KMOD/$f" "$root/lib/modules/$KVER/$f"
done <modules.list
for f in modules.order modules.builtin modules.builtin.modinfo; do
	[ -f "$KMOD/$f" ] && cp "$KMOD/$f" "$root/lib/modules/$KVER/"
done
depmod -b "$root" "$KVER"

# Uncompressed: under TCG the guest's decompression costs more than QEMU
# copying the bytes into memory (docs/benchmarks.md, "Instances").
(cd "$root" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >initramfs.cpio
echo "$KVER" >kernel.release
echo "$STAMP" >stamp

# Same file system as $OUT, so each rename is atomic; the stamp goes last.
for f in vmlinux initramfs.cpio kernel.release; do
	cp "$f" "$OUT/.$f.new"
	mv -f "$OUT/.$f.new" "$OUT/$f"
done
cp stamp "$OUT/.stamp.new"
mv -f "$OUT/.stamp.new" "$OUT/.stamp"
say "built $OUT ($KVER, $(du -h "$OUT/initramfs.cpio" | cut -f1) initramfs)"
