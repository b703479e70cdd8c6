package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/dsbridge/dsbridge/netsetup"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The responder's tc filter at egress of the uplink's clsact qdisc. A fixed
// priority and handle make Attach a replace: attaching twice leaves one.
const (
	filterPriority = 1 // first, ahead of any other egress filter
	filterHandle   = 0xd5b
)

// Attach loads the responder for cfg and attaches it at tc egress of uplink
// in the caller's network namespace (run it inside the pod's). It replaces a
// responder attached before. The program outlives the calling process; it
// goes with Detach or with the namespace.
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
	defer coll.Close() // the filter holds its own references
	if err := ensureClsact(link); err != nil {
		return err
	}
	if err := netlink.FilterReplace(filter(link, coll.Programs[programName].FD())); err != nil {
		return fmt.Errorf("failed to attach the RA responder to %q: %w", uplink, err)
	}
	return nil
}

// Detach removes the responder from uplink, and the clsact qdisc when no
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
	ours, err := responders(link)
	if err != nil {
		return err
	}
	for _, f := range ours {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("failed to detach the RA responder from %q: %w", uplink, err)
		}
	}
	return removeEmptyClsact(link)
}

// Attached reports whether the responder is attached to uplink. It needs no
// capability: the sidecar calls it to know that it must not advertise.
func Attached(uplink string) (bool, error) {
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return false, fmt.Errorf("failed to find uplink %q: %w", uplink, err)
	}
	ours, err := responders(link)
	return len(ours) > 0, err
}

// filter is the responder's tc filter for prog on link.
func filter(link netlink.Link, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: link.Attrs().Index,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Handle:    filterHandle,
			Priority:  filterPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           fd,
		Name:         programName,
		DirectAction: true,
	}
}

// responders lists the responder filters at egress of link.
func responders(link netlink.Link) ([]*netlink.BpfFilter, error) {
	fs, err := filterList(link, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return nil, err
	}
	var ours []*netlink.BpfFilter
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && b.Name == programName {
			ours = append(ours, b)
		}
	}
	return ours, nil
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

// filterList is netlink.FilterList retried while the dump is interrupted.
// Without a clsact qdisc there is nothing to list.
func filterList(link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	fs, err := netsetup.RetryDump(func() ([]netlink.Filter, error) { return netlink.FilterList(link, parent) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list tc filters of %q: %w", link.Attrs().Name, err)
	}
	return fs, nil
}
