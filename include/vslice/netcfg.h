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
 * to /29; 10.213.0.0/16 with the overlay). A subnet that overlaps any
 * address or route of the node is refused.
 *
 * Across nodes (overlay.c): VSLICE_OVERLAY_VNI (1..16777215, the cluster's
 * VXLAN network id) and VSLICE_OVERLAY_LOCAL (this node's underlay IPv4
 * address, the VXLAN tunnels' source) turn it on. The bridge subnet is then
 * one L2 segment across every node of the cluster (same subnet, same gateway
 * address and MAC on every node: an anycast gateway); a VXLAN device
 * (UDP 4789, no learning, no flooding) is a port of the bridge, and the
 * caller's peer list (netcfg_overlay_set_peers: which remote slice address
 * lives on which node) becomes forwarding and neighbour entries. Addresses
 * are then cluster-wide and come from the caller (netcfg_slice.ip); a
 * slice's MAC is a function of its address (02:76:a.b.c.d), so a slice
 * that moves keeps both.
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
#define NETCFG_OVERLAY_SUBNET "10.213.0.0/16"
#define NETCFG_VXLAN_PORT     4789

struct netcfg_publish {
	uint16_t host_port;
	uint16_t slice_port;
	bool udp; /* false: tcp */
};

/* What one slice asks for (from its spec). */
struct netcfg_slice {
	const char *hostname; /* for the slice's /etc/hosts */
	char
	    ip[16]; /* a fixed address ("" = the node's next free one); required with the overlay */
	bool no_egress;	   /* no NAT to the outside: bridge peers and published ports only */
	uint64_t rate_bps; /* bits/s in each direction, 0 = no cap */
	struct netcfg_publish publish[NETCFG_PUBLISH_MAX];
	size_t n_publish;
};

/* The node's settings: VSLICE_BRIDGE / VSLICE_BRIDGE_SUBNET or defaults.
 * Errors name the variable. */
struct netcfg_node {
	char bridge[IFNAMSIZ];
	char subnet[NETCFG_SUBNET_MAX];
	uint32_t vni;	   /* VSLICE_OVERLAY_VNI; 0: no overlay */
	char underlay[16]; /* VSLICE_OVERLAY_LOCAL */
};
int netcfg_node_config(struct netcfg_node *node, struct vs_error *err);

/* "bridge", "bridge,no-egress", each optionally followed by ",ip=A.B.C.D"
 * (CLI --net; the manifest has no ip=); other modes are not ours: returns 0
 * and *is_bridge = false for "none"/"host". Sets opts->no_egress and
 * opts->ip (the address is checked against the subnet at attach). */
int netcfg_parse_mode(const char *s, bool *is_bridge, struct netcfg_slice *opts,
		      struct vs_error *err);
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
 * s->ip set: that address (in the subnet, not the gateway, not another slice's: EADDRINUSE,
 * kind VS_EK_BUSY). With the overlay s->ip is required and the veth's MTU leaves room for the
 * VXLAN header. The bridge gets a static entry for the slice's MAC on its port (a slice that
 * moved here is reached at once).
 */
int netcfg_attach(const char *root, const char *name, const struct netcfg_slice *s, int netns_fd,
		  int rootfs_fd, uid_t owner, struct netcfg_lease *lease, struct vs_error *err);

/*
 * netcfg_attach in steps, for a caller that has other work to do meanwhile
 * (a start: the launcher mounts the slice's root while the host's steps
 * run). begin: under the node's lease lock, the leases of slices that
 * is_alive(name, arg) says are gone are released (as netcfg_cleanup_stale;
 * is_alive NULL: none), then the lease is taken and saved, the bridge and
 * the nft elements made; on success *p holds the lock until finish or
 * abort, which free it. netns: the veth into netns_fd, caps, overlay
 * entries, lo and eth0 up, eth0's address and default route (through
 * nl_fd, a NETLINK_ROUTE socket in that namespace, or -1: one made there
 * by a short-lived thread). files: the
 * /etc files under rootfs_fd (as netcfg_attach). finish: *lease, the lock
 * released; it cannot fail. A failed step leaves p as it was: abort undoes
 * what the steps made. A crash between them leaves a lease and its
 * elements (and a veth that goes with the launcher's namespace), which the
 * slice's destroy or the next start's stale scan removes. Errors as
 * netcfg_attach's.
 */
struct netcfg_pending;
int netcfg_attach_begin(const char *root, const char *name, const struct netcfg_slice *s,
			bool (*is_alive)(const char *name, void *arg), void *arg,
			struct netcfg_pending **p, struct vs_error *err);
int netcfg_attach_netns(struct netcfg_pending *p, int netns_fd, int nl_fd, struct vs_error *err);
int netcfg_attach_files(struct netcfg_pending *p, int rootfs_fd, uid_t owner, struct vs_error *err);
void netcfg_attach_finish(struct netcfg_pending *p, struct netcfg_lease *lease);
void netcfg_attach_abort(struct netcfg_pending *p);

/* Remove everything of slice `name`: veth, ifb, nft elements, lease; the
 * node-wide objects too when it was the last. A veth still there (its
 * namespace not yet torn down) is deleted by a detached process once its
 * elements are gone; the last detach deletes every port itself. No lease:
 * 0, nothing done. */
int netcfg_detach(const char *root, const char *name, struct vs_error *err);

/*
 * netcfg_detach for a caller that forks a process outliving it anyway
 * (slice destroy: the one that removes the slice's files): what the detach
 * would leave to a detached process of its own, *later, goes there
 * instead, saving a fork. later->fd is the element batch's socket (its
 * last close waits for an RCU grace period: it must happen in that
 * process, which inherits it and closes it when it ends), later->veth a
 * leftover veth to delete (0: none). After forking, the caller runs
 * netcfg_later_run in the child and netcfg_later_release in itself;
 * without such a process, netcfg_later_detached does what netcfg_detach
 * would have. later->fd is -1 when there is nothing to hand on.
 */
struct netcfg_later {
	int fd;
	int veth;
};
int netcfg_detach_later(const char *root, const char *name, struct netcfg_later *later,
			struct vs_error *err);
void netcfg_later_run(const struct netcfg_later *later);
void netcfg_later_release(struct netcfg_later *later);
int netcfg_later_detached(struct netcfg_later *later, struct vs_error *err);

/* Detach every lease for which is_alive(name, arg) is false (the slice is
 * gone), and remove ports of the node's bridge no lease names. */
int netcfg_cleanup_stale(const char *root, bool (*is_alive)(const char *name, void *arg), void *arg,
			 struct vs_error *err);

/*
 * The overlay's peers: slices that run on other nodes. ip is the remote
 * slice's address (its MAC follows from it), node the underlay address of
 * the node that runs it. The list is the whole truth (what the registry
 * knows of every other node's slivers): netcfg_overlay_set_peers replaces
 * it in <root>/net/peers.json (removed when n == 0) and, while this node
 * has bridged slices, makes the kernel say exactly that: the VXLAN
 * device's forwarding entries (MAC -> node), the bridge's static entries
 * (MAC -> the VXLAN port) and neighbour entries (address -> MAC, answered
 * by the bridge for the local slices' ARP requests), and the nft sets that
 * say which nodes may send VXLAN and which MAC/address pairs may come out
 * of it. A peer with the address of a local slice is ignored (the local
 * lease wins: a slice that just moved here). A moved slice is repointed by
 * giving its new node. Without the overlay configured: EINVAL.
 * Errors name the entry ("peer 3: ...") and leave file and kernel as they were.
 */
struct netcfg_peer {
	char ip[16];
	char node[16];
};
int netcfg_overlay_set_peers(const char *root, const struct netcfg_peer *peers, size_t n,
			     struct vs_error *err);
/* The stored list (caller frees *peers); none: *n = 0. */
int netcfg_overlay_get_peers(const char *root, struct netcfg_peer **peers, size_t *n,
			     struct vs_error *err);

/* The bridge's fast path for name (lib/netcfg/fast.c): slice-to-slice IPv4
 * from its veth straight into the other slice's, past the bridge. Handed to
 * a detached process (attaching waits for an RCU grace period): call it
 * after the start; until that process is done, frames take the bridge.
 * Nothing when VSLICE_NET_FASTPATH=0, for a capped slice, or without a
 * lease. Errors: only that the process could not be made. */
int netcfg_fast_later(const char *root, const char *name, struct vs_error *err);

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
