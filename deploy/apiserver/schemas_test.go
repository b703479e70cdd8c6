package apiserver

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// olderKubeVirt are the KubeVirt releases before v1.9.0 whose CRD schemas
// the tiers' KubeVirt patches (and the example VMs) are applied against:
// the tiers each release supports, whether it needs the
// NetworkBindingPlugins gate (GA in 1.5), and patches it must refuse.
var olderKubeVirt = []struct {
	version  string
	tiers    []string // tier directories whose kubevirt-patch.yaml applies
	nbpGate  bool
	examples bool
	refused  map[string]string // patch file -> error text
}{
	{version: "v1.1.1", refused: map[string]string{
		"../tiers/legacy/kubevirt-patch.yaml": `unknown field "spec.configuration.network.binding.dsbridge.migration"`,
	}},
	{version: "v1.2.2", tiers: []string{"legacy"}, nbpGate: true, examples: true},
	{version: "v1.3.0", tiers: []string{"legacy"}, nbpGate: true, examples: true},
	{version: "v1.4.0", tiers: []string{"unprivileged", "root-gate", "full", "legacy"}, nbpGate: true, examples: true},
	{version: "v1.5.0", tiers: []string{"unprivileged", "root-gate", "full", "legacy"}, examples: true},
}

// checkOlderKubeVirt installs each older release's KubeVirt CRDs and
// applies the patches and examples as the README says for that release:
// each is stored as written, with no warning.
func (c *cluster) checkOlderKubeVirt(t *testing.T) {
	for _, kv := range olderKubeVirt {
		t.Run("kubevirt-"+kv.version, func(t *testing.T) {
			c.installCRDs(t, withSchemasOf(t, kv.version, kubevirtCRDs(t))...)
			for _, tier := range kv.tiers {
				c.checkOlderTier(t, tier, kv.nbpGate)
			}
			for file, msg := range kv.refused {
				c.resetKubeVirt(t)
				_, err := c.patch(t, shippedKubeVirt(), types.MergePatchType, file)
				if err == nil || !strings.Contains(err.Error(), msg) {
					t.Errorf("%s on KubeVirt %s: %v, want an error containing %s", file, kv.version, err, msg)
				}
			}
			if kv.examples {
				examples := kustomizeBuild(t, "../examples")
				c.mustApplyAsWritten(t, examples)
				c.removeNonNamespaces(t, examples)
			}
		})
	}
}

// checkOlderTier applies a tier's KubeVirt patches (and the
// NetworkBindingPlugins gate where the release needs it) to a fresh CR.
func (c *cluster) checkOlderTier(t *testing.T, tier string, nbpGate bool) {
	t.Helper()
	tc := tierCase{kvPatch: "../tiers/" + tier + "/kubevirt-patch.yaml", gates: []string{"Sidecar"}}
	if tier == "root-gate" {
		tc.gatePatch = "../tiers/root-gate/feature-gate-patch.yaml"
		tc.gates = append(tc.gates, "Root")
	}
	c.resetKubeVirt(t)
	c.patchKubeVirt(t, tc)
	if !nbpGate {
		return
	}
	stored, err := c.patch(t, shippedKubeVirt(), types.JSONPatchType, "../feature-gates/network-binding-plugins-patch.yaml")
	if err != nil {
		t.Fatalf("%s: NetworkBindingPlugins gate patch: %v", tier, err)
	}
	gates, _, _ := unstructured.NestedStringSlice(stored.Object, "spec", "configuration", "developerConfiguration", "featureGates")
	if diff := cmp.Diff(append(tc.gates, "NetworkBindingPlugins"), gates); diff != "" {
		t.Errorf("%s: feature gates (-want +got):\n%s", tier, diff)
	}
}
