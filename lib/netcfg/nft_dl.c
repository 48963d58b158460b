/*
 * nft_dl.c - libnftables loaded on first use (dlopen), not at every start
 * of every binary.
 *
 * Linked in, libnftables and what it pulls (libnftnl, libmnl, libxtables,
 * libgmp) are mapped, relocated and constructed by every slicectl command:
 * about half a millisecond of CPU per `slicectl run` that never touches a
 * bridge (docs/benchmarks.md §7). These are the six functions nft.c calls,
 * under their own names and prototypes (nftables/libnftables.h), so nft.c
 * reads as plain libnftables code; each resolves the library once. The
 * Makefile links no binary against -lnftables.
 *
 * When the library cannot be loaded nft_ctx_new() returns NULL, which nft.c
 * already reports as a context it could not make; the other five are only
 * reached with a context, so the library is loaded by then.
 */
#include <nftables/libnftables.h>
#include <pthread.h>
#include <stddef.h>

#include "vslice/util.h"

static struct {
	struct nft_ctx *(*ctx_new)(uint32_t);
	void (*ctx_free)(struct nft_ctx *);
	int (*buffer_output)(struct nft_ctx *);
	int (*buffer_error)(struct nft_ctx *);
	const char *(*get_error_buffer)(struct nft_ctx *);
	int (*run_cmd_from_buffer)(struct nft_ctx *, const char *);
} fn;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void)
{
	const struct vs_dlsym syms[] = {
	    {"nft_ctx_new", (void **)&fn.ctx_new},
	    {"nft_ctx_free", (void **)&fn.ctx_free},
	    {"nft_ctx_buffer_output", (void **)&fn.buffer_output},
	    {"nft_ctx_buffer_error", (void **)&fn.buffer_error},
	    {"nft_ctx_get_error_buffer", (void **)&fn.get_error_buffer},
	    {"nft_run_cmd_from_buffer", (void **)&fn.run_cmd_from_buffer},
	};
	/* All or nothing: without every one, no context is made. */
	(void)vs_dl_resolve("libnftables.so.1", syms, VS_ARRAY_SIZE(syms), NULL, 0);
}

struct nft_ctx *nft_ctx_new(uint32_t flags)
{
	pthread_once(&load_once, load);
	return fn.ctx_new ? fn.ctx_new(flags) : NULL;
}

void nft_ctx_free(struct nft_ctx *ctx)
{
	fn.ctx_free(ctx);
}

int nft_ctx_buffer_output(struct nft_ctx *ctx)
{
	return fn.buffer_output(ctx);
}

int nft_ctx_buffer_error(struct nft_ctx *ctx)
{
	return fn.buffer_error(ctx);
}

const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx)
{
	return fn.get_error_buffer(ctx);
}

int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf)
{
	return fn.run_cmd_from_buffer(nft, buf);
}
