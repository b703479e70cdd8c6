#!/bin/bash
# Builds the guest the KubeVirt e2e tests boot with KubeVirt's kernelBoot:
# Debian 12's kernel (linux-image-amd64, unpacked, never installed) and a
# small initramfs: busybox built from Debian's own source package with
# udhcpc6 enabled (Debian's busybox binaries lack it) by the repository's
# .ci/busybox.sh, the virtio-net modules, and the scripts in rootfs/.
#
# Output: $DSBRIDGE_GUEST_CACHE/out/{vmlinuz,initramfs.gz} (default cache
# ${XDG_CACHE_HOME:-$HOME/.cache}/dsbridge/kubevirt-guest). Nothing goes
# into the repository. A second run with the same inputs (this script,
# rootfs/, the kernel package and the busybox binary) rebuilds nothing.
# Needs root (apt-get), cpio, kmod (modinfo) and what .ci/busybox.sh needs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${DSBRIDGE_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dsbridge/kubevirt-guest}
mkdir -p "$cache/out" "$cache/kernel"
apt_dir=$cache/apt
# shellcheck source=../../../.ci/apt-private.sh
. "$here/../../../.ci/apt-private.sh"

setup_apt
kpkg=$(apt_private apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
kver=$(apt_private apt-cache policy "$kpkg" | awk '/Candidate:/{print $2}')
[ -n "$kpkg" ] && [ -n "$kver" ] || { echo "build.sh: cannot resolve the kernel package ($kpkg $kver)" >&2; exit 1; }
# busybox: static, udhcpc6 with DNS and search (one build for the lab's
# tests and this guest).
"$here/../../../.ci/busybox.sh" "$cache/busybox"
busybox="$cache/busybox/busybox"
bsum=$(sha256sum "$busybox" | cut -c1-16)
stamp=$( (echo "$kpkg $kver busybox $bsum"; cat "$0"; find "$here/rootfs" -type f | sort | xargs cat) | sha256sum | cut -c1-16)
if [ "$(cat "$cache/out/stamp" 2>/dev/null)" = "$stamp" ] && [ -s "$cache/out/vmlinuz" ] && [ -s "$cache/out/initramfs.gz" ]; then
	echo "guest up to date in $cache/out ($kpkg $kver, busybox $bsum)"
	exit 0
fi

# The kernel and the modules virtio-net needs, dependencies first.
kdir="$cache/kernel/$kpkg-$kver"
if [ ! -d "$kdir/x/boot" ]; then
	rm -rf "$cache/kernel"/*
	mkdir -p "$kdir"
	(cd "$kdir" && apt_private apt-get download "$kpkg=$kver" >/dev/null && dpkg-deb -x ./*.deb x && rm -f ./*.deb)
fi
moddir=$(echo "$kdir"/x/lib/modules/*)
declare -A seen=()
order=()
add_module() {
	local name=$1 file dep deps
	[ -n "${seen[$name]:-}" ] && return
	seen[$name]=1
	file=$(find "$moddir" -name "$name.ko" | head -1)
	[ -n "$file" ] || { echo "build.sh: module $name not in $kpkg" >&2; exit 1; }
	deps=$(modinfo -F depends "$file") || exit 1
	for dep in ${deps//,/ }; do add_module "$dep"; done
	order+=("$file")
}
add_module virtio_pci
add_module virtio_net

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,lib/modules,usr/bin,usr/sbin}
cp "$busybox" "$root/bin/busybox"
cp -r "$here/rootfs/." "$root/"
: >"$root/lib/modules/load"
for f in "${order[@]}"; do
	cp "$f" "$root/lib/modules/"
	echo "$(basename "$f")" >>"$root/lib/modules/load"
done
chmod 755 "$root/init" "$root/etc/udhcpc"/*
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$cache/out/initramfs.gz.tmp"
cp "$kdir/x/boot/vmlinuz-"* "$cache/out/vmlinuz.tmp"
mv "$cache/out/initramfs.gz.tmp" "$cache/out/initramfs.gz"
mv "$cache/out/vmlinuz.tmp" "$cache/out/vmlinuz"
echo "$stamp" >"$cache/out/stamp"
echo "guest built in $cache/out ($kpkg $kver, busybox $bsum, modules: $(tr '\n' ' ' <"$root/lib/modules/load"))"
