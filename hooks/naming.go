package hooks

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
)

// KubeVirt's naming rules (pkg/network/namescheme, pkg/network/link).
const (
	// PrimaryPodInterface is the pod interface of the pod network and of a
	// Multus default network.
	PrimaryPodInterface = "eth0"
	// PrimaryTap is the tap of the pod network.
	PrimaryTap = "tap0"
	// hashedIfacePrefix + 11 hex of sha256(network name) names a secondary
	// Multus network's pod interface.
	hashedIfacePrefix = "pod"
	hashedIfaceHexLen = 11
	// ordinalIfacePrefix + 1-based index names it in the legacy scheme.
	ordinalIfacePrefix = "net"
	// UserAliasPrefix prefixes the VMI interface name in the domain alias.
	UserAliasPrefix = "ua-"
	// placeholderPrefix starts the target dev of KubeVirt's hotplug
	// placeholder interfaces (nichotplug.go newInterfacePlaceholder).
	placeholderPrefix = "placeholder-"
	// multiQueueMaxQueues caps vhost queues (converter MultiQueueMaxQueues).
	multiQueueMaxQueues = 256
)

// HashedPodInterfaceName is KubeVirt's pod interface name for a secondary
// Multus network: "pod" + the first 11 hex digits of sha256(network name).
func HashedPodInterfaceName(network string) string {
	sum := sha256.Sum256([]byte(network))
	return hashedIfacePrefix + hex.EncodeToString(sum[:])[:hashedIfaceHexLen]
}

// OrdinalPodInterfaceName is the legacy name of the i-th (1-based) secondary
// Multus network's pod interface: net1, net2, ...
func OrdinalPodInterfaceName(i int) string {
	return ordinalIfacePrefix + strconv.Itoa(i)
}

// TapName is KubeVirt's tap for a pod interface: tap0 for the pod network,
// "tap" + podIface[3:] for a secondary Multus network (tap<11hex>, tap1).
func TapName(podIface string, secondary bool) string {
	if !secondary || len(podIface) <= 3 {
		return PrimaryTap
	}
	return "tap" + podIface[3:]
}

// isSecondaryMultus reports a Multus network that is not the default one.
func isSecondaryMultus(n Network) bool {
	return n.Multus != nil && !n.Multus.Default
}

// podInterfaceCandidates returns the pod interface names KubeVirt may have
// given network: the status-reported one alone when known, else eth0 for the
// primary network, else the hashed name followed by the legacy ordinal one.
func podInterfaceCandidates(vmi *VMI, n Network) []string {
	if st, ok := vmi.interfaceStatus(n.Name); ok && st.PodInterfaceName != "" {
		return []string{st.PodInterfaceName}
	}
	if !isSecondaryMultus(n) {
		return []string{PrimaryPodInterface}
	}
	ordinal := 0
	for _, other := range vmi.Spec.Networks {
		if isSecondaryMultus(other) {
			ordinal++
		}
		if other.Name == n.Name {
			break
		}
	}
	return []string{HashedPodInterfaceName(n.Name), OrdinalPodInterfaceName(ordinal)}
}

// virtioModel is the libvirt model of a virtio NIC (converter
// InterpretTransitionalModelType; s390x has only plain virtio).
func virtioModel(vmi *VMI) string {
	switch {
	case vmi.Spec.Architecture == "s390x":
		return "virtio"
	case isTrue(vmi.Spec.Domain.Devices.UseVirtioTransitional):
		return "virtio-transitional"
	default:
		return "virtio-non-transitional"
	}
}

// romTuningSupported: libvirt's <rom> is not supported on s390x.
func romTuningSupported(vmi *VMI) bool { return vmi.Spec.Architecture != "s390x" }

// networkQueues is KubeVirt's vhost queue count for a virtio NIC: the
// number of vCPUs when networkInterfaceMultiqueue is set, capped at 256,
// else 0 (converter NetworkQueuesCapacity, vcpu.GetCPUTopology).
func networkQueues(vmi *VMI) uint32 {
	if !isTrue(vmi.Spec.Domain.Devices.NetworkInterfaceMultiqueue) {
		return 0
	}
	return min(requestedVCPUs(vmi), multiQueueMaxQueues)
}

// requestedVCPUs is sockets*cores*threads, each defaulting to 1; without a
// topology, the CPU limit (else request), rounded up, is the socket count.
func requestedVCPUs(vmi *VMI) uint32 {
	cores, sockets, threads := uint32(1), uint32(1), uint32(1)
	cpu := vmi.Spec.Domain.CPU
	if cpu != nil {
		cores, sockets, threads = orOne(cpu.Cores), orOne(cpu.Sockets), orOne(cpu.Threads)
	}
	if cpu == nil || (cpu.Cores == 0 && cpu.Sockets == 0 && cpu.Threads == 0) {
		res := vmi.Spec.Domain.Resources
		if q, ok := res.Limits["cpu"]; ok {
			sockets = cpuQuantity(q)
		} else if q, ok := res.Requests["cpu"]; ok {
			sockets = cpuQuantity(q)
		}
	}
	return uint32(min(uint64(cores)*uint64(sockets)*uint64(threads), math.MaxUint32))
}

func orOne(v uint32) uint32 {
	if v == 0 {
		return 1
	}
	return v
}

// cpuQuantity is a Kubernetes CPU quantity ("2", "500m", "1.5", 2) rounded
// up to whole CPUs like resource.Quantity.Value; unparsable means 1.
func cpuQuantity(raw []byte) uint32 {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	scale := 1.0
	if strings.HasSuffix(s, "m") {
		s, scale = strings.TrimSuffix(s, "m"), 1e-3
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < 0 {
		return 1
	}
	return uint32(min(math.Ceil(v*scale), math.MaxUint32))
}

func isTrue(b *bool) bool { return b != nil && *b }
