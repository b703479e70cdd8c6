package dhcp4

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	vmMAC      = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	serviceMAC = frame.MAC{0x02, 0xd5, 0xb0, 0x00, 0x00, 0x01}
	otherMAC   = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x63}
	xid        = dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}
	serverID   = netip.MustParseAddr("169.254.75.10")
	podAddr    = netip.MustParseAddr("10.16.0.5")
	otherAddr  = netip.MustParseAddr("10.16.0.99")
	relayAddr  = netip.MustParseAddr("10.16.0.50")
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// kubeOVNConfig is a Kube-OVN pod: a /16 with the logical router port as gateway.
func kubeOVNConfig() Config {
	return Config{
		VMMAC:      vmMAC,
		ServiceMAC: serviceMAC,
		ServerID:   serverID,
		Address:    netip.MustParsePrefix("10.16.0.5/16"),
		Gateway:    netip.MustParseAddr("10.16.0.1"),
		DNS:        []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Search:     []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Hostname:   "vm1",
		DomainName: "cluster.local",
		MTU:        1400,
	}
}

func newTestHandler(t testing.TB, cfg Config) *Handler {
	t.Helper()
	h, err := NewHandler(cfg, discardLogger())
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

// newRequest builds a request from the VM and passes it through the wire
// format, so the handler sees what FromBytes produces.
func newRequest(t testing.TB, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithHwAddr(vmMAC.HardwareAddr()),
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
			dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName,
			dhcpv4.OptionInterfaceMTU, dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionClasslessStaticRoute),
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatalf("dhcpv4.New: %v", err)
	}
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatalf("FromBytes: %v", err)
	}
	return m
}

func withOpt(code uint8, v []byte) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), v))
}

func withAddrOpt(code uint8, a netip.Addr) dhcpv4.Modifier { return withOpt(code, a.AsSlice()) }

// summary is what a table row checks of a reply.
type summary struct {
	Type    dhcpv4.MessageType
	Yiaddr  netip.Addr
	Ciaddr  netip.Addr
	Giaddr  netip.Addr
	Flags   uint16
	Options []uint8
	Dest    Dest
}

// addr4 converts a header address field of a decoded message.
func addr4(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	return netip.IPv4Unspecified()
}

func summarize(r *dhcpv4.DHCPv4, d Dest) summary {
	if r == nil {
		return summary{Dest: d}
	}
	var codes []uint8
	for c := range r.Options {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return summary{Type: r.MessageType(), Yiaddr: addr4(r.YourIPAddr), Ciaddr: addr4(r.ClientIPAddr),
		Giaddr: addr4(r.GatewayIPAddr), Flags: r.Flags, Options: codes, Dest: d}
}

var (
	zero       = netip.IPv4Unspecified()
	allOptions = []uint8{1, 3, 6, 12, 15, 26, 51, 53, 54, 58, 59, 119, 121}
	bcast      = Dest{Kind: DestBroadcast, IP: netip.MustParseAddr("255.255.255.255"), Port: 68, MAC: frame.Broadcast}
	toPod      = Dest{Kind: DestUnicast, IP: podAddr, Port: 68, MAC: vmMAC}
	toOther    = Dest{Kind: DestUnicast, IP: otherAddr, Port: 68, MAC: vmMAC}
	toRelay    = Dest{Kind: DestRelay, IP: relayAddr, Port: 67}
	nakOptions = []uint8{53, 54, 56}
)

// stale is d naming otherAddr as the address the guest still uses.
func stale(d Dest) Dest {
	d.Stale = otherAddr
	return d
}

// TestHandle has one row per client state of RFC 2131 section 4.3 for a
// server with a single binding (DISCOVER; REQUEST in SELECTING, INIT-REBOOT,
// RENEWING and REBINDING; DECLINE, RELEASE, INFORM), plus the drops and the
// section 4.1 addressing rules.
func TestHandle(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, kubeOVNConfig())
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want summary
	}{{
		name: "DISCOVER -> OFFER unicast to yiaddr at chaddr",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover),
		want: summary{Type: dhcpv4.MessageTypeOffer, Yiaddr: podAddr, Ciaddr: zero, Giaddr: zero, Options: allOptions, Dest: toPod},
	}, {
		name: "DISCOVER with BROADCAST -> OFFER broadcast",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithBroadcast(true)),
		want: summary{Type: dhcpv4.MessageTypeOffer, Yiaddr: podAddr, Ciaddr: zero, Giaddr: zero, Flags: flagBroadcast, Options: allOptions, Dest: bcast},
	}, {
		name: "DISCOVER relayed -> OFFER to the relay",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(relayAddr.AsSlice())),
		want: summary{Type: dhcpv4.MessageTypeOffer, Yiaddr: podAddr, Ciaddr: zero, Giaddr: relayAddr, Options: allOptions, Dest: toRelay},
	}, {
		name: "SELECTING for this server and the pod address -> ACK",
		req: newRequest(t, dhcpv4.MessageTypeRequest,
			withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, podAddr)),
		want: summary{Type: dhcpv4.MessageTypeAck, Yiaddr: podAddr, Ciaddr: zero, Giaddr: zero, Options: allOptions, Dest: toPod},
	}, {
		name: "SELECTING another server -> silent",
		req: newRequest(t, dhcpv4.MessageTypeRequest,
			withAddrOpt(optServerID, netip.MustParseAddr("10.16.0.2")), withAddrOpt(optRequestedIP, podAddr)),
		want: summary{Dest: Dest{Drop: serve.OtherServer}},
	}, {
		name: "SELECTING this server, another address -> NAK broadcast",
		req: newRequest(t, dhcpv4.MessageTypeRequest,
			withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, otherAddr)),
		want: summary{Type: dhcpv4.MessageTypeNak, Yiaddr: zero, Ciaddr: zero, Giaddr: zero, Options: nakOptions, Dest: bcast},
	}, {
		name: "INIT-REBOOT for the pod address -> ACK",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, podAddr)),
		want: summary{Type: dhcpv4.MessageTypeAck, Yiaddr: podAddr, Ciaddr: zero, Giaddr: zero, Options: allOptions, Dest: toPod},
	}, {
		name: "INIT-REBOOT for another address (after a migration) -> NAK broadcast, the address stale",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr)),
		want: summary{Type: dhcpv4.MessageTypeNak, Yiaddr: zero, Ciaddr: zero, Giaddr: zero, Options: nakOptions, Dest: stale(bcast)},
	}, {
		name: "RENEWING the pod address -> ACK unicast to ciaddr",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice())),
		want: summary{Type: dhcpv4.MessageTypeAck, Yiaddr: podAddr, Ciaddr: podAddr, Giaddr: zero, Options: allOptions, Dest: toPod},
	}, {
		name: "REBINDING with BROADCAST -> ACK unicast to ciaddr (ciaddr wins, RFC 2131 4.1)",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(podAddr.AsSlice()), dhcpv4.WithBroadcast(true)),
		want: summary{Type: dhcpv4.MessageTypeAck, Yiaddr: podAddr, Ciaddr: podAddr, Giaddr: zero, Flags: flagBroadcast, Options: allOptions, Dest: toPod},
	}, {
		name: "RENEWING another address -> NAK unicast to ciaddr at the VM's MAC, the address stale",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(otherAddr.AsSlice())),
		want: summary{Type: dhcpv4.MessageTypeNak, Yiaddr: zero, Ciaddr: zero, Giaddr: zero, Options: nakOptions, Dest: stale(toOther)},
	}, {
		name: "REBINDING another address, BROADCAST set -> NAK unicast to ciaddr at the VM's MAC, the address stale",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(otherAddr.AsSlice()), dhcpv4.WithBroadcast(true)),
		want: summary{Type: dhcpv4.MessageTypeNak, Yiaddr: zero, Ciaddr: zero, Giaddr: zero, Flags: flagBroadcast, Options: nakOptions, Dest: stale(toOther)},
	}, {
		name: "INIT-REBOOT relayed for another address -> NAK to the relay with BROADCAST",
		req: newRequest(t, dhcpv4.MessageTypeRequest, withAddrOpt(optRequestedIP, otherAddr),
			dhcpv4.WithGatewayIP(relayAddr.AsSlice())),
		want: summary{Type: dhcpv4.MessageTypeNak, Yiaddr: zero, Ciaddr: zero, Giaddr: relayAddr, Flags: flagBroadcast, Options: nakOptions, Dest: stale(toRelay)},
	}, {
		name: "REQUEST naming no address -> dropped",
		req:  newRequest(t, dhcpv4.MessageTypeRequest),
		want: summary{Dest: Dest{Drop: serve.Malformed}},
	}, {
		name: "REQUEST with a 3-byte option 50 -> dropped",
		req:  newRequest(t, dhcpv4.MessageTypeRequest, withOpt(optRequestedIP, []byte{10, 16, 0})),
		want: summary{Dest: Dest{Drop: serve.Malformed}},
	}, {
		name: "DECLINE -> no reply",
		req: newRequest(t, dhcpv4.MessageTypeDecline,
			withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, podAddr)),
		want: summary{},
	}, {
		name: "RELEASE -> no reply",
		req: newRequest(t, dhcpv4.MessageTypeRelease,
			withAddrOpt(optServerID, serverID), dhcpv4.WithClientIP(podAddr.AsSlice())),
		want: summary{},
	}, {
		name: "INFORM -> ACK without lease, yiaddr 0, unicast to ciaddr",
		req:  newRequest(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(podAddr.AsSlice())),
		want: summary{Type: dhcpv4.MessageTypeAck, Yiaddr: zero, Ciaddr: podAddr, Giaddr: zero,
			Options: []uint8{1, 3, 6, 12, 15, 26, 53, 54, 119, 121}, Dest: toPod},
	}, {
		name: "another MAC -> dropped",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(otherMAC.HardwareAddr())),
		want: summary{Dest: Dest{Drop: serve.NotVM}},
	}, {
		name: "BOOTREPLY -> dropped",
		req: newRequest(t, dhcpv4.MessageTypeOffer, func(d *dhcpv4.DHCPv4) {
			d.OpCode = dhcpv4.OpcodeBootReply
		}),
		want: summary{Dest: Dest{Drop: serve.NotRequest}},
	}, {
		name: "not Ethernet -> dropped",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHWType(iana.HWTypeIEEE802)),
		want: summary{Dest: Dest{Drop: serve.Malformed}},
	}, {
		name: "BOOTP (no message type) -> dropped",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithoutOption(dhcpv4.OptionDHCPMessageType)),
		want: summary{Dest: Dest{Drop: serve.NotRequest}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(h.Handle(tt.req))
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(Dest{}, "Detail")); diff != "" {
				t.Errorf("Handle() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandleOfferBytes pins every option of an OFFER to its wire bytes.
func TestHandleOfferBytes(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, kubeOVNConfig())
	r, _ := h.Handle(newRequest(t, dhcpv4.MessageTypeDiscover, withOpt(optClientID, []byte{1, 2, 3})))
	want := map[uint8][]byte{
		optSubnetMask:      {255, 255, 0, 0},
		optRouter:          {10, 16, 0, 1},
		optDNS:             {10, 96, 0, 10},
		optHostName:        []byte("vm1"),
		optDomainName:      []byte("cluster.local"),
		optInterfaceMTU:    {0x05, 0x78},
		optLeaseTime:       {0x05, 0x25, 0x0a, 0x80}, // 999 days = 86313600 s
		optMessageType:     {2},
		optServerID:        {169, 254, 75, 10},
		optRenewalTime:     {0, 0, 0, 60},  // 1 minute
		optRebindingTime:   {0, 0, 0, 120}, // 2 minutes
		optClientID:        {1, 2, 3},
		optDomainSearch:    []byte("\x07default\x03svc\x07cluster\x05local\x00\x03svc\x07cluster\x05local\x00\x07cluster\x05local\x00"),
		optClasslessRoutes: {32, 169, 254, 75, 10, 0, 0, 0, 0, 0, 10, 16, 0, 1},
	}
	got := map[uint8][]byte(r.Options)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OFFER options (-want +got):\n%s", diff)
	}
	parsed, err := dhcpv4.FromBytes(r.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if diff := cmp.Diff([]string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}, parsed.DomainSearch().Labels); diff != "" {
		t.Errorf("parsed option 119 (-want +got):\n%s", diff)
	}
	if got, want := parsed.IPAddressLeaseTime(0), 999*24*time.Hour; got != want {
		t.Errorf("parsed lease time = %v, want %v", got, want)
	}
}

// TestClasslessRoutes pins option 121 (RFC 3442) to exact bytes, with rows
// named after the environment that needs them.
func TestClasslessRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		address string
		gateway string
		routes  []Route
		want    []byte
		parsed  []string
	}{{
		name: "Kube-OVN /16: the server identifier on-link, the default route", address: "10.16.0.5/16", gateway: "10.16.0.1",
		want:   []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 0, 10, 16, 0, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "0.0.0.0/0 via 10.16.0.1"},
	}, {
		name: "Calico /32: server identifier and gateway host routes on-link first, default last", address: "10.244.1.5/32", gateway: "169.254.1.1",
		want:   []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "169.254.1.1/32 via 0.0.0.0", "0.0.0.0/0 via 169.254.1.1"},
	}, {
		name: "Calico /32 with the gateway route also in Routes: not repeated", address: "10.244.1.5/32", gateway: "169.254.1.1",
		routes: []Route{{Dst: netip.MustParsePrefix("169.254.1.1/32")}},
		want:   []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "169.254.1.1/32 via 0.0.0.0", "0.0.0.0/0 via 169.254.1.1"},
	}, {
		name: "pod routes before the default, connected route and defaults folded", address: "10.16.0.5/16", gateway: "10.16.0.1",
		routes: []Route{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.16.0.1")},
			{Dst: netip.MustParsePrefix("10.96.0.0/12"), Via: netip.MustParseAddr("10.16.0.254")},
			{Dst: netip.MustParsePrefix("10.16.0.0/16")},
			{Dst: netip.MustParsePrefix("169.254.75.10/32")},
		},
		want: []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 12, 10, 96, 10, 16, 0, 254, 0, 10, 16, 0, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "10.96.0.0/12 via 10.16.0.254",
			"0.0.0.0/0 via 10.16.0.1"},
	}, {
		name: "no Gateway: taken from the default route in Routes", address: "10.16.0.5/16",
		routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.16.0.1")}},
		want:   []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 0, 10, 16, 0, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "0.0.0.0/0 via 10.16.0.1"},
	}, {
		name: "gateway outside a /24", address: "10.0.0.5/24", gateway: "10.0.1.1",
		want:   []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 32, 10, 0, 1, 1, 0, 0, 0, 0, 0, 10, 0, 1, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "10.0.1.1/32 via 0.0.0.0", "0.0.0.0/0 via 10.0.1.1"},
	}, {
		name: "odd prefix lengths keep only significant octets", address: "10.16.0.5/16", gateway: "10.16.0.1",
		routes: []Route{
			{Dst: netip.MustParsePrefix("172.16.0.0/9"), Via: netip.MustParseAddr("10.16.0.2")},
			{Dst: netip.MustParsePrefix("192.168.1.128/25"), Via: netip.MustParseAddr("10.16.0.3")},
		},
		want: []byte{32, 169, 254, 75, 10, 0, 0, 0, 0, 9, 172, 0, 10, 16, 0, 2, 25, 192, 168, 1, 128, 10, 16, 0, 3, 0, 10, 16, 0, 1},
		parsed: []string{"169.254.75.10/32 via 0.0.0.0", "172.0.0.0/9 via 10.16.0.2", "192.168.1.128/25 via 10.16.0.3",
			"0.0.0.0/0 via 10.16.0.1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kubeOVNConfig()
			cfg.Address = netip.MustParsePrefix(tt.address)
			cfg.Gateway = netip.Addr{}
			if tt.gateway != "" {
				cfg.Gateway = netip.MustParseAddr(tt.gateway)
			}
			cfg.Routes = tt.routes
			r, _ := newTestHandler(t, cfg).Handle(newRequest(t, dhcpv4.MessageTypeDiscover))
			if diff := cmp.Diff(tt.want, r.Options.Get(dhcpv4.OptionClasslessStaticRoute)); diff != "" {
				t.Errorf("option 121 (-want +got):\n%s", diff)
			}
			parsed, err := dhcpv4.FromBytes(r.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			var got []string
			for _, rt := range parsed.ClasslessStaticRoute() {
				got = append(got, rt.Dest.String()+" via "+rt.Router.String())
			}
			if diff := cmp.Diff(tt.parsed, got); diff != "" {
				t.Errorf("parsed option 121 (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDomainSearch pins option 119 (RFC 3397) to exact bytes.
func TestDomainSearch(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".example"
	tests := []struct {
		name        string
		search      []string
		want        []byte
		wantDropped []string
	}{{
		name:   "Kubernetes namespace search path",
		search: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		want:   []byte("\x07default\x03svc\x07cluster\x05local\x00\x03svc\x07cluster\x05local\x00\x07cluster\x05local\x00"),
	}, {
		name:   "trailing dot",
		search: []string{"example.com."},
		want:   []byte("\x07example\x03com\x00"),
	}, {
		name:        "past 255 bytes: later domains left out",
		search:      []string{long, "c." + long, "short.example"},
		want:        append(append([]byte{63}, strings.Repeat("a", 63)+"\x3f"+strings.Repeat("b", 63)+"\x07example\x00"...), []byte("\x05short\x07example\x00")...),
		wantDropped: []string{"c." + long},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, dropped, err := encodeSearch(tt.search)
			if err != nil {
				t.Fatalf("encodeSearch: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("option 119 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDropped, dropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerIDForIndex(t *testing.T) {
	t.Parallel()
	for i, want := range map[int]string{0: "169.254.75.10", 1: "169.254.75.11", 9: "169.254.75.19",
		10: "169.254.75.110", 99: "169.254.75.199", 100: "invalid IP", -1: "invalid IP"} {
		if got := ServerIDForIndex(i).String(); got != want {
			t.Errorf("ServerIDForIndex(%d) = %s, want %s", i, got, want)
		}
	}
}

// TestExtras: the VMI's dhcpOptions go out when requested, or to a client
// that sends no parameter request list.
func TestExtras(t *testing.T) {
	t.Parallel()
	cfg := kubeOVNConfig()
	cfg.Extra = []Option{
		{Code: 66, Value: []byte("tftp.example")},
		{Code: 67, Value: []byte("pxelinux.0")},
		{Code: 42, Value: []byte{10, 16, 0, 123}},
		{Code: 240, Value: []byte("private")},
	}
	h := newTestHandler(t, cfg)
	tests := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want map[uint8][]byte
	}{{
		name: "requested 66 and 240",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithRequestedOptions(dhcpv4.OptionTFTPServerName, dhcpv4.GenericOptionCode(240))),
		want: map[uint8][]byte{66: []byte("tftp.example"), 240: []byte("private")},
	}, {
		name: "no parameter request list",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithoutOption(dhcpv4.OptionParameterRequestList)),
		want: map[uint8][]byte{42: {10, 16, 0, 123}, 66: []byte("tftp.example"), 67: []byte("pxelinux.0"), 240: []byte("private")},
	}, {
		name: "none requested",
		req:  newRequest(t, dhcpv4.MessageTypeDiscover),
		want: map[uint8][]byte{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := h.Handle(tt.req)
			got := map[uint8][]byte{}
			for _, c := range []uint8{42, 66, 67, 240} {
				if v, ok := r.Options[c]; ok {
					got[c] = v
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("extras (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReplyFits548: with big extras and a big echoed client id, the reply
// drops the lowest-priority options and stays within 548 bytes.
func TestReplyFits548(t *testing.T) {
	t.Parallel()
	cfg := kubeOVNConfig()
	for c := uint8(240); c < 243; c++ {
		cfg.Extra = append(cfg.Extra, Option{Code: c, Value: bytes.Repeat([]byte{c}, 100)})
	}
	h := newTestHandler(t, cfg)
	for _, clientID := range []int{0, 1, 255, 400} {
		req := newRequest(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithoutOption(dhcpv4.OptionParameterRequestList))
		if clientID > 0 {
			req.Options[optClientID] = bytes.Repeat([]byte{7}, clientID)
		}
		r, _ := h.Handle(req)
		b := r.ToBytes()
		if len(b) > maxReplySize {
			t.Errorf("client id of %d bytes: reply is %d bytes, want <= %d", clientID, len(b), maxReplySize)
		}
		for _, c := range []uint8{1, 3, 51, 53, 54} {
			if !r.Options.Has(dhcpv4.GenericOptionCode(c)) {
				t.Errorf("client id of %d bytes: essential option %d left out", clientID, c)
			}
		}
	}
}

func TestNewHandlerRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no VM MAC", func(c *Config) { c.VMMAC = frame.MAC{} }, "VM MAC"},
		{"no service MAC", func(c *Config) { c.ServiceMAC = frame.MAC{} }, "service MAC"},
		{"IPv6 server id", func(c *Config) { c.ServerID = netip.MustParseAddr("fe80::1") }, "server identifier"},
		{"no address", func(c *Config) { c.Address = netip.Prefix{} }, "address"},
		{"IPv6 gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("fe80::1") }, "gateway"},
		{"IPv6 DNS", func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("::1")} }, "DNS server"},
		{"MTU too small", func(c *Config) { c.MTU = 67 }, "MTU 67"},
		{"lease too short", func(c *Config) { c.LeaseTime = time.Second }, "lease time"},
		{"lease just too short", func(c *Config) {
			c.LeaseTime, c.RenewTime, c.RebindTime = 29*time.Second, 5*time.Second, 10*time.Second
		}, "lease time 29s is outside 30s-"},
		{"T2 not below the lease", func(c *Config) {
			c.LeaseTime, c.RenewTime, c.RebindTime = 30*time.Second, 15*time.Second, 30*time.Second
		}, "renewal time 15s, rebinding time 30s and lease 30s are not in increasing order"},
		{"disallowed extra", func(c *Config) { c.Extra = []Option{{Code: 3, Value: []byte{1, 2, 3, 4}}} }, "extra option 3"},
		{"empty search label", func(c *Config) { c.Search = []string{"a..b"} }, "search domain"},
		{"too many routes", func(c *Config) {
			for i := range 60 {
				c.Routes = append(c.Routes, Route{Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 0}), 24)})
			}
		}, "routes take"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kubeOVNConfig()
			tt.edit(&cfg)
			_, err := NewHandler(cfg, discardLogger())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHandler() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestShortestLease: a 30 s lease with T1 5 s and T2 10 s (the shortest,
// for guests that renew only at half the lease) is served as configured.
func TestShortestLease(t *testing.T) {
	t.Parallel()
	cfg := kubeOVNConfig()
	cfg.LeaseTime, cfg.RenewTime, cfg.RebindTime = 30*time.Second, 5*time.Second, 10*time.Second
	h := newTestHandler(t, cfg)
	reply, _ := h.Handle(newRequest(t, dhcpv4.MessageTypeDiscover))
	if reply == nil {
		t.Fatal("no OFFER")
	}
	if got := []time.Duration{reply.IPAddressLeaseTime(0), reply.IPAddressRenewalTime(0), reply.IPAddressRebindingTime(0)}; !slices.Equal(got, []time.Duration{30 * time.Second, 5 * time.Second, 10 * time.Second}) {
		t.Errorf("OFFER lease, T1, T2 = %v, want [30s 5s 10s]", got)
	}
}

// BenchmarkDORA runs DISCOVER -> OFFER and REQUEST -> ACK through the
// handler, from request bytes to reply bytes (the wire path a server
// uses).
func BenchmarkDORA(b *testing.B) {
	s := newTestHandler(b, kubeOVNConfig()).NewSession()
	discover := newRequest(b, dhcpv4.MessageTypeDiscover).ToBytes()
	request := newRequest(b, dhcpv4.MessageTypeRequest,
		withAddrOpt(optServerID, serverID), withAddrOpt(optRequestedIP, podAddr)).ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range [][]byte{discover, request} {
			if out, _, err := s.Answer(in); err != nil || out == nil {
				b.Fatalf("no reply: %v", err)
			}
		}
	}
}

// TestStaleInform: an INFORM from an address the server does not lease is
// answered (RFC 2131 section 4.3.5) and names that address as stale; one
// from the pod's address does not.
func TestStaleInform(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, kubeOVNConfig())
	if _, d := h.Handle(newRequest(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(otherAddr.AsSlice()))); d.Stale != otherAddr {
		t.Errorf("INFORM from %v: stale %v, want %v", otherAddr, d.Stale, otherAddr)
	}
	if _, d := h.Handle(newRequest(t, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(podAddr.AsSlice()))); d.Stale.IsValid() {
		t.Errorf("INFORM from the pod's address: stale %v, want none", d.Stale)
	}
}
