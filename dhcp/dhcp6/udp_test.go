package dhcp6

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/dsbridge/dsbridge/e2e/lab"
)

// TestUDPReceive reads requests with the UDP transport's recvmsg (pktinfo.Reader): a
// Solicit from the guest's link-local address arrives with that source
// (no zone), port 546, destination ff02::1:2, from the bridge; one sent
// to [::1]:547 inside the pod arrived on another interface and is dropped;
// a deadline in the past interrupts a blocked read, and a closed transport
// says so.
func TestUDPReceive(t *testing.T) {
	if testing.Short() {
		t.Skip("network-namespace test")
	}
	l := newBridgedLab(t)
	var u *udpTransport
	if err := l.Pod.Do(func() error {
		var err error
		u, err = newUDPTransport("br0", false)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	solicit := []byte{1, 0xab, 0xcd, 0xef}
	guestLLA := frame.LinkLocalFromMAC(vmMAC)
	sendUDP6(t, l.Guest, &net.UDPAddr{IP: net.IP(guestLLA.AsSlice()), Port: 546, Zone: l.GuestIf},
		&net.UDPAddr{IP: net.ParseIP("ff02::1:2"), Port: 547, Zone: l.GuestIf}, solicit)
	sendUDP6(t, l.Pod, &net.UDPAddr{IP: net.IPv6loopback, Port: 546}, &net.UDPAddr{IP: net.IPv6loopback, Port: 547}, solicit)
	want := []serve.Packet{
		{Data: solicit, Src: netip.AddrPortFrom(guestLLA, 546), Dst: netip.MustParseAddr("ff02::1:2")},
		{Data: solicit, Src: netip.MustParseAddrPort("[::1]:546"), Dst: netip.IPv6Loopback(),
			Drop: serve.NotForServer, Detail: "arrived on another interface"},
	}
	var got []serve.Packet
	for range want {
		if err := u.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		p, err := u.Receive(make([]byte, 1500))
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, p)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{})); diff != "" {
		t.Errorf("received (-want +got):\n%s", diff)
	}

	done := make(chan error, 1)
	go func() { _, err := u.Receive(make([]byte, 1500)); done <- err }()
	time.Sleep(50 * time.Millisecond) // blocked in the read
	if err := u.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Receive after a deadline in the past = %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a deadline in the past did not interrupt Receive")
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Receive(make([]byte, 1500)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive on a closed transport = %v, want net.ErrClosed", err)
	}
}

// sendUDP6 sends payload from src to dst with a UDP socket in n.
func sendUDP6(t *testing.T, n *lab.NS, src, dst *net.UDPAddr, payload []byte) {
	t.Helper()
	err := n.Do(func() error {
		c, err := net.ListenUDP("udp6", src)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteToUDP(payload, dst)
		return err
	})
	if err != nil {
		t.Fatalf("send from %v to %v in %s: %v", src, dst, n.Name, err)
	}
}
