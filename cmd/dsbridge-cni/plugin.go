package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/dsbridge/dsbridge/cmd/internal/binding"
	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/dsbridge/dsbridge/ra"
	"github.com/dsbridge/dsbridge/ra/kernel"
)

// Spec-defined error codes the library does not name.
const (
	errPluginNotAvailable uint = 50 // CNI spec 1.1 "Well-known error codes"
)

// plumbTimeout bounds snapshot and plumbing in ADD (the snapshot resolves
// gateway MACs, up to a second per family).
const plumbTimeout = 30 * time.Second

// plugin implements the CNI commands. stdout receives results; log gets
// warnings (runtimes keep a plugin's stderr in their logs).
type plugin struct {
	stdout io.Writer
	log    *slog.Logger
}

func (p *plugin) funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.add, Del: p.del, Check: p.check, GC: p.gc, Status: p.status}
}

// add sets the sysctls in the pod's network namespace, builds the layout
// when configured, records what it changed and passes the previous
// plugin's result through.
func (p *plugin) add(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, true)
	if err != nil {
		return err
	}
	if err := loadRuntimeArgs(args.Args); err != nil {
		return err
	}
	if _, err := os.Stat(args.Netns); err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("network namespace %q", args.Netns), err.Error())
	}
	st := &state{
		Version: stateVersion, Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName,
		Netns: args.Netns, LogicNetwork: conf.CNIArgs.LogicNetworkName, PodIface: conf.podIface(),
	}
	base, earlier, err := p.previous(conf.StateDir, st)
	if err != nil {
		return err
	}
	if err := netsetup.Do(args.Netns, func() error { return p.apply(conf, st, base, earlier) }); err != nil {
		return p.failAdd(conf, st, err)
	}
	if err := saveState(conf.StateDir, st); err != nil {
		return p.failAdd(conf, st, err)
	}
	return printResult(p.stdout, conf)
}

// previous returns the record of the pod's state from before any dsbridge
// attachment (sysctl values, whether dsbridge added the server route): this
// attachment's own (a repeated ADD) or a sibling's; and this attachment's
// earlier state, if any.
func (p *plugin) previous(dir string, st *state) (*state, *state, error) {
	earlier, err := loadState(statePath(dir, st.ContainerID, st.IfName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, types.NewError(types.ErrIOFailure, "failed to read the attachment's state", err.Error())
	}
	records := []*state{}
	if earlier != nil {
		records = append(records, earlier)
	}
	sibs, err := siblings(dir, st)
	if err != nil {
		return nil, nil, types.NewError(types.ErrIOFailure, "failed to read state", err.Error())
	}
	records = append(records, sibs...)
	if len(records) == 0 {
		return nil, earlier, nil
	}
	return records[0], earlier, nil
}

// apply runs inside the pod's network namespace.
func (p *plugin) apply(conf *netConf, st *state, base *state, earlier *state) error {
	var prev map[string]int
	if base != nil {
		prev = map[string]int{}
		for _, c := range base.Sysctls {
			prev[c.Name] = c.Prev
		}
	}
	changes, err := applySysctls(prev)
	st.Sysctls = changes
	if err != nil {
		return err
	}
	added, err := addServerRoute()
	st.ServerRoute = added || base != nil && base.ServerRoute
	if err != nil {
		return err
	}
	// The pristine pod, read at most once for the uplink programs and the
	// plumbing: reading it may wait for the gateways' MACs.
	pod := sync.OnceValues(func() (*netsetup.Snapshot, error) {
		ctx, cancel := context.WithTimeout(context.Background(), plumbTimeout)
		defer cancel()
		return netsetup.Take(ctx, netsetup.SnapshotOptions{PodIface: st.PodIface, ResolvConf: os.DevNull, Hostname: "-"})
	})
	if err := attachUplink(conf, st, earlier, pod, p.log); err != nil {
		return err
	}
	if !conf.Plumbing {
		return nil
	}
	return plumb(conf, st, earlier, pod)
}

// attachUplink attaches the kernel uplink programs (ra/kernel) to the
// pristine uplink, from its snapshot: while the uplink still has the pod's
// MAC (the VM's), addresses and routes, so the VM's MAC, the gateway and
// the prefix are known. They survive KubeVirt's rename, MAC change and
// enslaving. The RS->RA responder is on when the pod has an IPv6 default
// gateway with a known MAC and the configuration does not turn it off; the
// guard is always on. A pod already plumbed gets none.
func attachUplink(conf *netConf, st, earlier *state, pod func() (*netsetup.Snapshot, error), log *slog.Logger) error {
	if earlier != nil && earlier.UplinkGuard {
		st.UplinkGuard, st.RAResponder = true, earlier.RAResponder
		return nil
	}
	snap, err := pod()
	if err != nil {
		// Not fatal: the pod still works, and the sidecar's plan says RA is
		// off and why.
		log.Warn("no kernel uplink programs: cannot read the pod interface", "podIface", st.PodIface, "error", err)
		return nil
	}
	if snap.Plumbed || snap.MAC.IsZero() {
		log.Warn("no kernel uplink programs: the pod interface is already plumbed or has no MAC", "podIface", st.PodIface)
		return nil
	}
	// The VM gets the pod's original MAC (KubeVirt's managedTap moves it
	// to the tap's side), and the advertisement is the sidecar's own.
	vmMAC := binding.VMMAC(frame.MAC{}, snap)
	cfg := kernel.Config{VMMAC: vmMAC, RA: ra.Config{Mode: ra.ModeOff}}
	if adv := binding.RAConfig(snap, vmMAC, ra.ModeGateway); adv != nil && conf.raResponder() {
		cfg.RA = *adv
	}
	if err := kernel.Attach(st.PodIface, cfg); err != nil {
		return fmt.Errorf("failed to attach the kernel uplink programs to %q: %w", st.PodIface, err)
	}
	st.UplinkGuard, st.RAResponder = true, cfg.RA.Mode != ra.ModeOff
	return nil
}

// plumb builds the managedTap layout for the attachment's pod interface. A
// layout that exists without our record (KubeVirt's) is verified, not
// owned: DEL leaves it alone.
func plumb(conf *netConf, st *state, earlier *state, pod func() (*netsetup.Snapshot, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), plumbTimeout)
	defer cancel()
	layout := netsetup.LayoutFor(st.PodIface, "")
	var snap *netsetup.Snapshot
	if earlier != nil && earlier.Plumbing != nil {
		snap = earlier.Plumbing.Snapshot
	} else {
		s, err := pod()
		if err != nil {
			return fmt.Errorf("failed to read pod interface %q: %w", st.PodIface, err)
		}
		if s.Plumbed {
			return netsetup.Adopt(layout)
		}
		snap = s
	}
	st.Plumbing = &plumbState{Layout: layout, Snapshot: snap}
	return netsetup.Ensure(ctx, snap, layout, conf.plumbOptions())
}

// failAdd undoes a partial ADD and returns the CNI error for err.
func (p *plugin) failAdd(conf *netConf, st *state, err error) error {
	sibs, serr := siblings(conf.StateDir, st)
	undoErr := errors.Join(serr, netsetup.Do(st.Netns, func() error { return undo(st, len(sibs) > 0) }))
	if undoErr != nil {
		p.log.Warn("failed to undo a partial ADD", "containerID", st.ContainerID, "ifname", st.IfName, "error", undoErr)
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return cniErr
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("failed to set up %s for network %q", st.PodIface, st.LogicNetwork), err.Error())
}

// undo reverses what st records, inside the pod's network namespace:
// plumbing first, then the sysctls, unless another dsbridge attachment of
// the pod still needs them.
func undo(st *state, siblingsRemain bool) error {
	if st.Plumbing != nil {
		if err := netsetup.Teardown(st.Plumbing.Snapshot, st.Plumbing.Layout); err != nil {
			return err
		}
	}
	if st.RAResponder || st.UplinkGuard {
		// The uplink may have been renamed <x>-nic since ADD.
		for _, name := range uplinkNames(st) {
			if err := kernel.Detach(name); err != nil {
				return fmt.Errorf("failed to detach the kernel uplink programs from %q: %w", name, err)
			}
		}
	}
	if siblingsRemain {
		return nil
	}
	if st.ServerRoute {
		if err := removeServerRoute(); err != nil {
			return err
		}
	}
	return restoreSysctls(st.Sysctls)
}

// uplinkNames are the names the attachment's uplink has had: the pod
// interface's, and <x>-nic after KubeVirt's rename.
func uplinkNames(st *state) []string {
	return []string{st.PodIface, netsetup.LayoutFor(st.PodIface, "").Uplink}
}

func printResult(w io.Writer, conf *netConf) error {
	var res types.Result = &current.Result{CNIVersion: conf.CNIVersion}
	if conf.PrevResult != nil {
		res = conf.PrevResult
	}
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "failed to convert prevResult", err.Error())
	}
	return out.PrintTo(w)
}

// del undoes what ADD recorded. No state or no network namespace any more
// means nothing to undo.
func (p *plugin) del(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	path := statePath(conf.StateDir, args.ContainerID, args.IfName)
	st, err := loadState(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		// A state file DEL cannot read would fail every retry and keep the
		// pod from going away: drop it and say so.
		p.log.Warn("unreadable state dropped; nothing undone", "path", path, "error", err)
		return removeState(path)
	}
	if err := p.undoIn(args.Netns, conf.StateDir, st); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("failed to undo %s for network %q", st.PodIface, st.LogicNetwork), err.Error())
	}
	return removeState(path)
}

// undoIn undoes st in the network namespace at nsPath; an empty or vanished
// namespace has nothing left to undo.
func (p *plugin) undoIn(nsPath, dir string, st *state) error {
	if nsPath == "" {
		return nil
	}
	sibs, err := siblings(dir, st)
	if err != nil {
		return err
	}
	err = netsetup.Do(nsPath, func() error { return undo(st, len(sibs) > 0) })
	if netnsGone(err) {
		return nil
	}
	return err
}

// netnsGone reports a namespace path that no longer exists (ENOENT) or is
// no longer a namespace (EINVAL from setns on a left-over file).
func netnsGone(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EINVAL)
}

// check verifies that what ADD set is still in place.
func (p *plugin) check(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, true)
	if err != nil {
		return err
	}
	st, err := loadState(statePath(conf.StateDir, args.ContainerID, args.IfName))
	if err != nil {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no dsbridge state for %s/%s", args.ContainerID, args.IfName), err.Error())
	}
	if st.PodIface != conf.podIface() {
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("attachment serves pod interface %q, configuration maps %q to %q", st.PodIface, st.LogicNetwork, conf.podIface()), "")
	}
	err = netsetup.Do(args.Netns, func() error {
		if err := checkSysctls(st.Sysctls); err != nil {
			return err
		}
		if err := checkUplink(st); err != nil {
			return err
		}
		if st.Plumbing != nil {
			return netsetup.Adopt(st.Plumbing.Layout)
		}
		return nil
	})
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("pod interface %s is not as ADD left it", st.PodIface), err.Error())
	}
	return nil
}

// checkUplink reports uplink programs that ADD attached and are gone.
func checkUplink(st *state) error {
	if !st.UplinkGuard {
		return nil
	}
	for _, name := range uplinkNames(st) {
		if ok, err := kernel.Guarded(name); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("the kernel uplink programs are no longer attached to %q", st.PodIface)
}

// gc undoes and forgets every attachment of this network that the runtime
// no longer lists as valid (CNI 1.1 GC).
func (p *plugin) gc(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	valid := map[[2]string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	all, err := listStates(conf.StateDir)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "failed to list state", err.Error())
	}
	var errs []error
	for path, st := range all {
		if st.Network != conf.Name || valid[[2]string{st.ContainerID, st.IfName}] {
			continue
		}
		if err := p.undoIn(st.Netns, conf.StateDir, st); err != nil {
			errs = append(errs, fmt.Errorf("attachment %s/%s: %w", st.ContainerID, st.IfName, err))
			continue
		}
		errs = append(errs, removeState(path))
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "garbage collection incomplete", err.Error())
	}
	return nil
}

// status reports whether ADD can work: the state directory must be usable.
func (p *plugin) status(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(conf.StateDir, 0o700); err != nil {
		return types.NewError(errPluginNotAvailable, fmt.Sprintf("state directory %q is not usable", conf.StateDir), err.Error())
	}
	return nil
}
