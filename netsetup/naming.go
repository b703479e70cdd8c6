package netsetup

import "github.com/dsbridge/dsbridge/hooks/naming"

// Layout names the links of managedTap plumbing for one pod interface <x>:
//
//	Bridge  k6t-<x>   bridge, no IPv4, addrgenmode none, accept_ra 0
//	Uplink  <x>-nic   the original pod link renamed, MAC from the bridge,
//	                  no addresses, learning off, port of Bridge
//	Tap     tap0/tap<hash>, owned by 107, port of Bridge (the VM's port)
//	Dummy   <x>       dummy with the original MAC, MTU and addresses
//
// where <x> is the pod interface name with a leading "pod" removed.
type Layout struct {
	PodIface string
	Bridge   string
	Uplink   string
	Tap      string
	Dummy    string
	// TapStandIn accepts an existing link of another type (a veth in tests)
	// named Tap as the VM port: it is enslaved, never created or deleted.
	TapStandIn bool
}

// LayoutFor returns the layout KubeVirt's managedTap builds for podIface. An
// empty tapName means KubeVirt's tap name.
func LayoutFor(podIface, tapName string) Layout {
	if tapName == "" {
		tapName = naming.Tap(podIface, naming.IsSecondary(podIface))
	}
	return Layout{
		PodIface: podIface,
		Bridge:   naming.Bridge(podIface),
		Uplink:   naming.Uplink(podIface),
		Tap:      tapName,
		Dummy:    podIface,
	}
}
