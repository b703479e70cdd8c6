package netsetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// DefaultTapOwner is the uid and gid owning the tap: KubeVirt's qemu user
// (107), which opens it in a non-root virt-launcher.
const DefaultTapOwner = 107

// arpIgnoreVM is net.ipv4.conf.all.arp_ignore once the VM owns the pod's
// IPv4: reply only for addresses on the receiving interface, so the pod
// netns never answers the guest's ARP probe for its own address.
const arpIgnoreVM = 1

// PlumbOptions tune the plumbing Ensure builds.
type PlumbOptions struct {
	// TapOwner owns the tap (uid and gid); 0 means DefaultTapOwner.
	TapOwner int
	// RootTap makes root own the tap (KubeVirt's Root feature gate).
	RootTap bool
	// Queues > 1 creates a multi-queue tap (KubeVirt's
	// networkInterfaceMultiqueue with virtio).
	Queues int
	// BridgeLinkLocal keeps the kernel's IPv6 link-local address on the
	// bridge, as KubeVirt's managedTap bridge has (DAD off, so it is usable
	// at once): the UDP transport's DHCPv6 replies need it as their source.
	// Without it the bridge has no address at all (addrgenmode none), so
	// the pod sends nothing of its own onto the uplink: the full tier,
	// whose services use the packet transport on the tap.
	BridgeLinkLocal bool
	// Log receives one line per change; nil discards.
	Log *slog.Logger
}

func (o PlumbOptions) owner() uint32 {
	switch {
	case o.RootTap:
		return 0
	case o.TapOwner > 0:
		return uint32(o.TapOwner)
	default:
		return DefaultTapOwner
	}
}

// plumber applies the desired layout for one snapshot, step by step.
type plumber struct {
	s    *Snapshot
	l    Layout
	opts PlumbOptions
	log  *slog.Logger
}

// step is one idempotent part of the desired state. Each step works from
// any state a prefix of the steps (or KubeVirt's managedTap) leaves, so a
// process killed between or inside steps is completed by the next run.
type step struct {
	name  string
	apply func(*plumber) error
}

// steps is the layout as desired state, in the order KubeVirt's managedTap
// applies it (pkg/network/setup/netpod managedTapSpec).
var steps = []step{
	{"bridge", (*plumber).bridge},
	{"bridge-config", (*plumber).bridgeConfig},
	{"uplink-rename", (*plumber).uplinkRename},
	{"uplink-mac", (*plumber).uplinkMAC},
	{"uplink-addrs", (*plumber).uplinkAddrs},
	{"uplink-port", (*plumber).uplinkPort},
	{"tap", (*plumber).tap},
	{"tap-port", (*plumber).tapPort},
	{"dummy", (*plumber).dummy},
	{"dummy-addrs", (*plumber).dummyAddrs},
	{"arp-ignore", (*plumber).arpIgnore},
}

// Ensure builds the managedTap layout l for the pod described by s, or
// completes and adopts one that exists (built by KubeVirt or by an earlier,
// possibly killed, run), then verifies it with Adopt. It needs NET_ADMIN and
// is idempotent. It works in the caller's network namespace. A layout
// CheckBuildable refuses is refused before anything changes.
func Ensure(ctx context.Context, s *Snapshot, l Layout, opts PlumbOptions) error {
	if err := CheckBuildable(l); err != nil {
		return fmt.Errorf("plumbing of %q refused: %w", l.PodIface, err)
	}
	if err := applySteps(ctx, s, l, opts, len(steps)); err != nil {
		return err
	}
	return Adopt(l)
}

// CheckBuildable reports every link in the way of building l, changing
// nothing: a link named like the bridge that is not a bridge, like the tap
// that is not a tap (unless l.TapStandIn), and a pod interface that is not
// an uplink to rename (or an uplink name already taken while it is). What
// Ensure itself, or KubeVirt, leaves part way is accepted: Ensure
// completes it.
func CheckBuildable(l Layout) error {
	errs := []error{
		checkTypeIfPresent(l.Bridge, "a bridge", func(t string) bool { return t == "bridge" }),
		checkTypeIfPresent(l.Tap, "a tap", func(t string) bool { return l.TapStandIn || t == "tuntap" }),
	}
	uplink, err := netlink.LinkByName(l.Uplink)
	switch {
	case err != nil && !isNotFound(err):
		errs = append(errs, fmt.Errorf("failed to look up %q: %w", l.Uplink, err))
	case err != nil: // not renamed yet: the pod interface must be the uplink
		pod, err := linkByName(l.PodIface)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		if t := pod.Type(); isAddrHolder(t) || t == "bridge" || t == "tuntap" {
			errs = append(errs, &LayoutError{Link: l.PodIface, Expected: "the pod's uplink (veth or similar)", Found: "type " + t})
		}
	default: // renamed already, unless the name was taken by something else
		errs = append(errs, checkTypeIfPresent(l.PodIface, "a dummy (the uplink is renamed "+quote(l.Uplink)+")", isAddrHolder))
		if t := uplink.Type(); isAddrHolder(t) || t == "bridge" || t == "tuntap" {
			errs = append(errs, &LayoutError{Link: l.Uplink, Expected: "the pod's uplink (veth or similar)", Found: "type " + t})
		}
	}
	return errors.Join(errs...)
}

// checkTypeIfPresent reports a link named name whose type is not ok.
func checkTypeIfPresent(name, want string, ok func(string) bool) error {
	link, err := netlink.LinkByName(name)
	switch {
	case err != nil && isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("failed to look up %q: %w", name, err)
	case !ok(link.Type()):
		return &LayoutError{Link: name, Expected: want, Found: "type " + link.Type()}
	}
	return nil
}

// applySteps applies the first n steps.
func applySteps(ctx context.Context, s *Snapshot, l Layout, opts PlumbOptions, n int) error {
	p := &plumber{s: s, l: l, opts: opts, log: opts.Log}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for _, st := range steps[:n] {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("plumbing of %q stopped before %s: %w", l.PodIface, st.name, err)
		}
		if err := st.apply(p); err != nil {
			return fmt.Errorf("plumbing of %q, step %s: %w", l.PodIface, st.name, err)
		}
	}
	return nil
}

func (p *plumber) bridge() error {
	_, err := ensureLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: p.l.Bridge}}, "bridge", p.log)
	return err
}

// bridgeConfig: no IPv4, and no IPv6 address either (addrgenmode none
// before it first comes up) or a link-local one only (BridgeLinkLocal, DAD
// off); accept_ra 0; TX checksum offload off as KubeVirt does; up.
func (p *plumber) bridgeConfig() error {
	br, err := linkOfType(p.l.Bridge, "bridge")
	if err != nil {
		return err
	}
	if p.opts.BridgeLinkLocal {
		if err := setIPv6Conf(p.l.Bridge, "accept_dad", 0); err != nil {
			return err
		}
	} else if err := setAddrGenModeNone(br); err != nil {
		return err
	}
	if err := setIPv6Conf(p.l.Bridge, "accept_ra", 0); err != nil {
		return err
	}
	if err := txChecksumOff(p.l.Bridge); err != nil {
		return err
	}
	return setUp(br)
}

// uplinkRename renames the pod's own link to <x>-nic (down first, which
// drops its IPv6 addresses and routes: the snapshot holds them).
func (p *plumber) uplinkRename() error {
	if _, err := netlink.LinkByName(p.l.Uplink); err == nil {
		return nil
	}
	pod, err := linkByName(p.l.PodIface)
	if err != nil {
		return err
	}
	if t := pod.Type(); isAddrHolder(t) || t == "bridge" || t == "tuntap" {
		return &LayoutError{Link: p.l.PodIface, Expected: "the pod's uplink (veth or similar)", Found: t}
	}
	if err := netlink.LinkSetDown(pod); err != nil {
		return fmt.Errorf("failed to set %q down: %w", p.l.PodIface, err)
	}
	if err := netlink.LinkSetName(pod, p.l.Uplink); err != nil {
		return fmt.Errorf("failed to rename %q to %q: %w", p.l.PodIface, p.l.Uplink, err)
	}
	p.log.Info("renamed pod interface", "from", p.l.PodIface, "to", p.l.Uplink)
	return nil
}

// uplinkMAC frees the pod MAC for the VM: while the uplink still carries it,
// it gets the bridge's MAC.
func (p *plumber) uplinkMAC() error {
	up, err := linkByName(p.l.Uplink)
	if err != nil {
		return err
	}
	if !bytes.Equal(up.Attrs().HardwareAddr, p.s.MAC[:]) {
		return nil
	}
	br, err := linkOfType(p.l.Bridge, "bridge")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(up, br.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("failed to copy MAC of %q to %q: %w", p.l.Bridge, p.l.Uplink, err)
	}
	return nil
}

// uplinkAddrs removes every address from the uplink and keeps the kernel
// from adding a link-local one (addrgenmode none).
func (p *plumber) uplinkAddrs() error {
	up, err := linkByName(p.l.Uplink)
	if err != nil {
		return err
	}
	if err := setAddrGenModeNone(up); err != nil {
		return err
	}
	addrs, err := addrList(up, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("failed to list addresses of %q: %w", p.l.Uplink, err)
	}
	for i := range addrs {
		if err := netlink.AddrDel(up, &addrs[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("failed to remove %s from %q: %w", addrs[i].IPNet, p.l.Uplink, err)
		}
	}
	return nil
}

// uplinkPort enslaves the uplink to the bridge with learning off, up.
func (p *plumber) uplinkPort() error {
	up, err := linkByName(p.l.Uplink)
	if err != nil {
		return err
	}
	if err := setMaster(up, p.l.Bridge); err != nil {
		return err
	}
	if err := netlink.LinkSetLearning(up, false); err != nil {
		return fmt.Errorf("failed to turn learning off on %q: %w", p.l.Uplink, err)
	}
	return setUp(up)
}

// tap creates the VM's tap (persistent, vnet header, no packet info,
// multi-queue when asked, owned by 107), or accepts an existing one.
func (p *plumber) tap() error {
	if p.l.TapStandIn {
		_, err := linkByName(p.l.Tap)
		return err
	}
	flags := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE
	queues := 1
	if p.opts.Queues > 1 {
		flags = netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_MULTI_QUEUE
		queues = p.opts.Queues
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: p.l.Tap, MTU: p.s.MTU},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     flags,
		Queues:    queues,
		Owner:     p.opts.owner(),
		Group:     p.opts.owner(),
	}
	_, err := ensureLink(tap, "tuntap", p.log)
	for _, f := range tap.Fds {
		f.Close() // the tap is persistent; QEMU opens it again
	}
	return err
}

func (p *plumber) tapPort() error {
	tap, err := linkByName(p.l.Tap)
	if err != nil {
		return err
	}
	if p.s.MTU > 0 && tap.Attrs().MTU != p.s.MTU {
		if err := netlink.LinkSetMTU(tap, p.s.MTU); err != nil {
			return fmt.Errorf("failed to set MTU of %q: %w", p.l.Tap, err)
		}
	}
	if err := setMaster(tap, p.l.Bridge); err != nil {
		return err
	}
	// No IPv6 address on the VM's port either, so the pod's own kernel
	// sends nothing (MLD, RS, DAD) towards the guest. A stand-in that is
	// already up keeps what it has.
	if !p.l.TapStandIn {
		if err := setAddrGenModeNone(tap); err != nil {
			return err
		}
	}
	return setUp(tap)
}

// dummy creates <x> with the pod's original MAC and MTU, left down as
// KubeVirt leaves it, and records the gateways in its alias (alias.go).
func (p *plumber) dummy() error {
	d, err := p.ensureAddrHolder()
	if err != nil {
		return err
	}
	if !p.s.MAC.IsZero() && !bytes.Equal(d.Attrs().HardwareAddr, p.s.MAC[:]) {
		if err := netlink.LinkSetHardwareAddr(d, p.s.MAC.HardwareAddr()); err != nil {
			return fmt.Errorf("failed to set MAC of %q: %w", p.l.Dummy, err)
		}
	}
	if p.s.MTU > 0 && d.Attrs().MTU != p.s.MTU {
		if err := netlink.LinkSetMTU(d, p.s.MTU); err != nil {
			return fmt.Errorf("failed to set MTU of %q: %w", p.l.Dummy, err)
		}
	}
	if alias := gatewayAlias(p.s); !p.s.Plumbed && d.Attrs().Alias != alias {
		if err := netlink.LinkSetAlias(d, alias); err != nil {
			return fmt.Errorf("failed to record the gateways on %q: %w", p.l.Dummy, err)
		}
	}
	return nil
}

// ensureAddrHolder creates the dummy, or an ifb device on a kernel built
// without the dummy driver (CONFIG_DUMMY unset, as on some test VMs): both
// hold addresses and pass no traffic.
func (p *plumber) ensureAddrHolder() (netlink.Link, error) {
	attrs := netlink.LinkAttrs{Name: p.l.Dummy, HardwareAddr: p.s.MAC.HardwareAddr(), MTU: p.s.MTU}
	if _, err := netlink.LinkByName(p.l.Dummy); err == nil || !isNotFound(err) {
		return addrHolder(p.l.Dummy)
	}
	err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
	if errors.Is(err, unix.EOPNOTSUPP) {
		p.log.Warn("kernel has no dummy driver; an ifb device holds the pod's addresses", "link", p.l.Dummy)
		err = netlink.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("failed to create dummy %q: %w", p.l.Dummy, err)
	}
	p.log.Info("created link", "link", p.l.Dummy, "type", "dummy")
	return addrHolder(p.l.Dummy)
}

// isAddrHolder reports whether a link type can be the dummy <x>.
func isAddrHolder(linkType string) bool { return linkType == "dummy" || linkType == "ifb" }

// addrHolder fetches the dummy <x> and checks its type.
func addrHolder(name string) (netlink.Link, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, err
	}
	if !isAddrHolder(l.Type()) {
		return nil, &LayoutError{Link: name, Expected: "a dummy", Found: "type " + l.Type()}
	}
	return l, nil
}

// dummyAddrs puts exactly the pod's global addresses on the dummy (IPv6
// without DAD: the dummy stays down and the VM owns the address).
func (p *plumber) dummyAddrs() error {
	d, err := addrHolder(p.l.Dummy)
	if err != nil {
		return err
	}
	want := snapshotAddrs(p.s)
	if err := removeOtherAddrs(d, want); err != nil {
		return err
	}
	have, err := addrList(d, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("failed to list addresses of %q: %w", p.l.Dummy, err)
	}
	for _, a := range want {
		na := netlinkAddr(a)
		if a.Prefix.Addr().Is6() {
			na.Flags |= unix.IFA_F_NODAD
		}
		if hasAddr(have, na) {
			continue
		}
		if err := netlink.AddrReplace(d, na); err != nil {
			return fmt.Errorf("failed to add %s to %q: %w", a.Prefix, p.l.Dummy, err)
		}
	}
	return nil
}

// hasAddr reports whether have holds a's prefix with a's flags.
func hasAddr(have []netlink.Addr, a *netlink.Addr) bool {
	for _, h := range have {
		if h.IPNet.String() == a.IPNet.String() && h.Flags&^kernelAddrFlags == a.Flags {
			return true
		}
	}
	return false
}

func (p *plumber) arpIgnore() error {
	if len(p.s.IPv4) == 0 {
		return nil
	}
	if v, err := ReadSysctl(sysctlArpIgnoreAll); err == nil && v == arpIgnoreVM {
		return nil
	}
	return WriteSysctl(sysctlArpIgnoreAll, arpIgnoreVM)
}

// ensureLink creates link unless a link of that name exists; either way it
// returns the kernel's view, type-checked (containernetworking/plugins
// ensureBridge: "exists" is success, then re-fetch and check).
func ensureLink(link netlink.Link, wantType string, log *slog.Logger) (netlink.Link, error) {
	name := link.Attrs().Name
	if _, err := netlink.LinkByName(name); err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("failed to look up %q: %w", name, err)
		}
		if err := netlink.LinkAdd(link); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("failed to create %s %q: %w", wantType, name, err)
		}
		log.Info("created link", "link", name, "type", wantType)
	}
	return linkOfType(name, wantType)
}

// linkOfType fetches a link and checks its type.
func linkOfType(name, wantType string) (netlink.Link, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, err
	}
	if l.Type() != wantType {
		return nil, &LayoutError{Link: name, Expected: wantType, Found: l.Type()}
	}
	return l, nil
}

func setUp(l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("failed to set %q up: %w", l.Attrs().Name, err)
	}
	return nil
}

func setMaster(l netlink.Link, bridge string) error {
	br, err := linkOfType(bridge, "bridge")
	if err != nil {
		return err
	}
	if l.Attrs().MasterIndex == br.Attrs().Index {
		return nil
	}
	if err := netlink.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
		return fmt.Errorf("failed to attach %q to %q: %w", l.Attrs().Name, bridge, err)
	}
	return nil
}

// setAddrGenModeNone stops the kernel from generating IPv6 link-local
// addresses on l; without IPv6 in the kernel there is nothing to stop.
func setAddrGenModeNone(l netlink.Link) error {
	if !IPv6Enabled() {
		return nil
	}
	if err := netlink.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("failed to set addrgenmode none on %q: %w", l.Attrs().Name, err)
	}
	return nil
}

// setIPv6Conf sets net.ipv6.conf.<link>.<key> unless it already holds v:
// a container runtime mounts /proc/sys read-only in every unprivileged
// container (runc's default readonlyPaths), NET_ADMIN or not, so a
// sidecar can only get past a sysctl something else already set.
func setIPv6Conf(link, key string, v int) error {
	if !IPv6Enabled() {
		return nil
	}
	if cur, err := ReadSysctl(ipv6Conf(link, key)); err == nil && cur == v {
		return nil
	}
	err := WriteSysctl(ipv6Conf(link, key), v)
	if errors.Is(err, unix.EROFS) {
		return fmt.Errorf("%w: /proc/sys is read-only in this container; the binding CNI's ADD sets net.ipv6.conf.default.%s=%d before KubeVirt creates %q (is the dsbridge-binding network attached to the pod?)", err, key, v, link)
	}
	return err
}

// IPv6Enabled reports whether the calling thread's network namespace has
// IPv6 (its /proc/sys/net/ipv6 exists).
func IPv6Enabled() bool {
	_, err := os.Stat(procSys + "/net/ipv6")
	return err == nil
}
