package e2e

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// measureClient is a guest DHCP client setup to time.
type measureClient struct {
	name  string
	v6    bool // the client configures IPv6 too
	start func(t *testing.T, l *lab.Lab)
}

var measureClients = []measureClient{
	{"dhclient", true, func(t *testing.T, l *lab.Lab) { l.Dhclient(t, "-4", ""); l.Dhclient(t, "-6", "") }},
	{"dhcpcd", true, func(t *testing.T, l *lab.Lab) { l.Dhcpcd(t) }},
	{"udhcpc", false, func(t *testing.T, l *lab.Lab) { l.Udhcpc(t) }},
}

// measureServers start a server for the guest in l's pod.
var measureServers = []struct {
	name  string
	start func(t *testing.T, l *lab.Lab) int // returns the server's PID
}{
	{"dsbridge", func(t *testing.T, l *lab.Lab) int { return dsbridgePID(t, serve(t, l, "", "--log-level", "info")) }},
	{"dnsmasq", serveDnsmasq},
}

// TestMeasure times, for each client, the guest's link up to both families
// configured (address and default route; IPv4 only for udhcpc), with
// dsbridge and with dnsmasq serving the same lab in the same run, and
// measures each server's memory idle and under a 10 s flood. It asserts no
// timing: it prints one line per client and server, and per server, each
// starting with MEASURE. Run it with DSBRIDGE_MEASURE=1 (and
// DSBRIDGE_MEASURE_RUNS=n, default 5).
func TestMeasure(t *testing.T) {
	if os.Getenv("DSBRIDGE_MEASURE") != "1" {
		t.Skip("set DSBRIDGE_MEASURE=1 to measure")
	}
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("DSBRIDGE_MEASURE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	type key struct{ client, server string }
	got := map[key][]timing{}
	for i := range runs {
		for _, c := range measureClients {
			for _, s := range measureServers {
				t.Run(fmt.Sprintf("%s/%s/%d", c.name, s.name, i), func(t *testing.T) {
					got[key{c.name, s.name}] = append(got[key{c.name, s.name}], timeConfigure(t, c, s.start))
				})
			}
		}
	}
	var lines []string
	for _, c := range measureClients {
		for _, s := range measureServers {
			lines = append(lines, summary(c.name, s.name, got[key{c.name, s.name}]))
		}
	}
	for _, s := range measureServers {
		t.Run("rss/"+s.name, func(t *testing.T) { lines = append(lines, measureMemory(t, s.name, s.start)) })
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

// timing is one run: when each family was configured, from the link up.
type timing struct{ v4, v6, both time.Duration }

// timeConfigure builds a fresh lab, starts the server, brings the guest's
// link up and starts the client, and waits for the guest to be configured.
func timeConfigure(t *testing.T, c measureClient, start func(*testing.T, *lab.Lab) int) timing {
	l := lab.NewLab(t, lab.KubeOVN)
	start(t, l)
	w := watchGuest(t, l)
	var tm timing
	t0 := time.Now()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	c.start(t, l)
	for deadline := t0.Add(30 * time.Second); tm.v4 == 0 || (c.v6 && tm.v6 == 0); time.Sleep(5 * time.Millisecond) {
		v4, v6 := w.configured()
		now := time.Since(t0)
		if v4 && tm.v4 == 0 {
			tm.v4 = now
		}
		if v6 && tm.v6 == 0 {
			tm.v6 = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: guest not configured within 30 s (IPv4 %v, IPv6 %v)", c.name, tm.v4, tm.v6)
		}
	}
	tm.both = max(tm.v4, tm.v6)
	return tm
}

// guestWatch reads the guest's addresses and routes over netlink, cheap
// enough to poll every few milliseconds.
type guestWatch struct {
	h    *netlink.Handle
	link netlink.Link
}

func watchGuest(t *testing.T, l *lab.Lab) *guestWatch {
	t.Helper()
	ns, err := netns.GetFromName(l.Guest.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", l.Guest.Name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", l.Guest.Name, err)
	}
	t.Cleanup(h.Close)
	link, err := h.LinkByName(l.GuestIf)
	if err != nil {
		t.Fatalf("guest link %s: %v", l.GuestIf, err)
	}
	return &guestWatch{h: h, link: link}
}

// configured reports, per family, whether the guest holds the pod's
// address and a default route.
func (w *guestWatch) configured() (v4, v6 bool) {
	addrs, err := w.h.AddrList(w.link, netlink.FAMILY_ALL)
	if err != nil {
		return false, false
	}
	for _, a := range addrs {
		v4 = v4 || a.IP.Equal(net.ParseIP("10.16.0.5"))
		v6 = v6 || a.IP.Equal(net.ParseIP("fd00:10:16::5"))
	}
	return v4 && w.hasDefault(netlink.FAMILY_V4), v6 && w.hasDefault(netlink.FAMILY_V6)
}

func (w *guestWatch) hasDefault(family int) bool {
	routes, err := w.h.RouteList(w.link, family)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(routes, func(r netlink.Route) bool {
		if r.Dst == nil {
			return r.Gw != nil
		}
		ones, _ := r.Dst.Mask.Size()
		return ones == 0
	})
}

// summary is one parsable line for a client and server.
func summary(client, server string, ts []timing) string {
	pick := func(f func(timing) time.Duration) []time.Duration {
		var out []time.Duration
		for _, t := range ts {
			out = append(out, f(t))
		}
		slices.Sort(out)
		return out
	}
	both := pick(func(t timing) time.Duration { return t.both })
	if len(both) == 0 {
		return fmt.Sprintf("MEASURE configure client=%s server=%s runs=0", client, server)
	}
	v6 := "-" // an IPv4-only client
	if ts[0].v6 > 0 {
		v6 = strconv.FormatInt(median(pick(func(t timing) time.Duration { return t.v6 })), 10)
	}
	return fmt.Sprintf("MEASURE configure client=%s server=%s runs=%d median_ms=%d min_ms=%d max_ms=%d median_v4_ms=%d median_v6_ms=%s all_ms=%s",
		client, server, len(both), median(both), both[0].Milliseconds(), both[len(both)-1].Milliseconds(),
		median(pick(func(t timing) time.Duration { return t.v4 })), v6, msList(both))
}

func median(d []time.Duration) int64 {
	if len(d) == 0 {
		return 0
	}
	if len(d)%2 == 1 {
		return d[len(d)/2].Milliseconds()
	}
	return ((d[len(d)/2-1] + d[len(d)/2]) / 2).Milliseconds()
}

func msList(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, strconv.FormatInt(x.Milliseconds(), 10))
	}
	return strings.Join(s, ",")
}

// measureMemory serves a dual-stack dhclient guest, then reads the server's
// memory idle and while the guest floods DISCOVER, Solicit and RS for 10 s.
func measureMemory(t *testing.T, name string, start func(*testing.T, *lab.Lab) int) string {
	l := lab.NewLab(t, lab.KubeOVN)
	pid := start(t, l)
	l.Dhclient(t, "-4", "").Env(t, 15*time.Second, "BOUND")
	l.Dhclient(t, "-6", "").Env(t, 15*time.Second, "BOUND6")
	time.Sleep(time.Second)
	mem := readRSS(t, pid)
	res := newInjector(t, l).flood(10*time.Second, floodFrames(l.VMMAC(), 256), func() { mem.peak(readRSS(t, pid)) })
	after := readRSS(t, pid)
	return fmt.Sprintf("MEASURE rss server=%s idle_kib=%d flood_peak_kib=%d hwm_kib=%d flood_frames_per_s=%.0f alive=%t",
		name, mem.first>>10, mem.max>>10, after.hwm>>10, float64(res.sent)/res.took.Seconds(), procState(pid) != "" && procState(pid) != "Z")
}

// dnsmasqMAC is the pod uplink's MAC once it is a port of dnsmasq's bridge:
// the VM's MAC is the guest's alone.
const dnsmasqMAC = "0a:58:0a:10:00:04"

// serveDnsmasq serves the lab's guest the way a plain bridge with dnsmasq
// would: the pod interface and the tap become ports of br0, which holds
// 10.16.0.4 and fd00:10:16::4; dnsmasq hands out 10.16.0.5 (static, by the
// VM's MAC) with the pod's gateway, and fd00:10:16::5 by DHCPv6, and sends
// RAs from br0's own link-local address (so the guest's IPv6 default route
// points at the pod, not the gateway). It returns dnsmasq's PID.
func serveDnsmasq(t *testing.T, l *lab.Lab) int {
	t.Helper()
	p, dev, mtu := l.Pod, l.Spec.PodIface, strconv.Itoa(l.Spec.MTU)
	p.Run(t, "ip", "link", "set", dev, "down")
	p.Run(t, "ip", "addr", "flush", "dev", dev)
	p.Run(t, "ip", "link", "set", dev, "address", dnsmasqMAC)
	p.Run(t, "ip", "link", "add", "br0", "address", dnsmasqMAC, "mtu", mtu, "type", "bridge")
	p.Run(t, "sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0", "net.ipv6.conf.br0.accept_ra=0",
		"net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1")
	p.Run(t, "ip", "link", "set", dev, "master", "br0", "up")
	p.Run(t, "ip", "link", "set", l.Tap, "master", "br0")
	p.Run(t, "ip", "link", "set", "br0", "up")
	p.Run(t, "ip", "addr", "add", "10.16.0.4/16", "dev", "br0")
	p.Run(t, "ip", "addr", "add", "fd00:10:16::4/112", "dev", "br0", "nodad")
	dir := t.TempDir()
	cmd := p.Start(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--log-facility=-",
		"--user=root", "--group=root", "--interface=br0", "--bind-interfaces",
		"--pid-file="+dir+"/pid", "--dhcp-leasefile="+dir+"/leases", "--dhcp-authoritative", "--dhcp-rapid-commit",
		"--dhcp-range=10.16.0.5,static,255.255.0.0,12h", "--dhcp-host="+l.Spec.MAC+",10.16.0.5",
		"--dhcp-option=option:router,10.16.0.1", "--dhcp-option=option:dns-server,10.96.0.10",
		"--dhcp-option=option:mtu,"+mtu, "--dhcp-option=option6:dns-server,[fd00:10:96::a]",
		"--dhcp-range=fd00:10:16::5,fd00:10:16::5,112,12h", "--enable-ra")
	lab.WaitFor(t, 5*time.Second, "dnsmasq to start", func() bool {
		return strings.Contains(lab.Output(cmd), "DHCPv6, IP range")
	})
	return cmd.Process.Pid // ip netns exec execs dnsmasq
}
