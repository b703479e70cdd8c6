package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

// Defaults for SnapshotOptions.
const (
	DefaultPodIface       = naming.PrimaryPodInterface
	DefaultResolveTimeout = time.Second
	// neighPollInterval is how often the neighbour table is read while a
	// gateway's MAC is being resolved.
	neighPollInterval = 20 * time.Millisecond
	// discardPort is the UDP port the resolution probe is sent to (RFC 863);
	// only the ARP/NS the kernel sends before it matters.
	discardPort = 9
)

// ErrInterrupted reports plumbing stopped halfway: the pod interface is
// neither where the CNI left it nor on a dummy, so only a saved snapshot can
// describe the pod.
var ErrInterrupted = errors.New("plumbing was interrupted")

// SnapshotOptions says which pod interface to read and where its resolver
// configuration and hostname come from.
type SnapshotOptions struct {
	PodIface   string // default eth0
	ResolvConf string // default /etc/resolv.conf; read if present
	Hostname   string // overrides os.Hostname
	// ResolveTimeout bounds how long a gateway's MAC is polled for in the
	// neighbour table after the probe datagram; default 1 s.
	ResolveTimeout time.Duration
}

func (o SnapshotOptions) withDefaults() SnapshotOptions {
	if o.PodIface == "" {
		o.PodIface = DefaultPodIface
	}
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = DefaultResolveTimeout
	}
	return o
}

// Take reads the pod interface in the current network namespace: MAC, MTU,
// global addresses, default gateways (with their MAC and link-local
// address), other routes, DNS, search domains and hostname. Before plumbing
// it reads the interface the CNI made; after plumbing (ours or KubeVirt's
// managedTap) it reads the dummy <x>, which holds the addresses but no
// routes, and marks the snapshot Plumbed; the gateways come from the
// dummy's alias when dsbridge's plumbing recorded them there.
func Take(ctx context.Context, opts SnapshotOptions) (*Snapshot, error) {
	opts = opts.withDefaults()
	link, plumbed, err := snapshotSource(LayoutFor(opts.PodIface, ""))
	if err != nil {
		return nil, err
	}
	attrs := link.Attrs()
	s := &Snapshot{
		Version:  SnapshotVersion,
		TakenAt:  time.Now().UTC().Truncate(time.Second),
		PodIface: opts.PodIface,
		MAC:      podMAC(attrs.HardwareAddr),
		MTU:      attrs.MTU,
		Plumbed:  plumbed,
	}
	if err := readAddrs(link, s); err != nil {
		return nil, err
	}
	if !plumbed {
		if err := readRoutes(ctx, link, s, opts.ResolveTimeout); err != nil {
			return nil, err
		}
	} else if gw4, gw6, ok := parseGatewayAlias(attrs.Alias); ok {
		s.Gateway4, s.Gateway6 = gw4, gw6
	}
	if err := readHost(opts, s); err != nil {
		return nil, err
	}
	readRestore(link, plumbed, s)
	return s, nil
}

// podMAC is the pod link's MAC; zero for a link without an Ethernet
// address.
func podMAC(hw net.HardwareAddr) frame.MAC {
	mac, _ := frame.MACFrom(hw)
	return mac
}

// snapshotSource returns the link that holds the pod's addresses and
// whether plumbing already moved them onto the dummy.
func snapshotSource(l Layout) (netlink.Link, bool, error) {
	pod, podErr := linkByName(l.Dummy)
	_, upErr := linkByName(l.Uplink)
	switch {
	case podErr == nil && upErr == nil && isAddrHolder(pod.Type()):
		return pod, true, nil
	case podErr == nil:
		return pod, false, nil
	case upErr == nil && isNotFound(podErr):
		return nil, false, fmt.Errorf("pod interface %q is missing while %q exists: %w", l.Dummy, l.Uplink, ErrInterrupted)
	default:
		return nil, false, fmt.Errorf("failed to find pod interface %q: %w", l.Dummy, podErr)
	}
}

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %q: %w", name, err)
	}
	return l, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// Kernel-owned IFA_F_* bits, cleared from Addr.Flags: secondary,
// dadfailed, deprecated, tentative, permanent, stable-privacy.
const kernelAddrFlags = unix.IFA_F_SECONDARY | unix.IFA_F_DADFAILED | unix.IFA_F_DEPRECATED |
	unix.IFA_F_TENTATIVE | unix.IFA_F_PERMANENT | unix.IFA_F_STABLE_PRIVACY

// lifetimeForever is the kernel's infinite address lifetime.
const lifetimeForever = 0xffffffff

func readAddrs(link netlink.Link, s *Snapshot) error {
	addrs, err := addrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("failed to list addresses of %q: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if p.Addr().Is4() {
			s.IPv4 = append(s.IPv4, p)
		} else {
			s.IPv6 = append(s.IPv6, p)
		}
		s.Restore.Addrs = append(s.Restore.Addrs, Addr{
			Prefix:      p,
			Flags:       a.Flags &^ kernelAddrFlags,
			ValidLft:    finiteLifetime(a.ValidLft),
			PreferedLft: finiteLifetime(a.PreferedLft),
		})
	}
	return nil
}

func finiteLifetime(v int) int {
	if v == lifetimeForever || v < 0 {
		return 0
	}
	return v
}

// prefixOf converts a kernel address (IPv4 in 4-byte form) to a Prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := addrOf(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func readHost(opts SnapshotOptions, s *Snapshot) error {
	b, err := os.ReadFile(opts.ResolvConf)
	switch {
	case err == nil:
		s.DNS, s.Search = ParseResolvConf(b)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("failed to read resolver configuration %q: %w", opts.ResolvConf, err)
	}
	s.Hostname = opts.Hostname
	if s.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("failed to read hostname: %w", err)
		}
		s.Hostname = h
	}
	return nil
}

// readRestore records what teardown needs besides addresses and routes. A
// plumbed snapshot cannot see the original values and records the kernel
// defaults (up, addr_gen_mode eui64, arp_ignore 0).
func readRestore(link netlink.Link, plumbed bool, s *Snapshot) {
	s.Restore.Up = true
	if plumbed {
		return
	}
	s.Restore.Up = link.Attrs().Flags&net.FlagUp != 0
	s.Restore.AddrGenMode = -1
	if v, err := ReadSysctl(ipv6Conf(link.Attrs().Name, "addr_gen_mode")); err == nil {
		s.Restore.AddrGenMode = v
	}
	if v, err := ReadSysctl(sysctlArpIgnoreAll); err == nil {
		s.Restore.ArpIgnore = v
	}
}
