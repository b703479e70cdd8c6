package service

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"

	"github.com/dsbridge/dsbridge/cmd/dsbridge/internal/status"
	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/dhcp6"
	"github.com/dsbridge/dsbridge/ra"
)

// Event4 turns a DHCPv4 server event into a status event; cfg is the
// interface's DHCPv4 configuration (for the lease it hands out).
func Event4(ev dhcp4.Event, cfg *dhcp4.Config) status.Event {
	out := status.Event{Protocol: status.ProtoDHCPv4, Received: true, Reason: string(ev.Drop), Latency: ev.Latency}
	switch {
	case ev.ARP:
		out.Request = "ARP"
		if ev.Drop == "" {
			out.Reply = "ARP"
		}
	case ev.Type != dhcpv4.MessageTypeNone:
		out.Request, out.XID = ev.Type.String(), fmt.Sprintf("0x%08x", ev.XID)
		if ev.Reply != dhcpv4.MessageTypeNone {
			out.Reply = ev.Reply.String()
		}
	}
	switch {
	case out.Reply != "":
		out.Outcome = status.OutcomeReplied
	case ev.Drop != "":
		out.Outcome = status.OutcomeDropped
	default:
		out.Outcome = status.OutcomeUnanswered
	}
	out.Lease = lease4(ev, out.Outcome, cfg)
	return out
}

// lease4 is the guest's lease state after ev, or nil when ev changes none.
func lease4(ev dhcp4.Event, outcome string, cfg *dhcp4.Config) *status.Lease {
	if cfg == nil || ev.ARP {
		return nil
	}
	var state string
	switch {
	case ev.Reply == dhcpv4.MessageTypeOffer:
		state = status.LeaseOffered
	case ev.Reply == dhcpv4.MessageTypeAck && ev.Type == dhcpv4.MessageTypeRequest:
		state = status.LeaseBound
	case ev.Reply == dhcpv4.MessageTypeNak:
		state = status.LeaseRefused
	case ev.Type == dhcpv4.MessageTypeRelease && outcome == status.OutcomeUnanswered:
		state = status.LeaseReleased
	case ev.Type == dhcpv4.MessageTypeDecline && outcome == status.OutcomeUnanswered:
		state = status.LeaseDeclined
	default:
		return nil
	}
	lt := cfg.LeaseTime
	if lt == 0 {
		lt = dhcp4.DefaultLeaseTime
	}
	return &status.Lease{State: state, Address: cfg.Address.String(), Seconds: int64(lt / time.Second)}
}

// Event6 turns a DHCPv6 server event into a status event; cfg is the
// interface's DHCPv6 configuration.
func Event6(ev dhcp6.Event, cfg *dhcp6.Config) status.Event {
	out := status.Event{Protocol: status.ProtoDHCPv6, Received: true, Latency: ev.Latency, Detail: ev.Reason}
	if ev.Type != 0 {
		out.Request, out.XID = ev.Type.String(), fmt.Sprintf("0x%06x", ev.XID)
	}
	switch ev.Outcome {
	case dhcp6.OutcomeReplied:
		out.Outcome, out.Reply = status.OutcomeReplied, ev.Reply.String()
	case dhcp6.OutcomeUnanswered:
		out.Outcome = status.OutcomeUnanswered
	default:
		out.Outcome, out.Reason = status.OutcomeDropped, ev.Outcome.String()
	}
	out.Lease = lease6(ev, cfg)
	return out
}

// lease6 is the guest's lease state after ev, or nil when ev changes none.
func lease6(ev dhcp6.Event, cfg *dhcp6.Config) *status.Lease {
	if cfg == nil || ev.Outcome != dhcp6.OutcomeReplied {
		return nil
	}
	var state string
	switch {
	case ev.Reply == dhcpv6.MessageTypeAdvertise:
		state = status.LeaseOffered
	case ev.Type == dhcpv6.MessageTypeRelease:
		state = status.LeaseReleased
	case ev.Type == dhcpv6.MessageTypeDecline:
		state = status.LeaseDeclined
	case ev.Type == dhcpv6.MessageTypeInformationRequest:
		return nil
	case ev.Reply == dhcpv6.MessageTypeReply:
		// Request, Renew, Rebind, Solicit with Rapid Commit, Confirm: the
		// guest holds the address.
		state = status.LeaseBound
	default:
		return nil
	}
	valid := cfg.ValidLifetime
	if valid == 0 {
		valid = dhcp6.DefaultValidLifetime
	}
	return &status.Lease{State: state, Address: cfg.Address.String(), Seconds: int64(valid / time.Second)}
}

// EventRA turns a router advertisement event into a status event.
func EventRA(ev ra.Event) status.Event {
	out := status.Event{Protocol: status.ProtoRA, Peer: addrString(ev.Peer)}
	switch ev.Type {
	case ra.EventSolicitation:
		out.Received, out.Request, out.Outcome = true, "RS", status.OutcomeAccepted
	case ra.EventAdvertisement:
		out.Reply = "RA"
	case ra.EventSendFailed:
		out.Reply, out.Outcome, out.Reason = "RA", status.OutcomeDropped, "send-failed"
		if ev.Err != nil {
			out.Detail = ev.Err.Error()
		}
	}
	return out
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// offerOf summarises what the services of an interface hand out.
func offerOf(s Spec, c Configs) status.Offer {
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
