// Package kernel is dsbridge's uplink program: two tc BPF programs on the
// pod's uplink that answer the VM's IPv6 router solicitations (RFC 4861
// §4.1) with the gateway's router advertisement (RFC 4861 §4.2, §6.2.6), and
// guard the uplink in both directions so that a sidecar without
// capabilities, serving DHCP from UDP sockets on the bridge, hears only the
// VM and is heard only by the VM.
//
// The binding CNI calls Attach during ADD, in the pod's network namespace,
// while the uplink still has its name and addresses; the programs stay in
// the kernel after the CNI exits, keep working when KubeVirt renames the
// uplink to <x>-nic, changes its MAC and enslaves it to the bridge, and are
// freed with the namespace. Detach removes them; Attached (the RS->RA
// responder) and Guarded (both programs) report them without a capability.
//
// What the programs do (bpf/responder.c has the details):
//
//   - Egress, the VM's frames (bridged from its tap): their source MAC is
//     the VM's, learned at run time (Config.VMMAC until the VM spoke; a
//     group, zero or the bridge's own source teaches nothing, and neither
//     does a frame from the uplink or the pod's stack). An RS becomes the
//     complete RA frame to that MAC, redirected to the uplink's
//     ingress, so the bridge delivers it to the VM alone; an NS for the
//     gateway's link-local address goes upstream and, at most once per
//     Config.Refresh, also brings the VM the RA, and so does an MLD
//     listener report (RFC 3810 §5.2, RFC 2710 §3), at most once a second
//     after the last RA (a Linux guest reports its groups again, but does
//     not solicit, when its carrier comes back); an ARP request for an
//     address in ServerIDNet gets the reply "at the bridge's MAC" on the
//     VM's port, so the guest can unicast a DHCPv4 Renew to the server
//     identifier. The VM's fe80::/64 source address and its port are
//     learned; everything else the VM sends passes untouched. The NA, the
//     DHCPv4 unicast and the ingress guard below use the learned MAC.
//   - Egress, the pod stack's frames after plumbing (source MAC = the
//     bridge's): IPv4 and ARP (the bridge has no IPv4 address: only the
//     sidecar's DHCPv4 socket sends IPv4 through it; its broadcast reply to a
//     client with an address also goes to the VM's port as the RFC 2131
//     §4.1 unicast to ciaddr), DHCPv6 server messages,
//     RAs, non-first IPv6 fragments, MLD reports naming ff02::1:2 and every
//     NS but a DAD probe stay in the pod. The NS for the VM's learned
//     link-local address is answered at once with the NA the VM would send,
//     into the pod (never towards the uplink), so the sidecar's DHCPv6 reply
//     leaves without waiting for the guest. KubeVirt's bridge keeps its own
//     behaviour: its DAD probe, RS, MLD reports for its own groups and NAs
//     for its own address pass.
//   - Ingress, frames from the cluster: DHCPv4 (to UDP 67) and DHCPv6 (to
//     UDP 547) client and relay messages, RS, IPv6 packets from the VM's
//     link-local address and NAs for it never reach the bridge's own stack;
//     the VM still gets its copy of a group-addressed one, and frames
//     unicast to the VM's MAC pass (the bridge gives them to the VM alone).
//
// The loader computes the RA with ra.Build and writes the frame, checksum
// included, into the programs' read-only data before loading them; nothing
// about the pod is compiled in. The object is built from bpf/responder.c by
// `make generate` with Debian bookworm's clang-16 and committed, so building
// dsbridge needs no clang. Linux 5.2 or later.
package kernel
