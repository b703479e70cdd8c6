package main

import (
	"fmt"
	"io"

	"github.com/dsbridge/dsbridge/cmd/internal/cliflag"
	"github.com/dsbridge/dsbridge/netsetup"
)

// runTeardown restores the pod interface to its saved snapshot: the
// bridge, tap and dummy go, the uplink gets back its name, MAC, addresses
// and routes. Needs NET_ADMIN and the snapshot saved before plumbing.
func runTeardown(args []string, stdout, stderr io.Writer) error {
	var f inspectFlags
	var tap string
	var standIn bool
	fs := newFlagSet("dsbridge teardown", "[--pod-iface X] [--state-dir D] [--tap T] [--tap-stand-in]")
	f.register(fs)
	fs.StringVar(&tap, "tap", "", "the VM's tap (default: KubeVirt's name for the pod interface)")
	fs.BoolVar(&standIn, "tap-stand-in", false, "the VM port is an existing non-tap link (e.g. a veth): detach it, do not delete it")
	if err := cliflag.Parse(fs, args, stdout, stderr); err != nil {
		return err
	}
	errs := []error{checkIfaceName("--pod-iface", f.podIface)}
	if tap != "" {
		errs = append(errs, checkIfaceName("--tap", tap))
	}
	if err := invalid(errs...); err != nil {
		return err
	}
	path := netsetup.StatePath(f.stateDir, f.podIface)
	s, err := netsetup.Load(path)
	if err != nil {
		return err
	}
	if s.PodIface != f.podIface {
		return fmt.Errorf("snapshot %q is of %q, not %q", path, s.PodIface, f.podIface)
	}
	l := netsetup.LayoutFor(f.podIface, tap)
	l.TapStandIn = standIn
	if err := netsetup.Teardown(s, l); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s from %s\n", f.podIface, path)
	return nil
}
