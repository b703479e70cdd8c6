package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// The stand-in servers play the sidecar's UDP transport in the
// unprivileged tier: the test binary runs itself again in the pod, as uid
// 107 with no capability (setpriv), in TestStandIn. The DHCPv4 one binds
// 0.0.0.0:67 with IP_PKTINFO, answers only what arrived on the bridge, and
// replies by broadcast to 255.255.255.255:68 through the bridge from the
// server identifier (ipi_spec_dst); the DHCPv6 one binds [::]:547, joins
// ff02::1:2 on the bridge and replies to the client's source. Each prints
// one line per datagram received, on any interface, and per reply sent.

// standInEnv selects the stand-in: "v4 <bridge> <lease seconds> <renew>"
// or "v6 <bridge>"; renew "no" leaves unicast Renews unanswered and sets
// T1 and T2 (RFC 2132 §9.11, §9.12) to a quarter and half of the lease, so
// that the client rebinds well before its lease expires.
const standInEnv = "DSB_STANDIN"

// Lab addresses the stand-ins hand out.
var (
	standInSID    = net.IPv4(169, 254, 75, 10).To4()
	standInAddr4  = net.IPv4(10, 16, 0, 5).To4()
	standInGW4    = net.IPv4(10, 16, 0, 1).To4()
	standInAddr6  = net.ParseIP("fd00:10:16::5")
	standInServer = &dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0xd5, 0xb0, 1}}
)

func TestStandIn(t *testing.T) {
	spec := os.Getenv(standInEnv)
	if spec == "" {
		t.Skip("runs only as a stand-in server started by the lab tests")
	}
	f := strings.Fields(spec)
	ifi, err := net.InterfaceByName(f[1])
	if err != nil {
		t.Fatal(err)
	}
	if f[0] == "v4" {
		var lease int
		fmt.Sscan(f[2], &lease)
		err = serveV4(ifi, time.Duration(lease)*time.Second, f[3] != "no")
	} else {
		err = serveV6(ifi)
	}
	t.Fatal(err)
}

func serveV4(ifi *net.Interface, lease time.Duration, renew bool) error {
	c, err := net.ListenPacket("udp4", "0.0.0.0:67")
	if err != nil {
		return err
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		return err
	}
	raw, _ := c.(*net.UDPConn).SyscallConn()
	raw.Control(func(fd uintptr) { setBroadcast(fd) })
	fmt.Println("READY")
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		fmt.Printf("v4 %s from=%s to=%s if=%d ciaddr=%s\n", req.MessageType(), src, cm.Dst, cm.IfIndex, req.ClientIPAddr)
		if cm.IfIndex != ifi.Index || (!renew && cm.Dst.Equal(standInSID)) {
			continue
		}
		reply := replyV4(req, lease, !renew)
		if reply == nil {
			continue
		}
		out := &ipv4.ControlMessage{IfIndex: ifi.Index, Src: standInSID}
		if _, err := pc.WriteTo(reply.ToBytes(), out, &net.UDPAddr{IP: net.IPv4bcast, Port: 68}); err != nil {
			fmt.Printf("v4 send failed: %v\n", err)
			continue
		}
		fmt.Printf("v4 sent %s\n", reply.MessageType())
	}
}

// replyV4 is the OFFER, ACK or INFORM ACK for req (RFC 2131 §4.3), with
// option 121 making the server identifier on-link (RFC 3442).
func replyV4(req *dhcpv4.DHCPv4, lease time.Duration, early bool) *dhcpv4.DHCPv4 {
	typ := dhcpv4.MessageTypeAck
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	default:
		return nil
	}
	routes := dhcpv4.OptClasslessStaticRoute(
		&dhcpv4.Route{Dest: &net.IPNet{IP: standInSID, Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero},
		&dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: standInGW4})
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithServerIP(standInSID),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(standInSID)), dhcpv4.WithNetmask(net.CIDRMask(16, 32)),
		dhcpv4.WithRouter(standInGW4), dhcpv4.WithOption(routes)}
	// ciaddr from the request (RFC 2131 table 3): the egress program makes
	// the unicast copy for a client with an address from it.
	mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	if req.MessageType() != dhcpv4.MessageTypeInform {
		mods = append(mods, dhcpv4.WithYourIP(standInAddr4), dhcpv4.WithLeaseTime(uint32(lease/time.Second)))
	}
	if early {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lease/4)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lease/2)))
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil
	}
	return reply
}

func serveV6(ifi *net.Interface) error {
	c, err := net.ListenPacket("udp6", "[::]:547")
	if err != nil {
		return err
	}
	pc := ipv6.NewPacketConn(c)
	if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: net.ParseIP("ff02::1:2")}); err != nil {
		return err
	}
	if err := pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true); err != nil {
		return err
	}
	fmt.Println("READY")
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		m, err := dhcpv6.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		fmt.Printf("v6 %s from=%s if=%d\n", m.Type(), src, cm.IfIndex)
		msg, ok := m.(*dhcpv6.Message)
		if !ok || cm.IfIndex != ifi.Index {
			continue
		}
		reply := replyV6(msg)
		if reply == nil {
			continue
		}
		if _, err := pc.WriteTo(reply.ToBytes(), &ipv6.ControlMessage{IfIndex: ifi.Index}, src); err != nil {
			fmt.Printf("v6 send failed: %v\n", err)
			continue
		}
		fmt.Printf("v6 sent %s\n", reply.Type())
	}
}

// replyV6 is the Advertise or Reply for msg (RFC 8415 §18.3).
func replyV6(msg *dhcpv6.Message) dhcpv6.DHCPv6 {
	ia := msg.Options.OneIANA()
	if ia == nil {
		return nil
	}
	mods := []dhcpv6.Modifier{dhcpv6.WithServerID(standInServer), dhcpv6.WithPreference(255),
		dhcpv6.WithIANA(dhcpv6.OptIAAddress{IPv6Addr: standInAddr6, PreferredLifetime: time.Hour, ValidLifetime: time.Hour})}
	var (
		reply *dhcpv6.Message
		err   error
	)
	switch msg.Type() {
	case dhcpv6.MessageTypeSolicit:
		reply, err = dhcpv6.NewAdvertiseFromSolicit(msg, mods...)
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		reply, err = dhcpv6.NewReplyFromMessage(msg, mods...)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	reply.Options.OneIANA().IaId = ia.IaId
	return reply
}

// standIn is a running stand-in server and the lines it printed.
type standIn struct {
	mu    sync.Mutex
	lines []string // one per datagram received or reply sent
	other []string // test output
}

// startStandIn runs the stand-in spec in the pod as uid 107 with no
// capability and waits until it serves.
func startStandIn(t *testing.T, l *lab.Lab, spec string) *standIn {
	t.Helper()
	bin := worldReadableCopy(t, os.Args[0])
	cmd := exec.Command("ip", "netns", "exec", l.Pod.Name, "setpriv", "--reuid", "107", "--regid", "107", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", bin, "-test.run=^TestStandIn$", "-test.v")
	cmd.Env = append(os.Environ(), standInEnv+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &standIn{}
	ready := make(chan struct{})
	go s.read(out, ready)
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID
		_ = cmd.Wait()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("stand-in %q printed:\n%s\n%s", spec, strings.Join(s.lines, "\n"), strings.Join(s.other, "\n"))
			s.mu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("stand-in %q did not start:\n%s", spec, strings.Join(s.all(), "\n"))
	}
	return s
}

func (s *standIn) read(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text() == "READY" {
			close(ready)
			continue
		}
		s.mu.Lock()
		if strings.HasPrefix(sc.Text(), "v4 ") || strings.HasPrefix(sc.Text(), "v6 ") {
			s.lines = append(s.lines, sc.Text())
		} else {
			s.other = append(s.other, sc.Text())
		}
		s.mu.Unlock()
	}
}

func (s *standIn) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.lines...)
}

// matching returns the lines holding every one of parts.
func (s *standIn) matching(parts ...string) []string {
	var out []string
	for _, l := range s.all() {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// worldReadableCopy copies the test binary where uid 107 can run it.
func worldReadableCopy(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsbstandin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "standin")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// mustAddr parses an address for the lab's frames.
func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
