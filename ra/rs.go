package ra

import (
	"errors"
	"net/netip"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// NDP numbers (RFC 4861 §4.1, §4.3, §4.6).
const (
	rsHeaderLen  = 8  // type, code, checksum, reserved
	nsLen        = 24 // type, code, checksum, reserved, target address
	optSourceLLA = 1
)

// Reasons a frame from the VM is not a valid Router Solicitation.
var (
	errNotFromVM   = errors.New("frame not sent by the VM")
	errNotRS       = errors.New("not a router solicitation")
	errInvalidRS   = errors.New("invalid router solicitation")
	allNodes       = netip.MustParseAddr("ff02::1")
	allNodesMAC    = frame.MulticastMAC(allNodes)
	unspecifiedIP6 = netip.IPv6Unspecified()
)

// frameEvent is what one frame from the VM means to the advertiser.
type frameEvent struct {
	spoke bool   // an IPv6 frame from the VM: the guest is alive
	rs    bool   // a valid RS: reply to from
	from  target // the zero target for an RS from ::
	// src is the IPv6 source of the VM's ICMPv6 message: an address the
	// guest uses. For a Neighbor Solicitation (RFC 4861 §4.3), nsTarget is
	// the neighbour the guest looks for and nsMAC the frame's destination
	// (that neighbour's MAC when it is a unicast NUD probe).
	src      netip.Addr
	nsTarget netip.Addr
	nsMAC    frame.MAC
	// limitedRS counts the valid RSs the reader did not pass on since its
	// last event (over RSLimit).
	limitedRS int
}

// classify reads one frame received from the VM. Any IPv6 frame the VM sent
// counts as the guest speaking; a Router Solicitation valid per RFC 4861
// §6.1.1 asks for a reply. It never panics on any input.
func classify(b []byte, vmMAC frame.MAC) (frameEvent, error) {
	eth, err := frame.ParseEthernet(b)
	if err != nil {
		return frameEvent{}, err
	}
	if eth.Src != vmMAC || eth.Type != frame.EtherTypeIPv6 {
		return frameEvent{}, errNotFromVM
	}
	ev := frameEvent{spoke: true}
	p, err := frame.ParseICMP6(b)
	if err != nil {
		return ev, err
	}
	ev.src = p.Src
	if len(p.Payload) >= nsLen && p.Payload[0] == frame.ICMPv6NeighborSolicitation && p.HopLimit == frame.NDPHopLimit {
		ev.nsTarget, ev.nsMAC = netip.AddrFrom16([16]byte(p.Payload[8:24])), eth.Dst
	}
	if len(p.Payload) == 0 || p.Payload[0] != frame.ICMPv6RouterSolicitation {
		return ev, errNotRS
	}
	if err := validRS(p); err != nil {
		return ev, err
	}
	ev.rs = true
	if p.Src != unspecifiedIP6 {
		ev.from = target{IP: p.Src, MAC: eth.Src}
	}
	return ev, nil
}

// validRS applies RFC 4861 §6.1.1 to an RS whose checksum was verified:
// hop limit 255, code 0, at least 8 octets, every option of non-zero length
// within the message, no source link-layer option when the source is ::.
// A multicast source is no host's address (RFC 4291 §2.7).
func validRS(p frame.ICMP6) error {
	m := p.Payload
	if p.HopLimit != frame.NDPHopLimit || len(m) < rsHeaderLen || m[1] != 0 {
		return errInvalidRS
	}
	if p.Src.IsMulticast() {
		return errInvalidRS
	}
	for opts := m[rsHeaderLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return errInvalidRS
		}
		if opts[0] == optSourceLLA && p.Src == unspecifiedIP6 {
			return errInvalidRS
		}
		opts = opts[int(opts[1])*8:]
	}
	return nil
}
