package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/dsbridge/dsbridge/e2e/lab"
)

// kustomizeBuild renders a kustomization as `kubectl apply -k` does
// (k8s.io/cli-runtime/pkg/resource/kustomizevisitor.go: krusty with its
// default options, kustomize v5.7.1 as in kubectl 1.34).
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		fields, err := r.Map()
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: fields})
	}
	return objs
}

// resourceFor maps an object's kind to its resource with the server's
// discovery (fresh each time: CRDs come and go).
func (c *cluster) resourceFor(t *testing.T, obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.client.Discovery()))
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return dc.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return dc.Resource(m.Resource), nil
}

// apply stores an object as `kubectl apply --server-side` does, with
// unknown and duplicate fields refused (fieldValidation=Strict), and
// returns the stored object.
func (c *cluster) apply(t *testing.T, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	t.Helper()
	ri, err := c.resourceFor(t, obj)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	return ri.Patch(context.Background(), obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: "dsbridge-test", Force: ptr(true), FieldValidation: "Strict",
	})
}

// mustApplyAsWritten applies every object, each with no warning, and
// checks that the server stored every field as written.
func (c *cluster) mustApplyAsWritten(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	c.warnings.take()
	for _, obj := range objs {
		stored, err := c.apply(t, obj)
		if err != nil {
			t.Fatalf("apply %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		if w := c.warnings.take(); len(w) != 0 {
			t.Errorf("apply %s %s: warnings %q", obj.GetKind(), obj.GetName(), w)
		}
		if diff := missing(jsonValue(obj.Object), jsonValue(stored.Object), ""); len(diff) != 0 {
			t.Errorf("%s %s not stored as written: %v", obj.GetKind(), obj.GetName(), diff)
		}
	}
}

// patch patches an object as `kubectl patch --type <pt> --patch-file`
// does (YAML converted to JSON, fieldValidation=Strict) and returns it.
func (c *cluster) patch(t *testing.T, obj *unstructured.Unstructured, pt types.PatchType, patchFile string) (*unstructured.Unstructured, error) {
	t.Helper()
	y, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	body, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", patchFile, err)
	}
	ri, err := c.resourceFor(t, obj)
	if err != nil {
		return nil, err
	}
	return ri.Patch(context.Background(), obj.GetName(), pt, body, metav1.PatchOptions{FieldValidation: "Strict"})
}

// remove deletes objects, ignoring those already gone, and waits until
// they are (a CRD's own finalizer runs in the API server).
func (c *cluster) remove(t *testing.T, objs ...*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objs {
		ri, err := c.resourceFor(t, obj)
		if err != nil {
			continue // its kind is not served any more: nothing to delete
		}
		if err := ri.Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
			t.Fatalf("delete %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		lab.WaitFor(t, time.Minute, fmt.Sprintf("%s %s deleted", obj.GetKind(), obj.GetName()), func() bool {
			_, err := ri.Get(context.Background(), obj.GetName(), metav1.GetOptions{})
			return isNotFound(err)
		})
	}
}

// missing lists the fields of want that got differs in or lacks (paths
// like .spec.template.spec.containers[0].image); both are JSON values.
func missing(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, missing(w[k], g[k], path+"."+k)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{path}
		}
		var out []string
		for i := range w {
			out = append(out, missing(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: wrote %v, stored %v", path, want, got)}
		}
		return nil
	}
}

// jsonValue normalises a value through JSON (numbers become float64).
func jsonValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return v
	}
	return out
}

func object(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

func ptr[T any](v T) *T { return &v }

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
