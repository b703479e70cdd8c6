#!/bin/bash
# go-bootstrap.sh DIR VERSION SUM: make sure a Go >= 1.26 is on PATH.
#
# If the go on PATH (the Makefile puts DIR/bin and /usr/local/go/bin first)
# is older than 1.26 or missing, fetch go VERSION as the Go module
# golang.org/toolchain@v0.0.1-goVERSION.linux-ARCH with Debian's own Go
# (golang-go, 1.19 in Debian 12, far too old to build this module but able
# to download a module) and unpack it into DIR. Nothing outside DIR and the
# Debian packages changes: /usr/local is left alone.
#
# SUM pins the module's hash (the "h1:" line of go.sum; the checksum
# database holds the same). The module zip stores no file modes and
# Go 1.19 unpacks every file read-only, so the executables get their x
# bits back here (bin/* and pkg/tool/*/*), as the go command itself does
# when it switches toolchains (cmd/go/internal/toolchain).
set -euo pipefail

dir=$1 version=$2 sum=$3
min=1.26

have() {
	local v
	v=$(cd / && go env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n%s\n' "$min" "$v" | sort -V | head -n1)" = "$min" ]
}

if have; then
	exit 0
fi

arch=$(dpkg --print-architecture)
if [ "$arch" != amd64 ]; then
	echo "go-bootstrap: no pinned checksum for linux-$arch; install Go >= $min in /usr/local/go or on PATH" >&2
	exit 1
fi
mod=golang.org/toolchain@v0.0.1-go$version.linux-$arch
echo "go-bootstrap: no Go >= $min on PATH: fetching $mod into $dir with Debian's golang-go"

need=()
for p in golang-go ca-certificates; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

# A private module cache, removed afterwards: only the unpacked toolchain
# stays. From /, so Go 1.19 never reads this repository's go.mod.
mkdir -p "${dir%/*}"
tmp=$(mktemp -d "${dir%/*}/.go-bootstrap.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
json=$(cd / && GOMODCACHE=$tmp GOFLAGS=-modcacherw GOTOOLCHAIN=local /usr/bin/go mod download -json "$mod")
got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p' <<<"$json")
if [ "$got" != "$sum" ]; then
	echo "go-bootstrap: $mod has hash '$got', want '$sum'" >&2
	echo "$json" >&2
	exit 1
fi
src=$tmp/golang.org/toolchain@v0.0.1-go$version.linux-$arch
chmod +x "$src"/bin/* "$src"/pkg/tool/*/*
rm -rf "$dir"
mv "$src" "$dir"
"$dir/bin/go" version
