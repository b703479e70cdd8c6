package apiserver

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	extclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8sfield "k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	k8syaml "sigs.k8s.io/yaml"

	kvv1 "kubevirt.io/api/core/v1"
	"kubevirt.io/client-go/kubecli"
	"kubevirt.io/kubevirt/pkg/container-disk"
	"kubevirt.io/kubevirt/pkg/hooks"
	netadmitter "kubevirt.io/kubevirt/pkg/network/admitter"
	"kubevirt.io/kubevirt/pkg/network/netbinding"
	netannotations "kubevirt.io/kubevirt/pkg/network/pod/annotations"
	netresources "kubevirt.io/kubevirt/pkg/network/resources"
	storageannotations "kubevirt.io/kubevirt/pkg/storage/pod/annotations"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks/mutating-webhook/mutators"
	"kubevirt.io/kubevirt/pkg/virt-api/webhooks/validating-webhook/admitters"
	virtconfig "kubevirt.io/kubevirt/pkg/virt-config"
	"kubevirt.io/kubevirt/pkg/virt-controller/services"
	"kubevirt.io/kubevirt/pkg/virt-controller/watch/vm"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// kubevirtVersion is the KubeVirt release whose Go code renders the pods
// (the deploy module requires it).
const kubevirtVersion = "v1.9.0"

// kubevirtCRDs returns the CRDs the manifests use as KubeVirt v1.9.0's
// virt-operator generates them (pkg/virt-operator/resource/generate/
// components/crds.go).
func kubevirtCRDs(t *testing.T) []*extv1.CustomResourceDefinition {
	t.Helper()
	var crds []*extv1.CustomResourceDefinition
	for _, gen := range []func() (*extv1.CustomResourceDefinition, error){
		components.NewKubeVirtCrd, components.NewVirtualMachineCrd, components.NewVirtualMachineInstanceCrd,
	} {
		crd, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, crd)
	}
	return crds
}

// withSchemasOf gives the CRDs the schemas of an older KubeVirt release:
// virt-operator builds each CRD's schema from CRDsValidation in
// pkg/virt-operator/resource/generate/components/validations_generated.go,
// read here from that release's module (downloaded through the proxy).
func withSchemasOf(t *testing.T, version string, crds []*extv1.CustomResourceDefinition) []*extv1.CustomResourceDefinition {
	t.Helper()
	schemas := crdsValidation(t, version)
	var out []*extv1.CustomResourceDefinition
	for _, crd := range crds {
		crd = crd.DeepCopy()
		y, ok := schemas[crd.Spec.Names.Singular]
		if !ok {
			t.Fatalf("KubeVirt %s has no schema for %s", version, crd.Spec.Names.Singular)
		}
		var v extv1.CustomResourceValidation
		if err := k8syaml.UnmarshalStrict([]byte(y), &v); err != nil {
			t.Fatalf("KubeVirt %s schema of %s: %v", version, crd.Name, err)
		}
		for i := range crd.Spec.Versions {
			crd.Spec.Versions[i].Schema = v.DeepCopy()
		}
		out = append(out, crd)
	}
	return out
}

// crdsValidation reads the CRDsValidation map literal of a KubeVirt
// release's validations_generated.go.
func crdsValidation(t *testing.T, version string) map[string]string {
	t.Helper()
	path := filepath.Join(moduleDir(t, "kubevirt.io/kubevirt", version),
		"pkg/virt-operator/resource/generate/components/validations_generated.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		k, kok := kv.Key.(*ast.BasicLit)
		v, vok := kv.Value.(*ast.BasicLit)
		if kok && vok && k.Kind == token.STRING && v.Kind == token.STRING {
			key, err1 := strconv.Unquote(k.Value)
			val, err2 := strconv.Unquote(v.Value)
			if err1 == nil && err2 == nil {
				out[key] = val
			}
		}
		return false
	})
	if len(out) == 0 {
		t.Fatalf("%s: no CRDsValidation entries", path)
	}
	return out
}

// moduleDir downloads a module version through the proxy (or finds it in
// the module cache) and returns its directory.
func moduleDir(t *testing.T, path, version string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", path+"@"+version).Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v", path, version, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s", path, version, err, m.Error)
	}
	return m.Dir
}

// nadCRD is the NetworkAttachmentDefinition CRD as the Network Plumbing
// WG's client module ships it (artifacts/networks-crd.yaml; Multus
// installs the same).
func nadCRD(t *testing.T) *extv1.CustomResourceDefinition {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/k8snetworkplumbingwg/network-attachment-definition-client").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "artifacts/networks-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &extv1.CustomResourceDefinition{}
	if err := k8syaml.UnmarshalStrict(b, crd); err != nil {
		t.Fatal(err)
	}
	return crd
}

// installCRDs creates CRDs (deleting earlier ones of the same name) and
// waits until they are established and served.
func (c *cluster) installCRDs(t *testing.T, crds ...*extv1.CustomResourceDefinition) {
	t.Helper()
	cs, err := extclient.NewForConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	api := cs.ApiextensionsV1().CustomResourceDefinitions()
	ctx := context.Background()
	for _, crd := range crds {
		c.remove(t, object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", crd.Name))
		if _, err := api.Create(ctx, crd, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		lab.WaitFor(t, time.Minute, "CRD "+crd.Name+" established", func() bool {
			got, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == extv1.Established && cond.Status == extv1.ConditionTrue {
					return true
				}
			}
			return false
		})
		gv := crd.Spec.Group + "/" + crd.Spec.Versions[0].Name
		lab.WaitFor(t, time.Minute, "discovery of "+gv, func() bool {
			_, err := c.client.Discovery().ServerResourcesForGroupVersion(gv)
			return err == nil
		})
	}
}

// shippedKubeVirt is the KubeVirt CR as KubeVirt's release manifest
// kubevirt-cr.yaml spells the part the tiers touch (a featureGates list,
// tools/resource-generator), with one gate an operator had already enabled.
func shippedKubeVirt() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "KubeVirt",
		"metadata":   map[string]any{"name": "kubevirt", "namespace": "kubevirt"},
		"spec": map[string]any{
			"imagePullPolicy": "IfNotPresent",
			"configuration": map[string]any{
				"developerConfiguration": map[string]any{"featureGates": []any{"Sidecar"}},
			},
		},
	}}
}

// resetKubeVirt replaces the KubeVirt CR with the shipped one and marks it
// deployed, as virt-operator would (ClusterConfig reads only a CR with a
// phase, pkg/virt-config/configuration.go).
func (c *cluster) resetKubeVirt(t *testing.T) {
	t.Helper()
	kv := shippedKubeVirt()
	c.remove(t, kv)
	c.mustApplyAsWritten(t, []*unstructured.Unstructured{kv})
	ri, err := c.resourceFor(t, kv)
	if err != nil {
		t.Fatal(err)
	}
	status := []byte(`{"status":{"phase":"Deployed","defaultArchitecture":"amd64"}}`)
	if _, err := ri.Patch(context.Background(), "kubevirt", "application/merge-patch+json", status, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}

// kubevirt is KubeVirt v1.9.0's own code, configured from the KubeVirt CR
// stored in the API server: virt-api's VM and VMI mutation and validation
// and virt-controller's virt-launcher pod rendering, set up as
// pkg/virt-api/api.go and pkg/virt-controller/watch/application.go set
// them up.
type kubevirt struct {
	config    *virtconfig.ClusterConfig
	client    kubecli.KubevirtClient
	templates *services.TemplateService
}

// newKubeVirt reads the KubeVirt CR and builds KubeVirt's components.
func (c *cluster) newKubeVirt(t *testing.T) *kubevirt {
	t.Helper()
	client, err := kubecli.GetKubevirtClientFromRESTConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := client.KubeVirt("kubevirt").Get(context.Background(), "kubevirt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kvInformer := emptyInformer(&kvv1.KubeVirt{})
	if err := kvInformer.GetStore().Add(kv); err != nil {
		t.Fatal(err)
	}
	config, err := virtconfig.NewClusterConfig(emptyInformer(&extv1.CustomResourceDefinition{}), kvInformer, "kubevirt")
	if err != nil {
		t.Fatal(err)
	}
	// pkg/virt-controller/watch/application.go's defaults.
	const ephemeralDiskDir = "/var/run/kubevirt-ephemeral-disks"
	containerdisk.SetLocalDirectoryOnly(filepath.Join(ephemeralDiskDir, "container-disk-data"))
	netAnnotations := netannotations.NewGenerator(config)
	templates := services.NewTemplateService("quay.io/kubevirt/virt-launcher:"+kubevirtVersion,
		240, "/var/run/kubevirt", ephemeralDiskDir, "/var/run/kubevirt/container-disks", kvv1.HotplugDiskDir,
		"", cache.NewStore(cache.MetaNamespaceKeyFunc), client, config, 107, "quay.io/kubevirt/virt-exportserver:"+kubevirtVersion,
		cache.NewStore(cache.MetaNamespaceKeyFunc), cache.NewStore(cache.MetaNamespaceKeyFunc),
		services.WithSidecarCreator(func(vmi *kvv1.VirtualMachineInstance, _ *kvv1.KubeVirtConfiguration) (hooks.HookSidecarList, error) {
			return hooks.UnmarshalHookSidecarList(vmi)
		}),
		services.WithSidecarCreator(netbinding.NetBindingPluginSidecarList),
		services.WithNetMemoryCalculator(netresources.MemoryCalculator{}),
		services.WithAnnotationsGenerators(netAnnotations, storageannotations.Generator{}),
		services.WithNetTargetAnnotationsGenerator(netAnnotations),
	)
	return &kubevirt{config: config, client: client, templates: templates}
}

func emptyInformer(obj runtime.Object) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(&cache.ListWatch{}, obj, 0, cache.Indexers{})
}

// admitVM runs virt-api's VM mutation and validation on a VM as the API
// server would send it, and returns the mutated VM.
func (k *kubevirt) admitVM(t *testing.T, vm *kvv1.VirtualMachine) *kvv1.VirtualMachine {
	t.Helper()
	gvr := webhooks.VirtualMachineGroupVersionResource
	resp := mutators.NewVMsMutator(k.config, k.client).Mutate(review(t, gvr, vm))
	mutated := &kvv1.VirtualMachine{}
	applyResponse(t, resp, vm, mutated)
	informers := &webhooks.Informers{
		DataSourceInformer: emptyInformer(&corev1.Namespace{}), NamespaceInformer: emptyInformer(&corev1.Namespace{}),
	}
	resp = admitters.NewVMsAdmitter(k.config, k.client, informers, nil).Admit(context.Background(), review(t, gvr, mutated))
	if !resp.Allowed {
		t.Fatalf("KubeVirt refuses VM %s: %v", vm.Name, resp.Result)
	}
	return mutated
}

// admitVMI runs virt-api's VMI mutation and validation (with the network
// validator virt-api registers) and returns the mutated VMI.
func (k *kubevirt) admitVMI(t *testing.T, vmi *kvv1.VirtualMachineInstance) *kvv1.VirtualMachineInstance {
	t.Helper()
	gvr := webhooks.VirtualMachineInstanceGroupVersionResource
	mutator := &mutators.VMIsMutator{ClusterConfig: k.config, VMIPresetInformer: emptyInformer(&kvv1.VirtualMachineInstancePreset{})}
	mutated := &kvv1.VirtualMachineInstance{}
	applyResponse(t, mutator.Mutate(review(t, gvr, vmi)), vmi, mutated)
	// pkg/virt-api/api.go registerValidatingWebhooks.
	network := func(field *k8sfield.Path, spec *kvv1.VirtualMachineInstanceSpec, config *virtconfig.ClusterConfig) []metav1.StatusCause {
		return netadmitter.Validate(field, spec, config)
	}
	admitter := &admitters.VMICreateAdmitter{ClusterConfig: k.config, SpecValidators: []admitters.SpecValidator{network}}
	if resp := admitter.Admit(context.Background(), review(t, gvr, mutated)); !resp.Allowed {
		t.Fatalf("KubeVirt refuses VMI %s: %v", vmi.Name, resp.Result)
	}
	return mutated
}

// review wraps an object in a CREATE AdmissionReview from the test's user.
func review(t *testing.T, gvr metav1.GroupVersionResource, obj any) *admissionv1.AdmissionReview {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID: "test", Resource: gvr, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw}, UserInfo: authv1.UserInfo{Username: "admin"},
	}}
}

// applyResponse applies a mutating admission response's JSON patch to in
// and decodes the result into out.
func applyResponse(t *testing.T, resp *admissionv1.AdmissionResponse, in, out any) {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("KubeVirt's mutation refuses: %v", resp.Result)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Patch) != 0 {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = p.Apply(raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
}

// launcherPod follows a stored VM through KubeVirt to the virt-launcher
// pod virt-controller would create: the VMI from the VM
// (pkg/virt-controller/watch/vm/vm.go SetupVMIFromVM), virt-api's VMI
// admission, the VMI stored in the API server, and the rendered pod.
func (k *kubevirt) launcherPod(t *testing.T, c *cluster, vmObj *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	stored := &kvv1.VirtualMachine{}
	fromUnstructured(t, vmObj, stored)
	vmi := k.admitVMI(t, vm.SetupVMIFromVM(stored))
	created, err := k.client.VirtualMachineInstance(vmi.Namespace).Create(context.Background(), vmi, metav1.CreateOptions{FieldValidation: "Strict"})
	if err != nil {
		t.Fatalf("store VMI %s: %v", vmi.Name, err)
	}
	t.Cleanup(func() { c.removeVMI(t, created) })
	pod, err := k.templates.RenderLaunchManifest(created)
	if err != nil {
		t.Fatalf("render the virt-launcher pod of %s: %v", vmi.Name, err)
	}
	pod.Namespace = created.Namespace // virt-controller creates it there
	return pod
}

// removeVMI deletes a VMI; with no virt-controller to run its finalizer,
// the test drops it first.
func (c *cluster) removeVMI(t *testing.T, vmi *kvv1.VirtualMachineInstance) {
	t.Helper()
	obj := object("kubevirt.io/v1", "VirtualMachineInstance", vmi.Namespace, vmi.Name)
	ri, err := c.resourceFor(t, obj)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	if _, err := ri.Patch(context.Background(), vmi.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil && !isNotFound(err) {
		t.Fatalf("drop finalizers of VMI %s: %v", vmi.Name, err)
	}
	c.remove(t, obj)
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}
