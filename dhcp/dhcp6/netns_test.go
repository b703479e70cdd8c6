package dhcp6

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// nodeMAC is lab.KubeOVN's gateway MAC: a host on the uplink.
var nodeMAC = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x01}

// newBridgedLab is lab.KubeOVN with the pod's eth0 and tap0 in bridge br0,
// as bridge binding plumbs them.
func newBridgedLab(t *testing.T) *lab.Lab {
	t.Helper()
	l := lab.NewLab(t, lab.KubeOVN)
	if l.VMMAC() != vmMAC {
		t.Fatalf("lab VM MAC %s, tests assume %s", l.VMMAC(), vmMAC)
	}
	p := l.Pod
	// As in KubeVirt, the VM takes the pod's MAC and the pod interface gets
	// another one, or the bridge would keep the VM's frames for itself.
	p.Run(t, "ip", "link", "set", l.Spec.PodIface, "address", "02:00:00:00:00:02")
	p.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	p.Run(t, "sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0")
	p.Run(t, "ip", "link", "set", l.Spec.PodIface, "master", "br0")
	p.Run(t, "ip", "link", "set", l.Tap, "master", "br0")
	p.Run(t, "ip", "link", "set", "br0", "up")
	// Checksum offload stays on: the guest's frames reach the packet
	// socket CHECKSUM_PARTIAL, as a virtio guest's do.
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "up")
	waitLinkLocal(t, l.Guest, l.GuestIf)
	waitLinkLocal(t, l.Node, l.NodeIf)
	waitLinkLocal(t, l.Pod, "br0")
	return l
}

// waitLinkLocal waits until ifname has a non-tentative link-local address
// (dhclient -6 gives up at once while it is tentative).
func waitLinkLocal(t *testing.T, n *lab.NS, ifname string) {
	t.Helper()
	lab.WaitFor(t, 10*time.Second, "a link-local address on "+ifname, func() bool {
		out := n.Run(t, "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
		return strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative")
	})
}

// recorder is a frame.Conn that keeps the DHCPv6 messages it sends.
type recorder struct {
	frame.Conn
	mu      sync.Mutex
	replies []*dhcpv6.Message
}

func (r *recorder) WriteFrame(b []byte) error {
	if u, err := frame.ParseUDP6(b); err == nil {
		if d, err := dhcpv6.FromBytes(u.Payload); err == nil {
			if m, err := d.GetInnerMessage(); err == nil {
				r.mu.Lock()
				r.replies = append(r.replies, m)
				r.mu.Unlock()
			}
		}
	}
	return r.Conn.WriteFrame(b)
}

func (r *recorder) sent() []*dhcpv6.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*dhcpv6.Message(nil), r.replies...)
}

// startPacket serves the guest from the tap with the frame transport.
func startPacket(t *testing.T, l *lab.Lab) *recorder {
	t.Helper()
	var conn *frame.PacketConn
	err := l.Pod.Do(func() error {
		var err error
		conn, err = frame.Listen(l.Tap, frame.Filter{SrcMAC: vmMAC, Kind: frame.KindDHCPv6})
		return err
	})
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("packet sockets need CAP_NET_RAW: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: conn}
	lab.RunUntilCleanup(t, NewPacketServer(newTestHandler(t), rec, discard()).Run)
	return rec
}

// startUDP serves from a UDP socket on br0.
func startUDP(t *testing.T, l *lab.Lab) {
	t.Helper()
	var s *serve.Server
	if err := l.Pod.Do(func() error {
		var err error
		s, err = NewUDPServer(newTestHandler(t), "br0", false, discard())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	lab.RunUntilCleanup(t, s.Run)
}

// probe sends one Solicit (DUID-LL of mac) from ifname in n and reports
// whether any DHCPv6 message came back within wait.
func probe(t *testing.T, n *lab.NS, ifname string, mac frame.MAC, wait time.Duration) bool {
	t.Helper()
	var conn *net.UDPConn
	lla := &net.UDPAddr{IP: net.IP(frame.LinkLocalFromMAC(mac).AsSlice()), Port: frame.PortDHCPv6Client, Zone: ifname}
	if err := n.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp6", lla)
		return err
	}); err != nil {
		t.Fatalf("client socket in %s: %v", n.Name, err)
	}
	defer conn.Close()
	m := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeSolicit, TransactionID: tid}
	m.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac.HardwareAddr()}))
	m.AddOption(ia(iaid))
	dst := &net.UDPAddr{IP: net.ParseIP("ff02::1:2"), Port: frame.PortDHCPv6Server, Zone: ifname}
	if _, err := conn.WriteToUDP(m.ToBytes(), dst); err != nil {
		t.Fatalf("send Solicit from %s: %v", n.Name, err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	nr, _, err := conn.ReadFromUDP(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatalf("receive in %s: %v", n.Name, err)
	}
	if _, err := dhcpv6.FromBytes(buf[:nr]); err != nil {
		t.Fatalf("reply in %s does not parse: %v", n.Name, err)
	}
	return true
}

func statusText(m *dhcpv6.Message) string {
	if s, ok := m.GetOneOption(dhcpv6.OptionStatusCode).(*dhcpv6.OptStatusCode); ok {
		return s.StatusCode.String()
	}
	return "-"
}

func TestNetnsPacketServer(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test with real clients; skipped in -short")
	}
	l := newBridgedLab(t)
	leaks := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	requests := lab.StartCapture(t, l.Node, l.NodeIf, "udp dst port 547")
	rec := startPacket(t, l)

	// The guest row is the control: the same probe that gets nothing on
	// the uplink gets an answer from the VM's side.
	got := []bool{probe(t, l.Node, l.NodeIf, nodeMAC, 2*time.Second), probe(t, l.Guest, l.GuestIf, vmMAC, 2*time.Second)}
	if diff := cmp.Diff([]bool{false, true}, got); diff != "" {
		t.Errorf("replies to uplink host, guest (-want +got):\n%s", diff)
	}

	dir := t.TempDir()
	c := l.Dhclient(t, "-6", dir)
	env := c.Next(t, 20*time.Second, "BOUND6")
	if diff := cmp.Diff("fd00:10:16::5", env["new_ip6_address"]); diff != "" {
		t.Errorf("dhclient address (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"fd00:10:16::5/128"}, lab.Addrs(t, l.Guest, l.GuestIf)); diff != "" {
		t.Errorf("guest addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("fd00:10:96::a", env["new_dhcp6_name_servers"]); diff != "" {
		t.Errorf("dhclient name servers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("default.svc.cluster.local. svc.cluster.local. cluster.local.", env["new_dhcp6_domain_search"]); diff != "" {
		t.Errorf("dhclient search list (-want +got):\n%s", diff)
	}

	// Restarted with its lease file, dhclient confirms (RFC 8415 §18.2.3).
	c.Kill()
	before := len(rec.sent())
	c = l.Dhclient(t, "-6", dir)
	if env := c.Next(t, 20*time.Second, "REBOOT6", "BOUND6"); env["new_ip6_address"] != "fd00:10:16::5" {
		t.Errorf("after the restart dhclient reported %s %q, want fd00:10:16::5", env["reason"], env["new_ip6_address"])
	}
	var answers []string
	for _, m := range rec.sent()[before:] {
		answers = append(answers, m.MessageType.String()+" "+statusText(m))
	}
	if len(answers) == 0 || answers[0] != "REPLY Success" {
		t.Errorf("replies after the restart = %q, want a Reply with Success first", answers)
	}

	if pkts := leaks.Stop(t); len(pkts) != 0 {
		t.Errorf("the uplink saw %d replies:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
	if pkts := requests.Stop(t); len(pkts) == 0 {
		t.Errorf("the uplink capture saw not even the guest's requests: it proves nothing")
	}
}

func TestNetnsUDPServer(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test with real clients; skipped in -short")
	}
	l := newBridgedLab(t)
	leaks := lab.StartCapture(t, l.Node, l.NodeIf, lab.LeakFilter)
	startUDP(t, l)
	got := []bool{probe(t, l.Node, l.NodeIf, nodeMAC, 2*time.Second), probe(t, l.Guest, l.GuestIf, vmMAC, 2*time.Second)}
	if diff := cmp.Diff([]bool{false, true}, got); diff != "" {
		t.Errorf("replies to uplink host, guest (-want +got):\n%s", diff)
	}
	env := l.Dhclient(t, "-6", t.TempDir()).Next(t, 20*time.Second, "BOUND6")
	if diff := cmp.Diff("fd00:10:16::5", env["new_ip6_address"]); diff != "" {
		t.Errorf("dhclient address (-want +got):\n%s", diff)
	}
	if pkts := leaks.Stop(t); len(pkts) != 0 {
		t.Errorf("the uplink saw %d replies:\n%s", len(pkts), strings.Join(pkts, "\n"))
	}
}

func TestUDPServerPortInUse(t *testing.T) {
	n := lab.NewNS(t)
	n.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	n.Run(t, "ip", "link", "set", "br0", "up")
	var first *serve.Server
	err := n.Do(func() error {
		var err error
		if first, err = NewUDPServer(newTestHandler(t), "br0", false, discard()); err != nil {
			return err
		}
		_, err = NewUDPServer(newTestHandler(t), "br0", false, discard())
		return err
	})
	if first != nil {
		first.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "547") || !strings.Contains(err.Error(), "another DHCPv6 server") {
		t.Errorf("second NewUDPServer = %v, want an error naming port 547 and another server", err)
	}
}

// TestUDPServerUnprivileged binds port 547 as an unprivileged user (the
// test binary re-run by setpriv in a namespace that keeps ports below 1024
// privileged): the error must say how to fix it.
func TestUDPServerUnprivileged(t *testing.T) {
	if os.Getenv("DSB_UNPRIV_CHILD") == "1" {
		_, err := NewUDPServer(newTestHandler(t), "lo", false, discard())
		fmt.Printf("ERROR: %v\n", err)
		return
	}
	n := lab.NewNS(t)
	n.Run(t, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=1024")
	dir, err := os.MkdirTemp("", "dsb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "dhcp6.test")
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, _ := n.Exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		"--bounding-set=-all", "env", "DSB_UNPRIV_CHILD=1", bin, "-test.run=^TestUDPServerUnprivileged$")
	for _, want := range []string{"permission denied", "net.ipv4.ip_unprivileged_port_start", "binding CNI"} {
		if !strings.Contains(out, want) {
			t.Errorf("unprivileged NewUDPServer said:\n%s\nwant it to mention %q", out, want)
		}
	}
}
