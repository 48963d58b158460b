/*
 * netcfg.h - bridged slice networking on one node: a per-node bridge, a
 * veth pair into each slice's network namespace, addresses from a per-node
 * lease file, egress NAT and published ports in nftables, rate caps in tc.
 *
 * Everything here acts on the network namespace of the calling thread (the
 * "node"): tests run it inside a namespace of their own. Node-wide objects
 * (the bridge, `table inet vslice`, `table bridge vslice`, ip_forward) exist
 * only while at least one lease is held: the first attach makes them, the
 * last detach removes them. Node state lives in <root>/net/ (leases.json,
 * written atomically under an flock on <root>/net/lock).
 *
 * Configuration (read by netcfg_node_config): VSLICE_BRIDGE (default
 * "vslice0") and VSLICE_BRIDGE_SUBNET (default 10.213.0.0/24, an IPv4 /16
 * to /29). A subnet that overlaps any address or route of the node is
 * refused.
 */
#ifndef VSLICE_NETCFG_H
#define VSLICE_NETCFG_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/error.h"

#define NETCFG_PUBLISH_MAX    16
#define NETCFG_DEFAULT_BRIDGE "vslice0"
#define NETCFG_DEFAULT_SUBNET "10.213.0.0/24"
#define NETCFG_SUBNET_MAX     32

struct netcfg_publish {
	uint16_t host_port;
	uint16_t slice_port;
	bool udp; /* false: tcp */
};

/* What one slice asks for (from its spec). */
struct netcfg_slice {
	const char *hostname; /* for the slice's /etc/hosts */
	bool no_egress;	      /* no NAT to the outside: bridge peers and published ports only */
	uint64_t rate_bps;    /* bits/s in each direction, 0 = no cap */
	struct netcfg_publish publish[NETCFG_PUBLISH_MAX];
	size_t n_publish;
};

/* The node's settings: VSLICE_BRIDGE / VSLICE_BRIDGE_SUBNET or defaults.
 * Errors name the variable. */
struct netcfg_node {
	char bridge[IFNAMSIZ];
	char subnet[NETCFG_SUBNET_MAX];
};
int netcfg_node_config(struct netcfg_node *node, struct vs_error *err);

/* "bridge" or "bridge,no-egress" (CLI --net / manifest network); other modes
 * are not ours: returns 0 and *is_bridge = false for "none"/"host". */
int netcfg_parse_mode(const char *s, bool *is_bridge, bool *no_egress, struct vs_error *err);
/* "8080:80", "5353:53/udp", "8080:80/tcp"; ports 1..65535. */
int netcfg_parse_publish(const char *s, struct netcfg_publish *p, struct vs_error *err);
/* "10mbit", "500kbit", "1gbit", "2mbps" (bytes/s), "100000" (bit/s); > 0. */
int netcfg_parse_rate(const char *s, uint64_t *bps, struct vs_error *err);
/* "10mbit" style, exact when possible. */
const char *netcfg_format_rate(uint64_t bps, char *buf, size_t len);

/* What attach set up (for messages, hosts file, stats). */
struct netcfg_lease {
	char ip[16];	  /* dotted quad */
	char gateway[16]; /* the bridge's address */
	unsigned prefix;
	char host_veth[IFNAMSIZ];
};

/*
 * Connect the slice `name` to the node's bridge. netns_fd is the slice's
 * network namespace (opened by the caller); rootfs_fd, if >= 0, is the
 * slice's root directory: etc/resolv.conf and etc/hosts are written there
 * (resolved inside that root, never through its symlinks; owned by owner). Takes or reuses the
 * slice's lease, makes the bridge/tables when first, replaces a veth left from an earlier run. On
 * failure everything this call made is removed again (a lease that existed before is kept).
 */
int netcfg_attach(const char *root, const char *name, const struct netcfg_slice *s, int netns_fd,
		  int rootfs_fd, uid_t owner, struct netcfg_lease *lease, struct vs_error *err);

/* Remove everything of slice `name`: veth, ifb, nft elements, lease; the
 * node-wide objects too when it was the last. No lease: 0, nothing done. */
int netcfg_detach(const char *root, const char *name, struct vs_error *err);

/* Detach every lease for which is_alive(name, arg) is false (the slice is
 * gone), and remove ports of the node's bridge no lease names. */
int netcfg_cleanup_stale(const char *root, bool (*is_alive)(const char *name, void *arg), void *arg,
			 struct vs_error *err);

struct netcfg_stats {
	bool attached; /* the veth exists (the slice runs) */
	char ip[16];
	uint64_t rx_bytes, rx_packets; /* into the slice */
	uint64_t tx_bytes, tx_packets; /* out of the slice */
	uint64_t rate_bps;
};
/* Counters of the slice's veth, seen from the host. No lease: -ENOENT. */
int netcfg_stats(const char *root, const char *name, struct netcfg_stats *st, struct vs_error *err);

#endif
