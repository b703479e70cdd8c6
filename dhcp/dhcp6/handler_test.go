package dhcp6

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

const (
	cidHex = "000100012c8a4b110a580a100005"
	bound  = "fd00:10:16::5 86313600 86313600" // 999 days
	zeroed = "fd00:10:16::99 0 0"
)

var (
	sidHex    = hexOf(serverDUID.ToBytes())
	dnsList   = []string{"fd00:10:96::a"}
	searchLst = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	boundIA   = iaSummary{IAID: iaid, T1: DefaultT1, T2: DefaultT2, Addrs: []string{bound}}
	secondID  = [4]byte{0, 0, 0, 2}
	refused   = iaSummary{IAID: secondID, Status: "NoAddrsAvail"}
	cfgCodes  = []dhcpv6.OptionCode{dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList}
)

// codes joins option code lists.
func codes(lists ...[]dhcpv6.OptionCode) []dhcpv6.OptionCode {
	var out []dhcpv6.OptionCode
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var ids = []dhcpv6.OptionCode{dhcpv6.OptionClientID, dhcpv6.OptionServerID}

func TestHandle(t *testing.T) {
	t.Parallel()
	iaPD := &dhcpv6.OptIAPD{IaId: [4]byte{0, 0, 0, 7}}
	iaTA := &dhcpv6.OptIATA{IaId: [4]byte{0, 0, 0, 8}}
	rapid := &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit}
	advertise := func(ias ...iaSummary) summary {
		return summary{Type: dhcpv6.MessageTypeAdvertise, TID: tid, ClientID: cidHex, ServerID: sidHex,
			Codes: codes(ids, repeat(dhcpv6.OptionIANA, len(ias)), []dhcpv6.OptionCode{dhcpv6.OptionDNSRecursiveNameServer,
				dhcpv6.OptionDomainSearchList, dhcpv6.OptionPreference}),
			IANA: ias, Preference: 255, DNS: dnsList, Search: searchLst}
	}
	reply := func(ias ...iaSummary) summary {
		return summary{Type: dhcpv6.MessageTypeReply, TID: tid, ClientID: cidHex, ServerID: sidHex,
			Codes: codes(ids, repeat(dhcpv6.OptionIANA, len(ias)), cfgCodes),
			IANA:  ias, Preference: -1, DNS: dnsList, Search: searchLst}
	}
	status := func(s string) summary {
		return summary{Type: dhcpv6.MessageTypeReply, TID: tid, ClientID: cidHex, ServerID: sidHex,
			Codes: codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionStatusCode}), Status: s, Preference: -1}
	}
	info := summary{Type: dhcpv6.MessageTypeReply, TID: tid, ServerID: sidHex,
		Codes: []dhcpv6.OptionCode{dhcpv6.OptionServerID, dhcpv6.OptionDNSRecursiveNameServer,
			dhcpv6.OptionDomainSearchList, dhcpv6.OptionInformationRefreshTime},
		Preference: -1, DNS: dnsList, Search: searchLst, InfoRefresh: 86400 * time.Second}
	infoWithCID := info
	infoWithCID.ClientID, infoWithCID.Codes = cidHex, codes([]dhcpv6.OptionCode{dhcpv6.OptionClientID}, info.Codes)

	tests := []struct {
		name string
		in   dhcpv6.DHCPv6
		want any
	}{
		{"Solicit: Advertise with preference 255, IAID copied",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid)), advertise(boundIA)},
		{"Solicit: a hinted address is ignored",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid, wrongAddr)), advertise(boundIA)},
		{"Solicit with Rapid Commit: Reply with Rapid Commit",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), rapid), func() summary {
				s := reply(boundIA)
				s.Codes = append(s.Codes, dhcpv6.OptionRapidCommit)
				return s
			}()},
		{"Solicit without client ID: dropped", msg(t, dhcpv6.MessageTypeSolicit, ia(iaid)), nil},
		{"Solicit with a server ID: dropped", msg(t, dhcpv6.MessageTypeSolicit, cid(), sid(), ia(iaid)), nil},
		{"Solicit with two IA_NA: NoAddrsAvail in the second",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), ia(secondID)), advertise(boundIA, refused)},
		{"Solicit: the IA_NA already holding the address keeps it",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(secondID), ia(iaid, podAddr)),
			advertise(iaSummary{IAID: secondID, Status: "NoAddrsAvail"}, boundIA)},
		{"Solicit with IA_NA and IA_PD: NoPrefixAvail in the IA_PD",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), iaPD), func() summary {
				s := advertise(boundIA)
				s.Codes = codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionIANA, dhcpv6.OptionIAPD}, cfgCodes,
					[]dhcpv6.OptionCode{dhcpv6.OptionPreference})
				s.IAPD = []iaSummary{{IAID: [4]byte{0, 0, 0, 7}, Status: "NoPrefixAvail"}}
				return s
			}()},
		{"Solicit with IA_PD only: NoPrefixAvail inside, NoAddrsAvail at top level",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), iaPD), func() summary {
				s := advertise()
				s.Codes = codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionIAPD, dhcpv6.OptionStatusCode}, cfgCodes,
					[]dhcpv6.OptionCode{dhcpv6.OptionPreference})
				s.IAPD = []iaSummary{{IAID: [4]byte{0, 0, 0, 7}, Status: "NoPrefixAvail"}}
				s.Status = "NoAddrsAvail"
				return s
			}()},
		{"Solicit with IA_TA: NoAddrsAvail inside",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), iaTA), func() summary {
				s := advertise(boundIA)
				s.Codes = codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionIANA, dhcpv6.OptionIATA}, cfgCodes,
					[]dhcpv6.OptionCode{dhcpv6.OptionPreference})
				s.IATA = []iaSummary{{IAID: [4]byte{0, 0, 0, 8}, Status: "NoAddrsAvail"}}
				return s
			}()},
		{"Solicit with FQDN S=1: N=1 O=1, name echoed",
			msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid), fqdnOpt(fqdnS, "vm1.example.org")), func() summary {
				s := advertise(boundIA)
				s.Codes = codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionIANA}, cfgCodes,
					[]dhcpv6.OptionCode{dhcpv6.OptionFQDN, dhcpv6.OptionPreference})
				s.FQDN = "0x6 [vm1.example.org]"
				return s
			}()},
		{"Request: Reply with the binding",
			msg(t, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid, podAddr)), reply(boundIA)},
		{"Request with FQDN S=0: N=1 only",
			msg(t, dhcpv6.MessageTypeRequest, cid(), sid(), ia(iaid), fqdnOpt(0, "vm1")), func() summary {
				s := reply(boundIA)
				s.Codes = append(s.Codes, dhcpv6.OptionFQDN)
				s.FQDN = "0x4 [vm1]"
				return s
			}()},
		{"Request with another server's ID: dropped",
			msg(t, dhcpv6.MessageTypeRequest, cid(), dhcpv6.OptServerID(foreignSID), ia(iaid)), nil},
		{"Request without server ID: dropped", msg(t, dhcpv6.MessageTypeRequest, cid(), ia(iaid)), nil},
		{"Request without client ID: dropped", msg(t, dhcpv6.MessageTypeRequest, sid(), ia(iaid)), nil},
		{"Renew: fresh lifetimes",
			msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid, podAddr)), reply(boundIA)},
		{"Renew of a wrong address: lifetimes 0 next to the right one",
			msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid, wrongAddr)),
			reply(iaSummary{IAID: iaid, T1: DefaultT1, T2: DefaultT2, Addrs: []string{bound, zeroed}})},
		{"Renew with a second IA_NA holding a wrong address: zeroed, NoAddrsAvail",
			msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid, podAddr), ia(secondID, wrongAddr)),
			reply(boundIA, iaSummary{IAID: secondID, Addrs: []string{zeroed}, Status: "NoAddrsAvail"})},
		{"Renew with another server's ID: dropped",
			msg(t, dhcpv6.MessageTypeRenew, cid(), dhcpv6.OptServerID(foreignSID), ia(iaid, podAddr)), nil},
		{"Rebind of a wrong address: lifetimes 0 next to the right one",
			msg(t, dhcpv6.MessageTypeRebind, cid(), ia(iaid, wrongAddr)),
			reply(iaSummary{IAID: iaid, T1: DefaultT1, T2: DefaultT2, Addrs: []string{bound, zeroed}})},
		{"Rebind with a server ID: dropped", msg(t, dhcpv6.MessageTypeRebind, cid(), sid(), ia(iaid, podAddr)), nil},
		{"Confirm of the pod address: Success",
			msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, podAddr)), status("Success")},
		{"Confirm of another address: NotOnLink",
			msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, podAddr, wrongAddr)), status("NotOnLink")},
		{"Confirm of an IA_TA address: NotOnLink",
			msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, podAddr), func() dhcpv6.Option {
				ta := &dhcpv6.OptIATA{IaId: [4]byte{0, 0, 0, 8}}
				ta.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: podAddr.AsSlice()})
				ta.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: wrongAddr.AsSlice()})
				return ta
			}()), status("NotOnLink")},
		{"Confirm without addresses: no reply", msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid)), nil},
		{"Confirm with a server ID: dropped", msg(t, dhcpv6.MessageTypeConfirm, cid(), sid(), ia(iaid, podAddr)), nil},
		{"Release: Success", msg(t, dhcpv6.MessageTypeRelease, cid(), sid(), ia(iaid, podAddr)), status("Success")},
		{"Release for another server: dropped",
			msg(t, dhcpv6.MessageTypeRelease, cid(), dhcpv6.OptServerID(foreignSID), ia(iaid, podAddr)), nil},
		{"Decline: Success", msg(t, dhcpv6.MessageTypeDecline, cid(), sid(), ia(iaid, podAddr)), status("Success")},
		{"Decline without server ID: dropped", msg(t, dhcpv6.MessageTypeDecline, cid(), ia(iaid, podAddr)), nil},
		{"Information-request without client ID: DNS, search, refresh time",
			msg(t, dhcpv6.MessageTypeInformationRequest), info},
		{"Information-request with client ID: echoed", msg(t, dhcpv6.MessageTypeInformationRequest, cid()), infoWithCID},
		{"Information-request with our server ID: answered",
			msg(t, dhcpv6.MessageTypeInformationRequest, cid(), sid()), infoWithCID},
		{"Information-request for another server: dropped",
			msg(t, dhcpv6.MessageTypeInformationRequest, dhcpv6.OptServerID(foreignSID)), nil},
		{"Information-request with an IA: dropped", msg(t, dhcpv6.MessageTypeInformationRequest, cid(), ia(iaid)), nil},
		{"Advertise from another server: ignored", msg(t, dhcpv6.MessageTypeAdvertise, cid(), sid(), ia(iaid)), nil},
		{"Reply: ignored", msg(t, dhcpv6.MessageTypeReply, cid(), sid()), nil},
		{"Reconfigure: ignored", msg(t, dhcpv6.MessageTypeReconfigure, cid(), sid()), nil},
		{"unknown type 200: ignored", msg(t, 200, cid()), nil},
		{"nil message: ignored", nil, nil},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, summarize(t, h.Handle(tt.in))); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

func repeat(c dhcpv6.OptionCode, n int) []dhcpv6.OptionCode {
	out := make([]dhcpv6.OptionCode, n)
	for i := range out {
		out[i] = c
	}
	return out
}

func relayForward(t testing.TB, hops uint8, inner dhcpv6.DHCPv6, opts ...dhcpv6.Option) *dhcpv6.RelayMessage {
	t.Helper()
	r := &dhcpv6.RelayMessage{
		MessageType: dhcpv6.MessageTypeRelayForward,
		HopCount:    hops,
		LinkAddr:    net.ParseIP("fd00:10:16::1"),
		PeerAddr:    net.IP(vmLLA.AsSlice()),
	}
	for _, o := range opts {
		r.AddOption(o)
	}
	if inner != nil {
		r.AddOption(dhcpv6.OptRelayMessage(inner))
	}
	return r
}

func TestHandleRelay(t *testing.T) {
	t.Parallel()
	solicit := msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid))
	adv := summary{Type: dhcpv6.MessageTypeAdvertise, TID: tid, ClientID: cidHex, ServerID: sidHex,
		Codes: codes(ids, []dhcpv6.OptionCode{dhcpv6.OptionIANA}, cfgCodes, []dhcpv6.OptionCode{dhcpv6.OptionPreference}),
		IANA:  []iaSummary{boundIA}, Preference: 255, DNS: dnsList, Search: searchLst}
	relayReply := func(hops uint8, iid string, inner any) *relaySummary {
		return &relaySummary{Type: dhcpv6.MessageTypeRelayReply, HopCount: hops, LinkAddr: "fd00:10:16::1",
			PeerAddr: vmLLA.String(), InterfaceID: iid, Inner: inner}
	}
	tooDeep := solicit
	for i := range maxRelayDepth + 1 {
		tooDeep = relayForward(t, uint8(i), tooDeep)
	}
	tests := []struct {
		name string
		in   dhcpv6.DHCPv6
		want any
	}{
		{"Relay-forward (perfdhcp -A 1): Relay-reply",
			relayForward(t, 0, solicit), relayReply(0, "", adv)},
		{"Relay-forward with Interface-Id: copied",
			relayForward(t, 0, solicit, dhcpv6.OptInterfaceID([]byte("eth0"))), relayReply(0, "eth0", adv)},
		{"two relays: two Relay-replies, hop counts copied",
			relayForward(t, 1, relayForward(t, 0, solicit, dhcpv6.OptInterfaceID([]byte("in"))),
				dhcpv6.OptInterfaceID([]byte("out"))),
			relayReply(1, "out", relayReply(0, "in", adv))},
		{"Relay-forward of an invalid message: no reply",
			relayForward(t, 0, msg(t, dhcpv6.MessageTypeSolicit, ia(iaid))), nil},
		{"Relay-forward without Relay Message option: no reply", relayForward(t, 0, nil), nil},
		{"Relay-reply in: ignored", func() dhcpv6.DHCPv6 {
			r := relayForward(t, 0, solicit)
			r.MessageType = dhcpv6.MessageTypeRelayReply
			return r
		}(), nil},
		{"Relay-forward holding a Relay-reply: ignored", relayForward(t, 1, func() dhcpv6.DHCPv6 {
			r := relayForward(t, 0, solicit)
			r.MessageType = dhcpv6.MessageTypeRelayReply
			return r
		}()), nil},
		{"relays nested too deep: ignored", tooDeep, nil},
	}
	h := newTestHandler(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if in != nil {
				in = reparse(t, in)
			}
			if diff := cmp.Diff(tt.want, summarize(t, h.Handle(in))); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandleDeclineLogs checks that a Decline is logged at warning level.
func TestHandleDeclineLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h, err := NewHandler(testConfig(), slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	h.Handle(msg(t, dhcpv6.MessageTypeDecline, cid(), sid(), ia(iaid, podAddr)))
	if got := buf.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "declined") ||
		!strings.Contains(got, "fd00:10:16::5") {
		t.Errorf("log = %q, want a warning naming the declined address", got)
	}
}

// TestHandleAdvertiseBytes pins a whole Advertise to its wire bytes.
func TestHandleAdvertiseBytes(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Search = []string{"cluster.local"}
	cfg.PreferredLifetime, cfg.ValidLifetime, cfg.T1, cfg.T2 = 3600*time.Second, 7200*time.Second, 1800*time.Second, 2880*time.Second
	h, err := NewHandler(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	got := h.Handle(msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid))).ToBytes()
	want := strings.Join([]string{
		"02a1b2c3",          // Advertise, transaction ID
		"0001000e" + cidHex, // Client ID (14 bytes)
		"00020012" + sidHex, // Server ID (18 bytes)
		"00030028" + "0a100005" + "00000708" + "00000b40" + // IA_NA (40 bytes): IAID, T1 1800, T2 2880
			"00050018" + "fd000010001600000000000000000005" + "00000e10" + "00001c20", // IAADDR, 3600, 7200
		"00170010" + "fd00" + "0010" + "0096" + "0000000000000000" + "000a", // DNS
		"0018000f" + "07636c7573746572056c6f63616c00",                       // search: cluster.local
		"00070001" + "ff", // Preference 255
	}, "")
	if diff := cmp.Diff(want, hexOf(got)); diff != "" {
		t.Errorf("Advertise bytes (-want +got):\n%s", diff)
	}
}

func TestServerDUID(t *testing.T) {
	t.Parallel()
	a := ServerDUID("6d5c2d4e-1f4b-4f38-9d7e-0b8f5d3c2a10", "default")
	tests := []struct {
		name        string
		uid, net    string
		wantEqualTo bool
	}{
		{"same VMI and network, e.g. after migration", "6d5c2d4e-1f4b-4f38-9d7e-0b8f5d3c2a10", "default", true},
		{"another network", "6d5c2d4e-1f4b-4f38-9d7e-0b8f5d3c2a10", "blue", false},
		{"another VMI", "0b8f5d3c-1f4b-4f38-9d7e-6d5c2d4e2a10", "default", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ServerDUID(tt.uid, tt.net)
			if got := bytes.Equal(a.ToBytes(), b.ToBytes()); got != tt.wantEqualTo {
				t.Errorf("equal = %v, want %v (%x vs %x)", got, tt.wantEqualTo, a.ToBytes(), b.ToBytes())
			}
		})
	}
	// Type 4 (DUID-UUID), then the version 5 UUID of the name in dsbridge's
	// namespace; computed independently with Python's uuid.uuid5.
	if diff := cmp.Diff(wantServerDUIDHex, hexOf(a.ToBytes())); diff != "" {
		t.Errorf("DUID bytes (-want +got):\n%s", diff)
	}
}

const wantServerDUIDHex = "0004578dacdfb4b25e0bbb16113852de0175"

// TestManyIAsNoAmplifier: a Solicit listing 150 IA_TA (1,286 bytes on the
// wire with a Client ID) gets a reply that answers at most maxIAs of them
// and is smaller than the request: a forged request buys no amplification.
func TestManyIAsNoAmplifier(t *testing.T) {
	t.Parallel()
	opts := []dhcpv6.Option{cid(), ia(iaid)}
	for i := range 150 {
		opts = append(opts, &dhcpv6.OptIATA{IaId: [4]byte{0, 0, byte(i >> 8), byte(i)}})
	}
	req := msg(t, dhcpv6.MessageTypeSolicit, opts...)
	reply := newTestHandler(t).Handle(reparse(t, req))
	if reply == nil {
		t.Fatal("no reply to the Solicit")
	}
	m := reply.(*dhcpv6.Message)
	if n := len(m.Options.Get(dhcpv6.OptionIATA)); n != maxIAs {
		t.Errorf("reply answers %d IA_TA, want %d", n, maxIAs)
	}
	if in, out := len(req.ToBytes()), len(reply.ToBytes()); out >= in {
		t.Errorf("reply of %d bytes to a request of %d: an amplifier", out, in)
	}
}

// TestStale: the address a Confirm, Renew or Rebind shows the guest holds
// and the server does not lease; none for the pod's address or a Solicit's
// hint.
func TestStale(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t)
	old := netip.MustParseAddr("fd00:10:17::9")
	tests := []struct {
		name string
		msg  dhcpv6.DHCPv6
		want netip.Addr
	}{
		{"Confirm of another pod's address", msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, old)), old},
		{"Renew of another pod's address", msg(t, dhcpv6.MessageTypeRenew, cid(), sid(), ia(iaid, old)), old},
		{"Rebind of another pod's address", msg(t, dhcpv6.MessageTypeRebind, cid(), ia(iaid, old)), old},
		{"relayed Rebind", reparse(t, relayForward(t, 0, msg(t, dhcpv6.MessageTypeRebind, cid(), ia(iaid, old)))), old},
		{"Confirm of the pod's address", msg(t, dhcpv6.MessageTypeConfirm, cid(), ia(iaid, podAddr)), netip.Addr{}},
		{"Solicit hinting another address", msg(t, dhcpv6.MessageTypeSolicit, cid(), ia(iaid, old)), netip.Addr{}},
	}
	for _, tt := range tests {
		if got := h.Stale(reparse(t, tt.msg)); got != tt.want {
			t.Errorf("%s: stale %v, want %v", tt.name, got, tt.want)
		}
	}
}
