package dhcp6

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Message types (RFC 8415 §7.3).
const (
	typeSolicit            = 1
	typeAdvertise          = 2
	typeRequest            = 3
	typeConfirm            = 4
	typeRenew              = 5
	typeRebind             = 6
	typeReply              = 7
	typeRelease            = 8
	typeDecline            = 9
	typeInformationRequest = 11
	typeRelayForward       = 12
	typeRelayReply         = 13
)

// Option codes (RFC 8415 §21, RFC 3646, RFC 4704, RFC 6939).
const (
	optClientID        = 1
	optServerID        = 2
	optIANA            = 3
	optIATA            = 4
	optIAAddr          = 5
	optPreference      = 7
	optRelayMsg        = 9
	optStatusCode      = 13
	optRapidCommit     = 14
	optInterfaceID     = 18
	optDNS             = 23
	optDomainList      = 24
	optIAPD            = 25
	optInfoRefreshTime = 32
	optFQDN            = 39
	optClientLinkLayer = 79
)

// Status codes (RFC 8415 §21.13).
const (
	statusSuccess       = 0
	statusNoAddrsAvail  = 2
	statusNotOnLink     = 4
	statusNoPrefixAvail = 6
)

// Wire sizes (RFC 8415 §8, §9, §21.4 to §21.6, §21.21).
const (
	headerLen      = 4  // type, transaction ID
	relayHeaderLen = 34 // type, hop count, link and peer addresses
	optHeaderLen   = 4  // code, length
	iaNALen        = 12 // IAID, T1, T2
	iaTALen        = 4  // IAID
	iaAddrLen      = 24 // address, preferred and valid lifetimes
)

// Parse errors.
var (
	errShort     = errors.New("shorter than its header")
	errOptionLen = errors.New("an option runs past the end of its message")
	errIA        = errors.New("a malformed IA option")
	errDUID      = errors.New("a client or server identifier that is not a DUID")
)

// options iterates over a run of options (RFC 8415 §21.1). A zero value
// iterates over nothing; a run checked by validOptions yields every
// option.
type options struct{ b []byte }

// next returns the next option; ok is false at the end.
func (o *options) next() (code uint16, v []byte, ok bool) {
	if len(o.b) < optHeaderLen {
		return 0, nil, false
	}
	code, n := binary.BigEndian.Uint16(o.b), int(binary.BigEndian.Uint16(o.b[2:]))
	if optHeaderLen+n > len(o.b) {
		return 0, nil, false
	}
	v, o.b = o.b[optHeaderLen:optHeaderLen+n:optHeaderLen+n], o.b[optHeaderLen+n:]
	return code, v, true
}

// validOptions checks that b is a run of whole options and nothing else,
// as insomniacslk/dhcp's option parser requires.
func validOptions(b []byte) error {
	for len(b) >= optHeaderLen {
		n := optHeaderLen + int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b) {
			return errOptionLen
		}
		b = b[n:]
	}
	if len(b) != 0 {
		return errOptionLen
	}
	return nil
}

// first returns the value of the first option code in b.
func first(b []byte, code uint16) ([]byte, bool) {
	o := options{b}
	for c, v, ok := o.next(); ok; c, v, ok = o.next() {
		if c == code {
			return v, true
		}
	}
	return nil, false
}

// message is a client message read in place (RFC 8415 §8).
type message struct {
	typ  byte
	xid  [3]byte
	opts []byte
}

func (m *message) option(code uint16) ([]byte, bool) { return first(m.opts, code) }

// relay is one Relay-forward (or Relay-reply) read in place (RFC 8415 §9).
type relay struct {
	typ, hops  byte
	link, peer [16]byte
	opts       []byte
}

// request is a received message read in place: the relay messages around
// it, outermost first, and the client message at its core. One request is
// reused for every message: reading one allocates nothing.
type request struct {
	relays []relay // at most maxRelayDepth+1
	msg    message
	// ok reports a client message at the core: the relays (if any) are
	// Relay-forwards, each holding a Relay Message option, at most
	// maxRelayDepth+1 deep (RFC 8415 §7.6, HOP_COUNT_LIMIT).
	ok bool
	// typ is the message's type, as far down the relays as they go (a
	// relay's own type when it holds no message).
	typ byte
	// relayed reports a relay message at the top.
	relayed bool
}

// xid is the client message's transaction ID as a number; 0 without one.
func (r *request) xid() uint32 {
	if !r.ok {
		return 0
	}
	x := r.msg.xid
	return uint32(x[0])<<16 | uint32(x[1])<<8 | uint32(x[2])
}

// parse reads b: a client message, or relay messages around one. It
// accepts every message insomniacslk/dhcp's dhcpv6.FromBytes accepts (and
// some it refuses for options this server never reads).
func (r *request) parse(b []byte) error {
	r.relays, r.ok, r.msg = r.relays[:0], false, message{}
	r.typ = innerType(b)
	r.relayed = len(b) > 0 && (b[0] == typeRelayForward || b[0] == typeRelayReply)
	for {
		if len(b) < 1 {
			return errShort
		}
		if b[0] != typeRelayForward && b[0] != typeRelayReply {
			return r.parseMessage(b)
		}
		if len(b) < relayHeaderLen {
			return errShort
		}
		rl := relay{typ: b[0], hops: b[1], link: [16]byte(b[2:18]), peer: [16]byte(b[18:34]), opts: b[relayHeaderLen:]}
		if err := validOptions(rl.opts); err != nil {
			return err
		}
		inner, ok := first(rl.opts, optRelayMsg)
		if len(r.relays) == maxRelayDepth || rl.typ != typeRelayForward || !ok {
			return nil // no client message this server answers
		}
		r.relays = append(r.relays, rl)
		b = inner
	}
}

// innerType is the type of the message inside b's relay messages, looking
// at most maxRelayDepth+1 relays deep (a relay's own type when it holds no
// message, or the chain goes deeper); 0 for an empty message.
func innerType(b []byte) byte {
	for range maxRelayDepth + 1 {
		if len(b) < relayHeaderLen || (b[0] != typeRelayForward && b[0] != typeRelayReply) {
			break
		}
		inner, ok := first(b[relayHeaderLen:], optRelayMsg)
		if !ok || len(inner) == 0 {
			return b[0]
		}
		b = inner
	}
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// parseMessage reads the client message b (RFC 8415 §8) and checks its IA
// options (§21.4 to §21.6) as far as this server reads them.
func (r *request) parseMessage(b []byte) error {
	if len(b) < headerLen {
		return errShort
	}
	m := message{typ: b[0], xid: [3]byte(b[1:4]), opts: b[headerLen:]}
	if err := validOptions(m.opts); err != nil {
		return err
	}
	o := options{m.opts}
	for c, v, ok := o.next(); ok; c, v, ok = o.next() {
		if err := validIA(c, v); err != nil {
			return err
		}
		if (c == optClientID || c == optServerID) && !validDUID(v) {
			return errDUID
		}
	}
	r.msg, r.ok = m, true
	return nil
}

// DUID types (RFC 8415 §11.1) and the sizes of their fixed fields
// (§11.2 to §11.5).
const (
	duidTypeLLT  = 1
	duidTypeEN   = 2
	duidTypeLL   = 3
	duidTypeUUID = 4
)

// validDUID reports whether d is a DUID of its type (RFC 8415 §11.2 to
// §11.5; RFC 6355): a client or server identifier that is not one makes
// the message malformed, as insomniacslk/dhcp has it.
func validDUID(d []byte) bool {
	if len(d) < 2 {
		return false
	}
	n := len(d) - 2
	switch binary.BigEndian.Uint16(d) {
	case duidTypeLLT:
		return n >= 6 // hardware type, time
	case duidTypeEN:
		return n >= 4 // enterprise number
	case duidTypeLL:
		return n >= 2 // hardware type
	case duidTypeUUID:
		return n == 16
	}
	return true
}

// validIA checks an IA_NA, IA_TA or IA_PD option: its fixed fields, whole
// options inside, and whole IA Address options (§21.6).
func validIA(code uint16, v []byte) error {
	var fixed int
	switch code {
	case optIANA, optIAPD:
		fixed = iaNALen
	case optIATA:
		fixed = iaTALen
	default:
		return nil
	}
	if len(v) < fixed || validOptions(v[fixed:]) != nil {
		return errIA
	}
	if code == optIAPD {
		return nil
	}
	o := options{v[fixed:]}
	for c, a, ok := o.next(); ok; c, a, ok = o.next() {
		if c == optIAAddr && (len(a) < iaAddrLen || validOptions(a[iaAddrLen:]) != nil) {
			return errIA
		}
	}
	return nil
}

// iaView is one IA option read in place.
type iaView struct {
	id   [4]byte
	opts []byte // the options inside it
}

// ias iterates over the IA options code (IA_NA, IA_TA, IA_PD) of a message
// whose IAs validIA checked.
type ias struct {
	o     options
	code  uint16
	fixed int
}

func iasOf(m *message, code uint16) ias {
	fixed := iaNALen
	if code == optIATA {
		fixed = iaTALen
	}
	return ias{o: options{m.opts}, code: code, fixed: fixed}
}

func (it *ias) next() (iaView, bool) {
	for c, v, ok := it.o.next(); ok; c, v, ok = it.o.next() {
		if c == it.code {
			return iaView{id: [4]byte(v), opts: v[it.fixed:]}, true
		}
	}
	return iaView{}, false
}

// addrs iterates over the addresses of an IA's IA Address options.
type addrs struct{ o options }

func (a *addrs) next() (netip.Addr, bool) {
	for c, v, ok := a.o.next(); ok; c, v, ok = a.o.next() {
		if c == optIAAddr {
			return netip.AddrFrom16([16]byte(v)), true
		}
	}
	return netip.Addr{}, false
}

func (x iaView) addrs() addrs { return addrs{options{x.opts}} }

// writer appends DHCPv6 messages and options to one buffer, reused for
// every reply.
type writer struct{ b []byte }

// opt appends a whole option.
func (w *writer) opt(code uint16, v ...[]byte) {
	n := 0
	for _, p := range v {
		n += len(p)
	}
	w.b = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(w.b, code), uint16(n))
	for _, p := range v {
		w.b = append(w.b, p...)
	}
}

// begin appends an option's header and returns where its length goes:
// end(at) sets it once its value is written.
func (w *writer) begin(code uint16) int {
	w.b = binary.BigEndian.AppendUint16(w.b, code)
	at := len(w.b)
	w.b = append(w.b, 0, 0)
	return at
}

func (w *writer) end(at int) {
	binary.BigEndian.PutUint16(w.b[at:], uint16(len(w.b)-at-2))
}

// status appends a Status Code option (§21.13).
func (w *writer) status(code uint16, msg string) {
	at := w.begin(optStatusCode)
	w.b = binary.BigEndian.AppendUint16(w.b, code)
	w.b = append(w.b, msg...)
	w.end(at)
}

// iaAddr appends an IA Address option (§21.6) with the given lifetimes in
// seconds.
func (w *writer) iaAddr(a netip.Addr, preferred, valid uint32) {
	at := w.begin(optIAAddr)
	b := a.As16()
	w.b = append(w.b, b[:]...)
	w.b = binary.BigEndian.AppendUint32(w.b, preferred)
	w.b = binary.BigEndian.AppendUint32(w.b, valid)
	w.end(at)
}
