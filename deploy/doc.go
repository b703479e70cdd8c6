// Package deploy holds no code: it is the nested module whose test decodes
// every manifest under deploy/ strictly into the real KubeVirt, Kubernetes
// and NetworkAttachmentDefinition API types and checks that the manifests
// agree with the code (plugin name, socket, image entrypoint, CNI type,
// capabilities). A separate module keeps those API modules out of
// dsbridge's own dependency tree.
package deploy
