package dhcp6

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// Handler answers DHCPv6 messages for one binding (RFC 8415). It keeps no
// state per client and is safe for concurrent use; a Session answers on
// the wire.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	debug    bool
	declines *loudlog.Every

	serverID []byte // our DUID on the wire
	addr     netip.Addr

	// Reply option values, computed once.
	t1t2        []byte // T1 and T2 of the bound IA_NA
	preference  []byte
	dns         []byte // nil without name servers
	search      []byte // nil without search domains
	infoRefresh []byte
	preferred   uint32 // lifetimes of the bound address, seconds
	valid       uint32
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
		debug:       log.Enabled(context.Background(), slog.LevelDebug),
		declines:    &loudlog.Every{Interval: loudlog.Interval},
		serverID:    cfg.ServerDUID.ToBytes(),
		addr:        cfg.Address,
		t1t2:        binary.BigEndian.AppendUint32(seconds(cfg.T1), uint32(cfg.T2/time.Second)),
		preference:  []byte{preferenceMax},
		infoRefresh: seconds(cfg.InfoRefresh),
		preferred:   uint32(cfg.PreferredLifetime / time.Second),
		valid:       uint32(cfg.ValidLifetime / time.Second),
	}
	for _, a := range cfg.DNS {
		h.dns = append(h.dns, a.AsSlice()...)
	}
	if len(cfg.Search) > 0 {
		h.search = (&rfc1035label.Labels{Labels: cfg.Search}).ToBytes()
	}
	return h, nil
}

// seconds encodes d as the 32-bit seconds of RFC 8415 §7.7.
func seconds(d time.Duration) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(d/time.Second))
}

// Config is the configuration in use, defaults applied.
func (h *Handler) Config() Config { return h.cfg }

// Session answers messages on the wire, one at a time, reusing one parsed
// request and one reply buffer: answering allocates nothing. One goroutine
// uses a Session (a server's loop); the Handler behind it is shared.
type Session struct {
	h       *Handler
	req     request
	w       writer
	lengths [maxRelayDepth]int // where wrap left the Relay Message options' lengths
}

// NewSession returns a Session answering with h.
func (h *Handler) NewSession() *Session {
	return &Session{h: h, req: request{relays: make([]relay, 0, maxRelayDepth)}, w: writer{b: make([]byte, 0, 1500)}}
}

// Answer parses one message and answers it: a client message, or one
// inside Relay-forward messages (RFC 8415 §19.3: the reply goes back in
// Relay-reply messages). The reply's bytes are nil for none, and valid
// until the next Answer; err is set, and nothing else, when b is not a
// DHCPv6 message.
func (s *Session) Answer(b []byte) ([]byte, error) {
	if err := s.req.parse(b); err != nil {
		return nil, err
	}
	return s.respond(), nil
}

// respond answers the request parsed last: its bytes, nil for none.
func (s *Session) respond() []byte {
	if !s.req.ok {
		if s.req.relayed {
			s.h.debugLog("dropping malformed or too deep relay message")
		}
		return nil
	}
	m := &s.req.msg
	if reason := s.h.invalid(m); reason != "" {
		if s.h.debug {
			s.h.log.Debug("dropping DHCPv6 message", "msg", dhcpv6.MessageType(m.typ), "reason", reason)
		}
		return nil
	}
	s.w.b = s.w.b[:0]
	lengths := s.wrap()
	if !s.h.answer(&s.w, m) {
		return nil
	}
	for i := len(lengths) - 1; i >= 0; i-- {
		s.w.end(lengths[i])
	}
	return s.w.b
}

// wrap writes one Relay-reply per Relay-forward, outermost first: hop
// count, link and peer address and Interface-Id copied (RFC 8415 §9.2,
// §19.3), the Relay Message option last, its length left to set once the
// reply inside is written. It returns where those lengths go.
func (s *Session) wrap() []int {
	at := s.lengths[:0]
	for _, fw := range s.req.relays {
		s.w.b = append(s.w.b, typeRelayReply, fw.hops)
		s.w.b = append(append(s.w.b, fw.link[:]...), fw.peer[:]...)
		if iid, ok := first(fw.opts, optInterfaceID); ok {
			s.w.opt(optInterfaceID, iid)
		}
		at = append(at, s.w.begin(optRelayMsg))
	}
	return at
}

func (h *Handler) debugLog(msg string, args ...any) {
	if h.debug {
		h.log.Debug(msg, args...)
	}
}

// answer writes the answer to the valid client message m (RFC 8415 §18.3),
// reporting whether there is one.
func (h *Handler) answer(w *writer, m *message) bool {
	switch m.typ {
	case typeSolicit:
		h.solicit(w, m)
	case typeRequest, typeRenew, typeRebind:
		h.binding(w, m, typeReply)
	case typeConfirm:
		return h.confirm(w, m)
	case typeRelease:
		h.status(w, m, statusSuccess, "released")
	case typeDecline:
		h.logDecline(m)
		h.status(w, m, statusSuccess, "declined")
	case typeInformationRequest:
		h.information(w, m)
	default:
		return false
	}
	return true
}

// logDecline logs a Decline at warning level at most once per
// loudlog.Interval: a guest repeating it must not flood the log.
func (h *Handler) logDecline(m *message) {
	const msg = "the VM declined its IPv6 address: another node on the link uses it"
	cid, _ := m.option(optClientID)
	if ok, held := h.declines.Allow(time.Now()); ok {
		h.log.Warn(msg, "address", h.cfg.Address, "client", net.HardwareAddr(cid).String(), "alsoSinceLastLogged", held)
		return
	}
	h.debugLog(msg, "address", h.cfg.Address, "client", net.HardwareAddr(cid).String())
}

// Reasons of invalid that are not malformations.
const (
	whyOtherServer = "addressed to another server"
	whyNotClient   = "not a client message"
)

// invalid is why m must be discarded (RFC 8415 §16.2 to §16.12), or "".
func (h *Handler) invalid(m *message) string {
	_, hasCID := m.option(optClientID)
	sid, hasSID := m.option(optServerID)
	ours := hasSID && bytes.Equal(sid, h.serverID)
	switch m.typ {
	case typeSolicit, typeConfirm, typeRebind:
		switch {
		case !hasCID:
			return "no client identifier"
		case hasSID:
			return "has a server identifier"
		}
	case typeRequest, typeRenew, typeRelease, typeDecline:
		switch {
		case !hasCID:
			return "no client identifier"
		case !ours:
			return whyOtherServer
		}
	case typeInformationRequest:
		switch {
		case hasSID && !ours:
			return whyOtherServer
		case hasIA(m):
			return "carries an IA option"
		}
	default:
		return whyNotClient
	}
	return ""
}

// hasIA reports any IA option (IA_NA, IA_TA, IA_PD).
func hasIA(m *message) bool {
	o := options{m.opts}
	for c, _, ok := o.next(); ok; c, _, ok = o.next() {
		if c == optIANA || c == optIATA || c == optIAPD {
			return true
		}
	}
	return false
}

// reply starts a reply of type t to m: transaction ID, the client's
// identifier (when it sent one) and ours (RFC 8415 §16).
func (h *Handler) reply(w *writer, m *message, t byte) {
	w.b = append(append(w.b, t), m.xid[:]...)
	if cid, ok := m.option(optClientID); ok {
		w.opt(optClientID, cid)
	}
	w.opt(optServerID, h.serverID)
}

// solicit answers with an Advertise of preference 255 (RFC 8415 §18.3.1,
// §18.3.9), or with a Reply when the client asked for Rapid Commit (§18.3.1,
// §21.14).
func (h *Handler) solicit(w *writer, m *message) {
	if _, rapid := m.option(optRapidCommit); rapid {
		h.binding(w, m, typeReply)
		w.opt(optRapidCommit)
		return
	}
	h.binding(w, m, typeAdvertise)
	w.opt(optPreference, h.preference)
}

// binding answers Solicit, Request, Renew and Rebind with the pod address in
// one IA_NA and a refusal in every other IA (RFC 8415 §18.3.2, §18.3.4,
// §18.3.5, §18.3.9). Only maxIAs of each kind are answered.
func (h *Handler) binding(w *writer, m *message, t byte) {
	h.reply(w, m, t)
	bound := h.bindingIndex(m)
	// Only a client renewing or rebinding holds addresses; in Solicit and
	// Request they are mere hints, which the server may ignore (§18.3.2).
	held := m.typ == typeRenew || m.typ == typeRebind
	it := iasOf(m, optIANA)
	for i := 0; i < maxIAs; i++ {
		ia, ok := it.next()
		if !ok {
			break
		}
		if i == bound {
			h.boundIA(w, ia, held)
		} else {
			h.refusedIA(w, ia, held)
		}
	}
	it = iasOf(m, optIATA)
	for range maxIAs {
		ia, ok := it.next()
		if !ok {
			break
		}
		at := w.begin(optIATA)
		w.b = append(w.b, ia.id[:]...)
		w.status(statusNoAddrsAvail, "no temporary addresses")
		w.end(at)
	}
	it = iasOf(m, optIAPD)
	for range maxIAs {
		ia, ok := it.next()
		if !ok {
			break
		}
		at := w.begin(optIAPD)
		w.b = append(append(w.b, ia.id[:]...), 0, 0, 0, 0, 0, 0, 0, 0) // T1, T2 0
		w.status(statusNoPrefixAvail, "no prefixes delegated")
		w.end(at)
	}
	if bound < 0 {
		w.status(statusNoAddrsAvail, "only IA_NA is served")
	}
	h.addConfig(w, m)
}

// bindingIndex picks the IA_NA (of the first maxIAs) that gets the
// address: the one already holding it, else the first; -1 without IA_NA.
func (h *Handler) bindingIndex(m *message) int {
	it := iasOf(m, optIANA)
	n := 0
	for ; n < maxIAs; n++ {
		ia, ok := it.next()
		if !ok {
			break
		}
		as := ia.addrs()
		for a, ok := as.next(); ok; a, ok = as.next() {
			if a == h.addr {
				return n
			}
		}
	}
	if n == 0 {
		return -1
	}
	return 0
}

// boundIA is the client's IA_NA (its IAID copied) with the pod address and,
// when held, every other address it holds (of the first maxIAs) returned
// with lifetimes 0 (RFC 8415 §18.3.4, §18.3.5).
func (h *Handler) boundIA(w *writer, ia iaView, held bool) {
	at := w.begin(optIANA)
	w.b = append(append(w.b, ia.id[:]...), h.t1t2...)
	w.iaAddr(h.addr, h.preferred, h.valid)
	if held {
		as := ia.addrs()
		for range maxIAs {
			a, ok := as.next()
			if !ok {
				break
			}
			if a != h.addr {
				w.iaAddr(a, 0, 0)
			}
		}
	}
	w.end(at)
}

// refusedIA is an IA_NA we assign nothing to: NoAddrsAvail inside
// (RFC 8415 §18.3.2) and, when held, its addresses (of the first maxIAs)
// with lifetimes 0.
func (h *Handler) refusedIA(w *writer, ia iaView, held bool) {
	at := w.begin(optIANA)
	w.b = append(append(w.b, ia.id[:]...), 0, 0, 0, 0, 0, 0, 0, 0) // T1, T2 0
	if held {
		as := ia.addrs()
		for range maxIAs {
			a, ok := as.next()
			if !ok {
				break
			}
			w.iaAddr(a, 0, 0)
		}
	}
	w.status(statusNoAddrsAvail, "one address per client")
	w.end(at)
}

// addConfig adds DNS servers, the search list and, when the client sent
// one, the Client FQDN option.
func (h *Handler) addConfig(w *writer, m *message) {
	if h.dns != nil {
		w.opt(optDNS, h.dns)
	}
	if h.search != nil {
		w.opt(optDomainList, h.search)
	}
	if f, ok := m.option(optFQDN); ok && len(f) > 0 {
		fqdn(w, f)
	}
}

// fqdn answers a Client FQDN option f (RFC 4704 §5.1): N=1, the server
// updates no DNS; O=1 when that overrides the client's S=1; the client's
// name echoed, in full uncompressed form. A name that does not parse is not
// echoed (insomniacslk/dhcp refuses such a message).
func fqdn(w *writer, f []byte) {
	flags := byte(fqdnN)
	if f[0]&fqdnS != 0 {
		flags |= fqdnO
	}
	start := len(w.b)
	at := w.begin(optFQDN)
	w.b = append(w.b, flags)
	var ok bool
	if w.b, ok = appendName(w.b, f[1:]); !ok {
		w.b = w.b[:start]
		return
	}
	w.end(at)
}

// appendName appends the domain names in b (RFC 1035 §3.1 labels, a last
// partial name without its root label as RFC 4704 §4.2 allows) as
// insomniacslk/dhcp reads and writes them: every name ends in a root label;
// a compression pointer (RFC 1035 §4.1.4) is followed once. ok is false
// when b does not parse.
func appendName(out, b []byte) ([]byte, bool) {
	pos, ret, inLabel, pointer := 0, 0, false, false
	for pos < len(b) {
		n := int(b[pos])
		pos++
		switch {
		case n == 0:
			out = append(out, 0)
			inLabel = false
			if pointer {
				pos, pointer = ret, false
			}
		case n&0xc0 == 0xc0:
			if pointer || pos >= len(b) {
				return out, false
			}
			pointer, ret = true, pos+1
			pos = (n&^0xc0)<<8 | int(b[pos])
		default:
			if pos+n > len(b) {
				return out, false
			}
			out = appendLabel(out, b[pos:pos+n])
			pos += n
			inLabel = true
		}
	}
	if inLabel {
		out = append(out, 0)
	}
	return out, true
}

// appendLabel appends a label as insomniacslk/dhcp writes it back: split at
// its dots.
func appendLabel(out, l []byte) []byte {
	for {
		i := bytes.IndexByte(l, '.')
		if i < 0 {
			return append(append(out, byte(len(l))), l...)
		}
		out = append(append(out, byte(i)), l[:i]...)
		l = l[i+1:]
	}
}

// confirm answers Success when every address is the pod's and NotOnLink
// otherwise; without addresses the server must not reply (RFC 8415 §18.3.3).
func (h *Handler) confirm(w *writer, m *message) bool {
	any, other := false, false
	eachAddress(m, func(a netip.Addr) bool {
		any = true
		other = a != h.addr
		return !other
	})
	switch {
	case other:
		h.status(w, m, statusNotOnLink, "address not on link")
	case !any:
		h.debugLog("dropping Confirm without addresses")
		return false
	default:
		h.status(w, m, statusSuccess, "all addresses on link")
	}
	return true
}

// eachAddress calls f with every address in m's IA_NA and IA_TA options,
// until f returns false.
func eachAddress(m *message, f func(netip.Addr) bool) {
	for _, code := range [...]uint16{optIANA, optIATA} {
		it := iasOf(m, code)
		for ia, ok := it.next(); ok; ia, ok = it.next() {
			as := ia.addrs()
			for a, ok := as.next(); ok; a, ok = as.next() {
				if !f(a) {
					return
				}
			}
		}
	}
}

// stale is an address m shows the guest still holds (Confirm, Renew,
// Rebind) that this server does not lease: after a live migration to a pod
// with other addresses. Invalid when there is none.
func (h *Handler) stale(m *message) netip.Addr {
	switch m.typ {
	case typeConfirm, typeRenew, typeRebind:
	default:
		return netip.Addr{}
	}
	var s netip.Addr
	eachAddress(m, func(a netip.Addr) bool {
		if a != h.addr {
			s = a.Unmap()
			return false
		}
		return true
	})
	return s
}

// status is a Reply carrying only a top-level status code.
func (h *Handler) status(w *writer, m *message, code uint16, text string) {
	h.reply(w, m, typeReply)
	w.status(code, text)
}

// information answers an Information-request: configuration and the
// information refresh time, no IA (RFC 8415 §18.3.6, §21.23).
func (h *Handler) information(w *writer, m *message) {
	h.reply(w, m, typeReply)
	h.addConfig(w, m)
	w.opt(optInfoRefreshTime, h.infoRefresh)
}

// Handle answers one decoded message: nil for no reply. It is the wire path
// (a Session's Answer) for a caller holding an insomniacslk/dhcp message:
// msg is encoded, answered and the reply decoded. It never panics on a
// decoded message.
func (h *Handler) Handle(msg dhcpv6.DHCPv6) dhcpv6.DHCPv6 {
	if msg == nil {
		return nil
	}
	out, err := h.NewSession().Answer(msg.ToBytes())
	if err != nil || out == nil {
		return nil
	}
	r, err := dhcpv6.FromBytes(out)
	if err != nil {
		panic("dhcp6: a reply that does not parse: " + err.Error()) // programmer invariant: Answer writes valid messages
	}
	return r
}

// Stale is the address msg shows the guest still holds (Confirm, Renew,
// Rebind, inside any relays) that this server does not lease: after a live
// migration to a pod with other addresses. Invalid when there is none.
func (h *Handler) Stale(msg dhcpv6.DHCPv6) netip.Addr {
	if msg == nil {
		return netip.Addr{}
	}
	var r request
	if err := r.parse(msg.ToBytes()); err != nil || !r.ok {
		return netip.Addr{}
	}
	return h.stale(&r.msg)
}
