package dhcp4

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/internal/loudlog"
	"github.com/dsbridge/dsbridge/dhcp/serve"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// flagBroadcast is the BROADCAST bit of the flags field (RFC 2131 section 2, figure 2).
const flagBroadcast = 0x8000

// DestKind says where a reply goes (RFC 2131 section 4.1).
type DestKind int

const (
	DestNone      DestKind = iota // no reply
	DestBroadcast                 // 255.255.255.255:68, Ethernet broadcast
	DestUnicast                   // IP:68 at MAC
	DestRelay                     // the relay agent at giaddr:67, at the request's source MAC
)

// Dest is where a reply goes, or why there is none.
type Dest struct {
	Kind DestKind
	IP   netip.Addr // destination address (broadcast, ciaddr, yiaddr or giaddr)
	Port uint16     // 68, or 67 for a relay
	MAC  frame.MAC  // destination MAC; zero for a relay (the request's source MAC)
	// Drop is why a request gets no reply; empty when it was answered or
	// needs no answer (RELEASE, DECLINE). Detail says more.
	Drop   serve.Reason
	Detail string
	// Stale is the address the request shows the guest still uses and the
	// server does not lease (a REQUEST in INIT-REBOOT, RENEWING or
	// REBINDING, or an INFORM, for another address): it came from a pod
	// with other addresses. Invalid when there is none.
	Stale netip.Addr
}

// option is one precomputed reply option.
type option struct {
	code  uint8
	value []byte
	lease bool // 51, 58, 59: never in an INFORM reply (RFC 2131 section 4.3.5)
	core  bool // the lease, mask, routes, DNS and MTU: room is kept for them
	extra bool // a VMI extra: sent only when requested
}

// Handler answers the requests of one client with one binding. It is
// immutable after NewHandler and safe for concurrent use.
type Handler struct {
	log        *slog.Logger
	vmMAC      frame.MAC // the only client answered, and replies' chaddr
	serviceMAC frame.MAC
	sid        netip.Addr
	sidOpt     []byte // option 54 value
	addr       netip.Addr
	options    []option // in priority order: dropped from the end when a reply runs out of room
	coreSize   int      // wire size of the core options
	declines   *loudlog.Every
}

// NewHandler validates cfg and precomputes every reply option. A nil log
// discards.
func NewHandler(cfg Config, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid DHCPv4 config: %w", err)
	}
	sid := cfg.ServerID.As4()
	h := &Handler{
		log:        log,
		vmMAC:      cfg.VMMAC,
		serviceMAC: cfg.ServiceMAC,
		sid:        cfg.ServerID,
		sidOpt:     sid[:],
		addr:       cfg.Address.Addr(),
		declines:   &loudlog.Every{Interval: loudlog.Interval},
	}
	opts, err := buildOptions(&cfg, log)
	if err != nil {
		return nil, fmt.Errorf("invalid DHCPv4 config: %w", err)
	}
	h.options = opts
	for _, o := range opts {
		if o.core {
			h.coreSize += 2 + len(o.value)
		}
	}
	pod := slices.DeleteFunc(slices.Clone(opts), func(o option) bool { return o.extra })
	if n := replySize(pod, 0); n > maxReplySize {
		return nil, fmt.Errorf("invalid DHCPv4 config: a reply with all pod options takes %d bytes, more than %d", n, maxReplySize)
	}
	return h, nil
}

// buildOptions encodes the reply options in priority order: the lease, the
// addressing and routing the guest cannot work without, then names, then the
// VMI extras.
func buildOptions(cfg *Config, log *slog.Logger) ([]option, error) {
	opts := []option{
		{code: optLeaseTime, value: seconds(cfg.LeaseTime), lease: true, core: true},
		{code: optRenewalTime, value: seconds(cfg.RenewTime), lease: true, core: true},
		{code: optRebindingTime, value: seconds(cfg.RebindTime), lease: true, core: true},
		{code: optSubnetMask, value: netmask(cfg.Address.Bits()), core: true},
	}
	gw := defaultGateway(cfg)
	if gw.IsValid() {
		opts = append(opts, option{code: optRouter, value: ipList(gw), core: true})
	}
	if routes := classlessRoutes(cfg, gw); len(routes) > 0 {
		b, err := encodeClasslessRoutes(routes)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option{code: optClasslessRoutes, value: b, core: true})
	}
	if len(cfg.DNS) > 0 {
		opts = append(opts, option{code: optDNS, value: ipList(cfg.DNS...), core: true})
	}
	if cfg.MTU != 0 {
		opts = append(opts, option{code: optInterfaceMTU, value: []byte{byte(cfg.MTU >> 8), byte(cfg.MTU)}, core: true})
	}
	if cfg.DomainName != "" {
		opts = append(opts, option{code: optDomainName, value: []byte(cfg.DomainName)})
	}
	if cfg.Hostname != "" {
		opts = append(opts, option{code: optHostName, value: []byte(cfg.Hostname)})
	}
	if len(cfg.Search) > 0 {
		b, dropped, err := encodeSearch(cfg.Search)
		if err != nil {
			return nil, err
		}
		if len(dropped) > 0 {
			log.Warn("search domains left out of DHCPv4 option 119 (255-byte limit)", "dropped", dropped)
		}
		if len(b) > 0 {
			opts = append(opts, option{code: optDomainSearch, value: b})
		}
	}
	for _, e := range cfg.Extra {
		opts = append(opts, option{code: e.Code, value: bytes.Clone(e.Value), extra: true})
	}
	return opts, nil
}

// replySize is the DHCP payload size of a reply carrying opts plus 53, 54,
// END and echoed bytes of other options.
func replySize(opts []option, echoed int) int {
	n := headerSize + 3 + 2 + 4 + 1 + echoed
	for _, o := range opts {
		n += 2 + len(o.value)
	}
	return n
}

// wireLen is the size of an option value on the wire, split into 255-byte
// instances as RFC 3396 does.
func wireLen(v []byte) int {
	if len(v) == 0 {
		return 2
	}
	return len(v) + 2*((len(v)+maxOptionLen-1)/maxOptionLen)
}

// Handle answers one decoded request: the reply (nil for none) and where it
// goes. It is the wire path (a Session's Answer) for a caller holding an
// insomniacslk/dhcp message: req is encoded, answered and the reply
// decoded. It never panics on any request FromBytes accepts.
func (h *Handler) Handle(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Dest) {
	if req == nil || req.Options == nil {
		return nil, Dest{Drop: serve.Malformed, Detail: "no options"}
	}
	s := h.NewSession()
	out, d, err := s.Answer(req.ToBytes())
	if err != nil {
		return nil, Dest{Drop: serve.Malformed, Detail: err.Error()}
	}
	if out == nil {
		return nil, d
	}
	r, err := dhcpv4.FromBytes(out)
	if err != nil {
		panic("dhcp4: a reply that does not parse: " + err.Error()) // programmer invariant: appendReply writes valid messages
	}
	return r, d
}

// Session answers requests on the wire, one at a time, reusing one parsed
// request and one reply buffer: answering allocates nothing. One goroutine
// uses a Session (a server's loop); the Handler behind it is shared.
type Session struct {
	h   *Handler
	req message
	r   reply
	out []byte
}

// NewSession returns a Session answering with h.
func (h *Handler) NewSession() *Session {
	return &Session{h: h, r: reply{opts: make([]kv, 0, len(h.options)+5)}, out: make([]byte, 0, maxReplySize)}
}

// Answer parses one request and answers it: the reply's bytes (nil for
// none; valid until the next Answer) and where it goes. err is set, and
// nothing else, when b is not a DHCP message.
func (s *Session) Answer(b []byte) ([]byte, Dest, error) {
	if err := s.req.parse(b); err != nil {
		return nil, Dest{}, err
	}
	ok, d := s.h.answer(&s.req, &s.r)
	if !ok {
		return nil, d, nil
	}
	s.out = appendReply(s.out[:0], &s.req, &s.r, s.h.vmMAC)
	return s.out, d, nil
}

// answer builds the reply to req into r, reporting whether there is one,
// and where it goes.
func (h *Handler) answer(req *message, r *reply) (bool, Dest) {
	if reason, detail := h.check(req); reason != "" {
		return false, Dest{Drop: reason, Detail: detail}
	}
	switch mt := req.messageType(); mt {
	case typeDiscover:
		return true, h.reply(req, r, typeOffer)
	case typeRequest:
		return h.request(req, r)
	case typeDecline:
		return false, h.decline(req)
	case typeRelease:
		h.log.Debug("DHCPv4 RELEASE", "client", req.ciaddr())
		return false, Dest{}
	case typeInform:
		d := h.reply(req, r, typeAck)
		if ci := req.ciaddr(); !ci.IsUnspecified() && ci != h.addr {
			d.Stale = ci
		}
		return true, d
	default:
		return false, Dest{Drop: serve.NotRequest, Detail: "message type " + typeName(mt) + " is not a client's request"}
	}
}

// check returns why req must be dropped, or "".
func (h *Handler) check(req *message) (serve.Reason, string) {
	switch chaddr := req.chaddr(); {
	case req.op() != opBootRequest:
		return serve.NotRequest, "not a BOOTREQUEST"
	case req.htype() != htypeEthernet || len(chaddr) != len(h.vmMAC):
		return serve.Malformed, "not an Ethernet client"
	case [6]byte(chaddr) != h.vmMAC:
		return serve.NotVM, "chaddr " + net.HardwareAddr(chaddr).String() + " is not the VM's"
	}
	return "", ""
}

// request answers a DHCPREQUEST in each client state of RFC 2131 section 4.3.2.
func (h *Handler) request(req *message, r *reply) (bool, Dest) {
	sid, hasSID, okSID := req.addrOption(optServerID)
	requested, hasReq, okReq := req.addrOption(optRequestedIP)
	ciaddr := req.ciaddr()
	switch {
	case !okSID || !okReq:
		return false, Dest{Drop: serve.Malformed, Detail: "option 50 or 54 is not an IPv4 address"}
	case hasSID && sid != h.sid:
		// SELECTING: the client chose another server's offer.
		return false, Dest{Drop: serve.OtherServer, Detail: "server identifier " + sid.String()}
	case !hasReq && ciaddr.IsUnspecified():
		return false, Dest{Drop: serve.Malformed, Detail: "a REQUEST with neither option 50 nor ciaddr"}
	}
	// SELECTING and INIT-REBOOT name the address in option 50, RENEWING and
	// REBINDING in ciaddr; both must be the pod's when present.
	if (hasReq && requested != h.addr) || (!ciaddr.IsUnspecified() && ciaddr != h.addr) {
		if h.log.Enabled(context.Background(), slog.LevelDebug) {
			h.log.Debug("DHCPv4 NAK", "requested", requested, "ciaddr", ciaddr, "binding", h.addr)
		}
		d := h.nak(req, r)
		switch {
		case !ciaddr.IsUnspecified() && ciaddr != h.addr: // RENEWING, REBINDING
			d.Stale = ciaddr
		case !hasSID: // INIT-REBOOT: the lease the client remembers
			d.Stale = requested
		}
		return true, d
	}
	return true, h.reply(req, r, typeAck)
}

// decline logs a DHCPDECLINE: the guest found its address in use, which for a
// pod's own address means something else on the link answers ARP for it.
// It is logged loudly at most once per loudlog.Interval: a guest repeating it
// must not flood the log.
func (h *Handler) decline(req *message) Dest {
	sid, hasSID, _ := req.addrOption(optServerID)
	if hasSID && sid != h.sid {
		return Dest{Drop: serve.OtherServer, Detail: "server identifier " + sid.String()}
	}
	requested, _, _ := req.addrOption(optRequestedIP)
	const msg = "the VM declined its DHCPv4 address: another host answers ARP for it " +
		"(is net.ipv4.conf.all.arp_ignore=1 set in the pod network namespace?)"
	attrs := []any{"address", requested, "binding", h.addr, "mac", net.HardwareAddr(req.chaddr()).String()}
	if ok, held := h.declines.Allow(time.Now()); ok {
		h.log.Error(msg, append(attrs, "alsoSinceLastLogged", held)...)
	} else {
		h.log.Debug(msg, attrs...)
	}
	return Dest{}
}

// start begins the reply of type mt to req (RFC 2131 section 4.3.1, table
// 3): 53 and 54, and the echoed client identifier (RFC 6842) and relay
// agent information (RFC 3046 section 2.2), unless they are so big that
// the core options would not fit: then the reply is more use without
// them. It returns the wire size of the echoed options.
func (h *Handler) start(req *message, r *reply, mt byte) int {
	*r = reply{typ: mt, flags: req.flags(), opts: r.opts[:0]}
	r.set(optMessageType, typeValues[mt:mt+1])
	r.set(optServerID, h.sidOpt)
	echoed := 0
	for _, c := range []uint8{optClientID, optRelayAgentInfo} {
		v, ok := req.option(c)
		if ok && replySize(nil, echoed+wireLen(v))+h.coreSize <= maxReplySize {
			r.set(c, v)
			echoed += wireLen(v)
		}
	}
	return echoed
}

// typeValues holds every message type's option 53 value, so that a reply
// refers to one without allocating.
var typeValues = [...]byte{0, 1, 2, 3, 4, 5, 6, 7, 8}

// reply builds an OFFER or an ACK (to a REQUEST or an INFORM) with every
// option that fits in maxReplySize.
func (h *Handler) reply(req *message, r *reply, mt byte) Dest {
	inform := req.messageType() == typeInform
	echoed := h.start(req, r, mt)
	switch {
	case inform:
		r.ciaddr = req.ciaddr()
	case mt == typeAck:
		r.ciaddr, r.yiaddr = req.ciaddr(), h.addr
	default:
		r.yiaddr = h.addr
	}
	prl, hasPRL := req.option(optParamRequestList)
	room := maxReplySize - replySize(nil, echoed)
	for _, o := range h.options {
		if (inform && o.lease) || (o.extra && hasPRL && bytes.IndexByte(prl, o.code) < 0) {
			continue
		}
		if need := 2 + len(o.value); need <= room {
			r.set(o.code, o.value)
			room -= need
		}
	}
	return h.dest(req, r, false)
}

// nak builds a DHCPNAK: 53, 54, 56 and the echoed client identifier, no
// addresses (RFC 2131 section 4.3.1, table 3).
func (h *Handler) nak(req *message, r *reply) Dest {
	echoed := h.start(req, r, typeNak)
	if echoed+2+len(nakMessage) <= maxReplySize-replySize(nil, 0) {
		r.set(optMessage, nakMessage)
	}
	return h.dest(req, r, true)
}

// nakMessage is option 56 of every NAK.
var nakMessage = []byte("requested address is not this client's")

// dest addresses a reply as RFC 2131 section 4.1 says, in this order: to the
// relay agent when giaddr is set (a NAK with the BROADCAST bit set, so the
// relay broadcasts it); to ciaddr when set, a NAK included; a NAK
// broadcast; broadcast when the client asked for it; else to yiaddr at
// chaddr.
//
// Section 4.1 broadcasts every NAK when giaddr is zero. A client renewing
// or rebinding an address of another pod (after a migration) may listen on
// that address alone: dhcpcd's socket is bound to it while it renews, so it
// misses a broadcast NAK until it rebinds at T2. The link is the VM's
// alone, and chaddr is the VM's MAC: the NAK goes to ciaddr at that MAC,
// which every client hears (through the UDP transport every reply is
// broadcast on the bridge anyway: udpRoute).
func (h *Handler) dest(req *message, r *reply, nak bool) Dest {
	giaddr, ciaddr := req.giaddr(), req.ciaddr()
	switch {
	case !giaddr.IsUnspecified():
		if nak {
			r.flags |= flagBroadcast
		}
		return Dest{Kind: DestRelay, IP: giaddr, Port: frame.PortDHCPv4Server}
	case nak && ciaddr.IsUnspecified():
		return broadcast()
	case !ciaddr.IsUnspecified():
		return Dest{Kind: DestUnicast, IP: ciaddr, Port: frame.PortDHCPv4Client, MAC: h.vmMAC}
	case req.flags()&flagBroadcast != 0:
		return broadcast()
	case r.yiaddr.IsValid() && !r.yiaddr.IsUnspecified():
		return Dest{Kind: DestUnicast, IP: r.yiaddr, Port: frame.PortDHCPv4Client, MAC: h.vmMAC}
	default:
		return broadcast()
	}
}

// limitedBroadcast is 255.255.255.255 (RFC 919).
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func broadcast() Dest {
	return Dest{Kind: DestBroadcast, IP: limitedBroadcast, Port: frame.PortDHCPv4Client, MAC: frame.Broadcast}
}
