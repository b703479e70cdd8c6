package binding

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/dsbridge/dsbridge/dhcp/dhcp4"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/dsbridge/dsbridge/ra/kernel/attached"
)

// Request asks for one VM interface to be made ready: snapshot, plan,
// plumbing. It works in the caller's network namespace.
type Request struct {
	Name              string
	Index             int
	PodIface, Tap     string    // Tap "": KubeVirt's name for PodIface
	VMMAC             frame.MAC // zero: the pod interface's original MAC
	Identity, Network string
	Extra             []dhcp4.Option
	RAMode            ra.Mode
	Timers            Timers
	StateDir          string
	Snapshot          netsetup.SnapshotOptions
	// Known is the pod interface's snapshot when the caller already holds
	// it (the sidecar records every pod interface at start); nil: take or
	// reload it.
	Known      *netsetup.Snapshot
	Privileges netsetup.Privileges
	Log        *slog.Logger
}

// Prepare takes (or reloads) the pod interface's snapshot, plans, builds or
// adopts the bridge and tap as the plan allows, and returns the Spec to
// serve.
func Prepare(ctx context.Context, req Request) (Spec, error) {
	snap := req.Known
	if snap == nil {
		var err error
		if snap, err = Snapshot(ctx, req); err != nil {
			return Spec{}, err
		}
	}
	layout := netsetup.LayoutFor(req.PodIface, req.Tap)
	layout.TapStandIn = layout.PortIsStandIn()
	plan := PlanFor(req.Privileges, snap, layout, req.Log)
	if err := plumb(ctx, snap, layout, plan, req.Log); err != nil {
		return Spec{}, err
	}
	identity := req.Identity
	if identity == "" {
		identity = StandaloneIdentity(snap)
	}
	network := req.Network
	if network == "" {
		network = req.PodIface
	}
	return Spec{
		Name: req.Name, Index: req.Index, Snapshot: snap, Layout: layout, VMMAC: VMMAC(req.VMMAC, snap),
		Identity: identity, Network: network, Extra: req.Extra, RAMode: req.RAMode, Timers: req.Timers, Plan: plan,
	}, nil
}

// VMMAC is the VM's MAC: the one given (the VMI's, or a flag), else the pod
// interface's original MAC, as KubeVirt gives the VM.
func VMMAC(given frame.MAC, snap *netsetup.Snapshot) frame.MAC {
	if given.IsZero() {
		return snap.MAC
	}
	return given
}

// StandaloneIdentity seeds the server identities without a VMI: the pod
// interface's original MAC.
func StandaloneIdentity(snap *netsetup.Snapshot) string { return "standalone/" + snap.MAC.String() }

// PlanFor is the plan for the pod interface of layout, as every command
// reports it: the privileges, what the snapshot has to serve, whether the
// bridge and tap exist to adopt, and whether the binding CNI's kernel RA
// responder is attached.
func PlanFor(priv netsetup.Privileges, snap *netsetup.Snapshot, layout netsetup.Layout, log *slog.Logger) netsetup.Plan {
	responder, guard := uplinkPrograms(layout, log)
	return netsetup.PlanFor(priv, snap, netsetup.PlanOptions{
		LayoutExists: layout.Exists(), RAResponder: responder, UplinkGuard: guard,
	})
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

// uplinkPrograms reports whether the binding CNI's kernel RS->RA responder
// (then dsbridge sends no RA itself) and its uplink guard are attached to
// the uplink, renamed or not yet.
func uplinkPrograms(l netsetup.Layout, log *slog.Logger) (responder, guard bool) {
	for _, name := range []string{l.Uplink, l.PodIface} {
		r, err := attached.Responder(name)
		if err != nil {
			log.Debug("cannot tell whether the kernel uplink programs are attached", "link", name, "error", err.Error())
			continue
		}
		g, err := attached.Guard(name)
		if err != nil {
			log.Debug("cannot tell whether the kernel uplink programs are attached", "link", name, "error", err.Error())
			continue
		}
		if r || g {
			return r, g
		}
	}
	return false, false
}
