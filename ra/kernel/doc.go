// Package kernel answers the VM's IPv6 router solicitations (RFC 4861 §4.1)
// with the gateway's router advertisement (RFC 4861 §4.2, §6.2.6) from a tc
// BPF program on the pod's uplink, so that a sidecar without capabilities
// still gives the guest its default router.
//
// The binding CNI calls Attach during ADD, in the pod's network namespace,
// while the uplink still has its name and addresses; the program stays in
// the kernel after the CNI exits, keeps working when KubeVirt renames the
// uplink to <x>-nic, changes its MAC and enslaves it to the bridge, and is
// freed with the namespace. Detach removes it; Attached reports it (no
// capability needed).
//
// What the program does (bpf/responder.c):
//
//   - An RS the VM sent (source MAC = VM MAC, hop limit 255, bridged from its
//     tap) about to leave through the uplink is overwritten with the complete
//     RA frame (gateway MAC, gateway link-local source, ff02::1 in a frame
//     addressed to the VM MAC) and redirected to the uplink's ingress: the
//     bridge delivers it to the VM alone, and the RS never leaves the pod.
//   - An NS the VM sent for the gateway's link-local address (RFC 4861 §7.3,
//     its NUD of the default router) goes upstream unchanged as a clone, and
//     the original becomes the RA, at most once per Config.Refresh: the
//     guest's default route is refreshed while the guest uses it, with no
//     timer. Only ICMPv6 triggers it.
//   - Everything else passes untouched, including the pod's own RS (its
//     packets arrived on no interface).
//
// The loader computes the RA with ra.Build and writes the frame, checksum
// included, into the program's read-only data before loading it; nothing
// about the pod is compiled in. The object is built from bpf/responder.c by
// `make generate` with Debian bookworm's clang-16 and committed, so building
// dsbridge needs no clang.
package kernel
