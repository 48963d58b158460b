/*
 * fast.c - the bridge's fast path: slice-to-slice IPv4 from one slice's
 * veth straight into the other's (bpf/fast.bpf.c at tc ingress of each
 * host end, bpf_redirect_peer), through libbpf (bpf_dl.c).
 *
 * What it saves: a bridged frame crosses two veths, two backlog passes, the
 * bridge and, where the host has br_netfilter on, the IPv4 hooks; a
 * redirected one crosses one veth and one backlog pass, like two namespaces
 * on a plain veth pair (docs/benchmarks.md §6). What it must not change: who
 * may send what to whom. The program redirects only a frame the bridge
 * table would accept from that port (its lease's MAC and address) and the
 * bridge would hand to exactly one other slice's port (that slice's MAC and
 * address); everything else goes on to the bridge as before (fast.bpf.c).
 *
 * One program and one map (vs_ports: MAC -> host end's ifindex, address)
 * per node, found again by id through <root>/net/fast.json (the id and the
 * program's load time, so an id the kernel gave to another program since
 * is not taken). Every call is under the lease lock. The program lives as
 * long as a host end has it attached (the attachments go with the veths),
 * the map as long as the program: nothing to remove at the last lease but
 * the file.
 *
 * When: never on the start's path. Attaching a tc program waits for an RCU
 * grace period (the clsact's filter list is swapped), so netcfg_fast_later
 * hands it to a detached process after the start; until then the slice's
 * frames take the bridge, which is correct, only slower. An entry must go
 * at once when its lease goes (fast_forget, in the release): a stale one
 * would send frames for a new slice of the same address to a gone device.
 *
 * VSLICE_NET_FASTPATH=0 switches it off (every frame takes the bridge).
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
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
	uint32_t ifindex;
	uint32_t ip; /* network order */
	uint64_t rx_bytes, rx_packets;
};

bool fast_enabled(void)
{
	const char *e = getenv("VSLICE_NET_FASTPATH");
	return !e || strcmp(e, "0") != 0;
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
	cleanup_close int p = bpf_prog_get_fd_by_id((uint32_t)id);
	if (p < 0)
		return 1;
	uint32_t map_ids[2] = {0};
	struct bpf_prog_info info = {.nr_map_ids = 2, .map_ids = (uint64_t)(uintptr_t)map_ids};
	uint32_t len = sizeof(info);
	if (bpf_obj_get_info_by_fd(p, &info, &len) < 0 || strcmp(info.name, FAST_PROG) != 0 ||
	    info.load_time != (uint64_t)loaded || info.type != BPF_PROG_TYPE_SCHED_CLS ||
	    info.nr_map_ids != 1)
		return 1;
	cleanup_close int m = bpf_map_get_fd_by_id(map_ids[0]);
	if (m < 0)
		return 1;
	*prog = p;
	*map = m;
	p = m = -1;
	return 0;
}

/* Load the embedded object; its program and map (dup'ed: the object goes)
 * and its id in fast.json. */
static int load_new(const char *root, int *prog, int *map, struct vs_error *err)
{
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
	uint32_t len = sizeof(info);
	if ((r = bpf_obj_get_info_by_fd(p, &info, &len)) < 0)
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

/* The map entry of l's running veth; its ifindex into todo (attached
 * later, without the lock). */
static int port_set(int map, struct nl_sock *sk, const struct ipam_lease *l, struct fast_todo *todo,
		    struct vs_error *err)
{
	int idx = link_index(sk, l->veth);
	if (!idx)
		return 0; /* not running: its next start does it */
	struct fast_port v = {.ifindex = (uint32_t)idx, .ip = htonl(l->ip)}, was;
	uint64_t k = mac_key(l->ip);
	int r = 0;
	/* Already there (a second call for the same run): its counters stay. */
	if (bpf_map_lookup_elem(map, &k, &was) < 0 || was.ifindex != v.ifindex || was.ip != v.ip)
		r = bpf_map_update_elem(map, &k, &v, BPF_ANY);
	if (r < 0)
		return vs_error_sys(err, -r, "fast path: %s: map entry", l->veth);
	todo->idx[todo->n++] = idx;
	return 0;
}

int fast_prepare(const char *root, struct nl_sock *sk, const struct ipam_state *st,
		 const char *name, struct fast_todo *todo, struct vs_error *err)
{
	*todo = (struct fast_todo){.prog = -1};
	const struct ipam_lease *l = ipam_find((struct ipam_state *)st, name);
	if (!l || !fast_enabled())
		return 0;
	if (!bpf_dl_available())
		return vs_error_set(err, ENOSYS, "fast path: libbpf.so.1 cannot be loaded");
	cleanup_close int prog = -1, map = -1;
	bool fresh = false;
	int r;
	if (reopen(root, &prog, &map) != 0) {
		if ((r = load_new(root, &prog, &map, err)) < 0)
			return r;
		fresh = true;
	}
	/* A capped slice keeps every frame on its veth (its qdiscs shape
	 * them): no entry, no program; one left from an earlier life goes. */
	if (l->want.rate_bps) {
		uint64_t k = mac_key(l->ip);
		r = bpf_map_delete_elem(map, &k);
		return r < 0 && r != -ENOENT ? vs_error_sys(err, -r, "fast path: %s", name) : 0;
	}
	todo->idx = vs_xcalloc(fresh ? st->n : 1, sizeof(int));
	if ((r = port_set(map, sk, l, todo, err)) < 0)
		return r;
	/* A new program (the node's first, or the old one went): every other
	 * running slice of the node gets it too. */
	for (size_t i = 0; fresh && i < st->n; i++)
		if (&st->leases[i] != l && !st->leases[i].want.rate_bps &&
		    (r = port_set(map, sk, &st->leases[i], todo, err)) < 0)
			return r;
	todo->prog = prog;
	prog = -1;
	return 0;
}

int fast_hook(struct fast_todo *todo, struct vs_error *err)
{
	for (size_t i = 0; i < todo->n; i++) {
		/* clsact on the host end (there already: fine), then the
		 * program as filter 1:1, replacing what an earlier start of
		 * the same veth put there. A veth gone since (its slice
		 * ended): nothing to do. */
		DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = todo->idx[i],
				    .attach_point = BPF_TC_INGRESS);
		int r = bpf_tc_hook_create(&hook);
		if (r == -ENODEV)
			continue;
		if (r < 0 && r != -EEXIST)
			return vs_error_sys(err, -r, "fast path: ifindex %d: clsact qdisc",
					    todo->idx[i]);
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

int fast_forget(const char *root, const struct ipam_lease *l, struct vs_error *err)
{
	cleanup_free char *path = state_path(root);
	if (access(path, F_OK) != 0 || !bpf_dl_available())
		return 0; /* no program was ever loaded here: no entry */
	cleanup_close int prog = -1, map = -1;
	if (reopen(root, &prog, &map) != 0)
		return 0; /* the program and its map are gone, and the entries with them */
	uint64_t k = mac_key(l->ip);
	int r = bpf_map_delete_elem(map, &k);
	if (r < 0 && r != -ENOENT)
		return vs_error_sys(err, -r, "fast path: %s: remove the map entry", l->name);
	return 0;
}

int fast_counters(const char *root, const struct ipam_lease *l, int ifindex, uint64_t *bytes,
		  uint64_t *packets)
{
	*bytes = *packets = 0;
	cleanup_free char *path = state_path(root);
	if (access(path, F_OK) != 0 || !bpf_dl_available())
		return 0;
	cleanup_close int prog = -1, map = -1;
	if (reopen(root, &prog, &map) != 0)
		return 0;
	uint64_t k = mac_key(l->ip);
	struct fast_port v;
	if (bpf_map_lookup_elem(map, &k, &v) < 0 || (int)v.ifindex != ifindex)
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
