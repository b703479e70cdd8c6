package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The client scripts configure the guest with ip(8) and record the client's
// environment in $DSB_DIR/<reason>.env (DSB_DIR is written into each
// script), so nothing on the host (resolv.conf,
// hostname) ever changes. Each record is written aside and renamed into
// place, so Env never reads a file the script is still writing.

const dhclientScript = `#!/bin/sh
env > "$DSB_DIR/$reason.tmp" && mv "$DSB_DIR/$reason.tmp" "$DSB_DIR/$reason.env"
case "$reason" in
PREINIT) ip link set "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	[ -n "$new_interface_mtu" ] && ip link set "$interface" mtu "$new_interface_mtu"
	ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
	if [ -n "$new_rfc3442_classless_static_routes" ]; then
		set -- $new_rfc3442_classless_static_routes
		while [ $# -ge 5 ]; do
			len=$1; shift; net=""; n=0
			for i in 1 2 3 4; do
				if [ $(( (len + 7) / 8 )) -ge $i ]; then net="$net${net:+.}$1"; shift; else net="$net${net:+.}0"; fi
			done
			gw="$1.$2.$3.$4"; shift 4
			if [ "$gw" = 0.0.0.0 ]; then ip route replace "$net/$len" dev "$interface"
			else ip route replace "$net/$len" via "$gw" dev "$interface" onlink; fi
		done
	elif [ -n "$new_routers" ]; then
		ip route replace default via "${new_routers%% *}" dev "$interface"
	fi ;;
PREINIT6) ip link set "$interface" up ;;
BOUND6|RENEW6|REBIND6|REBOOT6)
	ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;
esac
exit 0
`

const dhclientConf = `option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, time-offset, routers, domain-name, domain-name-servers,
	domain-search, host-name, interface-mtu, rfc3442-classless-static-routes,
	dhcp6.name-servers, dhcp6.domain-search;
`

const udhcpcScript = `#!/bin/sh
env > "$DSB_DIR/$1.tmp" && mv "$DSB_DIR/$1.tmp" "$DSB_DIR/$1.env"
case "$1" in
deconfig) ip link set "$interface" up ;;
bound|renew)
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	ip addr replace "$ip/$mask" dev "$interface"
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface"
			else ip route replace "$1" via "$2" dev "$interface" onlink; fi
			shift 2
		done
	elif [ -n "$router" ]; then
		ip route replace default via "${router%% *}" dev "$interface"
	fi ;;
esac
exit 0
`

// udhcpc6Script is busybox udhcpc6's script: $1 is the event, $ipv6 the
// leased address (busybox networking/udhcp/d6_dhcpc.c).
const udhcpc6Script = `#!/bin/sh
env > "$DSB_DIR/$1.tmp" && mv "$DSB_DIR/$1.tmp" "$DSB_DIR/$1.env"
case "$1" in
bound|renew) [ -n "$ipv6" ] && ip -6 addr replace "$ipv6/128" dev "$interface" nodad ;;
esac
exit 0
`

// dhcpcd configures addresses and routes itself; its script only records.
const dhcpcdScript = `#!/bin/sh
env > "$DSB_DIR/$reason.tmp" && mv "$DSB_DIR/$reason.tmp" "$DSB_DIR/$reason.env"
exit 0
`

const dhcpcdConf = `option domain_name_servers, domain_name, domain_search, host_name, interface_mtu, classless_static_routes
option rapid_commit
noipv4ll
nohook resolv.conf, hostname, timesyncd, ntp
`

// Client is a DHCP client running in the guest namespace.
type Client struct {
	Dir  string // script output: <reason>.env files
	Cmd  *exec.Cmd
	lab  *Lab
	name string
}

func (l *Lab) clientDir(t T, name, script string) string {
	t.Helper()
	return l.clientDirAt(t, t.TempDir(), script)
}

func (l *Lab) start(t T, name, dir string, args ...string) *Client {
	t.Helper()
	return &Client{Dir: dir, Cmd: l.Guest.Start(t, args...), lab: l, name: name}
}

// Dhclient starts ISC dhclient in the foreground, family "-4" or "-6".
// Lease and PID files live in dir, so a second call with the same dir
// restarts from the lease (INIT-REBOOT for IPv4, Confirm for IPv6).
func (l *Lab) Dhclient(t T, family, dir string) *Client {
	t.Helper()
	if dir == "" {
		dir = l.clientDir(t, "dhclient", dhclientScript)
	} else if _, err := os.Stat(filepath.Join(dir, "script")); err != nil {
		dir = l.clientDirAt(t, dir, dhclientScript)
	}
	conf := filepath.Join(dir, "dhclient.conf")
	if err := os.WriteFile(conf, []byte(dhclientConf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	return l.start(t, "dhclient"+family, dir, "dhclient", family, "-d", "-v", "-cf", conf,
		"-sf", filepath.Join(dir, "script"), "-lf", filepath.Join(dir, "lease"+family),
		"-pf", filepath.Join(dir, "pid"+family), l.GuestIf)
}

// clientDirAt writes the script into dir with DSB_DIR set in the script
// itself: dhclient and dhcpcd run their scripts with a fresh environment.
func (l *Lab) clientDirAt(t T, dir, script string) string {
	t.Helper()
	script = strings.Replace(script, "#!/bin/sh\n", "#!/bin/sh\nDSB_DIR='"+dir+"'\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Udhcpc starts busybox udhcpc in the foreground.
func (l *Lab) Udhcpc(t T) *Client {
	t.Helper()
	dir := l.clientDir(t, "udhcpc", udhcpcScript)
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	return l.start(t, "udhcpc", dir, "busybox", "udhcpc", "-f", "-i", l.GuestIf, "-s", filepath.Join(dir, "script"),
		"-O", "mtu", "-O", "staticroutes", "-O", "search", "-O", "hostname", "-O", "domain")
}

// Udhcpc6 starts busybox's udhcpc6 in the foreground from the busybox
// binary given: Debian's busybox lacks udhcpc6, so it is one built with it
// (the e2e/kubevirt guest's, for instance). Its IPv6 default route comes
// from the kernel's RA processing.
func (l *Lab) Udhcpc6(t T, busybox string) *Client {
	t.Helper()
	dir := l.clientDir(t, "udhcpc6", udhcpc6Script)
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	return l.start(t, "udhcpc6", dir, busybox, "udhcpc6", "-f", "-i", l.GuestIf, "-s", filepath.Join(dir, "script"))
}

// Dhcpcd starts dhcpcd in the foreground with private run and database
// directories (a tmpfs in the command's own mount namespace, which
// `ip netns exec` provides), so parallel tests never share its PID file.
// extra selects e.g. "-4" or "-6".
func (l *Lab) Dhcpcd(t T, extra ...string) *Client {
	t.Helper()
	dir := l.clientDir(t, "dhcpcd", dhcpcdScript)
	conf := filepath.Join(dir, "dhcpcd.conf")
	if err := os.WriteFile(conf, []byte(dhcpcdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/run/dhcpcd", "/var/lib/dhcpcd"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	sh := fmt.Sprintf("mount -t tmpfs dsb /run/dhcpcd && mount -t tmpfs dsb /var/lib/dhcpcd && exec dhcpcd -B -d -f %s -c %s %s %s",
		conf, filepath.Join(dir, "script"), strings.Join(extra, " "), l.GuestIf)
	return l.start(t, "dhcpcd", dir, "sh", "-c", sh)
}

// Env returns the environment the client's script recorded for reason
// (e.g. "BOUND", "BOUND6", "bound"), waiting up to timeout for it.
func (c *Client) Env(t T, timeout time.Duration, reasons ...string) map[string]string {
	t.Helper()
	env, _ := c.record(t, timeout, reasons)
	return env
}

// Next is Env that also removes the record it returns, so that the next
// call waits for a new one (a restarted client's).
func (c *Client) Next(t T, timeout time.Duration, reasons ...string) map[string]string {
	t.Helper()
	env, path := c.record(t, timeout, reasons)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return env
}

// record waits for the first of reasons' records and returns it and its path.
func (c *Client) record(t T, timeout time.Duration, reasons []string) (map[string]string, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range reasons {
			path := filepath.Join(c.Dir, r+".env")
			if env, err := readEnv(path); err == nil {
				return env, path
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s recorded none of %v within %v", c.name, reasons, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}

// Stop ends the client by PID and waits for it.
func (c *Client) Stop() { stopProcess(c.Cmd) }

// Kill ends the client by SIGKILL (no release), keeping its lease file.
func (c *Client) Kill() {
	if c.Cmd.Process != nil {
		_ = c.Cmd.Process.Kill()
		_ = c.Cmd.Wait()
	}
}

// Addr is one address as `ip -j addr` reports it.
type Addr struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
	Scope     string `json:"scope"`
	Dynamic   bool   `json:"dynamic"`
}

// Addrs lists the global addresses on dev in ns as "addr/len".
func Addrs(t T, ns *NS, dev string) []string {
	t.Helper()
	var links []struct {
		AddrInfo []Addr `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "addr", "show", "dev", dev)), &links); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Scope == "global" {
				out = append(out, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
			}
		}
	}
	return out
}

// Route is one route as `ip -j route` reports it.
type Route struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Expires  int    `json:"expires"`
}

// Routes lists ns's routes of family "-4" or "-6".
func Routes(t T, ns *NS, family string) []Route {
	t.Helper()
	var rs []Route
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", family, "route", "show")), &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// DefaultVia returns the default route's gateway for family, or "".
func DefaultVia(t T, ns *NS, family string) string {
	t.Helper()
	for _, r := range Routes(t, ns, family) {
		if r.Dst == "default" {
			return r.Gateway
		}
	}
	return ""
}

// MTU is dev's MTU in ns.
func MTU(t T, ns *NS, dev string) int {
	t.Helper()
	var links []struct {
		MTU int `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show %s: %v", dev, err)
	}
	return links[0].MTU
}

// WaitFor polls cond every 100 ms until it is true or timeout passes.
func WaitFor(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
