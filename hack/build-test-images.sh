#!/bin/sh
# Builds the test images from busybox-static and pushes them to the test
# registry started by hack/registry-up.sh (127.0.0.1:5000, plain HTTP):
#
#   127.0.0.1:5000/aurae/busybox:latest   one layer: /bin/busybox and applet symlinks
#   127.0.0.1:5000/aurae/layered:latest   three layers:
#       1. busybox, /data/{keep,gone,gone-later}, /dir/{old1,old2}
#       2. whiteout data/.wh.gone and opaque whiteout dir/.wh..wh..opq plus dir/new
#          (hand-made tar added verbatim with `umoci raw add-layer`)
#       3. /data/gone-later deleted and /data/layer3 added through
#          `umoci unpack`/`repack`, which emits a .wh. file for the deletion
#          (the script checks that it does)
#   127.0.0.1:5000/aurae/busybox-zstd:latest   the busybox rootfs as one
#       application/vnd.oci.image.layer.v1.tar+zstd layer (umoci and skopeo
#       only write gzip: compressed with zstd(1) and pushed with curl through
#       the registry API)
#
# Installs nothing: needs umoci, skopeo, busybox-static (/bin/busybox), tar,
# gzip, zstd, sha256sum and curl; must run as root (umoci unpack keeps ownership).
# Idempotent: every run rebuilds both images and pushes them again.
#
#   hack/build-test-images.sh [REGISTRY]     REGISTRY defaults to 127.0.0.1:5000
set -eu

REGISTRY=${1:-127.0.0.1:5000}
BUSYBOX=/bin/busybox
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
APPLETS="sh echo cat hostname ls wget nc sleep true false env id ip ifconfig ps mkdir rm touch grep test printf pwd uname"

for tool in umoci skopeo tar curl zstd sha256sum; do
	command -v "$tool" >/dev/null || { echo "build-test-images: $tool is missing" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "build-test-images: $BUSYBOX is missing: apt-get install busybox-static" >&2; exit 1; }
if ! curl -sf -o /dev/null --max-time 2 "http://$REGISTRY/v2/"; then
	echo "build-test-images: no registry answers at http://$REGISTRY/v2/: run hack/registry-up.sh first" >&2
	exit 1
fi

WORK=$(mktemp -d /var/tmp/aurae-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
LAYOUT=$WORK/oci

# A rootfs with busybox and its applets as symlinks to /bin/busybox.
busybox_rootfs() {
	root=$1
	mkdir -p "$root/bin" "$root/tmp" "$root/etc"
	chmod 1777 "$root/tmp"
	cp "$BUSYBOX" "$root/bin/busybox"
	for applet in $APPLETS; do
		if "$BUSYBOX" --list | grep -qx "$applet"; then
			ln -sf /bin/busybox "$root/bin/$applet"
		fi
	done
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "nobody:x:65534:65534:nobody:/nonexistent:/bin/false" >>"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
	echo "nogroup:x:65534:" >>"$root/etc/group"
}

push() {
	tag=$1
	name=$2
	skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:$tag" "docker://$REGISTRY/aurae/$name:latest"
	echo "build-test-images: pushed $REGISTRY/aurae/$name:latest"
}

umoci init --layout "$LAYOUT"

# --- aurae/busybox ------------------------------------------------------------
umoci new --image "$LAYOUT:busybox"
umoci unpack --image "$LAYOUT:busybox" bundle-busybox
busybox_rootfs bundle-busybox/rootfs
umoci repack --image "$LAYOUT:busybox" bundle-busybox
umoci config --image "$LAYOUT:busybox" --os linux --architecture amd64 \
	--config.env "$PATH_ENV" --config.cmd sh --config.workingdir /
push busybox busybox

# --- aurae/layered --------------------------------------------------------------
umoci new --image "$LAYOUT:layered"
umoci unpack --image "$LAYOUT:layered" bundle-layered
busybox_rootfs bundle-layered/rootfs
mkdir -p bundle-layered/rootfs/data bundle-layered/rootfs/dir
echo keep >bundle-layered/rootfs/data/keep
echo gone >bundle-layered/rootfs/data/gone
echo gone-later >bundle-layered/rootfs/data/gone-later
echo old1 >bundle-layered/rootfs/dir/old1
echo old2 >bundle-layered/rootfs/dir/old2
umoci repack --image "$LAYOUT:layered" bundle-layered
rm -rf bundle-layered

# Layer 2, made by hand: a whiteout for data/gone and an opaque dir/.
mkdir -p layer2/data layer2/dir
: >layer2/data/.wh.gone
: >layer2/dir/.wh..wh..opq
echo new >layer2/dir/new
tar --numeric-owner --owner=0 --group=0 -C layer2 -cf layer2.tar data dir
umoci raw add-layer --image "$LAYOUT:layered" layer2.tar

# Layer 3 through umoci: delete a file of layer 1, add one.
umoci unpack --image "$LAYOUT:layered" bundle-layered
test ! -e bundle-layered/rootfs/data/gone
test ! -e bundle-layered/rootfs/dir/old1
rm bundle-layered/rootfs/data/gone-later
echo layer3 >bundle-layered/rootfs/data/layer3
umoci repack --image "$LAYOUT:layered" bundle-layered
umoci config --image "$LAYOUT:layered" --os linux --architecture amd64 \
	--config.env "$PATH_ENV" --config.cmd sh --config.workingdir /

# Check what umoci wrote for the deletion in layer 3: a plain .wh. entry.
last_layer=$(skopeo inspect --raw "oci:$LAYOUT:layered" | tr ',{}' '\n\n\n' |
	sed -n 's/.*"digest":"sha256:\([0-9a-f]*\)".*/\1/p' | tail -n 1)
if ! tar -tzf "$LAYOUT/blobs/sha256/$last_layer" | grep -q 'data/\.wh\.gone-later$'; then
	echo "build-test-images: umoci's layer 3 has no data/.wh.gone-later whiteout:" >&2
	tar -tzvf "$LAYOUT/blobs/sha256/$last_layer" >&2
	exit 1
fi
push layered layered

# --- aurae/busybox-zstd ---------------------------------------------------------
# Pushes one blob (file $2) to repository $1 through a monolithic upload.
push_blob() {
	digest=sha256:$(sha256sum "$2" | cut -d' ' -f1)
	location=$(curl -sfSi -X POST "http://$REGISTRY/v2/$1/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	case $location in
	http*) ;;
	*) location=http://$REGISTRY$location ;;
	esac
	case $location in
	*\?*) sep='&' ;;
	*) sep='?' ;;
	esac
	curl -sfS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary "@$2" "$location${sep}digest=$digest"
	echo "$digest"
}

mkdir zstd-rootfs
busybox_rootfs zstd-rootfs
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@1700000000 \
	-C zstd-rootfs -cf zstd-layer.tar .
zstd -q -19 zstd-layer.tar -o zstd-layer.tar.zst
diff_id=sha256:$(sha256sum zstd-layer.tar | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["%s"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
	"$PATH_ENV" "$diff_id" >zstd-config.json
repo=aurae/busybox-zstd
layer_digest=$(push_blob "$repo" zstd-layer.tar.zst)
config_digest=$(push_blob "$repo" zstd-config.json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"%s","size":%s}]}' \
	"$config_digest" "$(stat -c %s zstd-config.json)" \
	"$layer_digest" "$(stat -c %s zstd-layer.tar.zst)" >zstd-manifest.json
curl -sfS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
	--data-binary @zstd-manifest.json "http://$REGISTRY/v2/$repo/manifests/latest"
echo "build-test-images: pushed $REGISTRY/$repo:latest"
