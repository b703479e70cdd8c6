package netsetup

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Names KubeVirt gives the links of one pod interface (KubeVirt
// pkg/network/namescheme and pkg/network/link/names.go).
const (
	podIfacePrefix = "pod"
	bridgePrefix   = "k6t-"
	tapPrefix      = "tap"
	uplinkSuffix   = "-nic"
	primaryIface   = "eth0"
	primaryTap     = "tap0"
)

// PodIfaceForNetwork returns the pod interface KubeVirt requests from Multus
// for a secondary VMI network: "pod" + the first 11 hex digits of
// sha256(network name), e.g. "network1" -> "poda7662f44d65".
func PodIfaceForNetwork(name string) string {
	sum := sha256.Sum256([]byte(name))
	return podIfacePrefix + hex.EncodeToString(sum[:])[:11]
}

// TapForPodIface returns KubeVirt's tap name for a pod interface: "tap0" for
// eth0, "tap" + the name minus its first three letters otherwise
// (pod<hash> -> tap<hash>, net1 -> tap1).
func TapForPodIface(podIface string) string {
	if podIface == primaryIface || len(podIface) <= len(podIfacePrefix) {
		return primaryTap
	}
	return tapPrefix + podIface[len(podIfacePrefix):]
}

// trimmedIface is the pod interface name minus a leading "pod", the stem of
// the bridge and uplink names.
func trimmedIface(podIface string) string {
	return strings.TrimPrefix(podIface, podIfacePrefix)
}

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
// empty tapName means KubeVirt's tap name (TapForPodIface).
func LayoutFor(podIface, tapName string) Layout {
	if tapName == "" {
		tapName = TapForPodIface(podIface)
	}
	stem := trimmedIface(podIface)
	return Layout{
		PodIface: podIface,
		Bridge:   bridgePrefix + stem,
		Uplink:   stem + uplinkSuffix,
		Tap:      tapName,
		Dummy:    podIface,
	}
}
