package hooks

import (
	"fmt"
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

// InterfaceFacts records the MAC and MTU of every interface of this network
// namespace, to be called before the hook socket opens (KubeVirt may move
// the pod interfaces before OnDefineDomain). The netsetup snapshot replaces
// it once it exists.
func InterfaceFacts() (StaticFacts, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("failed to list pod interfaces: %w", err)
	}
	facts := make(StaticFacts, len(ifaces))
	for _, iface := range ifaces {
		facts[iface.Name] = IfaceFacts{MAC: iface.HardwareAddr, MTU: iface.MTU}
	}
	return facts, nil
}
