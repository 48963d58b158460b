/*
 * netcfg_int.h - the parts of lib/netcfg shared between its files:
 * ipam.c (lease file, subnet arithmetic, clash check), link.c (bridge, veth,
 * the slice's side, /etc files), nft.c (the node's vslice tables), tc.c
 * (rate caps), overlay.c (VXLAN between nodes, peers), fast.c (the bridge's
 * BPF fast path) with bpf_dl.c (libbpf, loaded on first use).
 * netcfg.c puts them together in the order attach needs.
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
/* The overlay's VXLAN device: "vsx" + the VNI in decimal. */
#define NETCFG_VXLAN_PREFIX "vsx"
/* Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
#define NETCFG_VXLAN_OVERHEAD 50

struct ipam_lease {
	char name[SLICE_NAME_MAX];
	uint32_t ip; /* host byte order */
	char veth[IFNAMSIZ], ifb[IFNAMSIZ];
	struct netcfg_slice want; /* hostname not kept */
};

/* A remote slice (overlay.c): its address and its node's underlay address. */
struct ipam_peer {
	uint32_t ip, node; /* host byte order */
};

struct ipam_state {
	char bridge[IFNAMSIZ];
	uint32_t net; /* host byte order */
	unsigned prefix;
	int forward_was; /* ip_forward before we set it to 1; -1: we did not */
	struct ipam_lease *leases;
	size_t n;
	/* The overlay (vni 0: none). Like bridge and subnet, the lease file's
	 * values win over the environment while leases exist. */
	uint32_t vni;
	uint32_t underlay; /* host byte order */
	unsigned mtu;	   /* of the vxlan device and the slices' veths */
	/* <root>/net/peers.json, loaded with the leases (overlay.c). */
	struct ipam_peer *peers;
	size_t n_peers;
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
/* A deep copy (free with ipam_state_free): the state before a change. */
void ipam_state_copy(struct ipam_state *dst, const struct ipam_state *src);
struct ipam_lease *ipam_find(struct ipam_state *st, const char *name);
/* New lease for name: address want (host order; EADDRINUSE + VS_EK_BUSY when
 * another slice holds it), or with want == 0 the lowest free address after
 * the gateway. */
int ipam_alloc(struct ipam_state *st, const char *name, uint32_t want, struct ipam_lease **out,
	       struct vs_error *err);
/* "A.B.C.D" as a slice address of st's subnet (not network, gateway or
 * broadcast); what names the field in the error. */
int ipam_slice_addr(const struct ipam_state *st, const char *s, const char *what, uint32_t *ip,
		    struct vs_error *err);
bool ipam_in_subnet(const struct ipam_state *st, uint32_t ip);
/* EADDRINUSE (kind VS_EK_BUSY) naming the holder when a lease holds ip. */
int ipam_check_free(const struct ipam_state *st, uint32_t ip, struct vs_error *err);
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
/* The indexes of the links named that exist (missing ones skipped). */
size_t link_indexes(struct nl_sock *sk, const char *const *names, size_t n, int *idx);
/* Delete links by index, errors ignored (a detached process's work: an
 * index is not reused soon, the kernel allocates them cyclically, so a
 * device made later under the same name is not the one deleted). */
void links_delete_index(const int *idx, size_t n);
/* links_delete_index in a detached process, which also holds fd (closed
 * here; -1: none) until it ends: what waits for RCU (a device's
 * unregistration, the last close of an nfnetlink socket after a deletion)
 * is not waited for by the caller. */
int links_remove_detached(const int *idx, size_t n, int fd, struct vs_error *err);
int bridge_ensure(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err);
void lease_mac(uint32_t ip, uint8_t mac[6]);
/* The slice's veth pair in one request: host end up as a port of bridge
 * (an index), eth0 (down: a veth end opens only once its peer exists) in
 * the namespace netns_fd; the lease's MAC as a static entry of its port.
 * *host_ifindex: the host end's index; *eth0_ifindex: eth0's in its
 * namespace, 0 when the kernel did not say it (before 6.2: no echo). */
int veth_create(struct nl_sock *sk, const struct ipam_state *st, const struct ipam_lease *l,
		int bridge, int netns_fd, int *host_ifindex, int *eth0_ifindex,
		struct vs_error *err);
/* One bridge fdb entry of port ifindex: NTF_SELF (a vxlan's own table,
 * dst = the remote node) or NTF_MASTER (the bridge's, static). fdb_msg
 * builds the request (NULL: no memory), fdb_change sends it. */
struct nl_msg *fdb_msg(int cmd, int ifindex, const uint8_t mac[6], uint8_t ntf, uint32_t dst);
int fdb_change(struct nl_sock *sk, int cmd, int ifindex, const uint8_t mac[6], uint8_t ntf,
	       uint32_t dst, struct vs_error *err);
/* Run fn(arg, err) on a short-lived thread inside the network namespace
 * netns_fd (no thread of the caller ever stays there). */
int netns_call(int netns_fd, int (*fn)(void *arg, struct vs_error *err), void *arg,
	       struct vs_error *err);
/* In the namespace netns_fd, in one sendmsg on nl_fd (a NETLINK_ROUTE
 * socket in it; -1: one made there by a short-lived thread): lo and eth0
 * (index eth0_ifindex; 0: looked up) up, the lease's address on eth0, the
 * default route via the gateway. */
int slice_side_config(int netns_fd, int nl_fd, const struct ipam_state *st,
		      const struct ipam_lease *l, int eth0_ifindex, struct vs_error *err);
int etc_files_write(int rootfs_fd, uid_t owner, const char *hostname, const char *ip,
		    struct vs_error *err);
int sysctl_forward(int value, int *old, struct vs_error *err);

/* nft.c: make the node's tables say exactly what st says (none when it
 * holds no lease), in one transaction. */
int nft_sync(const struct ipam_state *st, struct vs_error *err);
/* From old to st (the tables said old) with only the set and map elements
 * that differ, added and deleted in one nfnetlink batch (no libnftables:
 * no parser, no cache dump); the elements of lease focus (if not NULL) are
 * added whatever old says. The chains are not touched. Whole (nft_sync)
 * at the first and the last lease, and when the batch is refused (the
 * tables were not what old says). keep != NULL: the batch's socket is
 * handed to the caller instead of closed (closing an nfnetlink socket
 * after a deletion waits for an RCU grace period: the kernel frees the
 * deleted elements first). */
int nft_update(const struct ipam_state *old, const struct ipam_state *st, const char *focus,
	       int *keep, struct vs_error *err);

/* overlay.c */
/* The vxlan device's name for st ("" when st has no overlay). */
void overlay_devname(const struct ipam_state *st, char name[IFNAMSIZ]);
/* First lease with the overlay: the underlay address must be the node's;
 * sets st->mtu from its link. */
int overlay_check(struct nl_sock *sk, struct ipam_state *st, struct vs_error *err);
/* The vxlan device as a port of the bridge (made if missing), and its
 * forwarding and neighbour entries made to equal st's active peers. */
int overlay_sync(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err);
/* Remove the vxlan device (its entries go with it). */
int overlay_remove(struct nl_sock *sk, const struct ipam_state *st, struct vs_error *err);
/* A peer the kernel should know: not a local lease, not this node. */
bool overlay_peer_active(const struct ipam_state *st, const struct ipam_peer *p);
/* Load <root>/net/peers.json into st (none: no peers). */
int overlay_peers_load(const char *root, struct ipam_state *st, struct vs_error *err);
/* Whether a and b differ in which peers are active (a lease taken or
 * released over a peer's address, a new peer list). */
bool overlay_active_changed(const struct ipam_state *a, const struct ipam_state *b);

/* tc.c: cap both directions of lease l's veth at l->want.rate_bps. */
int tc_cap(struct nl_sock *sk, const struct ipam_lease *l, struct vs_error *err);

/* fast.c: the bridge's fast path (tc BPF, bpf_redirect_peer). */
bool fast_enabled(void); /* VSLICE_NET_FASTPATH is not "0" */
bool bpf_dl_available(void); /* bpf_dl.c: libbpf loaded */
struct fast_todo {
	int prog; /* the node's program; -1: nothing to attach */
	int *idx; /* host ends to attach it to */
	size_t n;
};
/* Under the lease lock: the node's program (loaded if none is), the map
 * entry of name's running veth (of every running one when the program is
 * new), the overlay peers' entries, and what fast_hook must attach. */
int fast_prepare(const char *root, struct nl_sock *sk, const struct ipam_state *st,
		 const char *name, struct fast_todo *todo, struct vs_error *err);
/* Without the lock (each attach waits for an RCU grace period): the program
 * at tc ingress of todo's devices; those gone since are skipped. */
int fast_hook(struct fast_todo *todo, struct vs_error *err);
void fast_todo_free(struct fast_todo *todo);
/* Under the lease lock, when the lease of ip is made or goes: its entry
 * (one bpf(2) call; nothing to do when the node has no program). */
int fast_forget(const char *root, uint32_t ip, struct vs_error *err);
/* Under the lease lock, with the overlay: a remote entry for every active
 * peer and for no one else (after the peer list or the leases changed). */
int fast_peers(const char *root, struct nl_sock *sk, const struct ipam_state *st,
	       struct vs_error *err);
/* What the fast path delivered into l's slice since its veth ifindex was
 * made (0 without the fast path). */
int fast_counters(const char *root, const struct ipam_lease *l, int ifindex, uint64_t *bytes,
		  uint64_t *packets);
/* With the last lease: the state file (the program and map go with the
 * last veth). */
void fast_teardown(const char *root);

#endif
