package dhcp4

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// The DHCP message (RFC 2131 section 2, figure 1): a fixed BOOTP header,
// the magic cookie (section 3), then options (RFC 2132 section 2).
const (
	offOp     = 0
	offHtype  = 1
	offHlen   = 2
	offXID    = 4
	offFlags  = 10
	offCiaddr = 12
	offYiaddr = 16
	offGiaddr = 24
	offChaddr = 28
	offCookie = 236
	chaddrLen = 16

	optPad = 0
	optEnd = 255

	// bootpMinLen is the smallest BOOTP message (RFC 951): replies are
	// padded to it, as some relays drop shorter ones.
	bootpMinLen = 300

	opBootRequest = 1
	opBootReply   = 2
	htypeEthernet = 1 // RFC 1700
)

// magicCookie starts the options (RFC 2131 section 3).
var magicCookie = [4]byte{99, 130, 83, 99}

// DHCP message types (RFC 2132 section 9.6).
const (
	typeDiscover = 1
	typeOffer    = 2
	typeRequest  = 3
	typeDecline  = 4
	typeAck      = 5
	typeNak      = 6
	typeRelease  = 7
	typeInform   = 8
)

// typeName names a message type as insomniacslk/dhcp's
// dhcpv4.MessageType.String does, without allocating for a known one.
func typeName(t byte) string {
	switch t {
	case typeDiscover:
		return "DISCOVER"
	case typeOffer:
		return "OFFER"
	case typeRequest:
		return "REQUEST"
	case typeDecline:
		return "DECLINE"
	case typeAck:
		return "ACK"
	case typeNak:
		return "NAK"
	case typeRelease:
		return "RELEASE"
	case typeInform:
		return "INFORM"
	}
	return "unknown (" + strconv.Itoa(int(t)) + ")"
}

// Parse errors.
var (
	errShort     = errors.New("shorter than a DHCP message")
	errCookie    = errors.New("no DHCP magic cookie")
	errOptionLen = errors.New("an option runs past the end of the message")
	errNoEnd     = errors.New("no end option")
	errTooLong   = errors.New("longer than 65535 bytes")
)

// span is where the first instance of an option lies in the message, and
// whether more instances follow (RFC 3396: their values concatenate). It
// is current only when gen is the message's.
type span struct {
	off, end uint16
	more     bool
	gen      uint32
}

// message is a DHCP message read in place: the fixed fields straight from
// its bytes and an index of its options. It aliases the bytes it read, and
// one message is reused for every request (parse resets it), so reading
// a request allocates nothing.
type message struct {
	b    []byte
	gen  uint32
	opts [256]span
	// cat holds the values of options sent in several instances (RFC
	// 3396), concatenated: each lookup appends a region of its own, so a
	// value stays valid until the next parse.
	cat []byte
}

// parse reads b as a DHCP message: the header, the cookie and options up to
// the end option, as insomniacslk/dhcp's dhcpv4.FromBytes accepts them
// (pads skipped, repeated options concatenated, bytes after the end option
// ignored, the end option required after any option).
func (m *message) parse(b []byte) error {
	m.gen++
	m.b, m.cat = nil, m.cat[:0]
	switch {
	case len(b) < offCookie+len(magicCookie):
		return errShort
	case len(b) > 0xffff:
		return errTooLong
	case [4]byte(b[offCookie:]) != magicCookie:
		return errCookie
	case len(b) == offCookie+len(magicCookie):
		m.b = b // no options at all: no end option needed either
		return nil
	}
	for i := offCookie + len(magicCookie); i < len(b); {
		code := b[i]
		switch code {
		case optPad:
			i++
			continue
		case optEnd:
			m.b = b
			return nil
		}
		if i+1 >= len(b) || i+2+int(b[i+1]) > len(b) {
			return errOptionLen
		}
		end := i + 2 + int(b[i+1])
		if s := &m.opts[code]; s.gen == m.gen {
			s.more = true
		} else {
			*s = span{off: uint16(i + 2), end: uint16(end), gen: m.gen}
		}
		i = end
	}
	return errNoEnd
}

func (m *message) op() byte      { return m.b[offOp] }
func (m *message) htype() byte   { return m.b[offHtype] }
func (m *message) xid() [4]byte  { return [4]byte(m.b[offXID:]) }
func (m *message) flags() uint16 { return binary.BigEndian.Uint16(m.b[offFlags:]) }
func (m *message) ciaddr() netip.Addr {
	return netip.AddrFrom4([4]byte(m.b[offCiaddr:]))
}
func (m *message) giaddr() netip.Addr {
	return netip.AddrFrom4([4]byte(m.b[offGiaddr:]))
}

// chaddr is the client hardware address, hlen bytes (at most 16).
func (m *message) chaddr() []byte {
	return m.b[offChaddr : offChaddr+min(int(m.b[offHlen]), chaddrLen)]
}

// option returns the value of option code, all its instances concatenated
// in order (RFC 3396 section 7), and whether it is present.
func (m *message) option(code uint8) ([]byte, bool) {
	s := m.opts[code]
	if s.gen != m.gen {
		return nil, false
	}
	if !s.more {
		return m.b[s.off:s.end], true
	}
	start := len(m.cat)
	for i := offCookie + len(magicCookie); i < len(m.b); {
		c := m.b[i]
		if c == optPad {
			i++
			continue
		}
		if c == optEnd {
			break
		}
		end := i + 2 + int(m.b[i+1])
		if c == code {
			m.cat = append(m.cat, m.b[i+2:end]...)
		}
		i = end
	}
	return m.cat[start:len(m.cat):len(m.cat)], true
}

// messageType is option 53's value: 0 when absent or not one byte long.
func (m *message) messageType() byte {
	if v, ok := m.option(optMessageType); ok && len(v) == 1 {
		return v[0]
	}
	return 0
}

// addrOption returns the IPv4 address in option code, ok=false when absent,
// valid=false when present but not 4 bytes.
func (m *message) addrOption(code uint8) (a netip.Addr, ok, valid bool) {
	v, ok := m.option(code)
	if !ok {
		return netip.Addr{}, false, true
	}
	if len(v) != 4 {
		return netip.Addr{}, true, false
	}
	return netip.AddrFrom4([4]byte(v)), true, true
}

// kv is one option of a reply being written.
type kv struct {
	code  uint8
	value []byte
}

// reply is a reply being built: its header fields and options. It is reused
// for every reply.
type reply struct {
	typ            byte
	flags          uint16
	ciaddr, yiaddr netip.Addr
	opts           []kv
}

// set adds option code with value v.
func (r *reply) set(code uint8, v []byte) { r.opts = append(r.opts, kv{code, v}) }

// appendReply appends the reply to req as a BOOTREPLY (RFC 2131 section
// 4.3.1, table 3) from the VM's chaddr: xid, flags and giaddr copied, the
// options in code order (as insomniacslk/dhcp writes them), each longer
// than 255 bytes split (RFC 3396), then the end option and padding to
// bootpMinLen.
func appendReply(out []byte, req *message, r *reply, chaddr [6]byte) []byte {
	start := len(out)
	out = append(out, opBootReply, htypeEthernet, byte(len(chaddr)), 0)
	out = append(out, req.b[offXID:offXID+4]...)
	out = append(out, 0, 0, byte(r.flags>>8), byte(r.flags))
	out = appendAddr(out, r.ciaddr)
	out = appendAddr(out, r.yiaddr)
	out = append(out, 0, 0, 0, 0) // siaddr
	out = append(out, req.b[offGiaddr:offGiaddr+4]...)
	out = append(out, chaddr[:]...)
	out = append(out, make([]byte, chaddrLen-len(chaddr)+64+128)...) // chaddr padding, sname, file
	out = append(out, magicCookie[:]...)
	sortOptions(r.opts)
	for _, o := range r.opts {
		out = appendOption(out, o.code, o.value)
	}
	out = append(out, optEnd)
	for len(out)-start < bootpMinLen {
		out = append(out, optPad)
	}
	return out
}

// sortOptions puts opts in code order, stably. They come nearly in order
// (the handler sets most in code order), where an insertion sort is a
// single pass, and cheaper than slices.SortFunc's pattern-defeating sort
// on a reply's dozen or more options.
func sortOptions(opts []kv) {
	for i := 1; i < len(opts); i++ {
		for j := i; j > 0 && opts[j].code < opts[j-1].code; j-- {
			opts[j], opts[j-1] = opts[j-1], opts[j]
		}
	}
}

// appendOption appends one option, split into 255-byte instances.
func appendOption(out []byte, code uint8, v []byte) []byte {
	if len(v) == 0 {
		return append(out, code, 0)
	}
	for len(v) > 0 {
		n := min(len(v), maxOptionLen)
		out = append(out, code, byte(n))
		out = append(out, v[:n]...)
		v = v[n:]
	}
	return out
}

// appendAddr appends an IPv4 address, 0.0.0.0 for the zero Addr.
func appendAddr(out []byte, a netip.Addr) []byte {
	if !a.Is4() {
		return append(out, 0, 0, 0, 0)
	}
	b := a.As4()
	return append(out, b[:]...)
}
