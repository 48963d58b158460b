// SPDX-License-Identifier: GPL-2.0
/*
 * fast.bpf.c - the bridge's fast path for slice-to-slice IPv4 (lib/netcfg/fast.c
 * loads it; built with clang -target bpf and embedded in libvslice).
 *
 * Attached at tc ingress of every slice's host-side veth end (vsh*) and, with
 * the overlay, of the node's VXLAN device (vsx*, after decapsulation). A
 * frame the bridge would hand to exactly one known port anyway goes there
 * directly: into a local slice's eth0 (bpf_redirect_peer: one backlog pass
 * instead of two, no bridge, no br_netfilter), or for a remote slice out of
 * the VXLAN device (bpf_redirect to its transmit, which finds the node by
 * its own forwarding entry, as from the bridge). Only when all of these
 * hold, else TC_ACT_UNSPEC (tc's "next": the bridge and its table decide,
 * exactly as without this program):
 *   - IPv4 in an untagged Ethernet frame;
 *   - the sender is who its way in says: vs_ports[source MAC] names the
 *     device the frame came in on (its own host end for a local slice, the
 *     VXLAN device for a remote one, so neither can pose as the other) and
 *     the IPv4 source is that entry's address (what the bridge table's
 *     from_slice and from_overlay accept; anything else goes there to be
 *     dropped);
 *   - the destination MAC is a known slice whose address is the IPv4
 *     destination, and not behind the device the frame came in on.
 * Capped slices (--net-rate) are never in vs_ports: their frames and the
 * frames to them cross the veth and its qdiscs, so the cap sees every byte.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* A port: the host end's ifindex and the lease's address (network order);
 * what this program delivered into the slice (the frames it redirects never
 * cross the host end's transmit, whose counters `slicectl stats` reads:
 * fast.c adds these). */
struct vs_port {
	__u32 ifindex; /* local: the host end; remote: the VXLAN device */
	__u32 ip;
	__u32 flags; /* VS_PORT_REMOTE: a slice on another node */
	__u32 pad;
	__u64 rx_bytes, rx_packets;
};
#define VS_PORT_REMOTE 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64); /* the MAC in the first 6 bytes, 2 bytes of 0 */
	__type(value, struct vs_port);
} vs_ports SEC(".maps");

static __always_inline __u64 mac_key(const unsigned char *mac)
{
	__u64 k = 0;
	__builtin_memcpy(&k, mac, ETH_ALEN);
	return k;
}

SEC("tc")
int vs_fast(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	__u64 k = mac_key(eth->h_source);
	struct vs_port *s = bpf_map_lookup_elem(&vs_ports, &k);
	if (!s || s->ifindex != skb->ingress_ifindex || s->ip != ip->saddr)
		return TC_ACT_UNSPEC;
	k = mac_key(eth->h_dest);
	struct vs_port *d = bpf_map_lookup_elem(&vs_ports, &k);
	if (!d || d->ip != ip->daddr || d->ifindex == skb->ingress_ifindex)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(&d->rx_bytes, skb->len);
	__sync_fetch_and_add(&d->rx_packets, 1);
	if (d->flags & VS_PORT_REMOTE)
		return bpf_redirect(d->ifindex, 0);
	return bpf_redirect_peer(d->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
