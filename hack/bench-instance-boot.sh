#!/usr/bin/env bash
# Boot time of the instance image under QEMU (TCG unless ACCEL=kvm), side by
# side in one run: QEMU starting to the first line on the console (raw
# QEMU + kernel + initramfs, the baseline) against QEMU starting to the
# nested auraed logging "auraed serving" (PID 1 has switched root, mounted,
# loaded modules and the daemon has bound its listeners). No network device
# and no ip= (the Unix socket only), a throwaway PKI in the per-instance
# archive. Prints each run and the medians with their ratio.
#
#   [MACHINE=pc] [ACCEL=tcg] hack/bench-instance-boot.sh [RUNS] [IMAGE_DIR]   RUNS defaults to 5
set -euo pipefail
RUNS=${1:-5}
IMAGE=${2:-${AURAE_INSTANCE_DIR:-/var/lib/aurae/instance}}
REPO=$(cd "$(dirname "$0")/.." && pwd)
AURAED=${AURAED:-$REPO/target/debug/auraed}
WORK=$(mktemp -d /var/tmp/aurae-bench-instance.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The per-instance archive: a PKI at the daemon's default paths.
"$AURAED" pki init --pki-dir "$WORK/root/etc/aurae/pki" --client-dir "$WORK/client" \
	--config "$WORK/client/config" >/dev/null
(cd "$WORK/root" && find etc | cpio -o -H newc --quiet -R 0:0) >"$WORK/pki.cpio"
cat "$IMAGE/initramfs.cpio" "$WORK/pki.cpio" >"$WORK/initramfs.cpio"

# One boot: prints "<ms to init's first line> <ms to auraed serving>".
boot() {
	local start now pid first="" serving=""
	start=$(date +%s%N)
	exec 3< <(exec timeout 300 qemu-system-x86_64 -M "${MACHINE:-pc}" -nodefaults -no-user-config -nographic -no-reboot \
		${ACCEL:+-accel "$ACCEL"} -cpu max -m 512 -smp 1 -kernel "$IMAGE/vmlinux" -initrd "$WORK/initramfs.cpio" \
		-append "console=ttyS0 reboot=t panic=-1 quiet" -serial stdio </dev/null 2>&1)
	pid=$!
	while IFS= read -r line <&3; do
		now=$(date +%s%N)
		if [ -z "$first" ] && [[ $line == *"auraed-init: starting"* ]]; then
			first=$(((now - start) / 1000000))
		fi
		if [[ $line == *"auraed serving"* ]]; then
			serving=$(((now - start) / 1000000))
			break
		fi
	done
	kill "$pid" 2>/dev/null || true
	exec 3<&-
	echo "$first $serving"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$WORK/runs"
for i in $(seq "$RUNS"); do
	r=$(boot)
	echo "run $i: init's first line ${r% *} ms, auraed serving ${r#* } ms"
	echo "$r" >>"$WORK/runs"
done
f=$(cut -d' ' -f1 "$WORK/runs" | median)
s=$(cut -d' ' -f2 "$WORK/runs" | median)
echo "median: init's first line $f ms, auraed serving $s ms, ratio $(awk "BEGIN {printf \"%.2f\", $s / $f}")x"
