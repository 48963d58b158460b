/*
 * bpf_dl.c - libbpf loaded on first use (dlopen), as nft_dl.c does for
 * libnftables: only what touches the bridge's fast path (fast.c) maps it,
 * never a start or a command that does not (libbpf pulls libelf and libz:
 * about 0.2 ms of loading, docs/benchmarks.md §7b).
 *
 * The functions fast.c calls to load its program and attach it, under their
 * own names and prototypes (bpf/libbpf.h), so fast.c reads as plain libbpf
 * code. Callers
 * ask bpf_dl_available() first; the others are reached only after it said
 * yes. The Makefile links nothing against -lbpf.
 */
#include <bpf/libbpf.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "netcfg_int.h"
#include "vslice/util.h"

static struct {
	bool ok;
	struct bpf_object *(*object_open_mem)(const void *, size_t,
					      const struct bpf_object_open_opts *);
	int (*object_load)(struct bpf_object *);
	void (*object_close)(struct bpf_object *);
	struct bpf_program *(*find_program)(const struct bpf_object *, const char *);
	int (*program_fd)(const struct bpf_program *);
	struct bpf_map *(*find_map)(const struct bpf_object *, const char *);
	int (*map_fd)(const struct bpf_map *);
	int (*tc_hook_create)(struct bpf_tc_hook *);
	int (*tc_attach)(const struct bpf_tc_hook *, struct bpf_tc_opts *);
	int (*tc_query)(const struct bpf_tc_hook *, struct bpf_tc_opts *);
	libbpf_print_fn_t (*set_print)(libbpf_print_fn_t);
} fn;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

/* libbpf's own messages (the verifier's log among them) stay quiet: errors
 * come back as return values, named by fast.c. */
static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static void load(void)
{
	const struct vs_dlsym syms[] = {
	    {"bpf_object__open_mem", (void **)&fn.object_open_mem},
	    {"bpf_object__load", (void **)&fn.object_load},
	    {"bpf_object__close", (void **)&fn.object_close},
	    {"bpf_object__find_program_by_name", (void **)&fn.find_program},
	    {"bpf_program__fd", (void **)&fn.program_fd},
	    {"bpf_object__find_map_by_name", (void **)&fn.find_map},
	    {"bpf_map__fd", (void **)&fn.map_fd},
	    {"bpf_tc_hook_create", (void **)&fn.tc_hook_create},
	    {"bpf_tc_attach", (void **)&fn.tc_attach},
	    {"bpf_tc_query", (void **)&fn.tc_query},
	    {"libbpf_set_print", (void **)&fn.set_print},
	};
	if (!vs_dl_resolve("libbpf.so.1", syms, VS_ARRAY_SIZE(syms), NULL, 0))
		return; /* all or nothing: fn.ok stays false */
	fn.set_print(quiet);
	fn.ok = true;
}

bool bpf_dl_available(void)
{
	pthread_once(&load_once, load);
	return fn.ok;
}

struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
					const struct bpf_object_open_opts *opts)
{
	return fn.object_open_mem(obj_buf, obj_buf_sz, opts);
}

int bpf_object__load(struct bpf_object *obj)
{
	return fn.object_load(obj);
}

void bpf_object__close(struct bpf_object *obj)
{
	fn.object_close(obj);
}

struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name)
{
	return fn.find_program(obj, name);
}

int bpf_program__fd(const struct bpf_program *prog)
{
	return fn.program_fd(prog);
}

struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name)
{
	return fn.find_map(obj, name);
}

int bpf_map__fd(const struct bpf_map *map)
{
	return fn.map_fd(map);
}

int bpf_tc_hook_create(struct bpf_tc_hook *hook)
{
	return fn.tc_hook_create(hook);
}

int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)
{
	return fn.tc_attach(hook, opts);
}

int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts)
{
	return fn.tc_query(hook, opts);
}
