package netsetup

import (
	"net/netip"
	"time"

	"github.com/dsbridge/dsbridge/dhcp/frame"
)

// SnapshotVersion is the JSON schema version written into saved snapshots.
const SnapshotVersion = 1

// Snapshot is the pod interface's network as the CNI left it, before any
// plumbing moved it. Everything dsbridge hands to the VM is computed from it.
type Snapshot struct {
	Version  int       `json:"version"`
	TakenAt  time.Time `json:"takenAt"`
	PodIface string    `json:"podIface"` // eth0, pod<hash>, net<i>
	MAC      frame.MAC `json:"mac"`      // the pod interface's original MAC
	MTU      int       `json:"mtu"`

	// Global addresses with their prefix lengths, in kernel order.
	IPv4 []netip.Prefix `json:"ipv4,omitempty"`
	IPv6 []netip.Prefix `json:"ipv6,omitempty"`

	Gateway4 *Gateway `json:"gateway4,omitempty"`
	Gateway6 *Gateway `json:"gateway6,omitempty"`

	// Routes through the pod interface other than the defaults and the
	// kernel's connected prefix routes.
	Routes []Route `json:"routes,omitempty"`

	DNS      []netip.Addr `json:"dns,omitempty"`
	Search   []string     `json:"search,omitempty"`
	Hostname string       `json:"hostname,omitempty"`

	// Plumbed is true when the snapshot was read from existing plumbing
	// (the dummy <x> holds the addresses): the default routes were already
	// gone, so Gateway4, Gateway6 and Routes are empty. LoadOrTake never
	// saves such a snapshot.
	Plumbed bool `json:"plumbed,omitempty"`

	// Restore is what Teardown needs, beyond the fields above, to put the
	// pod interface back exactly as it was.
	Restore Restore `json:"restore"`
}

// Restore is the kernel state of the pristine pod interface that teardown
// re-creates and that the services never use.
type Restore struct {
	// Addrs are the global addresses (both families, kernel order) with
	// their IFA_F_* flags (e.g. nodad) and lifetimes.
	Addrs []Addr `json:"addrs,omitempty"`
	// Up is the administrative state of the pod interface.
	Up bool `json:"up"`
	// AddrGenMode is net.ipv6.conf.<iface>.addr_gen_mode; -1 when IPv6 is
	// off on the link.
	AddrGenMode int `json:"addrGenMode"`
	// ArpIgnore is net.ipv4.conf.all.arp_ignore before plumbing set it to 1.
	ArpIgnore int `json:"arpIgnore"`
}

// Addr is one address of the pod interface as the kernel held it.
type Addr struct {
	Prefix netip.Prefix `json:"prefix"`
	Flags  int          `json:"flags,omitempty"` // IFA_F_*, kernel-owned bits cleared
	// ValidLft and PreferedLft in seconds; 0 means forever.
	ValidLft    int `json:"validLft,omitempty"`
	PreferedLft int `json:"preferedLft,omitempty"`
}

// RouteAttrs are the kernel attributes of a route that teardown restores
// exactly; the services ignore them.
type RouteAttrs struct {
	Metric   int        `json:"metric,omitempty"`
	Protocol int        `json:"protocol,omitempty"` // RTPROT_*
	Scope    int        `json:"scope,omitempty"`    // RT_SCOPE_*
	Src      netip.Addr `json:"src,omitzero"`       // preferred source
	OnLink   bool       `json:"onlink,omitempty"`   // RTNH_F_ONLINK
	MTU      int        `json:"mtu,omitempty"`
	AdvMSS   int        `json:"advmss,omitempty"`
}

// Gateway is a default route's next hop.
type Gateway struct {
	IP netip.Addr `json:"ip"`
	// MAC is the gateway's link-layer address from the neighbour table; zero
	// when it could not be resolved.
	MAC frame.MAC `json:"mac,omitzero"`
	// LinkLocal is the gateway's IPv6 link-local address: the next hop itself
	// when it is link-local, else fe80:: + EUI-64(MAC). Only for IPv6.
	LinkLocal netip.Addr `json:"linkLocal,omitzero"`
	// Route holds the default route's kernel attributes (metric, protocol).
	Route RouteAttrs `json:"route"`
}

// Route is one non-default route through the pod interface. A second
// default route (e.g. another metric) is kept here too, so teardown
// restores it.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via,omitzero"` // zero: on-link
	RouteAttrs
}
