package service

import (
	"net"
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// leases is the lease a service hands out in each state the guest's lease
// can take, built once: events share them, read only.
type leases map[string]*status.Lease

// newLeases returns bound in every lease state; nil for a service without
// a lease.
func newLeases(bound *status.Lease) leases {
	if bound == nil {
		return nil
	}
	out := leases{}
	for _, state := range []string{status.LeaseOffered, status.LeaseBound, status.LeaseRefused, status.LeaseReleased, status.LeaseDeclined} {
		l := *bound
		l.State = state
		out[state] = &l
	}
	return out
}

// statusEvent turns a service's event into a status event of protocol
// proto; lease, when set, is the lease the service hands out in each state
// (which follows the exchange). It allocates nothing: the transaction ID
// and the peer are written out when the status is read.
func statusEvent(proto string, ev serve.Event, lease leases) status.Event {
	// Every event answers a received packet, but an RA the advertiser sent
	// on its own schedule (a reply to no request).
	received := ev.Request != "" || ev.Reply == ""
	out := status.Event{Protocol: proto, Received: received, Request: ev.Request, Reply: ev.Reply,
		Reason: string(ev.Reason), Detail: ev.Detail, PeerAddr: ev.Peer, Stale: addrString(ev.Stale), Latency: ev.Latency,
		Count: ev.Count}
	switch ev.Outcome {
	case serve.Replied:
		out.Outcome = status.OutcomeReplied
	case serve.Unanswered:
		out.Outcome = status.OutcomeUnanswered
	case serve.Accepted:
		out.Outcome = status.OutcomeAccepted
	case serve.Dropped:
		out.Outcome = status.OutcomeDropped
	}
	if !received && out.Outcome == status.OutcomeReplied {
		out.Outcome = "" // an unsolicited RA: sent, not a received packet's fate
	}
	switch {
	case ev.Request == "" || ev.Request == "ARP" || proto == status.ProtoRA:
	case proto == status.ProtoDHCPv4:
		out.XIDNum, out.XIDDigits = ev.XID, 8
	default:
		out.XIDNum, out.XIDDigits = ev.XID, 6
	}
	if lease != nil {
		if state := leaseState(proto, ev); state != "" {
			out.Lease = lease[state]
		}
	}
	return out
}

// leaseState is the guest's lease state after ev, or "" when ev changes
// none.
func leaseState(proto string, ev serve.Event) string {
	if proto == status.ProtoDHCPv4 {
		switch {
		case ev.Reply == "OFFER":
			return status.LeaseOffered
		case ev.Reply == "ACK" && ev.Request == "REQUEST":
			return status.LeaseBound
		case ev.Reply == "NAK":
			return status.LeaseRefused
		case ev.Request == "RELEASE" && ev.Outcome == serve.Unanswered:
			return status.LeaseReleased
		case ev.Request == "DECLINE" && ev.Outcome == serve.Unanswered:
			return status.LeaseDeclined
		}
		return ""
	}
	switch {
	case ev.Outcome != serve.Replied, ev.Request == "INFORMATION-REQUEST":
		return ""
	case ev.Reply == "ADVERTISE":
		return status.LeaseOffered
	case ev.Request == "RELEASE":
		return status.LeaseReleased
	case ev.Request == "DECLINE":
		return status.LeaseDeclined
	case ev.Reply == "REPLY":
		// Request, Renew, Rebind, Solicit with Rapid Commit, Confirm: the
		// guest holds the address.
		return status.LeaseBound
	}
	return ""
}

// lease4 is the lease the DHCPv4 service hands out.
func lease4(cfg *dhcp4.Config) *status.Lease {
	lt := cfg.LeaseTime
	if lt == 0 {
		lt = dhcp4.DefaultLeaseTime
	}
	return &status.Lease{Address: cfg.Address.String(), Seconds: int64(lt / time.Second)}
}

// lease6 is the lease the DHCPv6 service hands out.
func lease6(cfg *dhcp6.Config) *status.Lease {
	valid := cfg.ValidLifetime
	if valid == 0 {
		valid = dhcp6.DefaultValidLifetime
	}
	return &status.Lease{Address: cfg.Address.String(), Seconds: int64(valid / time.Second)}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// offerOf summarises what the services of an interface hand out.
func offerOf(s binding.Spec, c binding.Configs) status.Offer {
	var o status.Offer
	if d := c.DHCPv4; d != nil {
		o.IPv4, o.ServerID, o.Hostname, o.MTU = d.Address.String(), d.ServerID.String(), d.Hostname, d.MTU
		o.Gateway4 = addrString(d.Gateway)
		o.DNS = appendAddrs(o.DNS, d.DNS)
		o.Search = d.Search
	}
	if d := c.DHCPv6; d != nil {
		o.IPv6 = d.Address.String()
		if d.ServerDUID != nil {
			o.ServerDUID = net.HardwareAddr(d.ServerDUID.ToBytes()).String()
		}
		o.DNS = appendAddrs(o.DNS, d.DNS)
		if o.Search == nil {
			o.Search = d.Search
		}
	}
	if r := c.RA; r != nil {
		o.GatewayLLA, o.GatewayMAC, o.RAMode = addrString(r.GatewayLLA), r.GatewayMAC.String(), s.RAMode.String()
		if o.MTU == 0 {
			o.MTU = r.MTU
		}
		if c.DHCPv6 != nil && o.IPv6 != "" {
			o.IPv6 = r.Prefix.String() // the address with its on-link prefix
		}
	}
	return o
}

func appendAddrs(out []string, addrs []netip.Addr) []string {
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}
