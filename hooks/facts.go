package hooks

import "github.com/dsbridge/dsbridge/dhcp/frame"

// IfaceFacts is what OnDefineDomain needs of one pod interface.
type IfaceFacts struct {
	MAC frame.MAC
	MTU int
}

// StaticFacts is a PodFacts from a map of interface name to facts.
type StaticFacts map[string]IfaceFacts

var _ PodFacts = StaticFacts(nil)

// Lookup implements PodFacts.
func (f StaticFacts) Lookup(podIface string) (frame.MAC, int, bool) {
	facts, ok := f[podIface]
	return facts.MAC, facts.MTU, ok
}
