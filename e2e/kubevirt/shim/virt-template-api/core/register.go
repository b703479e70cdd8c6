// Package api holds the resource names of kubevirt.io/virt-template-api
// v0.2.0 that KubeVirt's pkg/controller/virtinformers.go uses (values as
// published in that module's core/register.go); see ../../README.md.
package api

const (
	GroupName            = "template.kubevirt.io"
	SingularResourceName = "virtualmachinetemplate"
	PluralResourceName   = SingularResourceName + "s"
)
