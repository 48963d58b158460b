/*
 * fast.c - the bridge's fast path: slice-to-slice IPv4 from one slice's
 * veth straight into the other's, or out of the overlay's VXLAN device
 * (bpf/fast.bpf.c at tc ingress of each host end and of the VXLAN device,
 * bpf_redirect_peer / bpf_redirect).
 *
 * What it saves: a bridged frame crosses two veths, two backlog passes, the
 * bridge and, where the host has br_netfilter on, the IPv4 hooks; a
 * redirected one crosses one veth and one backlog pass, like two namespaces
 * on a plain veth pair (docs/benchmarks.md §6). Across nodes each side
 * skips its bridge. What it must not change: who may send what to whom. The
 * program redirects only a frame the bridge table would accept (its
 * sender's MAC and address, on the device that sender is behind) and the
 * bridge would hand to exactly one known slice (that slice's MAC and
 * address); everything else goes on to the bridge as before (fast.bpf.c).
 *
 * One program and one map (vs_ports: MAC -> device, address, flags,
 * delivered counters) per node, found again by id through
 * <root>/net/fast.json (the id and the program's load time, so an id the
 * kernel gave to another program since is not taken). Every change is under
 * the lease lock. The program lives as long as a device has it attached
 * (the attachments go with the devices), the map as long as the program:
 * nothing to remove at the last lease but the file.
 *
 * Entries: a local slice's (its host end) from the detached process after
 * its start (fast_prepare); a remote slice's (the VXLAN device) for every
 * active overlay peer, by the same process and whenever the peer list
 * changes (fast_peers). An entry goes at once when its lease goes, and at
 * every attach of that MAC (a restart: the old veth; a slice that moved
 * here: its remote entry): a stale one would send frames for it to a gone
 * device, or back out of the overlay (fast_forget).
 *
 * When: attaching a tc program waits for an RCU grace period (the clsact's
 * filter list is swapped), so it is never on the start's path:
 * netcfg_fast_later hands it to a detached process after the start; until
 * then the slice's frames take the bridge, which is correct, only slower.
 * libbpf (bpf_dl.c, loaded on first use) loads the program and attaches
 * it there. What the start and destroy paths do (forget an entry) and what
 * `slicectl stats` reads are single bpf(2) calls, made directly (a map
 * element by key, an object by id: the calls libbpf's bpf.h wraps one to
 * one), so those paths never load libbpf; with no fast.json they are one
 * failed open.
 *
 * VSLICE_NET_FASTPATH=0 switches it off (every frame takes the bridge).
 */
#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "netcfg_int.h"
#include "vslice/json.h"
#include "vslice/util.h"

/* The embedded object (build/gen/fast_blob.S, from bpf/fast.bpf.c). */
extern const unsigned char vs_fast_obj[], vs_fast_obj_end[];

#define FAST_PROG "vs_fast"
#define FAST_MAP  "vs_ports"

/* fast.bpf.c's struct vs_port. */
struct fast_port {
	uint32_t ifindex; /* local: the host end; remote: the VXLAN device */
	uint32_t ip;	  /* network order */
	uint32_t flags;
	uint32_t pad;
	uint64_t rx_bytes, rx_packets;
};
#define FAST_REMOTE 1 /* fast.bpf.c VS_PORT_REMOTE */

bool fast_enabled(void)
{
	const char *e = getenv("VSLICE_NET_FASTPATH");
	return !e || strcmp(e, "0") != 0;
}

/* bpf(2), one call each (what libbpf's bpf_map_*_elem, bpf_*_get_fd_by_id
 * and bpf_obj_get_info_by_fd do); -errno on failure. */
static int sys_bpf(int cmd, union bpf_attr *a)
{
	long r = syscall(__NR_bpf, cmd, a, sizeof(*a));
	return r < 0 ? -errno : (int)r;
}

static int fd_by_id(int cmd, uint32_t id)
{
	union bpf_attr a = {.prog_id = id, .open_flags = 0};
	int fd = sys_bpf(cmd, &a);
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

static int info_by_fd(int fd, void *info, uint32_t len)
{
	union bpf_attr a = {
	    .info = {.bpf_fd = (uint32_t)fd, .info_len = len, .info = (uint64_t)(uintptr_t)info}};
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a);
}

static int elem(int cmd, int map, const void *key, void *value, uint64_t flags)
{
	union bpf_attr a = {.map_fd = (uint32_t)map,
			    .key = (uint64_t)(uintptr_t)key,
			    .value = (uint64_t)(uintptr_t)value,
			    .flags = flags};
	return sys_bpf(cmd, &a);
}

static int next_key(int map, const void *key, void *next)
{
	union bpf_attr a = {.map_fd = (uint32_t)map,
			    .key = (uint64_t)(uintptr_t)key,
			    .next_key = (uint64_t)(uintptr_t)next};
	return sys_bpf(BPF_MAP_GET_NEXT_KEY, &a);
}

static char *state_path(const char *root)
{
	return vs_xasprintf("%s/net/fast.json", root);
}

static uint64_t mac_key(uint32_t ip)
{
	uint8_t mac[6];
	uint64_t k = 0;
	lease_mac(ip, mac);
	memcpy(&k, mac, sizeof(mac));
	return k;
}

/* The node's program and map from fast.json, if they are still the ones
 * it names. 0: found; 1: none. */
static int reopen(const char *root, int *prog, int *map)
{
	cleanup_free char *path = state_path(root);
	json_error_t je;
	cleanup_json json_t *j = json_load_file(path, 0, &je);
	json_int_t id = 0, loaded = 0;
	if (!j || json_unpack(j, "{s:I, s:I}", "prog", &id, "loaded", &loaded) < 0)
		return 1;
	cleanup_close int p = fd_by_id(BPF_PROG_GET_FD_BY_ID, (uint32_t)id);
	if (p < 0)
		return 1;
	uint32_t map_ids[2] = {0};
	struct bpf_prog_info info = {.nr_map_ids = 2, .map_ids = (uint64_t)(uintptr_t)map_ids};
	if (info_by_fd(p, &info, sizeof(info)) < 0 || strcmp(info.name, FAST_PROG) != 0 ||
	    info.load_time != (uint64_t)loaded || info.type != BPF_PROG_TYPE_SCHED_CLS ||
	    info.nr_map_ids != 1)
		return 1;
	cleanup_close int m = fd_by_id(BPF_MAP_GET_FD_BY_ID, map_ids[0]);
	if (m < 0)
		return 1;
	*prog = p;
	*map = m;
	p = m = -1;
	return 0;
}

/* Load the embedded object (libbpf); its program and map (dup'ed: the
 * object goes) and its id in fast.json. */
static int load_new(const char *root, int *prog, int *map, struct vs_error *err)
{
	if (!bpf_dl_available())
		return vs_error_set(err, ENOSYS, "fast path: libbpf.so.1 cannot be loaded");
	struct bpf_object *obj =
	    bpf_object__open_mem(vs_fast_obj, vs_fast_obj_end - vs_fast_obj, NULL);
	if (!obj)
		return vs_error_sys(err, errno, "fast path: open the BPF object");
	int r = bpf_object__load(obj);
	if (r < 0) {
		bpf_object__close(obj);
		return vs_error_sys(err, -r, "fast path: load the BPF program");
	}
	struct bpf_program *pg = bpf_object__find_program_by_name(obj, FAST_PROG);
	struct bpf_map *mp = bpf_object__find_map_by_name(obj, FAST_MAP);
	cleanup_close int p = pg ? fcntl(bpf_program__fd(pg), F_DUPFD_CLOEXEC, 3) : -1;
	cleanup_close int m = mp ? fcntl(bpf_map__fd(mp), F_DUPFD_CLOEXEC, 3) : -1;
	bpf_object__close(obj);
	if (p < 0 || m < 0)
		return vs_error_set(err, ENOENT, "fast path: the BPF object has no %s",
				    p < 0 ? FAST_PROG : FAST_MAP);
	struct bpf_prog_info info = {0};
	if ((r = info_by_fd(p, &info, sizeof(info))) < 0)
		return vs_error_sys(err, -r, "fast path: program info");
	cleanup_free char *path = state_path(root);
	cleanup_json json_t *j = json_pack("{s:I, s:I}", "prog", (json_int_t)info.id, "loaded",
					   (json_int_t)info.load_time);
	cleanup_free char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!text)
		return vs_error_set(err, ENOMEM, "%s: encode", path);
	if ((r = vs_write_file_replace(path, text, strlen(text), 0600, false, err)) < 0)
		return r;
	*prog = p;
	*map = m;
	p = m = -1;
	return 0;
}

/* The entry for ip: dev, flags; kept as it is (with its counters) when it
 * already says so. */
static int entry_set(int map, uint32_t ip, int dev, uint32_t flags, struct vs_error *err)
{
	struct fast_port v = {.ifindex = (uint32_t)dev, .ip = htonl(ip), .flags = flags}, was;
	uint64_t k = mac_key(ip);
	if (elem(BPF_MAP_LOOKUP_ELEM, map, &k, &was, 0) == 0 && was.ifindex == v.ifindex &&
	    was.ip == v.ip && was.flags == v.flags)
		return 0;
	int r = elem(BPF_MAP_UPDATE_ELEM, map, &k, &v, BPF_ANY);
	if (r < 0) {
		char a[16];
		ipam_fmt(ip, a);
		return vs_error_sys(err, -r, "fast path: the entry of %s", a);
	}
	return 0;
}

/* Every active overlay peer has a remote entry (out of the VXLAN device
 * vsx); no other remote entry stays. */
static int remotes_sync(int map, const struct ipam_state *st, int vsx, struct vs_error *err)
{
	int r;
	for (size_t i = 0; i < st->n_peers; i++)
		if (overlay_peer_active(st, &st->peers[i]) &&
		    (r = entry_set(map, st->peers[i].ip, vsx, FAST_REMOTE, err)) < 0)
			return r;
	/* The remote entries of peers that are gone (or now local). Keys
	 * are collected first: deleting while walking restarts the walk. */
	size_t n = 0, cap = 16;
	cleanup_free uint64_t *gone = vs_xcalloc(cap, sizeof(*gone));
	uint64_t k, prev;
	struct fast_port v;
	for (r = next_key(map, NULL, &k); r == 0; prev = k, r = next_key(map, &prev, &k)) {
		if (elem(BPF_MAP_LOOKUP_ELEM, map, &k, &v, 0) < 0 || !(v.flags & FAST_REMOTE))
			continue;
		bool keep = false;
		for (size_t i = 0; i < st->n_peers && !keep; i++)
			keep = mac_key(st->peers[i].ip) == k &&
			       overlay_peer_active(st, &st->peers[i]) && v.ifindex == (uint32_t)vsx;
		if (keep)
			continue;
		if (n == cap) {
			cap *= 2;
			uint64_t *g = vs_xcalloc(cap, sizeof(*g));
			memcpy(g, gone, n * sizeof(*g));
			free(gone);
			gone = g;
		}
		gone[n++] = k;
	}
	for (size_t i = 0; i < n; i++)
		if ((r = elem(BPF_MAP_DELETE_ELEM, map, &gone[i], NULL, 0)) < 0 && r != -ENOENT)
			return vs_error_sys(err, -r, "fast path: a remote entry");
	return 0;
}

static void todo_add(struct fast_todo *todo, int idx)
{
	if (idx)
		todo->idx[todo->n++] = idx;
}

int fast_prepare(const char *root, struct nl_sock *sk, const struct ipam_state *st,
		 const char *name, struct fast_todo *todo, struct vs_error *err)
{
	*todo = (struct fast_todo){.prog = -1};
	const struct ipam_lease *l = ipam_find((struct ipam_state *)st, name);
	if (!l || !fast_enabled())
		return 0;
	cleanup_close int prog = -1, map = -1;
	bool fresh = false;
	int r;
	if (reopen(root, &prog, &map) != 0) {
		if ((r = load_new(root, &prog, &map, err)) < 0)
			return r;
		fresh = true;
	}
	/* Host ends (this slice's; every one's with a new program) and the
	 * VXLAN device. */
	todo->idx = vs_xcalloc(st->n + 2, sizeof(int));
	/* A capped slice keeps every frame on its veth (its qdiscs shape
	 * them): no entry (attach_host took any old one away), no program. */
	if (!l->want.rate_bps) {
		int idx = link_index(sk, l->veth);
		if (idx && (r = entry_set(map, l->ip, idx, 0, err)) < 0)
			return r;
		todo_add(todo, idx);
	}
	for (size_t i = 0; fresh && i < st->n; i++) {
		const struct ipam_lease *o = &st->leases[i];
		int idx = o != l && !o->want.rate_bps ? link_index(sk, o->veth) : 0;
		if (idx && (r = entry_set(map, o->ip, idx, 0, err)) < 0)
			return r;
		todo_add(todo, idx);
	}
	if (st->vni) {
		char vx[IFNAMSIZ];
		overlay_devname(st, vx);
		int vsx = link_index(sk, vx);
		if (vsx && (r = remotes_sync(map, st, vsx, err)) < 0)
			return r;
		todo_add(todo, vsx);
	}
	todo->prog = prog;
	prog = -1;
	return 0;
}

int fast_hook(struct fast_todo *todo, struct vs_error *err)
{
	if (todo->prog < 0 || !todo->n)
		return 0;
	if (!bpf_dl_available())
		return vs_error_set(err, ENOSYS, "fast path: libbpf.so.1 cannot be loaded");
	struct bpf_prog_info info = {0};
	int r = info_by_fd(todo->prog, &info, sizeof(info));
	if (r < 0)
		return vs_error_sys(err, -r, "fast path: program info");
	for (size_t i = 0; i < todo->n; i++) {
		/* clsact on the device (there already: fine), then the program
		 * as filter 1:1 unless it is there (the VXLAN device's, from an
		 * earlier start), replacing what an earlier program put there.
		 * A device gone since (its slice ended): nothing to do. */
		DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = todo->idx[i],
				    .attach_point = BPF_TC_INGRESS);
		r = bpf_tc_hook_create(&hook);
		if (r == -ENODEV)
			continue;
		if (r < 0 && r != -EEXIST)
			return vs_error_sys(err, -r, "fast path: ifindex %d: clsact qdisc",
					    todo->idx[i]);
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, q, .handle = 1, .priority = 1);
		if (bpf_tc_query(&hook, &q) == 0 && q.prog_id == info.id)
			continue;
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1,
				    .prog_fd = todo->prog, .flags = BPF_TC_F_REPLACE);
		if ((r = bpf_tc_attach(&hook, &opts)) < 0 && r != -ENODEV)
			return vs_error_sys(err, -r, "fast path: ifindex %d: attach", todo->idx[i]);
	}
	return 0;
}

void fast_todo_free(struct fast_todo *todo)
{
	if (todo->prog >= 0)
		close(todo->prog);
	free(todo->idx);
	*todo = (struct fast_todo){.prog = -1};
}

int fast_peers(const char *root, struct nl_sock *sk, const struct ipam_state *st,
	       struct vs_error *err)
{
	cleanup_close int prog = -1, map = -1;
	if (!st->vni || reopen(root, &prog, &map) != 0)
		return 0; /* no program here yet: the next start makes the entries */
	char vx[IFNAMSIZ];
	overlay_devname(st, vx);
	int vsx = link_index(sk, vx);
	return vsx ? remotes_sync(map, st, vsx, err) : 0;
}

int fast_forget(const char *root, uint32_t ip, struct vs_error *err)
{
	cleanup_close int prog = -1, map = -1;
	if (reopen(root, &prog, &map) != 0)
		return 0; /* no program (and no map, no entry) here */
	uint64_t k = mac_key(ip);
	int r = elem(BPF_MAP_DELETE_ELEM, map, &k, NULL, 0);
	if (r < 0 && r != -ENOENT) {
		char a[16];
		ipam_fmt(ip, a);
		return vs_error_sys(err, -r, "fast path: remove the entry of %s", a);
	}
	return 0;
}

int fast_counters(const char *root, const struct ipam_lease *l, int ifindex, uint64_t *bytes,
		  uint64_t *packets)
{
	*bytes = *packets = 0;
	cleanup_close int prog = -1, map = -1;
	if (reopen(root, &prog, &map) != 0)
		return 0;
	uint64_t k = mac_key(l->ip);
	struct fast_port v;
	if (elem(BPF_MAP_LOOKUP_ELEM, map, &k, &v, 0) < 0 || v.flags || (int)v.ifindex != ifindex)
		return 0; /* not this run's entry */
	*bytes = v.rx_bytes;
	*packets = v.rx_packets;
	return 0;
}

void fast_teardown(const char *root)
{
	cleanup_free char *path = state_path(root);
	(void)unlink(path);
}
