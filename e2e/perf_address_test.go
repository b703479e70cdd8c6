package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
)

// addrClient is a guest DHCP client setup to time.
type addrClient struct {
	name   string
	v4, v6 bool // the families it configures
	start  func(t *testing.T, l *lab.Lab)
}

// addrClients are the clients timed; udhcpc6 only with a busybox that has
// it (udhcpc6Busybox).
func addrClients(busybox string) []addrClient {
	c := []addrClient{
		{"dhclient", true, true, func(t *testing.T, l *lab.Lab) { l.Dhclient(t, "-4", ""); l.Dhclient(t, "-6", "") }},
		{"dhcpcd", true, true, func(t *testing.T, l *lab.Lab) { l.Dhcpcd(t) }},
		{"udhcpc", true, false, func(t *testing.T, l *lab.Lab) { l.Udhcpc(t) }},
	}
	if busybox != "" {
		c = append(c, addrClient{"udhcpc6", false, true, func(t *testing.T, l *lab.Lab) { l.Udhcpc6(t, busybox) }})
	}
	return c
}

// udhcpc6Busybox is the busybox with udhcpc6 that make busybox-udhcpc6
// builds (busyboxUdhcpc6: DSBRIDGE_BUSYBOX overrides the path), or ""
// when there is none (Debian's busybox has no udhcpc6).
func udhcpc6Busybox() string {
	bin := os.Getenv("DSBRIDGE_BUSYBOX")
	if bin == "" {
		bin = filepath.Join("..", ".cache", "busybox", "busybox")
	}
	if abs, err := filepath.Abs(bin); err == nil && exec.Command(abs, "udhcpc6", "--help").Run() == nil {
		return abs
	}
	return ""
}

// addrServer starts a server for the guest of a fresh lab.
type addrServer struct {
	name  string
	start func(t *testing.T, l *lab.Lab) *perfServer
}

var addrServers = []addrServer{
	{"dsbridge-packet", func(t *testing.T, l *lab.Lab) *perfServer { return startServe(t, l, serveOptions{rateLimit: true}) }},
	{"dsbridge-unprivileged", func(t *testing.T, l *lab.Lab) *perfServer {
		s, _ := startSidecarTier(t, l, tierUnprivileged)
		return s
	}},
	{"dnsmasq", startDnsmasq},
}

// addrTiming is one run: when each family was configured since the link
// came up (0: not measured), and where the time went.
type addrTiming struct {
	V4, V6, Both time.Duration
	breakdown
}

// timeToAddress builds a fresh lab, starts the server, brings the guest's
// link up, starts the client, and waits for the guest to hold the pod's
// address and a default route in each family it configures. A capture on
// the VM's port says how long the server took to answer.
func timeToAddress(t *testing.T, c addrClient, srv addrServer) addrTiming {
	t.Helper()
	l := lab.NewLab(t, lab.KubeOVN)
	srv.start(t, l)
	w := watchNet(t, l)
	capture := lab.StartCapture(t, l.Pod, l.Tap, "udp or icmp6")
	var tm addrTiming
	t0 := time.Now()
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	c.start(t, l)
	for deadline := t0.Add(30 * time.Second); (c.v4 && tm.V4 == 0) || (c.v6 && tm.V6 == 0); time.Sleep(2 * time.Millisecond) {
		v4, v6 := w.configured()
		now := time.Since(t0)
		if c.v4 && v4 && tm.V4 == 0 {
			tm.V4 = now
		}
		if c.v6 && v6 && tm.V6 == 0 {
			tm.V6 = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s with %s: guest not configured within 30 s (IPv4 %v, IPv6 %v)", c.name, srv.name, tm.V4, tm.V6)
		}
	}
	tm.Both = max(tm.V4, tm.V6)
	capture.Stop(t)
	frames, err := readPcap(capture.Path())
	if err != nil {
		t.Fatal(err)
	}
	evs := classifyFrames(frames, l.VMMAC())
	tm.breakdown = breakdownOf(evs, t0, t0.Add(tm.Both))
	if os.Getenv("DSBRIDGE_PERF_EVENTS") == "1" {
		for _, e := range evs {
			t.Logf("EV %8.1fms client=%v %s %s %x", ms(e.At.Sub(t0)), e.Client, e.Proto, e.Msg, e.XID)
		}
	}
	return tm
}

// configured reports, per family, whether the guest holds the pod's
// address and a default route.
func (w *netWatch) configured() (v4, v6 bool) {
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

func (w *netWatch) hasDefault(family int) bool {
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

// sidecarTier is how the sidecar runs in a pod: whether the binding CNI
// ran first, and the sidecar's uid and capabilities (setpriv arguments).
type sidecarTier struct {
	name    string
	cni     bool
	uid     int
	setpriv []string
}

var (
	// tierFull: root with every capability (the full tier's NET_ADMIN,
	// NET_RAW, NET_BIND_SERVICE and more); KubeVirt's managedTap built the
	// plumbing, so the sidecar adopts it.
	tierFull = sidecarTier{name: "full", setpriv: []string{"--inh-caps=-all"}}
	// tierUnprivileged: KubeVirt's default posture, uid 107 without
	// capabilities, after the binding CNI's ADD.
	tierUnprivileged = sidecarTier{name: "unprivileged", cni: true, uid: 107,
		setpriv: uid107()}
)

// startSidecarTier runs `dsbridge sidecar` in l's pod as tier says, drives
// it as virt-launcher does (Info; virt-handler's managedTap plumbing;
// OnDefineDomain) and waits until it serves. It returns the server and how
// long OnDefineDomain took (pass 1: adopting the plumbing and starting the
// services).
func startSidecarTier(t *testing.T, l *lab.Lab, tier sidecarTier) (*perfServer, time.Duration) {
	t.Helper()
	if tier.cni {
		cniAdd(t, l, false)
	}
	side := launchSidecar(t, l, tier.uid, tier.setpriv, []string{"--log-level", "info"}, []string{"GODEBUG=gctrace=1"})
	s := &perfServer{name: "dsbridge-" + tier.name, pid: side.cmd.Process.Pid, out: side.out, stateDir: side.stateDir(), addr4: serverID4}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	managedtap.Build(t, l)
	domain, vmi := readFixture(t, "domain.xml"), readFixture(t, "vmi-pod.json")
	start := time.Now()
	if _, err := side.launcher.OnDefineDomain(ctx, domain, vmi); err != nil {
		t.Fatalf("OnDefineDomain: %v", err)
	}
	took := time.Since(start)
	lab.WaitFor(t, 10*time.Second, "the sidecar to serve", func() bool {
		return hasLine(s.out.String(), `"msg":"serving interface`)
	})
	return s, took
}
