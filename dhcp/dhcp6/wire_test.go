package dhcp6

import (
	"bytes"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// libInnerType is the type of the message inside msg's relays as
// insomniacslk/dhcp decodes it, maxRelayDepth+1 relays deep at most.
func libInnerType(msg dhcpv6.DHCPv6) dhcpv6.MessageType {
	for range maxRelayDepth + 1 {
		r, ok := msg.(*dhcpv6.RelayMessage)
		if !ok {
			break
		}
		inner := r.Options.RelayMessage()
		if inner == nil {
			return r.MessageType
		}
		msg = inner
	}
	return msg.Type()
}

// FuzzParse: request.parse accepts every message insomniacslk/dhcp's
// FromBytes accepts and reads the same type, transaction ID and
// identifiers; a relay chain it answers is at most maxRelayDepth deep.
func FuzzParse(f *testing.F) {
	for _, b := range seedMessages(f) {
		f.Add(b)
	}
	var r request
	f.Fuzz(func(t *testing.T, b []byte) {
		lib, libErr := dhcpv6.FromBytes(b)
		err := r.parse(b)
		if libErr != nil {
			return
		}
		if err != nil {
			t.Fatalf("parse refused what FromBytes accepts: %v", err)
		}
		if got, want := dhcpv6.MessageType(r.typ), libInnerType(lib); got != want {
			t.Fatalf("type %v, FromBytes %v", got, want)
		}
		if !r.ok {
			return
		}
		if len(r.relays) > maxRelayDepth {
			t.Fatalf("%d relays answered", len(r.relays))
		}
		inner, err := lib.GetInnerMessage()
		if err != nil {
			t.Fatalf("a client message FromBytes does not find: %v", err)
		}
		if r.msg.typ != byte(inner.MessageType) || r.msg.xid != inner.TransactionID {
			t.Fatalf("message %d %x, FromBytes %v %x", r.msg.typ, r.msg.xid, inner.MessageType, inner.TransactionID)
		}
		for _, c := range []dhcpv6.OptionCode{dhcpv6.OptionClientID, dhcpv6.OptionServerID, dhcpv6.OptionRapidCommit} {
			v, ok := r.msg.option(uint16(c))
			if want := optionBytes(inner, c); ok != (want != nil) || !bytes.Equal(v, want) {
				t.Fatalf("option %v: %x %v, FromBytes %x", c, v, ok, want)
			}
		}
	})
}
