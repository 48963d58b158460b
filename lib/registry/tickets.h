/*
 * tickets.h - the registry's short-lived tickets (tickets.c): a user asks
 * for one to reach one sliver's node manager for one verb; that node
 * redeems it once, within its lifetime (docs/cluster.md, "Remote verbs and
 * tickets"; docs/security.md).
 *
 * The table is in memory only (a registry restart voids open tickets) and
 * holds sha256(ticket), never the ticket. It is a plain data structure: the
 * caller serialises calls (the registry holds reg->lock) and passes the
 * time in, so tests drive it without a clock.
 */
#ifndef VSLICE_REGISTRY_TICKETS_H
#define VSLICE_REGISTRY_TICKETS_H

#include <stdbool.h>
#include <stddef.h>

#include "vslice/error.h"

#define TICKET_LEN	   68 /* "vtk_" + 64 hex */
#define TICKET_TTL_DEFAULT 30 /* seconds */
#define TICKET_PER_USER	   64
#define TICKET_GLOBAL	   4096
#define TICKET_NAME_MAX	   64  /* user, slice, node names: at most 63 bytes */
#define TICKET_USED_KEEP   256 /* redeemed digests remembered (for the log's reason) */

struct ticket_grant {
	char user[TICKET_NAME_MAX], slice[TICKET_NAME_MAX], node[TICKET_NAME_MAX];
	char verb[8];
};

struct ticket_entry;
struct ticket_table {
	struct ticket_entry *e; /* TICKET_GLOBAL slots */
	size_t n;		/* slots in use, packed at the front */
	unsigned ttl_ms;
	unsigned char used[TICKET_USED_KEEP][32]; /* ring of redeemed digests */
	size_t used_next;
	unsigned long long issued, redeemed, refused;
};

/* Is verb one a ticket may name (exec shell stats freeze thaw logs cp)? */
bool ticket_verb_valid(const char *verb);

/* ttl_secs 0: TICKET_TTL_DEFAULT. */
void tickets_init(struct ticket_table *t, unsigned ttl_secs);
void tickets_free(struct ticket_table *t);

/* A new ticket for g, valid until now_ms + ttl: out (TICKET_LEN + 1 bytes),
 * *expires_ms. Expired entries are swept first. -EAGAIN (kind VS_EK_LIMIT)
 * when g->user holds TICKET_PER_USER open tickets or the table
 * TICKET_GLOBAL, naming which; -EINVAL for a name that does not fit. */
int tickets_issue(struct ticket_table *t, const struct ticket_grant *g, long long now_ms,
		  char out[TICKET_LEN + 1], long long *expires_ms, struct vs_error *err);

/* Redeem ticket for node: 0 and *g filled (the ticket is gone: single
 * use); -EACCES otherwise, err saying why for the log only (unknown,
 * malformed, expired, already used, bound to another node) - the caller
 * answers every refusal alike. Digests are compared in constant time. */
int tickets_redeem(struct ticket_table *t, const char *ticket, const char *node, long long now_ms,
		   struct ticket_grant *g, struct vs_error *err);

/* Drop expired entries. */
void tickets_sweep(struct ticket_table *t, long long now_ms);
/* Open tickets of user (all with user NULL). */
size_t tickets_open(const struct ticket_table *t, const char *user);

#endif
