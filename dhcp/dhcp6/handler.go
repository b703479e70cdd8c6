package dhcp6

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// Handler answers DHCPv6 messages for one binding (RFC 8415). It keeps no
// state per client and is safe for concurrent use. Replies share option
// values computed once in NewHandler: do not modify a reply's options.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	declines *loudlog.Every

	serverID []byte // our DUID on the wire, for comparisons
	addr     net.IP

	serverIDOpt dhcpv6.Option
	preference  dhcpv6.Option
	dns         dhcpv6.Option // nil without name servers
	search      dhcpv6.Option // nil without search domains
	infoRefresh dhcpv6.Option
	address     *dhcpv6.OptIAAddress
}

// NewHandler validates cfg (zero durations take the Default values) and
// computes every reply option once. A nil log discards.
func NewHandler(cfg Config, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid DHCPv6 configuration: %w", err)
	}
	h := &Handler{
		cfg:         cfg,
		log:         log,
		declines:    &loudlog.Every{Interval: loudlog.Interval},
		serverID:    cfg.ServerDUID.ToBytes(),
		addr:        net.IP(cfg.Address.AsSlice()),
		serverIDOpt: dhcpv6.OptServerID(cfg.ServerDUID),
		preference:  dhcpv6.OptPreference(preferenceMax),
		infoRefresh: dhcpv6.OptInformationRefreshTime(cfg.InfoRefresh),
	}
	h.address = &dhcpv6.OptIAAddress{
		IPv6Addr:          h.addr,
		PreferredLifetime: cfg.PreferredLifetime,
		ValidLifetime:     cfg.ValidLifetime,
	}
	if len(cfg.DNS) > 0 {
		ips := make([]net.IP, 0, len(cfg.DNS))
		for _, a := range cfg.DNS {
			ips = append(ips, net.IP(a.AsSlice()))
		}
		h.dns = dhcpv6.OptDNS(ips...)
	}
	if len(cfg.Search) > 0 {
		h.search = dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: cfg.Search})
	}
	return h, nil
}

// Config is the configuration in use, defaults applied.
func (h *Handler) Config() Config { return h.cfg }

// Handle answers one message: a client message or a Relay-forward holding
// one (RFC 8415 §19.3: the reply goes back in Relay-reply messages). nil
// means no reply. It never panics on a decoded message.
func (h *Handler) Handle(msg dhcpv6.DHCPv6) dhcpv6.DHCPv6 {
	switch m := msg.(type) {
	case *dhcpv6.Message:
		if r := h.handleMessage(m); r != nil {
			return r
		}
	case *dhcpv6.RelayMessage:
		if r := h.handleRelay(m); r != nil {
			return r
		}
	}
	return nil
}

// handleRelay unwraps Relay-forward messages down to the client's message
// and wraps the reply in one Relay-reply per level.
func (h *Handler) handleRelay(r *dhcpv6.RelayMessage) *dhcpv6.RelayMessage {
	chain, inner := unwrapRelay(r)
	if inner == nil {
		h.log.Debug("dropping malformed or too deep relay message", "msg", r.Type())
		return nil
	}
	reply := h.handleMessage(inner)
	if reply == nil {
		return nil
	}
	return wrapRelay(chain, reply)
}

// unwrapRelay returns the Relay-forward chain, outermost first, and the
// client message at its core; nil when there is none.
func unwrapRelay(r *dhcpv6.RelayMessage) ([]*dhcpv6.RelayMessage, *dhcpv6.Message) {
	var chain []*dhcpv6.RelayMessage
	var cur dhcpv6.DHCPv6 = r
	for len(chain) <= maxRelayDepth {
		switch m := cur.(type) {
		case *dhcpv6.Message:
			if m == nil {
				return nil, nil
			}
			return chain, m
		case *dhcpv6.RelayMessage:
			if m == nil || m.MessageType != dhcpv6.MessageTypeRelayForward {
				return nil, nil
			}
			chain = append(chain, m)
			cur = m.Options.RelayMessage()
		default:
			return nil, nil
		}
	}
	return nil, nil
}

// wrapRelay builds the Relay-reply chain: hop count, link and peer address
// and Interface-Id copied from each Relay-forward (RFC 8415 §9.2, §19.3).
func wrapRelay(chain []*dhcpv6.RelayMessage, reply *dhcpv6.Message) *dhcpv6.RelayMessage {
	var inner dhcpv6.DHCPv6 = reply
	var out *dhcpv6.RelayMessage
	for i := len(chain) - 1; i >= 0; i-- {
		fw := chain[i]
		out = &dhcpv6.RelayMessage{
			MessageType: dhcpv6.MessageTypeRelayReply,
			HopCount:    fw.HopCount,
			LinkAddr:    fw.LinkAddr,
			PeerAddr:    fw.PeerAddr,
		}
		if iid := fw.GetOneOption(dhcpv6.OptionInterfaceID); iid != nil {
			out.AddOption(iid)
		}
		out.AddOption(dhcpv6.OptRelayMessage(inner))
		inner = out
	}
	return out
}

// handleMessage validates m (RFC 8415 §16) and builds the answer.
func (h *Handler) handleMessage(m *dhcpv6.Message) *dhcpv6.Message {
	if reason := h.invalid(m); reason != "" {
		h.log.Debug("dropping DHCPv6 message", "msg", m.MessageType, "reason", reason)
		return nil
	}
	switch m.MessageType {
	case dhcpv6.MessageTypeSolicit:
		return h.solicit(m)
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		return h.binding(m, dhcpv6.MessageTypeReply)
	case dhcpv6.MessageTypeConfirm:
		return h.confirm(m)
	case dhcpv6.MessageTypeRelease:
		return h.status(m, iana.StatusSuccess, "released")
	case dhcpv6.MessageTypeDecline:
		h.logDecline(m)
		return h.status(m, iana.StatusSuccess, "declined")
	case dhcpv6.MessageTypeInformationRequest:
		return h.information(m)
	}
	return nil
}

// logDecline logs a Decline at warning level at most once per
// loudlog.Interval: a guest repeating it must not flood the log.
func (h *Handler) logDecline(m *dhcpv6.Message) {
	const msg = "the VM declined its IPv6 address: another node on the link uses it"
	if ok, held := h.declines.Allow(time.Now()); ok {
		h.log.Warn(msg, "address", h.cfg.Address, "client", clientID(m), "alsoSinceLastLogged", held)
		return
	}
	h.log.Debug(msg, "address", h.cfg.Address, "client", clientID(m))
}

// unanswered says why msg, which Handle did not answer, gets no reply: a
// drop Reason for a message that is not ours to answer, or "" (no reply
// due, RFC 8415) with the detail.
func (h *Handler) unanswered(msg dhcpv6.DHCPv6) (serve.Reason, string) {
	m, ok := msg.(*dhcpv6.Message)
	if r, isRelay := msg.(*dhcpv6.RelayMessage); isRelay {
		_, m = unwrapRelay(r)
		ok = m != nil
		if !ok {
			return serve.Malformed, "malformed or too deep relay message"
		}
	}
	switch {
	case !ok || m == nil:
		return serve.NotRequest, "not a client message"
	case m.MessageType == dhcpv6.MessageTypeConfirm && h.invalid(m) == "":
		return "", "Confirm without addresses (RFC 8415 §18.3.3)"
	}
	switch why := h.invalid(m); why {
	case "":
		return "", "no reply due"
	case whyOtherServer:
		return serve.OtherServer, why
	case whyNotClient:
		return serve.NotRequest, why
	default:
		return serve.Malformed, why
	}
}

// Reasons of invalid that are not malformations.
const (
	whyOtherServer = "addressed to another server"
	whyNotClient   = "not a client message"
)

// invalid is why m must be discarded (RFC 8415 §16.2 to §16.12), or "".
func (h *Handler) invalid(m *dhcpv6.Message) string {
	cid, sid := optionBytes(m, dhcpv6.OptionClientID), optionBytes(m, dhcpv6.OptionServerID)
	ours := sid != nil && bytes.Equal(sid, h.serverID)
	switch m.MessageType {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		switch {
		case cid == nil:
			return "no client identifier"
		case sid != nil:
			return "has a server identifier"
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew,
		dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		switch {
		case cid == nil:
			return "no client identifier"
		case !ours:
			return whyOtherServer
		}
	case dhcpv6.MessageTypeInformationRequest:
		switch {
		case sid != nil && !ours:
			return whyOtherServer
		case hasIA(m):
			return "carries an IA option"
		}
	default:
		return whyNotClient
	}
	return ""
}

// reply starts a reply of type t to m: transaction ID, the client's
// identifier (when it sent one) and ours (RFC 8415 §16).
func (h *Handler) reply(m *dhcpv6.Message, t dhcpv6.MessageType) *dhcpv6.Message {
	r := &dhcpv6.Message{MessageType: t, TransactionID: m.TransactionID}
	r.Options.Options = make(dhcpv6.Options, 0, 8)
	if cid := m.GetOneOption(dhcpv6.OptionClientID); cid != nil {
		r.AddOption(cid)
	}
	r.AddOption(h.serverIDOpt)
	return r
}

// solicit answers with an Advertise of preference 255 (RFC 8415 §18.3.1,
// §18.3.9), or with a Reply when the client asked for Rapid Commit (§18.3.1,
// §21.14).
func (h *Handler) solicit(m *dhcpv6.Message) *dhcpv6.Message {
	if m.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
		r := h.binding(m, dhcpv6.MessageTypeReply)
		r.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
		return r
	}
	r := h.binding(m, dhcpv6.MessageTypeAdvertise)
	r.AddOption(h.preference)
	return r
}

// binding answers Solicit, Request, Renew and Rebind with the pod address in
// one IA_NA and a refusal in every other IA (RFC 8415 §18.3.2, §18.3.4,
// §18.3.5, §18.3.9).
func (h *Handler) binding(m *dhcpv6.Message, t dhcpv6.MessageType) *dhcpv6.Message {
	r := h.reply(m, t)
	ianas := firstN(iaNAs(m), maxIAs)
	bound := h.bindingIndex(ianas)
	// Only a client renewing or rebinding holds addresses; in Solicit and
	// Request they are mere hints, which the server may ignore (§18.3.2).
	held := m.MessageType == dhcpv6.MessageTypeRenew || m.MessageType == dhcpv6.MessageTypeRebind
	for i, ia := range ianas {
		if i == bound {
			r.AddOption(h.boundIA(ia, held))
		} else {
			r.AddOption(h.refusedIA(ia, held))
		}
	}
	for _, ia := range firstN(iaTAs(m), maxIAs) {
		r.AddOption(&dhcpv6.OptIATA{IaId: ia.IaId, Options: dhcpv6.IdentityOptions{Options: dhcpv6.Options{
			&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "no temporary addresses"},
		}}})
	}
	for _, pd := range firstN(iaPDs(m), maxIAs) {
		r.AddOption(&dhcpv6.OptIAPD{IaId: pd.IaId, Options: dhcpv6.PDOptions{Options: dhcpv6.Options{
			&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoPrefixAvail, StatusMessage: "no prefixes delegated"},
		}}})
	}
	if bound < 0 {
		r.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "only IA_NA is served"})
	}
	h.addConfig(r, m)
	return r
}

// bindingIndex picks the IA_NA that gets the address: the one already
// holding it, else the first; -1 without IA_NA.
func (h *Handler) bindingIndex(ianas []*dhcpv6.OptIANA) int {
	for i, ia := range ianas {
		for _, a := range iaAddresses(ia) {
			if a.IPv6Addr.Equal(h.addr) {
				return i
			}
		}
	}
	if len(ianas) == 0 {
		return -1
	}
	return 0
}

// boundIA is the client's IA_NA (its IAID copied) with the pod address and,
// when held, every other address it holds returned with lifetimes 0
// (RFC 8415 §18.3.4, §18.3.5).
func (h *Handler) boundIA(ia *dhcpv6.OptIANA, held bool) *dhcpv6.OptIANA {
	out := &dhcpv6.OptIANA{IaId: ia.IaId, T1: h.cfg.T1, T2: h.cfg.T2}
	out.Options.Options = append(make(dhcpv6.Options, 0, 2), h.address)
	if !held {
		return out
	}
	for _, a := range firstN(iaAddresses(ia), maxIAs) {
		if !a.IPv6Addr.Equal(h.addr) {
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.IPv6Addr})
		}
	}
	return out
}

// refusedIA is an IA_NA we assign nothing to: NoAddrsAvail inside
// (RFC 8415 §18.3.2) and, when held, its addresses with lifetimes 0.
func (h *Handler) refusedIA(ia *dhcpv6.OptIANA, held bool) *dhcpv6.OptIANA {
	out := &dhcpv6.OptIANA{IaId: ia.IaId}
	if held {
		for _, a := range firstN(iaAddresses(ia), maxIAs) {
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.IPv6Addr})
		}
	}
	out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "one address per client"})
	return out
}

// addConfig adds DNS servers, the search list and, when the client sent
// one, the Client FQDN option.
func (h *Handler) addConfig(r, m *dhcpv6.Message) {
	if h.dns != nil {
		r.AddOption(h.dns)
	}
	if h.search != nil {
		r.AddOption(h.search)
	}
	if f := fqdn(m); f != nil {
		r.AddOption(f)
	}
}

// fqdn answers a Client FQDN option (RFC 4704 §5.1): N=1, the server
// updates no DNS; O=1 when that overrides the client's S=1; the client's
// name echoed.
func fqdn(m *dhcpv6.Message) *dhcpv6.OptFQDN {
	f, ok := m.GetOneOption(dhcpv6.OptionFQDN).(*dhcpv6.OptFQDN)
	if !ok || f == nil || f.DomainName == nil {
		return nil
	}
	flags := uint8(fqdnN)
	if f.Flags&fqdnS != 0 {
		flags |= fqdnO
	}
	return &dhcpv6.OptFQDN{Flags: flags, DomainName: &rfc1035label.Labels{Labels: f.DomainName.Labels}}
}

// confirm answers Success when every address is the pod's and NotOnLink
// otherwise; without addresses the server must not reply (RFC 8415 §18.3.3).
func (h *Handler) confirm(m *dhcpv6.Message) *dhcpv6.Message {
	addrs := confirmAddresses(m)
	for _, a := range addrs {
		if !a.Equal(h.addr) {
			return h.status(m, iana.StatusNotOnLink, "address not on link")
		}
	}
	if len(addrs) == 0 {
		h.log.Debug("dropping Confirm without addresses")
		return nil
	}
	return h.status(m, iana.StatusSuccess, "all addresses on link")
}

// Stale is an address msg shows the guest still holds (Confirm, Renew,
// Rebind, inside any relays) that this server does not lease: after a live
// migration to a pod with other addresses. Invalid when there is none.
func (h *Handler) Stale(msg dhcpv6.DHCPv6) netip.Addr {
	m, ok := msg.(*dhcpv6.Message)
	if r, isRelay := msg.(*dhcpv6.RelayMessage); isRelay {
		_, m = unwrapRelay(r)
		ok = m != nil
	}
	if !ok || m == nil {
		return netip.Addr{}
	}
	switch m.MessageType {
	case dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
	default:
		return netip.Addr{}
	}
	for _, a := range confirmAddresses(m) {
		if !a.Equal(h.addr) {
			if s, ok := netip.AddrFromSlice(a); ok {
				return s.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// status is a Reply carrying only a top-level status code.
func (h *Handler) status(m *dhcpv6.Message, code iana.StatusCode, text string) *dhcpv6.Message {
	r := h.reply(m, dhcpv6.MessageTypeReply)
	r.AddOption(&dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: text})
	return r
}

// information answers an Information-request: configuration and the
// information refresh time, no IA (RFC 8415 §18.3.6, §21.23).
func (h *Handler) information(m *dhcpv6.Message) *dhcpv6.Message {
	r := h.reply(m, dhcpv6.MessageTypeReply)
	h.addConfig(r, m)
	r.AddOption(h.infoRefresh)
	return r
}
