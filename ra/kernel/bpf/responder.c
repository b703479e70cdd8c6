// SPDX-License-Identifier: Apache-2.0
//
// responder.c is dsbridge's uplink program: two tc (cls_bpf, direct-action)
// programs on the pod's uplink, the bridge port that leads to the cluster.
// The binding CNI attaches them while the uplink is still the pod's eth0;
// they keep working after KubeVirt renames it <x>-nic, gives it the bridge's
// MAC and enslaves it to bridge k6t-<x> (managedTap). After that the pod's
// own stack (where the sidecar's UDP sockets live) reaches the cluster only
// through this port, and the VM's tap is the bridge's other port.
//
// dsbridge_egress, at clsact egress (frames leaving for the cluster):
//
//   - A router solicitation (RFC 4861 §4.1) the VM sent is replaced by the
//     gateway's router advertisement (RFC 4861 §4.2) and redirected to the
//     uplink's ingress: the bridge delivers it to the VM (Ethernet
//     destination = VM MAC) and the RS never leaves the pod. An NS the VM
//     sent for the gateway's link-local address goes upstream as a clone
//     and, at most once per refresh_ns, the VM also gets the RA.
//   - An MLD listener report the VM sent (RFC 2710 §3 type 131, RFC 3810
//     §5.2 type 143, behind the Hop-by-Hop header with the Router Alert
//     option that RFC 3810 §5 and RFC 2711 §2.1 require) also brings the VM
//     the RA, at most once per MLD_RA_GAP_NS after the last RA, while the
//     report itself goes upstream as a clone, as the NS does. A Linux guest
//     whose interface was up before does not solicit when its carrier
//     comes back (KubeVirt's link flap after a migration), it only reports
//     its groups again (net/ipv6/addrconf.c, addrconf_notify, NETDEV_CHANGE:
//     ipv6_mc_up); this RA is how it meets the target pod's router.
//   - The VM's MAC, its IPv6 link-local source (fe80::/64, RFC 4291
//     §2.5.6), its port (the tap's ifindex) and, from the pod stack's frames,
//     the bridge's MAC are learned. A frame the bridge forwarded from another
//     port (skb->ingress_ifindex neither 0, the pod's own stack, nor the
//     uplink) comes from the VM's tap, the bridge's only other port: its
//     source MAC, unless a group address, zero or the bridge's own, becomes
//     the VM's MAC (KubeVirt keeps the VM's MAC across a migration, while
//     the target pod's interface, whose MAC the loader configured, has a new
//     one). Until the VM spoke, the configured vm_mac stands. Frames from
//     the uplink reach only dsbridge_ingress, which never learns: a
//     neighbour cannot set the VM's MAC.
//   - An ARP request (RFC 826) the VM sent for an address in the server
//     identifier net (sid_net/sid_mask, 169.254.75.0/24) becomes the reply
//     "<address> is at <bridge MAC>" sent straight to the VM's port: the
//     guest reaches the sidecar's DHCPv4 socket for a unicast Renew.
//   - What the pod's own stack sends after plumbing (Ethernet source is not
//     the VM's MAC: the pod stack sends with the bridge's) never leaves when
//     dsbridge caused it: IPv4 and ARP (the bridge has no IPv4 address: only
//     the sidecar's DHCPv4 socket sends IPv4 through it; a broadcast reply
//     to a client with an address becomes its unicast to the VM's port,
//     RFC 2131 §4.1), DHCPv6 server
//     messages (UDP source port 547), RAs, non-first IPv6 fragments, MLD
//     reports naming All_DHCP_Relay_Agents_and_Servers (the sidecar's join),
//     and every NS but a DAD probe. An NS for the VM's learned link-local
//     address is answered at once with the NA the VM would send (RFC 4861
//     §7.2.4), redirected into the pod: the sidecar's DHCPv6 reply leaves
//     without waiting for the guest, which may still be in DAD.
//   - Everything else passes untouched: the VM's traffic, and the pod stack's
//     frames KubeVirt's bridge causes (its DAD probe, RS and MLD reports for
//     its own groups, NAs for its own address).
//
// dsbridge_ingress, at clsact ingress (frames from the cluster): a frame the
// pod stack must not see never reaches the bridge. A DHCPv4 client or relay
// message (UDP destination port 67), a DHCPv6 client or relay message (UDP
// destination port 547), an RS, any IPv6 packet from the VM's link-local
// address and an NA for it (which would repoint the pod's neighbour entry
// for the VM), or a frame the program cannot classify. Unicast to the VM's
// MAC still passes (the bridge gives it to the VM alone, and the pod's IP
// layer drops PACKET_OTHERHOST); a multicast or broadcast one goes to the
// VM's port as a clone, so the VM receives what it received without the
// program. Frames the egress program injected (skb->mark = OWN_MARK) pass.
//
// The loader writes the RA frame, checksum included, and the match keys into
// the read-only globals below before loading; the kernel freezes them, so
// the verifier sees them as constants. No interface name or index is
// compiled in.
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
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 size) = (void *)10;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) = (void *)11;
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
#define BPF_F_PSEUDO_HDR (1ULL << 4)
#define BPF_F_MARK_MANGLED_0 (1ULL << 5)

// OWN_MARK marks the frames the egress program injects into the uplink's
// ingress, so that the ingress program lets them pass. A frame from the
// cluster arrives with mark 0 (the veth crossing into the pod's namespace
// scrubs it).
#define OWN_MARK 0xd5b0d5b0

// Frame layout: Ethernet II; IPv6 and ICMPv6 at fixed offsets when there is
// no extension header.
enum {
	OFF_ETH_SRC = 6,
	OFF_ETH_TYPE = 12,
	ETH_LEN = 14,
	OFF_IP6 = ETH_LEN,
	OFF_IP6_NEXT = OFF_IP6 + 6,
	OFF_IP6_HOPS = OFF_IP6 + 7,
	OFF_IP6_SRC = OFF_IP6 + 8,
	OFF_IP6_DST = OFF_IP6 + 24,
	IP6_LEN = 40,
	OFF_ICMP6 = OFF_IP6 + IP6_LEN,
	OFF_ICMP6_CODE = OFF_ICMP6 + 1,
	OFF_NS_TARGET = OFF_ICMP6 + 8, // RFC 4861 §4.3
	HBH_LEN = 8,                   // RFC 8200 §4.3: a Hop-by-Hop header's 8-octet unit
	RS_LEN = OFF_ICMP6 + 8,        // RFC 4861 §4.1: the shortest RS frame
	NS_LEN = OFF_ICMP6 + 24,       // RFC 4861 §4.3: the shortest NS frame
	NA_LEN = OFF_ICMP6 + 32,       // RFC 4861 §4.4 with a target link-layer address option
	ARP_LEN = ETH_LEN + 28,        // RFC 826 for Ethernet and IPv4
	OFF_IP4_CSUM = ETH_LEN + 10,   // RFC 791, without options
	OFF_IP4_DST = ETH_LEN + 16,
	OFF_UDP4 = ETH_LEN + 20,
	OFF_BOOTP = OFF_UDP4 + 8,      // RFC 2131 §2, figure 1
	OFF_CIADDR = OFF_BOOTP + 12,
	OFF_CHADDR = OFF_BOOTP + 28,
	BOOTP_HEAD = OFF_CHADDR + 6,   // the frame up to chaddr's sixth byte
	MIN_FRAME = OFF_ICMP6 + 16,    // RFC 4861 §4.2: the shortest RA frame
	MAX_FRAME = 1296,              // 14 + 40 + 1240 (RA fits 1280), rounded to 8
};

#define ETH_P_IPV4 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86dd
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define DHCP4_SERVER_PORT 67  // RFC 2131 §4.1
#define DHCP4_CLIENT_PORT 68  // RFC 2131 §4.1
#define DHCP6_SERVER_PORT 547 // RFC 8415 §7.2
#define ND_ROUTER_SOLICIT 133
#define ND_ROUTER_ADVERT 134
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define MLD_REPORT 131   // RFC 2710 §3
#define MLD_DONE 132     // RFC 2710 §3
#define MLD2_REPORT 143  // RFC 3810 §5.2
#define ND_HOP_LIMIT 255 // RFC 4861 §6.1.1, §7.1.1
#define MLD_HOP_LIMIT 1  // RFC 2710 §3, RFC 3810 §5
#define IPPROTO_HOPOPTS 0
#define IP6OPT_ROUTER_ALERT 5 // RFC 2711 §2.1: type 5, length 2, value 0 (MLD)

// MLD_RA_GAP_NS is the least time between the last RA and one an MLD report
// brings: a guest's burst of reports after its link came up yields one RA.
#define MLD_RA_GAP_NS 1000000000ULL

// MAX_HBH_UNITS bounds the Hop-by-Hop header in front of an MLD report: its
// Hdr Ext Len (RFC 8200 §4.3), 8-octet units beyond the first. Stacks send 0
// (Router Alert and a PadN).
#define MAX_HBH_UNITS 3

// Bounds of the parsers: VLAN tags in the frame data (a first tag is in
// skb->vlan_tci already at ingress), IPv6 extension headers, MLDv2 records.
#define MAX_TAGS 2
#define MAX_EXT 6
#define MAX_MLD_RECORDS 8

// Set by the loader (ra/kernel/load.go, names must match).
volatile const __u8 vm_mac[6] = {};        // the pod's MAC at ADD: the VM's until it spoke
volatile const __u8 gw_lla[16] = {};       // the NS target that triggers a refresh
volatile const __u64 refresh_ns = 0;       // least time between RAs on NS; 0: never
volatile const __u32 frame_len = 0;        // bytes of ra_frame in use; 0: no RA responder
volatile const __u8 ra_frame[MAX_FRAME] = {}; // the whole RA frame, checksummed
volatile const __u32 sid_net = 0;          // server identifier net, network byte order
volatile const __u32 sid_mask = 0;         // its mask, network byte order; 0: no ARP answers

// Learned at run time. Each is one aligned store, so another CPU never reads
// half of an update.
__u64 last_ra_ns = 0; // when the program last sent an advertisement
__u64 vm_lla_iid = 0; // interface identifier of the VM's fe80::/64 source; 0: none yet
__u64 pod_mac = 0;    // the bridge's MAC (mac_of), from the pod stack's frames; 0: none yet
__u64 vm_seen = 0;    // the VM's MAC (mac_of), from its forwarded frames; 0: vm_mac stands
__u32 vm_port = 0;    // ifindex of the VM's port (its tap); 0: none yet

// A MAC as the programs keep it: bits 0-47 the address (first byte
// highest), bit 63 set, so that 0 means none.
#define MAC_SET (1ULL << 63)
#define MAC_GROUP (1ULL << 40) // the I/G bit of the first byte (IEEE 802 §8.2)

// ll_prefix is fe80::/64 as the first eight address bytes.
static const __u8 ll_prefix[8] = {0xfe, 0x80};

INLINE int eq(const volatile __u8 *a, const __u8 *b, int n)
{
#pragma clang loop unroll(full)
	for (int i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

INLINE __u16 be16(const __u8 *b) { return (__u16)b[0] << 8 | b[1]; }

// iid_of returns the interface identifier of a, an IPv6 address in fe80::/64,
// as the eight bytes in memory order; 0 when a is not in fe80::/64.
INLINE __u64 iid_of(const __u8 *a)
{
	__u64 iid;

	if (!eq((const volatile __u8 *)ll_prefix, a, 8))
		return 0;
	__builtin_memcpy(&iid, a + 8, 8);
	return iid;
}

// mac_of returns the MAC at p with MAC_SET.
INLINE __u64 mac_of(const volatile __u8 *p)
{
	__u64 m = MAC_SET;

#pragma clang loop unroll(full)
	for (int i = 0; i < 6; i++)
		m |= (__u64)p[i] << (40 - 8 * i);
	return m;
}

// mac_byte is byte i of m, a MAC from mac_of.
INLINE __u8 mac_byte(__u64 m, int i) { return m >> (40 - 8 * i); }

// vm_now is the VM's MAC: the one learned from its frames, else vm_mac.
INLINE __u64 vm_now(void)
{
	__u64 m = vm_seen;

	return m != 0 ? m : mac_of(vm_mac);
}

// is_vm_lla reports whether a is the VM's learned link-local address.
INLINE int is_vm_lla(const __u8 *a)
{
	__u64 iid = iid_of(a), vm = vm_lla_iid;

	return vm != 0 && iid == vm;
}

// --- Parsing ---------------------------------------------------------------

// l4 is where a packet's upper-layer header starts (RFC 8200 §4).
struct l4 {
	__u32 off;   // offset of the upper-layer header
	__u8 proto;  // its protocol number
	__u8 later;  // a non-first fragment: no upper-layer header
};

// ip6_l4 walks the IPv6 extension headers from the IPv6 header at l3: at
// most MAX_EXT of them. It returns -1 on a truncated chain or a longer one.
INLINE int ip6_l4(const struct __sk_buff *skb, __u32 l3, struct l4 *out)
{
	__u8 h[4];
	__u8 next;
	__u32 off = l3 + IP6_LEN;

	if (bpf_skb_load_bytes(skb, l3 + 6, &next, 1) < 0)
		return -1;
#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_EXT; i++) {
		if (next != 0 && next != 43 && next != 44 && next != 60) {
			out->off = off;
			out->proto = next;
			out->later = 0;
			return 0;
		}
		if (bpf_skb_load_bytes(skb, off, h, 4) < 0)
			return -1;
		if (next == 44) { // Fragment (RFC 8200 §4.5): fixed 8 bytes
			if ((be16(h + 2) & 0xfff8) != 0) {
				out->off = off;
				out->proto = h[0];
				out->later = 1;
				return 0;
			}
			off += 8;
		} else { // Hop-by-Hop, Routing, Destination Options: 8 + 8 * len
			off += 8 + 8 * (__u32)h[1];
		}
		next = h[0];
	}
	return -1;
}

// ip4_l4 finds the upper-layer header of the IPv4 packet at l3. It returns
// -1 unless the frame holds an IPv4 header.
INLINE int ip4_l4(const struct __sk_buff *skb, __u32 l3, struct l4 *out)
{
	__u8 h[10];
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, l3, h, sizeof(h)) < 0 || h[0] >> 4 != 4)
		return -1;
	ihl = (h[0] & 0xf) * 4;
	if (ihl < 20)
		return -1;
	out->off = l3 + ihl;
	out->proto = h[9];
	out->later = (be16(h + 6) & 0x1fff) != 0; // RFC 791: fragment offset
	return 0;
}

// udp_port loads the UDP source (which 0) or destination (1) port at off.
INLINE int udp_port(const struct __sk_buff *skb, __u32 off, int which)
{
	__u8 p[2];

	if (bpf_skb_load_bytes(skb, off + 2 * which, p, 2) < 0)
		return -1;
	return be16(p);
}

// --- Egress: the VM's frames -------------------------------------------------

// answer turns skb into the advertisement to eth's source (the VM's MAC)
// and sends it back into the uplink, so that the bridge forwards it to the
// VM.
INLINE int answer(struct __sk_buff *skb, const __u8 *eth)
{
	__u32 len = frame_len;

	if (len < MIN_FRAME || len > MAX_FRAME)
		return TC_ACT_OK; // no RA responder configured
	last_ra_ns = bpf_ktime_get_ns();
	if (bpf_skb_change_tail(skb, len, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, (const void *)ra_frame, len,
				BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) < 0 ||
	    bpf_skb_store_bytes(skb, 0, eth + OFF_ETH_SRC, 6, 0) < 0)
		return TC_ACT_SHOT;
	skb->mark = OWN_MARK;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

// refresh answers the VM's NS for the gateway's link-local address, at most
// once per refresh_ns. The NS itself goes upstream as a clone sent before
// the rewrite; that clone passes through this program again and is let go
// because last_ra_ns was updated first.
INLINE int refresh(struct __sk_buff *skb, const __u8 *eth)
{
	__u8 target[16];
	__u64 now, last;

	if (refresh_ns == 0)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, OFF_NS_TARGET, target, sizeof(target)) < 0)
		return TC_ACT_OK;
	if (!eq(gw_lla, target, 16))
		return TC_ACT_OK;
	now = bpf_ktime_get_ns();
	last = last_ra_ns;
	if (last != 0 && now - last < refresh_ns)
		return TC_ACT_OK;
	last_ra_ns = now;
	if (bpf_clone_redirect(skb, skb->ifindex, 0) != 0)
		return TC_ACT_OK; // no copy went upstream: let the original go
	return answer(skb, eth);
}

// is_report reports whether the VM's IPv6 packet (b: its first RS_LEN bytes,
// hop limit 1, next header Hop-by-Hop) is an MLD listener report: a
// Hop-by-Hop header of at most MAX_HBH_UNITS whose first option is the
// Router Alert for MLD, then ICMPv6 type 131 or 143, inside the IPv6
// payload length.
INLINE int is_report(const struct __sk_buff *skb, const __u8 *b)
{
	__u8 t;
	__u32 units = b[OFF_ICMP6 + 1], hbh = HBH_LEN + HBH_LEN * units;

	if (b[OFF_ICMP6] != IPPROTO_ICMPV6 || units > MAX_HBH_UNITS || b[OFF_ICMP6 + 2] != IP6OPT_ROUTER_ALERT ||
	    b[OFF_ICMP6 + 3] != 2 || b[OFF_ICMP6 + 4] != 0 || b[OFF_ICMP6 + 5] != 0)
		return 0;
	// The report's fixed part: 8 bytes (RFC 3810 §5.2) or 24 (RFC 2710 §3).
	if (be16(b + OFF_IP6 + 4) < hbh + 8 || bpf_skb_load_bytes(skb, OFF_ICMP6 + hbh, &t, 1) < 0)
		return 0;
	if (t == MLD2_REPORT)
		return 1;
	return t == MLD_REPORT && be16(b + OFF_IP6 + 4) >= hbh + 24;
}

// report answers the VM's MLD report with the RA, at most once per
// MLD_RA_GAP_NS since the last RA. The report goes upstream as a clone sent
// before the rewrite, which passes through this program again and is let
// go because last_ra_ns was updated first.
INLINE int report(struct __sk_buff *skb, const __u8 *eth)
{
	__u64 now, last;

	if (frame_len < MIN_FRAME || frame_len > MAX_FRAME)
		return TC_ACT_OK; // no RA responder configured
	now = bpf_ktime_get_ns();
	last = last_ra_ns;
	if (last != 0 && now - last < MLD_RA_GAP_NS)
		return TC_ACT_OK;
	last_ra_ns = now;
	if (bpf_clone_redirect(skb, skb->ifindex, 0) != 0)
		return TC_ACT_OK; // no copy went upstream: let the original go
	return answer(skb, eth);
}

// vm_ipv6 learns the VM's link-local source and serves its RS and NS (an
// ICMPv6 ND message right after the IPv6 header, hop limit 255, code 0) and
// its MLD reports.
INLINE int vm_ipv6(struct __sk_buff *skb, const __u8 *eth)
{
	__u8 b[RS_LEN];
	__u64 iid;

	if (bpf_skb_load_bytes(skb, 0, b, sizeof(b)) < 0 || b[OFF_IP6] >> 4 != 6)
		return TC_ACT_OK;
	iid = iid_of(b + OFF_IP6_SRC);
	if (iid != 0 && iid != vm_lla_iid)
		vm_lla_iid = iid;
	if (b[OFF_IP6_NEXT] == IPPROTO_HOPOPTS && b[OFF_IP6_HOPS] == MLD_HOP_LIMIT)
		return is_report(skb, b) ? report(skb, eth) : TC_ACT_OK;
	if (b[OFF_IP6_NEXT] != IPPROTO_ICMPV6 || b[OFF_IP6_HOPS] != ND_HOP_LIMIT || b[OFF_ICMP6_CODE] != 0)
		return TC_ACT_OK;
	if (b[OFF_ICMP6] == ND_ROUTER_SOLICIT)
		return answer(skb, eth);
	if (b[OFF_ICMP6] == ND_NEIGHBOR_SOLICIT)
		return refresh(skb, eth);
	return TC_ACT_OK;
}

// vm_arp answers the VM's ARP request for an address in the server
// identifier net with the bridge's MAC, straight to the VM's port. A
// request the program cannot answer yet (no bridge MAC seen) goes on.
INLINE int vm_arp(struct __sk_buff *skb, __u32 port, __u64 vm)
{
	__u8 a[ARP_LEN];
	__u8 r[ARP_LEN];
	__u32 spa, tpa;
	__u64 pm = pod_mac;

	if (sid_mask == 0 || pm == 0)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, a, sizeof(a)) < 0)
		return TC_ACT_OK;
	// htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1 (request),
	// sender hardware address the VM's.
	if (be16(a + 14) != 1 || be16(a + 16) != ETH_P_IPV4 || a[18] != 6 || a[19] != 4 || be16(a + 20) != 1 ||
	    mac_of(a + 22) != vm)
		return TC_ACT_OK;
	__builtin_memcpy(&spa, a + 28, 4);
	__builtin_memcpy(&tpa, a + 38, 4);
	if ((tpa & sid_mask) != sid_net || spa == tpa) // an announcement asks nothing
		return TC_ACT_OK;
#pragma clang loop unroll(full)
	for (int i = 0; i < 6; i++) {
		__u8 m = pm >> (40 - 8 * i);

		r[i] = a[22 + i];     // Ethernet destination: the requester
		r[6 + i] = m;         // Ethernet source: the bridge
		r[22 + i] = m;        // sender hardware address
		r[32 + i] = a[22 + i]; // target hardware address
	}
	r[12] = 0x08, r[13] = 0x06;
	r[14] = 0, r[15] = 1, r[16] = 0x08, r[17] = 0, r[18] = 6, r[19] = 4, r[20] = 0, r[21] = 2;
	__builtin_memcpy(r + 28, &tpa, 4); // sender protocol address: the one asked for
	__builtin_memcpy(r + 38, &spa, 4); // target protocol address: the requester's
	if (bpf_skb_change_tail(skb, ARP_LEN, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, r, ARP_LEN, BPF_F_INVALIDATE_HASH) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(port, 0);
}

// from_vm handles a frame the bridge forwarded from port, the VM's tap.
// Its source MAC is the VM's from now on, unless it is a group address or
// zero (no station sends from either, IEEE 802 §8.2) or the bridge's own
// (a guest that borrows it would have the RA and the NA answers sent to
// the pod stack, and unicast from the uplink to the bridge pass the
// ingress guard); such a frame passes untouched and teaches nothing.
INLINE int from_vm(struct __sk_buff *skb, const __u8 *eth, __u32 port)
{
	__u64 src = mac_of(eth + OFF_ETH_SRC);

	if ((src & MAC_GROUP) || src == MAC_SET || src == pod_mac)
		return TC_ACT_OK;
	if (vm_seen != src)
		vm_seen = src;
	if (vm_port != port)
		vm_port = port;
	if (eth[OFF_ETH_TYPE] == 0x86 && eth[OFF_ETH_TYPE + 1] == 0xdd)
		return vm_ipv6(skb, eth);
	if (eth[OFF_ETH_TYPE] == 0x08 && eth[OFF_ETH_TYPE + 1] == 0x06)
		return vm_arp(skb, port, src);
	return TC_ACT_OK;
}

// --- Egress: the pod stack's frames ----------------------------------------

// sum16 adds the n bytes at p as big-endian 16-bit words (RFC 1071).
INLINE __u32 sum16(const __u8 *p, int n)
{
	__u32 s = 0;

#pragma clang loop unroll(full)
	for (int i = 0; i < n; i += 2)
		s += (__u32)p[i] << 8 | p[i + 1];
	return s;
}

// neighbour_advert turns the pod stack's NS (b: its first NS_LEN bytes) for
// the VM's link-local address into the NA the VM would answer with (RFC 4861
// §7.2.4: solicited, override, target link-layer address option) and sends
// it into the uplink's ingress: the bridge delivers it to the pod stack
// (Ethernet destination = the NS's source, the bridge's MAC).
INLINE int neighbour_advert(struct __sk_buff *skb, const __u8 *b)
{
	__u8 na[NA_LEN] = {};
	__u64 vm = vm_now();
	__u32 s;

#pragma clang loop unroll(full)
	for (int i = 0; i < 6; i++) {
		na[i] = b[OFF_ETH_SRC + i];
		na[OFF_ETH_SRC + i] = mac_byte(vm, i);
		na[OFF_ICMP6 + 26 + i] = mac_byte(vm, i); // option 2, length 1: the VM's MAC
	}
	na[OFF_ETH_TYPE] = 0x86, na[OFF_ETH_TYPE + 1] = 0xdd;
	na[OFF_IP6] = 0x60;
	na[OFF_IP6 + 5] = 32; // payload length
	na[OFF_IP6_NEXT] = IPPROTO_ICMPV6;
	na[OFF_IP6_HOPS] = ND_HOP_LIMIT;
#pragma clang loop unroll(full)
	for (int i = 0; i < 16; i++) {
		na[OFF_IP6_SRC + i] = b[OFF_NS_TARGET + i]; // from the target
		na[OFF_IP6_DST + i] = b[OFF_IP6_SRC + i];   // to the solicitor
		na[OFF_ICMP6 + 8 + i] = b[OFF_NS_TARGET + i];
	}
	na[OFF_ICMP6] = ND_NEIGHBOR_ADVERT;
	na[OFF_ICMP6 + 4] = 0x60; // S and O
	na[OFF_ICMP6 + 24] = 2, na[OFF_ICMP6 + 25] = 1;
	// Checksum over the pseudo-header (RFC 8200 §8.1) and the message.
	s = sum16(na + OFF_IP6_SRC, 32) + 32 + IPPROTO_ICMPV6 + sum16(na + OFF_ICMP6, 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = ~s & 0xffff;
	na[OFF_ICMP6 + 2] = s >> 8, na[OFF_ICMP6 + 3] = s;
	if (bpf_skb_change_tail(skb, NA_LEN, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, na, NA_LEN, BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) < 0)
		return TC_ACT_SHOT;
	skb->mark = OWN_MARK;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

// pod_ns: a DAD probe (source ::) is the bridge's own and goes on; an NS
// for the VM's link-local address is answered into the pod; every other NS
// stays in the pod.
INLINE int pod_ns(struct __sk_buff *skb, const struct l4 *l)
{
	__u8 b[NS_LEN];
	__u64 src[2];

	if (bpf_skb_load_bytes(skb, 0, b, sizeof(b)) < 0)
		return TC_ACT_SHOT;
	__builtin_memcpy(src, b + OFF_IP6_SRC, 16);
	if (src[0] == 0 && src[1] == 0)
		return TC_ACT_OK;
	if (l->off != OFF_ICMP6 || b[OFF_IP6_HOPS] != ND_HOP_LIMIT || b[OFF_ICMP6_CODE] != 0 ||
	    !is_vm_lla(b + OFF_NS_TARGET))
		return TC_ACT_SHOT;
	return neighbour_advert(skb, b);
}

// names_dhcp_group reports whether the MLD message at off names
// All_DHCP_Relay_Agents_and_Servers (ff02::1:2, RFC 8415 §7.1), or cannot
// be read to the end of its first MAX_MLD_RECORDS records.
INLINE int names_dhcp_group(const struct __sk_buff *skb, __u32 off, __u8 type)
{
	static const __u8 group[16] = {0xff, 0x02, [13] = 1, [15] = 2};
	__u8 h[20];
	__u32 n;

	if (type != MLD2_REPORT) { // RFC 2710 §3: the address at offset 8
		if (bpf_skb_load_bytes(skb, off + 8, h, 16) < 0)
			return 1;
		return eq((const volatile __u8 *)group, h, 16);
	}
	if (bpf_skb_load_bytes(skb, off + 4, h, 4) < 0)
		return 1;
	n = be16(h + 2); // RFC 3810 §5.2: number of multicast address records
	if (n > MAX_MLD_RECORDS)
		return 1;
	off += 8;
#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_MLD_RECORDS; i++) {
		if (i >= n)
			return 0;
		// type, aux data len, number of sources, multicast address
		if (bpf_skb_load_bytes(skb, off, h, 20) < 0)
			return 1;
		if (eq((const volatile __u8 *)group, h + 4, 16))
			return 1;
		off += 20 + 16 * (__u32)be16(h + 2) + 4 * (__u32)h[1];
	}
	return 0;
}

// pod_ipv6 keeps in the pod what the pod stack sends on dsbridge's behalf.
INLINE int pod_ipv6(struct __sk_buff *skb)
{
	struct l4 l;
	__u8 t;

	if (ip6_l4(skb, ETH_LEN, &l) < 0)
		return TC_ACT_OK;
	if (l.later)
		return TC_ACT_SHOT;
	if (l.proto == IPPROTO_UDP)
		return udp_port(skb, l.off, 0) == DHCP6_SERVER_PORT ? TC_ACT_SHOT : TC_ACT_OK;
	if (l.proto != IPPROTO_ICMPV6 || bpf_skb_load_bytes(skb, l.off, &t, 1) < 0)
		return TC_ACT_OK;
	switch (t) {
	case ND_ROUTER_ADVERT:
		return TC_ACT_SHOT;
	case ND_NEIGHBOR_SOLICIT:
		return pod_ns(skb, &l);
	case MLD_REPORT:
	case MLD_DONE:
	case MLD2_REPORT:
		return names_dhcp_group(skb, l.off, t) ? TC_ACT_SHOT : TC_ACT_OK;
	}
	return TC_ACT_OK;
}

// pod_ipv4 keeps the pod stack's IPv4 in the pod. One kind goes to the VM
// instead: a DHCPv4 reply broadcast to 255.255.255.255:68 for a client that
// has an address (ciaddr, RFC 2131 §4.1: renewing, rebinding or informing)
// with the VM's chaddr becomes the unicast RFC 2131 asks for, to ciaddr at
// the VM's MAC, on the VM's port alone; no ARP is needed. The VM also gets
// the broadcast from the bridge; a client that listens only on its address
// while renewing (dhcpcd) takes this one.
INLINE int pod_ipv4(struct __sk_buff *skb)
{
	__u8 b[BOOTP_HEAD];
	__u32 port = vm_port, ciaddr, bcast = 0xffffffff;
	__u64 vm = vm_now();

	if (port == 0 || bpf_skb_load_bytes(skb, 0, b, sizeof(b)) < 0)
		return TC_ACT_SHOT;
	// IPv4 without options, not a fragment, UDP, to 255.255.255.255,
	// port 67 to 68; a BOOTREPLY for Ethernet from the VM's chaddr.
	if (b[ETH_LEN] != 0x45 || (be16(b + ETH_LEN + 6) & 0x3fff) != 0 || b[ETH_LEN + 9] != IPPROTO_UDP ||
	    !eq((const volatile __u8 *)&bcast, b + OFF_IP4_DST, 4) || be16(b + OFF_UDP4) != DHCP4_SERVER_PORT ||
	    be16(b + OFF_UDP4 + 2) != DHCP4_CLIENT_PORT || b[OFF_BOOTP] != 2 || b[OFF_BOOTP + 1] != 1 ||
	    b[OFF_BOOTP + 2] != 6 || mac_of(b + OFF_CHADDR) != vm)
		return TC_ACT_SHOT;
	__builtin_memcpy(&ciaddr, b + OFF_CIADDR, 4);
	if (ciaddr == 0)
		return TC_ACT_SHOT;
#pragma clang loop unroll(full)
	for (int i = 0; i < 6; i++)
		b[i] = mac_byte(vm, i);
	if (bpf_skb_store_bytes(skb, 0, b, 6, 0) < 0 ||
	    bpf_l4_csum_replace(skb, OFF_UDP4 + 6, bcast, ciaddr, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4) < 0 ||
	    bpf_l3_csum_replace(skb, OFF_IP4_CSUM, bcast, ciaddr, 4) < 0 ||
	    bpf_skb_store_bytes(skb, OFF_IP4_DST, &ciaddr, 4, BPF_F_INVALIDATE_HASH) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(port, 0);
}

// from_pod handles a frame the pod's own stack sent. Before plumbing it has
// the pod's MAC (vm_mac, configured at ADD) and passes. After plumbing its
// source is the bridge's MAC, which is never the VM's: a MAC learned as the
// VM's before the bridge spoke is forgotten.
INLINE int from_pod(struct __sk_buff *skb, const __u8 *eth)
{
	__u64 m = mac_of(eth + OFF_ETH_SRC);

	if (m == mac_of(vm_mac))
		return TC_ACT_OK;
	if (pod_mac != m)
		pod_mac = m;
	if (vm_seen == m)
		vm_seen = 0;
	switch (be16(eth + OFF_ETH_TYPE)) {
	case ETH_P_IPV4:
		return pod_ipv4(skb);
	case ETH_P_ARP:
		return TC_ACT_SHOT;
	case ETH_P_IPV6:
		return pod_ipv6(skb);
	}
	return TC_ACT_OK;
}

SEC("tc")
int dsbridge_egress(struct __sk_buff *skb)
{
	__u8 eth[ETH_LEN];
	__u32 in = skb->ingress_ifindex;

	if (in == skb->ifindex)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)) < 0)
		return TC_ACT_OK;
	if (in == 0) // the pod's own stack: its packets arrived on no interface
		return from_pod(skb, eth);
	return from_vm(skb, eth, in); // forwarded by the bridge from the VM's tap
}

// --- Ingress ----------------------------------------------------------------

// hidden reports whether the pod stack must not see the frame from the
// cluster whose IPv4 or IPv6 header starts at l3 (type: its EtherType).
INLINE int hidden(const struct __sk_buff *skb, __u16 type, __u32 l3)
{
	struct l4 l;
	__u8 h[24];

	if (type == ETH_P_IPV4) {
		if (ip4_l4(skb, l3, &l) < 0 || l.later || l.proto != IPPROTO_UDP)
			return 0;
		return udp_port(skb, l.off, 1) != DHCP4_SERVER_PORT ? 0 : 1;
	}
	if (type != ETH_P_IPV6)
		return 0;
	if (bpf_skb_load_bytes(skb, l3 + 8, h, 16) < 0 || ip6_l4(skb, l3, &l) < 0)
		return 1;
	if (is_vm_lla(h))
		return 1;
	if (l.later)
		return 0;
	if (l.proto == IPPROTO_UDP)
		return udp_port(skb, l.off, 1) != DHCP6_SERVER_PORT ? 0 : 1;
	if (l.proto != IPPROTO_ICMPV6 || bpf_skb_load_bytes(skb, l.off, h, 1) < 0)
		return 0;
	if (h[0] == ND_ROUTER_SOLICIT)
		return 1;
	if (h[0] != ND_NEIGHBOR_ADVERT || bpf_skb_load_bytes(skb, l.off + 8, h, 16) < 0)
		return 0;
	return is_vm_lla(h);
}

// l3_of returns the EtherType after at most MAX_TAGS VLAN tags and puts the
// offset of the header it introduces in *l3; 0 when the frame is tagged
// deeper or too short.
INLINE __u16 l3_of(const struct __sk_buff *skb, const __u8 *eth, __u32 *l3)
{
	__u16 type = be16(eth + OFF_ETH_TYPE);
	__u32 off = ETH_LEN;
	__u8 t[2];

#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_TAGS; i++) {
		if (type != ETH_P_8021Q && type != ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off + 2, t, 2) < 0)
			return 0;
		type = be16(t);
		off += 4;
	}
	if (type == ETH_P_8021Q || type == ETH_P_8021AD)
		return 0;
	*l3 = off;
	return type;
}

SEC("tc")
int dsbridge_ingress(struct __sk_buff *skb)
{
	__u8 eth[ETH_LEN];
	__u32 l3 = ETH_LEN, port;
	__u16 type;

	if (skb->mark == OWN_MARK)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)) < 0)
		return TC_ACT_OK;
	if (mac_of(eth) == vm_now()) // the bridge gives it to the VM alone
		return TC_ACT_OK;
	type = l3_of(skb, eth, &l3);
	if (type != 0 && !hidden(skb, type, l3))
		return TC_ACT_OK;
	// Hidden from the pod. The bridge would have flooded a group-addressed
	// frame to the VM too: it gets a copy.
	port = vm_port;
	if ((eth[0] & 1) && port != 0)
		bpf_clone_redirect(skb, port, 0);
	return TC_ACT_SHOT;
}

char _license[] SEC("license") = "Apache-2.0";
