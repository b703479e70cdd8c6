package frame

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	vmMAC  = MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	svcMAC = MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendUDP4Bytes pins a DHCP-shaped frame to exact bytes; the checksums
// were computed independently (RFC 1071) and are accepted by the kernel in
// TestKernelAcceptsFrames.
func TestAppendUDP4Bytes(t *testing.T) {
	t.Parallel()
	got := AppendUDP4(nil, UDP4{
		Eth:     Ethernet{Dst: Broadcast, Src: svcMAC},
		Src:     netip.MustParseAddr("169.254.75.10"),
		Dst:     netip.MustParseAddr("255.255.255.255"),
		SrcPort: 67, DstPort: 68,
		Payload: []byte("hello"),
	})
	want := unhex(t, `
		ffffffffffff 020000000001 0800
		4500 0021 0000 4000 4011 45c4 a9fe4b0a ffffffff
		0043 0044 000d c672 68656c6c6f`)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendUDP4:\n got %x\nwant %x", got, want)
	}
	p, err := ParseUDP4(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("169.254.75.10:67>255.255.255.255:68 hello", p.Src.String()+":67>"+p.Dst.String()+":68 "+string(p.Payload)); diff != "" || p.SrcPort != 67 || p.DstPort != 68 || p.TTL != 64 {
		t.Fatalf("ParseUDP4 round trip (-want +got):\n%s %+v", diff, p)
	}
}

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	ll := netip.MustParseAddr("fe80::858:aff:fe10:5")
	u6 := UDP6{Eth: Ethernet{Dst: MulticastMAC(netip.MustParseAddr("ff02::1:2")), Src: vmMAC, Type: EtherTypeIPv6}, Src: ll,
		Dst: netip.MustParseAddr("ff02::1:2"), SrcPort: 546, DstPort: 547, HopLimit: 1, Payload: []byte{1, 2, 3}}
	got6, err := ParseUDP6(AppendUDP6(nil, u6))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(u6, got6, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("UDP6 round trip (-want +got):\n%s", diff)
	}
	ic := ICMP6{Eth: Ethernet{Dst: vmMAC, Src: svcMAC}, Src: ll, Dst: netip.MustParseAddr("ff02::1"), HopLimit: 255,
		Payload: []byte{134, 0, 0, 0, 64, 0xc0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}}
	gotI, err := ParseICMP6(AppendICMP6(nil, ic))
	if err != nil {
		t.Fatal(err)
	}
	if gotI.Payload[0] != 134 || gotI.HopLimit != 255 || gotI.Src != ll {
		t.Errorf("ICMP6 round trip: %+v", gotI)
	}
	a := ARP{Op: ARPRequest, SenderMAC: vmMAC, TargetMAC: MAC{},
		SenderIP: netip.MustParseAddr("10.16.0.5"), TargetIP: netip.MustParseAddr("169.254.75.10")}
	_, gotA, err := ParseARP(AppendARP(nil, Ethernet{Dst: Broadcast, Src: vmMAC}, a))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, gotA, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("ARP round trip (-want +got):\n%s", diff)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	good := AppendUDP4(nil, UDP4{Eth: Ethernet{Dst: Broadcast, Src: vmMAC}, Src: netip.IPv4Unspecified(),
		Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: 67, Payload: []byte("x")})
	corrupt := func(i int, v byte) []byte { b := append([]byte(nil), good...); b[i] = v; return b }
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"ethernet only", good[:14]},
		{"truncated ip", good[:30]},
		{"bad ip checksum", corrupt(24, 0xaa)},
		{"total length beyond frame", corrupt(17, 0xff)},
		{"fragment", corrupt(20, 0x20)},
		{"not udp", corrupt(23, 6)},
	} {
		if _, err := ParseUDP4(tc.frame); err == nil {
			t.Errorf("%s: ParseUDP4 accepted a bad frame", tc.name)
		}
	}
}

func TestLinkLocalFromMAC(t *testing.T) {
	t.Parallel()
	for mac, want := range map[string]string{
		"0a:58:0a:10:00:01": "fe80::858:aff:fe10:1",
		"ee:ee:ee:ee:ee:ee": "fe80::ecee:eeff:feee:eeee",
		"00:00:00:12:34:56": "fe80::200:ff:fe12:3456",
		"00:00:00:00:00:00": "fe80::200:ff:fe00:0",
	} {
		if got := LinkLocalFromMAC(MustParseMAC(mac)).String(); got != want {
			t.Errorf("LinkLocalFromMAC(%s) = %s, want %s", mac, got, want)
		}
	}
	if got := MulticastMAC(netip.MustParseAddr("ff02::1:2")).String(); got != "33:33:00:01:00:02" {
		t.Errorf("MulticastMAC(ff02::1:2) = %s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(AppendUDP4(nil, UDP4{Eth: Ethernet{Dst: Broadcast, Src: vmMAC}, Src: netip.IPv4Unspecified(),
		Dst: netip.MustParseAddr("255.255.255.255"), SrcPort: 68, DstPort: 67, Payload: []byte("x")}))
	f.Add(AppendUDP6(nil, UDP6{Eth: Ethernet{Dst: Broadcast, Src: vmMAC}, Src: netip.MustParseAddr("fe80::1"),
		Dst: netip.MustParseAddr("ff02::1:2"), SrcPort: 546, DstPort: 547, Payload: []byte("x")}))
	f.Add(AppendICMP6(nil, ICMP6{Eth: Ethernet{Dst: Broadcast, Src: vmMAC}, Src: netip.MustParseAddr("fe80::1"),
		Dst: netip.MustParseAddr("ff02::2"), Payload: []byte{133, 0, 0, 0, 0, 0, 0, 0}}))
	f.Add(AppendARP(nil, Ethernet{Dst: Broadcast, Src: vmMAC}, ARP{Op: 1, SenderIP: netip.MustParseAddr("10.0.0.1"), TargetIP: netip.MustParseAddr("10.0.0.2")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseUDP4(b); err == nil {
			if _, err := ParseUDP4(AppendUDP4(nil, p)); err != nil {
				t.Fatalf("re-encoded UDP4 does not parse: %v", err)
			}
		}
		if p, err := ParseUDP6(b); err == nil {
			if _, err := ParseUDP6(AppendUDP6(nil, p)); err != nil {
				t.Fatalf("re-encoded UDP6 does not parse: %v", err)
			}
		}
		if p, err := ParseICMP6(b); err == nil {
			if _, err := ParseICMP6(AppendICMP6(nil, p)); err != nil {
				t.Fatalf("re-encoded ICMP6 does not parse: %v", err)
			}
		}
		_, _, _ = ParseARP(b)
	})
}

// TestChecksumPartialAccepted: a correct checksum and a CHECKSUM_PARTIAL
// one (the field holds only the pseudo-header sum) parse; any other value
// is corruption.
func TestChecksumPartialAccepted(t *testing.T) {
	t.Parallel()
	src, dst := netip.MustParseAddr("fe80::858:aff:fe10:5"), netip.MustParseAddr("ff02::1:2")
	good := AppendUDP6(nil, UDP6{Eth: Ethernet{Dst: Broadcast, Src: vmMAC}, Src: src, Dst: dst,
		SrcPort: 546, DstPort: 547, Payload: []byte("solicit")})
	off := EthernetLen + IPv6Len + 6
	with := func(sum uint16) []byte {
		b := append([]byte(nil), good...)
		b[off], b[off+1] = byte(sum>>8), byte(sum)
		return b
	}
	partial := ^checksum(nil, pseudo6(src, dst, ProtoUDP, UDPLen+len("solicit")))
	for _, tc := range []struct {
		name  string
		frame []byte
		ok    bool
	}{
		{"complete", good, true},
		{"partial (offloaded)", with(partial), true},
		{"corrupt", with(partial + 1), false},
	} {
		if _, err := ParseUDP6(tc.frame); (err == nil) != tc.ok {
			t.Errorf("%s: ParseUDP6 error = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
