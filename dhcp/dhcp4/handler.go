package dhcp4

import (
	"bytes"
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
	"github.com/insomniacslk/dhcp/iana"
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
	vmMAC      frame.MAC
	chaddr     net.HardwareAddr // vmMAC in replies' chaddr field
	serviceMAC frame.MAC
	sid        netip.Addr
	sidOpt     []byte // option 54 value
	addr       netip.Addr
	yiaddr     net.IP
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
	addr := cfg.Address.Addr().As4()
	h := &Handler{
		log:        log,
		vmMAC:      cfg.VMMAC,
		chaddr:     cfg.VMMAC.HardwareAddr(),
		serviceMAC: cfg.ServiceMAC,
		sid:        cfg.ServerID,
		sidOpt:     sid[:],
		addr:       cfg.Address.Addr(),
		yiaddr:     net.IP(addr[:]),
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

// Handle answers one request. It never blocks and never panics on any
// request FromBytes accepts.
func (h *Handler) Handle(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Dest) {
	if reason, detail := h.check(req); reason != "" {
		return nil, Dest{Drop: reason, Detail: detail}
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		return h.reply(req, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		return h.request(req)
	case dhcpv4.MessageTypeDecline:
		return nil, h.decline(req)
	case dhcpv4.MessageTypeRelease:
		h.log.Debug("DHCPv4 RELEASE", "client", req.ClientIPAddr)
		return nil, Dest{}
	case dhcpv4.MessageTypeInform:
		r, d := h.reply(req, dhcpv4.MessageTypeAck)
		if ci := addr4(req.ClientIPAddr); !ci.IsUnspecified() && ci != h.addr {
			d.Stale = ci
		}
		return r, d
	default:
		return nil, Dest{Drop: serve.NotRequest, Detail: "message type " + mt.String() + " is not a client's request"}
	}
}

// check returns why req must be dropped, or "".
func (h *Handler) check(req *dhcpv4.DHCPv4) (serve.Reason, string) {
	switch {
	case req == nil || req.Options == nil:
		return serve.Malformed, "no options"
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return serve.NotRequest, "not a BOOTREQUEST"
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != len(h.vmMAC):
		return serve.Malformed, "not an Ethernet client"
	case !bytes.Equal(req.ClientHWAddr, h.vmMAC[:]):
		return serve.NotVM, "chaddr " + req.ClientHWAddr.String() + " is not the VM's"
	case !is4(req.ClientIPAddr) || !is4(req.GatewayIPAddr):
		return serve.Malformed, "ciaddr or giaddr is not an IPv4 address"
	}
	return "", ""
}

// is4 reports whether ip is an IPv4 address or nil (0.0.0.0 on the wire).
func is4(ip net.IP) bool { return ip == nil || ip.To4() != nil }

// addr4 converts a header address field that passed is4.
func addr4(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	return netip.IPv4Unspecified()
}

// addrOption returns the IPv4 address in option code, ok=false when absent,
// valid=false when present but not 4 bytes.
func addrOption(req *dhcpv4.DHCPv4, code uint8) (a netip.Addr, ok, valid bool) {
	v, ok := req.Options[code]
	if !ok {
		return netip.Addr{}, false, true
	}
	if len(v) != 4 {
		return netip.Addr{}, true, false
	}
	return netip.AddrFrom4([4]byte(v)), true, true
}

// request answers a DHCPREQUEST in each client state of RFC 2131 section 4.3.2.
func (h *Handler) request(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Dest) {
	sid, hasSID, okSID := addrOption(req, optServerID)
	requested, hasReq, okReq := addrOption(req, optRequestedIP)
	ciaddr := addr4(req.ClientIPAddr)
	switch {
	case !okSID || !okReq:
		return nil, Dest{Drop: serve.Malformed, Detail: "option 50 or 54 is not an IPv4 address"}
	case hasSID && sid != h.sid:
		// SELECTING: the client chose another server's offer.
		return nil, Dest{Drop: serve.OtherServer, Detail: "server identifier " + sid.String()}
	case !hasReq && ciaddr.IsUnspecified():
		return nil, Dest{Drop: serve.Malformed, Detail: "a REQUEST with neither option 50 nor ciaddr"}
	}
	// SELECTING and INIT-REBOOT name the address in option 50, RENEWING and
	// REBINDING in ciaddr; both must be the pod's when present.
	if (hasReq && requested != h.addr) || (!ciaddr.IsUnspecified() && ciaddr != h.addr) {
		h.log.Debug("DHCPv4 NAK", "requested", requested, "ciaddr", ciaddr, "binding", h.addr)
		r, d := h.nak(req)
		switch {
		case !ciaddr.IsUnspecified() && ciaddr != h.addr: // RENEWING, REBINDING
			d.Stale = ciaddr
		case !hasSID: // INIT-REBOOT: the lease the client remembers
			d.Stale = requested
		}
		return r, d
	}
	return h.reply(req, dhcpv4.MessageTypeAck)
}

// decline logs a DHCPDECLINE: the guest found its address in use, which for a
// pod's own address means something else on the link answers ARP for it.
// It is logged loudly at most once per loudlog.Interval: a guest repeating it
// must not flood the log.
func (h *Handler) decline(req *dhcpv4.DHCPv4) Dest {
	sid, hasSID, _ := addrOption(req, optServerID)
	if hasSID && sid != h.sid {
		return Dest{Drop: serve.OtherServer, Detail: "server identifier " + sid.String()}
	}
	requested, _, _ := addrOption(req, optRequestedIP)
	const msg = "the VM declined its DHCPv4 address: another host answers ARP for it " +
		"(is net.ipv4.conf.all.arp_ignore=1 set in the pod network namespace?)"
	attrs := []any{"address", requested, "binding", h.addr, "mac", req.ClientHWAddr.String()}
	if ok, held := h.declines.Allow(time.Now()); ok {
		h.log.Error(msg, append(attrs, "alsoSinceLastLogged", held)...)
	} else {
		h.log.Debug(msg, attrs...)
	}
	return Dest{}
}

// newReply is the BOOTREPLY skeleton of RFC 2131 section 4.3.1, table 3.
func (h *Handler) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, n int) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        iana.HWTypeEthernet,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero.To4(),
		YourIPAddr:    net.IPv4zero.To4(),
		ServerIPAddr:  net.IPv4zero.To4(),
		GatewayIPAddr: req.GatewayIPAddr,
		ClientHWAddr:  h.chaddr,
		Options:       make(dhcpv4.Options, n+4),
	}
	r.Options[optMessageType] = []byte{byte(mt)}
	r.Options[optServerID] = h.sidOpt
	// RFC 6842: echo the client identifier; RFC 3046 section 2.2: echo the
	// relay agent information. Unless they are so big that the core options
	// would not fit: then the reply is more use without them.
	echoed := 0
	for _, c := range []uint8{optClientID, optRelayAgentInfo} {
		v, ok := req.Options[c]
		if ok && replySize(nil, echoed+wireLen(v))+h.coreSize <= maxReplySize {
			r.Options[c] = v
			echoed += wireLen(v)
		}
	}
	return r
}

// reply builds an OFFER or an ACK (to a REQUEST or an INFORM) with every
// option that fits in maxReplySize.
func (h *Handler) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, Dest) {
	inform := req.MessageType() == dhcpv4.MessageTypeInform
	r := h.newReply(req, mt, len(h.options))
	switch {
	case inform:
		r.ClientIPAddr = req.ClientIPAddr
	case mt == dhcpv4.MessageTypeAck:
		r.ClientIPAddr = req.ClientIPAddr
		r.YourIPAddr = h.yiaddr
	default:
		r.YourIPAddr = h.yiaddr
	}
	prl, hasPRL := req.Options[optParamRequestList]
	room := maxReplySize - replySize(nil, echoedLen(r))
	for _, o := range h.options {
		if (inform && o.lease) || (o.extra && hasPRL && bytes.IndexByte(prl, o.code) < 0) {
			continue
		}
		if need := 2 + len(o.value); need <= room {
			r.Options[o.code] = o.value
			room -= need
		}
	}
	return r, h.dest(req, r, false)
}

// echoedLen is the wire size of the options copied from the request.
func echoedLen(r *dhcpv4.DHCPv4) int {
	n := 0
	for _, c := range []uint8{optClientID, optRelayAgentInfo} {
		if v, ok := r.Options[c]; ok {
			n += wireLen(v)
		}
	}
	return n
}

// nak builds a DHCPNAK: 53, 54, 56 and the echoed client identifier, no
// addresses (RFC 2131 section 4.3.1, table 3).
func (h *Handler) nak(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Dest) {
	r := h.newReply(req, dhcpv4.MessageTypeNak, 1)
	msg := []byte("requested address is not this client's")
	if echoedLen(r)+2+len(msg) <= maxReplySize-replySize(nil, 0) {
		r.Options[optMessage] = msg
	}
	return r, h.dest(req, r, true)
}

// dest addresses a reply as RFC 2131 section 4.1 says, in this order: to the
// relay agent when giaddr is set (a NAK with the BROADCAST bit set, so the
// relay broadcasts it); a NAK broadcast; to ciaddr when set; broadcast when
// the client asked for it; else to yiaddr at chaddr.
func (h *Handler) dest(req, r *dhcpv4.DHCPv4, nak bool) Dest {
	giaddr := addr4(req.GatewayIPAddr)
	ciaddr := addr4(req.ClientIPAddr)
	yiaddr := addr4(r.YourIPAddr)
	switch {
	case !giaddr.IsUnspecified():
		if nak {
			r.Flags |= flagBroadcast
		}
		return Dest{Kind: DestRelay, IP: giaddr, Port: frame.PortDHCPv4Server}
	case nak:
		return broadcast()
	case !ciaddr.IsUnspecified():
		return Dest{Kind: DestUnicast, IP: ciaddr, Port: frame.PortDHCPv4Client, MAC: h.vmMAC}
	case req.Flags&flagBroadcast != 0:
		return broadcast()
	case !yiaddr.IsUnspecified():
		return Dest{Kind: DestUnicast, IP: yiaddr, Port: frame.PortDHCPv4Client, MAC: h.vmMAC}
	default:
		return broadcast()
	}
}

// limitedBroadcast is 255.255.255.255 (RFC 919).
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func broadcast() Dest {
	return Dest{Kind: DestBroadcast, IP: limitedBroadcast, Port: frame.PortDHCPv4Client, MAC: frame.Broadcast}
}
