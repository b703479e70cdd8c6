// Package deploy holds no code: it is the nested module whose test decodes
// every manifest under deploy/ strictly into the real KubeVirt, Kubernetes
// and NetworkAttachmentDefinition API types and checks that the manifests
// agree with the code (plugin name, socket, image entrypoint, CNI type,
// capabilities). Package deploy/apiserver proves the same manifests on
// real kube-apiservers. A separate module keeps those API modules, and
// KubeVirt's and Kubernetes' own code, out of dsbridge's dependency tree.
package deploy
