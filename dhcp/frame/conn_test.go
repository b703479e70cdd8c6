package frame_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

var (
	vmMAC  = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	svcMAC = frame.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
)

// pair builds two namespaces joined by a veth: "tap0" in srv (where the
// packet socket listens, as on a VM's tap) and "eth0" in guest.
func pair(t lab.T) (srv, guest *lab.NS, guestMAC frame.MAC) {
	t.Helper()
	srv, guest = lab.NewNS(t), lab.NewNS(t)
	lab.Veth(t, srv, "tap0", guest, "eth0")
	guest.Run(t, "ip", "link", "set", "eth0", "address", vmMAC.String())
	guest.Run(t, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	guest.Run(t, "ip", "addr", "add", "10.16.0.5/16", "dev", "eth0")
	guest.Run(t, "ip", "addr", "add", "fe80::858:aff:fe10:5/64", "dev", "eth0", "nodad")
	return srv, guest, vmMAC
}

func listenIn(t lab.T, ns *lab.NS, f frame.Filter) *frame.PacketConn {
	t.Helper()
	var c *frame.PacketConn
	err := ns.Do(func() (err error) {
		c, err = frame.Listen("tap0", f)
		return err
	})
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("packet sockets need CAP_NET_RAW: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpIn(t *testing.T, ns *lab.NS, network, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		a, err := net.ResolveUDPAddr(network, addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP(network, a)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readUDP(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("guest socket received nothing: %v", err)
	}
	return string(buf[:n])
}

// TestKernelAcceptsFrames sends crafted frames through the packet socket and
// lets the guest's kernel judge them: a wrong checksum or length is dropped.
func TestKernelAcceptsFrames(t *testing.T) {
	srv, guest, gmac := pair(t)
	tx := listenIn(t, srv, frame.Filter{SrcMAC: gmac, Kind: frame.KindICMPv6})
	u4 := udpIn(t, guest, "udp4", "10.16.0.5:6800")
	u6 := udpIn(t, guest, "udp6", "[fe80::858:aff:fe10:5%eth0]:5460")

	if err := tx.WriteFrame(frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: gmac, Src: svcMAC},
		Src: netip.MustParseAddr("169.254.75.10"), Dst: netip.MustParseAddr("10.16.0.5"),
		SrcPort: 67, DstPort: 6800, Payload: []byte("v4 odd")})); err != nil {
		t.Fatal(err)
	}
	if got := readUDP(t, u4); got != "v4 odd" {
		t.Errorf("guest got %q over IPv4", got)
	}
	ll := netip.MustParseAddr("fe80::ff:fe00:1")
	if err := tx.WriteFrame(frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: gmac, Src: svcMAC},
		Src: ll, Dst: netip.MustParseAddr("fe80::858:aff:fe10:5"), SrcPort: 547, DstPort: 5460, Payload: []byte("v6")})); err != nil {
		t.Fatal(err)
	}
	if got := readUDP(t, u6); got != "v6" {
		t.Errorf("guest got %q over IPv6", got)
	}
	// An echo request the guest answers proves the ICMPv6 checksum; the
	// reply coming back through the filter proves frame.KindICMPv6 delivery.
	guest.Run(t, "ip", "neigh", "add", ll.String(), "lladdr", svcMAC.String(), "dev", "eth0")
	echo := []byte{128, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g'}
	if err := tx.WriteFrame(frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: gmac, Src: svcMAC}, Src: ll,
		Dst: netip.MustParseAddr("fe80::858:aff:fe10:5"), HopLimit: 64, Payload: echo})); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(3 * time.Second)
	for {
		tx.SetReadDeadline(deadline)
		n, err := tx.ReadFrame(buf)
		if err != nil {
			t.Fatalf("no echo reply from the guest: %v", err)
		}
		p, err := frame.ParseICMP6(buf[:n])
		if err == nil && p.Payload[0] == 129 && bytes.HasSuffix(p.Payload, []byte("ping")) {
			break // other ICMPv6 (MLD reports) may come first
		}
	}
}

// TestFilterSelects sends frames from the guest side with several source
// MACs and kinds, and one VLAN-tagged; only the VM's untagged frames of the
// listened kind arrive, and nothing the server itself sends is read back.
func TestFilterSelects(t *testing.T) {
	srv, guest, gmac := pair(t)
	other := frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x99}
	rx := listenIn(t, srv, frame.Filter{SrcMAC: gmac, Kind: frame.KindDHCPv4})
	var gtx *frame.PacketConn
	if err := guest.Do(func() (err error) {
		gtx, err = frame.Listen("eth0", frame.Filter{SrcMAC: other, Kind: frame.KindDHCPv6})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer gtx.Close()

	dhcp := func(src frame.MAC, dport uint16, tag string) []byte {
		return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: src}, Src: netip.IPv4Unspecified(),
			Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: dport, Payload: []byte(tag)})
	}
	arp := frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: gmac}, frame.ARP{Op: frame.ARPRequest, SenderMAC: gmac,
		SenderIP: netip.MustParseAddr("10.16.0.5"), TargetIP: netip.MustParseAddr("169.254.75.10")})
	// Sent by the server side itself with the VM's MAC: outgoing, never read back.
	if err := rx.WriteFrame(dhcp(gmac, 67, "outgoing")); err != nil {
		t.Fatal(err)
	}
	// An IEEE 802.1Q tag (VLAN 100) after the MACs: the services answer
	// untagged, so a tagged request is not theirs.
	tagged := func(f []byte) []byte {
		return append(append(append([]byte(nil), f[:12]...), 0x81, 0x00, 0x00, 100), f[12:]...)
	}
	for _, f := range [][]byte{dhcp(other, 67, "other-mac"), dhcp(gmac, 68, "wrong-port"), tagged(dhcp(gmac, 67, "vlan-tagged")),
		dhcp(gmac, 67, "vm"), arp} {
		if err := gtx.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	buf := make([]byte, 2048)
	for {
		rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := rx.ReadFrame(buf)
		if err != nil {
			break
		}
		if p, err := frame.ParseUDP4(buf[:n]); err == nil {
			got = append(got, string(p.Payload))
		} else if _, a, err := frame.ParseARP(buf[:n]); err == nil {
			got = append(got, "arp "+a.TargetIP.String())
		} else {
			got = append(got, "unparsable")
		}
	}
	if want := "[vm arp 169.254.75.10]"; sprint(got) != want {
		t.Fatalf("frames delivered = %v, want %s", got, want)
	}
}

func sprint(v []string) string {
	b := []byte("[")
	for i, s := range v {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
	}
	return string(append(b, ']'))
}

func TestPipeDeadlineAndClose(t *testing.T) {
	a, b := frame.Pipe()
	if err := a.WriteFrame([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := b.ReadFrame(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("ReadFrame = %q, %v", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() { _, err := b.ReadFrame(buf); done <- err }()
	time.Sleep(10 * time.Millisecond)
	b.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read after a past deadline = %v, want deadline exceeded", err)
	}
	b.SetReadDeadline(time.Time{})
	b.Close()
	if _, err := b.ReadFrame(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close = %v", err)
	}
	if err := a.WriteFrame([]byte("y")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed peer = %v", err)
	}
}

// TestChecksumPartialFromGuest is the regression row for frames a guest's
// stack sends with checksum offload (veth, virtio-net): the packet socket
// sees them CHECKSUM_PARTIAL, and they must still parse.
func TestChecksumPartialFromGuest(t *testing.T) {
	srv, guest, gmac := pair(t)
	rx := listenIn(t, srv, frame.Filter{SrcMAC: gmac, Kind: frame.KindDHCPv6})
	if out, err := guest.Exec("ethtool", "-k", "eth0"); err == nil && !bytes.Contains([]byte(out), []byte("tx-checksumming: on")) {
		t.Logf("guest eth0 has tx checksumming off; the row still runs:\n%s", out)
	}
	var c *net.UDPConn
	if err := guest.Do(func() (err error) {
		c, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("fe80::858:aff:fe10:5"), Port: frame.PortDHCPv6Client, Zone: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := &net.UDPAddr{IP: net.ParseIP("ff02::1:2"), Port: frame.PortDHCPv6Server, Zone: "eth0"}
	if _, err := c.WriteTo([]byte("solicit, offloaded"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := rx.ReadFrame(buf)
	if err != nil {
		t.Fatalf("nothing received from the guest: %v", err)
	}
	p, err := frame.ParseUDP6(buf[:n])
	if err != nil {
		t.Fatalf("a guest's offloaded UDP frame does not parse: %v", err)
	}
	if string(p.Payload) != "solicit, offloaded" || p.SrcPort != frame.PortDHCPv6Client {
		t.Fatalf("parsed %+v", p)
	}
}

// BenchmarkPacketConn is one frame through a real packet socket each way:
// written by the guest's socket, read by the server's; neither allocates.
func BenchmarkPacketConn(b *testing.B) {
	srv, guest, gmac := pair(b)
	rx := listenIn(b, srv, frame.Filter{SrcMAC: gmac, Kind: frame.KindDHCPv4})
	var tx *frame.PacketConn
	if err := guest.Do(func() (err error) {
		tx, err = frame.Listen("eth0", frame.Filter{SrcMAC: frame.MAC{2, 0, 0, 0, 0, 0x99}, Kind: frame.KindDHCPv4})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tx.Close() })
	f := frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: gmac}, Src: netip.IPv4Unspecified(),
		Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: 67, Payload: make([]byte, 300)})
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if err := tx.WriteFrame(f); err != nil {
			b.Fatal(err)
		}
		if n, err := rx.ReadFrame(buf); err != nil || n != len(f) {
			b.Fatalf("read %d bytes (%v), want %d", n, err, len(f))
		}
	}
}

// TestReadBatches: frames queued faster than read come back one by one,
// all of them, in order, across several batches.
func TestReadBatches(t *testing.T) {
	srv, guest, gmac := pair(t)
	rx := listenIn(t, srv, frame.Filter{SrcMAC: gmac, Kind: frame.KindDHCPv4})
	var tx *frame.PacketConn
	if err := guest.Do(func() (err error) {
		tx, err = frame.Listen("eth0", frame.Filter{SrcMAC: frame.MAC{2, 0, 0, 0, 0, 0x99}, Kind: frame.KindDHCPv4})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const n = 50 // more than three batches
	for i := range n {
		f := frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: gmac}, Src: netip.IPv4Unspecified(),
			Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: 67, Payload: []byte{byte(i)}})
		if err := tx.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	for i := range n {
		m, err := rx.ReadFrame(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		p, err := frame.ParseUDP4(buf[:m])
		if err != nil || len(p.Payload) != 1 || p.Payload[0] != byte(i) {
			t.Fatalf("frame %d: payload %v (%v), want [%d]", i, p.Payload, err, i)
		}
	}
}
