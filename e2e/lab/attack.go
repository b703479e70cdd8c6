package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// DHCPReplies matches, in tcpdump's filter language, a DHCPv4 BOOTREPLY
// (op 2, RFC 2131 §2) from port 67 or to port 68, and a DHCPv6 Advertise
// (2), Reply (7), Reconfigure (10) or Relay-reply (13) (RFC 8415 §7.3) on
// the DHCPv6 ports: what only a server (or a relay's server side) sends.
// The DHCPv6 offset holds for packets without extension headers, which is
// how every server in the lab sends them.
const DHCPReplies = "(ip and udp and (udp src port 67 or udp dst port 68) and udp[8] = 2)" +
	" or (ip6 and ip6[6] = 17 and (udp port 546 or udp port 547) and (ip6[48] = 2 or ip6[48] = 7 or ip6[48] = 10 or ip6[48] = 13))"

// Fragments matches any IPv4 or IPv6 fragment: what an amplified reply
// turns into.
const Fragments = "(ip and ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] = 44)"

// ServerMessages is DHCPReplies, router advertisements (RFC 4861 §4.2)
// and Fragments.
const ServerMessages = DHCPReplies + " or (ip6 and ip6[6] = 58 and ip6[40] = 134) or " + Fragments

// CausedFilter matches, at the gateway's end of a pod's uplink, the frames
// that dsbridge caused or could have caused: every frame from one of the
// pod's own MACs (its bridge's and its uplink's: what the pod's own stack
// sends, ARP, NS, NA, MLD, RS, replies from its sockets), every server
// message (ServerMessages, whatever its source MAC), and every ARP that
// names the VM's IPv4 as its sender from another MAC than the VM's (the
// signature of ARP poisoning). BridgeOwn tells KubeVirt's bridge's own
// frames apart. It needs no direction qualifier: nothing the gateway or a
// neighbour sends matches.
func CausedFilter(pod []frame.MAC, vm frame.MAC, vmIP netip.Addr) string {
	var b strings.Builder
	for _, m := range pod {
		fmt.Fprintf(&b, "ether src %s or ", m)
	}
	ip := vmIP.As4()
	fmt.Fprintf(&b, "(%s) or (arp and arp[14:4] = 0x%02x%02x%02x%02x and not (arp[8:4] = 0x%02x%02x%02x%02x and arp[12:2] = 0x%02x%02x))",
		ServerMessages, ip[0], ip[1], ip[2], ip[3], vm[0], vm[1], vm[2], vm[3], vm[4], vm[5])
	return b.String()
}

// BridgeOwn reports whether a captured frame (a line of Capture.Stop) from
// the bridge whose link-local address is bridgeLLA is one KubeVirt's
// bridge sends by itself, with or without dsbridge: its router
// solicitation, its duplicate address detection probe (from ::), an NA for
// its own address, and MLD reports for its own groups; an MLD report
// naming ff02::1:2 is the DHCPv6 socket's, dsbridge's.
func BridgeOwn(line string, bridgeLLA netip.Addr) bool {
	switch {
	case strings.Contains(line, "ff02::1:2,") || strings.Contains(line, "ff02::1:2 ") || strings.Contains(line, "ff02::1:2]"):
		return false
	case strings.Contains(line, "router solicitation"), strings.Contains(line, "multicast listener report"):
		return true
	case strings.Contains(line, "neighbor solicitation") && strings.Contains(line, " :: > "):
		return true
	case strings.Contains(line, "neighbor advertisement") && strings.Contains(line, "tgt is "+bridgeLLA.String()+","):
		return true
	}
	return false
}

// Packets decodes a stopped capture again with tcpdump's flags and
// returns each packet's whole text, continuation lines (tcpdump -v puts
// e.g. MLDv2 group records there) joined to its first line by " | ".
func (c *Capture) Packets(t T, flags ...string) []string {
	t.Helper()
	var pkts []string
	for _, l := range c.Read(t, append([]string{"-n", "-e", "-v"}, flags...)...) {
		if len(l) > 0 && l[0] >= '0' && l[0] <= '9' || len(pkts) == 0 {
			pkts = append(pkts, l)
		} else {
			pkts[len(pkts)-1] += " | " + strings.TrimSpace(l)
		}
	}
	return pkts
}

// LinkLocal returns dev's IPv6 link-local address in ns (a bridge keeps
// the one it formed from its first MAC when a port changes its MAC).
func LinkLocal(t T, ns *NS, dev string) netip.Addr {
	t.Helper()
	var links []struct {
		AddrInfo []Addr `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "-6", "addr", "show", "dev", dev, "scope", "link")), &links); err != nil {
		t.Fatalf("ip -j -6 addr show %s: %v", dev, err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				return addr
			}
		}
	}
	t.Fatalf("%s in %s has no link-local address", dev, ns.Name)
	return netip.Addr{}
}

// LinkMAC returns dev's MAC in ns.
func LinkMAC(t T, ns *NS, dev string) frame.MAC {
	t.Helper()
	m, err := frame.ParseMAC(strings.TrimSpace(ns.Run(t, "cat", "/sys/class/net/"+dev+"/address")))
	if err != nil {
		t.Fatalf("MAC of %s in %s: %v", dev, ns.Name, err)
	}
	return m
}

// FarHost is a host behind the lab's gateway, off the pod's link: the
// node routes to it over a veth of its own. It is the address a packet
// can name to make the pod send through the gateway (with proxy ARP on
// the gateway, as Calico's node answers for every routed address).
type FarHost struct {
	NS         *NS
	If         string
	IPv4, IPv6 netip.Addr
}

// Addresses of the far host and the node's side of its link.
const (
	farNode4, farHost4 = "10.17.0.1", "10.17.0.2"
	farNode6, farHost6 = "fd00:10:17::1", "fd00:10:17::2"
)

// NewFarHost builds a far host behind l's node: 10.17.0.2/24 and
// fd00:10:17::2/64 with default routes via the node.
func NewFarHost(t T, l *Lab) *FarHost {
	t.Helper()
	f := &FarHost{NS: NewNS(t), If: "eth0", IPv4: netip.MustParseAddr(farHost4), IPv6: netip.MustParseAddr(farHost6)}
	nodeIf := RandName("far")
	Veth(t, l.Node, nodeIf, f.NS, f.If)
	l.Node.Run(t, "ip", "addr", "add", farNode4+"/24", "dev", nodeIf)
	l.Node.Run(t, "ip", "addr", "add", farNode6+"/64", "dev", nodeIf, "nodad")
	f.NS.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf."+f.If+".accept_dad=0")
	f.NS.Run(t, "ip", "addr", "add", farHost4+"/24", "dev", f.If)
	f.NS.Run(t, "ip", "addr", "add", farHost6+"/64", "dev", f.If, "nodad")
	f.NS.Run(t, "ip", "route", "add", "default", "via", farNode4)
	f.NS.Run(t, "ip", "-6", "route", "add", "default", "via", farNode6)
	return f
}

// ProxyARP makes dev in ns answer ARP for every address it routes
// elsewhere, at once (proxy_delay 0: a broadcast request is otherwise
// answered after up to 0.8 s), until the test ends.
func ProxyARP(t T, ns *NS, dev string) {
	t.Helper()
	ns.Run(t, "sysctl", "-qw", "net.ipv4.conf."+dev+".proxy_arp=1", "net.ipv4.neigh."+dev+".proxy_delay=0")
	t.Cleanup(func() {
		if _, err := ns.Exec("sysctl", "-qw", "net.ipv4.conf."+dev+".proxy_arp=0", "net.ipv4.neigh."+dev+".proxy_delay=80"); err != nil {
			t.Errorf("turn proxy ARP off: %v", err)
		}
	})
}

// Neighbour is one entry of a neighbour table, as `ip -j neigh` reports it.
type Neighbour struct {
	Dst    string   `json:"dst"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

// Neigh returns ns's neighbour entry for addr on dev; ok is false when
// there is none.
func Neigh(t T, ns *NS, dev string, addr netip.Addr) (n Neighbour, ok bool) {
	t.Helper()
	var all []Neighbour
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "neigh", "show", "dev", dev, "to", addr.String())), &all); err != nil {
		t.Fatalf("ip -j neigh show %s: %v", addr, err)
	}
	for _, e := range all {
		if e.Dst == addr.String() {
			return e, true
		}
	}
	return Neighbour{}, false
}

// PaceResult is what Pace sent: frames attempted, those the kernel
// refused (ENOBUFS under load), and for how long.
type PaceResult struct {
	Attempted, Failed int
	Took              time.Duration
}

// Rate is the frames per second the kernel took.
func (r PaceResult) Rate() float64 { return float64(r.Attempted-r.Failed) / r.Took.Seconds() }

// Pace sends frames round-robin through send at rate frames per second
// until stop is closed, catching up in bursts when the sender was
// descheduled.
func Pace(rate int, frames [][]byte, send func([]byte) error, stop <-chan struct{}) PaceResult {
	var r PaceResult
	start := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			r.Took = time.Since(start)
			return r
		case <-tick.C:
		}
		for due := int(time.Since(start).Seconds() * float64(rate)); r.Attempted < due; r.Attempted++ {
			if err := send(frames[r.Attempted%len(frames)]); err != nil {
				r.Failed++
			}
		}
	}
}
