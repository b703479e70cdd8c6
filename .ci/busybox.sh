#!/bin/bash
# busybox.sh DIR: build busybox from Debian's own source package with
# udhcpc6 enabled (Debian's busybox binaries have no udhcpc6) into
# DIR/busybox.
#
# The source comes from this machine's Debian mirrors through a private apt
# state with deb-src entries made from /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.sources (same mirrors, same keys), so the
# host's apt configuration and lists stay as they are. Configuration:
# upstream's defconfig plus a static binary, udhcpc6 with its DNS (RFC 3646)
# and FQDN (RFC 4704) options; tc off (it does not build against
# bookworm's kernel headers). A second run with the same inputs (this
# script and the busybox version) rebuilds nothing. Needs root (apt-get),
# dpkg-dev, gcc, make, libc6-dev, bzip2, xz-utils, patch (make
# busybox-udhcpc6 installs them).
set -euo pipefail

out=$1
mkdir -p "$out/src"
apt_dir=$out/apt
# shellcheck source=apt-private.sh
. "$(dirname "$0")/apt-private.sh"

# The version is the installed busybox-static's when there is one (the
# version the rest of the tests run), else the newest source on the mirror.
version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || true)
stamp_of() { (echo "busybox $1"; cat "$0") | sha256sum | cut -c1-16; }
if [ -n "$version" ] && [ -x "$out/busybox" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$(stamp_of "$version")" ]; then
	exit 0
fi
setup_apt
if [ -z "$version" ]; then
	version=$(apt_private apt-cache showsrc busybox 2>/dev/null | awk '/^Version:/{print $2}' | sort -V | tail -1)
fi
[ -n "$version" ] || { echo "busybox.sh: no busybox source package on the mirrors" >&2; exit 1; }
stamp=$(stamp_of "$version")
if [ -x "$out/busybox" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

echo "busybox.sh: building busybox $version with udhcpc6 into $out"
rm -rf "$out/src" && mkdir -p "$out/src"
(cd "$out/src" && apt_private apt-get source busybox="$version" >/dev/null)
src=$(find "$out/src" -maxdepth 1 -mindepth 1 -type d -name 'busybox-*' | head -1)
[ -n "$src" ] || { echo "busybox.sh: apt-get source busybox=$version unpacked nothing" >&2; exit 1; }
make -C "$src" -s defconfig >/dev/null
for opt in STATIC UDHCPC6 FEATURE_UDHCPC6_RFC3646 FEATURE_UDHCPC6_RFC4704; do
	sed -i "s/^# CONFIG_$opt is not set\$/CONFIG_$opt=y/; s/^CONFIG_$opt=.*/CONFIG_$opt=y/" "$src/.config"
	grep -q "^CONFIG_$opt=y" "$src/.config" || echo "CONFIG_$opt=y" >>"$src/.config"
done
sed -i 's/^CONFIG_TC=y/# CONFIG_TC is not set/' "$src/.config"
(yes '' || true) | make -C "$src" -s oldconfig >/dev/null
nice -n 10 make -C "$src" -s -j"$(nproc)" busybox >"$out/src/build.log" 2>&1 ||
	{ tail -30 "$out/src/build.log" >&2; exit 1; }
"$src/busybox" --list | grep -qx udhcpc6 || { echo "busybox.sh: the build has no udhcpc6" >&2; exit 1; }
cp "$src/busybox" "$out/busybox.tmp"
mv "$out/busybox.tmp" "$out/busybox"
echo "$stamp" >"$out/stamp"
rm -rf "$out/src"
echo "busybox.sh: $out/busybox ($version, udhcpc6)"
