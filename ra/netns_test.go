package ra

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// listen opens the packet transport inside ns, skipping when the socket
// itself is refused for lack of CAP_NET_RAW.
func listen(t *testing.T, ns *lab.NS, ifname string, f frame.Filter) *frame.PacketConn {
	t.Helper()
	var c *frame.PacketConn
	err := ns.Do(func() error {
		var err error
		c, err = frame.Listen(ifname, f)
		return err
	})
	if os.IsPermission(err) || errorsIsEPERM(err) {
		t.Skipf("packet socket refused (needs CAP_NET_RAW): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func errorsIsEPERM(err error) bool {
	var errno syscall.Errno
	for e := err; e != nil; {
		if en, ok := e.(syscall.Errno); ok {
			errno = en
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return errno == syscall.EPERM
}

// TestAdvertiserVeth is TestAdvertiserPipe over the real transport: a
// packet socket on the pod end of a veth, the guest end played by a packet
// socket too (IPv6 off on both ends, so no kernel speaks for the guest).
func TestAdvertiserVeth(t *testing.T) {
	pod, guest := lab.NewNS(t), lab.NewNS(t)
	pod.Run(t, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	guest.Run(t, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	lab.Veth(t, pod, "tap0", guest, "eth0")
	guest.Run(t, "ip", "link", "set", "eth0", "address", vmMAC.String())
	cfg := kubeOVN112()
	tap := listen(t, pod, "tap0", frame.Filter{SrcMAC: vmMAC, Kind: frame.KindICMPv6})
	vm := listen(t, guest, "eth0", frame.Filter{SrcMAC: cfg.GatewayMAC, Kind: frame.KindICMPv6})
	exerciseAdvertiser(t, cfg, tap, vm, vmMAC)
}

// podLab is the standard lab: node (the gateway), pod (eth0 and
// the VM's stand-in tap in bridge br0, no IPv6 of its own) and a guest
// whose kernel processes the RAs.
type podLab struct {
	node, pod, guest *lab.NS
	tapConn          *frame.PacketConn
}

type labSpec struct {
	gatewayMAC string
	nodeAddrs  []string // on gw0, nodad
	nodeRoutes [][]string
}

func newPodLab(t *testing.T, spec labSpec) *podLab {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace lab with a guest kernel takes ~20 s")
	}
	l := &podLab{node: lab.NewNS(t), pod: lab.NewNS(t), guest: lab.NewNS(t)}
	for _, s := range []string{
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		"net.ipv6.conf.default.accept_dad=0", "net.ipv4.ip_forward=1",
	} {
		l.node.Run(t, "sysctl", "-qw", s)
	}
	l.pod.Run(t, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	for _, s := range []string{"net.ipv6.conf.default.accept_ra=1", "net.ipv6.conf.all.forwarding=0"} {
		l.guest.Run(t, "sysctl", "-qw", s)
	}
	lab.Veth(t, l.node, "gw0", l.pod, "eth0")
	l.node.Run(t, "ip", "link", "set", "gw0", "down")
	l.node.Run(t, "ip", "link", "set", "gw0", "address", spec.gatewayMAC)
	l.node.Run(t, "ip", "link", "set", "gw0", "up")
	for _, a := range spec.nodeAddrs {
		l.node.Run(t, "ip", "addr", "add", a, "dev", "gw0", "nodad")
	}
	l.node.Run(t, "ip", "addr", "add", "fd00:10:96::a/128", "dev", "lo")
	for _, r := range spec.nodeRoutes {
		l.node.Run(t, append([]string{"ip", "-6", "route", "add"}, r...)...)
	}
	lab.Veth(t, l.pod, "tap0", l.guest, "eth0")
	// Short NUD timers, so a default router failing NUD shows within 10 s.
	l.guest.Run(t, "sysctl", "-qw", "net.ipv6.neigh.eth0.base_reachable_time_ms=1000")
	l.guest.Run(t, "sysctl", "-qw", "net.ipv6.neigh.eth0.delay_first_probe_time=1")
	l.pod.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	l.pod.Run(t, "ip", "link", "set", "eth0", "master", "br0")
	l.pod.Run(t, "ip", "link", "set", "tap0", "master", "br0")
	l.pod.Run(t, "ip", "link", "set", "br0", "up")
	l.tapConn = listen(t, l.pod, "tap0", frame.Filter{SrcMAC: vmMAC, Kind: frame.KindICMPv6})
	return l
}

// capture starts tcpdump on the node's side of the uplink; stop returns
// what it decoded.
func (l *podLab) capture(t *testing.T) (stop func() string) {
	t.Helper()
	c := lab.StartCapture(t, l.node, "gw0", "icmp6")
	return func() string { return strings.Join(c.Stop(t), "\n") }
}

// runAdvertiser serves cfg on the lab's tap until the test ends.
func (l *podLab) runAdvertiser(t *testing.T, cfg Config) *Advertiser {
	t.Helper()
	a, err := NewAdvertiser(cfg, l.tapConn, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

// bootGuest gives the guest link the VM MAC and brings it up, as a VM
// booting behind the tap, then adds the DHCPv6 address as /128.
func (l *podLab) bootGuest(t *testing.T, addr string) {
	t.Helper()
	l.guest.Run(t, "ip", "link", "set", "eth0", "down")
	l.guest.Run(t, "ip", "link", "set", "eth0", "address", vmMAC.String())
	l.guest.Run(t, "ip", "link", "set", "eth0", "up")
	l.guest.Run(t, "ip", "addr", "add", addr, "dev", "eth0", "nodad")
}

// waitRoute polls the guest's IPv6 routes until want matches.
func (l *podLab) waitRoute(t *testing.T, want *regexp.Regexp) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out = l.guest.Run(t, "ip", "-6", "route", "show", "dev", "eth0")
		if want.MatchString(out) {
			return out
		}
	}
	t.Fatalf("guest routes never matched %q:\n%s", want, out)
	return ""
}

// pingAll pings dst from the guest count times, 1 s apart, and fails unless
// every one is answered.
func (l *podLab) pingAll(t *testing.T, dst string, count int) {
	t.Helper()
	out, err := l.guest.Exec("ping", "-6", "-n", "-c", fmt.Sprint(count), "-i", "1", "-W", "2", dst)
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d packets transmitted, %d received", count, count)) {
		t.Errorf("ping -6 %s from the guest: %v\n%s", dst, err, out)
	}
}

// checkNoLeak fails if the node's capture holds an RA: the node sends none
// itself (accept_ra=0, no radvd), so any RA there came out of the pod.
// The echo requests prove the capture saw the guest's traffic.
func checkNoLeak(t *testing.T, capture string) {
	t.Helper()
	if !strings.Contains(capture, "echo request") {
		t.Errorf("capture on the node saw none of the guest's pings: is it working?\n%s", capture)
	}
	if strings.Contains(capture, "router advertisement") {
		t.Errorf("router advertisement leaked to the node:\n%s", capture)
	}
}

func TestGuestKernelKubeOVN(t *testing.T) {
	l := newPodLab(t, labSpec{
		gatewayMAC: "0a:58:0a:10:00:01",
		nodeAddrs:  []string{"10.16.0.1/16", "fd00:10:16::1/112"},
	})
	stop := l.capture(t)
	cfg := kubeOVN112()
	a := l.runAdvertiser(t, cfg)
	l.bootGuest(t, "fd00:10:16::5/128")

	l.waitRoute(t, regexp.MustCompile(`(?m)^default via fe80::858:aff:fe10:1 proto ra metric \d+ expires \d+sec`))
	// The guest's address is a /128, so an on-link /112 can only come from the PIO.
	l.waitRoute(t, regexp.MustCompile(`(?m)^fd00:10:16::/112 proto \w+ metric \d+`))
	if addrs := l.guest.Run(t, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"); strings.Count(addrs, "inet6 ") != 1 || !strings.Contains(addrs, "inet6 fd00:10:16::5/128") {
		t.Errorf("guest global addresses, want only the DHCPv6 one (A=0: no SLAAC):\n%s", addrs)
	}
	if mtu := strings.TrimSpace(l.guest.Run(t, "sysctl", "-n", "net.ipv6.conf.eth0.mtu")); mtu != "1400" {
		t.Errorf("guest IPv6 MTU = %s, want 1400", mtu)
	}
	l.pingAll(t, "fd00:10:16::1", 3)
	l.pingAll(t, "fd00:10:96::a", 11) // beyond the gateway, 10 s with NUD every few seconds
	if out := l.guest.Run(t, "ip", "-6", "route", "show", "default"); !strings.Contains(out, "default via fe80::858:aff:fe10:1") {
		t.Errorf("default route gone after the pings (NUD?):\n%s", out)
	}

	rd := strings.Join(strings.Fields(l.guest.Run(t, "rdisc6", "-1", "-w", "2000", "eth0")), " ")
	for _, want := range []string{
		"Stateful address conf. : Yes",
		"Stateful other conf. : Yes",
		"Router lifetime : 1800 (0x00000708) seconds",
		"Source link-layer address: 0A:58:0A:10:00:01",
		"MTU : 1400 bytes (valid)",
		"Prefix : fd00:10:16::/112 On-link : Yes Autonomous address conf.: No",
		"Recursive DNS server : fd00:10:96::a DNS server lifetime : 1800 (0x00000708) seconds",
		"DNS search list : default.svc.cluster.local svc.cluster.local cluster.local DNS search list lifetime: 1800 (0x00000708) seconds",
		"from fe80::858:aff:fe10:1",
	} {
		if !strings.Contains(rd, want) {
			t.Errorf("rdisc6 output lacks %q:\n%s", want, rd)
		}
	}
	checkNoLeak(t, stop())
	if s := a.Stats(); s.Multicast == 0 || s.Unicast == 0 || s.Solicitations == 0 || s.WriteErrors != 0 {
		t.Errorf("Stats = %+v, want multicast, unicast and solicitations, no write errors", s)
	}
}

func TestGuestKernelCalico(t *testing.T) {
	l := newPodLab(t, labSpec{
		gatewayMAC: "ee:ee:ee:ee:ee:ee",
		nodeRoutes: [][]string{{"fd00:10:244::7/128", "dev", "gw0"}},
	})
	stop := l.capture(t)
	cfg := Config{
		GatewayLLA: calicoGatewayLLA,
		GatewayMAC: calicoGatewayMAC,
		Prefix:     netip.MustParsePrefix("fd00:10:244::7/128"),
		MTU:        1480,
		DNS:        []netip.Addr{netip.MustParseAddr("fd00:10:96::a")},
		VMMAC:      vmMAC,
	}
	l.runAdvertiser(t, cfg)
	l.bootGuest(t, "fd00:10:244::7/128")

	routes := l.waitRoute(t, regexp.MustCompile(`(?m)^default via fe80::ecee:eeff:feee:eeee proto ra`))
	if regexp.MustCompile(`(?m)^fd00:\S+ proto ra`).MatchString(routes) {
		t.Errorf("a prefix route from an RA for a /128 pod:\n%s", routes)
	}
	l.pingAll(t, "fd00:10:96::a", 11)
	if out := l.guest.Run(t, "ip", "-6", "route", "show", "default"); !strings.Contains(out, "default via fe80::ecee:eeff:feee:eeee") {
		t.Errorf("default route gone after the pings (NUD?):\n%s", out)
	}
	checkNoLeak(t, stop())
}

// Flags-only RAs next to the cluster's own (played by a gateway-mode
// advertiser): the guest keeps the cluster's default route, because the
// flags-only source is not the gateway's address. The control row sends
// one RA with router lifetime 0 from the gateway's own address, which is
// what deletes the route on this kernel.
func TestGuestKernelFlagsOnlyKeepsUpstreamRoute(t *testing.T) {
	l := newPodLab(t, labSpec{gatewayMAC: "0a:58:0a:10:00:01", nodeAddrs: []string{"fd00:10:16::1/112"}})
	upstream := kubeOVN112()
	l.runAdvertiser(t, upstream)
	l.bootGuest(t, "fd00:10:16::5/128")
	defaultRoute := regexp.MustCompile(`(?m)^default via fe80::858:aff:fe10:1 proto ra`)
	l.waitRoute(t, defaultRoute)

	flags := upstream
	flags.Mode = ModeFlagsOnly
	fo, err := NewAdvertiser(flags, l.tapConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.tapConn.WriteFrame(fo.multicast); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if out := l.guest.Run(t, "ip", "-6", "route", "show", "dev", "eth0"); !defaultRoute.MatchString(out) {
		t.Fatalf("flags-only RAs removed the upstream default route:\n%s", out)
	}

	naive := frame.AppendICMP6(nil, frame.ICMP6{
		Eth: frame.Ethernet{Dst: allNodesMAC, Src: upstream.GatewayMAC},
		Src: upstream.GatewayLLA, Dst: allNodes, HopLimit: 255, Payload: fo.body,
	})
	if err := l.tapConn.WriteFrame(naive); err != nil {
		t.Fatal(err)
	}
	// The upstream advertiser keeps running and may put the route back with
	// its next RA, so look for the route's removal, not at one moment.
	var out string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out = l.guest.Run(t, "ip", "-6", "route", "show", "dev", "eth0"); !defaultRoute.MatchString(out) {
			return
		}
	}
	t.Errorf("control: lifetime 0 from the gateway's own address left the default route; the test cannot tell:\n%s", out)
}
