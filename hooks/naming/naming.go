// Package naming is KubeVirt's naming of a VM interface's links, one copy
// for every part of dsbridge (KubeVirt pkg/network/namescheme and
// pkg/network/link/names.go): the pod interface of each VMI network, and
// the bridge, renamed uplink and tap the managedTap binding builds for it.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// Names of the pod network's links.
const (
	// PrimaryPodInterface is the pod interface of the pod network and of a
	// Multus default network.
	PrimaryPodInterface = "eth0"
	// PrimaryTap is the tap of the pod network.
	PrimaryTap = "tap0"
)

const (
	// hashedPrefix + 11 hex of sha256(network name) names a secondary
	// Multus network's pod interface; ordinalPrefix + 1-based index names
	// it in the legacy scheme.
	hashedPrefix  = "pod"
	hashedHexLen  = 11
	ordinalPrefix = "net"
	tapPrefix     = "tap"
	bridgePrefix  = "k6t-"
	uplinkSuffix  = "-nic"
)

// podInterfaceRE matches every pod interface name KubeVirt gives: eth0, the
// hashed pod<11 hex> and the legacy ordinal net<i>.
var podInterfaceRE = regexp.MustCompile(`^(eth0|pod[0-9a-f]{11}|net[0-9]+)$`)

// IsPodInterface reports whether name is a pod interface KubeVirt binds.
func IsPodInterface(name string) bool { return podInterfaceRE.MatchString(name) }

// HashedPodInterface is KubeVirt's pod interface for a secondary Multus
// network: "pod" + the first 11 hex digits of sha256(network name), e.g.
// "network1" -> "poda7662f44d65".
func HashedPodInterface(network string) string {
	sum := sha256.Sum256([]byte(network))
	return hashedPrefix + hex.EncodeToString(sum[:])[:hashedHexLen]
}

// OrdinalPodInterface is the legacy name of the i-th (1-based) secondary
// Multus network's pod interface: net1, net2, ...
func OrdinalPodInterface(i int) string { return ordinalPrefix + strconv.Itoa(i) }

// Tap is KubeVirt's tap for a pod interface (link.GenerateTapDeviceName):
// tap0 for the pod network (or a Multus default network), whatever its pod
// interface's name; for a secondary network "tap" + the name minus its
// first three letters (pod<hash> -> tap<hash>, net1 -> tap1).
func Tap(podIface string, secondary bool) string {
	if !secondary || len(podIface) <= len(hashedPrefix) {
		return PrimaryTap
	}
	return tapPrefix + podIface[len(hashedPrefix):]
}

// IsSecondary reports whether a pod interface name is a secondary
// network's: anything but eth0.
func IsSecondary(podIface string) bool { return podIface != PrimaryPodInterface }

// Bridge is managedTap's bridge for a pod interface: k6t-eth0, k6t-<hash>.
func Bridge(podIface string) string { return bridgePrefix + stem(podIface) }

// Uplink is the pod interface's name once managedTap renamed it: eth0-nic,
// <hash>-nic (the hash keeps it within 15 characters).
func Uplink(podIface string) string { return stem(podIface) + uplinkSuffix }

// stem is the pod interface name minus a leading "pod".
func stem(podIface string) string { return strings.TrimPrefix(podIface, hashedPrefix) }
