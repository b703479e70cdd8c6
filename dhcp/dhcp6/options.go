package dhcp6

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// The library's MessageOptions accessors assert option types without
// checking; these accessors check, so a message built from anything cannot
// panic here.

// optionBytes is the body of the first option with code c, nil if absent.
func optionBytes(m *dhcpv6.Message, c dhcpv6.OptionCode) []byte {
	o := m.GetOneOption(c)
	if o == nil {
		return nil
	}
	b := o.ToBytes()
	if b == nil {
		b = []byte{}
	}
	return b
}

// clientID is the client's DUID, nil if absent or malformed.
func clientID(m *dhcpv6.Message) dhcpv6.DUID {
	b := optionBytes(m, dhcpv6.OptionClientID)
	if b == nil {
		return nil
	}
	d, err := dhcpv6.DUIDFromBytes(b)
	if err != nil {
		return nil
	}
	return d
}

func iaNAs(m *dhcpv6.Message) []*dhcpv6.OptIANA {
	var out []*dhcpv6.OptIANA
	for _, o := range m.Options.Get(dhcpv6.OptionIANA) {
		if ia, ok := o.(*dhcpv6.OptIANA); ok && ia != nil {
			out = append(out, ia)
		}
	}
	return out
}

func iaTAs(m *dhcpv6.Message) []*dhcpv6.OptIATA {
	var out []*dhcpv6.OptIATA
	for _, o := range m.Options.Get(dhcpv6.OptionIATA) {
		if ia, ok := o.(*dhcpv6.OptIATA); ok && ia != nil {
			out = append(out, ia)
		}
	}
	return out
}

func iaPDs(m *dhcpv6.Message) []*dhcpv6.OptIAPD {
	var out []*dhcpv6.OptIAPD
	for _, o := range m.Options.Get(dhcpv6.OptionIAPD) {
		if pd, ok := o.(*dhcpv6.OptIAPD); ok && pd != nil {
			out = append(out, pd)
		}
	}
	return out
}

// iaAddresses are the IA Address options inside ia.
func iaAddresses(ia *dhcpv6.OptIANA) []*dhcpv6.OptIAAddress {
	var out []*dhcpv6.OptIAAddress
	for _, o := range ia.Options.Get(dhcpv6.OptionIAAddr) {
		if a, ok := o.(*dhcpv6.OptIAAddress); ok && a != nil {
			out = append(out, a)
		}
	}
	return out
}

// confirmAddresses are the addresses in every IA_NA and IA_TA of m.
func confirmAddresses(m *dhcpv6.Message) []net.IP {
	var out []net.IP
	for _, ia := range iaNAs(m) {
		for _, a := range iaAddresses(ia) {
			out = append(out, a.IPv6Addr)
		}
	}
	for _, ia := range iaTAs(m) {
		for _, o := range ia.Options.Get(dhcpv6.OptionIAAddr) {
			if a, ok := o.(*dhcpv6.OptIAAddress); ok && a != nil {
				out = append(out, a.IPv6Addr)
			}
		}
	}
	return out
}

// hasIA reports any IA option (IA_NA, IA_TA, IA_PD).
func hasIA(m *dhcpv6.Message) bool {
	for _, c := range []dhcpv6.OptionCode{dhcpv6.OptionIANA, dhcpv6.OptionIATA, dhcpv6.OptionIAPD} {
		if m.GetOneOption(c) != nil {
			return true
		}
	}
	return false
}

// firstN is s cut to at most n elements.
func firstN[T any](s []T, n int) []T { return s[:min(len(s), n)] }
