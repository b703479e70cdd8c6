package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/dsbridge/dsbridge/ra/kernel"
	"github.com/vishvananda/netlink"
)

// Request asks for one VM interface to be made ready: snapshot, plumbing,
// plan. It works in the caller's network namespace.
type Request struct {
	Name              string
	Index             int
	PodIface, Tap     string // Tap "": KubeVirt's name for PodIface
	VMMAC             net.HardwareAddr
	Identity, Network string
	Extra             []dhcp4.Option
	RAMode            ra.Mode
	StateDir          string
	Snapshot          netsetup.SnapshotOptions
	// Known is the pod interface's snapshot when the caller already holds
	// it (the sidecar records every pod interface at start); nil: take or
	// reload it.
	Known      *netsetup.Snapshot
	Privileges netsetup.Privileges
	// RAResponder: the binding CNI's kernel responder answers RS on this
	// uplink, so dsbridge sends no RA itself.
	RAResponder bool
	Log         *slog.Logger
}

// Prepare takes (or reloads) the pod interface's snapshot, builds or adopts
// the bridge and tap as the privileges allow, and returns the Spec to Start.
// The VM MAC defaults to the pod interface's original MAC, as in KubeVirt.
func Prepare(ctx context.Context, req Request) (Spec, error) {
	snap := req.Known
	if snap == nil {
		var err error
		if snap, err = Snapshot(ctx, req); err != nil {
			return Spec{}, err
		}
	}
	layout := netsetup.LayoutFor(req.PodIface, req.Tap)
	layout.TapStandIn = standIn(layout.Tap)
	plan := netsetup.PlanFor(req.Privileges, snap, netsetup.PlanOptions{
		LayoutExists: LayoutExists(layout), RAResponder: req.RAResponder || responderAttached(layout, req.Log),
	})
	if err := plumb(ctx, snap, layout, plan, req.Log); err != nil {
		return Spec{}, err
	}
	mac := req.VMMAC
	if mac == nil {
		mac = net.HardwareAddr(snap.MAC)
	}
	identity := req.Identity
	if identity == "" {
		identity = "standalone/" + snap.MAC.String()
	}
	network := req.Network
	if network == "" {
		network = req.PodIface
	}
	return Spec{
		Name: req.Name, Index: req.Index, Snapshot: snap, Layout: layout, VMMAC: mac,
		Identity: identity, Network: network, Extra: req.Extra, RAMode: req.RAMode, Plan: plan,
	}, nil
}

// Snapshot returns the pod interface's snapshot, reloading the saved one
// when the pod was already plumbed (by us or by KubeVirt).
func Snapshot(ctx context.Context, req Request) (*netsetup.Snapshot, error) {
	opts := req.Snapshot
	opts.PodIface = req.PodIface
	if err := os.MkdirAll(req.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create state directory %q: %w", req.StateDir, err)
	}
	path := netsetup.StatePath(req.StateDir, req.PodIface)
	snap, err := netsetup.LoadOrTake(ctx, opts, path, req.Log)
	if err != nil {
		return nil, fmt.Errorf("failed to read the network of pod interface %q: %w", req.PodIface, err)
	}
	switch {
	case snap.Plumbed && snap.Gateway4 == nil && snap.Gateway6 == nil:
		req.Log.Warn("the pod interface was already plumbed and no snapshot was saved: gateways and routes are unknown",
			"podIface", req.PodIface, "stateFile", path)
	case snap.Plumbed:
		req.Log.Warn("the pod interface was already plumbed and no snapshot was saved: gateways recovered from the plumbing's record, other routes unknown",
			"podIface", req.PodIface, "stateFile", path)
	}
	return snap, nil
}

func plumb(ctx context.Context, snap *netsetup.Snapshot, l netsetup.Layout, plan netsetup.Plan, log *slog.Logger) error {
	sp, _ := plan.Service(netsetup.ServicePlumbing)
	switch {
	case sp.On && sp.Transport == netsetup.TransportBuild:
		if err := netsetup.Ensure(ctx, snap, l, netsetup.PlumbOptions{Log: log}); err != nil {
			return fmt.Errorf("failed to build the bridge for %q: %w", l.PodIface, err)
		}
	case sp.On:
		if err := netsetup.Adopt(l); err != nil {
			return fmt.Errorf("the bridge and tap for %q are not as expected: %w", l.PodIface, err)
		}
	default:
		return fmt.Errorf("no bridge and tap for %q and no way to build them: %s; %s", l.PodIface, sp.Reason, sp.Remedy)
	}
	return nil
}

// standIn reports whether the VM port link exists and is not a tap (a veth
// standing in for the tap in the lab).
func standIn(tap string) bool {
	link, err := netlink.LinkByName(tap)
	return err == nil && link.Type() != "tuntap"
}

// LayoutExists reports whether the bridge and VM port are already there.
func LayoutExists(l netsetup.Layout) bool {
	for _, name := range []string{l.Bridge, l.Tap} {
		if _, err := netlink.LinkByName(name); err != nil {
			return false
		}
	}
	return true
}

// responderAttached reports whether the binding CNI's kernel RS->RA
// responder is attached to the uplink (renamed or not yet): then dsbridge
// sends no RA itself.
func responderAttached(l netsetup.Layout, log *slog.Logger) bool {
	for _, name := range []string{l.Uplink, l.PodIface} {
		ok, err := kernel.Attached(name)
		if err != nil {
			log.Debug("cannot tell whether the kernel RA responder is attached", "link", name, "error", err.Error())
			continue
		}
		if ok {
			return true
		}
	}
	return false
}
