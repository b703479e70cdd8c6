package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestMatrix runs every pod variant against every real guest stack that
// applies to it, with `dsbridge serve` in the pod. Each row asserts what the
// guest shows (exact addresses and prefixes, both default routes, MTU, DNS
// servers, search domains, hostname), pings to the gateways and the
// off-link targets beyond them answered by the node itself (its ICMP
// counters move by exactly the replies the guest got), and a capture on the
// node's side of the uplink that holds nothing dsbridge must not send there.
func TestMatrix(t *testing.T) {
	for _, spec := range lab.Variants {
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			for _, g := range guestStacks {
				if !g.applies(spec) {
					continue
				}
				t.Run(g.name, func(t *testing.T) {
					t.Parallel()
					runRow(t, spec, g)
				})
			}
		})
	}
}

// longVariants also get 10 s of pings to the off-link targets
// (neighbour unreachability detection of the gateway happens meanwhile),
// unless -short.
var longVariants = map[string]bool{lab.KubeOVN.Name: true, lab.Calico.Name: true}

func runRow(t *testing.T, spec lab.PodSpec, g guestStack) {
	l := lab.NewLab(t, spec)
	leak := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	serve(t, l, "")
	rec := g.start(t, l)
	want := wantView(l, g)
	waitView(t, l, g, rec, want, 10*time.Second)

	pingFromGuest(t, l, g, want, longVariants[spec.Name] && !testing.Short())
	checkNoLeak(t, leak)
}

// pingFromGuest pings the gateways and the off-link targets beyond them
// (for long, also 10 s of pings to the off-link targets) and checks the
// node's echo reply counters moved by exactly the replies the guest got:
// the gateway itself answered, not something in the pod.
func pingFromGuest(t *testing.T, l *lab.Lab, g guestStack, want view, long bool) {
	t.Helper()
	before := echoReplies(t, l.Node)
	sent := pingTargets(t, l, g, want)
	if long {
		sent = sent.add(pingOffLinkFor(t, l, g, 11))
	}
	if got := echoReplies(t, l.Node).sub(before); got != sent {
		t.Errorf("node's echo replies moved by %+v, want %+v: the gateway itself must answer the guest", got, sent)
	}
}

// checkNoLeak stops the uplink capture and fails on anything in it.
func checkNoLeak(t *testing.T, c *lab.Capture) {
	t.Helper()
	if pkts := c.Stop(t); len(pkts) > 0 {
		t.Errorf("uplink capture holds %d packets dsbridge must never send there:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
}

// guestStack is one kind of guest: the real clients it runs and where each
// fact shows on it.
type guestStack struct {
	name string
	// dhcp4, dhcp6: the stack runs a DHCPv4 / DHCPv6 client; IPv6 without
	// DHCPv6 comes from the guest kernel's RA handling alone (router, on-link
	// prefix, MTU; no address, since the RA's prefix has A=0).
	dhcp4, dhcp6 bool
	// routeMTU: the MTU lands on the routes, not the link (dhcpcd).
	routeMTU bool
	applies  func(lab.PodSpec) bool
	// start runs the clients, waits for their leases and returns what they
	// recorded.
	start func(t *testing.T, l *lab.Lab) recorded
}

// recorded is what the clients report: their scripts' environment, or
// rdisc6's view of the RA for the DNS options the kernel does not use.
type recorded struct {
	DNS4, Search4 []string
	Hostname      string
	DNS6, Search6 []string
	MTU6          int // the RA's MTU as the client recorded it (dhcpcd)
}

func has4(s lab.PodSpec) bool { return s.IPv4 != "" }
func has6(s lab.PodSpec) bool { return s.IPv6 != "" }
func always(lab.PodSpec) bool { return true }

var guestStacks = []guestStack{
	{name: "dhclient", dhcp4: true, dhcp6: true, applies: always, start: stackDhclient},
	{name: "dhcpcd", dhcp4: true, dhcp6: true, routeMTU: true, applies: always, start: stackDhcpcd},
	{name: "udhcpc", dhcp4: true, applies: has4, start: stackUdhcpc},
	{name: "kernel-ra", applies: has6, start: stackKernelRA},
}

// stackDhclient: dhclient -4 and dhclient -6 for the families the pod has,
// the kernel's RA handling for the IPv6 routes and MTU.
func stackDhclient(t *testing.T, l *lab.Lab) recorded {
	t.Helper()
	var r recorded
	if has4(l.Spec) {
		env := l.Dhclient(t, "-4", "").Env(t, 15*time.Second, "BOUND", "REBOOT")
		r.DNS4, r.Search4, r.Hostname = words(env["new_domain_name_servers"]), words(env["new_domain_search"]), env["new_host_name"]
	}
	if has6(l.Spec) {
		env := l.Dhclient(t, "-6", "").Env(t, 15*time.Second, "BOUND6", "REBOOT6")
		r.DNS6, r.Search6 = words(env["new_dhcp6_name_servers"]), words(env["new_dhcp6_domain_search"])
	}
	return r
}

// stackDhcpcd: one dhcpcd for both families; it handles RAs itself and
// starts DHCPv6 on an RA with M=1. It puts the MTU on its routes, not on
// the link, and caps the IPv6 routes' MTU at the link's (1500 on the lab's
// veth), so the IPv6 MTU checked is the RA's as dhcpcd recorded it.
func stackDhcpcd(t *testing.T, l *lab.Lab) recorded {
	t.Helper()
	c := l.Dhcpcd(t)
	var r recorded
	if has4(l.Spec) {
		env := c.Env(t, 15*time.Second, "BOUND", "REBOOT")
		r.DNS4, r.Search4, r.Hostname = words(env["new_domain_name_servers"]), words(env["new_domain_search"]), env["new_host_name"]
	}
	if has6(l.Spec) {
		env := c.Env(t, 15*time.Second, "BOUND6", "REBOOT6")
		r.DNS6, r.Search6 = words(env["new_dhcp6_name_servers"]), words(env["new_dhcp6_domain_search"])
		r.MTU6, _ = strconv.Atoi(c.Env(t, 5*time.Second, "ROUTERADVERT")["nd1_mtu"])
	}
	return r
}

// stackUdhcpc: busybox udhcpc for IPv4 (Debian's busybox has no udhcpc6),
// the kernel's RA handling for IPv6, as in a minimal cloud image.
func stackUdhcpc(t *testing.T, l *lab.Lab) recorded {
	t.Helper()
	env := l.Udhcpc(t).Env(t, 15*time.Second, "bound")
	r := recorded{DNS4: words(env["dns"]), Search4: words(env["search"]), Hostname: env["hostname"]}
	if has6(l.Spec) {
		r.DNS6, r.Search6 = raDNS(t, l)
	}
	return r
}

// stackKernelRA: no DHCP client at all, only the guest kernel's RA
// handling. The link's MTU is the largest a veth takes, so the IPv6 MTU
// the guest ends with can only come from the RA's MTU option.
func stackKernelRA(t *testing.T, l *lab.Lab) recorded {
	t.Helper()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "mtu", "65535", "up")
	var r recorded
	r.DNS6, r.Search6 = raDNS(t, l)
	return r
}

// raDNS solicits an RA from the guest and returns its RDNSS servers and
// DNSSL domains, which the guest kernel itself ignores.
func raDNS(t *testing.T, l *lab.Lab) (dns, search []string) {
	t.Helper()
	out := l.Guest.Run(t, "rdisc6", "-1", "-n", "-r", "3", "-w", "2000", l.GuestIf)
	for line := range strings.Lines(out) {
		key, val, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(key) {
		case "Recursive DNS server":
			dns = append(dns, strings.Fields(val)...)
		case "DNS search list":
			search = append(search, words(val)...)
		}
	}
	return dns, search
}

// words splits a client's space-separated list, dropping the quotes and
// trailing dots some clients print domain names with.
func words(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		out = append(out, strings.TrimSuffix(strings.Trim(w, `"'`), "."))
	}
	return out
}

// view is what the guest shows after its clients ran. The fields of a
// family the pod lacks, or the stack does not configure, stay zero.
type view struct {
	Addrs              []string // global addresses, "addr/len", sorted
	Default4, Default6 string   // default routes' gateways
	OnLink6            []string // prefixes the RA made on-link
	MTU4, MTU6         int
	DNS4, DNS6         []string
	Search4, Search6   []string
	Hostname           string
}

// wantView is what a passing guest of stack g shows: the
// pod's IPv4 with the pod's prefix, the pod's IPv6 as a /128 from DHCPv6
// plus the on-link prefix from the RA, default via the IPv4 gateway and
// via the IPv6 gateway's link-local address, the pod's MTU, DNS servers,
// search domains and hostname.
func wantView(l *lab.Lab, g guestStack) view {
	s := l.Spec
	var w view
	if has4(s) && g.dhcp4 {
		w.Addrs = append(w.Addrs, s.IPv4)
		w.Default4, w.MTU4, w.Hostname = s.Gateway4, s.MTU, l.Hostname
		w.DNS4, w.Search4 = ofFamily(s.DNS, true), s.Search
	}
	if has6(s) {
		p := netip.MustParsePrefix(s.IPv6)
		if g.dhcp6 {
			w.Addrs = append(w.Addrs, netip.PrefixFrom(p.Addr(), 128).String())
		}
		if p.Bits() < 128 {
			w.OnLink6 = []string{p.Masked().String()}
		}
		w.Default6, w.MTU6 = l.GatewayLLA(), s.MTU
		w.DNS6, w.Search6 = ofFamily(s.DNS, false), s.Search
	}
	slices.Sort(w.Addrs)
	return w
}

// ofFamily keeps the IPv4 (v4) or IPv6 addresses of addrs.
func ofFamily(addrs []string, v4 bool) []string {
	var out []string
	for _, a := range addrs {
		if netip.MustParseAddr(a).Is4() == v4 {
			out = append(out, a)
		}
	}
	return out
}

// gotView reads the guest's kernel state and combines it with what the
// clients recorded, for the families wantView covers.
func gotView(t *testing.T, l *lab.Lab, g guestStack, rec recorded) view {
	t.Helper()
	s := l.Spec
	v := view{
		Addrs:    slices.Sorted(slices.Values(lab.Addrs(t, l.Guest, l.GuestIf))),
		Default4: lab.DefaultVia(t, l.Guest, "-4"),
		Default6: lab.DefaultVia(t, l.Guest, "-6"),
	}
	v.OnLink6 = onLinkPrefixes(t, l)
	if has4(s) && g.dhcp4 {
		v.DNS4, v.Search4, v.Hostname = rec.DNS4, rec.Search4, rec.Hostname
		v.MTU4 = lab.MTU(t, l.Guest, l.GuestIf)
		if g.routeMTU {
			v.MTU4 = defaultRouteMTU(t, l.Guest, "-4")
		}
	}
	if has6(s) {
		v.DNS6, v.Search6 = rec.DNS6, rec.Search6
		if g.routeMTU {
			v.MTU6 = rec.MTU6
		} else {
			v.MTU6, _ = strconv.Atoi(strings.TrimSpace(l.Guest.Run(t, "sysctl", "-n", "net.ipv6.conf."+l.GuestIf+".mtu")))
		}
	}
	return v
}

// onLinkPrefixes are the guest's IPv6 prefix routes without a gateway,
// other than fe80::/64 (host routes of its own addresses print without a
// length). The kernel installs an RA's on-link prefix as proto kernel,
// dhcpcd as proto ra.
func onLinkPrefixes(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	var out []string
	for _, r := range lab.Routes(t, l.Guest, "-6") {
		if r.Gateway == "" && strings.Contains(r.Dst, "/") && r.Dst != "fe80::/64" {
			out = append(out, r.Dst)
		}
	}
	return out
}

// waitView polls the guest until it shows want, and reports the
// difference when it never does.
func waitView(t *testing.T, l *lab.Lab, g guestStack, rec recorded, want view, timeout time.Duration) {
	t.Helper()
	var diff string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		diff = cmp.Diff(want, gotView(t, l, g, rec), cmpopts.EquateEmpty())
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Errorf("guest after %v (-want +got):\n%s", timeout, diff)
	t.Logf("guest addresses:\n%s\nguest routes:\n%s%s", l.Guest.Run(t, "ip", "addr"),
		l.Guest.Run(t, "ip", "-d", "-4", "route"), l.Guest.Run(t, "ip", "-d", "-6", "route"))
	t.FailNow()
}

// defaultRouteMTU is the mtu metric of ns's default route of family.
func defaultRouteMTU(t *testing.T, ns *lab.NS, family string) int {
	t.Helper()
	var rs []struct {
		Metrics []struct {
			MTU int `json:"mtu"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", family, "route", "show", "default")), &rs); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		for _, m := range r.Metrics {
			if m.MTU != 0 {
				return m.MTU
			}
		}
	}
	return 0
}

// echoCount is how many echo replies a namespace sent, per family.
type echoCount struct{ V4, V6 int }

func (a echoCount) add(b echoCount) echoCount { return echoCount{a.V4 + b.V4, a.V6 + b.V6} }
func (a echoCount) sub(b echoCount) echoCount { return echoCount{a.V4 - b.V4, a.V6 - b.V6} }

// echoReplies reads ns's ICMP and ICMPv6 echo reply counters.
func echoReplies(t *testing.T, ns *lab.NS) echoCount {
	t.Helper()
	var c echoCount
	snmp := strings.Split(ns.Run(t, "cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(snmp); i++ {
		if !strings.HasPrefix(snmp[i], "Icmp: ") || !strings.HasPrefix(snmp[i+1], "Icmp: ") {
			continue
		}
		keys, vals := strings.Fields(snmp[i]), strings.Fields(snmp[i+1])
		if j := slices.Index(keys, "OutEchoReps"); j > 0 && j < len(vals) {
			c.V4, _ = strconv.Atoi(vals[j])
		}
		break
	}
	for line := range strings.Lines(ns.Run(t, "cat", "/proc/net/snmp6")) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Icmp6OutEchoReplies" {
			c.V6, _ = strconv.Atoi(f[1])
		}
	}
	return c
}

// ping is one ping run from the guest; size 0 is ping's default.
type ping struct {
	dst         string
	count, size int
	interval    string
}

// run pings from the guest (don't fragment when sized) and fails the test
// unless every echo is answered. It returns the replies by family.
func (p ping) run(t *testing.T, l *lab.Lab) echoCount {
	t.Helper()
	args := []string{"ping", "-n", "-c", strconv.Itoa(p.count), "-i", p.interval, "-W", "2"}
	if p.size > 0 {
		args = append(args, "-M", "do", "-s", strconv.Itoa(p.size))
	}
	out, err := l.Guest.Exec(append(args, p.dst)...)
	if want := fmt.Sprintf("%d packets transmitted, %d received", p.count, p.count); err != nil || !strings.Contains(out, want) {
		t.Errorf("guest %s: %v\n%s", strings.Join(args[1:], " ")+" "+p.dst, err, out)
	}
	if strings.Contains(p.dst, ":") {
		return echoCount{V6: p.count}
	}
	return echoCount{V4: p.count}
}

// pingTargets pings, 3 times each, the gateways and the off-link targets
// beyond them that the guest of g can reach, and the gateways once more
// with a full-size packet (don't fragment) where the stack set the link's
// MTU: the bridge and tap carry the pod's MTU. It returns how many replies
// the node must have sent.
func pingTargets(t *testing.T, l *lab.Lab, g guestStack, want view) echoCount {
	t.Helper()
	s := l.Spec
	var ps []ping
	if want.Default4 != "" {
		ps = append(ps, ping{dst: s.Gateway4}, ping{dst: lab.OffLink4})
		if !g.routeMTU {
			ps = append(ps, ping{dst: s.Gateway4, size: s.MTU - 28})
		}
	}
	if want.Default6 != "" {
		gw := s.Gateway6
		if !g.dhcp6 || strings.HasPrefix(gw, "fe80:") {
			gw = l.GatewayLLA() + "%" + l.GuestIf // no global address: only the link-local gateway
		}
		ps = append(ps, ping{dst: gw})
		if g.dhcp6 {
			ps = append(ps, ping{dst: lab.OffLink6})
		}
		if !g.routeMTU {
			ps = append(ps, ping{dst: gw, size: s.MTU - 48})
		}
	}
	var sent echoCount
	for _, p := range ps {
		if p.count == 0 {
			p.count, p.interval = 3, "0.2"
			if p.size > 0 {
				p.count = 1
			}
		}
		sent = sent.add(p.run(t, l))
	}
	return sent
}

// pingOffLinkFor pings both off-link targets, concurrently, count times
// one second apart.
func pingOffLinkFor(t *testing.T, l *lab.Lab, g guestStack, count int) echoCount {
	t.Helper()
	var ps []ping
	if g.dhcp4 && has4(l.Spec) {
		ps = append(ps, ping{dst: lab.OffLink4, count: count, interval: "1"})
	}
	if g.dhcp6 && has6(l.Spec) {
		ps = append(ps, ping{dst: lab.OffLink6, count: count, interval: "1"})
	}
	var mu sync.Mutex
	var sent echoCount
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			n := p.run(t, l)
			mu.Lock()
			sent = sent.add(n)
			mu.Unlock()
		})
	}
	wg.Wait()
	return sent
}
