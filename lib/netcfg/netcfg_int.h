/*
 * netcfg_int.h - the parts of lib/netcfg shared between its files:
 * ipam.c (lease file, subnet arithmetic, clash check), link.c (bridge, veth,
 * the slice's side, /etc files), nft.c (the node's vslice tables), tc.c
 * (rate caps). netcfg.c puts them together in the order attach needs.
 */
#ifndef VSLICE_NETCFG_INT_H
#define VSLICE_NETCFG_INT_H

#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "vslice/netcfg.h"
#include "vslice/slice.h"

/* Names of the devices vslice makes: the host end of a slice's veth and its
 * ifb (ingress shaping) are "vsh"/"vsi" + 8 hex digits of the slice name's
 * hash; cleanup removes devices with these prefixes that no lease names. */
#define NETCFG_VETH_PREFIX "vsh"
#define NETCFG_IFB_PREFIX  "vsi"

struct ipam_lease {
	char name[SLICE_NAME_MAX];
	uint32_t ip; /* host byte order */
	char veth[IFNAMSIZ], ifb[IFNAMSIZ];
	struct netcfg_slice want; /* hostname not kept */
};

struct ipam_state {
	char bridge[IFNAMSIZ];
	uint32_t net; /* host byte order */
	unsigned prefix;
	int forward_was; /* ip_forward before we set it to 1; -1: we did not */
	struct ipam_lease *leases;
	size_t n;
};

/* ipam.c */
int ipam_parse_subnet(const char *s, uint32_t *net, unsigned *prefix, struct vs_error *err);
void ipam_fmt(uint32_t ip, char buf[16]);
uint32_t ipam_gateway(const struct ipam_state *st);
/* flock <root>/net/lock (made if missing); returns the fd. */
int ipam_lock(const char *root, struct vs_error *err);
/* Missing file: an empty state for node (bridge, subnet). */
int ipam_load(const char *root, const struct netcfg_node *node, struct ipam_state *st,
	      struct vs_error *err);
/* Atomic replace; no leases: the file is removed. */
int ipam_save(const char *root, const struct ipam_state *st, struct vs_error *err);
void ipam_state_free(struct ipam_state *st);
struct ipam_lease *ipam_find(struct ipam_state *st, const char *name);
/* New lease for name: lowest free address after the gateway. */
int ipam_alloc(struct ipam_state *st, const char *name, struct ipam_lease **out,
	       struct vs_error *err);
void ipam_release(struct ipam_state *st, const char *name);
/* Refuse (EEXIST) a subnet overlapping any IPv4 address or route of the
 * node, other than those on our own bridge. */
int ipam_check_clash(struct nl_sock *sk, uint32_t net, unsigned prefix, const char *bridge,
		     struct vs_error *err);

/* link.c */
int nl_open(struct nl_sock **sk, struct vs_error *err);
/* A route socket inside the network namespace netns_fd. */
int nl_open_in(int netns_fd, struct nl_sock **sk, struct vs_error *err);
static inline void nl_sockp(struct nl_sock **s)
{
	if (*s)
		nl_socket_free(*s);
}
#define cleanup_nlsock __attribute__((cleanup(nl_sockp)))
int nl_fail(struct vs_error *err, int nlerr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int link_index(struct nl_sock *sk, const char *name); /* 0: no such link */
int link_remove(struct nl_sock *sk, const char *name, struct vs_error *err);
int link_up(struct nl_sock *sk, const char *name, int master, struct vs_error *err);
int bridge_ensure(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err);
void lease_mac(uint32_t ip, uint8_t mac[6]);
int veth_create(struct nl_sock *sk, const struct ipam_state *st, const struct ipam_lease *l,
		int netns_fd, struct vs_error *err);
int slice_side_config(int netns_fd, const struct ipam_state *st, const struct ipam_lease *l,
		      struct vs_error *err);
int etc_files_write(int rootfs_fd, uid_t owner, const char *hostname, const char *ip,
		    struct vs_error *err);
int sysctl_forward(int value, int *old, struct vs_error *err);

/* nft.c: make the node's tables say exactly what st says (none when it
 * holds no lease), in one transaction. */
int nft_sync(const struct ipam_state *st, struct vs_error *err);

/* tc.c: cap both directions of lease l's veth at l->want.rate_bps. */
int tc_cap(struct nl_sock *sk, const struct ipam_lease *l, struct vs_error *err);

#endif
