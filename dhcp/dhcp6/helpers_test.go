package dhcp6

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

var (
	vmMAC      = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x05}
	serviceMAC = frame.MAC{0x0a, 0x58, 0xa9, 0xfe, 0x00, 0x01}
	otherMAC   = frame.MAC{0x0a, 0x58, 0x0a, 0x10, 0x00, 0x99}
	podAddr    = netip.MustParseAddr("fd00:10:16::5")
	wrongAddr  = netip.MustParseAddr("fd00:10:16::99")
	dnsAddr    = netip.MustParseAddr("fd00:10:96::a")
	vmLLA      = netip.MustParseAddr("fe80::858:aff:fe10:5")
	serverLLA  = netip.MustParseAddr("fe80::858:a9ff:fefe:1")
	tid        = dhcpv6.TransactionID{0xa1, 0xb2, 0xc3}
	iaid       = [4]byte{0x0a, 0x10, 0x00, 0x05}
	clientDUID = &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 0x2c8a4b11, LinkLayerAddr: vmMAC.HardwareAddr()}
	serverDUID = ServerDUID("6d5c2d4e-1f4b-4f38-9d7e-0b8f5d3c2a10", "default")
	foreignSID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: otherMAC.HardwareAddr()}
)

func testConfig() Config {
	return Config{
		VMMAC:      vmMAC,
		ServiceMAC: serviceMAC,
		ServerDUID: serverDUID,
		Address:    podAddr,
		DNS:        []netip.Addr{dnsAddr},
		Search:     []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
	}
}

// discard is the tests' logger: silent unless DSBRIDGE_DEBUG is set.
func discard() *slog.Logger {
	if os.Getenv("DSBRIDGE_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestHandler(t testing.TB) *Handler {
	t.Helper()
	h, err := NewHandler(testConfig(), discard())
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

// msg builds a client message and round-trips it through the wire format,
// so the handler sees what it would see from a socket.
func msg(t testing.TB, typ dhcpv6.MessageType, opts ...dhcpv6.Option) dhcpv6.DHCPv6 {
	t.Helper()
	m := &dhcpv6.Message{MessageType: typ, TransactionID: tid}
	for _, o := range opts {
		m.AddOption(o)
	}
	return reparse(t, m)
}

func reparse(t testing.TB, m dhcpv6.DHCPv6) dhcpv6.DHCPv6 {
	t.Helper()
	back, err := dhcpv6.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatalf("failed to parse %v: %v", m, err)
	}
	return back
}

func cid() dhcpv6.Option { return dhcpv6.OptClientID(clientDUID) }
func sid() dhcpv6.Option { return dhcpv6.OptServerID(serverDUID) }

func ia(id [4]byte, addrs ...netip.Addr) *dhcpv6.OptIANA {
	o := &dhcpv6.OptIANA{IaId: id, T1: time.Minute, T2: 2 * time.Minute}
	for _, a := range addrs {
		o.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.AsSlice(), PreferredLifetime: time.Hour, ValidLifetime: time.Hour})
	}
	return o
}

func fqdnOpt(flags uint8, name string) dhcpv6.Option {
	return &dhcpv6.OptFQDN{Flags: flags, DomainName: &rfc1035label.Labels{Labels: []string{name}}}
}

// summary is a reply reduced to what the tests check, from its wire bytes.
type summary struct {
	Type        dhcpv6.MessageType
	TID         dhcpv6.TransactionID
	Codes       []dhcpv6.OptionCode // top-level options in order
	ClientID    string
	ServerID    string
	IANA        []iaSummary
	IATA        []iaSummary
	IAPD        []iaSummary
	Status      string
	Preference  int
	DNS         []string
	Search      []string
	FQDN        string
	InfoRefresh time.Duration
}

type iaSummary struct {
	IAID   [4]byte
	T1, T2 time.Duration
	Addrs  []string // "addr pref valid"
	Status string
}

type relaySummary struct {
	Type               dhcpv6.MessageType
	HopCount           uint8
	LinkAddr, PeerAddr string
	InterfaceID        string
	Inner              any // *relaySummary or summary
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func statusOf(o dhcpv6.Option) string {
	if s, ok := o.(*dhcpv6.OptStatusCode); ok {
		return s.StatusCode.String()
	}
	return ""
}

// summarize parses reply from its bytes; nil stays nil.
func summarize(t testing.TB, reply dhcpv6.DHCPv6) any {
	t.Helper()
	if reply == nil {
		return nil
	}
	parsed := reparse(t, reply)
	if !bytes.Equal(parsed.ToBytes(), reply.ToBytes()) {
		t.Errorf("reply does not survive a round trip")
	}
	return summarizeParsed(t, parsed)
}

func summarizeParsed(t testing.TB, d dhcpv6.DHCPv6) any {
	t.Helper()
	switch m := d.(type) {
	case *dhcpv6.RelayMessage:
		rs := &relaySummary{Type: m.MessageType, HopCount: m.HopCount, LinkAddr: m.LinkAddr.String(), PeerAddr: m.PeerAddr.String()}
		rs.InterfaceID = string(m.Options.InterfaceID())
		rs.Inner = summarizeParsed(t, m.Options.RelayMessage())
		return rs
	case *dhcpv6.Message:
		return summarizeMessage(m)
	}
	t.Fatalf("unexpected reply %T", d)
	return nil
}

func summarizeMessage(m *dhcpv6.Message) summary {
	s := summary{Type: m.MessageType, TID: m.TransactionID, Preference: -1}
	for _, o := range m.Options.Options {
		s.Codes = append(s.Codes, o.Code())
		switch o.Code() {
		case dhcpv6.OptionClientID:
			s.ClientID = hexOf(m.Options.ClientID().ToBytes())
		case dhcpv6.OptionServerID:
			s.ServerID = hexOf(m.Options.ServerID().ToBytes())
		case dhcpv6.OptionIANA:
			s.IANA = append(s.IANA, summarizeIA(o.(*dhcpv6.OptIANA)))
		case dhcpv6.OptionIATA:
			ta := o.(*dhcpv6.OptIATA)
			s.IATA = append(s.IATA, iaSummary{IAID: ta.IaId, Status: statusOf(ta.Options.GetOne(dhcpv6.OptionStatusCode))})
		case dhcpv6.OptionIAPD:
			pd := o.(*dhcpv6.OptIAPD)
			s.IAPD = append(s.IAPD, iaSummary{IAID: pd.IaId, T1: pd.T1, T2: pd.T2, Status: statusOf(pd.Options.GetOne(dhcpv6.OptionStatusCode))})
		case dhcpv6.OptionStatusCode:
			s.Status = statusOf(o)
		case dhcpv6.OptionPreference:
			s.Preference = int(m.Options.Preference())
		case dhcpv6.OptionDNSRecursiveNameServer:
			for _, ip := range m.Options.DNS() {
				s.DNS = append(s.DNS, ip.String())
			}
		case dhcpv6.OptionDomainSearchList:
			s.Search = m.Options.DomainSearchList().Labels
		case dhcpv6.OptionFQDN:
			f := m.Options.FQDN()
			s.FQDN = fmt.Sprintf("%#x %s", f.Flags, f.DomainName.Labels)
		case dhcpv6.OptionInformationRefreshTime:
			s.InfoRefresh = m.Options.InformationRefreshTime(0)
		}
	}
	return s
}

func summarizeIA(o *dhcpv6.OptIANA) iaSummary {
	s := iaSummary{IAID: o.IaId, T1: o.T1, T2: o.T2, Status: statusOf(o.Options.GetOne(dhcpv6.OptionStatusCode))}
	for _, a := range o.Options.Addresses() {
		s.Addrs = append(s.Addrs, fmt.Sprintf("%s %d %d", a.IPv6Addr, int(a.PreferredLifetime.Seconds()), int(a.ValidLifetime.Seconds())))
	}
	return s
}

// serveFrame runs one frame through the packet transport and the handler as
// the server does, and returns the event (without latency) and the frame
// sent, nil for none.
func serveFrame(t testing.TB, h *Handler, b []byte) (serve.Event, []byte) {
	t.Helper()
	rec := &recordConn{}
	pt := &packetTransport{conn: rec, vmMAC: h.cfg.VMMAC, srcMAC: h.cfg.ServiceMAC, srcIP: h.cfg.ServerLinkLocal}
	p := pt.parse(b)
	if p.Drop != "" {
		return serve.Drop(p.Drop, p.Detail), nil
	}
	r, ev := h.NewSession().serve(p)
	if r.Data == nil {
		return ev, nil
	}
	if err := pt.Send(p, r); err != nil {
		t.Fatal(err)
	}
	return ev, rec.written[0]
}

// basic is the part of an event the table tests pin; XID, Detail and Peer
// are checked by TestEventDetails.
func basic(e serve.Event) serve.Event {
	return serve.Event{Outcome: e.Outcome, Reason: e.Reason, Request: e.Request, Reply: e.Reply}
}

// optionBytes is the body of the first option with code c of a decoded
// message, nil if absent.
func optionBytes(m *dhcpv6.Message, c dhcpv6.OptionCode) []byte {
	o := m.GetOneOption(c)
	if o == nil {
		return nil
	}
	b := o.ToBytes()
	if b == nil {
		b = []byte{}
	}
	return b
}
