package frame

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Offsets into an untagged Ethernet frame.
const (
	offEthSrc      = 6
	offEthType     = 12
	offIPv4Proto   = EthernetLen + 9
	offIPv4Frag    = EthernetLen + 6
	offIPv6Next    = EthernetLen + 6
	offIPv6UDPDst  = EthernetLen + IPv6Len + 2
	packetOutgoing = 4 // PACKET_OUTGOING in sll_pkttype: a frame sent out of the link
)

// assemble compiles the filter to classic BPF. The program accepts a frame
// only when it arrived on the link (not outgoing), carried no VLAN tag (the
// services answer untagged, so a tagged request is not theirs: IEEE 802.1Q
// frames reach a packet socket with the tag moved into metadata), its source
// MAC is SrcMAC, and it is of Kind; it returns the whole frame.
func (f Filter) assemble() ([]bpf.RawInstruction, error) {
	if f.SrcMAC.IsZero() {
		return nil, errors.New("no source MAC to filter on")
	}
	kind, err := f.kindProgram()
	if err != nil {
		return nil, err
	}
	hi := binary.BigEndian.Uint32(f.SrcMAC[0:4])
	lo := uint32(binary.BigEndian.Uint16(f.SrcMAC[4:6]))
	// Every jump to "drop" is resolved below: skipFalse counts instructions
	// to the final drop.
	head := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipTrue: dropMark},
		bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: offEthSrc, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: offEthSrc + 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: lo, SkipTrue: dropMark},
	}
	prog := append(head, kind...)
	prog = append(prog, bpf.RetConstant{Val: 0}) // drop
	resolveDrops(prog)
	return bpf.Assemble(prog)
}

// dropMark in a jump's SkipTrue/SkipFalse means "to the final drop".
const dropMark = 0xff

// accept is the accept instruction: return up to 64 KiB of the frame.
var accept = bpf.RetConstant{Val: 0xffff}

func (f Filter) kindProgram() ([]bpf.Instruction, error) {
	switch f.Kind {
	case KindDHCPv4:
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: offEthType, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeARP, SkipTrue: 1},
			accept,
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeIPv4, SkipTrue: dropMark},
			bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtoUDP, SkipTrue: dropMark},
			bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: dropMark}, // a non-first fragment has no UDP header
			bpf.LoadMemShift{Off: EthernetLen},                                 // X = IPv4 header length
			bpf.LoadIndirect{Off: EthernetLen + 2, Size: 2},                    // UDP destination port
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: PortDHCPv4Server, SkipTrue: dropMark},
			accept,
		}, nil
	case KindDHCPv6:
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: offEthType, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeIPv6, SkipTrue: dropMark},
			bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtoUDP, SkipTrue: dropMark},
			bpf.LoadAbsolute{Off: offIPv6UDPDst, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: PortDHCPv6Server, SkipTrue: dropMark},
			accept,
		}, nil
	case KindICMPv6:
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: offEthType, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherTypeIPv6, SkipTrue: dropMark},
			bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtoICMPv6, SkipTrue: dropMark},
			accept,
		}, nil
	}
	return nil, fmt.Errorf("unknown traffic kind %v", f.Kind)
}

// resolveDrops rewrites every dropMark skip into the distance to the last
// instruction of prog (the drop).
func resolveDrops(prog []bpf.Instruction) {
	last := len(prog) - 1
	for i, ins := range prog {
		j, ok := ins.(bpf.JumpIf)
		if !ok {
			continue
		}
		if j.SkipTrue == dropMark {
			j.SkipTrue = uint8(last - i - 1)
		}
		if j.SkipFalse == dropMark {
			j.SkipFalse = uint8(last - i - 1)
		}
		prog[i] = j
	}
}
