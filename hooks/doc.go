// Package hooks is dsbridge's side of KubeVirt's hook sidecar protocol: the
// wire-compatible Info and Callbacks gRPC services on a unix socket
// (KUBEVIRT.md §1, §2), and the OnDefineDomain edit that upserts one
// <interface type='ethernet'> per VMI interface bound to the plugin
// (KUBEVIRT.md §3.5-§3.7), spliced into the domain XML so that every other
// byte survives.
package hooks
