/*
 * nft.c - the node's nftables state for bridged slices, through libnftables.
 *
 * vslice owns two tables and touches nothing else: `table inet vslice`
 * (published ports, egress NAT, what may cross the bridge) and `table bridge
 * vslice` (anti-spoofing on the slices' bridge ports). Both are rewritten
 * whole from the lease file in one transaction ("add table; delete table;
 * table ... { ... }"), so they always say exactly what the leases say, a
 * crash between two writes cannot leave a half rule behind, and with no
 * lease left both tables are gone.
 *
 * inet vslice:
 *   prerouting/output (dnat): a packet to one of the node's own addresses
 *     (fib daddr type local; not 127.0.0.0/8, route_localnet stays 0) on a
 *     published port goes to the slice's address and port.
 *   postrouting (srcnat): slice traffic leaving the subnet is masqueraded;
 *     slice-to-published-port traffic that comes back onto the bridge too
 *     (hairpin), so the reply goes through the node and is un-NATed.
 *   forward: slices in @noegress do not leave the bridge; nothing from the
 *     outside reaches a slice except replies and published ports.
 *   input: from the bridge only replies reach the node's own services.
 * bridge vslice:
 *   prerouting: a frame from a slice port must carry that slice's MAC (as
 *     Ethernet source, and as ARP sender) and IPv4 address (IP source, ARP
 *     sender); anything but IPv4 and ARP is dropped. No slice can claim
 *     another's address or poison the others' (or the node's) ARP caches.
 * With the overlay (overlay.c) also:
 *   inet input: VXLAN (UDP 4789, our VNI) only from a peer's node carrying a frame
 *     from that peer's MAC (@overlay_src: node address . inner Ethernet
 *     source): a stranger on the underlay sends nothing in, and a node
 *     speaks only for the slices the peer list puts on it.
 *   bridge prerouting: out of the VXLAN port only frames whose Ethernet
 *     source, and IPv4/ARP sender, is a peer's MAC and address (@remote):
 *     a node cannot speak for the other nodes' slices, nor for ours.
 */
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>

#include "netcfg_int.h"
#include "vslice/util.h"

static void nft_ctxp(struct nft_ctx **c)
{
	if (*c)
		nft_ctx_free(*c);
}

static int nft_run(const char *cmd, struct vs_error *err)
{
	__attribute__((cleanup(nft_ctxp))) struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return vs_error_set(err, ENOMEM, "nftables context");
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		char line[400];
		snprintf(line, sizeof(line), "%s", e ? e : "");
		line[strcspn(line, "\n")] = '\0';
		return vs_error_set(err, EIO, "nftables table vslice: %s", line);
	}
	return 0;
}

static void elements(FILE *out, const char *decl, const struct ipam_state *st,
		     void (*one)(FILE *, const struct ipam_lease *, bool *first, const void *),
		     const void *arg)
{
	bool first = true;
	fprintf(out, "\t%s", decl);
	for (size_t i = 0; i < st->n; i++)
		one(out, &st->leases[i], &first, arg);
	fputs(first ? "\t}\n" : " }\n\t}\n", out);
}

static void sep(FILE *out, bool *first)
{
	fputs(*first ? "\n\t\telements = { " : ", ", out);
	*first = false;
}

static void el_noegress(FILE *out, const struct ipam_lease *l, bool *first, const void *arg)
{
	char ip[16];
	if (!l->want.no_egress)
		return;
	ipam_fmt(l->ip, ip);
	sep(out, first);
	fputs(ip, out);
}

static void el_publish(FILE *out, const struct ipam_lease *l, bool *first, const void *arg)
{
	bool udp = *(const bool *)arg;
	char ip[16];
	ipam_fmt(l->ip, ip);
	for (size_t k = 0; k < l->want.n_publish; k++) {
		const struct netcfg_publish *p = &l->want.publish[k];
		if (p->udp != udp)
			continue;
		sep(out, first);
		fprintf(out, "%u : %s . %u", p->host_port, ip, p->slice_port);
	}
}

static void el_mac(FILE *out, const struct ipam_lease *l, bool *first, const void *arg)
{
	uint8_t m[6];
	lease_mac(l->ip, m);
	sep(out, first);
	fprintf(out, "\"%s\" . %02x:%02x:%02x:%02x:%02x:%02x", l->veth, m[0], m[1], m[2], m[3],
		m[4], m[5]);
}

static void el_port(FILE *out, const struct ipam_lease *l, bool *first, const void *arg)
{
	char ip[16];
	uint8_t m[6];
	ipam_fmt(l->ip, ip);
	lease_mac(l->ip, m);
	sep(out, first);
	fprintf(out, "\"%s\" . %02x:%02x:%02x:%02x:%02x:%02x . %s", l->veth, m[0], m[1], m[2], m[3],
		m[4], m[5], ip);
}

/* "NODE . 0xMAC": which node may send frames from which remote slice. */
static void el_src(FILE *out, const struct ipam_state *st, bool *first, bool unused)
{
	for (size_t i = 0; i < st->n_peers; i++) {
		char node[16];
		uint8_t m[6];
		if (!overlay_peer_active(st, &st->peers[i]))
			continue;
		ipam_fmt(st->peers[i].node, node);
		lease_mac(st->peers[i].ip, m);
		sep(out, first);
		fprintf(out, "%s . 0x%02x%02x%02x%02x%02x%02x", node, m[0], m[1], m[2], m[3], m[4],
			m[5]);
	}
}

static void el_remote(FILE *out, const struct ipam_state *st, bool *first, bool with_ip)
{
	for (size_t i = 0; i < st->n_peers; i++) {
		char ip[16];
		uint8_t m[6];
		if (!overlay_peer_active(st, &st->peers[i]))
			continue;
		ipam_fmt(st->peers[i].ip, ip);
		lease_mac(st->peers[i].ip, m);
		sep(out, first);
		fprintf(out, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
		if (with_ip)
			fprintf(out, " . %s", ip);
	}
}

/* A set of the peers, closed like elements() does. */
static void peer_set(FILE *out, const char *decl, const struct ipam_state *st,
		     void (*one)(FILE *, const struct ipam_state *, bool *, bool), bool arg)
{
	bool first = true;
	fprintf(out, "\t%s", decl);
	one(out, st, &first, arg);
	fputs(first ? "\t}\n" : " }\n\t}\n", out);
}

int nft_sync(const struct ipam_state *st, struct vs_error *err)
{
	char *cmd = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&cmd, &len);
	if (!out)
		abort();
	fputs("add table inet vslice\ndelete table inet vslice\n"
	      "add table bridge vslice\ndelete table bridge vslice\n",
	      out);
	if (st->n) {
		char net[16];
		const bool tcp = false, udp = true;
		ipam_fmt(st->net, net);
		const char *br = st->bridge;
		fputs("table inet vslice {\n", out);
		elements(out, "set noegress { type ipv4_addr;", st, el_noegress, NULL);
		elements(out, "map pub_tcp { type inet_service : ipv4_addr . inet_service;", st,
			 el_publish, &tcp);
		elements(out, "map pub_udp { type inet_service : ipv4_addr . inet_service;", st,
			 el_publish, &udp);
		if (st->vni)
			/* the inner Ethernet source: UDP (8) + VXLAN (8) + destination (6) bytes in
			 */
			peer_set(out, "set overlay_src { typeof ip saddr . @th,176,48;", st, el_src,
				 false);
		fprintf(out,
			"\tchain prerouting { type nat hook prerouting priority dstnat;\n"
			"\t\tfib daddr type local dnat ip to tcp dport map @pub_tcp\n"
			"\t\tfib daddr type local dnat ip to udp dport map @pub_udp\n\t}\n"
			"\tchain output { type nat hook output priority -100;\n"
			"\t\tip daddr != 127.0.0.0/8 fib daddr type local dnat ip to tcp dport map "
			"@pub_tcp\n"
			"\t\tip daddr != 127.0.0.0/8 fib daddr type local dnat ip to udp dport map "
			"@pub_udp\n\t}\n"
			"\tchain postrouting { type nat hook postrouting priority srcnat;\n"
			"\t\tip saddr %s/%u ip daddr != %s/%u masquerade\n"
			"\t\toifname \"%s\" ct status dnat ip saddr %s/%u masquerade\n\t}\n"
			"\tchain forward { type filter hook forward priority filter;\n"
			"\t\tiifname \"%s\" oifname != \"%s\" ip saddr @noegress drop\n"
			"\t\toifname \"%s\" iifname != \"%s\" ct state established,related accept\n"
			"\t\toifname \"%s\" ct status dnat accept\n"
			"\t\toifname \"%s\" iifname != \"%s\" drop\n\t}\n"
			"\tchain input { type filter hook input priority filter;\n"
			"\t\tiifname \"%s\" ct state established,related accept\n"
			"\t\tiifname \"%s\" drop\n",
			net, st->prefix, net, st->prefix, br, net, st->prefix, br, br, br, br, br,
			br, br, br, br);
		/* Only our VNI (bits 32-55 of the VXLAN header): another VXLAN
		 * user of port 4789 on this node is not ours to judge. */
		if (st->vni)
			fprintf(out,
				"\t\tudp dport %u @th,96,24 %u ip saddr . @th,176,48 != "
				"@overlay_src drop\n",
				NETCFG_VXLAN_PORT, st->vni);
		fputs("\t}\n}\n", out);
		fputs("table bridge vslice {\n", out);
		elements(out, "set macs { type ifname . ether_addr;", st, el_mac, NULL);
		elements(out, "set ports { type ifname . ether_addr . ipv4_addr;", st, el_port,
			 NULL);
		char vx[IFNAMSIZ];
		overlay_devname(st, vx);
		if (st->vni) {
			peer_set(out, "set remote_macs { type ether_addr;", st, el_remote, false);
			peer_set(out, "set remote { type ether_addr . ipv4_addr;", st, el_remote,
				 true);
		}
		fputs("\tchain prerouting { type filter hook prerouting priority filter;\n", out);
		if (st->vni)
			fprintf(
			    out,
			    "\t\tiifname \"%s\" ether saddr != @remote_macs drop\n"
			    "\t\tiifname \"%s\" ether type ip ether saddr . ip saddr != @remote "
			    "drop\n"
			    "\t\tiifname \"%s\" ether type arp arp saddr ether . arp saddr ip != "
			    "@remote drop\n"
			    "\t\tiifname \"%s\" ether type != { ip, arp } drop\n",
			    vx, vx, vx, vx);
		fputs(
		    "\t\tiifname \"" NETCFG_VETH_PREFIX "*\" iifname . ether saddr != @macs drop\n"
		    "\t\tiifname \"" NETCFG_VETH_PREFIX "*\" ether type ip iifname . ether saddr . "
		    "ip saddr != @ports drop\n"
		    "\t\tiifname \"" NETCFG_VETH_PREFIX "*\" ether type arp iifname . arp saddr "
		    "ether . arp saddr ip != @ports drop\n"
		    "\t\tiifname \"" NETCFG_VETH_PREFIX "*\" ether type != { ip, arp } drop\n"
		    "\t}\n}\n",
		    out);
	}
	fclose(out);
	cleanup_free char *text = cmd;
	return nft_run(text, err);
}
