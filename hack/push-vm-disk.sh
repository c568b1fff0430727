#!/bin/sh
# Pushes the test disk built by hack/build-vm-disk.sh to the test registry as
# a containerDisk (KubeVirt's format: an image whose filesystem holds one disk
# file under /disk/):
#
#   127.0.0.1:5000/aurae/vm-disk:latest   /disk/disk.qcow2
#
# Needs umoci and skopeo; idempotent.
#
#   hack/push-vm-disk.sh [REGISTRY [FIXTURES]]
set -eu

REGISTRY=${1:-127.0.0.1:5000}
FIXTURES=${2:-${AURAE_VM_FIXTURES:-/var/cache/aurae-test/vm}}
[ -f "$FIXTURES/disk.qcow2" ] || { echo "push-vm-disk: no $FIXTURES/disk.qcow2: run hack/build-vm-disk.sh" >&2; exit 1; }
if ! curl -sf -o /dev/null --max-time 2 "http://$REGISTRY/v2/"; then
	echo "push-vm-disk: no registry answers at http://$REGISTRY/v2/: run hack/registry-up.sh first" >&2
	exit 1
fi
WORK=$(mktemp -d /var/tmp/aurae-vm-push.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
umoci init --layout oci
umoci new --image oci:disk
umoci unpack --image oci:disk bundle
mkdir -p bundle/rootfs/disk
cp "$FIXTURES/disk.qcow2" bundle/rootfs/disk/disk.qcow2
chmod 0644 bundle/rootfs/disk/disk.qcow2
umoci repack --image oci:disk bundle
umoci config --image oci:disk --os linux --architecture amd64
skopeo copy --quiet --dest-tls-verify=false oci:oci:disk "docker://$REGISTRY/aurae/vm-disk:latest"
echo "push-vm-disk: pushed $REGISTRY/aurae/vm-disk:latest"
