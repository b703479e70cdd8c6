package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/e2e/lab/managedtap"
)

// unprivilegedPod is the lab pod as the unprivileged tier runs it: the
// binding CNI's ADD on the pristine pod, then virt-handler's managedTap
// layout (bridge k6t-eth0 with its link-local address, eth0 renamed
// eth0-nic with the bridge's MAC and learning off, the guest's veth in the
// tap's place, a dummy eth0 with the pod's MAC and addresses). It returns
// the CNI invocation (for DEL) and the bridge's MAC.
func unprivilegedPod(t *testing.T, l *lab.Lab) (invocation, frame.MAC) {
	t.Helper()
	inv := invocation{Command: "ADD", ContainerID: lab.RandName("ctr"), Netns: l.Pod.Path(), IfName: "dsb0",
		Conf: confJSON(t, t.TempDir(), nil, logicNet("default"))}
	mustRun(t, inv)
	return inv, managedtap.Build(t, l)
}

// sendFrames writes raw frames on dev in ns (AF_PACKET, root).
func sendFrames(t *testing.T, ns *lab.NS, dev string, frames ...[]byte) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send frames on %s: %v", dev, err)
	}
}

// neighbourFrames are what a neighbour on the uplink side sends to reach
// the pod's DHCP sockets: broadcast, unicast to the bridge's MAC and the
// VM's address or the server identifier, multicast to ff02::1:2, unicast
// to the bridge's link-local address, a relay from a global address; and
// an RS. None may arrive.
func neighbourFrames(t *testing.T, l *lab.Lab, bridge frame.MAC) [][]byte {
	t.Helper()
	node, vm := mac(t, l.Spec.NodeMAC), l.VMMAC()
	disc, err := dhcpv4.NewDiscovery(vm.HardwareAddr())
	if err != nil {
		t.Fatal(err)
	}
	sol, err := dhcpv6.NewSolicit(vm.HardwareAddr())
	if err != nil {
		t.Fatal(err)
	}
	relay, err := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.ParseIP("fd00:10:16::1"), net.ParseIP("fe80::1"))
	if err != nil {
		t.Fatal(err)
	}
	gwLLA, bridgeLLA := mustAddr(l.GatewayLLA()), frame.LinkLocalFromMAC(bridge)
	v4 := func(dst frame.MAC, src, to string, sport uint16) []byte {
		return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: dst, Src: node}, Src: mustAddr(src), Dst: mustAddr(to),
			SrcPort: sport, DstPort: 67, TTL: 64, Payload: disc.ToBytes()})
	}
	v6 := func(dst frame.MAC, src, to string, sport uint16, payload []byte) []byte {
		return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: dst, Src: node}, Src: mustAddr(src), Dst: mustAddr(to),
			SrcPort: sport, DstPort: 547, HopLimit: 64, Payload: payload})
	}
	group := "ff02::1:2"
	return [][]byte{
		v4(frame.Broadcast, "0.0.0.0", "255.255.255.255", 68),
		v4(bridge, "10.16.0.1", "10.16.0.5", 68),
		v4(bridge, "10.16.0.1", "169.254.75.10", 67),
		v6(frame.MulticastMAC(mustAddr(group)), gwLLA.String(), group, 546, sol.ToBytes()),
		v6(bridge, gwLLA.String(), bridgeLLA.String(), 546, sol.ToBytes()),
		v6(frame.MulticastMAC(mustAddr(group)), "fd00:10:16::1", group, 547, relay.ToBytes()),
		frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(mustAddr("ff02::2")), Src: node},
			Src: gwLLA, Dst: mustAddr("ff02::2"), HopLimit: 255, Payload: []byte{133, 0, 0, 0, 0, 0, 0, 0}}),
	}
}

func mac(t *testing.T, s string) frame.MAC {
	t.Helper()
	m, err := frame.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnprivilegedGuard runs the unprivileged tier's transport (the
// stand-ins as uid 107 without capabilities) behind the CNI's uplink
// programs: a neighbour on the uplink reaches neither socket; a real guest
// gets both families and renews from its own address to the server
// identifier; an INFORM from the guest's address, unicast and broadcast,
// reaches the socket; the gateway sees nothing the pod stack sends for
// dsbridge; DEL takes the programs away.
func TestUnprivilegedGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("a real guest renews a 20 s lease")
	}
	l := lab.NewLab(t, lab.KubeOVN)
	inv, bridge := unprivilegedPod(t, l)
	gw := lab.StartCapture(t, l.Node, l.NodeIf, fmt.Sprintf("ether src %s or (ether src %s and arp and arp[24:2] = 0xa9fe and arp[26] = 0x4b)", bridge, l.Spec.MAC))
	toVM := lab.StartCapture(t, l.Pod, l.Tap, "udp src port 67")
	v4 := startStandIn(t, l, "v4 k6t-eth0 20 yes")
	v6 := startStandIn(t, l, "v6 k6t-eth0")

	for range 3 {
		sendFrames(t, l.Node, l.NodeIf, neighbourFrames(t, l, bridge)...)
	}
	time.Sleep(time.Second)
	if got := append(v4.all(), v6.all()...); len(got) > 0 {
		t.Errorf("the neighbour's requests reached the pod's sockets:\n%s", strings.Join(got, "\n"))
	}

	c4 := l.Dhclient(t, "-4", "")
	c6 := l.Dhclient(t, "-6", "")
	c4.Env(t, 15*time.Second, "BOUND")
	c6.Env(t, 15*time.Second, "BOUND6")
	if got := v4.matching("v4 DISCOVER from=0.0.0.0:68 to=255.255.255.255 if="); len(got) == 0 {
		t.Errorf("the guest's DISCOVER did not reach the socket")
	}
	renew := c4.Next(t, 20*time.Second, "RENEW", "REBIND")
	if renew["reason"] != "RENEW" {
		t.Errorf("dhclient's renewal ended in %s, want RENEW", renew["reason"])
	}
	if got := v4.matching("v4 REQUEST from=10.16.0.5:68 to=169.254.75.10 if=", "ciaddr=10.16.0.5"); len(got) == 0 {
		t.Errorf("no Renew from 10.16.0.5 to 169.254.75.10 reached the socket:\n%s", strings.Join(v4.all(), "\n"))
	}
	inform(t, l, "169.254.75.10")
	inform(t, l, "255.255.255.255")
	lab.WaitFor(t, 5*time.Second, "both INFORMs at the socket", func() bool {
		return len(v4.matching("v4 INFORM from=10.16.0.5:", "to=169.254.75.10")) > 0 &&
			len(v4.matching("v4 INFORM from=10.16.0.5:", "to=255.255.255.255")) > 0
	})

	// The replies the VM got came from the server identifier, never from
	// its own address; it reached the server identifier at the bridge.
	stopCapture(t, toVM)
	replies := toVM.Read(t, "-n")
	if len(replies) < 4 {
		t.Errorf("%d DHCPv4 replies reached the VM, want at least OFFER, ACK, ACK to the Renew, ACK to the INFORMs", len(replies))
	}
	for _, p := range replies {
		if !strings.Contains(p, " 169.254.75.10.67 > ") {
			t.Errorf("a reply to the VM not from 169.254.75.10: %s", p)
		}
	}
	if got := l.Guest.Run(t, "ip", "neigh", "show", "169.254.75.10", "dev", l.GuestIf); !strings.Contains(got, "lladdr "+bridge.String()) {
		t.Errorf("the guest's neighbour entry for 169.254.75.10 is %q, want the bridge's MAC %s", got, bridge)
	}
	// A probe the guard lets pass proves the capture sees the bridge's
	// frames: a UDP datagram from the bridge's link-local to all nodes,
	// port 9 (discard), which nothing answers (RFC 4443 §2.4: no error
	// for a multicast destination).
	err := l.Pod.Do(func() error {
		c, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.ParseIP("ff02::1"), Port: 9, Zone: "k6t-eth0"})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("capture probe"))
		return err
	})
	if err != nil {
		t.Fatalf("capture probe: %v", err)
	}
	probes := 0
	for _, p := range stopCapture(t, gw) {
		switch {
		case strings.Contains(p, "ff02::1.9: "):
			probes++
		case !kubeVirtsOwn(p):
			t.Errorf("reached the gateway: %s", p)
		}
	}
	if probes == 0 {
		t.Error("the gateway did not see the bridge's probe to ff02::1 port 9: is the capture working?")
	}
	inv.Command = "DEL"
	mustRun(t, inv)
	if diff := tcFilters(t, l.Pod, "eth0-nic"); diff["egress"] != "" || diff["ingress"] != "" {
		t.Errorf("filters on eth0-nic after DEL: %v", diff)
	}
	// Control: without the programs the neighbour reaches the socket.
	before := len(v4.matching("v4 DISCOVER"))
	sendFrames(t, l.Node, l.NodeIf, neighbourFrames(t, l, bridge)...)
	lab.WaitFor(t, 5*time.Second, "the neighbour's DISCOVER at the unguarded socket", func() bool {
		return len(v4.matching("v4 DISCOVER")) > before
	})
}

// kubeVirtsOwn reports whether a frame from the bridge's MAC at the gateway
// is one KubeVirt's bridge sends by itself: its RS, MLD reports for groups
// other than ff02::1:2 (its solicited-node group).
func kubeVirtsOwn(p string) bool {
	if strings.Contains(p, "ff02::1:2,") || strings.Contains(p, "ff02::1:2 ") || strings.Contains(p, "ff02::1:2]") {
		return false
	}
	return strings.Contains(p, "router solicitation") || strings.Contains(p, "multicast listener report")
}

// inform sends a DHCPINFORM from the guest's address to to:67 with a UDP
// socket in the guest (its kernel resolves the server identifier by ARP).
func inform(t *testing.T, l *lab.Lab, to string) {
	t.Helper()
	msg, err := dhcpv4.NewInform(l.VMMAC().HardwareAddr(), net.IPv4(10, 16, 0, 5))
	if err != nil {
		t.Fatal(err)
	}
	err = l.Guest.Do(func() error {
		c, err := net.ListenPacket("udp4", "10.16.0.5:0")
		if err != nil {
			return err
		}
		defer c.Close()
		raw, _ := c.(*net.UDPConn).SyscallConn()
		raw.Control(func(fd uintptr) { setBroadcast(fd) })
		_, err = c.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: net.ParseIP(to), Port: 67})
		return err
	})
	if err != nil {
		t.Fatalf("INFORM to %s: %v", to, err)
	}
}

// stopCapture stops c after tcpdump's buffer timeout.
func stopCapture(t *testing.T, c *lab.Capture) []string {
	t.Helper()
	time.Sleep(1200 * time.Millisecond)
	return c.Stop(t)
}
