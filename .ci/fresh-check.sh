#!/bin/bash
# fresh-check.sh: run the README's two commands on a fresh Debian 12.
#
# Builds a Debian 12 (bookworm) root filesystem with debootstrap from the
# Debian mirror this machine's apt uses (/etc/apt/sources.list*), clones
# this repository's HEAD into it with ../shared beside it, and runs each
# README command there as CI would: as root, in a chroot inside a private
# mount namespace (/proc, /sys, /dev and a fresh tmpfs /run mounted; the
# chroot root bind-mounted onto itself, which `ip netns` needs), with a
# clean environment, no standard input, and no Go, module cache or build
# cache from this machine. Prints each step's wall time and result.
#
# Environment:
#   FRESH_STEPS    README commands to run, in order (default "demo test")
#   FRESH_DIR      where the root filesystem goes (default: a new directory
#                  under /var/tmp, removed at the end unless FRESH_KEEP=1)
#   FRESH_VARIANT  debootstrap variant (default minbase: required packages
#                  only, like a container base image; "" for the default)
#   FRESH_KEEP     1 keeps the root filesystem
#
# The only change to this machine is the debootstrap package (installed
# when missing). Local trust anchors of this machine
# (/usr/local/share/ca-certificates, e.g. an intercepting egress proxy's
# CA) are copied into the root filesystem: as on any Debian, they are
# trusted only once the ca-certificates package is installed there.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$repo/../shared" 2>/dev/null && pwd) || { echo "fresh-check: no ../shared beside $repo" >&2; exit 1; }
steps=${FRESH_STEPS:-demo test}
variant=${FRESH_VARIANT-minbase}
suite=bookworm

declare -a summary
t0=$SECONDS

# stamp prefixes each line with the time of day (bash builtin, no fork).
stamp() {
	local line
	while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done
}

# step NAME CMD...: run, time and record one step; its output goes to the
# terminal and to $log/NAME.log.
step() {
	local name=$1 start=$SECONDS rc
	shift
	echo "==== $name: $*"
	set +e
	("$@") 2>&1 | stamp | tee "$log/$name.log"
	rc=${PIPESTATUS[0]}
	set -e
	summary+=("$(printf '%-12s %6d s  %s' "$name" $((SECONDS - start)) "$([ "$rc" = 0 ] && echo ok || echo "FAIL (exit $rc)")")")
	return "$rc"
}

# mirror SUITE prints the first apt source URI that serves SUITE's main
# component, from one-line (.list) and deb822 (.sources) files.
mirror() {
	local want=$1 f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v s="$want" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) == s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$want" 'BEGIN { RS = ""; FS = "\n" }
			{ uri = ""; ok = 0
			  for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { split($i, a, " "); uri = a[2] }
				if ($i ~ /^Suites:/) { n = split($i, b, " "); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
			  }
			  if (ok && uri != "") { print uri; exit } }' "$f"
	done
}

# in_chroot CMD: run CMD with bash in the root filesystem, isolated as
# described above.
in_chroot() {
	unshare -m --propagation private bash -euc '
		r=$1; cmd=$2
		mount --bind "$r" "$r"
		mount -t proc proc "$r/proc"
		mount --rbind /sys "$r/sys"
		mount --rbind /dev "$r/dev"
		mount -t tmpfs -o mode=755 tmpfs "$r/run"
		exec chroot "$r" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI=true \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			/bin/bash -c "$cmd"
	' fresh-check "$root" "$1" </dev/null
}

# reap ends, by PID, any process still running inside the root filesystem.
reap() {
	local p
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then
			echo "fresh-check: killing leftover process ${p#/proc/} ($(tr '\0' ' ' <"$p/cmdline"))"
			kill -9 "${p#/proc/}" 2>/dev/null || true
		fi
	done
}

cleanup() {
	reap
	if [ "${FRESH_KEEP:-0}" = 1 ]; then
		echo "fresh-check: root filesystem kept in $root, logs in $log"
	else
		rm -rf "$root"
		echo "fresh-check: root filesystem removed; logs in $log"
	fi
}

main() {
	local base security
	base=$(mirror "$suite" | head -n1)
	security=$(mirror "$suite-security" | head -n1)
	[ -n "$base" ] || { echo "fresh-check: no apt source for $suite in /etc/apt/sources.list*" >&2; exit 1; }
	work=${FRESH_DIR:-$(mktemp -d /var/tmp/dsbridge-fresh.XXXXXX)}
	root=$work/rootfs log=$work/logs
	mkdir -p "$root" "$log"
	trap cleanup EXIT
	echo "fresh-check: $suite from $base (security: ${security:-none}) into $root; steps: $steps"

	if ! command -v debootstrap >/dev/null; then
		step host-deps bash -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap'
	fi
	step debootstrap debootstrap ${variant:+--variant=$variant} "$suite" "$root" "$base"
	step prepare prepare
	local s rc=0
	for s in $steps; do
		step "$s" in_chroot "cd /root/src/dsbridge && apt-get update && apt-get install -y make && make $s" || rc=1
		reap
	done
	echo
	echo "fresh-check summary ($suite, variant ${variant:-default}, commit $(cat "$work/commit" 2>/dev/null)):"
	printf '  %s\n' "${summary[@]}"
	printf '  %-12s %6d s\n' total $((SECONDS - t0))
	return "$rc"
}

# prepare: apt sources as the Debian installer writes them, the host's
# resolver and local trust anchors, the repository at HEAD and ../shared.
prepare() {
	{
		echo "deb $base $suite main"
		echo "deb $base $suite-updates main"
		[ -z "$security" ] || echo "deb $security $suite-security main"
	} >"$root/etc/apt/sources.list"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		mkdir -p "$root/usr/local/share/ca-certificates"
		cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
	fi
	if [ -n "$(git -C "$repo" status --porcelain)" ]; then
		echo "fresh-check: the work tree has uncommitted changes; they are NOT in the check (HEAD is cloned)"
	fi
	mkdir -p "$root/root/src"
	git clone -q --no-hardlinks "$repo" "$root/root/src/dsbridge"
	git -C "$root/root/src/dsbridge" checkout -q -B "$(git -C "$repo" rev-parse --abbrev-ref HEAD)" "$(git -C "$repo" rev-parse HEAD)"
	cp -a "$shared" "$root/root/src/shared"
	chmod -R a-w "$root/root/src/shared"
	git -C "$root/root/src/dsbridge" log -1 --format=%h >"$work/commit"
	echo "cloned $(git -C "$root/root/src/dsbridge" log -1 --format='%h %s')"
}

main "$@"
