package lab

import (
	"fmt"
	"strings"
	"time"
)

// Links of the migration lab.
const (
	nodeBridge   = "gwbr" // the node's gateway, a bridge joining the pods' uplinks
	targetUplink = "gw1"  // the node's end of the target pod's uplink
	hypBridge    = "hbr"  // the hypervisor's wire between the guest's NIC and a tap
	hypVM        = "vm0"  // the hypervisor's end of the guest's NIC
	hypSource    = "src0" // the hypervisor's end of the source pod's tap
	hypTarget    = "dst0" // the hypervisor's end of the target pod's tap
)

// Renumbered is the target pod of a migration where the CNI gives the
// target other addresses (Cilium, Flannel, Multus with plain IPAM, Calico
// without address persistence, KubeVirt's LiveNADRefUpdate): another IPv4
// subnet and IPv6 prefix, other gateways behind another MAC (so another
// link-local router address, fe80::858:aff:fe11:1), and a pod MAC of its
// own. The VM keeps its MAC; DNS and search domains are the cluster's.
var Renumbered = withName(KubeOVN, "renumbered", func(s *PodSpec) {
	s.MAC = "0a:58:0a:11:00:09"
	s.IPv4, s.Gateway4 = "10.17.0.9/16", "10.17.0.1"
	s.IPv6, s.Gateway6 = "fd00:10:17::9/112", "fd00:10:17::1"
	s.NodeMAC = "0a:58:0a:11:00:01"
})

// Migration is a Lab set up for a live migration (KubeVirt's link-refresh:
// pkg/virt-launcher/virtwrap/live-migration-target.go). The
// node's gateway addresses sit on a bridge, so a second pod with the same
// addresses and MAC, the migration target (as Kube-OVN gives a migrated
// VM), can join the same node. A target with other addresses and another
// gateway (Renumbered) sits on a node of its own, TargetNode, with its own
// gateway and the same off-link targets (OffLink4, OffLink6): the source's
// gateway is out of the guest's reach there, as on another node of a
// cluster that does not keep addresses. The guest's NIC reaches a pod's
// tap through Hyp, a namespace playing the hypervisor: it wires the NIC to
// the source pod's tap, and at the switch-over to the target's, with a
// bridge (no addresses, no STP, no multicast snooping); frames from the tap
// the guest is not wired to are dropped. The guest's interface, its MAC,
// its addresses and its routes survive the move, as a VM's do.
type Migration struct {
	*Lab
	Hyp *NS
	// Target is the target pod, once StartTarget made it, with TargetSpec;
	// its tap is Lab.Tap and its uplink on the node is TargetUplink.
	Target       *NS
	TargetSpec   PodSpec
	TargetUplink string
	// TargetNode is the target's node when its gateway is another
	// (TargetSpec.NodeMAC differs from the source's); nil when the target
	// joins the source's node bridge.
	TargetNode *NS
}

// NewMigration builds the standard lab for spec (a variant whose gateways
// are addresses on the node, like KubeOVN) with the node bridge and the
// hypervisor in place. The guest's link is left down, as NewLab leaves it.
func NewMigration(t T, spec PodSpec) *Migration {
	t.Helper()
	if linkLocal4(spec.Gateway4) || strings.HasPrefix(spec.Gateway6, "fe80:") {
		t.Fatalf("migration lab: variant %s has link-local gateways; only on-node gateway addresses are supported", spec.Name)
	}
	m := &Migration{Lab: NewLab(t, spec), Hyp: NewNS(t), TargetUplink: targetUplink}
	m.bridgeNode(t)
	m.Hyp.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	// Replace the guest's direct veth to the pod with one to the
	// hypervisor, and the source tap with a veth from the hypervisor.
	m.Guest.Run(t, "ip", "link", "del", m.GuestIf)
	Veth(t, m.Guest, m.GuestIf, m.Hyp, hypVM)
	m.guestNIC(t)
	Veth(t, m.Hyp, hypSource, m.Pod, m.Tap)
	m.Pod.Run(t, "ip", "link", "set", m.Tap, "mtu", fmt.Sprint(spec.MTU))
	m.Hyp.Run(t, "ip", "link", "add", hypBridge, "type", "bridge", "mcast_snooping", "0")
	m.Hyp.Run(t, "ip", "link", "set", hypBridge, "up")
	m.wire(t, hypVM, true)
	m.wire(t, hypSource, true)
	return m
}

// bridgeNode moves the gateway addresses from the node's veth to a bridge
// with the gateway MAC, whose first port is that veth.
func (m *Migration) bridgeNode(t T) {
	t.Helper()
	n, s := m.Node, m.Spec
	n.Run(t, "ip", "link", "add", nodeBridge, "address", s.NodeMAC, "mtu", fmt.Sprint(s.MTU), "type", "bridge")
	n.Run(t, "sysctl", "-qw", "net.ipv6.conf."+nodeBridge+".accept_ra=0", "net.ipv6.conf."+nodeBridge+".accept_dad=0")
	n.Run(t, "ip", "addr", "flush", "dev", m.NodeIf, "scope", "global")
	n.Run(t, "sysctl", "-qw", "net.ipv6.conf."+m.NodeIf+".disable_ipv6=1")
	n.Run(t, "ip", "link", "set", m.NodeIf, "master", nodeBridge)
	n.Run(t, "ip", "link", "set", nodeBridge, "up")
	if s.IPv4 != "" {
		n.Run(t, "ip", "addr", "add", gatewayPrefix(s.Gateway4, s.IPv4), "dev", nodeBridge)
	}
	if s.IPv6 != "" {
		n.Run(t, "ip", "addr", "add", gatewayPrefix(s.Gateway6, s.IPv6), "dev", nodeBridge, "nodad")
	}
}

// guestNIC configures the guest's new link as NewLab configures it.
func (m *Migration) guestNIC(t T) {
	t.Helper()
	m.Guest.Run(t, "ip", "link", "set", m.GuestIf, "down")
	m.Guest.Run(t, "ip", "link", "set", m.GuestIf, "address", m.Spec.MAC)
	m.Guest.Run(t, "sysctl", "-qw", "net.ipv6.conf."+m.GuestIf+".accept_ra=1",
		"net.ipv6.conf."+m.GuestIf+".accept_dad=0", "net.ipv6.conf."+m.GuestIf+".autoconf=1")
}

// wire joins the hypervisor's link to the guest's NIC, or (join false)
// detaches it: frames arriving on a detached link end in the hypervisor,
// which has no addresses.
func (m *Migration) wire(t T, link string, join bool) {
	t.Helper()
	if join {
		m.Hyp.Run(t, "ip", "link", "set", link, "master", hypBridge)
	} else {
		m.Hyp.Run(t, "ip", "link", "set", link, "nomaster")
	}
}

// StartTarget creates the target pod, with spec's interface, MAC,
// addresses, routes and MTU, as the CNI leaves it on the target node, and a
// tap (a veth from the hypervisor) that is not yet wired to the guest. A
// spec with the source's gateway MAC must have the source's addresses
// (Kube-OVN keeps them): its uplink is a second port of the node bridge.
// Another gateway MAC puts the target on a node of its own (TargetNode),
// whose gateway has spec's gateway addresses and MAC.
func (m *Migration) StartTarget(t T, spec PodSpec) {
	t.Helper()
	m.Target, m.TargetSpec = NewNS(t), spec
	if spec.NodeMAC == m.Spec.NodeMAC {
		if spec.IPv4 != m.Spec.IPv4 || spec.IPv6 != m.Spec.IPv6 || spec.Gateway4 != m.Spec.Gateway4 || spec.Gateway6 != m.Spec.Gateway6 {
			t.Fatalf("migration lab: target %s keeps the source's gateway MAC but not its addresses", spec.Name)
		}
		Veth(t, m.Node, targetUplink, m.Target, spec.PodIface)
		m.Node.Run(t, "sysctl", "-qw", "net.ipv6.conf."+targetUplink+".disable_ipv6=1")
		m.Node.Run(t, "ip", "link", "set", targetUplink, "mtu", fmt.Sprint(spec.MTU), "master", nodeBridge)
	} else {
		m.otherNode(t, spec)
	}
	configurePod(t, m.Target, spec)
	Veth(t, m.Hyp, hypTarget, m.Target, m.Tap)
	m.Target.Run(t, "ip", "link", "set", m.Tap, "mtu", fmt.Sprint(spec.MTU))
}

// otherNode builds the target's node as NewLab builds the source's: its
// gateway (spec's addresses and MAC) on its end of the target pod's
// uplink, forwarding on, the off-link targets on its loopback.
func (m *Migration) otherNode(t T, spec PodSpec) {
	t.Helper()
	if linkLocal4(spec.Gateway4) || strings.HasPrefix(spec.Gateway6, "fe80:") {
		t.Fatalf("migration lab: target %s has link-local gateways; only on-node gateway addresses are supported", spec.Name)
	}
	node := &Lab{Spec: spec, Node: NewNS(t), Pod: m.Target, NodeIf: targetUplink}
	node.node(t)
	m.TargetNode = node.Node
}

// TargetLab is the lab as the target pod sees it: the same guest and
// names, with Pod being the target pod; for a target on a node of its own,
// Node, NodeIf and Spec are that node's, its uplink and the target's spec
// (whose MAC is the target pod's, not the VM's: the VM keeps Lab.Spec.MAC).
func (m *Migration) TargetLab() *Lab {
	l := *m.Lab
	l.Pod = m.Target
	if m.TargetNode != nil {
		l.Node, l.NodeIf, l.Spec = m.TargetNode, m.TargetUplink, m.TargetSpec
	}
	return &l
}

// SwitchOver wires the guest's NIC to the target pod's tap and cuts it off
// the source's, as the migration's last step does: the guest sees no
// change of link state.
func (m *Migration) SwitchOver(t T) {
	t.Helper()
	m.wire(t, hypSource, false)
	m.wire(t, hypTarget, true)
}

// LinkRefresh is KubeVirt's link-refresh: the guest's link goes down
// (carrier lost, as when libvirt sets the interface's link state down),
// stays down for down, and comes back up.
func (m *Migration) LinkRefresh(t T, down time.Duration) {
	t.Helper()
	m.Hyp.Run(t, "ip", "link", "set", hypVM, "down")
	time.Sleep(down)
	m.Hyp.Run(t, "ip", "link", "set", hypVM, "up")
}

// configurePod gives dev of ns the pod's MAC, MTU, addresses and default
// routes, as the CNI leaves a pod.
func configurePod(t T, p *NS, s PodSpec) {
	t.Helper()
	dev := s.PodIface
	setMAC(t, p, dev, s.MAC)
	p.Run(t, "ip", "link", "set", dev, "mtu", fmt.Sprint(s.MTU))
	p.Run(t, "sysctl", "-qw", "net.ipv6.conf."+dev+".accept_ra=0", "net.ipv6.conf."+dev+".accept_dad=0")
	if s.IPv4 != "" {
		p.Run(t, "ip", "addr", "add", s.IPv4, "dev", dev)
		p.Run(t, "ip", "route", "add", "default", "via", s.Gateway4, "dev", dev, "onlink")
	}
	if s.IPv6 != "" {
		p.Run(t, "ip", "addr", "add", s.IPv6, "dev", dev, "nodad")
		p.Run(t, "ip", "-6", "route", "add", "default", "via", s.Gateway6, "dev", dev)
	}
}
