# apt-private.sh, sourced: a private apt state in $apt_dir with deb-src
# entries made from this machine's own sources (/etc/apt/sources.list and
# /etc/apt/sources.list.d/*.sources: same mirrors, same keys), so the
# host's apt configuration and lists stay as they are. Used by busybox.sh
# and e2e/kubevirt/guest/build.sh; the caller sets apt_dir.

# apt_private TOOL ARGS...: run an apt tool on the private state.
apt_private() {
	local tool=$1
	shift
	"$tool" -q -o APT::Sandbox::User=root -o Dir::Etc::SourceList="$apt_dir/sources.list" \
		-o Dir::Etc::SourceParts="$apt_dir/sources.list.d" \
		-o Dir::State::Lists="$apt_dir/lists" \
		-o Dir::Cache="$apt_dir/cache" "$@"
}

# setup_apt writes the private sources and updates their lists.
setup_apt() {
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
	: >"$apt_dir/sources.list"
	if [ -f /etc/apt/sources.list ]; then
		sed -n 's/^deb \(.*\)/deb \1\ndeb-src \1/p' /etc/apt/sources.list >"$apt_dir/sources.list"
	fi
	rm -f "$apt_dir/sources.list.d/"*
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		sed 's/^Types: deb$/Types: deb deb-src/' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
	done
	apt_private apt-get update >/dev/null
}
