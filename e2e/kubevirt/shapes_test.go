package kubevirt

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/api"
)

// TestInterfaceShapes: for each VMI interface shape KubeVirt supports, the
// interface dsbridge writes when the binding is registered without
// domainAttachmentType equals what KubeVirt's converter (with phase 2)
// builds for managedTap, decoded into KubeVirt's api.Interface; and the
// hook pass that writes it changes no byte outside it. Both domains are
// built in the same pod, after virt-handler's managedTap phase 1, by
// virt-launcher's first hook pass (the one with placeholders).
func TestInterfaceShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("a pod, sidecar and libvirt per shape")
	}
	two := uint32(2)
	yes := true
	for _, shape := range []struct {
		name  string
		iface v1.Interface
		edit  func(*v1.VirtualMachineInstance)
		want  string // in KubeVirt's interface: the shape is exercised
	}{
		{name: "virtio", want: `<model type="virtio-non-transitional">`},
		{name: "MAC address", iface: v1.Interface{MacAddress: "02:00:00:00:00:42"}, want: `<mac address="02:00:00:00:00:42">`},
		{name: "boot order", iface: v1.Interface{BootOrder: uintp(1)}, want: `<boot order="1">`},
		{name: "PCI address", iface: v1.Interface{PciAddress: "0000:81:01.0"}, want: `bus="0x81"`},
		{name: "ACPI index", iface: v1.Interface{ACPIIndex: 3}, want: `<acpi index="3">`},
		{name: "e1000e", iface: v1.Interface{Model: "e1000e"}, want: `<model type="e1000e">`},
		{name: "rtl8139", iface: v1.Interface{Model: "rtl8139"}, want: `<model type="rtl8139">`},
		{name: "transitional virtio", want: `<model type="virtio-transitional">`, edit: func(vmi *v1.VirtualMachineInstance) {
			vmi.Spec.Domain.Devices.UseVirtioTransitional = &yes
		}},
		{name: "link down", iface: v1.Interface{State: v1.InterfaceStateLinkDown}, want: `<link state="down">`},
		{name: "multiqueue", want: `queues="2"`, edit: func(vmi *v1.VirtualMachineInstance) {
			vmi.Spec.Domain.Devices.NetworkInterfaceMultiQueue = &yes
			vmi.Spec.Domain.CPU = &v1.CPU{Cores: two}
		}},
	} {
		t.Run(shape.name, func(t *testing.T) {
			newVM := func() *v1.VirtualMachineInstance {
				vmi := newVMI("vm1", shape.iface)
				if shape.edit != nil {
					shape.edit(vmi)
				}
				return vmi
			}
			testShape(t, newVM, shape.want)
		})
	}
}

func uintp(u uint) *uint { return &u }

func testShape(t *testing.T, newVM func() *v1.VirtualMachineInstance, want string) {
	managed := newCluster(kubeVirtCR(string(v1.ManagedTap), false))
	plain := newCluster(kubeVirtCR("", false))
	vmiManaged := withPodStatus(managed.admit(t, newVM()))
	vmiPlain := withPodStatus(plain.admit(t, newVM()))

	p := newPod(t, newNode(t), kubeOVN, tierFull, vmiManaged.Name)
	p.startSidecar(t)
	p.startLauncher(t)
	p.launcher.call(launcherRequest{Op: "collect"})
	phase1(t, managed, vmiManaged, p.launcher.pid)

	kv := p.launcher.call(launcherRequest{Op: "start", DomainOnly: true, VMI: mustJSON(t, vmiManaged),
		Attachments: managed.attachments(vmiManaged)})
	ds := p.launcher.call(launcherRequest{Op: "start", DomainOnly: true, VMI: mustJSON(t, vmiPlain),
		Attachments: plain.attachments(vmiPlain)})
	if len(kv.Passes) != 1 || len(ds.Passes) != 1 {
		t.Fatalf("hook passes: %d (managedTap) and %d (no attachment type), want 1 each", len(kv.Passes), len(ds.Passes))
	}
	_, kvIface, err := cutInterface(kv.Passes[0].In, "ua-default")
	if err != nil {
		t.Fatalf("KubeVirt's converter wrote no managedTap interface: %v", err)
	}
	if !strings.Contains(kvIface, want) {
		t.Fatalf("KubeVirt's interface lacks %s:\n%s", want, kvIface)
	}
	pass := ds.Passes[0]
	// calculateHotplugPortCountV1 (virtwrap/manager.go) counts the VMI's
	// interfaces, not the domain's: 3 placeholders with or without a NIC
	// written by KubeVirt.
	for name, p := range map[string]hookPass{"managedTap": kv.Passes[0], "no attachment type": pass} {
		if got := strings.Count(p.In, "<alias name=\"placeholder-"); got != 3 {
			t.Errorf("%s: first hook pass has %d placeholder interfaces, want 3", name, got)
		}
	}
	if _, _, err := cutInterface(pass.In, "ua-default"); err == nil {
		t.Fatalf("KubeVirt wrote an interface for a binding without domainAttachmentType:\n%s", pass.In)
	}
	rest, dsIface, err := cutInterface(pass.Raw, "ua-default")
	if err != nil {
		t.Fatalf("dsbridge wrote no interface: %v\n%s", err, pass.Raw)
	}
	if rest != pass.In {
		t.Errorf("dsbridge changed bytes outside its interface:\n%s", cmp.Diff(pass.In, rest))
	}
	// api.Alias keeps its name unexported; compare it whole.
	if diff := cmp.Diff(decodeInterface(t, kvIface), decodeInterface(t, dsIface), cmpopts.EquateComparable(api.Alias{})); diff != "" {
		t.Errorf("dsbridge's interface differs from KubeVirt's managedTap interface (-KubeVirt +dsbridge):\n%s\nKubeVirt:\n%s\ndsbridge:\n%s",
			diff, kvIface, dsIface)
	}
}

func decodeInterface(t *testing.T, text string) api.Interface {
	t.Helper()
	var i api.Interface
	if err := xml.Unmarshal([]byte(text), &i); err != nil {
		t.Fatalf("decode %q: %v", text, err)
	}
	return i
}
