package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kvv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/dsbridge/dsbridge/hooks/naming"
)

// pluginName is the binding's name under the KubeVirt CR's
// spec.configuration.network.binding.
const pluginName = "dsbridge"

// The VM namespaces of TestAPIServer: the examples' own (labelled
// privileged in the full tier, as the README says), one enforcing Pod
// Security baseline, and one with no Pod Security label.
const (
	nsVMs      = "vms"
	nsBaseline = "vms-baseline"
	nsPlain    = "vms-plain"
)

// The sidecar securityContext each tier needs, exactly.
var (
	// KubeVirt's non-root sidecar (pkg/virt-controller/services/
	// rendercontainer.go securityContext + WithDropALLCapabilities): the
	// unprivileged and legacy tiers, and the full tier where the policy
	// does not reach.
	nonRootSidecar = &corev1.SecurityContext{
		RunAsUser: ptr[int64](107), RunAsGroup: ptr[int64](107), RunAsNonRoot: ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	// The full tier: the capability policy's grant.
	fullSidecar = &corev1.SecurityContext{
		RunAsUser: ptr[int64](107), RunAsGroup: ptr[int64](107), RunAsNonRoot: ptr(true),
		AllowPrivilegeEscalation: ptr(true),
		Capabilities: &corev1.Capabilities{
			Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"},
			Drop: []corev1.Capability{"ALL"},
		},
	}
	// The root gate tier: root with the runtime's default capabilities.
	rootSidecar = &corev1.SecurityContext{RunAsUser: ptr[int64](0), RunAsNonRoot: ptr(false)}
)

// tierCase is one tier as an operator applies it (README, Deployment).
type tierCase struct {
	name      string
	dir       string // kustomization
	kvPatch   string // merge patch for the KubeVirt CR
	gatePatch string // JSON patch for the KubeVirt CR, if any
	nad       string // the binding CNI's NAD the pods must name
	gates     []string
	root      bool // VMs run as root
	policy    bool // the capability policy is installed
}

func tierCases(v kubeVersion) []tierCase {
	return []tierCase{
		{name: "unprivileged", dir: "../tiers/unprivileged", kvPatch: "../tiers/unprivileged/kubevirt-patch.yaml",
			nad: "dsbridge-binding", gates: []string{"Sidecar"}},
		{name: "root-gate", dir: "../tiers/root-gate", kvPatch: "../tiers/root-gate/kubevirt-patch.yaml",
			gatePatch: "../tiers/root-gate/feature-gate-patch.yaml", nad: "dsbridge-binding",
			gates: []string{"Sidecar", "Root"}, root: true},
		{name: "legacy", dir: "../tiers/legacy", kvPatch: "../tiers/legacy/kubevirt-patch.yaml",
			nad: "dsbridge-binding-plumbing", gates: []string{"Sidecar"}},
		{name: "full", dir: v.fullTier, kvPatch: "../tiers/full/kubevirt-patch.yaml",
			nad: "dsbridge-binding", gates: []string{"Sidecar"}, policy: true},
	}
}

// TestGrantMatchesContainerfile: the full tier's grant that TestAPIServer
// requires is exactly the file capabilities the Containerfile gives the
// binary (permitted only: dsbridge raises the granted ones itself).
func TestGrantMatchesContainerfile(t *testing.T) {
	b, err := os.ReadFile("../../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN setcap '([a-z_,]+)=p' /out/dsbridge`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Containerfile has no permitted-only setcap line")
	}
	var granted []string
	for _, c := range fullSidecar.Capabilities.Add {
		granted = append(granted, "cap_"+strings.ToLower(string(c)))
	}
	if diff := cmp.Diff(strings.Split(string(m[1]), ","), granted); diff != "" {
		t.Errorf("Containerfile file capabilities vs the full tier's grant (-file +grant):\n%s", diff)
	}
}

// TestAPIServer applies every tier to a real kube-apiserver of each
// supported Kubernetes release (etcd and the server started here, on
// 127.0.0.1), with the CRDs KubeVirt's virt-operator generates, and runs
// the example VMs through KubeVirt v1.9.0's own admission and pod
// rendering into the server's real admission chain (MutatingAdmissionPolicy,
// Pod Security, ...). It compares every stored pod with what its tier
// needs.
func TestAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts kube-apiserver and etcd")
	}
	for _, v := range kubeVersions {
		t.Run("kubernetes-"+v.name, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, v)
			c.checkVersion(t, v)
			c.setup(t)
			t.Run("policy-api-version", func(t *testing.T) { c.checkOtherPolicyVariant(t, v) })
			t.Run("kubevirt-schemas", c.checkOlderKubeVirt)
			c.installCRDs(t, kubevirtCRDs(t)...)
			for _, tc := range tierCases(v) {
				t.Run(tc.name, func(t *testing.T) { c.checkTier(t, tc) })
			}
		})
	}
}

// checkVersion checks that the server is the release under test.
func (c *cluster) checkVersion(t *testing.T, v kubeVersion) {
	t.Helper()
	info, err := c.client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if info.GitVersion != v.version {
		t.Fatalf("server version %s, want %s", info.GitVersion, v.version)
	}
}

// setup creates what a cluster has before dsbridge: the NAD CRD (Multus),
// the namespaces with the service account the controller manager would
// create in each, and the kubevirt namespace.
func (c *cluster) setup(t *testing.T) {
	t.Helper()
	c.installCRDs(t, nadCRD(t))
	labels := map[string]map[string]any{
		"kubevirt": nil, nsVMs: nil, nsPlain: nil,
		nsBaseline: {"pod-security.kubernetes.io/enforce": "baseline"},
	}
	for name, l := range labels {
		ns := object("v1", "Namespace", "", name)
		if l != nil {
			ns.Object["metadata"].(map[string]any)["labels"] = l
		}
		c.mustApplyAsWritten(t, []*unstructured.Unstructured{ns, object("v1", "ServiceAccount", name, "default")})
	}
}

// checkOtherPolicyVariant: the policy variant for the other Kubernetes
// releases is not served here, so the README must name the right one.
func (c *cluster) checkOtherPolicyVariant(t *testing.T, v kubeVersion) {
	for _, dir := range []string{"../tiers/full", "../tiers/full-v1beta1"} {
		for _, obj := range kustomizeBuild(t, dir) {
			if obj.GetKind() != "MutatingAdmissionPolicy" || obj.GetAPIVersion() == v.mapAPI {
				continue
			}
			if _, err := c.resourceFor(t, obj); !meta.IsNoMatchError(err) {
				t.Errorf("%s: %s MutatingAdmissionPolicy: %v, want no match", dir, obj.GetAPIVersion(), err)
			}
		}
	}
}

// checkTier applies a tier as the README says, then follows the example
// VMs (and VMs the policy must leave alone) through KubeVirt into stored
// pods in each VM namespace.
func (c *cluster) checkTier(t *testing.T, tc tierCase) {
	c.resetKubeVirt(t)
	objs := kustomizeBuild(t, tc.dir)
	c.mustApplyAsWritten(t, objs)
	t.Cleanup(func() { c.remove(t, objs...) })
	c.patchKubeVirt(t, tc)
	examples := kustomizeBuild(t, "../examples")
	c.mustApplyAsWritten(t, examples)
	t.Cleanup(func() { c.removeNonNamespaces(t, examples) })
	if tc.policy {
		c.labelNamespace(t, nsVMs, "privileged")
		t.Cleanup(func() { c.labelNamespace(t, nsVMs, "") })
	}
	k := c.newKubeVirt(t)
	vms := vmsOf(t, examples)
	for _, vm := range vms {
		k.admitVM(t, vm)
	}
	if tc.policy && !t.Run("policy-in-force", func(t *testing.T) { c.waitPolicy(t, vms[0]) }) {
		return
	}
	for _, ns := range []string{nsVMs, nsBaseline, nsPlain} {
		for _, vm := range vms {
			t.Run(ns+"/"+vm.Name, func(t *testing.T) { c.checkVMPod(t, tc, vm, ns) })
		}
	}
	t.Run("untouched", func(t *testing.T) { c.checkUntouched(t, vmNamed(t, vms, "dsbridge-demo"), tc) })
}

// checkVMPod follows a VM in a namespace to its stored virt-launcher pod
// and checks the sidecar the tier gives it. Root VMs' pods (the compute
// container adds SYS_NICE, pkg/virt-controller/services/rendercontainer.go
// requiredCapabilities) are refused by Pod Security baseline whatever
// dsbridge does.
func (c *cluster) checkVMPod(t *testing.T, tc tierCase, vm *kvv1.VirtualMachine, ns string) {
	pod := c.launcherPodIn(t, vm, ns)
	checkRendered(t, pod, vm, tc.nad)
	if tc.root && ns == nsBaseline {
		c.checkRefused(t, pod, `violates PodSecurity "baseline:latest": non-default capabilities (container "compute" must not include "SYS_NICE"`)
		return
	}
	c.checkStored(t, pod, map[string]*corev1.SecurityContext{"hook-sidecar-0": tc.sidecar(ns)})
}

// sidecar is the securityContext the tier gives the dsbridge sidecar of a
// VM in namespace ns ("" for KubeVirt's rendering of any binding sidecar,
// before any policy).
func (tc tierCase) sidecar(ns string) *corev1.SecurityContext {
	switch {
	case tc.root:
		return rootSidecar
	case tc.policy && ns == nsVMs:
		return fullSidecar
	}
	return nonRootSidecar
}

// checkRefused checks that the API server refuses the pod with msg.
func (c *cluster) checkRefused(t *testing.T, pod *corev1.Pod, msg string) {
	t.Helper()
	_, err := c.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil || !strings.Contains(err.Error(), msg) {
		t.Errorf("create pod of %s in %s: %v, want an error containing %q", pod.GenerateName, pod.Namespace, err, msg)
	}
}

// patchKubeVirt applies the tier's KubeVirt patches as the README says and
// checks what the CR holds afterwards.
func (c *cluster) patchKubeVirt(t *testing.T, tc tierCase) {
	t.Helper()
	kv := shippedKubeVirt()
	c.warnings.take()
	stored, err := c.patch(t, kv, types.MergePatchType, tc.kvPatch)
	if err != nil {
		t.Fatalf("kubectl patch --type merge --patch-file %s: %v", tc.kvPatch, err)
	}
	if tc.gatePatch != "" {
		if stored, err = c.patch(t, kv, types.JSONPatchType, tc.gatePatch); err != nil {
			t.Fatalf("kubectl patch --type json --patch-file %s: %v", tc.gatePatch, err)
		}
	}
	if w := c.warnings.take(); len(w) != 0 {
		t.Errorf("patching the KubeVirt CR: warnings %q", w)
	}
	want := manifestObject(t, tc.kvPatch)
	if diff := missing(jsonValue(want.Object["spec"]), jsonValue(stored.Object["spec"]), ".spec"); len(diff) != 0 {
		t.Errorf("KubeVirt CR after %s: %v", tc.kvPatch, diff)
	}
	gates, _, _ := unstructured.NestedStringSlice(stored.Object, "spec", "configuration", "developerConfiguration", "featureGates")
	if diff := cmp.Diff(tc.gates, gates); diff != "" {
		t.Errorf("feature gates (-want +got):\n%s", diff)
	}
}

// waitPolicy waits until the capability policy is in force in the API
// server's admission chain (policies load asynchronously): a dry-run pod
// of a VM in the privileged namespace gets the full tier's sidecar.
func (c *cluster) waitPolicy(t *testing.T, vm *kvv1.VirtualMachine) {
	t.Helper()
	pod := c.launcherPodIn(t, vm, nsVMs)
	var last *corev1.SecurityContext
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		stored := c.createPod(t, pod, nsVMs, true)
		if last = sidecarContext(stored, "hook-sidecar-0"); cmp.Equal(last, fullSidecar) {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the capability policy never applied in 1m: sidecar securityContext %s, want %s", toJSON(last), toJSON(fullSidecar))
}

// checkUntouched: pods the policy must not change are stored exactly as
// without it: a VM with KubeVirt's core bridge binding, a VM whose second
// interface uses another plugin's sidecar (only dsbridge's changes), and a
// pod that is not a virt-launcher pod but carries a dsbridge sidecar.
func (c *cluster) checkUntouched(t *testing.T, vm *kvv1.VirtualMachine, tc tierCase) {
	bridge := vm.DeepCopy()
	bridge.Name = "core-bridge"
	bridge.Spec.Template.Spec.Domain.Devices.Interfaces[0].Binding = nil
	bridge.Spec.Template.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod.Bridge = &kvv1.InterfaceBridge{}
	c.checkStored(t, c.launcherPodIn(t, bridge, nsVMs), map[string]*corev1.SecurityContext{})

	mixed := c.mixedVM(t, vm)
	pod := c.launcherPodIn(t, mixed, nsVMs)
	want := map[string]*corev1.SecurityContext{}
	for _, ctr := range pod.Spec.Containers {
		if strings.HasPrefix(ctr.Name, "hook-sidecar-") {
			want[ctr.Name] = tc.sidecar("")
			if envValue(ctr, "NETWORK_BINDING_PLUGIN_NAME") == pluginName {
				want[ctr.Name] = tc.sidecar(nsVMs)
			}
		}
	}
	if len(want) != 2 {
		t.Fatalf("VM %s: %d sidecars, want 2 (dsbridge and another plugin)", mixed.Name, len(want))
	}
	c.checkStored(t, pod, want)

	stranger := pod.DeepCopy()
	delete(stranger.Labels, kvv1.AppLabel)
	c.checkStored(t, stranger, map[string]*corev1.SecurityContext{})
}

// mixedVM registers a second binding plugin in the KubeVirt CR (as another
// operator's configuration would) and returns the example VM with a second
// interface, on the example's Multus network, bound by that plugin.
func (c *cluster) mixedVM(t *testing.T, vm *kvv1.VirtualMachine) *kvv1.VirtualMachine {
	t.Helper()
	other := []byte(`{"spec":{"configuration":{"network":{"binding":{"other":{"sidecarImage":"registry.example/other-binding:v1"}}}}}}`)
	ri, err := c.resourceFor(t, shippedKubeVirt())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ri.Patch(context.Background(), "kubevirt", types.MergePatchType, other, metav1.PatchOptions{FieldValidation: "Strict"}); err != nil {
		t.Fatal(err)
	}
	mixed := vm.DeepCopy()
	mixed.Name = "mixed-bindings"
	spec := &mixed.Spec.Template.Spec
	spec.Domain.Devices.Interfaces = append(spec.Domain.Devices.Interfaces, kvv1.Interface{
		Name: "blue", Binding: &kvv1.PluginBinding{Name: "other"},
	})
	spec.Networks = append(spec.Networks, kvv1.Network{
		Name: "blue", NetworkSource: kvv1.NetworkSource{Multus: &kvv1.MultusNetwork{NetworkName: "vms/blue"}},
	})
	return mixed
}

// launcherPodIn stores the VM in a namespace and returns the virt-launcher
// pod KubeVirt renders for it, with KubeVirt's configuration as the API
// server holds it now.
func (c *cluster) launcherPodIn(t *testing.T, vm *kvv1.VirtualMachine, ns string) *corev1.Pod {
	t.Helper()
	k := c.newKubeVirt(t)
	vm = vm.DeepCopy()
	vm.Namespace = ns
	vm.ResourceVersion, vm.UID, vm.ManagedFields, vm.CreationTimestamp, vm.Generation = "", "", nil, metav1.Time{}, 0
	obj := toUnstructured(t, vm)
	stored, err := c.apply(t, obj)
	if err != nil {
		t.Fatalf("apply VM %s/%s: %v", ns, vm.Name, err)
	}
	t.Cleanup(func() { c.remove(t, obj) })
	return k.launcherPod(t, c, stored)
}

// checkStored creates the pod in its namespace and compares the stored
// pod with the same pod stored where no policy applies (a dry run in
// nsPlain), its sidecars' securityContexts set to want.
func (c *cluster) checkStored(t *testing.T, pod *corev1.Pod, want map[string]*corev1.SecurityContext) {
	t.Helper()
	baseline := c.createPod(t, pod, nsPlain, true)
	stored := c.createPod(t, pod, pod.Namespace, false)
	expected := baseline.Spec.DeepCopy()
	for i, ctr := range expected.Containers {
		if sc, ok := want[ctr.Name]; ok {
			expected.Containers[i].SecurityContext = sc
		}
	}
	if diff := cmp.Diff(*expected, stored.Spec); diff != "" {
		t.Errorf("stored pod %s/%s (-want +got):\n%s", stored.Namespace, stored.Name, diff)
	}
	for name, sc := range want {
		if got := sidecarContext(stored, name); !cmp.Equal(got, sc) {
			t.Errorf("stored pod %s/%s: %s securityContext %s, want %s", stored.Namespace, stored.Name, name, toJSON(got), toJSON(sc))
		}
	}
}

// createPod creates a copy of pod in ns (a dry run if dryRun) and returns
// what the API server stored after admission.
func (c *cluster) createPod(t *testing.T, pod *corev1.Pod, ns string, dryRun bool) *corev1.Pod {
	t.Helper()
	p := pod.DeepCopy()
	p.Namespace = ns
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	stored, err := c.client.CoreV1().Pods(ns).Create(context.Background(), p, opts)
	if err != nil {
		t.Fatalf("create pod of %s in %s: %v", pod.GenerateName, ns, err)
	}
	if !dryRun {
		t.Cleanup(func() { c.remove(t, object("v1", "Pod", ns, stored.Name)) })
	}
	return stored
}

// checkRendered checks what KubeVirt rendered for the binding: one
// dsbridge sidecar with the plugin's name in its environment, and the
// binding CNI's NAD after each interface's own network with the VMI
// network name as cni-arg (pkg/network/multus/annotation.go).
func checkRendered(t *testing.T, pod *corev1.Pod, vm *kvv1.VirtualMachine, nad string) {
	t.Helper()
	var sidecars []string
	for _, ctr := range pod.Spec.Containers {
		if strings.HasPrefix(ctr.Name, "hook-sidecar-") {
			sidecars = append(sidecars, fmt.Sprintf("%s %s %s=%s", ctr.Name, ctr.Image, "NETWORK_BINDING_PLUGIN_NAME", envValue(ctr, "NETWORK_BINDING_PLUGIN_NAME")))
		}
	}
	if diff := cmp.Diff([]string{"hook-sidecar-0 ghcr.io/dsbridge/dsbridge:v0.1.0 NETWORK_BINDING_PLUGIN_NAME=dsbridge"}, sidecars); diff != "" {
		t.Errorf("sidecars (-want +got):\n%s", diff)
	}
	var want []nadv1.NetworkSelectionElement
	for _, n := range vm.Spec.Template.Spec.Networks {
		if n.Multus != nil {
			ns, name, _ := strings.Cut(n.Multus.NetworkName, "/")
			want = append(want, nadv1.NetworkSelectionElement{Name: name, Namespace: ns, InterfaceRequest: naming.HashedPodInterface(n.Name)})
		}
		want = append(want, nadv1.NetworkSelectionElement{Name: nad, Namespace: "default", CNIArgs: &map[string]any{"logicNetworkName": n.Name}})
	}
	var got []nadv1.NetworkSelectionElement
	if err := json.Unmarshal([]byte(pod.Annotations[nadv1.NetworkAttachmentAnnot]), &got); err != nil {
		t.Fatalf("annotation %s: %v", nadv1.NetworkAttachmentAnnot, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Multus networks (-want +got):\n%s", diff)
	}
}

// labelNamespace sets (or, with "", removes) a namespace's Pod Security
// enforce label, as `kubectl label namespace` does.
func (c *cluster) labelNamespace(t *testing.T, ns, level string) {
	t.Helper()
	value := "null"
	if level != "" {
		value = `"` + level + `"`
	}
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":` + value + `}}}`)
	if _, err := c.client.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// removeNonNamespaces removes objects except namespaces (which need the
// controller manager, absent here, to finish deleting).
func (c *cluster) removeNonNamespaces(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objs {
		if obj.GetKind() != "Namespace" {
			c.remove(t, obj)
		}
	}
}

func vmsOf(t *testing.T, objs []*unstructured.Unstructured) []*kvv1.VirtualMachine {
	t.Helper()
	var vms []*kvv1.VirtualMachine
	for _, obj := range objs {
		if obj.GetKind() == "VirtualMachine" {
			vm := &kvv1.VirtualMachine{}
			fromUnstructured(t, obj, vm)
			vms = append(vms, vm)
		}
	}
	if len(vms) != 2 {
		t.Fatalf("examples hold %d VMs, want 2", len(vms))
	}
	return vms
}

func vmNamed(t *testing.T, vms []*kvv1.VirtualMachine, name string) *kvv1.VirtualMachine {
	t.Helper()
	for _, vm := range vms {
		if vm.Name == name {
			return vm
		}
	}
	t.Fatalf("no example VM %s", name)
	return nil
}

func sidecarContext(pod *corev1.Pod, name string) *corev1.SecurityContext {
	for _, ctr := range pod.Spec.Containers {
		if ctr.Name == name {
			return ctr.SecurityContext
		}
	}
	return nil
}

func envValue(ctr corev1.Container, name string) string {
	for _, e := range ctr.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// manifestObject reads a one-document manifest.
func manifestObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &unstructured.Unstructured{Object: obj}
}

func toUnstructured(t *testing.T, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("kubevirt.io/v1")
	u.SetKind("VirtualMachine")
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
