// Package trace decodes the frames dsbridge exchanges with a VM into one
// line each (message type, transaction ID, client identity, the values
// offered) and wraps a frame transport to print them, for the dhcp debug
// mode. Decoding never panics on any input.
package trace

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// Protocols a decoded frame belongs to.
const (
	DHCPv4 = "dhcpv4"
	DHCPv6 = "dhcpv6"
	RA     = "ra"
)

// Decode describes one Ethernet frame to or from the VM: its protocol and a
// line such as "DISCOVER xid=0x1a2b3c4d chaddr=0a:58:0a:10:00:05". ok is
// false for frames of no interest (neighbour discovery other than RS and
// RA, other UDP ports).
func Decode(b []byte) (proto, line string, ok bool) {
	eth, err := frame.ParseEthernet(b)
	if err != nil {
		return "", "", false
	}
	switch eth.Type {
	case frame.EtherTypeARP:
		return arp(b)
	case frame.EtherTypeIPv4:
		return udp4(b)
	case frame.EtherTypeIPv6:
		return ipv6(b)
	}
	return "", "", false
}

func arp(b []byte) (string, string, bool) {
	_, a, err := frame.ParseARP(b)
	if err != nil {
		return DHCPv4, "ARP malformed: " + err.Error(), true
	}
	if a.Op == frame.ARPReply {
		return DHCPv4, fmt.Sprintf("ARP reply %s is-at %s", a.SenderIP, a.SenderMAC), true
	}
	return DHCPv4, fmt.Sprintf("ARP who-has %s tell %s (%s)", a.TargetIP, a.SenderIP, a.SenderMAC), true
}

func udp4(b []byte) (string, string, bool) {
	p, err := frame.ParseUDP4(b)
	if err != nil {
		return DHCPv4, "malformed IPv4/UDP frame: " + err.Error(), true
	}
	if p.DstPort != frame.PortDHCPv4Server && p.DstPort != frame.PortDHCPv4Client {
		return "", "", false
	}
	m, err := dhcpv4.FromBytes(p.Payload)
	if err != nil {
		return DHCPv4, "unparsable DHCPv4 message: " + err.Error(), true
	}
	var w line
	w.word(m.MessageType().String())
	w.kv("xid", fmt.Sprintf("0x%08x", binary.BigEndian.Uint32(m.TransactionID[:])))
	w.kv("chaddr", m.ClientHWAddr.String())
	w.kv("to", fmt.Sprintf("%s:%d", p.Dst, p.DstPort))
	if m.OpCode == dhcpv4.OpcodeBootReply {
		w.ip("yiaddr", m.YourIPAddr)
	}
	w.ip("ciaddr", m.ClientIPAddr)
	w.ip("giaddr", m.GatewayIPAddr)
	if m.Flags&0x8000 != 0 {
		w.word("broadcast")
	}
	options4(&w, m.Options)
	return DHCPv4, w.String(), true
}

// options4 prints the options of a DHCPv4 message that tell what was asked
// and offered (RFC 2132 numbering).
func options4(w *line, o dhcpv4.Options) {
	w.kv("requested", ip4(o[50]))
	w.kv("server", ip4(o[54]))
	w.kv("mask", ip4(o[1]))
	w.kv("router", ip4s(o[3]))
	w.kv("dns", ip4s(o[6]))
	w.quoted("hostname", o[12])
	w.quoted("domain", o[15])
	if v, ok := o[26]; ok && len(v) == 2 {
		w.kv("mtu", fmt.Sprint(binary.BigEndian.Uint16(v)))
	}
	if v, ok := o[51]; ok && len(v) == 4 {
		w.kv("lease", (time.Duration(binary.BigEndian.Uint32(v)) * time.Second).String())
	}
	if v, ok := o[119]; ok {
		if l, err := rfc1035label.FromBytes(v); err == nil {
			w.kv("search", strings.Join(l.Labels, ","))
		}
	}
	if v, ok := o[121]; ok {
		w.kv("routes", routes121(v))
	}
	w.quoted("message", o[56])
	if v, ok := o[55]; ok {
		codes := make([]string, len(v))
		for i, c := range v {
			codes[i] = fmt.Sprint(c)
		}
		w.kv("params", strings.Join(codes, ","))
	}
	if v, ok := o[61]; ok {
		w.kv("client-id", net.HardwareAddr(v).String())
	}
}

// routes121 decodes classless static routes (RFC 3442 §3) as dst>via pairs.
func routes121(b []byte) string {
	var out []string
	for len(b) > 0 {
		bits := int(b[0])
		n := (bits + 7) / 8
		if bits > 32 || len(b) < 1+n+4 {
			return strings.Join(append(out, "malformed"), ",")
		}
		var dst [4]byte
		copy(dst[:], b[1:1+n])
		via := netip.AddrFrom4([4]byte(b[1+n : 5+n]))
		out = append(out, fmt.Sprintf("%s/%d>%s", netip.AddrFrom4(dst), bits, via))
		b = b[5+n:]
	}
	return strings.Join(out, ",")
}

func ipv6(b []byte) (string, string, bool) {
	if u, err := frame.ParseUDP6(b); err == nil {
		if u.DstPort != frame.PortDHCPv6Server && u.DstPort != frame.PortDHCPv6Client && u.SrcPort != frame.PortDHCPv6Server {
			return "", "", false
		}
		return DHCPv6, dhcp6(u), true
	}
	p, err := frame.ParseICMP6(b)
	if err != nil || len(p.Payload) == 0 {
		return "", "", false
	}
	switch p.Payload[0] {
	case frame.ICMPv6RouterSolicitation:
		return RA, rs(p), true
	case frame.ICMPv6RouterAdvertisement:
		return RA, ra(p), true
	}
	return "", "", false
}

func dhcp6(u frame.UDP6) string {
	msg, err := dhcpv6.FromBytes(u.Payload)
	if err != nil {
		return "unparsable DHCPv6 message: " + err.Error()
	}
	var w line
	if r, ok := msg.(*dhcpv6.RelayMessage); ok && r != nil {
		w.word(r.MessageType.String())
		inner, err := r.GetInnerMessage()
		if err != nil {
			w.word("without a client message: " + err.Error())
			return w.String()
		}
		msg = inner
	}
	m, ok := msg.(*dhcpv6.Message)
	if !ok || m == nil {
		return "DHCPv6 message of unknown kind"
	}
	w.word(m.MessageType.String())
	w.kv("xid", fmt.Sprintf("0x%06x", uint32(m.TransactionID[0])<<16|uint32(m.TransactionID[1])<<8|uint32(m.TransactionID[2])))
	w.kv("from", u.Src.String())
	w.kv("to", u.Dst.String())
	if cid := m.Options.ClientID(); cid != nil {
		w.kv("duid", net.HardwareAddr(cid.ToBytes()).String())
	}
	options6(&w, m)
	return w.String()
}

// options6 prints the IAs, status, DNS and search list of a message.
func options6(w *line, m *dhcpv6.Message) {
	for _, ia := range m.Options.IANA() {
		var addrs []string
		for _, a := range ia.Options.Addresses() {
			addrs = append(addrs, fmt.Sprintf("%s(pref %s valid %s)", a.IPv6Addr, a.PreferredLifetime, a.ValidLifetime))
		}
		s := fmt.Sprintf("iaid=%x", ia.IaId)
		if ia.T1 != 0 || ia.T2 != 0 {
			s += fmt.Sprintf(" t1=%s t2=%s", ia.T1, ia.T2)
		}
		if len(addrs) > 0 {
			s += " " + strings.Join(addrs, " ")
		}
		if st := ia.Options.Status(); st != nil {
			s += " status=" + st.StatusCode.String()
		}
		w.kv("ia_na", "["+s+"]")
	}
	if m.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
		w.word("rapid-commit")
	}
	if st := m.Options.Status(); st != nil {
		w.kv("status", st.StatusCode.String())
		w.quoted("status-message", []byte(st.StatusMessage))
	}
	var dns []string
	for _, ip := range m.Options.DNS() {
		dns = append(dns, ip.String())
	}
	w.kv("dns", strings.Join(dns, ","))
	if l := m.Options.DomainSearchList(); l != nil {
		w.kv("search", strings.Join(l.Labels, ","))
	}
	if f := m.Options.FQDN(); f != nil && f.DomainName != nil {
		w.kv("fqdn", strings.Join(f.DomainName.Labels, "."))
	}
}

func rs(p frame.ICMP6) string {
	var w line
	w.word("RS")
	w.kv("from", p.Src.String())
	w.kv("mac", p.Eth.Src.String())
	w.kv("hoplimit", fmt.Sprint(p.HopLimit))
	return w.String()
}

func ra(p frame.ICMP6) string {
	var w line
	w.word("RA")
	w.kv("from", p.Src.String())
	w.kv("to", p.Dst.String())
	m, err := ndp.ParseMessage(p.Payload)
	if err != nil {
		w.word("unparsable: " + err.Error())
		return w.String()
	}
	a, ok := m.(*ndp.RouterAdvertisement)
	if !ok {
		return w.String()
	}
	w.kv("M", b01(a.ManagedConfiguration))
	w.kv("O", b01(a.OtherConfiguration))
	w.kv("lifetime", a.RouterLifetime.String())
	for _, o := range a.Options {
		switch o := o.(type) {
		case *ndp.LinkLayerAddress:
			w.kv("sllao", o.Addr.String())
		case *ndp.PrefixInformation:
			w.kv("prefix", fmt.Sprintf("%s/%d(L=%s,A=%s)", o.Prefix, o.PrefixLength,
				b01(o.OnLink), b01(o.AutonomousAddressConfiguration)))
		case *ndp.MTU:
			w.kv("mtu", fmt.Sprint(o.MTU))
		case *ndp.RecursiveDNSServer:
			var s []string
			for _, a := range o.Servers {
				s = append(s, a.String())
			}
			w.kv("rdnss", strings.Join(s, ","))
		case *ndp.DNSSearchList:
			w.kv("dnssl", strings.Join(o.DomainNames, ","))
		}
	}
	return w.String()
}

// line builds "WORD k=v k=v".
type line struct{ sb strings.Builder }

func (l *line) word(s string) {
	if l.sb.Len() > 0 {
		l.sb.WriteByte(' ')
	}
	l.sb.WriteString(s)
}

// kv adds k=v unless v is empty.
func (l *line) kv(k, v string) {
	if v != "" {
		l.word(k + "=" + v)
	}
}

// ip adds k=ip unless ip is unset or 0.0.0.0.
func (l *line) ip(k string, ip net.IP) {
	if ip != nil && !ip.IsUnspecified() {
		l.kv(k, ip.String())
	}
}

// quoted adds k="v" for a present option.
func (l *line) quoted(k string, v []byte) {
	if len(v) > 0 {
		l.kv(k, fmt.Sprintf("%q", v))
	}
}

func (l *line) String() string { return l.sb.String() }

func ip4(b []byte) string {
	if len(b) != 4 {
		return ""
	}
	return netip.AddrFrom4([4]byte(b)).String()
}

func ip4s(b []byte) string {
	var out []string
	for ; len(b) >= 4; b = b[4:] {
		out = append(out, ip4(b[:4]))
	}
	return strings.Join(out, ",")
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
