// Package attached tells which of dsbridge's tc BPF uplink programs (package
// ra/kernel, attached by the binding CNI) sit on a link, from their tc
// filter names alone: it needs no capability and loads nothing, so the
// sidecar learns whether the kernel answers the VM's router solicitations
// and guards the uplink without linking the BPF loader.
package attached

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/netsetup"
)

// Filter names, one filter at each hook of the uplink's clsact qdisc: the
// egress filter is ResponderFilter when it answers RS, GuardFilter when
// the pod had no IPv6 gateway to advertise; the ingress filter is always
// GuardFilter.
const (
	ResponderFilter = "dsbridge_ra"
	GuardFilter     = "dsbridge_guard"
)

// Responder reports whether the RS->RA responder is attached to uplink.
func Responder(uplink string) (bool, error) {
	names, err := names(uplink)
	return names[netlink.HANDLE_MIN_EGRESS] == ResponderFilter, err
}

// Guard reports whether both uplink programs are attached to uplink, so
// that nothing from the cluster reaches the pod's DHCP sockets and nothing
// the pod stack sends for them leaves.
func Guard(uplink string) (bool, error) {
	names, err := names(uplink)
	e := names[netlink.HANDLE_MIN_EGRESS]
	return (e == ResponderFilter || e == GuardFilter) && names[netlink.HANDLE_MIN_INGRESS] == GuardFilter, err
}

// names returns the name of our filter at each hook of uplink.
func names(uplink string) (map[uint32]string, error) {
	link, err := netlink.LinkByName(uplink)
	if err != nil {
		return nil, fmt.Errorf("failed to find uplink %q: %w", uplink, err)
	}
	names := map[uint32]string{}
	for _, parent := range []uint32{netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_MIN_INGRESS} {
		ours, err := Ours(link, parent)
		if err != nil {
			return names, err
		}
		if len(ours) > 0 {
			names[parent] = ours[0].Name
		}
	}
	return names, nil
}

// Ours lists our filters at parent (a clsact hook) of link.
func Ours(link netlink.Link, parent uint32) ([]*netlink.BpfFilter, error) {
	fs, err := List(link, parent)
	if err != nil {
		return nil, err
	}
	var ours []*netlink.BpfFilter
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && (b.Name == ResponderFilter || b.Name == GuardFilter) {
			ours = append(ours, b)
		}
	}
	return ours, nil
}

// List is netlink.FilterList retried while the dump is interrupted.
// Without a clsact qdisc there is nothing to list.
func List(link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	fs, err := netsetup.RetryDump(func() ([]netlink.Filter, error) { return netlink.FilterList(link, parent) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list tc filters of %q: %w", link.Attrs().Name, err)
	}
	return fs, nil
}
