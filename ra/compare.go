package ra

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// Differences lists how an RA observed from the uplink differs from ours in
// what a guest acts on: the M and O flags, a withdrawn default router, the
// on-link flag of our prefix, any prefix with A=1 (the guest would
// autoconfigure an address the pod does not own, which port security drops)
// and the MTU. Empty when the guest would do the same with either.
func Differences(ours, observed *ndp.RouterAdvertisement) []string {
	var d []string
	if ours.ManagedConfiguration != observed.ManagedConfiguration {
		d = append(d, fmt.Sprintf("M flag: ours %d, observed %d", bit(ours.ManagedConfiguration), bit(observed.ManagedConfiguration)))
	}
	if ours.OtherConfiguration != observed.OtherConfiguration {
		d = append(d, fmt.Sprintf("O flag: ours %d, observed %d", bit(ours.OtherConfiguration), bit(observed.OtherConfiguration)))
	}
	if ours.RouterLifetime != 0 && observed.RouterLifetime == 0 {
		d = append(d, "router lifetime: observed 0 withdraws the default router")
	}
	ourPrefixes := prefixes(ours)
	for _, o := range observed.Options {
		pi, ok := o.(*ndp.PrefixInformation)
		if !ok {
			continue
		}
		p := prefixOf(pi)
		our, ok := ourPrefixes[p]
		if ok && our.OnLink != pi.OnLink {
			d = append(d, fmt.Sprintf("prefix %s: ours L=%d, observed L=%d", p, bit(our.OnLink), bit(pi.OnLink)))
		}
		if pi.AutonomousAddressConfiguration && !(ok && our.AutonomousAddressConfiguration) {
			d = append(d, fmt.Sprintf("prefix %s: observed A=1, guests would autoconfigure an address", p))
		}
	}
	if o, m := mtu(ours), mtu(observed); o != 0 && m != 0 && o != m {
		d = append(d, fmt.Sprintf("MTU: ours %d, observed %d", o, m))
	}
	return d
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// prefixes returns ra's prefix information options by prefix.
func prefixes(ra *ndp.RouterAdvertisement) map[netip.Prefix]*ndp.PrefixInformation {
	m := make(map[netip.Prefix]*ndp.PrefixInformation)
	for _, o := range ra.Options {
		if pi, ok := o.(*ndp.PrefixInformation); ok {
			m[prefixOf(pi)] = pi
		}
	}
	return m
}

func prefixOf(pi *ndp.PrefixInformation) netip.Prefix {
	return netip.PrefixFrom(pi.Prefix, int(pi.PrefixLength)).Masked()
}

func mtu(ra *ndp.RouterAdvertisement) int {
	for _, o := range ra.Options {
		if m, ok := o.(*ndp.MTU); ok {
			return int(m.MTU)
		}
	}
	return 0
}
