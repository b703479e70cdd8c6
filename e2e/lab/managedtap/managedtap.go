// Package managedtap builds, in a lab pod, what KubeVirt's virt-handler
// builds for a binding with domainAttachmentType managedTap (phase 1,
// pkg/network/setup/netpod/netpod.go managedTapSpec): bridge k6t-<x>, the
// pod interface renamed <x>-nic and enslaved, the tap (a stand-in here),
// and a dummy with the pod interface's name, MAC and addresses. It is a
// package of its own because it plumbs with netsetup, whose tests use the
// lab.
package managedtap

import (
	"context"
	"os"
	"strings"

	"github.com/dsbridge/dsbridge/dhcp/frame"
	"github.com/dsbridge/dsbridge/e2e/lab"
	"github.com/dsbridge/dsbridge/netsetup"
)

// Build plumbs l's pod as managedTap does, as root, and returns the
// bridge's MAC. The bridge keeps its kernel link-local address, as
// KubeVirt's does, and its accept_ra and accept_dad are the namespace's
// defaults, as for any link created then: KubeVirt sets neither, and
// netsetup.Ensure does, so they are put back.
func Build(t lab.T, l *lab.Lab) frame.MAC {
	t.Helper()
	layout := netsetup.LayoutFor(l.Spec.PodIface, l.Tap)
	layout.TapStandIn = true
	err := l.Pod.Do(func() error {
		snap, err := netsetup.Take(context.Background(), netsetup.SnapshotOptions{PodIface: l.Spec.PodIface, ResolvConf: os.DevNull})
		if err != nil {
			return err
		}
		return netsetup.Ensure(context.Background(), snap, layout, netsetup.PlumbOptions{BridgeLinkLocal: true})
	})
	if err != nil {
		t.Fatalf("managedTap plumbing: %v", err)
	}
	for _, key := range []string{"accept_ra", "accept_dad"} {
		v := strings.TrimSpace(l.Pod.Run(t, "sysctl", "-n", "net.ipv6.conf.default."+key))
		l.Pod.Run(t, "sysctl", "-qw", "net.ipv6.conf."+layout.Bridge+"."+key+"="+v)
	}
	mac, err := frame.ParseMAC(strings.TrimSpace(l.Pod.Run(t, "cat", "/sys/class/net/"+layout.Bridge+"/address")))
	if err != nil {
		t.Fatalf("bridge %s: %v", layout.Bridge, err)
	}
	return mac
}
