package kubevirt

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	k8sv1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/network/domainspec"
	"kubevirt.io/kubevirt/pkg/testutils"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks/mutating-webhook/mutators"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks/validating-webhook/admitters"
	virtconfig "kubevirt.io/kubevirt/pkg/virt-config"
)

// pluginName is the binding's name under spec.configuration.network.binding.
const pluginName = "dsbridge"

// kubeVirtCR is the KubeVirt CR as a tier's deploy/tiers/<tier>/kubevirt-patch.yaml
// leaves it: the dsbridge binding with managedTap, the binding CNI's NAD
// and link-refresh; root adds the Root feature gate (root-gate tier).
// attach "" registers the binding without domainAttachmentType.
func kubeVirtCR(attach string, root bool) *v1.KubeVirt {
	kv := &v1.KubeVirt{
		ObjectMeta: metav1.ObjectMeta{Name: "kubevirt", Namespace: "kubevirt"},
		Spec: v1.KubeVirtSpec{Configuration: v1.KubeVirtConfiguration{
			NetworkConfiguration: &v1.NetworkConfiguration{Binding: map[string]v1.InterfaceBindingPlugin{
				pluginName: {
					SidecarImage:                "ghcr.io/dsbridge/dsbridge:v0.1.0",
					DomainAttachmentType:        v1.DomainAttachmentType(attach),
					NetworkAttachmentDefinition: "default/dsbridge-binding",
					Migration:                   &v1.InterfaceBindingMigration{Method: v1.LinkRefresh},
				},
			}},
		}},
	}
	// virt-operator records the nodes' architecture in the status
	// (pkg/virt-config/configuration.go reads it as the default).
	kv.Status.DefaultArchitecture = runtime.GOARCH
	if root {
		kv.Spec.Configuration.DeveloperConfiguration = &v1.DeveloperConfiguration{FeatureGates: []string{"Root"}}
	}
	return kv
}

// cluster is the KubeVirt configuration virt-api, virt-handler and
// virt-launcher read.
type cluster struct {
	config *virtconfig.ClusterConfig
}

func newCluster(kv *v1.KubeVirt) *cluster {
	cfg, _, _ := testutils.NewFakeClusterConfigUsingKV(kv)
	return &cluster{config: cfg}
}

// bindings is spec.configuration.network.binding as virt-handler reads it.
func (c *cluster) bindings() map[string]v1.InterfaceBindingPlugin {
	return c.config.GetNetworkBindings()
}

// attachments is what virt-handler passes virt-launcher as
// VirtualMachineOptions.InterfaceDomainAttachment (pkg/virt-handler/vm.go).
func (c *cluster) attachments(vmi *v1.VirtualMachineInstance) map[string]string {
	return domainspec.DomainAttachmentByInterfaceName(vmi.Spec.Domain.Devices.Interfaces, c.bindings())
}

// admit runs virt-api's VMI mutating webhook on a create request, applies
// its JSON patch, then runs the validating webhook on the result; it fails
// the test unless both allow it.
func (c *cluster) admit(t *testing.T, vmi *v1.VirtualMachineInstance) *v1.VirtualMachineInstance {
	t.Helper()
	raw, err := json.Marshal(vmi)
	if err != nil {
		t.Fatal(err)
	}
	// No VirtualMachineInstancePresets in this cluster.
	presets, _ := testutils.NewFakeInformerFor(&v1.VirtualMachineInstancePreset{})
	mutator := &mutators.VMIsMutator{ClusterConfig: c.config, VMIPresetInformer: presets}
	resp := mutator.Mutate(review(raw))
	if !resp.Allowed {
		t.Fatalf("virt-api's VMI mutator refused the VMI: %v", resp.Result)
	}
	if resp.Patch != nil {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("mutator's patch: %v", err)
		}
		if raw, err = p.Apply(raw); err != nil {
			t.Fatalf("applying the mutator's patch: %v", err)
		}
	}
	admitter := &admitters.VMICreateAdmitter{ClusterConfig: c.config}
	if resp := admitter.Admit(context.Background(), review(raw)); !resp.Allowed {
		t.Fatalf("virt-api's VMI validation refused the mutated VMI: %v", resp.Result)
	}
	out := &v1.VirtualMachineInstance{}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func review(raw []byte) *admissionv1.AdmissionReview {
	return &admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID:       types.UID("req"),
		Operation: admissionv1.Create,
		Resource: metav1.GroupVersionResource{Group: webhooks.VirtualMachineInstanceGroupVersionResource.Group,
			Version: webhooks.VirtualMachineInstanceGroupVersionResource.Version, Resource: webhooks.VirtualMachineInstanceGroupVersionResource.Resource},
		Object: k8sruntime.RawExtension{Raw: raw},
	}}
}

// vmiUID is the VMI's UID; the sidecars of both pods of a migration see it.
const vmiUID = "4f0c2b9e-7d1a-4c3e-9b8f-2a6d5e1c0f37"

// newVMI is the test VM: one interface on the pod network bound to
// dsbridge, booted from the guest kernel with KubeVirt's kernelBoot.
func newVMI(name string, iface v1.Interface) *v1.VirtualMachineInstance {
	iface.Name = "default"
	iface.Binding = &v1.PluginBinding{Name: pluginName}
	return &v1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(vmiUID)},
		Spec: v1.VirtualMachineInstanceSpec{
			Domain: v1.DomainSpec{
				Resources: v1.ResourceRequirements{Requests: k8sv1.ResourceList{k8sv1.ResourceMemory: resource.MustParse("256Mi")}},
				Firmware: &v1.Firmware{KernelBoot: &v1.KernelBoot{
					KernelArgs: "console=ttyS0 quiet panic=-1",
					Container: &v1.KernelBootContainer{Image: "localhost/dsbridge-guest:test",
						KernelPath: "/vmlinuz", InitrdPath: "/initramfs.gz"},
				}},
				Devices: v1.Devices{Interfaces: []v1.Interface{iface}},
			},
			Networks: []v1.Network{{Name: "default", NetworkSource: v1.NetworkSource{Pod: &v1.PodNetwork{}}}},
		},
	}
}

// withPodStatus adds what virt-controller records from Multus before the
// pod starts: the interface's pod interface name.
func withPodStatus(vmi *v1.VirtualMachineInstance) *v1.VirtualMachineInstance {
	vmi.Status.Interfaces = []v1.VirtualMachineInstanceNetworkInterface{{Name: "default", PodInterfaceName: "eth0"}}
	return vmi
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(fmt.Errorf("failed to encode %T: %w", v, err))
	}
	return b
}
