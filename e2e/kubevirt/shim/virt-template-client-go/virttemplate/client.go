// Package virttemplate declares the client constructor KubeVirt's
// pkg/controller/virtinformers.go calls. It has no client: NewForConfig
// always fails, so nothing can use it by accident; see ../../README.md.
package virttemplate

import (
	"errors"

	"k8s.io/client-go/rest"
)

// ErrUnavailable is what NewForConfig returns.
var ErrUnavailable = errors.New("kubevirt.io/virt-template-client-go is a build shim in this module: no client")

// Clientset is the constructor's result type.
type Clientset struct{}

// TemplateV1beta1Client is the group client's type.
type TemplateV1beta1Client struct{}

// NewForConfig always fails.
func NewForConfig(*rest.Config) (*Clientset, error) { return nil, ErrUnavailable }

// TemplateV1beta1 returns the group client.
func (*Clientset) TemplateV1beta1() *TemplateV1beta1Client { return &TemplateV1beta1Client{} }

// RESTClient returns no client.
func (*TemplateV1beta1Client) RESTClient() rest.Interface { return nil }
