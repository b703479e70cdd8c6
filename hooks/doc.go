// Package hooks is dsbridge's side of KubeVirt's hook sidecar protocol: the
// wire-compatible Info and Callbacks gRPC services on a unix socket
// (KubeVirt pkg/hooks: info/api_info.proto, v1alpha3/api_v1alpha3.proto,
// manager.go), and the OnDefineDomain edit that upserts one
// <interface type='ethernet'> per VMI interface bound to the plugin, as
// KubeVirt's converter writes one for managedTap
// (pkg/virt-launcher/virtwrap/converter/network), spliced into the domain
// XML so that every other
// byte survives.
package hooks
