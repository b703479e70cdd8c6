package hooks

import (
	"math"
	"strconv"
	"strings"

	"github.com/dsbridge/dsbridge/hooks/naming"
)

// KubeVirt's domain conventions (pkg/virt-launcher/virtwrap/api/schema.go,
// network/nichotplug.go, converter).
const (
	// UserAliasPrefix prefixes the VMI interface name in the domain alias.
	UserAliasPrefix = "ua-"
	// placeholderPrefix starts the target dev of KubeVirt's hotplug
	// placeholder interfaces (nichotplug.go newInterfacePlaceholder).
	placeholderPrefix = "placeholder-"
	// multiQueueMaxQueues caps vhost queues (converter MultiQueueMaxQueues).
	multiQueueMaxQueues = 256
)

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
		return []string{naming.PrimaryPodInterface}
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
	return []string{naming.HashedPodInterface(n.Name), naming.OrdinalPodInterface(ordinal)}
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
