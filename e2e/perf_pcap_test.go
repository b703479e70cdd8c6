package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// pcapFrame is one captured frame and when it was captured.
type pcapFrame struct {
	At   time.Time
	Data []byte
}

// readPcap reads a pcap file (libpcap format, microsecond or nanosecond
// timestamps, either byte order) of Ethernet frames.
func readPcap(path string) ([]pcapFrame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: no pcap header", path)
	}
	var order binary.ByteOrder = binary.LittleEndian
	unit := time.Microsecond
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		unit = time.Nanosecond
	default:
		order = binary.BigEndian
		switch order.Uint32(b) {
		case 0xa1b2c3d4:
		case 0xa1b23c4d:
			unit = time.Nanosecond
		default:
			return nil, fmt.Errorf("%s: not a pcap file", path)
		}
	}
	if lt := order.Uint32(b[20:]); lt != 1 {
		return nil, fmt.Errorf("%s: link type %d, want Ethernet (1)", path, lt)
	}
	var out []pcapFrame
	for rest := b[24:]; len(rest) >= 16; {
		sec, frac, n := order.Uint32(rest), order.Uint32(rest[4:]), int(order.Uint32(rest[8:]))
		if 16+n > len(rest) {
			break // a capture stopped while writing
		}
		out = append(out, pcapFrame{At: time.Unix(int64(sec), int64(frac)*int64(unit)), Data: rest[16 : 16+n]})
		rest = rest[16+n:]
	}
	return out, nil
}

// addrEvent is one frame of an address exchange: who sent it, which
// protocol, and its message.
type addrEvent struct {
	At     time.Time
	Client bool   // sent by the guest
	Proto  string // "v4" (DHCPv4), "v6" (DHCPv6) or "nd" (RS, RA)
	Msg    string // DHCP message type name, "RS", "RA"
	XID    uint32
}

// classify reads the address-exchange frames of a capture: DHCPv4,
// DHCPv6, RS and RA, sent by the guest (vm) or to it.
func classifyFrames(frames []pcapFrame, vm frame.MAC) []addrEvent {
	var out []addrEvent
	for _, f := range frames {
		ev, ok := classifyFrame(f.Data, vm)
		if ok {
			ev.At = f.At
			out = append(out, ev)
		}
	}
	return out
}

func classifyFrame(b []byte, vm frame.MAC) (addrEvent, bool) {
	eth, err := frame.ParseEthernet(b)
	if err != nil {
		return addrEvent{}, false
	}
	ev := addrEvent{Client: eth.Src == vm}
	if !ev.Client && eth.Dst != vm && eth.Dst[0]&1 == 0 {
		return addrEvent{}, false
	}
	if u, err := frame.ParseUDP4(b); err == nil && (u.DstPort == 67 || u.DstPort == 68) && len(u.Payload) >= 240 {
		ev.Proto, ev.XID = "v4", binary.BigEndian.Uint32(u.Payload[4:])
		ev.Msg = dhcp4Type(u.Payload)
		return ev, ev.Msg != ""
	}
	if u, err := frame.ParseUDP6(b); err == nil && (u.DstPort == 546 || u.DstPort == 547) && len(u.Payload) >= 4 {
		ev.Proto, ev.XID = "v6", uint32(u.Payload[1])<<16|uint32(u.Payload[2])<<8|uint32(u.Payload[3])
		ev.Msg = dhcp6Names[u.Payload[0]]
		return ev, ev.Msg != ""
	}
	if p, err := frame.ParseICMP6(b); err == nil && len(p.Payload) > 0 {
		switch p.Payload[0] {
		case 133:
			ev.Proto, ev.Msg = "nd", "RS"
		case 134:
			ev.Proto, ev.Msg = "nd", "RA"
		default:
			return addrEvent{}, false
		}
		return ev, true
	}
	return addrEvent{}, false
}

// dhcp4Type is the name of a DHCPv4 message's type (option 53), "" if it
// has none.
func dhcp4Type(p []byte) string {
	for i := 240; i+1 < len(p) && p[i] != 255; {
		if p[i] == 0 {
			i++
			continue
		}
		if p[i] == 53 && p[i+1] == 1 && i+2 < len(p) {
			return dhcp4Names[p[i+2]]
		}
		i += 2 + int(p[i+1])
	}
	return ""
}

var (
	dhcp4Names = map[byte]string{1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}
	dhcp6Names = map[byte]string{1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND",
		7: "REPLY", 8: "RELEASE", 9: "DECLINE", 11: "INFORMATION-REQUEST"}
)

// breakdown splits the time from link up to configured: how long the
// server took to answer (each reply's time since the request it answers:
// the same protocol and transaction ID, or for an RA the last RS since the
// previous RA; an RA that answers no RS cost the guest no wait), and the
// first request of each protocol since link up.
type breakdown struct {
	Server              time.Duration // sum of the answer times before until
	FirstV4, FirstV6    time.Duration // link up to the guest's first DHCPv4 and DHCPv6 request; -1: none
	FirstRS             time.Duration // link up to the guest's first RS; -1: none
	RSWait              time.Duration // the first RS to the first RA after it; -1: none
	Replies, Unanswered int
}

func breakdownOf(events []addrEvent, linkUp, until time.Time) breakdown {
	b := breakdown{FirstV4: -1, FirstV6: -1, FirstRS: -1, RSWait: -1}
	pending := map[string]time.Time{} // request key -> its first sending
	var rsAt, firstRS time.Time
	for _, e := range events {
		if e.At.After(until) {
			break
		}
		key := fmt.Sprintf("%s/%x", e.Proto, e.XID)
		switch {
		case e.Client && e.Msg == "RS":
			if b.FirstRS < 0 {
				b.FirstRS, firstRS = e.At.Sub(linkUp), e.At
			}
			if rsAt.IsZero() {
				rsAt = e.At
			}
		case e.Client:
			if e.Proto == "v4" && b.FirstV4 < 0 {
				b.FirstV4 = e.At.Sub(linkUp)
			}
			if e.Proto == "v6" && b.FirstV6 < 0 {
				b.FirstV6 = e.At.Sub(linkUp)
			}
			if _, ok := pending[key]; !ok {
				pending[key] = e.At
			}
		case e.Msg == "RA":
			if !firstRS.IsZero() && b.RSWait < 0 {
				b.RSWait = e.At.Sub(firstRS)
			}
			if !rsAt.IsZero() {
				b.Server += e.At.Sub(rsAt)
				b.Replies++
				rsAt = time.Time{}
			}
		default:
			if at, ok := pending[key]; ok {
				b.Server += e.At.Sub(at)
				b.Replies++
				delete(pending, key)
			}
		}
	}
	b.Unanswered = len(pending)
	if !rsAt.IsZero() {
		b.Unanswered++
	}
	return b
}
