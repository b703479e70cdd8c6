package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/dsbridge/dsbridge/ra/kernel/attached"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The programs' tc filters, one at each hook of the uplink's clsact qdisc.
// A fixed priority and handle make Attach a replace: attaching twice leaves
// one of each.
const (
	filterPriority = 1 // first, ahead of any other filter
	filterHandle   = 0xd5b
)

// Filter names (package attached reads them back without a capability).
const (
	raFilter    = attached.ResponderFilter
	guardFilter = attached.GuardFilter
)

// Attach loads the uplink programs for cfg and attaches them at tc egress
// and ingress of uplink in the caller's network namespace (run it inside
// the pod's). It replaces programs attached before. The programs outlive
// the calling process; they go with Detach or with the namespace.
func Attach(uplink string, cfg Config) error {
	v, err := compile(cfg)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return fmt.Errorf("failed to find uplink %q: %w", uplink, err)
	}
	coll, err := load(v, ebpf.ProgramOptions{})
	if err != nil {
		return err
	}
	defer coll.Close() // the filters hold their own references
	if err := ensureClsact(link); err != nil {
		return err
	}
	egress := guardFilter
	if len(v.frame) > 0 {
		egress = raFilter
	}
	if err := netlink.FilterReplace(filter(link, netlink.HANDLE_MIN_EGRESS, coll.Programs[egressProgram].FD(), egress)); err != nil {
		return fmt.Errorf("failed to attach the egress program to %q: %w", uplink, err)
	}
	if err := netlink.FilterReplace(filter(link, netlink.HANDLE_MIN_INGRESS, coll.Programs[ingressProgram].FD(), guardFilter)); err != nil {
		return errors.Join(fmt.Errorf("failed to attach the ingress program to %q: %w", uplink, err), Detach(uplink))
	}
	return nil
}

// Detach removes the programs from uplink, and the clsact qdisc when no
// filter is left on it. Nothing attached, or no uplink any more, is not an
// error (CNI DEL runs again after partial failures).
func Detach(uplink string) error {
	link, err := netlink.LinkByName(uplink)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to find uplink %q: %w", uplink, err)
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_MIN_INGRESS} {
		ours, err := ourFilters(link, parent)
		if err != nil {
			return err
		}
		for _, f := range ours {
			if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("failed to detach %s from %q: %w", f.Name, uplink, err)
			}
		}
	}
	return removeEmptyClsact(link)
}

// Attached reports whether the RS->RA responder is attached to uplink. It
// needs no capability (attached.Responder).
func Attached(uplink string) (bool, error) { return attached.Responder(uplink) }

// Guarded reports whether both uplink programs are attached to uplink
// (attached.Guard). It needs no capability.
func Guarded(uplink string) (bool, error) { return attached.Guard(uplink) }

// filter is our tc filter for prog on link at parent (a clsact hook).
func filter(link netlink.Link, parent uint32, fd int, name string) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: link.Attrs().Index,
			Parent:    parent,
			Handle:    filterHandle,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           fd,
		Name:         name,
		DirectAction: true,
	}
}

// ourFilters lists our filters at parent (a clsact hook) of link.
func ourFilters(link netlink.Link, parent uint32) ([]*netlink.BpfFilter, error) {
	return attached.Ours(link, parent)
}

// ensureClsact adds the clsact qdisc to link unless it has one.
func ensureClsact(link netlink.Link) error {
	err := netlink.QdiscAdd(clsact(link))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("failed to add clsact qdisc to %q: %w", link.Attrs().Name, err)
	}
	return nil
}

// removeEmptyClsact deletes link's clsact qdisc when neither of its hooks
// holds a filter, so that Detach leaves the uplink as it found it.
func removeEmptyClsact(link netlink.Link) error {
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := filterList(link, parent)
		if err != nil || len(fs) > 0 {
			return err
		}
	}
	err := netlink.QdiscDel(clsact(link))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("failed to delete clsact qdisc of %q: %w", link.Attrs().Name, err)
	}
	return nil
}

func clsact(link netlink.Link) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: link.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

// filterList lists the filters at parent of link (none without a clsact
// qdisc).
func filterList(link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	return attached.List(link, parent)
}
