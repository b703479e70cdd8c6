package netsetup

import (
	"net"
	"net/netip"
	"time"
)

// SnapshotVersion is the JSON schema version written into saved snapshots.
const SnapshotVersion = 1

// Snapshot is the pod interface's network as the CNI left it, before any
// plumbing moved it. Everything dsbridge hands to the VM is computed from it.
type Snapshot struct {
	Version  int       `json:"version"`
	TakenAt  time.Time `json:"takenAt"`
	PodIface string    `json:"podIface"` // eth0, pod<hash>, net<i>
	MAC      MAC       `json:"mac"`      // the pod interface's original MAC
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
}

// Gateway is a default route's next hop.
type Gateway struct {
	IP netip.Addr `json:"ip"`
	// MAC is the gateway's link-layer address from the neighbour table; zero
	// when it could not be resolved.
	MAC MAC `json:"mac,omitempty"`
	// LinkLocal is the gateway's IPv6 link-local address: the next hop itself
	// when it is link-local, else fe80:: + EUI-64(MAC). Only for IPv6.
	LinkLocal netip.Addr `json:"linkLocal,omitzero"`
}

// Route is one non-default route through the pod interface.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via,omitzero"` // zero: on-link
}

// MAC is a hardware address that marshals as text ("0a:58:0a:10:00:05").
type MAC net.HardwareAddr

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(net.HardwareAddr(m).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = nil
		return nil
	}
	hw, err := net.ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = MAC(hw)
	return nil
}

// String returns the colon-separated form.
func (m MAC) String() string { return net.HardwareAddr(m).String() }
