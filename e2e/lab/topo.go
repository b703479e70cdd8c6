package lab

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// PodSpec describes one pod network variant of the standard lab.
type PodSpec struct {
	Name     string // variant name, for test rows
	PodIface string // the pod's interface: eth0, pod<hash>
	MAC      string // the pod interface's MAC (the VM's MAC, as in KubeVirt)
	MTU      int

	IPv4, Gateway4 string // "10.16.0.5/16", "10.16.0.1"; empty: no IPv4
	IPv6, Gateway6 string // "fd00:10:16::5/112", "fd00:10:16::1"; empty: no IPv6

	// NodeMAC is the gateway's MAC. Link-local gateways (Calico style) are
	// answered by the node's veth through proxy ARP and its own LLA.
	NodeMAC string

	DNS    []string
	Search []string
}

// Standard variants.
var (
	KubeOVN = PodSpec{Name: "kube-ovn", PodIface: "eth0", MAC: "0a:58:0a:10:00:05", MTU: 1400,
		IPv4: "10.16.0.5/16", Gateway4: "10.16.0.1", IPv6: "fd00:10:16::5/112", Gateway6: "fd00:10:16::1",
		NodeMAC: "0a:58:0a:10:00:01", DNS: []string{"10.96.0.10", "fd00:10:96::a"},
		Search: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}}
	Calico = PodSpec{Name: "calico", PodIface: "eth0", MAC: "0a:58:0a:f4:01:05", MTU: 1450,
		IPv4: "10.244.1.5/32", Gateway4: "169.254.1.1", IPv6: "fd00:10:244::5/128", Gateway6: "fe80::ecee:eeff:feee:eeee",
		NodeMAC: "ee:ee:ee:ee:ee:ee", DNS: []string{"10.96.0.10"}, Search: []string{"default.svc.cluster.local"}}
)

// OffLink4 and OffLink6 sit on the node's loopback: only traffic to them
// proves the guest's default routes, since the gateways are on-link.
const (
	OffLink4 = "10.96.0.10"
	OffLink6 = "fd00:10:96::a"
)

// Lab is the standard lab: node (the cluster gateway), pod, guest (the VM).
// The guest's "eth0" is a veth whose peer, Tap, sits in the pod as the VM's
// tap would; nothing connects it to a bridge until dsbridge does.
type Lab struct {
	Spec             PodSpec
	Node, Pod, Guest *NS
	NodeIf, Tap      string
	GuestIf          string
	ResolvConf       string // a resolv.conf path for dsbridge
	Hostname         string
}

// NewLab builds the three namespaces for spec.
func NewLab(t T, spec PodSpec) *Lab {
	t.Helper()
	l := &Lab{Spec: spec, Node: NewNS(t), Pod: NewNS(t), Guest: NewNS(t),
		NodeIf: "gw0", Tap: "tap0", GuestIf: "eth0", Hostname: "vm-" + spec.Name}
	if strings.HasPrefix(spec.PodIface, "pod") {
		l.Tap = "tap" + spec.PodIface[3:]
	}
	l.node(t)
	l.pod(t)
	l.guest(t)
	l.ResolvConf = WriteFile(t, "resolv.conf", resolvConf(spec))
	return l
}

func resolvConf(s PodSpec) string {
	var b strings.Builder
	for _, d := range s.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if len(s.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s.Search, " "))
	}
	b.WriteString("options ndots:5\n")
	return b.String()
}

func (l *Lab) node(t T) {
	t.Helper()
	s, n := l.Spec, l.Node
	Veth(t, n, l.NodeIf, l.Pod, s.PodIface)
	setMAC(t, n, l.NodeIf, s.NodeMAC)
	n.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		"net.ipv6.conf."+l.NodeIf+".accept_ra=0", "net.ipv6.conf."+l.NodeIf+".accept_dad=0")
	n.Run(t, "ip", "link", "set", l.NodeIf, "mtu", fmt.Sprint(s.MTU))
	n.Run(t, "ip", "addr", "add", OffLink4+"/32", "dev", "lo")
	n.Run(t, "ip", "addr", "add", OffLink6+"/128", "dev", "lo")
	if s.IPv4 != "" {
		if linkLocal4(s.Gateway4) {
			// Calico style: the link-local gateway is a local address of
			// the node (answered on the veth, arp_ignore=0) and the pod's
			// /32 is routed to the veth.
			n.Run(t, "ip", "addr", "add", s.Gateway4+"/32", "dev", "lo")
			n.Run(t, "ip", "route", "add", hostPrefix(s.IPv4), "dev", l.NodeIf)
		} else {
			n.Run(t, "ip", "addr", "add", gatewayPrefix(s.Gateway4, s.IPv4), "dev", l.NodeIf)
		}
	}
	if s.IPv6 != "" {
		if strings.HasPrefix(s.Gateway6, "fe80:") {
			n.Run(t, "ip", "route", "add", hostPrefix(s.IPv6), "dev", l.NodeIf)
		} else {
			n.Run(t, "ip", "addr", "add", gatewayPrefix(s.Gateway6, s.IPv6), "dev", l.NodeIf, "nodad")
		}
	}
}

func (l *Lab) pod(t T) {
	t.Helper()
	configurePod(t, l.Pod, l.Spec)
}

func (l *Lab) guest(t T) {
	t.Helper()
	Veth(t, l.Guest, l.GuestIf, l.Pod, l.Tap)
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "address", l.Spec.MAC)
	l.Pod.Run(t, "ip", "link", "set", l.Tap, "mtu", fmt.Sprint(l.Spec.MTU))
	// The guest plays a VM: a host (no forwarding) that takes RAs, with DAD
	// off so clients need not wait for a tentative link-local address.
	l.Guest.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0",
		"net.ipv6.conf."+l.GuestIf+".accept_ra=1", "net.ipv6.conf."+l.GuestIf+".accept_dad=0",
		"net.ipv6.conf."+l.GuestIf+".autoconf=1")
	l.Guest.Run(t, "ip", "link", "set", l.GuestIf, "down")
}

// VMMAC is the guest's MAC.
func (l *Lab) VMMAC() frame.MAC { return frame.MustParseMAC(l.Spec.MAC) }

// GatewayLLA is the IPv6 gateway's link-local address as the guest must see it.
func (l *Lab) GatewayLLA() string {
	if strings.HasPrefix(l.Spec.Gateway6, "fe80:") {
		return l.Spec.Gateway6
	}
	return frame.LinkLocalFromMAC(frame.MustParseMAC(l.Spec.NodeMAC)).String()
}

// setMAC changes dev's MAC while it is down, so the kernel derives the
// link-local address from the new MAC when it comes back up.
func setMAC(t T, ns *NS, dev, mac string) {
	t.Helper()
	ns.Run(t, "ip", "link", "set", dev, "down")
	ns.Run(t, "ip", "link", "set", dev, "address", mac)
	ns.Run(t, "ip", "link", "set", dev, "up")
}

func linkLocal4(ip string) bool { return strings.HasPrefix(ip, "169.254.") }

// gatewayPrefix is the gateway address with the pod's prefix length.
func gatewayPrefix(gw, podAddr string) string {
	return gw + podAddr[strings.IndexByte(podAddr, '/'):]
}

// hostPrefix is the pod address as a host route.
func hostPrefix(podAddr string) string {
	p := netip.MustParsePrefix(podAddr)
	return netip.PrefixFrom(p.Addr(), p.Addr().BitLen()).String()
}
