/*
 * netcfg.c - bridged slice networking put together: the order of attach and
 * detach, the node-wide objects' life (made with the first lease, removed
 * with the last), stale cleanup, counters, and the parsers the CLI and the
 * manifest share. See include/vslice/netcfg.h for the contract and the
 * other files of lib/netcfg for each mechanism.
 *
 * attach, under the node's lease lock, in steps (netcfg_attach_begin while
 * the launcher still builds the sandbox, _netns once the slice's network
 * namespace exists, _files once its root is mounted, _finish; the lock is
 * held from the first to the last, and _abort undoes the steps made):
 *   begin: stale leases (slices gone) released -> [first lease: subnet clash
 *   check] -> lease (saved before any device, so a crash half way leaves
 *   something stale cleanup finds; not rewritten when unchanged) ->
 *   ip_forward if the slice needs it -> [first lease: bridge] -> nft (first
 *   lease: both tables whole; else the slice's elements only; by interface
 *   name, so before the veth: its first frame already meets them).
 *   netns: veth (one request: host end up as a bridge port, peer born in
 *   the slice's namespace; a static fdb entry for the slice's MAC) -> tc
 *   caps -> [overlay: vxlan port, forwarding and neighbour entries] -> slice
 *   side (lo and eth0 up, address, default route: one sendmsg on a socket
 *   made in the slice's namespace). files: /etc/resolv.conf + /etc/hosts.
 * detach/cleanup: ifb -> elements (the batch answered; the leftover veth and
 *   the batch socket's close, both waiting for RCU, in a detached process)
 *   -> [last lease: every port, vxlan, bridge, tables, ip_forward back to
 *   what it was] -> lease file.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netlink/route/link.h>

#include "netcfg_int.h"
#include "vslice/trace.h"
#include "vslice/units.h"
#include "vslice/util.h"

static int overlay_config(struct netcfg_node *node, struct vs_error *err)
{
	const char *vni = getenv("VSLICE_OVERLAY_VNI");
	const char *local = getenv("VSLICE_OVERLAY_LOCAL");
	char p[32];
	node->vni = 0;
	node->underlay[0] = '\0';
	if ((!vni || !*vni) && (!local || !*local))
		return 0;
	if (!vni || !*vni || !local || !*local)
		return vs_error_set(
		    err, EINVAL,
		    "VSLICE_OVERLAY_VNI and VSLICE_OVERLAY_LOCAL: set both or neither");
	char *end;
	errno = 0;
	unsigned long v = strtoul(vni, &end, 10);
	if (!isdigit((unsigned char)*vni) || *end || errno || v < 1 || v > 0xffffff)
		return vs_error_set(
		    err, EINVAL, "VSLICE_OVERLAY_VNI \"%s\": expected a number from 1 to 16777215",
		    vs_printable(vni, p, sizeof(p)));
	struct in_addr in;
	if (strlen(local) >= sizeof(node->underlay) || inet_pton(AF_INET, local, &in) != 1)
		return vs_error_set(
		    err, EINVAL, "VSLICE_OVERLAY_LOCAL \"%s\": expected this node's IPv4 address",
		    vs_printable(local, p, sizeof(p)));
	node->vni = (uint32_t)v;
	snprintf(node->underlay, sizeof(node->underlay), "%s", local);
	return 0;
}

int netcfg_node_config(struct netcfg_node *node, struct vs_error *err)
{
	const char *br = getenv("VSLICE_BRIDGE");
	const char *sub = getenv("VSLICE_BRIDGE_SUBNET");
	int r = overlay_config(node, err);
	if (r < 0)
		return r;
	if (!br || !*br)
		br = NETCFG_DEFAULT_BRIDGE;
	if (!sub || !*sub)
		sub = node->vni ? NETCFG_OVERLAY_SUBNET : NETCFG_DEFAULT_SUBNET;
	size_t n = strlen(br);
	bool ok = n > 0 && n < IFNAMSIZ;
	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)br[i]) || br[i] == '-' || br[i] == '_';
	if (!ok || !strncmp(br, NETCFG_VETH_PREFIX, 3) || !strncmp(br, NETCFG_IFB_PREFIX, 3))
		return vs_error_set(err, EINVAL,
				    "VSLICE_BRIDGE \"%.32s\": expected 1-15 of [A-Za-z0-9_-], "
				    "not starting with vsh/vsi",
				    br);
	uint32_t net;
	unsigned prefix;
	if (strlen(sub) >= NETCFG_SUBNET_MAX || ipam_parse_subnet(sub, &net, &prefix, err) < 0)
		return vs_error_set(err, EINVAL,
				    "VSLICE_BRIDGE_SUBNET \"%.40s\": expected an IPv4 A.B.C.D/N "
				    "with N from 16 to 29",
				    sub);
	snprintf(node->bridge, sizeof(node->bridge), "%s", br);
	snprintf(node->subnet, sizeof(node->subnet), "%s", sub);
	return 0;
}

int netcfg_parse_mode(const char *s, bool *is_bridge, struct netcfg_slice *opts,
		      struct vs_error *err)
{
	char p[64];
	*is_bridge = false;
	opts->no_egress = false;
	opts->ip[0] = '\0';
	if (!strcmp(s, "none") || !strcmp(s, "host"))
		return 0;
	/* bridge[,egress|,no-egress][,ip=A.B.C.D] */
	const char *ip = strstr(s, ",ip=");
	size_t mode_len = ip ? (size_t)(ip - s) : strlen(s);
	if (ip) {
		struct in_addr in;
		ip += 4;
		if (strlen(ip) >= sizeof(opts->ip) || inet_pton(AF_INET, ip, &in) != 1)
			return vs_error_set(err, EINVAL, "network \"%s\": ip=: not an IPv4 address",
					    vs_printable(s, p, sizeof(p)));
	}
	if (!strncmp(s, "bridge", mode_len) && mode_len == 6)
		*is_bridge = true;
	else if (mode_len == 13 && !strncmp(s, "bridge,egress", mode_len))
		*is_bridge = true;
	else if (mode_len == 16 && !strncmp(s, "bridge,no-egress", mode_len))
		*is_bridge = opts->no_egress = true;
	else
		return vs_error_set(err, EINVAL,
				    "network \"%s\": expected none, host, or bridge[,no-egress]"
				    "[,ip=A.B.C.D]",
				    vs_printable(s, p, sizeof(p)));
	if (ip)
		snprintf(opts->ip, sizeof(opts->ip), "%s", ip);
	return 0;
}

static int parse_port(const char *s, const char *end, uint16_t *out)
{
	unsigned long v = 0;
	if (s == end || end - s > 5)
		return -1;
	for (const char *c = s; c < end; c++) {
		if (!isdigit((unsigned char)*c))
			return -1;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int netcfg_parse_publish(const char *s, struct netcfg_publish *p, struct vs_error *err)
{
	const char *colon = strchr(s, ':');
	const char *slash = strchr(s, '/');
	const char *end = slash ? slash : s + strlen(s);
	memset(p, 0, sizeof(*p));
	if (slash && strcmp(slash, "/tcp") && strcmp(slash, "/udp"))
		goto bad;
	if (!colon || colon > end || parse_port(s, colon, &p->host_port) < 0 ||
	    parse_port(colon + 1, end, &p->slice_port) < 0)
		goto bad;
	p->udp = slash && !strcmp(slash, "/udp");
	return 0;
bad:;
	char q[64];
	return vs_error_set(err, EINVAL,
			    "publish \"%s\": expected HOSTPORT:SLICEPORT[/tcp|/udp], ports 1-65535",
			    vs_printable(s, q, sizeof(q)));
}

static const struct {
	const char *suffix;
	uint64_t mult; /* bit/s per unit */
} rate_units[] = {
    {"gbit", 1000000000ULL},
    {"mbit", 1000000ULL},
    {"kbit", 1000ULL},
    {"bit", 1},
    {"gbps", 8000000000ULL},
    {"mbps", 8000000ULL},
    {"kbps", 8000ULL},
    {"bps", 8},
    {"", 1},
};

/* TBF takes bytes/s as a 32-bit int; below 8 kbit/s a frame takes seconds. */
#define RATE_MIN 8000ULL
#define RATE_MAX 16000000000ULL

int netcfg_parse_rate(const char *s, uint64_t *bps, struct vs_error *err)
{
	char *end;
	char q[64];
	errno = 0;
	unsigned long long v = isdigit((unsigned char)*s) ? strtoull(s, &end, 10) : 0;
	if (!isdigit((unsigned char)*s) || errno)
		goto bad;
	for (size_t i = 0; i < VS_ARRAY_SIZE(rate_units); i++) {
		if (strcasecmp(end, rate_units[i].suffix))
			continue;
		if (v > RATE_MAX / rate_units[i].mult || v * rate_units[i].mult < RATE_MIN ||
		    v * rate_units[i].mult > RATE_MAX)
			return vs_error_set(err, ERANGE,
					    "rate \"%s\": must be from 8kbit to 16gbit",
					    vs_printable(s, q, sizeof(q)));
		*bps = v * rate_units[i].mult;
		return 0;
	}
bad:
	return vs_error_set(err, EINVAL,
			    "rate \"%s\": expected a number with kbit, mbit, gbit (bits) or "
			    "kbps, mbps, gbps (bytes) per second",
			    vs_printable(s, q, sizeof(q)));
}

const char *netcfg_format_rate(uint64_t bps, char *buf, size_t len)
{
	if (bps && bps % 1000000000ULL == 0)
		snprintf(buf, len, "%" PRIu64 "gbit", (uint64_t)(bps / 1000000000ULL));
	else if (bps && bps % 1000000ULL == 0)
		snprintf(buf, len, "%" PRIu64 "mbit", (uint64_t)(bps / 1000000ULL));
	else if (bps && bps % 1000ULL == 0)
		snprintf(buf, len, "%" PRIu64 "kbit", (uint64_t)(bps / 1000ULL));
	else
		snprintf(buf, len, "%" PRIu64 "bit", bps);
	return buf;
}

/* detach, cleanup and stats have nothing to do on a node without leases
 * (every slice destroy asks): no lock file made, no netlink socket opened.
 * With leases, the file's bridge and subnet are the ones used, whatever the
 * environment says now. */
static bool no_leases(const char *root, struct netcfg_node *node)
{
	struct vs_error ignore;
	cleanup_free char *path = vs_xasprintf("%s/net/leases.json", root);
	if (access(path, F_OK) != 0)
		return true;
	if (netcfg_node_config(node, &ignore) < 0) {
		snprintf(node->bridge, sizeof(node->bridge), NETCFG_DEFAULT_BRIDGE);
		snprintf(node->subnet, sizeof(node->subnet), NETCFG_DEFAULT_SUBNET);
	}
	return false;
}

static void nl_cachep(struct nl_cache **c)
{
	if (*c)
		nl_cache_free(*c);
}

/* Delete the vsh* ports of the node's bridge that no lease of st names.
 * Only ports of our own bridge: another vslice root on this network
 * namespace has its own bridge, and its devices are not ours to judge.
 * (Every path that removes a lease removes its ifb first, so no ifb is
 * left without a lease.) */
static int ports_sweep(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err)
{
	__attribute__((cleanup(nl_cachep))) struct nl_cache *links = NULL;
	int r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links);
	if (r < 0)
		return nl_fail(err, r, "list links");
	int br = link_index(sk, st->bridge);
	for (struct nl_object *o = nl_cache_get_first(links); o && r >= 0 && br;
	     o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *n = rtnl_link_get_name(l);
		if (!n || strncmp(n, NETCFG_VETH_PREFIX, 3) || rtnl_link_get_master(l) != br)
			continue;
		bool known = false;
		for (size_t i = 0; i < st->n && !known; i++)
			known = !strcmp(st->leases[i].veth, n);
		if (!known)
			r = link_remove(sk, n, err);
	}
	return r < 0 ? r : 0;
}

/* The node-wide objects, once the last lease is gone. The ports still on
 * the bridge (a veth whose removal is under way in the background, one of
 * a namespace the kernel has not finished tearing down) go first, here and
 * now: after the last detach nothing of ours is left. */
static int node_teardown(struct nl_sock *sk, struct ipam_state *st, struct vs_error *err)
{
	int r;
	if ((r = ports_sweep(sk, st, err)) < 0 || (r = overlay_remove(sk, st, err)) < 0 ||
	    (r = link_remove(sk, st->bridge, err)) < 0 || (r = nft_sync(st, err)) < 0)
		return r;
	if (st->forward_was == 0 && (r = sysctl_forward(0, NULL, err)) < 0)
		return r;
	st->forward_was = -1;
	return 0;
}

static int devices_remove(struct nl_sock *sk, const struct ipam_lease *l, struct vs_error *err)
{
	int r;
	if ((r = link_remove(sk, l->veth, err)) < 0 || (r = link_remove(sk, l->ifb, err)) < 0)
		return vs_error_wrap(err, "slice %s", l->name);
	return 0;
}

/* Whether a lease is what the file already says (a slice started again
 * with the same settings): then the file is not written. */
static bool lease_same(const struct ipam_lease *a, const struct ipam_lease *b)
{
	if (a->ip != b->ip || a->want.no_egress != b->want.no_egress ||
	    a->want.rate_bps != b->want.rate_bps || a->want.n_publish != b->want.n_publish)
		return false;
	for (size_t k = 0; k < a->want.n_publish; k++)
		if (a->want.publish[k].host_port != b->want.publish[k].host_port ||
		    a->want.publish[k].slice_port != b->want.publish[k].slice_port ||
		    a->want.publish[k].udp != b->want.publish[k].udp)
			return false;
	return true;
}

static int publish_conflict(const struct ipam_state *st, const char *name,
			    const struct netcfg_slice *s, struct vs_error *err)
{
	for (size_t k = 0; k < s->n_publish; k++) {
		const struct netcfg_publish *p = &s->publish[k];
		for (size_t k2 = 0; k2 < k; k2++)
			if (s->publish[k2].host_port == p->host_port &&
			    s->publish[k2].udp == p->udp)
				return vs_error_set(err, EINVAL, "publish: port %u/%s given twice",
						    p->host_port, p->udp ? "udp" : "tcp");
		for (size_t i = 0; i < st->n; i++) {
			const struct ipam_lease *o = &st->leases[i];
			if (!strcmp(o->name, name))
				continue;
			for (size_t j = 0; j < o->want.n_publish; j++)
				if (o->want.publish[j].host_port == p->host_port &&
				    o->want.publish[j].udp == p->udp) {
					vs_error_set(err, EADDRINUSE,
						     "publish: port %u/%s is published by slice %s",
						     p->host_port, p->udp ? "udp" : "tcp", o->name);
					return vs_error_kind(err, VS_EK_BUSY);
				}
		}
	}
	return 0;
}

/* The node's lease file locked and loaded, and a netlink socket: what every
 * change works under. On failure nothing is left open or loaded (the lock
 * and socket go with the caller's cleanup attributes). */
static int state_open(const char *root, const struct netcfg_node *node, int *lock,
		      struct ipam_state *st, struct nl_sock **sk, struct vs_error *err)
{
	*lock = ipam_lock(root, err);
	if (*lock < 0)
		return *lock;
	int r = ipam_load(root, node, st, err);
	if (r < 0)
		return r;
	if ((r = overlay_peers_load(root, st, err)) < 0 || (r = nl_open(sk, err)) < 0)
		ipam_state_free(st);
	return r;
}

/* The first half of an attach, under the node's lease lock: a change of
 * many in flight (netcfg_attach_begin .. _finish or _abort). */
struct netcfg_pending {
	char *root;
	char name[SLICE_NAME_MAX];
	struct netcfg_slice want;
	char *hostname;
	int lock;
	struct nl_sock *sk;
	struct ipam_state st, old;
	bool had;  /* the slice held its lease before this attach */
	bool made; /* attach_host changed something (attach_undo has work) */
	int bridge;
	/* The nfnetlink socket of the attach's element batch, closed only
	 * when the attach ends (finish, after the launcher was told to go on):
	 * its close waits, under nf_tables' commit mutex, for the freeing of
	 * what an earlier batch deleted (a destroy's, an RCU grace period
	 * later), which took up to 5 ms of a start right after a destroy. */
	int nft_fd;
};

/* Undo what this attach made; a lease held before stays (the slice keeps
 * its address), with the node's tables as they were. */
static void attach_undo(struct netcfg_pending *p)
{
	struct ipam_state *st = &p->st;
	struct vs_error e2;
	struct ipam_lease *l = ipam_find(st, p->name);
	if (l)
		devices_remove(p->sk, l, &e2);
	struct ipam_state made;
	ipam_state_copy(&made, st);
	if (!p->had)
		ipam_release(st, p->name);
	if (st->n == 0) {
		node_teardown(p->sk, st, &e2);
		fast_teardown(p->root);
	} else {
		if (st->vni)
			overlay_sync(p->sk, st, &e2);
		/* The slice's elements only (the tables stay, as for a detach);
		 * whole when the batch is refused (the elements were never
		 * added: the failure came before them). */
		nft_update(&made, st, NULL, NULL, &e2);
	}
	ipam_state_free(&made);
	ipam_save(p->root, st, &e2);
}

/* The steps that need no slice namespace: lease, ip_forward, bridge, nft
 * elements (by interface name: the veth need not exist yet). */
static int attach_host(struct netcfg_pending *p, struct vs_error *err)
{
	struct ipam_state *st = &p->st;
	const struct netcfg_slice *s = &p->want;
	struct nl_sock *sk = p->sk;
	const char *name = p->name;
	int r;
	bool fresh = st->n == 0;
	if (fresh) {
		if (link_index(sk, st->bridge))
			return vs_error_set(err, EEXIST,
					    "bridge %s exists but no vslice lease names it: not "
					    "ours (set VSLICE_BRIDGE)",
					    st->bridge);
		if ((r = ipam_check_clash(sk, st->net, st->prefix, st->bridge, err)) < 0 ||
		    (r = overlay_check(sk, st, err)) < 0)
			return r;
	}
	if ((r = publish_conflict(st, name, s, err)) < 0)
		return r;
	uint32_t want = 0;
	if (s->ip[0] && (r = ipam_slice_addr(st, s->ip, "ip=", &want, err)) < 0)
		return r;
	if (st->vni && !want)
		return vs_error_set(
		    err, EINVAL,
		    "the overlay (VSLICE_OVERLAY_VNI) needs a cluster-wide address: "
		    "--net bridge,ip=A.B.C.D");
	struct ipam_lease *l = ipam_find(st, name);
	p->had = l != NULL;
	/* The fast path's entry of the address held so far (a restart: it
	 * names the last run's veth) goes, and so does the one of the address
	 * taken below (a slice that moved here: out of the overlay): until
	 * the new run's is set (after the start, netcfg_fast_later), frames
	 * for this slice take the bridge. */
	uint32_t held = l ? l->ip : 0;
	if (l && (r = fast_forget(p->root, held, err)) < 0)
		return r;
	if (l && want && l->ip != want) {
		/* The slice was given another address: take it if it is free. */
		if ((r = ipam_check_free(st, want, err)) < 0)
			return r;
		l->ip = want;
	}
	if (!l && (r = ipam_alloc(st, name, want, &l, err)) < 0)
		return r;
	if (l->ip != held && (r = fast_forget(p->root, l->ip, err)) < 0)
		return r;
	/* From here on a failure has something to undo (before: nothing of
	 * ours changed, and a bridge or tables seen may not be ours). */
	p->made = true;
	l->want = *s;
	l->want.hostname = NULL;
	int forward_was = st->forward_was;
	if ((!s->no_egress || s->n_publish) && st->forward_was < 0) {
		int prev;
		if ((r = sysctl_forward(1, &prev, err)) < 0)
			return r;
		st->forward_was = prev ? -1 : 0;
	}
	/* Saved before any device is made (a crash half way leaves a lease for
	 * stale cleanup to find); not rewritten when it says this already. */
	const struct ipam_lease *was = p->had ? ipam_find(&p->old, name) : NULL;
	if ((!was || !lease_same(was, l) || forward_was != st->forward_was) &&
	    (r = ipam_save(p->root, st, err)) < 0)
		return r;
	vs_trace("net.lease");
	/* The node-wide objects once, with the first lease (or when something
	 * removed the bridge behind our back: then the tables are made whole
	 * again too). */
	int br = fresh ? 0 : link_index(sk, st->bridge);
	bool remade = !br;
	if (!br && ((r = bridge_ensure(sk, st, err)) < 0 || !(br = link_index(sk, st->bridge)))) {
		if (r >= 0)
			r = vs_error_set(err, ENODEV, "bridge %s: gone", st->bridge);
		return r;
	}
	p->bridge = br;
	vs_trace("net.bridge");
	/* The filters before the veth exists: the slice's first frame already
	 * meets them. */
	if ((r = remade ? nft_sync(st, err) : nft_update(&p->old, st, name, &p->nft_fd, err)) < 0)
		return r;
	vs_trace("net.nft");
	return 0;
}

/* The steps in and for the slice's namespace: veth, caps, overlay entries,
 * lo, eth0's link, address and route. */
static int attach_netns(struct netcfg_pending *p, int netns_fd, int nl_fd, struct vs_error *err)
{
	struct ipam_state *st = &p->st;
	struct ipam_lease *l = ipam_find(st, p->name);
	int r, host_ifindex, eth0_ifindex;
	/* A lease held before may have left its devices (a veth whose
	 * namespace the kernel has not finished tearing down, the ifb of a
	 * cap): gone first. A fresh lease has none, unless a lost lease file
	 * left one under its name: then the create says EEXIST, and it is
	 * removed and the create tried once more. */
	if (p->had && (r = devices_remove(p->sk, l, err)) < 0)
		return r;
	r = veth_create(p->sk, st, l, p->bridge, netns_fd, &host_ifindex, &eth0_ifindex, err);
	if (r < 0 && !p->had && err->code == EEXIST && (r = devices_remove(p->sk, l, err)) >= 0)
		r = veth_create(p->sk, st, l, p->bridge, netns_fd, &host_ifindex, &eth0_ifindex,
				err);
	if (r < 0)
		return r;
	vs_trace("net.veth");
	/* With the overlay, every start makes the forwarding and neighbour
	 * entries what the peer list says (entries left by a crash go). */
	if ((r = tc_cap(p->sk, l, err)) < 0 || (st->vni && (r = overlay_sync(p->sk, st, err)) < 0))
		return r;
	vs_trace("net.tc_overlay");
	if ((r = slice_side_config(netns_fd, nl_fd, st, l, eth0_ifindex, err)) < 0)
		return r;
	vs_trace("net.slice_side");
	return 0;
}

/* The slice's /etc files. */
static int attach_files(struct netcfg_pending *p, int rootfs_fd, uid_t owner, struct vs_error *err)
{
	struct ipam_lease *l = ipam_find(&p->st, p->name);
	char ip[16];
	ipam_fmt(l->ip, ip);
	int r;
	if (rootfs_fd >= 0 &&
	    (r = etc_files_write(rootfs_fd, owner, p->hostname ? p->hostname : p->name, ip, err)) <
		0)
		return r;
	vs_trace("net.etc");
	return 0;
}

static void pending_free(struct netcfg_pending *p)
{
	ipam_state_free(&p->old);
	ipam_state_free(&p->st);
	if (p->sk)
		nl_socket_free(p->sk);
	if (p->lock >= 0)
		close(p->lock);
	if (p->nft_fd >= 0)
		close(p->nft_fd);
	free(p->hostname);
	free(p->root);
	free(p);
}

static int stale_release_locked(const char *root, struct ipam_state *st, struct nl_sock *sk,
				bool (*is_alive)(const char *name, void *arg), void *arg,
				const char *keep, struct vs_error *err);

int netcfg_attach_begin(const char *root, const char *name, const struct netcfg_slice *s,
			bool (*is_alive)(const char *name, void *arg), void *arg,
			struct netcfg_pending **out, struct vs_error *err)
{
	struct netcfg_node node;
	*out = NULL;
	int r = netcfg_node_config(&node, err);
	if (r < 0)
		return vs_error_wrap(err, "slice %s: network", name);
	struct netcfg_pending *p = vs_xcalloc(1, sizeof(*p));
	p->root = vs_xstrdup(root);
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->want = *s;
	p->hostname = s->hostname ? vs_xstrdup(s->hostname) : NULL;
	p->want.hostname = p->hostname;
	p->lock = -1;
	p->nft_fd = -1;
	vs_trace("net.begin");
	if ((r = state_open(root, &node, &p->lock, &p->st, &p->sk, err)) < 0) {
		pending_free(p);
		return vs_error_wrap(err, "slice %s: network", name);
	}
	vs_trace("net.locked");
	/* Stale leases under the same lock and load as the attach (what
	 * netcfg_cleanup_stale does, without a second lock and load). */
	if (is_alive &&
	    (r = stale_release_locked(root, &p->st, p->sk, is_alive, arg, name, err)) < 0) {
		pending_free(p);
		return vs_error_wrap(err, "network cleanup");
	}
	vs_trace("net.stale");
	ipam_state_copy(&p->old, &p->st);
	if ((r = attach_host(p, err)) < 0) {
		if (p->made)
			attach_undo(p);
		pending_free(p);
		return vs_error_wrap(err, "slice %s: network", name);
	}
	*out = p;
	return 0;
}

int netcfg_attach_netns(struct netcfg_pending *p, int netns_fd, int nl_fd, struct vs_error *err)
{
	int r = attach_netns(p, netns_fd, nl_fd, err);
	return r < 0 ? vs_error_wrap(err, "slice %s: network", p->name) : 0;
}

int netcfg_attach_files(struct netcfg_pending *p, int rootfs_fd, uid_t owner, struct vs_error *err)
{
	int r = attach_files(p, rootfs_fd, owner, err);
	return r < 0 ? vs_error_wrap(err, "slice %s: network", p->name) : 0;
}

void netcfg_attach_finish(struct netcfg_pending *p, struct netcfg_lease *out)
{
	if (out) {
		const struct ipam_state *st = &p->st;
		const struct ipam_lease *l = ipam_find(&p->st, p->name);
		memset(out, 0, sizeof(*out));
		ipam_fmt(l->ip, out->ip);
		ipam_fmt(ipam_gateway(st), out->gateway);
		out->prefix = st->prefix;
		snprintf(out->host_veth, sizeof(out->host_veth), "%s", l->veth);
	}
	pending_free(p);
}

void netcfg_attach_abort(struct netcfg_pending *p)
{
	if (!p)
		return;
	attach_undo(p);
	pending_free(p);
}

int netcfg_attach(const char *root, const char *name, const struct netcfg_slice *s, int netns_fd,
		  int rootfs_fd, uid_t owner, struct netcfg_lease *lease, struct vs_error *err)
{
	struct netcfg_pending *p;
	int r = netcfg_attach_begin(root, name, s, NULL, NULL, &p, err);
	if (r < 0)
		return r;
	if ((r = netcfg_attach_netns(p, netns_fd, -1, err)) < 0 ||
	    (r = netcfg_attach_files(p, rootfs_fd, owner, err)) < 0) {
		netcfg_attach_abort(p);
		return r;
	}
	netcfg_attach_finish(p, lease);
	return 0;
}

/* later == NULL: the leftover veth and the batch socket go to a detached
 * process of their own; else to the caller's (netcfg_detach_later). */
static int release_locked(const char *root, struct ipam_state *st, struct nl_sock *sk,
			  const char *name, struct netcfg_later *later, struct vs_error *err)
{
	struct ipam_lease *l = ipam_find(st, name);
	int r;
	if (!l)
		return 0;
	/* The ifb (a capped slice) at once: it is no bridge port, and the last
	 * detach's sweep would not find it. The veth is usually gone already
	 * with the slice's namespace; one that is left goes in the background,
	 * after its filter elements (a veth that lingers a moment carries
	 * nothing). */
	if ((r = link_remove(sk, l->ifb, err)) < 0 || (r = fast_forget(root, l->ip, err)) < 0)
		return vs_error_wrap(err, "slice %s", name);
	const char *names[] = {l->veth};
	int rm[1];
	size_t n_rm = link_indexes(sk, names, 1, rm);
	vs_trace("net.d.devices");
	struct ipam_state old;
	ipam_state_copy(&old, st);
	ipam_release(st, name);
	if (st->n == 0) {
		r = node_teardown(sk, st, err);
		fast_teardown(root);
	} else if (!st->vni || !overlay_active_changed(&old, st) ||
		   ((r = overlay_sync(sk, st, err)) >= 0 &&
		    (r = fast_peers(root, sk, st, err)) >= 0)) {
		int keep = -1;
		if ((r = nft_update(&old, st, NULL, &keep, err)) < 0) {
			if (keep >= 0)
				close(keep);
		} else if (later) {
			later->fd = keep;
			later->veth = n_rm ? rm[0] : 0;
		} else {
			r = links_remove_detached(rm, n_rm, keep, err);
		}
	}
	ipam_state_free(&old);
	if (r < 0)
		return r;
	vs_trace("net.d.nft");
	return ipam_save(root, st, err);
}

int netcfg_detach(const char *root, const char *name, struct vs_error *err)
{
	return netcfg_detach_later(root, name, NULL, err);
}

void netcfg_later_run(const struct netcfg_later *later)
{
	if (later->veth)
		links_delete_index(&later->veth, 1);
}

void netcfg_later_release(struct netcfg_later *later)
{
	if (later->fd >= 0)
		close(later->fd);
	later->fd = -1;
	later->veth = 0;
}

int netcfg_later_detached(struct netcfg_later *later, struct vs_error *err)
{
	int fd = later->fd;
	int r = links_remove_detached(&later->veth, later->veth ? 1 : 0, fd, err);
	later->fd = -1; /* closed or handed on by links_remove_detached */
	later->veth = 0;
	return r;
}

int netcfg_detach_later(const char *root, const char *name, struct netcfg_later *later,
			struct vs_error *err)
{
	if (later)
		*later = (struct netcfg_later){.fd = -1};
	struct netcfg_node node;
	int r;
	if (no_leases(root, &node))
		return 0;
	cleanup_close int lock = -1;
	struct ipam_state st;
	cleanup_nlsock struct nl_sock *sk = NULL;
	if ((r = state_open(root, &node, &lock, &st, &sk, err)) < 0)
		return vs_error_wrap(err, "slice %s: network", name);
	vs_trace("net.d.locked");
	r = release_locked(root, &st, sk, name, later, err);
	ipam_state_free(&st);
	return r < 0 ? vs_error_wrap(err, "slice %s: network", name) : 0;
}

/* The detached process of netcfg_fast_later. */
struct fast_later {
	const char *root, *name;
};

static void fast_later_run(void *arg)
{
	const struct fast_later *a = arg;
	struct netcfg_node node;
	struct vs_error err;
	if (no_leases(a->root, &node))
		return;
	struct fast_todo todo = {.prog = -1};
	{
		cleanup_close int lock = -1;
		struct ipam_state st;
		cleanup_nlsock struct nl_sock *sk = NULL;
		if (state_open(a->root, &node, &lock, &st, &sk, &err) < 0)
			return;
		int r = fast_prepare(a->root, sk, &st, a->name, &todo, &err);
		ipam_state_free(&st);
		if (r < 0) {
			fast_todo_free(&todo);
			return;
		}
	}
	(void)fast_hook(&todo, &err);
	fast_todo_free(&todo);
}

int netcfg_fast_later(const char *root, const char *name, struct vs_error *err)
{
	if (!fast_enabled())
		return 0;
	struct fast_later a = {root, name};
	int r = vs_spawn_detached(fast_later_run, &a, -1);
	return r < 0 ? vs_error_sys(err, -r, "fork") : 0;
}

/* Release every lease but keep's whose slice is_alive says is gone; then
 * the bridge's ports no lease names. */
static int stale_release_locked(const char *root, struct ipam_state *st, struct nl_sock *sk,
				bool (*is_alive)(const char *name, void *arg), void *arg,
				const char *keep, struct vs_error *err)
{
	int r = 0;
	bool released = false;
	for (size_t i = 0; i < st->n && r >= 0;) {
		if ((keep && !strcmp(st->leases[i].name, keep)) ||
		    is_alive(st->leases[i].name, arg)) {
			i++;
			continue;
		}
		char name[SLICE_NAME_MAX];
		snprintf(name, sizeof(name), "%s", st->leases[i].name);
		r = release_locked(root, st, sk, name, NULL, err);
		released = true;
	}
	/* Ports no lease names: the devices of what was just released that
	 * linger (their removal is under way), or left by a lost lease file.
	 * Not on every start: the lease goes after its devices on every path. */
	if (r >= 0 && released && st->n)
		r = ports_sweep(sk, st, err);
	return r < 0 ? r : 0;
}

int netcfg_cleanup_stale(const char *root, bool (*is_alive)(const char *name, void *arg), void *arg,
			 struct vs_error *err)
{
	struct netcfg_node node;
	int r;
	if (no_leases(root, &node))
		return 0;
	cleanup_close int lock = -1;
	struct ipam_state st;
	cleanup_nlsock struct nl_sock *sk = NULL;
	if ((r = state_open(root, &node, &lock, &st, &sk, err)) < 0)
		return vs_error_wrap(err, "network cleanup");
	r = stale_release_locked(root, &st, sk, is_alive, arg, NULL, err);
	ipam_state_free(&st);
	vs_trace("net.stale");
	return r < 0 ? vs_error_wrap(err, "network cleanup") : 0;
}

int netcfg_stats(const char *root, const char *name, struct netcfg_stats *out, struct vs_error *err)
{
	struct netcfg_node node;
	int r;
	memset(out, 0, sizeof(*out));
	if (no_leases(root, &node))
		return vs_error_set(err, ENOENT, "slice %s: no bridge lease", name);
	cleanup_close int lock = -1;
	struct ipam_state st;
	cleanup_nlsock struct nl_sock *sk = NULL;
	if ((r = state_open(root, &node, &lock, &st, &sk, err)) < 0)
		return r;
	struct ipam_lease *l = ipam_find(&st, name);
	if (!l) {
		ipam_state_free(&st);
		return vs_error_set(err, ENOENT, "slice %s: no bridge lease", name);
	}
	ipam_fmt(l->ip, out->ip);
	out->rate_bps = l->want.rate_bps;
	struct rtnl_link *link = NULL;
	if (rtnl_link_get_kernel(sk, 0, l->veth, &link) >= 0) {
		/* The host end receives what the slice sends, and vice versa. */
		out->attached = true;
		out->tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES);
		out->tx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS);
		out->rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES);
		out->rx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS);
		/* Plus what the fast path put past the host end. */
		uint64_t b, n;
		fast_counters(root, l, rtnl_link_get_ifindex(link), &b, &n);
		out->rx_bytes += b;
		out->rx_packets += n;
		rtnl_link_put(link);
	}
	ipam_state_free(&st);
	return 0;
}
