/*
 * nft.c - the node's nftables state for bridged slices, through libnftables.
 *
 * vslice owns two tables and touches nothing else: `table inet vslice`
 * (published ports, egress NAT, what may cross the bridge) and `table bridge
 * vslice` (anti-spoofing on the slices' bridge ports). What is per slice (or
 * per overlay peer) is an element of a named set or map; the chains only
 * name the sets. The tables are written whole from the lease file in one
 * libnftables transaction ("add table; delete table; table ... { ... }") by
 * the first lease, and removed with the last (nft_sync); every other change
 * adds and deletes only the elements that differ, in one nfnetlink batch
 * (nft_update), all or nothing. A batch the kernel refuses (the tables are
 * not what the lease file says) falls back to the whole rewrite, so the
 * tables always end up saying exactly what the leases say.
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
 *   raw_prerouting (and, with the overlay, raw_output): no conntrack for
 *     slice-to-slice traffic on the bridge (br_netfilter, when loaded,
 *     hands bridged IPv4 to these hooks) nor for the overlay's VXLAN
 *     datagrams: only stateless rules judge them, and a connection entry
 *     taken and updated per packet was most of what these hooks cost a
 *     bridged flow. To the gateway and across the subnet's edge stays
 *     tracked (the input, forward and NAT rules need it).
 *   forward: bridge to bridge is accepted first (none of the other rules
 *     applies to it), so a bridged packet is not compared four more times.
 * bridge vslice:
 *   prerouting -> from_slice: a frame from a slice port must carry that
 *     slice's MAC (as Ethernet source, and as ARP sender) and IPv4 address
 *     (IP source, ARP sender); anything but IPv4 and ARP is dropped. No
 *     slice can claim another's address or poison the others' (or the
 *     node's) ARP caches. One lookup for an IPv4 frame (port . MAC .
 *     address), two for ARP.
 * With the overlay (overlay.c) also:
 *   inet input: VXLAN (UDP 4789, our VNI) only from a peer's node carrying a frame
 *     from that peer's MAC (@overlay_src: node address . inner Ethernet
 *     source): a stranger on the underlay sends nothing in, and a node
 *     speaks only for the slices the peer list puts on it.
 *   bridge prerouting -> from_overlay: out of the VXLAN port only frames
 *     whose Ethernet source, and IPv4/ARP sender, is a peer's MAC and
 *     address (@remote): a node cannot speak for the other nodes' slices,
 *     nor for ours.
 */
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <netlink/attr.h>
#include <netlink/msg.h>

#include "netcfg_int.h"
#include "vslice/util.h"

static int nft_run(const char *cmd, struct vs_error *err)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return vs_error_set(err, ENOMEM, "nftables context");
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	int r = 0;
	if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		char line[400];
		snprintf(line, sizeof(line), "%s", e ? e : "");
		line[strcspn(line, "\n")] = '\0';
		r = vs_error_set(err, EIO, "nftables table vslice: %s", line);
	}
	nft_ctx_free(ctx);
	return r;
}

/* One element of one of the tables' sets or maps: what a lease or an active
 * peer contributes. key (and val, for a map) in nft's syntax. */
struct nft_el {
	const char *table; /* "inet" or "bridge" */
	const char *set;
	char key[80];
	char val[32];	   /* "" for a set */
	const char *lease; /* the lease it comes from (NULL: a peer) */
	/* The same as the kernel holds it: each field of a concatenation
	 * padded to 4 bytes (ifname 16, ether_addr 6+2, ipv4_addr 4,
	 * inet_service 2 alone, 2+2 in a concatenation), network order. */
	uint8_t kraw[32], vraw[8];
	uint8_t klen, vlen;
};

struct nft_els {
	struct nft_el *v;
	size_t n, cap;
};

static struct nft_el *el_add(struct nft_els *e, const char *table, const char *set,
			     const char *lease)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 32;
		e->v = vs_xrealloc(e->v, e->cap * sizeof(*e->v));
	}
	struct nft_el *x = &e->v[e->n++];
	*x = (struct nft_el){.table = table, .set = set, .lease = lease};
	return x;
}

static void fmt_mac(char *buf, size_t len, uint32_t ip)
{
	uint8_t m[6];
	lease_mac(ip, m);
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static uint8_t *raw_ifname(uint8_t *p, const char *name)
{
	memset(p, 0, IFNAMSIZ);
	memcpy(p, name, strnlen(name, IFNAMSIZ - 1));
	return p + IFNAMSIZ;
}

static uint8_t *raw_mac(uint8_t *p, uint32_t ip, bool pad)
{
	lease_mac(ip, p);
	if (!pad)
		return p + 6;
	p[6] = p[7] = 0;
	return p + 8;
}

static uint8_t *raw_ip(uint8_t *p, uint32_t ip)
{
	uint32_t be = htonl(ip);
	memcpy(p, &be, 4);
	return p + 4;
}

static uint8_t *raw_port(uint8_t *p, uint16_t port, bool pad)
{
	uint16_t be = htons(port);
	memcpy(p, &be, 2);
	if (!pad)
		return p + 2;
	p[2] = p[3] = 0;
	return p + 4;
}

#define KLEN(x, end) ((x)->klen = (uint8_t)((end) - (x)->kraw))

/* Every element st's leases and active peers put in the tables' sets. */
static void collect(const struct ipam_state *st, struct nft_els *e)
{
	for (size_t i = 0; i < st->n; i++) {
		const struct ipam_lease *l = &st->leases[i];
		char ip[16], mac[18];
		struct nft_el *x;
		ipam_fmt(l->ip, ip);
		fmt_mac(mac, sizeof(mac), l->ip);
		if (l->want.no_egress) {
			x = el_add(e, "inet", "noegress", l->name);
			snprintf(x->key, sizeof(x->key), "%s", ip);
			KLEN(x, raw_ip(x->kraw, l->ip));
		}
		for (size_t k = 0; k < l->want.n_publish; k++) {
			const struct netcfg_publish *p = &l->want.publish[k];
			x = el_add(e, "inet", p->udp ? "pub_udp" : "pub_tcp", l->name);
			snprintf(x->key, sizeof(x->key), "%u", p->host_port);
			snprintf(x->val, sizeof(x->val), "%s . %u", ip, p->slice_port);
			KLEN(x, raw_port(x->kraw, p->host_port, false));
			x->vlen = (uint8_t)(raw_port(raw_ip(x->vraw, l->ip), p->slice_port, true) -
					    x->vraw);
		}
		x = el_add(e, "bridge", "macs", l->name);
		snprintf(x->key, sizeof(x->key), "\"%s\" . %s", l->veth, mac);
		KLEN(x, raw_mac(raw_ifname(x->kraw, l->veth), l->ip, true));
		x = el_add(e, "bridge", "ports", l->name);
		snprintf(x->key, sizeof(x->key), "\"%s\" . %s . %s", l->veth, mac, ip);
		KLEN(x, raw_ip(raw_mac(raw_ifname(x->kraw, l->veth), l->ip, true), l->ip));
	}
	if (!st->vni)
		return;
	for (size_t i = 0; i < st->n_peers; i++) {
		const struct ipam_peer *p = &st->peers[i];
		char ip[16], node[16], mac[18];
		uint8_t m[6];
		struct nft_el *x;
		if (!overlay_peer_active(st, p))
			continue;
		ipam_fmt(p->ip, ip);
		ipam_fmt(p->node, node);
		fmt_mac(mac, sizeof(mac), p->ip);
		lease_mac(p->ip, m);
		/* "NODE . 0xMAC": which node may send frames from which remote slice. */
		x = el_add(e, "inet", "overlay_src", NULL);
		snprintf(x->key, sizeof(x->key), "%s . 0x%02x%02x%02x%02x%02x%02x", node, m[0],
			 m[1], m[2], m[3], m[4], m[5]);
		KLEN(x, raw_mac(raw_ip(x->kraw, p->node), p->ip, true));
		x = el_add(e, "bridge", "remote_macs", NULL);
		snprintf(x->key, sizeof(x->key), "%s", mac);
		KLEN(x, raw_mac(x->kraw, p->ip, false));
		x = el_add(e, "bridge", "remote", NULL);
		snprintf(x->key, sizeof(x->key), "%s . %s", mac, ip);
		KLEN(x, raw_ip(raw_mac(x->kraw, p->ip, true), p->ip));
	}
}

static int el_cmp(const void *p, const void *q)
{
	const struct nft_el *a = p, *b = q;
	int c = strcmp(a->table, b->table);
	if (!c)
		c = strcmp(a->set, b->set);
	if (!c)
		c = strcmp(a->key, b->key);
	return c ? c : strcmp(a->val, b->val);
}

/* e sorted (el_sort): a node with a thousand slices diffs in O(n log n). */
static void el_sort(struct nft_els *e)
{
	if (e->n > 1)
		qsort(e->v, e->n, sizeof(*e->v), el_cmp);
}

static bool el_in(const struct nft_els *e, const struct nft_el *x)
{
	return e->n && bsearch(x, e->v, e->n, sizeof(*e->v), el_cmp);
}

/* "\tDECL elements = { ... }\n\t}\n" with the elements of table.set. */
static void set_decl(FILE *out, const char *decl, const struct nft_els *e, const char *table,
		     const char *set)
{
	bool first = true;
	fprintf(out, "\t%s", decl);
	for (size_t i = 0; i < e->n; i++) {
		const struct nft_el *x = &e->v[i];
		if (strcmp(x->table, table) || strcmp(x->set, set))
			continue;
		fputs(first ? "\n\t\telements = { " : ", ", out);
		first = false;
		fputs(x->key, out);
		if (x->val[0])
			fprintf(out, " : %s", x->val);
	}
	fputs(first ? "\t}\n" : " }\n\t}\n", out);
}

int nft_sync(const struct ipam_state *st, struct vs_error *err)
{
	char *cmd = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&cmd, &len);
	if (!out)
		abort();
	struct nft_els e = {0};
	collect(st, &e);
	fputs("add table inet vslice\ndelete table inet vslice\n"
	      "add table bridge vslice\ndelete table bridge vslice\n",
	      out);
	if (st->n) {
		char net[16];
		ipam_fmt(st->net, net);
		const char *br = st->bridge;
		fputs("table inet vslice {\n", out);
		set_decl(out, "set noegress { type ipv4_addr;", &e, "inet", "noegress");
		set_decl(out, "map pub_tcp { type inet_service : ipv4_addr . inet_service;", &e,
			 "inet", "pub_tcp");
		set_decl(out, "map pub_udp { type inet_service : ipv4_addr . inet_service;", &e,
			 "inet", "pub_udp");
		if (st->vni)
			/* the inner Ethernet source: UDP (8) + VXLAN (8) + destination (6) bytes in
			 */
			set_decl(out, "set overlay_src { typeof ip saddr . @th,176,48;", &e, "inet",
				 "overlay_src");
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
			"\t\tiifname \"%s\" oifname \"%s\" accept\n"
			"\t\tiifname \"%s\" oifname != \"%s\" ip saddr @noegress drop\n"
			"\t\toifname \"%s\" iifname != \"%s\" ct state established,related accept\n"
			"\t\toifname \"%s\" ct status dnat accept\n"
			"\t\toifname \"%s\" iifname != \"%s\" drop\n\t}\n"
			"\tchain input { type filter hook input priority filter;\n"
			"\t\tiifname \"%s\" ct state established,related accept\n"
			"\t\tiifname \"%s\" drop\n",
			net, st->prefix, net, st->prefix, br, net, st->prefix, br, br, br, br, br,
			br, br, br, br, br, br);
		/* Only our VNI (bits 32-55 of the VXLAN header): another VXLAN
		 * user of port 4789 on this node is not ours to judge. */
		if (st->vni)
			fprintf(out,
				"\t\tudp dport %u @th,96,24 %u ip saddr . @th,176,48 != "
				"@overlay_src drop\n",
				NETCFG_VXLAN_PORT, st->vni);
		fputs("\t}\n", out);
		/* Conntrack only where a rule needs it. Bridged slice-to-slice
		 * traffic (br_netfilter hands it to these hooks) and the overlay's
		 * VXLAN datagrams are judged by stateless rules alone (the bridge
		 * table, the input rule above), and a connection entry per flow,
		 * taken and updated on every packet, is most of what the inet hooks
		 * cost them. What stays tracked: anything to the gateway (the
		 * node's services, replies to published-port hairpins) and
		 * anything leaving or entering the subnet (NAT, the forward and
		 * input rules). */
		char gw[16];
		ipam_fmt(ipam_gateway(st), gw);
		fprintf(out,
			"\tchain raw_prerouting { type filter hook prerouting priority raw;\n"
			"\t\tiifname \"%s\" ip saddr %s/%u ip daddr %s/%u ip daddr != %s notrack\n",
			br, net, st->prefix, net, st->prefix, gw);
		if (st->vni)
			fprintf(out,
				"\t\tudp dport %u @th,96,24 %u notrack\n\t}\n"
				"\tchain raw_output { type filter hook output priority raw;\n"
				"\t\tudp dport %u @th,96,24 %u notrack\n",
				NETCFG_VXLAN_PORT, st->vni, NETCFG_VXLAN_PORT, st->vni);
		fputs("\t}\n}\n", out);
		fputs("table bridge vslice {\n", out);
		set_decl(out, "set macs { type ifname . ether_addr;", &e, "bridge", "macs");
		set_decl(out, "set ports { type ifname . ether_addr . ipv4_addr;", &e, "bridge",
			 "ports");
		char vx[IFNAMSIZ];
		overlay_devname(st, vx);
		if (st->vni) {
			set_decl(out, "set remote_macs { type ether_addr;", &e, "bridge",
				 "remote_macs");
			set_decl(out, "set remote { type ether_addr . ipv4_addr;", &e, "bridge",
				 "remote");
		}
		/* Each port's frames are judged in one chain: an IPv4 frame by one
		 * lookup (port . MAC . address), an ARP frame by two (port . MAC,
		 * port . sender MAC . sender address); everything else is dropped. */
		fputs("\tchain from_slice {\n"
		      "\t\tether type ip iifname . ether saddr . ip saddr @ports accept\n"
		      "\t\tether type arp iifname . ether saddr @macs "
		      "iifname . arp saddr ether . arp saddr ip @ports accept\n"
		      "\t\tdrop\n\t}\n",
		      out);
		if (st->vni)
			fputs("\tchain from_overlay {\n"
			      "\t\tether type ip ether saddr . ip saddr @remote accept\n"
			      "\t\tether type arp ether saddr @remote_macs "
			      "arp saddr ether . arp saddr ip @remote accept\n"
			      "\t\tdrop\n\t}\n",
			      out);
		fputs("\tchain prerouting { type filter hook prerouting priority filter;\n"
		      "\t\tiifname \"" NETCFG_VETH_PREFIX "*\" jump from_slice\n",
		      out);
		if (st->vni)
			fprintf(out, "\t\tiifname \"%s\" jump from_overlay\n", vx);
		fputs("\t}\n}\n", out);
	}
	fclose(out);
	free(e.v);
	cleanup_free char *text = cmd;
	return nft_run(text, err);
}

/* One NEWSETELEM/DELSETELEM (or batch begin/end) appended to buf. */
static void batch_put(FILE *buf, struct nl_msg *m, uint32_t seq)
{
	struct nlmsghdr *h = nlmsg_hdr(m);
	h->nlmsg_seq = seq;
	fwrite(h, 1, NLMSG_ALIGN(h->nlmsg_len), buf);
	nlmsg_free(m);
}

static struct nl_msg *batch_mark(int type)
{
	struct nl_msg *m = nlmsg_alloc_simple(type, NLM_F_REQUEST);
	struct nfgenmsg g = {.nfgen_family = AF_UNSPEC,
			     .version = NFNETLINK_V0,
			     .res_id = htons(NFNL_SUBSYS_NFTABLES)};
	if (!m || nlmsg_append(m, &g, sizeof(g), NLMSG_ALIGNTO) < 0)
		abort();
	return m;
}

static struct nl_msg *el_msg(const struct nft_el *x, bool add)
{
	int type = (NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM);
	struct nl_msg *m =
	    nlmsg_alloc_simple(type, NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE : 0));
	struct nfgenmsg g = {.nfgen_family =
				 strcmp(x->table, "inet") ? NFPROTO_BRIDGE : NFPROTO_INET,
			     .version = NFNETLINK_V0};
	struct nlattr *els, *el, *k, *d;
	if (!m || nlmsg_append(m, &g, sizeof(g), NLMSG_ALIGNTO) < 0 ||
	    nla_put_string(m, NFTA_SET_ELEM_LIST_TABLE, "vslice") < 0 ||
	    nla_put_string(m, NFTA_SET_ELEM_LIST_SET, x->set) < 0 ||
	    !(els = nla_nest_start(m, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED)) ||
	    !(el = nla_nest_start(m, NFTA_LIST_ELEM | NLA_F_NESTED)) ||
	    !(k = nla_nest_start(m, NFTA_SET_ELEM_KEY | NLA_F_NESTED)) ||
	    nla_put(m, NFTA_DATA_VALUE, x->klen, x->kraw) < 0)
		abort();
	nla_nest_end(m, k);
	if (add && x->vlen) {
		if (!(d = nla_nest_start(m, NFTA_SET_ELEM_DATA | NLA_F_NESTED)) ||
		    nla_put(m, NFTA_DATA_VALUE, x->vlen, x->vraw) < 0)
			abort();
		nla_nest_end(m, d);
	}
	nla_nest_end(m, el);
	nla_nest_end(m, els);
	return m;
}

/* Send the batch buf (n element messages, each asking for an ack) on a
 * new nfnetlink socket and read the n answers: 0, or -errno of the first
 * refusal (the kernel then applied none of it). The socket is left open
 * in *sock. */
static int batch_send(const void *buf, size_t len, size_t n, int *sock)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0)
		return -errno;
	*sock = fd;
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa)) != (ssize_t)len)
		return -errno;
	int first = 0;
	size_t got = 0;
	char rbuf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
	while (got < n) {
		ssize_t r = recv(fd, rbuf, sizeof(rbuf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno; /* a timeout or overrun: the caller rewrites whole */
		for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, (size_t)r);
		     h = NLMSG_NEXT(h, r)) {
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *e = NLMSG_DATA(h);
			if (e->error && !first)
				first = e->error;
			got++;
		}
	}
	return first;
}

int nft_update(const struct ipam_state *old, const struct ipam_state *st, const char *focus,
	       int *keep, struct vs_error *err)
{
	/* The first lease makes the tables, the last removes them; a change
	 * of the node's settings (only possible without leases) too. */
	if (!old->n || !st->n || old->vni != st->vni || old->net != st->net ||
	    old->prefix != st->prefix || strcmp(old->bridge, st->bridge))
		return nft_sync(st, err);
	struct nft_els a = {0}, b = {0};
	collect(old, &a);
	collect(st, &b);
	el_sort(&a);
	el_sort(&b);
	char *buf = NULL;
	size_t len = 0, n = 0;
	uint32_t seq = 1;
	FILE *out = open_memstream(&buf, &len);
	if (!out)
		abort();
	batch_put(out, batch_mark(NFNL_MSG_BATCH_BEGIN), seq++);
	/* Deletions first: a map key whose value changes is deleted, then
	 * added. The focus lease's elements are added even when the lease
	 * file says they are there (a crash between file and tables). */
	for (size_t i = 0; i < a.n; i++)
		if (!el_in(&b, &a.v[i])) {
			batch_put(out, el_msg(&a.v[i], false), seq++);
			n++;
		}
	for (size_t i = 0; i < b.n; i++) {
		const struct nft_el *x = &b.v[i];
		if (el_in(&a, x) && !(focus && x->lease && !strcmp(x->lease, focus)))
			continue;
		batch_put(out, el_msg(x, true), seq++);
		n++;
	}
	batch_put(out, batch_mark(NFNL_MSG_BATCH_END), seq++);
	fclose(out);
	free(a.v);
	free(b.v);
	cleanup_free char *text = buf;
	if (!n)
		return 0;
	int fd = -1;
	int r = batch_send(buf, len, n, &fd);
	if (fd >= 0 && (r < 0 || !keep))
		close(fd);
	else if (keep)
		*keep = fd;
	if (r == 0)
		return 0;
	/* The tables are not what the lease file said (changed behind our
	 * back, or a crash between the two): make them whole again. */
	return nft_sync(st, err);
}
