/*
 * ipam.c - the node's address management for bridged slices.
 *
 * One file, <root>/net/leases.json, says which slice holds which address of
 * the bridge subnet, what it asked for (egress, published ports, rate) and
 * whether we turned ip_forward on. It is only read and written under an
 * exclusive flock on <root>/net/lock, replaced atomically (temp + rename;
 * no fsync, see ipam_save), and removed with the last lease, so a node with no bridged slice
 * has no network state at all. Leases outlive the processes (slicectl,
 * nodemgr) that took them; a slice keeps its address across stop/start and
 * loses it on destroy. The first address of the subnet is the bridge's
 * (the slices' gateway); network and broadcast addresses are never leased.
 * With the overlay the file also records its VNI, underlay address and MTU
 * (they, like the bridge and subnet, may only change once no lease is left),
 * and addresses are given by the caller (cluster-wide), not picked here.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include "netcfg_int.h"
#include "vslice/units.h"
#include "vslice/json.h"
#include "vslice/util.h"

static uint32_t mask_of(unsigned prefix)
{
	return prefix ? ~0U << (32 - prefix) : 0;
}

int ipam_parse_subnet(const char *s, uint32_t *net, unsigned *prefix, struct vs_error *err)
{
	char addr[INET_ADDRSTRLEN], tail;
	unsigned p;
	struct in_addr in;
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(addr) ||
	    sscanf(slash + 1, "%u%c", &p, &tail) != 1 || !strchr("0123456789", slash[1]))
		return vs_error_set(err, EINVAL, "subnet \"%s\": expected A.B.C.D/N", s);
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1)
		return vs_error_set(err, EINVAL, "subnet \"%s\": bad IPv4 address", s);
	if (p < 16 || p > 29)
		return vs_error_set(err, EINVAL, "subnet \"%s\": prefix must be /16 to /29", s);
	uint32_t a = ntohl(in.s_addr);
	if (a & ~mask_of(p))
		return vs_error_set(err, EINVAL, "subnet \"%s\": host bits set", s);
	uint8_t first = (uint8_t)(a >> 24);
	if (first == 0 || first == 127 || first >= 224)
		return vs_error_set(err, EINVAL, "subnet \"%s\": not a unicast range", s);
	*net = a;
	*prefix = p;
	return 0;
}

void ipam_fmt(uint32_t ip, char buf[16])
{
	struct in_addr in = {.s_addr = htonl(ip)};
	inet_ntop(AF_INET, &in, buf, 16);
}

uint32_t ipam_gateway(const struct ipam_state *st)
{
	return st->net + 1;
}

static char *net_dir(const char *root)
{
	return vs_xasprintf("%s/net", root);
}

int ipam_lock(const char *root, struct vs_error *err)
{
	cleanup_free char *dir = net_dir(root);
	int r = vs_mkdir_p(dir, 0700, err);
	if (r < 0)
		return r;
	cleanup_free char *path = vs_xasprintf("%s/lock", dir);
	cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s", path);
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return vs_error_sys(err, errno, "flock %s", path);
	return steal_fd(&fd);
}

void ipam_state_free(struct ipam_state *st)
{
	free(st->leases);
	st->leases = NULL;
	st->n = 0;
	free(st->peers);
	st->peers = NULL;
	st->n_peers = 0;
}

void ipam_state_copy(struct ipam_state *dst, const struct ipam_state *src)
{
	*dst = *src;
	dst->leases = vs_xcalloc(src->n + 1, sizeof(*dst->leases));
	memcpy(dst->leases, src->leases, src->n * sizeof(*dst->leases));
	dst->peers = vs_xcalloc(src->n_peers + 1, sizeof(*dst->peers));
	memcpy(dst->peers, src->peers, src->n_peers * sizeof(*dst->peers));
}

bool ipam_in_subnet(const struct ipam_state *st, uint32_t ip)
{
	return (ip & mask_of(st->prefix)) == st->net;
}

int ipam_slice_addr(const struct ipam_state *st, const char *s, const char *what, uint32_t *ip,
		    struct vs_error *err)
{
	struct in_addr in;
	char net[16], p[32];
	ipam_fmt(st->net, net);
	if (inet_pton(AF_INET, s, &in) != 1)
		return vs_error_set(err, EINVAL, "%s \"%s\": not an IPv4 address", what,
				    vs_printable(s, p, sizeof(p)));
	uint32_t a = ntohl(in.s_addr);
	if (!ipam_in_subnet(st, a) || a <= ipam_gateway(st) ||
	    a >= (st->net | ~mask_of(st->prefix)))
		return vs_error_set(err, EINVAL,
				    "%s %s: not a slice address of the bridge subnet %s/%u (its "
				    "network, gateway and broadcast addresses are not)",
				    what, s, net, st->prefix);
	*ip = a;
	return 0;
}

struct ipam_lease *ipam_find(struct ipam_state *st, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->leases[i].name, name))
			return &st->leases[i];
	return NULL;
}

static int copy_ifname(char dst[IFNAMSIZ], json_t *v, const char *prefix)
{
	const char *s = json_string_value(v);
	if (!s || strlen(s) >= IFNAMSIZ || strncmp(s, prefix, strlen(prefix)))
		return -1;
	snprintf(dst, IFNAMSIZ, "%s", s);
	return 0;
}

static int lease_from_json(const char *name, json_t *o, const struct ipam_state *st,
			   struct ipam_lease *l)
{
	struct in_addr in;
	const char *ip = json_string_value(json_object_get(o, "ip"));
	json_t *pub = json_object_get(o, "publish");
	json_t *rate = json_object_get(o, "rate_bps");
	if (strlen(name) >= sizeof(l->name) || !ip || inet_pton(AF_INET, ip, &in) != 1 ||
	    copy_ifname(l->veth, json_object_get(o, "veth"), NETCFG_VETH_PREFIX) < 0 ||
	    copy_ifname(l->ifb, json_object_get(o, "ifb"), NETCFG_IFB_PREFIX) < 0 ||
	    !json_is_boolean(json_object_get(o, "no_egress")) || !json_is_integer(rate) ||
	    json_integer_value(rate) < 0 || !json_is_array(pub) ||
	    json_array_size(pub) > NETCFG_PUBLISH_MAX)
		return -1;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->ip = ntohl(in.s_addr);
	if ((l->ip & mask_of(st->prefix)) != st->net || l->ip <= ipam_gateway(st) ||
	    l->ip >= (st->net | ~mask_of(st->prefix)))
		return -1;
	l->want.no_egress = json_is_true(json_object_get(o, "no_egress"));
	l->want.rate_bps = (uint64_t)json_integer_value(rate);
	size_t i;
	json_t *p;
	json_array_foreach(pub, i, p)
	{
		json_int_t h = json_integer_value(json_object_get(p, "host"));
		json_int_t s = json_integer_value(json_object_get(p, "slice"));
		const char *proto = json_string_value(json_object_get(p, "proto"));
		if (h < 1 || h > 65535 || s < 1 || s > 65535 || !proto ||
		    (strcmp(proto, "tcp") && strcmp(proto, "udp")))
			return -1;
		l->want.publish[i] = (struct netcfg_publish){
		    .host_port = (uint16_t)h, .slice_port = (uint16_t)s, .udp = proto[0] == 'u'};
	}
	l->want.n_publish = json_array_size(pub);
	return 0;
}

int ipam_load(const char *root, const struct netcfg_node *node, struct ipam_state *st,
	      struct vs_error *err)
{
	memset(st, 0, sizeof(*st));
	st->forward_was = -1;
	snprintf(st->bridge, sizeof(st->bridge), "%s", node->bridge);
	st->vni = node->vni;
	struct in_addr ul = {0};
	if (node->vni && inet_pton(AF_INET, node->underlay, &ul) != 1)
		return vs_error_set(err, EINVAL, "VSLICE_OVERLAY_LOCAL: not an IPv4 address");
	st->underlay = ntohl(ul.s_addr);
	int r = ipam_parse_subnet(node->subnet, &st->net, &st->prefix, err);
	if (r < 0)
		return vs_error_wrap(err, "VSLICE_BRIDGE_SUBNET");
	cleanup_free char *path = vs_xasprintf("%s/net/leases.json", root);
	cleanup_free char *text = NULL;
	size_t len;
	struct vs_error e2;
	if (vs_read_file(path, 1 << 20, &text, &len, &e2) < 0) {
		if (e2.code == ENOENT)
			return 0;
		*err = e2;
		return -err->code;
	}
	json_error_t je;
	cleanup_json json_t *j = json_loadb(text, len, 0, &je);
	const char *bridge = json_string_value(json_object_get(j, "bridge"));
	const char *subnet = json_string_value(json_object_get(j, "subnet"));
	json_t *leases = json_object_get(j, "leases");
	json_t *fw = json_object_get(j, "forward_was");
	if (!bridge || !subnet || !json_is_object(leases) || !json_is_integer(fw))
		return vs_error_set(err, EINVAL, "%s: not a vslice lease file", path);
	/* The file's bridge and subnet win while leases exist: the node's
	 * configuration may only change once every bridged slice is gone. */
	if (strlen(bridge) >= IFNAMSIZ || ipam_parse_subnet(subnet, &st->net, &st->prefix, err) < 0)
		return vs_error_set(err, EINVAL, "%s: bad bridge or subnet", path);
	snprintf(st->bridge, sizeof(st->bridge), "%s", bridge);
	st->forward_was = (int)json_integer_value(fw);
	json_t *ov = json_object_get(j, "overlay");
	st->vni = 0;
	if (ov) {
		json_t *vni = json_object_get(ov, "vni"), *mtu = json_object_get(ov, "mtu");
		const char *u = json_string_value(json_object_get(ov, "underlay"));
		if (!json_is_integer(vni) || json_integer_value(vni) < 1 ||
		    json_integer_value(vni) > 0xffffff || !json_is_integer(mtu) ||
		    json_integer_value(mtu) < 576 || json_integer_value(mtu) > 65535 || !u ||
		    inet_pton(AF_INET, u, &ul) != 1)
			return vs_error_set(err, EINVAL, "%s: bad overlay", path);
		st->vni = (uint32_t)json_integer_value(vni);
		st->mtu = (unsigned)json_integer_value(mtu);
		st->underlay = ntohl(ul.s_addr);
	}
	st->leases = vs_xcalloc(json_object_size(leases) + 1, sizeof(*st->leases));
	const char *name;
	json_t *o;
	json_object_foreach(leases, name, o)
	{
		if (lease_from_json(name, o, st, &st->leases[st->n]) < 0) {
			ipam_state_free(st);
			return vs_error_set(err, EINVAL, "%s: bad lease \"%s\"", path, name);
		}
		st->n++;
	}
	return 0;
}

int ipam_save(const char *root, const struct ipam_state *st, struct vs_error *err)
{
	cleanup_free char *path = vs_xasprintf("%s/net/leases.json", root);
	if (st->n == 0) {
		if (unlink(path) < 0 && errno != ENOENT)
			return vs_error_sys(err, errno, "remove %s", path);
		return 0;
	}
	char subnet[NETCFG_SUBNET_MAX], ip[16];
	ipam_fmt(st->net, ip);
	snprintf(subnet, sizeof(subnet), "%s/%u", ip, st->prefix);
	cleanup_json json_t *j = json_pack("{s:s, s:s, s:i, s:{}}", "bridge", st->bridge, "subnet",
					   subnet, "forward_was", st->forward_was, "leases");
	json_t *leases = json_object_get(j, "leases");
	if (st->vni) {
		ipam_fmt(st->underlay, ip);
		json_object_set_new(j, "overlay",
				    json_pack("{s:I, s:s, s:i}", "vni", (json_int_t)st->vni,
					      "underlay", ip, "mtu", (int)st->mtu));
	}
	for (size_t i = 0; i < st->n; i++) {
		const struct ipam_lease *l = &st->leases[i];
		json_t *pub = json_array();
		for (size_t k = 0; k < l->want.n_publish; k++)
			json_array_append_new(
			    pub, json_pack("{s:i, s:i, s:s}", "host", l->want.publish[k].host_port,
					   "slice", l->want.publish[k].slice_port, "proto",
					   l->want.publish[k].udp ? "udp" : "tcp"));
		ipam_fmt(l->ip, ip);
		json_object_set_new(leases, l->name,
				    json_pack("{s:s, s:s, s:s, s:b, s:I, s:o}", "ip", ip, "veth",
					      l->veth, "ifb", l->ifb, "no_egress",
					      l->want.no_egress, "rate_bps",
					      (json_int_t)l->want.rate_bps, "publish", pub));
	}
	cleanup_free char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!text)
		return vs_error_set(err, ENOMEM, "%s: encode", path);
	/* Replaced by rename, without fsync: the file survives restarts of
	 * slicectl and the node manager (the page cache is the kernel's), and
	 * a start does not wait for the disk. A host crash takes every
	 * slice's namespace and device with it; ext4 (auto_da_alloc) writes a
	 * file replaced by rename before the rename itself. */
	return vs_write_file_replace(path, text, strlen(text), 0600, false, err);
}

/* FNV-1a: stable across runs and builds, so a device's name is found again. */
static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static bool ip_used(const struct ipam_state *st, uint32_t ip)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->leases[i].ip == ip)
			return true;
	return false;
}

int ipam_check_free(const struct ipam_state *st, uint32_t ip, struct vs_error *err)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->leases[i].ip == ip) {
			char a[16];
			ipam_fmt(ip, a);
			vs_error_set(err, EADDRINUSE, "address %s: held by slice %s", a,
				     st->leases[i].name);
			return vs_error_kind(err, VS_EK_BUSY);
		}
	return 0;
}

int ipam_alloc(struct ipam_state *st, const char *name, uint32_t want, struct ipam_lease **out,
	       struct vs_error *err)
{
	uint32_t h = name_hash(name);
	char veth[IFNAMSIZ];
	snprintf(veth, sizeof(veth), NETCFG_VETH_PREFIX "%08x", h);
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->leases[i].veth, veth))
			return vs_error_set(err, EEXIST,
					    "slice %s: device name %s already held by slice %s",
					    name, veth, st->leases[i].name);
	uint32_t last = st->net | ~mask_of(st->prefix); /* broadcast */
	int r;
	if (want && (r = ipam_check_free(st, want, err)) < 0)
		return r;
	for (uint32_t ip = want ? want : ipam_gateway(st) + 1; ip < last; ip++) {
		if (ip_used(st, ip))
			continue;
		st->leases = vs_xrealloc(st->leases, (st->n + 1) * sizeof(*st->leases));
		struct ipam_lease *l = &st->leases[st->n++];
		memset(l, 0, sizeof(*l));
		snprintf(l->name, sizeof(l->name), "%s", name);
		l->ip = ip;
		memcpy(l->veth, veth, sizeof(veth));
		snprintf(l->ifb, sizeof(l->ifb), NETCFG_IFB_PREFIX "%08x", h);
		*out = l;
		return 0;
	}
	char net[16];
	ipam_fmt(st->net, net);
	vs_error_set(err, ENOSPC, "bridge subnet %s/%u: no free address", net, st->prefix);
	return vs_error_kind(err, VS_EK_LIMIT);
}

void ipam_release(struct ipam_state *st, const char *name)
{
	struct ipam_lease *l = ipam_find(st, name);
	if (!l)
		return;
	size_t i = (size_t)(l - st->leases);
	memmove(l, l + 1, (st->n - i - 1) * sizeof(*l));
	st->n--;
}

static bool overlaps(uint32_t a, unsigned pa, uint32_t b, unsigned pb)
{
	unsigned p = pa < pb ? pa : pb;
	return (a & mask_of(p)) == (b & mask_of(p));
}

static void nl_cachep(struct nl_cache **c)
{
	if (*c)
		nl_cache_free(*c);
}

int ipam_check_clash(struct nl_sock *sk, uint32_t net, unsigned prefix, const char *bridge,
		     struct vs_error *err)
{
	__attribute__((cleanup(nl_cachep))) struct nl_cache *addrs = NULL, *routes = NULL;
	int own = link_index(sk, bridge), r;
	char sub[16], what[64];
	ipam_fmt(net, sub);
	if ((r = rtnl_addr_alloc_cache(sk, &addrs)) < 0)
		return nl_fail(err, r, "list addresses");
	if ((r = rtnl_route_alloc_cache(sk, AF_INET, 0, &routes)) < 0)
		return nl_fail(err, r, "list routes");
	for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(a);
		if (rtnl_addr_get_family(a) != AF_INET || !local || rtnl_addr_get_ifindex(a) == own)
			continue;
		uint32_t ip;
		memcpy(&ip, nl_addr_get_binary_addr(local), 4);
		unsigned p = (unsigned)rtnl_addr_get_prefixlen(a);
		if (overlaps(ntohl(ip), p, net, prefix)) {
			nl_addr2str(local, what, sizeof(what));
			return vs_error_set(err, EEXIST,
					    "bridge subnet %s/%u overlaps the node's address %s "
					    "(set VSLICE_BRIDGE_SUBNET)",
					    sub, prefix, what);
		}
	}
	for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *rt = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(rt);
		if (!dst || nl_addr_get_prefixlen(dst) == 0 || nl_addr_get_len(dst) != 4)
			continue;
		struct rtnl_nexthop *nh = rtnl_route_nexthop_n(rt, 0);
		if (nh && rtnl_route_nh_get_ifindex(nh) == own)
			continue;
		uint32_t ip;
		memcpy(&ip, nl_addr_get_binary_addr(dst), 4);
		unsigned p = nl_addr_get_prefixlen(dst);
		if (overlaps(ntohl(ip), p, net, prefix)) {
			nl_addr2str(dst, what, sizeof(what));
			return vs_error_set(err, EEXIST,
					    "bridge subnet %s/%u overlaps the node's route to %s "
					    "(set VSLICE_BRIDGE_SUBNET)",
					    sub, prefix, what);
		}
	}
	return 0;
}
