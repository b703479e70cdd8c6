// Package apiserver proves the manifests under deploy/ on real API
// servers: its test builds kube-apiserver from k8s.io/kubernetes at each
// supported release, starts it with etcd on 127.0.0.1, installs the CRDs
// KubeVirt's virt-operator generates, applies every tier as the README
// says, and follows the example VMs through KubeVirt's own admission and
// virt-launcher pod rendering into the server's admission chain. It is a
// package of its own because KubeVirt's pkg/hooks registers the same
// protobuf messages as dsbridge's hooks package, which the manifest
// decoding test in package deploy imports.
package apiserver
