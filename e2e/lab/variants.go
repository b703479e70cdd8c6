package lab

// More pod variants, each a single change from KubeOVN (or
// Calico) so a failing row points at that change.
var (
	// KubeOVN64 is Kube-OVN with a /64 IPv6 subnet.
	KubeOVN64 = withName(KubeOVN, "kube-ovn-64", func(s *PodSpec) {
		s.IPv6, s.Gateway6 = "fd00:10:16::5/64", "fd00:10:16::1"
	})
	// IPv4Only is a single-stack IPv4 cluster: no IPv6 on the pod, IPv4 DNS.
	IPv4Only = withName(KubeOVN, "ipv4-only", func(s *PodSpec) {
		s.IPv6, s.Gateway6 = "", ""
		s.DNS = []string{OffLink4}
	})
	// IPv6Only is a single-stack IPv6 cluster: no IPv4 on the pod, IPv6 DNS.
	IPv6Only = withName(KubeOVN, "ipv6-only", func(s *PodSpec) {
		s.IPv4, s.Gateway4 = "", ""
		s.DNS = []string{OffLink6}
	})
	// Jumbo is Kube-OVN on a network with 9000-byte frames.
	Jumbo = withName(KubeOVN, "mtu-9000", func(s *PodSpec) { s.MTU = 9000 })
	// NoDNS is Kube-OVN with a resolv.conf that names no server and no
	// search domain (dnsPolicy: None without dnsConfig).
	NoDNS = withName(KubeOVN, "no-dns", func(s *PodSpec) { s.DNS, s.Search = nil, nil })
	// Multus is a secondary Multus network "network1": KubeVirt's hashed pod
	// interface "pod" + sha256("network1")[:11] and tap "tap" + the same hash.
	Multus = withName(KubeOVN, "multus", func(s *PodSpec) {
		s.PodIface = MultusPodIface
		s.MAC = "0a:58:0a:10:00:07"
		s.IPv4, s.IPv6 = "10.16.0.7/16", "fd00:10:16::7/112"
	})
)

// MultusPodIface is KubeVirt's pod interface for the Multus network named
// "network1" (naming.HashedPodInterface("network1")).
const MultusPodIface = "poda7662f44d65"

// Variants are every pod variant the e2e matrix runs, the standard two
// first.
var Variants = []PodSpec{KubeOVN, KubeOVN64, IPv4Only, IPv6Only, Calico, Jumbo, NoDNS, Multus}

// withName returns a copy of base with name and the changes edit makes;
// slices are copied so edits never reach base.
func withName(base PodSpec, name string, edit func(*PodSpec)) PodSpec {
	s := base
	s.Name = name
	s.DNS = append([]string(nil), base.DNS...)
	s.Search = append([]string(nil), base.Search...)
	edit(&s)
	return s
}
