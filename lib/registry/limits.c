/*
 * limits.c - what one client may hold of the registry: connections and
 * memory (docs/security.md, "Cluster abuse").
 *
 * Connections. Every open connection is counted by client address (IPv4:
 * the address; IPv6: its /64, what one host is usually given). The total is
 * capped below the fd limit (each connection may hold one more fd: an
 * upload's temp file or a file answer). A new connection is refused when
 *   - the total is at the cap, or
 *   - its address is not trusted and either holds per_addr connections
 *     already or the total has reached cap - headroom.
 * An address is trusted once a request from it carried a valid node or admin
 * token, so node managers and admins keep `headroom` connections nobody else
 * can take. Connections that have not sent a request yet are closed after
 * REG_HEADER_TIMEOUT of silence (server.c); authenticated ones keep the long
 * timeout long-polls need.
 *
 * Memory. Request bodies (JSON, up to 32 MiB each) and answers built in
 * memory are charged to the request's token while they are held; a token
 * may hold REG_TOKEN_MEM bytes, the registry REG_TOTAL_MEM. A charge that
 * does not fit is refused (the request gets 429 or 503), except for answers
 * to requests that changed state, which are always sent (forced).
 *
 * Everything here takes its own mutex (never reg->lock): the accept policy
 * runs in libmicrohttpd's threads before any request exists.
 */
#include <netinet/in.h>
#include <string.h>

#include "registry_int.h"
#include "vslice/util.h"

#define ADDR_BUCKETS REG_ADDR_BUCKETS
#define TRUSTED_MAX  16384 /* trusted addresses remembered (then no more are added) */

struct lim_addr {
	unsigned char key[17]; /* family byte, then 4 (IPv4) or 8 (IPv6 /64) bytes */
	unsigned conns;
	bool trusted;
	struct lim_addr *next;
};

struct lim_token {
	char *token;
	size_t bytes;
	struct lim_token *next;
};

static bool addr_key(const struct sockaddr *sa, unsigned char key[17])
{
	memset(key, 0, 17);
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = 4;
			memcpy(key + 1, a->s6_addr + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
		}
		return true;
	}
	return false;
}

static unsigned addr_hash(const unsigned char key[17])
{
	unsigned h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < 17; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % ADDR_BUCKETS;
}

/* The entry for key, created when create (NULL when not found and !create).
 * Expects l->lock. */
static struct lim_addr *addr_get(struct reg_limits *l, const unsigned char key[17], bool create)
{
	unsigned h = addr_hash(key);
	for (struct lim_addr *e = l->addrs[h]; e; e = e->next)
		if (memcmp(e->key, key, 17) == 0)
			return e;
	if (!create)
		return NULL;
	struct lim_addr *e = vs_xcalloc(1, sizeof(*e));
	memcpy(e->key, key, 17);
	e->next = l->addrs[h];
	l->addrs[h] = e;
	return e;
}

static void addr_drop_if_unused(struct reg_limits *l, struct lim_addr *e)
{
	if (e->conns || e->trusted)
		return;
	for (struct lim_addr **pp = &l->addrs[addr_hash(e->key)]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
	}
}

void lim_init(struct reg_limits *l, unsigned per_addr)
{
	pthread_mutex_init(&l->lock, NULL);
	l->per_addr = per_addr;
	l->token_cap = REG_TOKEN_MEM;
	l->total_cap = REG_TOTAL_MEM;
	lim_set_conn_cap(l, 1000);
}

void lim_set_conn_cap(struct reg_limits *l, unsigned conn_cap)
{
	pthread_mutex_lock(&l->lock);
	l->conn_cap = conn_cap < 16 ? 16 : conn_cap;
	l->headroom = l->conn_cap / 8 < 8 ? 8 : l->conn_cap / 8;
	pthread_mutex_unlock(&l->lock);
}

void lim_free(struct reg_limits *l)
{
	for (size_t i = 0; i < ADDR_BUCKETS; i++) {
		while (l->addrs[i]) {
			struct lim_addr *e = l->addrs[i];
			l->addrs[i] = e->next;
			free(e);
		}
	}
	while (l->tokens) {
		struct lim_token *t = l->tokens;
		l->tokens = t->next;
		free(t->token);
		free(t);
	}
	pthread_mutex_destroy(&l->lock);
}

bool lim_accept(struct reg_limits *l, const struct sockaddr *sa)
{
	unsigned char key[17];
	bool known = addr_key(sa, key);
	pthread_mutex_lock(&l->lock);
	struct lim_addr *e = known ? addr_get(l, key, false) : NULL;
	bool trusted = e && e->trusted;
	bool ok = l->conns < l->conn_cap;
	if (ok && !trusted) {
		ok = l->conns < l->conn_cap - l->headroom &&
		     !(l->per_addr && e && e->conns >= l->per_addr);
	}
	if (!ok)
		l->refused++;
	pthread_mutex_unlock(&l->lock);
	return ok;
}

void *lim_conn_open(struct reg_limits *l, const struct sockaddr *sa)
{
	unsigned char key[17];
	bool known = addr_key(sa, key);
	pthread_mutex_lock(&l->lock);
	l->conns++;
	struct lim_addr *e = known ? addr_get(l, key, true) : NULL;
	if (e)
		e->conns++;
	pthread_mutex_unlock(&l->lock);
	return e;
}

void lim_conn_close(struct reg_limits *l, void *entry)
{
	struct lim_addr *e = entry;
	pthread_mutex_lock(&l->lock);
	l->conns--;
	if (e) {
		e->conns--;
		addr_drop_if_unused(l, e);
	}
	pthread_mutex_unlock(&l->lock);
}

void lim_trust(struct reg_limits *l, void *entry)
{
	struct lim_addr *e = entry;
	if (!e)
		return;
	pthread_mutex_lock(&l->lock);
	if (!e->trusted && l->ntrusted < TRUSTED_MAX) {
		e->trusted = true;
		l->ntrusted++;
	}
	pthread_mutex_unlock(&l->lock);
}

int lim_mem_charge(struct reg_limits *l, const char *token, size_t n, bool force)
{
	if (n == 0)
		return 0;
	const char *key = token ? token : "";
	pthread_mutex_lock(&l->lock);
	struct lim_token *t = l->tokens;
	while (t && strcmp(t->token, key) != 0)
		t = t->next;
	size_t held = t ? t->bytes : 0;
	int r = 0;
	if (!force && held + n > l->token_cap)
		r = -1;
	else if (!force && l->mem + n > l->total_cap)
		r = -2;
	if (r == 0) {
		if (!t) {
			t = vs_xcalloc(1, sizeof(*t));
			t->token = vs_xstrdup(key);
			t->next = l->tokens;
			l->tokens = t;
		}
		t->bytes += n;
		l->mem += n;
		if (l->mem > l->mem_peak)
			l->mem_peak = l->mem;
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

void lim_mem_release(struct reg_limits *l, const char *token, size_t n)
{
	if (n == 0)
		return;
	const char *key = token ? token : "";
	pthread_mutex_lock(&l->lock);
	for (struct lim_token **pp = &l->tokens; *pp; pp = &(*pp)->next) {
		struct lim_token *t = *pp;
		if (strcmp(t->token, key) != 0)
			continue;
		t->bytes -= n < t->bytes ? n : t->bytes;
		if (t->bytes == 0) {
			*pp = t->next;
			free(t->token);
			free(t);
		}
		break;
	}
	l->mem -= n < l->mem ? n : l->mem;
	pthread_mutex_unlock(&l->lock);
}
