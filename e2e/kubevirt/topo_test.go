package kubevirt

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

// subnet is one pod network behind one gateway of the node (Kube-OVN's
// logical router port): the pod's addresses, MAC and MTU as the CNI gives
// them, and the gateway's.
type subnet struct {
	IPv4, Gateway4 string // "10.16.0.5/16", "10.16.0.1"
	IPv6, Gateway6 string // "fd00:10:16::5/112", "fd00:10:16::1"
	PodMAC         string // the pod interface's MAC as the CNI set it
	GatewayMAC     string
	MTU            int
}

// kubeOVN is the standard Kube-OVN pod of the e2e lab (e2e/lab.KubeOVN); the VM keeps the pod's MAC.
var kubeOVN = subnet{IPv4: "10.16.0.5/16", Gateway4: "10.16.0.1", IPv6: "fd00:10:16::5/112", Gateway6: "fd00:10:16::1",
	PodMAC: "0a:58:0a:10:00:05", GatewayMAC: "0a:58:0a:10:00:01", MTU: 1400}

// renumbered is a migration target pod whose CNI gave other addresses,
// another gateway (and its MAC) and another pod MAC.
var renumbered = subnet{IPv4: "10.17.0.9/16", Gateway4: "10.17.0.1", IPv6: "fd00:10:17::9/112", Gateway6: "fd00:10:17::1",
	PodMAC: "0a:58:0a:11:00:09", GatewayMAC: "0a:58:0a:11:00:01", MTU: 1400}

// Off-link targets on the node's loopback: only traffic to them proves a
// default route (the gateways are on-link for the guest).
const (
	offLink4 = "10.96.0.10"
	offLink6 = "fd00:10:96::a"
)

// dns and search are the pod's resolv.conf.
var (
	dnsServers = []string{"10.96.0.10", "fd00:10:96::a"}
	searchList = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}
)

// node is the cluster gateway: one bridge per subnet holding the gateway
// addresses and MAC (pods of a subnet are ports of it), forwarding on, no
// RAs of its own, the off-link targets on its loopback.
type node struct {
	ns      *netNS
	bridges map[string]string // subnet gateway4 -> bridge name
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{ns: newNS(t), bridges: map[string]string{}}
	n.ns.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0")
	n.ns.run(t, "ip", "addr", "add", offLink4+"/32", "dev", "lo")
	n.ns.run(t, "ip", "addr", "add", offLink6+"/128", "dev", "lo")
	return n
}

// bridge returns the subnet's gateway bridge, creating it on first use.
func (n *node) bridge(t *testing.T, s subnet) string {
	t.Helper()
	if br, ok := n.bridges[s.Gateway4]; ok {
		return br
	}
	br := fmt.Sprintf("gwbr%d", len(n.bridges))
	n.ns.run(t, "ip", "link", "add", br, "address", s.GatewayMAC, "mtu", strconv.Itoa(s.MTU), "type", "bridge", "mcast_snooping", "0")
	n.ns.run(t, "sysctl", "-qw", "net.ipv6.conf."+br+".accept_ra=0", "net.ipv6.conf."+br+".accept_dad=0")
	n.ns.run(t, "ip", "link", "set", br, "up")
	n.ns.run(t, "ip", "addr", "add", s.Gateway4+prefixLen(s.IPv4), "dev", br)
	n.ns.run(t, "ip", "addr", "add", s.Gateway6+prefixLen(s.IPv6), "dev", br, "nodad")
	n.bridges[s.Gateway4] = br
	return br
}

// attach connects a new pod namespace to the subnet's bridge with a veth
// (eth0 in the pod, uplink on the node) and configures it as the CNI does:
// MAC, MTU, addresses (no DAD), default routes. It returns the node's end.
func (n *node) attach(t *testing.T, pod *netNS, s subnet) string {
	t.Helper()
	br := n.bridge(t, s)
	uplink := randName("up")
	veth(t, n.ns, uplink, pod, "eth0")
	n.ns.run(t, "sysctl", "-qw", "net.ipv6.conf."+uplink+".disable_ipv6=1")
	n.ns.run(t, "ip", "link", "set", uplink, "mtu", strconv.Itoa(s.MTU), "master", br)
	pod.run(t, "ip", "link", "set", "eth0", "down")
	pod.run(t, "ip", "link", "set", "eth0", "address", s.PodMAC, "mtu", strconv.Itoa(s.MTU))
	pod.run(t, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=0", "net.ipv6.conf.eth0.accept_dad=0")
	pod.run(t, "ip", "link", "set", "eth0", "up")
	pod.run(t, "ip", "addr", "add", s.IPv4, "dev", "eth0")
	pod.run(t, "ip", "route", "add", "default", "via", s.Gateway4, "dev", "eth0", "onlink")
	pod.run(t, "ip", "addr", "add", s.IPv6, "dev", "eth0", "nodad")
	pod.run(t, "ip", "-6", "route", "add", "default", "via", s.Gateway6, "dev", "eth0")
	return uplink
}

// icmpEchos reads the node's counters of echo requests received, IPv4 and
// IPv6 (/proc/net/snmp, /proc/net/snmp6): the gateway's own count of the
// pings it answered.
func (n *node) icmpEchos(t *testing.T) (v4, v6 int) {
	t.Helper()
	return snmpField(t, n.ns.run(t, "cat", "/proc/net/snmp"), "Icmp:", "InEchos"),
		snmp6Field(t, n.ns.run(t, "cat", "/proc/net/snmp6"), "Icmp6InEchos")
}

func snmpField(t *testing.T, text, proto, field string) int {
	t.Helper()
	var names []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == field && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no %s %s in /proc/net/snmp", proto, field)
	return 0
}

func snmp6Field(t *testing.T, text, field string) int {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == field {
			v, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /proc/net/snmp6", field)
	return 0
}

func prefixLen(cidr string) string { return cidr[strings.IndexByte(cidr, '/'):] }

func addrOnly(cidr string) string { return cidr[:strings.IndexByte(cidr, '/')] }

// linkLocal is the EUI-64 link-local address of mac (RFC 4291 appendix A).
func linkLocal(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		panic(err) // programmer invariant: the MACs are constants
	}
	ip := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, hw[0] ^ 2, hw[1], hw[2], 0xff, 0xfe, hw[3], hw[4], hw[5]}
	return ip.String()
}
