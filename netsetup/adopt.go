package netsetup

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// LayoutError is one link that does not look as the layout expects.
type LayoutError struct {
	Link     string
	Expected string
	Found    string
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("link %q: expected %s, found %s", e.Link, e.Expected, e.Found)
}

// Adopt verifies an existing layout (ours or KubeVirt's managedTap) without
// changing anything: the bridge is a bridge; the uplink and the tap are its
// ports; the tap is a tap (any type when l.TapStandIn); the dummy is a dummy
// outside the bridge. It reports every mismatch, each as a *LayoutError
// naming the link and what was expected, joined.
func Adopt(l Layout) error {
	var errs []error
	brIndex := -1
	if br, err := linkByName(l.Bridge); err != nil {
		errs = append(errs, &LayoutError{Link: l.Bridge, Expected: "a bridge", Found: "no such link"})
	} else if br.Type() != "bridge" {
		errs = append(errs, &LayoutError{Link: l.Bridge, Expected: "a bridge", Found: "type " + br.Type()})
	} else {
		brIndex = br.Attrs().Index
	}
	errs = append(errs, checkPort(l.Uplink, brIndex, l.Bridge, func(t string) bool {
		return t != "bridge" && !isAddrHolder(t) && t != "tuntap"
	}, "the pod's uplink (not a bridge, dummy or tap)"))
	tapOK := func(t string) bool { return t == "tuntap" }
	tapWant := "a tap"
	if l.TapStandIn {
		tapOK = func(t string) bool { return t != "bridge" && !isAddrHolder(t) }
		tapWant = "the VM port"
	}
	errs = append(errs, checkPort(l.Tap, brIndex, l.Bridge, tapOK, tapWant))
	errs = append(errs, checkDummy(l.Dummy))
	return errors.Join(errs...)
}

func checkPort(name string, brIndex int, bridge string, typeOK func(string) bool, want string) error {
	link, err := linkByName(name)
	if err != nil {
		return &LayoutError{Link: name, Expected: want + " attached to " + quote(bridge), Found: "no such link"}
	}
	if !typeOK(link.Type()) {
		return &LayoutError{Link: name, Expected: want, Found: "type " + link.Type()}
	}
	if m := link.Attrs().MasterIndex; brIndex >= 0 && m != brIndex {
		return &LayoutError{Link: name, Expected: "a port of " + quote(bridge), Found: masterName(m)}
	}
	return nil
}

func checkDummy(name string) error {
	link, err := linkByName(name)
	switch {
	case err != nil:
		return &LayoutError{Link: name, Expected: "a dummy holding the pod's addresses", Found: "no such link"}
	case !isAddrHolder(link.Type()):
		return &LayoutError{Link: name, Expected: "a dummy holding the pod's addresses", Found: "type " + link.Type()}
	case link.Attrs().MasterIndex != 0:
		return &LayoutError{Link: name, Expected: "a dummy outside any bridge", Found: masterName(link.Attrs().MasterIndex)}
	}
	return nil
}

func masterName(index int) string {
	if index == 0 {
		return "no master"
	}
	if m, err := netlink.LinkByIndex(index); err == nil {
		return "master " + quote(m.Attrs().Name)
	}
	return fmt.Sprintf("master index %d", index)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// Exists reports whether the layout's bridge and VM port are there, to be
// adopted (KubeVirt's managedTap, or an earlier run).
func (l Layout) Exists() bool {
	for _, name := range []string{l.Bridge, l.Tap} {
		if _, err := linkByName(name); err != nil {
			return false
		}
	}
	return true
}

// PortIsStandIn reports whether the VM port exists and is not a tap (a veth
// standing in for the tap, as in the lab): it is then adopted as is.
func (l Layout) PortIsStandIn() bool {
	link, err := linkByName(l.Tap)
	return err == nil && link.Type() != "tuntap"
}
