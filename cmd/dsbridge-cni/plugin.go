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
	"golang.org/x/sys/unix"

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
// when configured, and passes the previous plugin's result through. Every
// input is checked first; then, holding the pod's lock, it reads the pod
// (changing nothing), records in the state file everything it is about to
// change, and changes it. A failure undoes all of it (best effort, the pod
// interface first) and removes the record; a record is kept only when the
// undo itself failed, for DEL to finish.
func (p *plugin) add(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, true)
	if err != nil {
		return err
	}
	if err := loadRuntimeArgs(args.Args); err != nil {
		return err
	}
	if err := checkNetns(args.Netns); err != nil {
		return err
	}
	lock, err := lockPod(conf.StateDir, args.Netns)
	if err != nil {
		return err
	}
	defer lock.release()
	st := &state{
		Version: stateVersion, Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName,
		Netns: args.Netns, LogicNetwork: conf.CNIArgs.LogicNetworkName, PodIface: conf.podIface(),
	}
	plan, err := p.intend(conf, st)
	if err != nil {
		return addError(st, err)
	}
	if err := saveState(conf.StateDir, st); err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("failed to record the changes to %s", st.PodIface), err.Error())
	}
	if err := netsetup.Do(args.Netns, plan.apply); err != nil {
		return p.rollback(conf.StateDir, st, err)
	}
	return printResult(p.stdout, conf)
}

// addPlan is what ADD changes, decided before it changes anything.
type addPlan struct {
	st       *state
	addRoute bool           // add the server identifier route (no sibling has)
	uplink   *kernel.Config // nil: no uplink programs to attach (none, or attached already)
	adopt    bool           // verify a layout KubeVirt built; not ours to undo
	opts     netsetup.PlumbOptions
}

// intend fills st with what ADD will change, reading the pod and the
// sibling records and changing nothing.
func (p *plugin) intend(conf *netConf, st *state) (*addPlan, error) {
	base, earlier, err := p.previous(conf.StateDir, st)
	if err != nil {
		return nil, err
	}
	var prev map[string]int
	if base != nil {
		prev = map[string]int{}
		for _, c := range base.Sysctls {
			prev[c.Name] = c.Prev
		}
	}
	plan := &addPlan{st: st, opts: conf.plumbOptions()}
	return plan, netsetup.Do(st.Netns, func() error {
		changes, err := plannedSysctls(prev)
		if err != nil {
			return err
		}
		st.Sysctls = changes
		if base != nil {
			st.ServerRoute = base.ServerRoute
		} else {
			have, err := hasServerRoute()
			if err != nil {
				return err
			}
			st.ServerRoute, plan.addRoute = !have, !have
		}
		return plan.intendPod(conf, earlier, p.log)
	})
}

// intendPod decides the uplink programs and the plumbing from the pristine
// pod, read at most once (it may wait for the gateways' MACs), or from
// this attachment's earlier record (a repeated ADD).
func (a *addPlan) intendPod(conf *netConf, earlier *state, log *slog.Logger) error {
	st := a.st
	pod := sync.OnceValues(func() (*netsetup.Snapshot, error) {
		ctx, cancel := context.WithTimeout(context.Background(), plumbTimeout)
		defer cancel()
		return netsetup.Take(ctx, netsetup.SnapshotOptions{PodIface: st.PodIface, ResolvConf: os.DevNull, Hostname: "-"})
	})
	a.intendUplink(conf, earlier, pod, log)
	if !conf.Plumbing {
		return nil
	}
	if earlier != nil && earlier.Plumbing != nil {
		st.Plumbing = earlier.Plumbing
		return nil
	}
	snap, err := pod()
	switch {
	case err != nil:
		return fmt.Errorf("failed to read pod interface %q: %w", st.PodIface, err)
	case snap.Plumbed:
		a.adopt = true
		return nil
	}
	layout := netsetup.LayoutFor(st.PodIface, "")
	if err := netsetup.CheckBuildable(layout); err != nil {
		return err
	}
	// arp_ignore is one of ADD's own sysctls, put back by restoreSysctls
	// only when the pod's last attachment goes: Teardown leaves it at the
	// value ADD sets.
	restore := *snap
	restore.Restore.ArpIgnore = arpIgnoreSet
	st.Plumbing = &plumbState{Layout: layout, Snapshot: &restore}
	return nil
}

// intendUplink decides on the kernel uplink programs (ra/kernel) for the
// pristine uplink, from its snapshot: while the uplink still has the pod's
// MAC (the VM's), addresses and routes, so the VM's MAC, the gateway and
// the prefix are known. They survive KubeVirt's rename, MAC change and
// enslaving. The RS->RA responder is on when the pod has an IPv6 default
// gateway with a known MAC and the configuration does not turn it off; the
// guard is always on. A pod already plumbed gets none.
func (a *addPlan) intendUplink(conf *netConf, earlier *state, pod func() (*netsetup.Snapshot, error), log *slog.Logger) {
	st := a.st
	if earlier != nil && earlier.UplinkGuard {
		st.UplinkGuard, st.RAResponder = true, earlier.RAResponder
		return
	}
	snap, err := pod()
	if err != nil {
		// Not fatal: the pod still works, and the sidecar's plan says RA is
		// off and why.
		log.Warn("no kernel uplink programs: cannot read the pod interface", "podIface", st.PodIface, "error", err)
		return
	}
	if snap.Plumbed || snap.MAC.IsZero() {
		log.Warn("no kernel uplink programs: the pod interface is already plumbed or has no MAC", "podIface", st.PodIface)
		return
	}
	// The VM gets the pod's original MAC (KubeVirt's managedTap moves it
	// to the tap's side), and the advertisement is the sidecar's own. A VM
	// that keeps another MAC (a migration target) is served too: the
	// programs learn its MAC from the frames its tap forwards.
	vmMAC := binding.VMMAC(frame.MAC{}, snap)
	cfg := kernel.Config{VMMAC: vmMAC, RA: ra.Config{Mode: ra.ModeOff}}
	if adv := binding.RAConfig(snap, vmMAC, ra.ModeGateway); adv != nil && conf.raResponder() {
		cfg.RA = *adv
	}
	a.uplink = &cfg
	st.UplinkGuard, st.RAResponder = true, cfg.RA.Mode != ra.ModeOff
}

// apply makes the recorded changes, inside the pod's network namespace.
func (a *addPlan) apply() error {
	st := a.st
	if err := writeSysctls(st.Sysctls); err != nil {
		return err
	}
	if a.addRoute {
		if err := addServerRoute(); err != nil {
			return err
		}
	}
	if a.uplink != nil {
		if err := kernel.Attach(st.PodIface, *a.uplink); err != nil {
			return fmt.Errorf("failed to attach the kernel uplink programs to %q: %w", st.PodIface, err)
		}
	}
	switch {
	case st.Plumbing != nil:
		ctx, cancel := context.WithTimeout(context.Background(), plumbTimeout)
		defer cancel()
		return netsetup.Ensure(ctx, st.Plumbing.Snapshot, st.Plumbing.Layout, a.opts)
	case a.adopt:
		return netsetup.Adopt(netsetup.LayoutFor(st.PodIface, ""))
	}
	return nil
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

// rollback undoes a failed ADD (its lock held) and returns the CNI error
// for cause and for whatever the undo could not do.
func (p *plugin) rollback(dir string, st *state, cause error) error {
	undoErr := p.undoIn(st.Netns, dir, st)
	if undoErr == nil {
		undoErr = removeState(statePath(dir, st.ContainerID, st.IfName))
	}
	if undoErr != nil {
		p.log.Warn("failed to undo a failed ADD; its record stays for DEL", "containerID", st.ContainerID, "ifname", st.IfName, "error", undoErr)
		cause = fmt.Errorf("%w; undoing it failed too (DEL will retry): %w", cause, undoErr)
	}
	return addError(st, cause)
}

// addError is the CNI error of a failed ADD.
func addError(st *state, err error) error {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return cniErr
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("failed to set up %s for network %q", st.PodIface, st.LogicNetwork), err.Error())
}

// undo reverses what st records, inside the pod's network namespace, best
// effort: the plumbing first (which restores the pod interface first),
// then the uplink programs, then the server route and the sysctls unless
// another dsbridge attachment of the pod still needs them. Every failure
// is reported, joined.
func undo(st *state, siblingsRemain bool) error {
	var errs []error
	if st.Plumbing != nil {
		errs = append(errs, netsetup.Teardown(st.Plumbing.Snapshot, st.Plumbing.Layout))
	}
	if st.RAResponder || st.UplinkGuard {
		// The uplink may have been renamed <x>-nic since ADD.
		for _, name := range uplinkNames(st) {
			if err := kernel.Detach(name); err != nil {
				errs = append(errs, fmt.Errorf("failed to detach the kernel uplink programs from %q: %w", name, err))
			}
		}
	}
	if !siblingsRemain {
		if st.ServerRoute {
			errs = append(errs, removeServerRoute())
		}
		errs = append(errs, restoreSysctls(st.Sysctls))
	}
	return errors.Join(errs...)
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

// del undoes what ADD recorded, holding the pod's lock. No state or no
// network namespace any more means nothing to undo; a failed undo keeps
// the record, for the runtime's next DEL.
func (p *plugin) del(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, false)
	if err != nil {
		return err
	}
	path := statePath(conf.StateDir, args.ContainerID, args.IfName)
	st, err := loadState(path)
	if err == nil && st.Netns != "" {
		// Keyed as ADD keyed it; read again under the lock, which a
		// concurrent DEL of the same attachment may have held.
		lock, lerr := lockPod(conf.StateDir, st.Netns)
		if lerr != nil {
			return lerr
		}
		defer lock.release()
		st, err = loadState(path)
	}
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
		if err := p.collect(conf.StateDir, path, st.Netns); err != nil {
			errs = append(errs, fmt.Errorf("attachment %s/%s: %w", st.ContainerID, st.IfName, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "garbage collection incomplete", err.Error())
	}
	return nil
}

// collect undoes and forgets one attachment for GC, holding its pod's
// lock; a concurrent DEL may have forgotten it already.
func (p *plugin) collect(dir, path, netns string) error {
	if netns != "" {
		lock, err := lockPod(dir, netns)
		if err != nil {
			return err
		}
		defer lock.release()
	}
	st, err := loadState(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.undoIn(st.Netns, dir, st); err != nil {
		return err
	}
	return removeState(path)
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

// checkNetns accepts a path to a network namespace. Anything else is the
// CNI spec's error 4, "invalid necessary environment variables", whose
// message must name the variable (containernetworking/cni SPEC.md,
// "Error"). The path is checked before anything is locked, recorded or
// changed.
func checkNetns(path string) error {
	bad := func(details string) error {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %q is not a network namespace", path), details)
	}
	f, err := os.Open(path)
	if err != nil {
		return bad(err.Error())
	}
	defer f.Close()
	// NS_GET_NSTYPE (Linux 4.11) names a namespace's type; on any other
	// file it fails with ENOTTY.
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	switch {
	case err != nil:
		return bad(fmt.Sprintf("ioctl NS_GET_NSTYPE: %v", err))
	case typ != unix.CLONE_NEWNET:
		return bad(fmt.Sprintf("it is a namespace of type %#x, not CLONE_NEWNET", typ))
	}
	return nil
}
