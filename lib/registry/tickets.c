/*
 * tickets.c - the table of the registry's short-lived tickets (tickets.h).
 *
 * A ticket is "vtk_" + 64 hex digits of 32 random bytes (getrandom). The
 * table keeps sha256 of the whole ticket with what it grants: user, slice,
 * node, verb, and an expiry (TICKET_TTL_DEFAULT s after issue). Redeeming
 * removes the entry (single use) and remembers its digest in a small ring,
 * so the registry log can say "already used" for a replay; the node is
 * told nothing but "refused" whatever the reason.
 *
 * Bounds: at most TICKET_PER_USER open tickets per user, TICKET_GLOBAL in
 * all (a fixed array of that many slots, allocated once), so a thousand
 * clients asking at once cost the registry at most 4096 small entries and
 * the rest get 429. Lookups scan the array and compare digests without an
 * early exit: a linear pass over at most 4096 * 32 bytes per redeem, and
 * no timing that depends on how much of a digest matched.
 *
 * Not thread-safe on its own: the registry calls it under reg->lock.
 */
#include <errno.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_int.h"
#include "tickets.h"
#include "vslice/util.h"

struct ticket_entry {
	unsigned char sha[SHA256_DIGEST_SIZE];
	long long expires_ms;
	struct ticket_grant g;
};

static const char *const verbs[] = {"exec", "shell", "stats", "freeze", "thaw", "logs", "cp"};

bool ticket_verb_valid(const char *verb)
{
	for (size_t i = 0; verb && i < VS_ARRAY_SIZE(verbs); i++)
		if (strcmp(verb, verbs[i]) == 0)
			return true;
	return false;
}

void tickets_init(struct ticket_table *t, unsigned ttl_secs)
{
	memset(t, 0, sizeof(*t));
	t->e = vs_xcalloc(TICKET_GLOBAL, sizeof(*t->e));
	t->ttl_ms = (ttl_secs ? ttl_secs : TICKET_TTL_DEFAULT) * 1000u;
}

void tickets_free(struct ticket_table *t)
{
	if (t->e)
		explicit_bzero(t->e, TICKET_GLOBAL * sizeof(*t->e));
	free(t->e);
	t->e = NULL;
	t->n = 0;
}

static void digest(const char *ticket, unsigned char out[SHA256_DIGEST_SIZE])
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, strlen(ticket), (const uint8_t *)ticket);
	sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* Equal, in time that does not depend on where they differ. */
static bool digest_eq(const unsigned char *a, const unsigned char *b)
{
	unsigned char d = 0;
	for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static void drop(struct ticket_table *t, size_t i)
{
	t->e[i] = t->e[--t->n];
	memset(&t->e[t->n], 0, sizeof(t->e[t->n]));
}

void tickets_sweep(struct ticket_table *t, long long now_ms)
{
	for (size_t i = 0; i < t->n;) {
		if (t->e[i].expires_ms <= now_ms)
			drop(t, i);
		else
			i++;
	}
}

size_t tickets_open(const struct ticket_table *t, const char *user)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++)
		n += !user || strcmp(t->e[i].g.user, user) == 0;
	return n;
}

static bool fits(const char *s, size_t max)
{
	return s && *s && strnlen(s, max) < max;
}

int tickets_issue(struct ticket_table *t, const struct ticket_grant *g, long long now_ms,
		  char out[TICKET_LEN + 1], long long *expires_ms, struct vs_error *err)
{
	if (!fits(g->user, sizeof(g->user)) || !fits(g->slice, sizeof(g->slice)) ||
	    !fits(g->node, sizeof(g->node)) || !ticket_verb_valid(g->verb))
		return vs_error_set(err, EINVAL, "ticket: bad user, slice, node or verb");
	tickets_sweep(t, now_ms);
	if (tickets_open(t, g->user) >= TICKET_PER_USER) {
		vs_error_set(err, EAGAIN,
			     "user %s: %d tickets open already (they expire %u s after issue)",
			     g->user, TICKET_PER_USER, t->ttl_ms / 1000);
		vs_error_kind(err, VS_EK_LIMIT);
		return -EAGAIN;
	}
	if (t->n >= TICKET_GLOBAL) {
		vs_error_set(err, EAGAIN, "the registry holds %d open tickets: try again shortly",
			     TICKET_GLOBAL);
		vs_error_kind(err, VS_EK_LIMIT);
		return -EAGAIN;
	}
	unsigned char rnd[32];
	reg_random_bytes(rnd, sizeof(rnd));
	memcpy(out, "vtk_", 4);
	reg_hex(rnd, sizeof(rnd), out + 4);
	explicit_bzero(rnd, sizeof(rnd));
	struct ticket_entry *e = &t->e[t->n++];
	digest(out, e->sha);
	e->g = *g;
	e->expires_ms = now_ms + t->ttl_ms;
	*expires_ms = e->expires_ms;
	t->issued++;
	return 0;
}

static bool well_formed(const char *ticket)
{
	if (!ticket || strlen(ticket) != TICKET_LEN || strncmp(ticket, "vtk_", 4) != 0)
		return false;
	for (const char *p = ticket + 4; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int refuse(struct ticket_table *t, struct vs_error *err, const char *why)
{
	t->refused++;
	return vs_error_set(err, EACCES, "ticket refused: %s", why);
}

int tickets_redeem(struct ticket_table *t, const char *ticket, const char *node, long long now_ms,
		   struct ticket_grant *g, struct vs_error *err)
{
	memset(g, 0, sizeof(*g));
	if (!well_formed(ticket))
		return refuse(t, err, "malformed");
	unsigned char sha[SHA256_DIGEST_SIZE];
	digest(ticket, sha);
	size_t found = SIZE_MAX;
	for (size_t i = 0; i < t->n; i++) /* no early exit: the pass is the same length */
		if (digest_eq(t->e[i].sha, sha))
			found = i;
	if (found == SIZE_MAX) {
		bool used = false;
		for (size_t i = 0; i < TICKET_USED_KEEP; i++)
			used |= digest_eq(t->used[i], sha);
		return refuse(t, err, used ? "already used" : "unknown (or expired and swept)");
	}
	struct ticket_entry *e = &t->e[found];
	if (e->expires_ms <= now_ms) {
		drop(t, found);
		return refuse(t, err, "expired");
	}
	if (!node || strcmp(e->g.node, node) != 0) {
		/* A node that presents another node's ticket burns it: the
		 * ticket has left the path it was made for. */
		memcpy(t->used[t->used_next++ % TICKET_USED_KEEP], sha, sizeof(sha));
		drop(t, found);
		return refuse(t, err, "bound to another node");
	}
	*g = e->g;
	memcpy(t->used[t->used_next++ % TICKET_USED_KEEP], sha, sizeof(sha));
	drop(t, found);
	t->redeemed++;
	return 0;
}
