/*
 * overlay.c - bridged slices across nodes: one L2 segment over VXLAN.
 *
 * With VSLICE_OVERLAY_VNI and VSLICE_OVERLAY_LOCAL set, every node of a
 * cluster has the same bridge subnet and the same gateway (address and
 * MAC, link.c), and a VXLAN device "vsx<VNI>" (UDP 4789, source = the
 * node's underlay address) is a port of its bridge. Nothing is learnt and
 * nothing is flooded over it: the VXLAN device does not learn (a forged
 * packet on the underlay cannot teach it where a MAC lives), and its
 * bridge port floods no broadcast, multicast or unknown unicast. What
 * crosses is decided by the caller's peer list (which remote slice address
 * lives on which node), made into, for each remote slice:
 *   - a VXLAN forwarding entry   MAC -> that node's underlay address (self)
 *   - a bridge static entry      MAC -> the VXLAN port (master)
 *   - a neighbour entry          address -> MAC on the bridge (permanent)
 * and neigh_suppress on the VXLAN port: the bridge answers a local slice's
 * ARP request for a remote address itself, from the neighbour entry, so no
 * ARP ever crosses the overlay. A slice's MAC is a function of its address
 * (link.c lease_mac), so a slice that moves keeps both: the other nodes
 * only repoint one forwarding entry (the caller gives the new node), and
 * the caches in the peers' slices stay right. On its new node the moved
 * slice's port is known to the bridge from the start (link.c: a static
 * entry for its MAC), so it is reached at once, with no announcement.
 *
 * The peer list is the whole truth: stored in <root>/net/peers.json (under
 * the lease lock) and, while the node has bridged slices, made the
 * kernel's state by overlay_sync (extra entries removed, missing ones
 * added, moved ones replaced) on every attach, detach and set_peers. The
 * VXLAN device goes with the last lease (its entries with it; the
 * neighbour entries go with the bridge). nft.c adds the filters: VXLAN
 * only from the peers' nodes, and out of the VXLAN port only the peers'
 * MAC/address pairs.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <stdio.h>
#include <string.h>

#include <netlink/msg.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>

#include "netcfg_int.h"
#include "vslice/units.h"
#include "vslice/json.h"
#include "vslice/util.h"

static void nl_cachep(struct nl_cache **c)
{
	if (*c)
		nl_cache_free(*c);
}
#define cleanup_nlcache __attribute__((cleanup(nl_cachep)))

void overlay_devname(const struct ipam_state *st, char name[IFNAMSIZ])
{
	if (st->vni)
		snprintf(name, IFNAMSIZ, NETCFG_VXLAN_PREFIX "%u", st->vni);
	else
		name[0] = '\0';
}

bool overlay_peer_active(const struct ipam_state *st, const struct ipam_peer *p)
{
	if (p->node == st->underlay || !ipam_in_subnet(st, p->ip))
		return false;
	for (size_t i = 0; i < st->n; i++)
		if (st->leases[i].ip == p->ip)
			return false;
	return true;
}

bool overlay_active_changed(const struct ipam_state *a, const struct ipam_state *b)
{
	if (a->n_peers != b->n_peers)
		return true;
	for (size_t i = 0; i < a->n_peers; i++)
		if (a->peers[i].ip != b->peers[i].ip || a->peers[i].node != b->peers[i].node ||
		    overlay_peer_active(a, &a->peers[i]) != overlay_peer_active(b, &b->peers[i]))
			return true;
	return false;
}

static const struct ipam_peer *active_peer_by_mac(const struct ipam_state *st, const uint8_t *mac)
{
	for (size_t i = 0; i < st->n_peers; i++) {
		uint8_t m[6];
		lease_mac(st->peers[i].ip, m);
		if (!memcmp(m, mac, 6) && overlay_peer_active(st, &st->peers[i]))
			return &st->peers[i];
	}
	return NULL;
}

static const struct ipam_peer *active_peer_by_ip(const struct ipam_state *st, uint32_t ip)
{
	for (size_t i = 0; i < st->n_peers; i++)
		if (st->peers[i].ip == ip && overlay_peer_active(st, &st->peers[i]))
			return &st->peers[i];
	return NULL;
}

int overlay_check(struct nl_sock *sk, struct ipam_state *st, struct vs_error *err)
{
	if (!st->vni)
		return 0;
	char vx[IFNAMSIZ], ul[16];
	overlay_devname(st, vx);
	ipam_fmt(st->underlay, ul);
	/* No lease, so no vxlan of ours should exist: one that does was left by
	 * a crash between device and lease file; its name is vslice's. */
	int r = link_remove(sk, vx, err);
	if (r < 0)
		return r;
	cleanup_nlcache struct nl_cache *addrs = NULL;
	if ((r = rtnl_addr_alloc_cache(sk, &addrs)) < 0)
		return nl_fail(err, r, "list addresses");
	int ifindex = 0;
	for (struct nl_object *o = nl_cache_get_first(addrs); o && !ifindex;
	     o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(a);
		uint32_t be;
		if (rtnl_addr_get_family(a) != AF_INET || !local || nl_addr_get_len(local) != 4)
			continue;
		memcpy(&be, nl_addr_get_binary_addr(local), 4);
		if (ntohl(be) == st->underlay)
			ifindex = rtnl_addr_get_ifindex(a);
	}
	if (!ifindex)
		return vs_error_set(err, EADDRNOTAVAIL,
				    "VSLICE_OVERLAY_LOCAL %s: not an address of this node", ul);
	struct rtnl_link *l = NULL;
	if ((r = rtnl_link_get_kernel(sk, ifindex, NULL, &l)) < 0)
		return nl_fail(err, r, "underlay link of %s", ul);
	unsigned mtu = rtnl_link_get_mtu(l);
	rtnl_link_put(l);
	if (mtu < 576 + NETCFG_VXLAN_OVERHEAD)
		return vs_error_set(err, EINVAL, "underlay link of %s: MTU %u too small for VXLAN",
				    ul, mtu);
	st->mtu = mtu - NETCFG_VXLAN_OVERHEAD;
	return 0;
}

/* A request whose only answer is an ack; msg is freed. */
static int nl_request(struct nl_sock *sk, struct nl_msg *msg, const char *what,
		      struct vs_error *err)
{
	int r = nl_send_sync(sk, msg);
	return r < 0 ? nl_fail(err, r, "%s", what) : 0;
}

/* The vxlan's bridge port: no learning, no flooding of any kind, and ARP
 * requests for remote slices answered by the bridge (neigh_suppress).
 * libnl-route 3.7 has no setter for these: the message is built here. */
static int port_flags(struct nl_sock *sk, int ifindex, const char *name, struct vs_error *err)
{
	struct ifinfomsg ifi = {.ifi_family = AF_BRIDGE, .ifi_index = ifindex};
	struct nl_msg *m = nlmsg_alloc_simple(RTM_SETLINK, 0);
	struct nlattr *pi;
	if (!m || nlmsg_append(m, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    !(pi = nla_nest_start(m, IFLA_PROTINFO | NLA_F_NESTED)) ||
	    nla_put_u8(m, IFLA_BRPORT_LEARNING, 0) < 0 ||
	    nla_put_u8(m, IFLA_BRPORT_UNICAST_FLOOD, 0) < 0 ||
	    nla_put_u8(m, IFLA_BRPORT_MCAST_FLOOD, 0) < 0 ||
	    nla_put_u8(m, IFLA_BRPORT_BCAST_FLOOD, 0) < 0 ||
	    nla_put_u8(m, IFLA_BRPORT_NEIGH_SUPPRESS, 1) < 0 || nla_nest_end(m, pi) < 0) {
		nlmsg_free(m);
		return vs_error_set(err, ENOMEM, "%s: bridge port flags", name);
	}
	char what[64];
	snprintf(what, sizeof(what), "%s: bridge port flags", name);
	return nl_request(sk, m, what, err);
}

static int vxlan_ensure(struct nl_sock *sk, const struct ipam_state *st, const char *name,
			struct vs_error *err)
{
	int br = link_index(sk, st->bridge), r;
	if (!br)
		return vs_error_set(err, ENODEV, "bridge %s: gone", st->bridge);
	if (link_index(sk, name))
		return 0;
	uint32_t be = htonl(st->underlay);
	struct nl_addr *local = nl_addr_build(AF_INET, &be, 4);
	struct rtnl_link *l = rtnl_link_vxlan_alloc();
	if (!l || !local)
		return vs_error_set(err, ENOMEM, "vxlan %s", name);
	rtnl_link_set_name(l, name);
	rtnl_link_set_mtu(l, st->mtu);
	if ((r = rtnl_link_vxlan_set_id(l, st->vni)) >= 0 &&
	    (r = rtnl_link_vxlan_set_local(l, local)) >= 0 &&
	    (r = rtnl_link_vxlan_set_port(l, NETCFG_VXLAN_PORT)) >= 0 &&
	    (r = rtnl_link_vxlan_set_learning(l, 0)) >= 0)
		r = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(l);
	nl_addr_put(local);
	if (r < 0)
		return nl_fail(err, r, "create vxlan %s (VNI %u)", name, st->vni);
	int idx = link_index(sk, name);
	if ((r = link_up(sk, name, br, err)) < 0 || (r = port_flags(sk, idx, name, err)) < 0) {
		struct vs_error e2;
		link_remove(sk, name, &e2);
		return r;
	}
	return 0;
}

struct nl_msg *fdb_msg(int cmd, int vx, const uint8_t mac[6], uint8_t ntf, uint32_t dst)
{
	struct ndmsg nd = {
	    .ndm_family = AF_BRIDGE,
	    .ndm_ifindex = vx,
	    .ndm_flags = ntf,
	    .ndm_state = ntf == NTF_SELF ? NUD_PERMANENT : NUD_NOARP,
	};
	int flags = cmd == RTM_NEWNEIGH ? NLM_F_CREATE | NLM_F_REPLACE : 0;
	struct nl_msg *m = nlmsg_alloc_simple(cmd, flags);
	uint32_t be = htonl(dst);
	if (!m || nlmsg_append(m, &nd, sizeof(nd), NLMSG_ALIGNTO) < 0 ||
	    nla_put(m, NDA_LLADDR, 6, mac) < 0 || (dst && nla_put(m, NDA_DST, 4, &be) < 0)) {
		nlmsg_free(m);
		return NULL;
	}
	return m;
}

int fdb_change(struct nl_sock *sk, int cmd, int vx, const uint8_t mac[6], uint8_t ntf, uint32_t dst,
	       struct vs_error *err)
{
	struct nl_msg *m = fdb_msg(cmd, vx, mac, ntf, dst);
	if (!m)
		return vs_error_set(err, ENOMEM, "fdb entry");
	char what[96], node[16];
	ipam_fmt(dst, node);
	snprintf(what, sizeof(what), "%s fdb %02x:%02x:%02x:%02x:%02x:%02x%s%s",
		 cmd == RTM_NEWNEIGH ? "set" : "delete", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5], dst ? " dst " : "", dst ? node : "");
	int r = nl_request(sk, m, what, err);
	/* Deleting what is already gone is done. */
	if (r < 0 && cmd == RTM_DELNEIGH && err->code == ENODEV)
		return 0;
	return r;
}

static int neigh_change(struct nl_sock *sk, bool add, int br, uint32_t ip, const uint8_t mac[6],
			struct vs_error *err)
{
	uint32_t be = htonl(ip);
	struct nl_addr *dst = nl_addr_build(AF_INET, &be, 4);
	struct nl_addr *ll = nl_addr_build(AF_LLC, mac, 6);
	struct rtnl_neigh *n = rtnl_neigh_alloc();
	if (!dst || !ll || !n)
		return vs_error_set(err, ENOMEM, "neighbour");
	rtnl_neigh_set_ifindex(n, br);
	rtnl_neigh_set_dst(n, dst);
	rtnl_neigh_set_lladdr(n, ll);
	rtnl_neigh_set_state(n, NUD_PERMANENT);
	int r =
	    add ? rtnl_neigh_add(sk, n, NLM_F_CREATE | NLM_F_REPLACE) : rtnl_neigh_delete(sk, n, 0);
	rtnl_neigh_put(n);
	nl_addr_put(dst);
	nl_addr_put(ll);
	if (r < 0 && !(!add && (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV))) {
		char a[16];
		ipam_fmt(ip, a);
		return nl_fail(err, r, "%s neighbour %s", add ? "set" : "delete", a);
	}
	return 0;
}

static bool mac_of(struct nl_addr *a, uint8_t mac[6])
{
	if (!a || nl_addr_get_len(a) != 6)
		return false;
	memcpy(mac, nl_addr_get_binary_addr(a), 6);
	return true;
}

/* Remove the vxlan port's entries that no active peer wants (or wants
 * elsewhere); then set every active peer's two entries. */
static int fdb_sync(struct nl_sock *sk, const struct ipam_state *st, int vx, struct vs_error *err)
{
	cleanup_nlcache struct nl_cache *fdb = NULL;
	/* AF_ITER: one dump per family the neighbour cache knows, AF_BRIDGE too. */
	int r = rtnl_neigh_alloc_cache_flags(sk, &fdb, NL_CACHE_AF_ITER);
	if (r < 0)
		return nl_fail(err, r, "list bridge fdb");
	for (struct nl_object *o = nl_cache_get_first(fdb); o; o = nl_cache_get_next(o)) {
		struct rtnl_neigh *n = (struct rtnl_neigh *)o;
		uint8_t mac[6];
		if (rtnl_neigh_get_family(n) != AF_BRIDGE || rtnl_neigh_get_ifindex(n) != vx ||
		    !mac_of(rtnl_neigh_get_lladdr(n), mac))
			continue;
		const struct ipam_peer *p = active_peer_by_mac(st, mac);
		struct nl_addr *dst = rtnl_neigh_get_dst(n);
		if (dst && nl_addr_get_len(dst) == 4) {
			/* the vxlan's own entry: MAC -> node */
			uint32_t be;
			memcpy(&be, nl_addr_get_binary_addr(dst), 4);
			if (!p || p->node != ntohl(be))
				r = fdb_change(sk, RTM_DELNEIGH, vx, mac, NTF_SELF, ntohl(be), err);
		} else if (rtnl_neigh_get_state(n) == NUD_NOARP && !p) {
			/* the bridge's static entry (not the port's own, permanent, MAC) */
			r = fdb_change(sk, RTM_DELNEIGH, vx, mac, NTF_MASTER, 0, err);
		}
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < st->n_peers; i++) {
		const struct ipam_peer *p = &st->peers[i];
		uint8_t mac[6];
		if (!overlay_peer_active(st, p))
			continue;
		lease_mac(p->ip, mac);
		if ((r = fdb_change(sk, RTM_NEWNEIGH, vx, mac, NTF_SELF, p->node, err)) < 0 ||
		    (r = fdb_change(sk, RTM_NEWNEIGH, vx, mac, NTF_MASTER, 0, err)) < 0)
			return r;
	}
	return 0;
}

/* The bridge's permanent neighbour entries are ours (the kernel makes none):
 * those of no active peer go, every active peer's is set. */
static int neigh_sync(struct nl_sock *sk, const struct ipam_state *st, int br, struct vs_error *err)
{
	cleanup_nlcache struct nl_cache *cache = NULL;
	int r = rtnl_neigh_alloc_cache(sk, &cache);
	if (r < 0)
		return nl_fail(err, r, "list neighbours");
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_neigh *n = (struct rtnl_neigh *)o;
		struct nl_addr *dst = rtnl_neigh_get_dst(n);
		uint8_t mac[6], want[6];
		uint32_t be;
		if (rtnl_neigh_get_ifindex(n) != br || rtnl_neigh_get_family(n) != AF_INET ||
		    !(rtnl_neigh_get_state(n) & NUD_PERMANENT) || !dst || nl_addr_get_len(dst) != 4)
			continue;
		memcpy(&be, nl_addr_get_binary_addr(dst), 4);
		lease_mac(ntohl(be), want);
		if (active_peer_by_ip(st, ntohl(be)) && mac_of(rtnl_neigh_get_lladdr(n), mac) &&
		    !memcmp(mac, want, 6))
			continue;
		if ((r = neigh_change(sk, false, br, ntohl(be), want, err)) < 0)
			return r;
	}
	for (size_t i = 0; i < st->n_peers; i++) {
		uint8_t mac[6];
		if (!overlay_peer_active(st, &st->peers[i]))
			continue;
		lease_mac(st->peers[i].ip, mac);
		if ((r = neigh_change(sk, true, br, st->peers[i].ip, mac, err)) < 0)
			return r;
	}
	return 0;
}

int overlay_sync(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err)
{
	char vx[IFNAMSIZ];
	overlay_devname(st, vx);
	int r;
	if ((r = vxlan_ensure(sk, st, vx, err)) < 0 ||
	    (r = fdb_sync(sk, st, link_index(sk, vx), err)) < 0 ||
	    (r = neigh_sync(sk, st, link_index(sk, st->bridge), err)) < 0)
		return vs_error_wrap(err, "overlay %s", vx);
	return 0;
}

int overlay_remove(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err)
{
	char vx[IFNAMSIZ];
	overlay_devname(st, vx);
	return vx[0] ? link_remove(sk, vx, err) : 0;
}

/* ---- the peer list ---- */

static char *peers_path(const char *root)
{
	return vs_xasprintf("%s/net/peers.json", root);
}

int overlay_peers_load(const char *root, struct ipam_state *st, struct vs_error *err)
{
	cleanup_free char *path = peers_path(root);
	cleanup_free char *text = NULL;
	size_t len;
	struct vs_error e2;
	if (vs_read_file(path, 16 << 20, &text, &len, &e2) < 0) {
		if (e2.code == ENOENT)
			return 0;
		*err = e2;
		return -err->code;
	}
	json_error_t je;
	cleanup_json json_t *j = json_loadb(text, len, 0, &je);
	json_t *peers = json_object_get(j, "peers"), *p;
	if (!json_is_array(peers))
		return vs_error_set(err, EINVAL, "%s: not a vslice peer list", path);
	st->peers = vs_xcalloc(json_array_size(peers) + 1, sizeof(*st->peers));
	size_t i;
	json_array_foreach(peers, i, p)
	{
		struct in_addr a, b;
		const char *ip = json_string_value(json_object_get(p, "ip"));
		const char *node = json_string_value(json_object_get(p, "node"));
		if (!ip || !node || inet_pton(AF_INET, ip, &a) != 1 ||
		    inet_pton(AF_INET, node, &b) != 1) {
			free(st->peers);
			st->peers = NULL;
			return vs_error_set(err, EINVAL, "%s: bad peer %zu", path, i);
		}
		st->peers[st->n_peers++] = (struct ipam_peer){ntohl(a.s_addr), ntohl(b.s_addr)};
	}
	return 0;
}

static int peers_save(const char *root, const struct ipam_peer *p, size_t n, struct vs_error *err)
{
	cleanup_free char *path = peers_path(root);
	if (n == 0) {
		if (unlink(path) < 0 && errno != ENOENT)
			return vs_error_sys(err, errno, "remove %s", path);
		return 0;
	}
	cleanup_json json_t *j = json_pack("{s:[]}", "peers");
	json_t *a = json_object_get(j, "peers");
	for (size_t i = 0; i < n; i++) {
		char ip[16], node[16];
		ipam_fmt(p[i].ip, ip);
		ipam_fmt(p[i].node, node);
		json_array_append_new(a, json_pack("{s:s, s:s}", "ip", ip, "node", node));
	}
	cleanup_free char *text = json_dumps(j, JSON_INDENT(1));
	if (!text)
		return vs_error_set(err, ENOMEM, "%s: encode", path);
	return vs_write_file_atomic(path, text, strlen(text), 0600, err);
}

static int peers_parse(const struct ipam_state *st, const struct netcfg_peer *in, size_t n,
		       struct ipam_peer *out, struct vs_error *err)
{
	for (size_t i = 0; i < n; i++) {
		char what[32], q[32];
		struct in_addr b;
		snprintf(what, sizeof(what), "peer %zu ip", i);
		if (ipam_slice_addr(st, in[i].ip, what, &out[i].ip, err) < 0)
			return -EINVAL;
		if (inet_pton(AF_INET, in[i].node, &b) != 1 || !b.s_addr ||
		    (ntohl(b.s_addr) >> 24) == 127 || (ntohl(b.s_addr) >> 28) >= 14)
			return vs_error_set(err, EINVAL,
					    "peer %zu node \"%s\": not a unicast IPv4 "
					    "address",
					    i, vs_printable(in[i].node, q, sizeof(q)));
		out[i].node = ntohl(b.s_addr);
		if (ipam_in_subnet(st, out[i].node))
			return vs_error_set(err, EINVAL,
					    "peer %zu node %s: inside the bridge subnet (the "
					    "underlay must not be the overlay)",
					    i, in[i].node);
		for (size_t k = 0; k < i; k++)
			if (out[k].ip == out[i].ip)
				return vs_error_set(err, EINVAL, "peer %zu ip %s: given twice", i,
						    in[i].ip);
	}
	return 0;
}

int netcfg_overlay_set_peers(const char *root, const struct netcfg_peer *peers, size_t n,
			     struct vs_error *err)
{
	struct netcfg_node node;
	int r = netcfg_node_config(&node, err);
	if (r < 0)
		return r;
	cleanup_close int lock = ipam_lock(root, err);
	if (lock < 0)
		return lock;
	struct ipam_state st;
	if ((r = ipam_load(root, &node, &st, err)) < 0)
		return vs_error_wrap(err, "overlay peers");
	if (!st.vni) {
		ipam_state_free(&st);
		return vs_error_set(err, EINVAL,
				    "overlay peers: no overlay on this node (VSLICE_OVERLAY_VNI, "
				    "VSLICE_OVERLAY_LOCAL)%s",
				    st.n ? ", and its bridged slices run without one" : "");
	}
	struct ipam_peer *want = vs_xcalloc(n + 1, sizeof(*want));
	if ((r = peers_parse(&st, peers, n, want, err)) < 0 ||
	    (r = overlay_peers_load(root, &st, err)) < 0) {
		free(want);
		ipam_state_free(&st);
		return vs_error_wrap(err, "overlay peers");
	}
	struct ipam_peer *old = st.peers;
	size_t n_old = st.n_peers;
	st.peers = want;
	st.n_peers = n;
	cleanup_nlsock struct nl_sock *sk = NULL;
	if ((r = peers_save(root, want, n, err)) >= 0 && st.n) {
		/* The node's bridge exists (it has slices): make the kernel agree. */
		/* Only the peer sets' elements change in the tables. */
		struct ipam_state was = st;
		was.peers = old;
		was.n_peers = n_old;
		if ((r = nl_open(&sk, err)) >= 0 && (r = overlay_sync(sk, &st, err)) >= 0 &&
		    (r = nft_update(&was, &st, NULL, NULL, err)) >= 0)
			r = fast_peers(root, sk, &st, err);
		if (r < 0) {
			struct vs_error e2;
			st.peers = old;
			st.n_peers = n_old;
			peers_save(root, old, n_old, &e2);
			if (sk && overlay_sync(sk, &st, &e2) >= 0)
				nft_sync(&st, &e2);
			st.peers = want;
			st.n_peers = n;
		}
	}
	free(old);
	ipam_state_free(&st);
	return r < 0 ? vs_error_wrap(err, "overlay peers") : 0;
}

int netcfg_overlay_get_peers(const char *root, struct netcfg_peer **out, size_t *n,
			     struct vs_error *err)
{
	struct ipam_state st = {0};
	*out = NULL;
	*n = 0;
	int r = overlay_peers_load(root, &st, err);
	if (r < 0)
		return r;
	*out = vs_xcalloc(st.n_peers + 1, sizeof(**out));
	for (size_t i = 0; i < st.n_peers; i++) {
		ipam_fmt(st.peers[i].ip, (*out)[i].ip);
		ipam_fmt(st.peers[i].node, (*out)[i].node);
	}
	*n = st.n_peers;
	ipam_state_free(&st);
	return 0;
}
