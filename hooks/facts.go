package hooks

import (
	"net"
	"slices"
)

// IfaceFacts is what OnDefineDomain needs of one pod interface.
type IfaceFacts struct {
	MAC net.HardwareAddr
	MTU int
}

// StaticFacts is a PodFacts from a map of interface name to facts.
type StaticFacts map[string]IfaceFacts

var _ PodFacts = StaticFacts(nil)

// Lookup implements PodFacts.
func (f StaticFacts) Lookup(podIface string) (net.HardwareAddr, int, bool) {
	facts, ok := f[podIface]
	if !ok {
		return nil, 0, false
	}
	return slices.Clone(facts.MAC), facts.MTU, true
}
