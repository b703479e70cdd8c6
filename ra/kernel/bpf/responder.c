// SPDX-License-Identifier: Apache-2.0
//
// responder.c is the dsbridge kernel RS->RA responder: a tc (cls_bpf,
// direct-action) program at egress of the pod's uplink, the bridge port that
// leads to the cluster.
//
// - A router solicitation (RFC 4861 §4.1) that the VM sent, bridged from its
//   tap and about to leave through the uplink, is replaced by the gateway's
//   router advertisement (RFC 4861 §4.2) and redirected to the uplink's
//   ingress: the bridge delivers it to the VM (Ethernet destination = VM MAC)
//   and the RS never leaves the pod.
// - A neighbour solicitation the VM sent for the gateway's link-local address
//   (its NUD of the default router, RFC 4861 §7.3) goes upstream unchanged,
//   and at most once per refresh_ns the VM also gets the advertisement, so
//   its default route is refreshed without a timer or a process.
// - Everything else, including what the pod's own stack sends (its skb never
//   arrived on another interface: ingress_ifindex 0), passes untouched.
//
// The loader writes the whole advertisement frame, checksum included, and the
// match keys into the read-only globals below before loading; the kernel
// freezes them, so the verifier sees them as constants. No interface name or
// index is compiled in: the uplink is skb->ifindex at run time.
//
// Needs Linux 5.2 (global data and frozen read-only maps); every helper used
// is older. Build: make generate (clang-16, see the Makefile).

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

// The prefix of struct __sk_buff (include/uapi/linux/bpf.h) up to the last
// field the program reads; the verifier checks context accesses by offset.
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
};

// Helpers, by their number in include/uapi/linux/bpf.h.
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len,
				   __u64 flags) = (void *)9;
static long (*bpf_clone_redirect)(struct __sk_buff *skb, __u32 ifindex, __u64 flags) = (void *)13;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, __u32 offset, void *to, __u32 len) = (void *)26;
static long (*bpf_skb_change_tail)(struct __sk_buff *skb, __u32 len, __u64 flags) = (void *)38;

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define BPF_F_RECOMPUTE_CSUM (1ULL << 0)
#define BPF_F_INVALIDATE_HASH (1ULL << 1)
#define BPF_F_INGRESS (1ULL << 0)

// Frame layout: Ethernet II, IPv6 without extension headers, ICMPv6.
enum {
	OFF_ETH_SRC = 6,
	OFF_ETH_TYPE = 12,
	OFF_IP6 = 14,
	OFF_IP6_NEXT = OFF_IP6 + 6,
	OFF_IP6_HOPS = OFF_IP6 + 7,
	OFF_ICMP6 = OFF_IP6 + 40,
	OFF_ICMP6_CODE = OFF_ICMP6 + 1,
	OFF_NS_TARGET = OFF_ICMP6 + 8, // RFC 4861 §4.3
	RS_LEN = OFF_ICMP6 + 8,        // RFC 4861 §4.1: the shortest RS frame
	MIN_FRAME = OFF_ICMP6 + 16,    // RFC 4861 §4.2: the shortest RA frame
	MAX_FRAME = 1296,              // 14 + 40 + 1240 (RA fits 1280), rounded to 8
};

#define IPPROTO_ICMPV6 58
#define ND_ROUTER_SOLICIT 133
#define ND_NEIGHBOR_SOLICIT 135
#define ND_HOP_LIMIT 255 // RFC 4861 §6.1.1, §7.1.1

// Set by the loader (ra/kernel/load.go, names must match).
volatile const __u8 vm_mac[6] = {};        // only frames from this source are served
volatile const __u8 gw_lla[16] = {};       // the NS target that triggers a refresh
volatile const __u64 refresh_ns = 0;       // least time between RAs on NS; 0: never
volatile const __u32 frame_len = 0;        // bytes of ra_frame in use
volatile const __u8 ra_frame[MAX_FRAME] = {}; // the whole RA frame, checksummed

// last_ra_ns is when the program last sent an advertisement.
__u64 last_ra_ns = 0;

// from_vm: b holds the first RS_LEN bytes of an ICMPv6 ND message, hop
// limit 255, code 0, that the VM sent.
INLINE int from_vm(const __u8 *b)
{
	if (b[OFF_ETH_TYPE] != 0x86 || b[OFF_ETH_TYPE + 1] != 0xdd)
		return 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 6; i++)
		if (b[OFF_ETH_SRC + i] != vm_mac[i])
			return 0;
	return (b[OFF_IP6] >> 4) == 6 && b[OFF_IP6_NEXT] == IPPROTO_ICMPV6 &&
	       b[OFF_IP6_HOPS] == ND_HOP_LIMIT && b[OFF_ICMP6_CODE] == 0;
}

// answer turns skb into the advertisement and sends it back into the
// uplink, so that the bridge forwards it to the VM.
INLINE int answer(struct __sk_buff *skb)
{
	__u32 len = frame_len;

	if (len < MIN_FRAME || len > MAX_FRAME)
		return TC_ACT_OK; // not configured: never happens after the loader
	last_ra_ns = bpf_ktime_get_ns();
	if (bpf_skb_change_tail(skb, len, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, (const void *)ra_frame, len,
				BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

// refresh answers the VM's NS for the gateway's link-local address, at most
// once per refresh_ns. The NS itself goes upstream as a clone sent before
// the rewrite; that clone passes through this program again and is let go
// because last_ra_ns was updated first.
INLINE int refresh(struct __sk_buff *skb)
{
	__u8 target[16];
	__u64 now, last;

	if (refresh_ns == 0)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, OFF_NS_TARGET, target, sizeof(target)) < 0)
		return TC_ACT_OK;
#pragma clang loop unroll(full)
	for (int i = 0; i < 16; i++)
		if (target[i] != gw_lla[i])
			return TC_ACT_OK;
	now = bpf_ktime_get_ns();
	last = last_ra_ns;
	if (last != 0 && now - last < refresh_ns)
		return TC_ACT_OK;
	last_ra_ns = now;
	if (bpf_clone_redirect(skb, skb->ifindex, 0) != 0)
		return TC_ACT_OK; // no copy went upstream: let the original go
	return answer(skb);
}

SEC("tc")
int dsbridge_ra(struct __sk_buff *skb)
{
	__u8 b[RS_LEN];

	// Only frames bridged from another port (the VM's tap); the pod's own
	// packets have no ingress interface.
	if (skb->ingress_ifindex == 0 || skb->ingress_ifindex == skb->ifindex)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, b, sizeof(b)) < 0)
		return TC_ACT_OK;
	if (!from_vm(b))
		return TC_ACT_OK;
	if (b[OFF_ICMP6] == ND_ROUTER_SOLICIT)
		return answer(skb);
	if (b[OFF_ICMP6] == ND_NEIGHBOR_SOLICIT)
		return refresh(skb);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Apache-2.0";
