package kubevirt

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	vishnetlink "github.com/vishvananda/netlink"

	v1 "kubevirt.io/api/core/v1"
	"kubevirt.io/client-go/log"

	dutils "kubevirt.io/kubevirt/pkg/ephemeral-disk-utils"
	"kubevirt.io/kubevirt/pkg/network/cache"
	"kubevirt.io/kubevirt/pkg/network/driver/netlink"
	"kubevirt.io/kubevirt/pkg/network/driver/nmstate"
	"kubevirt.io/kubevirt/pkg/network/driver/procsys"
	"kubevirt.io/kubevirt/pkg/network/driver/virtchroot"
	"kubevirt.io/kubevirt/pkg/network/netns"
	netsetup "kubevirt.io/kubevirt/pkg/network/setup"
	"kubevirt.io/kubevirt/pkg/network/setup/netpod"
	"kubevirt.io/kubevirt/pkg/network/setup/netpod/masquerade"
	"kubevirt.io/kubevirt/pkg/network/vmispec"
	kfs "kubevirt.io/kubevirt/pkg/os/fs"
	"kubevirt.io/kubevirt/pkg/safepath"
	"kubevirt.io/kubevirt/pkg/util"
	converternet "kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/converter/network"
	"kubevirt.io/kubevirt/pkg/vmitrait"
)

// rootedCache keeps virt-handler's caches (pod interface, config state)
// under a test directory instead of the host's /var/run/kubevirt-private.
type rootedCache struct{ root string }

func (c rootedCache) New(path string) *cache.Cache {
	return cache.NewCustomCache(filepath.Join(c.root, path), kfs.New())
}

// ifbForDummy is the netlink adapter of KubeVirt's nmstate driver
// (nmstate.defaultHandler: netlink, procsys, virtchroot) with one change:
// this machine's kernel has no dummy driver, so the dummy managedTap
// creates to hold the pod's original name, MAC, MTU and addresses is an
// ifb link instead. An ifb's MAC cannot change once it exists, so when
// nmstate sets the dummy's MAC (right after creating it, before anything
// else) the ifb is created again with that MAC; nmstate then gives it the
// MTU and addresses as it would the dummy. Every other link (the bridge,
// the renamed pod NIC, the tap through virt-chroot) is KubeVirt's own.
type ifbForDummy struct {
	netlink.NetLink
	procsys.ProcSys
	virtchroot.VirtCHRoot
	standIns map[string]bool
}

func (a *ifbForDummy) LinkAdd(link vishnetlink.Link) error {
	if d, ok := link.(*vishnetlink.Dummy); ok {
		a.standIns[d.Name] = true
		return a.NetLink.LinkAdd(&vishnetlink.Ifb{LinkAttrs: d.LinkAttrs})
	}
	return a.NetLink.LinkAdd(link)
}

func (a *ifbForDummy) LinkSetHardwareAddr(link vishnetlink.Link, mac net.HardwareAddr) error {
	name := link.Attrs().Name
	if !a.standIns[name] {
		return a.NetLink.LinkSetHardwareAddr(link, mac)
	}
	if err := a.NetLink.LinkDel(&vishnetlink.Ifb{LinkAttrs: vishnetlink.LinkAttrs{Name: name}}); err != nil {
		return fmt.Errorf("failed to replace the ifb standing in for dummy %q: %w", name, err)
	}
	return a.NetLink.LinkAdd(&vishnetlink.Ifb{LinkAttrs: vishnetlink.LinkAttrs{Name: name, HardwareAddr: mac}})
}

// qemuOwnership gives files to uid/gid 107 as KubeVirt's ownership manager
// does (pkg/ephemeral-disk-utils/utils.go) by looking up the user "qemu",
// which virt-handler's image has and this host does not; virt-handler's
// caches (pkg/network/cache/cache.go) are chowned through it.
type qemuOwnership struct{}

func (qemuOwnership) UnsafeSetFileOwnership(file string) error {
	return os.Chown(file, util.NonRootUID, util.NonRootUID)
}

func (o qemuOwnership) SetFileOwnership(file *safepath.Path) error {
	return file.ExecuteNoFollow(func(p string) error { return o.UnsafeSetFileOwnership(p) })
}

// phase1 is virt-handler's network phase 1 for the pod whose launcher
// process is launcherPID, as NetConf.Setup (pkg/network/setup/netconf.go)
// builds it: the same NetPod with the same options, plus only the nmstate
// adapter above. For a binding with domainAttachmentType managedTap it
// builds k6t-eth0, renames eth0 to eth0-nic, creates tap0 with virt-chroot
// (owner 107, or 0 for a root VMI) and the stand-in for the dummy.
func phase1(t *testing.T, c *cluster, vmi *v1.VirtualMachineInstance, launcherPID int) {
	t.Helper()
	dutils.DefaultOwnershipManager = qemuOwnership{}
	creator := rootedCache{root: t.TempDir()}
	stateCache := netsetup.NewConfigStateCache(string(vmi.UID), creator)
	state := netpod.NewState(&stateCache, netns.New(launcherPID))
	ownerID := 0
	if vmitrait.IsNonRoot(vmi) {
		ownerID = util.NonRootUID
	}
	np := netpod.NewNetPod(
		vmi.Spec.Networks,
		vmispec.FilterInterfacesByNetworks(vmi.Spec.Domain.Devices.Interfaces, vmi.Spec.Networks),
		string(vmi.UID), launcherPID, ownerID, int(converternet.NetworkQueuesCapacity(vmi)), state,
		netpod.WithMasqueradeAdapter(masquerade.New(masquerade.WithLegacyMigrationPorts())),
		netpod.WithCacheCreator(creator),
		netpod.WithBindingPlugins(c.bindings()),
		netpod.WithLogger(log.Log.Object(vmi)),
		netpod.WithVMIIfaceStatuses(vmi.Status.Interfaces),
		netpod.WithNMStateAdapter(nmstate.New(nmstate.WithAdapter(&ifbForDummy{standIns: map[string]bool{}}))),
	)
	if err := np.Setup(); err != nil {
		t.Fatalf("virt-handler network phase 1: %v", err)
	}
}
