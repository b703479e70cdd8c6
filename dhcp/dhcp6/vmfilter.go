package dhcp6

import (
	"encoding/binary"
	"net/netip"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// vmFilter decides whether a request that reached a UDP socket on the bridge
// came from the VM. The bridge also carries the pod's uplink, so every
// client there hears our server: only the VM's MAC, as the link-layer
// address in a DUID-LL or DUID-LLT (RFC 8415 §11.2, §11.4), in a relay's
// Client Link-Layer Address option (RFC 6939), or in an EUI-64 link-local
// source (RFC 4291 appendix A), identifies it. A request is answered when
// some of these evidences name the VM and none names another host.
type vmFilter struct {
	mac frame.MAC
}

// The Ethernet hardware type (RFC 826), and the fixed fields of a DUID-LLT
// and a DUID-LL (RFC 8415 §11.2, §11.4).
const (
	hwEthernet   = 1
	duidLLTFixed = 8 // type, hardware type, time
	duidLLFixed  = 4 // type, hardware type
)

// fromVM reports whether req, sent from src, is the VM's; reason says why
// not.
func (f vmFilter) fromVM(src netip.Addr, req *request) (bool, string) {
	match, other := 0, 0
	count := func(mac []byte, ok bool) {
		switch {
		case !ok:
		case string(mac) == string(f.mac[:]):
			match++
		default:
			other++
		}
	}
	countEUI64 := func(a netip.Addr) {
		if m, ok := frame.MACFromLinkLocal(a); ok {
			count(m[:], true)
		}
	}
	countEUI64(src)
	if req.relayed {
		if !req.ok {
			return false, "malformed relay message"
		}
		last := req.relays[len(req.relays)-1]
		countEUI64(netip.AddrFrom16(last.peer))
		if v, ok := first(last.opts, optClientLinkLayer); ok && len(v) >= 2 && binary.BigEndian.Uint16(v) == hwEthernet {
			count(v[2:], true)
		}
	}
	if req.ok {
		cid, _ := req.msg.option(optClientID)
		count(macFromDUID(cid))
	}
	switch {
	case other > 0:
		return false, "a link-layer address in the request is not the VM's"
	case match == 0:
		return false, "ambiguous: no link-layer address in the request (DUID, EUI-64 source) names the VM"
	}
	return true, ""
}

// macFromDUID is the Ethernet address inside a DUID-LL or DUID-LLT.
func macFromDUID(d []byte) ([]byte, bool) {
	var fixed int
	switch {
	case len(d) < 2:
		return nil, false
	case binary.BigEndian.Uint16(d) == duidTypeLLT:
		fixed = duidLLTFixed
	case binary.BigEndian.Uint16(d) == duidTypeLL:
		fixed = duidLLFixed
	default:
		return nil, false
	}
	if len(d) != fixed+len(frame.MAC{}) || binary.BigEndian.Uint16(d[2:]) != hwEthernet {
		return nil, false
	}
	return d[fixed:], true
}
