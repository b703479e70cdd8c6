package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kvv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/dsbridge/dsbridge/hooks"
	"github.com/dsbridge/dsbridge/hooks/naming"
)

// pluginName is the binding name the sidecar serves by default (before
// KubeVirt 1.9 passes NETWORK_BINDING_PLUGIN_NAME) and the key under
// spec.configuration.network.binding.
const pluginName = "dsbridge"

// tiers and their expected registration.
var tiers = map[string]struct {
	attachment kvv1.DomainAttachmentType
	nad        string
	rootGate   bool
	plumbing   bool
}{
	"unprivileged": {kvv1.ManagedTap, "default/dsbridge-binding", false, false},
	"root-gate":    {kvv1.ManagedTap, "default/dsbridge-binding", true, false},
	"full":         {kvv1.ManagedTap, "default/dsbridge-binding", false, false},
	"legacy":       {kvv1.Tap, "default/dsbridge-binding-plumbing", false, true},
}

// kustomization is the part of a kustomize file this repository uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Target struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
		} `json:"target"`
		Patch string `json:"patch"`
	} `json:"patches"`
}

// jsonPatchOp is one operation of an RFC 6902 JSON patch (the files
// applied with kubectl patch --type json).
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// cniConfig mirrors the binding CNI's configuration fields
// (cmd/dsbridge-cni/config.go netConf); unknown fields fail as they do
// in the plugin.
type cniConfig struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	PodNetwork string `json:"podNetwork"`
	Plumbing   bool   `json:"plumbing"`
	TapOwner   *int   `json:"tapOwner"`
	TapQueues  int    `json:"tapQueues"`
	StateDir   string `json:"stateDir"`
}

// manifests decodes every YAML document under deploy/ strictly into its
// API type, keyed by "<file>#<index>".
func manifests(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range splitYAML(b) {
			obj, err := decodeStrict(doc)
			if err != nil {
				return fmt.Errorf("%s document %d: %w", path, i, err)
			}
			out[fmt.Sprintf("%s#%d", path, i)] = obj
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(s, "")
}

// decodeStrict picks the API type from apiVersion and kind (a list is a
// JSON patch) and decodes with unknown and duplicate fields as errors.
func decodeStrict(doc []byte) (any, error) {
	if strings.HasPrefix(strings.TrimSpace(stripComments(string(doc))), "- ") {
		var ops []jsonPatchOp
		if err := yaml.UnmarshalStrict(doc, &ops); err != nil {
			return nil, err
		}
		return ops, nil
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "kubevirt.io/v1 KubeVirt":
		obj = &kvv1.KubeVirt{}
	case "kubevirt.io/v1 VirtualMachine":
		obj = &kvv1.VirtualMachine{}
	case "k8s.cni.cncf.io/v1 NetworkAttachmentDefinition":
		obj = &nadv1.NetworkAttachmentDefinition{}
	case "apps/v1 DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	// k8s.io/api v0.34 has no v1 types for these; v1 (Kubernetes 1.36)
	// has the same fields as v1beta1. TestAPIServer applies both.
	case "admissionregistration.k8s.io/v1 MutatingAdmissionPolicy":
		obj = &admissionv1beta1.MutatingAdmissionPolicy{}
	case "admissionregistration.k8s.io/v1 MutatingAdmissionPolicyBinding":
		obj = &admissionv1beta1.MutatingAdmissionPolicyBinding{}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		obj = &kustomization{}
	default:
		return nil, fmt.Errorf("no API type known for %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

func only[T any](t *testing.T, all map[string]any, prefix string) map[string]T {
	t.Helper()
	out := map[string]T{}
	for k, v := range all {
		if o, ok := v.(T); ok && strings.HasPrefix(k, prefix) {
			out[k] = o
		}
	}
	return out
}

func one[T any](t *testing.T, all map[string]any, prefix string) T {
	t.Helper()
	m := only[T](t, all, prefix)
	if len(m) != 1 {
		var zero T
		t.Fatalf("want exactly one %T under %s, found %d", zero, prefix, len(m))
	}
	for _, v := range m {
		return v
	}
	panic("unreachable")
}

func TestManifestsDecodeStrictly(t *testing.T) {
	all := manifests(t)
	if len(all) < 15 {
		t.Errorf("decoded %d documents, want every manifest (at least 15)", len(all))
	}
	// The strict decoder itself: an unknown field must fail.
	bad := "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nspec:\n  configuration:\n    network:\n      binding:\n        dsbridge:\n          sidecarImages: x\n"
	if _, err := decodeStrict([]byte(bad)); err == nil || !strings.Contains(err.Error(), `unknown field "sidecarImages"`) {
		t.Errorf("decoding an unknown field: %v, want an unknown-field error", err)
	}
}

func TestKustomizationsListExistingFiles(t *testing.T) {
	for path, k := range only[*kustomization](t, manifests(t), "") {
		dir := filepath.Dir(strings.Split(path, "#")[0])
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %s: %v", path, r, err)
			}
		}
	}
}

// TestTiers: one KubeVirt patch per tier registering the dsbridge binding
// as the tier needs it, with a NetworkAttachmentDefinition that exists in
// what the tier's kustomization applies.
func TestTiers(t *testing.T) {
	all := manifests(t)
	ds := one[*appsv1.DaemonSet](t, all, "base/")
	cniImage := ds.Spec.Template.Spec.Containers[0].Image
	for tier, want := range tiers {
		t.Run(tier, func(t *testing.T) {
			kv := one[*kvv1.KubeVirt](t, all, "tiers/"+tier+"/")
			cfg := kv.Spec.Configuration
			if cfg.NetworkConfiguration == nil || len(cfg.NetworkConfiguration.Binding) != 1 {
				t.Fatalf("want exactly one binding, got %+v", cfg.NetworkConfiguration)
			}
			b, ok := cfg.NetworkConfiguration.Binding[pluginName]
			if !ok {
				t.Fatalf("no binding named %q", pluginName)
			}
			wantBinding := kvv1.InterfaceBindingPlugin{
				SidecarImage:                strings.Replace(cniImage, "/dsbridge-cni:", "/dsbridge:", 1),
				NetworkAttachmentDefinition: want.nad,
				DomainAttachmentType:        want.attachment,
				Migration:                   &kvv1.InterfaceBindingMigration{Method: kvv1.LinkRefresh},
			}
			if diff := cmp.Diff(wantBinding, b); diff != "" {
				t.Errorf("binding (-want +got):\n%s", diff)
			}
			if cfg.DeveloperConfiguration != nil {
				t.Errorf("the merge patch sets developerConfiguration %+v: it would replace the CR's feature gates", cfg.DeveloperConfiguration)
			}
			var gates []string
			for _, ops := range only[[]jsonPatchOp](t, all, "tiers/"+tier+"/") {
				gates = append(gates, appendedGates(t, ops)...)
			}
			if got := slices.Contains(gates, "Root"); got != want.rootGate {
				t.Errorf("Root feature gate = %v, want %v", got, want.rootGate)
			}
			if kv.Name != "kubevirt" || kv.Namespace != "kubevirt" {
				t.Errorf("patch targets %s/%s, want kubevirt/kubevirt", kv.Namespace, kv.Name)
			}
			nad := tierNAD(t, all, tier, want.nad)
			conf := nadConfig(t, nad)
			if conf.Plumbing != want.plumbing {
				t.Errorf("NAD %s plumbing = %v, want %v", want.nad, conf.Plumbing, want.plumbing)
			}
		})
	}
}

// appendedGates returns the gates a JSON patch appends to the KubeVirt
// CR's feature gates; it must only append (keeping the gates there).
func appendedGates(t *testing.T, ops []jsonPatchOp) []string {
	t.Helper()
	var gates []string
	for _, op := range ops {
		gate, ok := op.Value.(string)
		if op.Op != "add" || op.Path != "/spec/configuration/developerConfiguration/featureGates/-" || !ok {
			t.Errorf("JSON patch op %+v, want add of one gate to /spec/configuration/developerConfiguration/featureGates/-", op)
		}
		gates = append(gates, gate)
	}
	return gates
}

// TestFeatureGatePatches: the NetworkBindingPlugins gate patch appends
// exactly that gate.
func TestFeatureGatePatches(t *testing.T) {
	ops := one[[]jsonPatchOp](t, manifests(t), "feature-gates/network-binding-plugins-patch.yaml")
	if diff := cmp.Diff([]string{"NetworkBindingPlugins"}, appendedGates(t, ops)); diff != "" {
		t.Errorf("gates (-want +got):\n%s", diff)
	}
}

// tierNAD finds ref (namespace/name) among the NADs the tier applies:
// base and the tier's own directory.
func tierNAD(t *testing.T, all map[string]any, tier, ref string) *nadv1.NetworkAttachmentDefinition {
	t.Helper()
	for _, prefix := range []string{"base/", "tiers/" + tier + "/"} {
		for _, nad := range only[*nadv1.NetworkAttachmentDefinition](t, all, prefix) {
			if nad.Namespace+"/"+nad.Name == ref {
				return nad
			}
		}
	}
	t.Fatalf("NetworkAttachmentDefinition %s not applied by tier %s", ref, tier)
	return nil
}

// nadConfig decodes a binding NAD's CNI configuration as the plugin does
// and checks the fields every binding NAD shares.
func nadConfig(t *testing.T, nad *nadv1.NetworkAttachmentDefinition) cniConfig {
	t.Helper()
	var c cniConfig
	dec := json.NewDecoder(strings.NewReader(nad.Spec.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("NAD %s config: %v", nad.Name, err)
	}
	want := cniConfig{CNIVersion: "1.0.0", Name: nad.Name, Type: "dsbridge-cni", PodNetwork: "default",
		Plumbing: c.Plumbing, TapOwner: c.TapOwner, StateDir: "/var/lib/cni/dsbridge"}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("NAD %s config (-want +got):\n%s", nad.Name, diff)
	}
	return c
}

// TestCNIInstaller: the DaemonSet installs the binary under the name the
// NADs' "type" uses, where the Containerfile's installer target puts it.
func TestCNIInstaller(t *testing.T) {
	all := manifests(t)
	ds := one[*appsv1.DaemonSet](t, all, "base/")
	c := ds.Spec.Template.Spec.Containers[0]
	want := []string{"/dsbridge-cni", "install", "-dest", "/host/opt/cni/bin", "-name", "dsbridge-cni", "-wait"}
	if diff := cmp.Diff(want, c.Command); diff != "" {
		t.Errorf("installer command (-want +got):\n%s", diff)
	}
	if got := containerfileEntrypoint(t, "cni-installer"); got != `["/dsbridge-cni", "install", "-dest", "/host/opt/cni/bin", "-wait"]` {
		t.Errorf("cni-installer ENTRYPOINT = %s", got)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/opt/cni/bin" && mounts[v.Name] == "/host/opt/cni/bin" {
			return
		}
	}
	t.Error("no hostPath /opt/cni/bin mounted at /host/opt/cni/bin")
}

// TestSidecarImageAndSocket: KubeVirt runs the sidecar image with no
// command, so the image's entrypoint must be "dsbridge sidecar"; the
// socket is named after the plugin.
func TestSidecarImageAndSocket(t *testing.T) {
	if got := containerfileEntrypoint(t, "sidecar"); got != `["/dsbridge", "sidecar"]` {
		t.Errorf("sidecar ENTRYPOINT = %s, want [\"/dsbridge\", \"sidecar\"]", got)
	}
	// The sidecar's compiled-in name (package main, so read, not imported).
	src, err := os.ReadFile("../cmd/dsbridge/sidecar.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^const defaultPluginName = "([^"]*)"`).FindSubmatch(src)
	if m == nil || string(m[1]) != pluginName {
		t.Errorf("cmd/dsbridge defaultPluginName = %q, want %q", m, pluginName)
	}
	if got := hooks.SocketPath(hooks.DefaultHooksDir, pluginName); got != "/var/run/kubevirt-hooks/dsbridge.sock" {
		t.Errorf("socket = %s, want /var/run/kubevirt-hooks/dsbridge.sock", got)
	}
}

// containerfileEntrypoint returns the ENTRYPOINT of a Containerfile stage.
func containerfileEntrypoint(t *testing.T, stage string) string {
	t.Helper()
	b, err := os.ReadFile("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), " AS "+stage+"\n")
	if !ok {
		t.Fatalf("Containerfile has no stage %s", stage)
	}
	rest, _, _ = strings.Cut(rest, "\nFROM ")
	m := regexp.MustCompile(`(?m)^ENTRYPOINT (.*)$`).FindStringSubmatch(rest)
	if m == nil {
		t.Fatalf("stage %s has no ENTRYPOINT", stage)
	}
	return m[1]
}

// TestCapabilityPolicy: the full tier's policy selects virt-launcher pods
// in privileged namespaces with one JSONPatch mutation, and its v1beta1
// variant is the same policy (what it grants: apiserver.TestAPIServer).
func TestCapabilityPolicy(t *testing.T) {
	all := manifests(t)
	p := one[*admissionv1beta1.MutatingAdmissionPolicy](t, all, "tiers/full/")
	binding := one[*admissionv1beta1.MutatingAdmissionPolicyBinding](t, all, "tiers/full/")
	if binding.Spec.PolicyName != p.Name {
		t.Errorf("binding names policy %q, want %q", binding.Spec.PolicyName, p.Name)
	}
	if got := p.Spec.MatchConstraints.ObjectSelector.MatchLabels; !cmp.Equal(got, map[string]string{"kubevirt.io": "virt-launcher"}) {
		t.Errorf("object selector %v, want kubevirt.io=virt-launcher", got)
	}
	if got := p.Spec.MatchConstraints.NamespaceSelector.MatchLabels; !cmp.Equal(got, map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}) {
		t.Errorf("namespace selector %v, want pod-security.kubernetes.io/enforce=privileged", got)
	}
	if len(p.Spec.Mutations) != 1 || p.Spec.Mutations[0].PatchType != admissionv1beta1.PatchTypeJSONPatch {
		t.Errorf("want one JSONPatch mutation (ApplyConfiguration may not set an atomic list), got %+v", p.Spec.Mutations)
	}
	overlay := one[*kustomization](t, all, "tiers/full-v1beta1/")
	if diff := cmp.Diff([]string{"../full"}, overlay.Resources); diff != "" {
		t.Errorf("full-v1beta1 resources (-want +got):\n%s", diff)
	}
	for _, patch := range overlay.Patches {
		want := "- op: replace\n  path: /apiVersion\n  value: admissionregistration.k8s.io/v1beta1"
		if patch.Target.Group != "admissionregistration.k8s.io" || patch.Patch != want {
			t.Errorf("full-v1beta1 patch %+v: want only the apiVersion replaced", patch)
		}
	}
}

// TestExampleVMs: every interface uses the dsbridge binding, every network
// it names exists, and cloud-init asks for DHCPv4 and DHCPv6 on every NIC.
func TestExampleVMs(t *testing.T) {
	all := manifests(t)
	vms := only[*kvv1.VirtualMachine](t, all, "examples/")
	if len(vms) != 2 {
		t.Fatalf("want 2 example VMs, got %d", len(vms))
	}
	for path, vm := range vms {
		spec := vm.Spec.Template.Spec
		nets := map[string]kvv1.Network{}
		for _, n := range spec.Networks {
			nets[n.Name] = n
		}
		for _, iface := range spec.Domain.Devices.Interfaces {
			if iface.Binding == nil || iface.Binding.Name != pluginName {
				t.Errorf("%s: interface %s binding %+v, want {name: %s}", path, iface.Name, iface.Binding, pluginName)
			}
			if iface.Bridge != nil || iface.Masquerade != nil {
				t.Errorf("%s: interface %s also has a core binding", path, iface.Name)
			}
			if _, ok := nets[iface.Name]; !ok {
				t.Errorf("%s: interface %s has no network", path, iface.Name)
			}
		}
		networkData := ""
		for _, v := range spec.Volumes {
			if v.CloudInitNoCloud != nil {
				networkData = v.CloudInitNoCloud.NetworkData
			}
		}
		if got, want := strings.Count(networkData, "dhcp4: true"), len(spec.Domain.Devices.Interfaces); got != want {
			t.Errorf("%s: %d NICs ask for DHCPv4, want %d", path, got, want)
		}
		if got, want := strings.Count(networkData, "dhcp6: true"), len(spec.Domain.Devices.Interfaces); got != want {
			t.Errorf("%s: %d NICs ask for DHCPv6, want %d", path, got, want)
		}
	}
	// The Multus example's comment names the pod interface the CNI and the
	// sidecar compute.
	b, err := os.ReadFile("examples/vm-multus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := naming.HashedPodInterface("blue"); !bytes.Contains(b, []byte("= "+want)) {
		t.Errorf("examples/vm-multus.yaml does not name pod interface %s", want)
	}
}
