package ra

import (
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/dhcp/serve"
)

// After a live migration to a pod with other addresses, a guest that did
// not notice (no link flap, or a flap it ignores) still uses its old IPv6
// address, on-link prefix and default router. The advertiser learns that
// from the guest's own ICMPv6 (its source addresses, and whom it solicits)
// and tells it, to the VM alone: the old prefix is deprecated by a PIO of
// lifetime 0 in our next RA, and the old router is withdrawn by an RA of
// router lifetime 0 from that router's own link-local address. A guest whose
// addresses are right is never told anything of the kind.
const (
	// staleMemory is how long the evidence of a stale guest (a source
	// address outside the pod's prefix) lets a solicited neighbour that is
	// not our gateway be taken for the guest's old router.
	staleMemory = 10 * time.Minute
	// retellAfter spaces the deprecation of one prefix, and the withdrawal
	// of one router, while the guest keeps using it.
	retellAfter = 10 * time.Second
	// maxTold bounds the prefixes and routers remembered.
	maxTold = 16
	// maxHints bounds the evidence from other services waiting for the
	// loop; more is dropped (the guest repeats itself).
	maxHints = 4
	// legacyPrefixLen is also deprecated: the old pod's prefix length is
	// not known here, and /64 is the common one (a guest ignores a PIO of
	// lifetime 0 for a prefix it does not have).
	legacyPrefixLen = 64
)

// telling reports whether a frame concerns renumbering, so the reader
// passes it on: a source address outside our prefix, or a solicited
// link-local neighbour other than our gateway.
func (a *Advertiser) telling(ev frameEvent) bool {
	if a.cfg.Mode != ModeGateway {
		return false
	}
	return a.stale(ev.src) || a.oldRouter(ev.nsTarget)
}

// oldRouter reports whether a solicited neighbour may be the guest's old
// router: a link-local address that is neither our gateway's nor the
// DHCPv6 server's.
func (a *Advertiser) oldRouter(target netip.Addr) bool {
	return target.IsLinkLocalUnicast() && target != a.src && target != a.cfg.DHCPServer
}

// stale reports a global address of the guest's outside the pod's prefix.
func (a *Advertiser) stale(src netip.Addr) bool {
	return src.Is6() && src.IsGlobalUnicast() && !a.cfg.Prefix.Contains(src)
}

// renumber tells a stale guest, as the package comment says.
func (a *Advertiser) renumber(now time.Time, ev frameEvent) {
	if a.cfg.Mode != ModeGateway {
		return
	}
	if a.stale(ev.src) {
		a.staleUntil = now.Add(staleMemory)
		a.deprecate(now, ev.src)
	}
	if now.Before(a.staleUntil) && a.oldRouter(ev.nsTarget) && ev.src != unspecifiedIP6 {
		a.withdraw(now, ev.nsTarget, ev.nsMAC)
	}
}

// GuestStale is evidence from another service that the guest still uses
// addr, an address this pod does not serve: a DHCPv4 request or ARP from
// its old IPv4 address, a DHCPv6 Renew, Rebind or Confirm for its old IPv6
// one (an IPv6 address in the pod's prefix is no evidence and is
// ignored). The guest came from another pod, so a link-local neighbour it
// solicits next that is not our gateway is taken for its old router, as
// after a stale source address of its own ICMPv6; an old IPv6 address also
// has its prefix deprecated. A guest whose DHCPv6 client renumbered before
// it sent anything from the old address (dhcpcd renewing at T1) has no
// other way to tell. It never blocks and is safe for concurrent use.
func (a *Advertiser) GuestStale(addr netip.Addr) {
	select {
	case a.hints <- addr:
	default:
	}
}

// heard acts on GuestStale's evidence on Run's loop.
func (a *Advertiser) heard(now time.Time, addr netip.Addr) {
	if a.cfg.Mode != ModeGateway || !addr.IsValid() || (addr.Is6() && !a.stale(addr)) {
		return
	}
	a.staleUntil = now.Add(staleMemory)
	if addr.Is6() {
		a.deprecate(now, addr)
	}
}

// stalePrefixes are the prefixes of old to deprecate: with the pod's prefix
// length (the old pod likely had the same), and /64.
func (a *Advertiser) stalePrefixes(old netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, bits := range []int{a.cfg.Prefix.Bits(), legacyPrefixLen} {
		if bits <= 0 || bits >= 128 {
			continue
		}
		p, _ := old.Prefix(bits)
		if len(out) == 0 || out[0] != p {
			out = append(out, p)
		}
	}
	return out
}

// deprecate sends our RA with lifetime-0 PIOs for old's prefixes.
func (a *Advertiser) deprecate(now time.Time, old netip.Addr) {
	prefixes := a.stalePrefixes(old)
	if len(prefixes) == 0 || !a.due(a.deprecated, prefixes[0].Addr(), now) {
		return
	}
	ra, err := BuildDeprecation(a.cfg, prefixes)
	if err != nil {
		a.log.Debug("cannot build the deprecating router advertisement", "error", err)
		return
	}
	a.log.Info("guest still uses an IPv6 address not served here; renumbering: deprecating its prefix",
		"address", old, "prefixes", prefixes, "served", a.cfg.Prefix)
	a.tell(ra, a.src, a.cfg.GatewayMAC, serve.Event{Request: "ICMPv6", Reply: "RA", Peer: old, Stale: old,
		Detail: "deprecates the guest's old on-link prefix"})
}

// withdraw sends a router-lifetime-0 RA from the old router's link-local
// address, from its MAC as the guest knows it (the NS's destination when
// it was a unicast NUD probe), else the MAC its EUI-64 address carries,
// else our gateway's.
func (a *Advertiser) withdraw(now time.Time, router netip.Addr, nsMAC frame.MAC) {
	if !a.due(a.withdrawn, router, now) {
		return
	}
	mac := nsMAC
	if !mac.IsUnicast() {
		if m, ok := frame.MACFromLinkLocal(router); ok {
			mac = m
		} else {
			mac = a.cfg.GatewayMAC
		}
	}
	a.log.Info("guest still uses a default router not served here; renumbering: withdrawing it", "router", router,
		"served", a.src)
	a.tell(BuildWithdrawal(), router, mac, serve.Event{Request: "NS", Reply: "RA", Peer: router, Stale: router,
		Detail: "withdraws the guest's old default router"})
}

// due reports whether key may be told now, and records it.
func (a *Advertiser) due(told map[netip.Addr]time.Time, key netip.Addr, now time.Time) bool {
	if last, ok := told[key]; ok && now.Sub(last) < retellAfter {
		return false
	}
	if len(told) >= maxTold {
		clear(told)
	}
	told[key] = now
	return true
}

// tell sends ra from src (IPv6) and srcMAC to all nodes in a frame to the
// VM's MAC: through the tap only the VM receives it.
func (a *Advertiser) tell(ra *ndp.RouterAdvertisement, src netip.Addr, srcMAC frame.MAC, ev serve.Event) {
	body, err := ndp.MarshalMessage(ra)
	if err != nil {
		a.log.Debug("cannot encode the router advertisement", "error", err)
		return
	}
	f := frame.AppendICMP6(nil, frame.ICMP6{Eth: frame.Ethernet{Dst: a.cfg.VMMAC, Src: srcMAC},
		Src: src, Dst: allNodes, HopLimit: frame.NDPHopLimit, Payload: body})
	ev.Outcome = serve.Replied
	if err := a.conn.WriteFrame(f); err != nil {
		a.sendFailed(allNodes, err)
		ev.Outcome, ev.Reason, ev.Detail = serve.Dropped, serve.SendFailed, err.Error()
	}
	a.observe(ev)
}
