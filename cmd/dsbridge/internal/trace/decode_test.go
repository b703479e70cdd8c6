package trace

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

var vmMAC = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}

func discover(t testing.TB) []byte {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(vmMAC.HardwareAddr()), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0xe8, 0xa7, 0xae, 0x2e}),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter))
	if err != nil {
		t.Fatal(err)
	}
	return frame.AppendUDP4(nil, frame.UDP4{Eth: frame.Ethernet{Dst: frame.Broadcast, Src: vmMAC},
		Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		SrcPort: 68, DstPort: 67, TTL: 64, Payload: m.ToBytes()})
}

func rsFrame(t testing.TB) []byte {
	t.Helper()
	msg, err := ndp.MarshalMessage(&ndp.RouterSolicitation{})
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParseAddr("ff02::2")
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(all), Src: vmMAC},
		Src: frame.LinkLocalFromMAC(vmMAC), Dst: all, HopLimit: 255, Payload: msg})
}

func TestDecode(t *testing.T) {
	t.Parallel()
	arp := frame.AppendARP(nil, frame.Ethernet{Dst: frame.Broadcast, Src: vmMAC}, frame.ARP{Op: frame.ARPRequest,
		SenderMAC: vmMAC, SenderIP: netip.MustParseAddr("10.16.0.5"), TargetMAC: frame.MAC{},
		TargetIP: netip.MustParseAddr("169.254.75.10")})
	tests := []struct {
		name              string
		in                []byte
		wantProto, wantLn string
		wantOK            bool
	}{
		{"DISCOVER", discover(t), DHCPv4,
			"DISCOVER xid=0xe8a7ae2e chaddr=0a:58:0a:10:00:05 to=255.255.255.255:67 params=1,3", true},
		{"ARP", arp, DHCPv4, "ARP who-has 169.254.75.10 tell 10.16.0.5 (0a:58:0a:10:00:05)", true},
		{"RS", rsFrame(t), RA, "RS from=fe80::858:aff:fe10:5 mac=0a:58:0a:10:00:05 hoplimit=255", true},
		{"truncated", []byte{1, 2, 3}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proto, line, ok := Decode(tt.in)
			if diff := cmp.Diff([]any{tt.wantProto, tt.wantLn, tt.wantOK}, []any{proto, line, ok}); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// conn counts writes.
type conn struct {
	frame.Conn
	writes int
}

func (c *conn) WriteFrame([]byte) error { c.writes++; return nil }

// A dry-run Conn prints what it would send and sends nothing.
func TestDryRunConn(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	inner := &conn{}
	p := NewPrinter(&out)
	p.now = func() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 123456000, time.UTC) }
	c := &Conn{Conn: inner, P: p, DryRun: true}
	if err := c.WriteFrame(rsFrame(t)); err != nil {
		t.Fatal(err)
	}
	want := "12:00:00.123456 would-send ra     RS from=fe80::858:aff:fe10:5 mac=0a:58:0a:10:00:05 hoplimit=255\n"
	if diff := cmp.Diff(want, out.String()); diff != "" || inner.writes != 0 {
		t.Errorf("dry run wrote %d frames; output (-want +got):\n%s", inner.writes, diff)
	}
	c.DryRun = false
	if err := c.WriteFrame(rsFrame(t)); err != nil || inner.writes != 1 || !strings.Contains(out.String(), " send ") {
		t.Errorf("send: err %v, %d writes, output %q", err, inner.writes, out.String())
	}
}

func raFrame(t testing.TB) []byte {
	t.Helper()
	msg, err := ndp.MarshalMessage(&ndp.RouterAdvertisement{ManagedConfiguration: true, OtherConfiguration: true,
		RouterLifetime: 30 * time.Minute, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: vmMAC.HardwareAddr()}, ndp.NewMTU(1400),
			&ndp.PrefixInformation{PrefixLength: 112, OnLink: true, Prefix: netip.MustParseAddr("fd00:10:16::")},
			&ndp.RecursiveDNSServer{Lifetime: time.Hour, Servers: []netip.Addr{netip.MustParseAddr("fd00:10:96::a")}},
			&ndp.DNSSearchList{Lifetime: time.Hour, DomainNames: []string{"cluster.local"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParseAddr("ff02::1")
	return frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(all), Src: vmMAC},
		Src: frame.LinkLocalFromMAC(vmMAC), Dst: all, HopLimit: 255, Payload: msg})
}

func solicitFrame(t testing.TB) []byte {
	t.Helper()
	m, err := dhcpv6.NewSolicit(vmMAC.HardwareAddr())
	if err != nil {
		t.Fatal(err)
	}
	all := netip.MustParseAddr("ff02::1:2")
	return frame.AppendUDP6(nil, frame.UDP6{Eth: frame.Ethernet{Dst: frame.MulticastMAC(all), Src: vmMAC},
		Src: frame.LinkLocalFromMAC(vmMAC), Dst: all, SrcPort: 546, DstPort: 547, HopLimit: 1, Payload: m.ToBytes()})
}

func FuzzDecode(f *testing.F) {
	f.Add(discover(f))
	f.Add(rsFrame(f))
	f.Add(raFrame(f))
	f.Add(solicitFrame(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		Decode(b) // must not panic
	})
}

func BenchmarkDecodeDiscover(b *testing.B) {
	in := discover(b)
	b.ReportAllocs()
	for b.Loop() {
		Decode(in)
	}
}
