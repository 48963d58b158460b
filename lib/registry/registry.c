/*
 * registry.c - the registry object: opening and closing it (the store, the
 * limits, the server's state), the nodes' liveness kept in memory, and the
 * public token helpers of vslice/registry.h.
 *
 * Layers: api.c (routes, JSON) and server.c (HTTP) sit above the store
 * (store*.c, all SQL). The store announces a commit that bumped the
 * revision through the hook registered here, which wakes the long-polls
 * (reg_wake); the store itself never calls the server.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "registry_int.h"
#include "vslice/units.h"
#include "vslice/util.h"

long long reg_now(void)
{
	return (long long)time(NULL);
}

long long reg_now_ms(void)
{
	return (long long)(vs_now_ns() / 1000000);
}

long long reg_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *registry_role_name(enum registry_role role)
{
	switch (role) {
	case REGISTRY_ROLE_ADMIN:
		return "admin";
	case REGISTRY_ROLE_USER:
		return "user";
	case REGISTRY_ROLE_NODE:
		return "node";
	default:
		return "none";
	}
}

int registry_token_generate(enum registry_role role, char *out, struct vs_error *err)
{
	unsigned char rnd[32];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return vs_error_sys(err, errno, "token: getrandom");
		}
		got += (size_t)r;
	}
	const char *prefix = role == REGISTRY_ROLE_ADMIN  ? "vsa_"
			     : role == REGISTRY_ROLE_USER ? "vsu_"
							  : "vsn_";
	memcpy(out, prefix, 4);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 4 + 2 * i, 3, "%02x", rnd[i]);
	out[REGISTRY_TOKEN_LEN] = '\0';
	return 0;
}

enum registry_role registry_token_role(const char *t)
{
	if (!t || strlen(t) != REGISTRY_TOKEN_LEN)
		return REGISTRY_ROLE_NONE;
	for (size_t i = 4; i < REGISTRY_TOKEN_LEN; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return REGISTRY_ROLE_NONE;
	if (strncmp(t, "vsa_", 4) == 0)
		return REGISTRY_ROLE_ADMIN;
	if (strncmp(t, "vsu_", 4) == 0)
		return REGISTRY_ROLE_USER;
	if (strncmp(t, "vsn_", 4) == 0)
		return REGISTRY_ROLE_NODE;
	return REGISTRY_ROLE_NONE;
}

void registry_token_hash(const char *token, char out[65])
{
	vs_sha256_buf(token, strlen(token), out);
}

bool registry_node_name_valid(const char *s)
{
	return vs_node_name_valid(s);
}

int registry_init_db(const char *db, char **admin_token, struct vs_error *err)
{
	*admin_token = NULL;
	char token[REGISTRY_TOKEN_LEN + 1];
	int r = registry_token_generate(REGISTRY_ROLE_ADMIN, token, err);
	if (r >= 0)
		r = store_create(db, token, err);
	if (r < 0)
		return r;
	*admin_token = vs_xstrdup(token);
	return 0;
}

/* The store committed a change that bumped the revision: wake long-polls. */
static void registry_committed(void *ctx, long long revision)
{
	(void)revision;
	reg_wake(ctx);
}

int registry_open(const char *db, const struct registry_opts *opts, struct registry **out,
		  struct vs_error *err)
{
	struct registry *reg = vs_xcalloc(1, sizeof(*reg));
	*out = NULL;
	pthread_mutex_init(&reg->lock, NULL);
	pthread_cond_init(&reg->cond, NULL);
	reg->heartbeat =
	    opts && opts->heartbeat_secs ? opts->heartbeat_secs : REGISTRY_DEFAULT_HEARTBEAT;
	reg->lost_after = opts && opts->lost_after ? opts->lost_after : REGISTRY_DEFAULT_LOST;
	reg->threads = opts && opts->threads ? opts->threads : 4;
	reg->migration_timeout = opts && opts->migration_timeout_secs
				     ? opts->migration_timeout_secs
				     : REGISTRY_DEFAULT_MIGRATION_TIMEOUT;
	reg->started = reg_now();
	/* Tests shorten the tickets' lifetime (1..30 s) to see one expire;
	 * nothing else reads it (docs/cluster.md, "Remote verbs and tickets"). */
	const char *ttl = getenv("VSLICE_TEST_TICKET_TTL");
	long ttl_secs = ttl ? strtol(ttl, NULL, 10) : 0;
	tickets_init(&reg->tickets,
		     ttl_secs > 0 && ttl_secs <= TICKET_TTL_DEFAULT ? (unsigned)ttl_secs : 0);
	lim_init(&reg->lim, !opts || !opts->per_address_limit ? REG_ADDR_DEFAULT
			    : opts->per_address_limit == REGISTRY_NO_ADDRESS_LIMIT
				? 0
				: opts->per_address_limit);
	int r = store_open(reg, db, err);
	if (r >= 0)
		r = mig_key_load(reg, err);
	if (r >= 0) {
		/* Known nodes count as seen at start: they get one lost window. */
		struct store_node *nodes;
		size_t n;
		r = store_nodes_list(reg, &nodes, &n, err);
		for (size_t i = 0; r >= 0 && i < n; i++)
			reg_touch(reg, nodes[i].name, reg->started);
		if (r >= 0)
			store_nodes_free(nodes, n);
	}
	if (r < 0) {
		registry_close(reg);
		return r;
	}
	store_set_commit_hook(reg, registry_committed, reg);
	/* Stale uploads from a previous run. */
	cleanup_free char *tmp = vs_xasprintf("%s/tmp", reg->store.blob_dir);
	struct vs_error ignored;
	vs_rm_rf(tmp, &ignored);
	vs_mkdir_p(tmp, 0700, &ignored);
	*out = reg;
	return 0;
}

void registry_close(struct registry *reg)
{
	if (!reg)
		return;
	registry_stop(reg);
	store_close(reg);
	for (size_t i = 0; i < reg->nseen; i++)
		free(reg->seen[i].name);
	free(reg->seen);
	lim_free(&reg->lim);
	tickets_free(&reg->tickets);
	pthread_mutex_destroy(&reg->lock);
	pthread_cond_destroy(&reg->cond);
	free(reg);
}

long long registry_revision(struct registry *reg)
{
	pthread_mutex_lock(&reg->lock);
	long long r = reg->revision;
	pthread_mutex_unlock(&reg->lock);
	return r;
}

int registry_token_create(struct registry *reg, enum registry_role role, const char *user,
			  char **token, struct vs_error *err)
{
	char t[REGISTRY_TOKEN_LEN + 1];
	*token = NULL;
	int r = registry_token_generate(role, t, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&reg->lock);
	r = store_token_add(reg, t, role, user, NULL, err);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return r;
	*token = vs_xstrdup(t);
	return 0;
}

int registry_expire(struct registry *reg, long long now, struct vs_error *err)
{
	pthread_mutex_lock(&reg->lock);
	char **names = NULL;
	size_t n = 0;
	int r = store_slice_expired(reg, now, &names, &n, err);
	if (r >= 0 && n > 0) {
		r = store_begin(reg, err);
		for (size_t i = 0; r >= 0 && i < n; i++)
			r = store_slice_delete(reg, names[i], err);
		if (r >= 0)
			r = store_commit(reg, true, err);
		else
			store_rollback(reg);
	}
	pthread_mutex_unlock(&reg->lock);
	store_names_free(names, n);
	return r < 0 ? r : (int)n;
}

/* reg->seen is kept sorted by name: lookups are a binary search (a
 * submission looks up every node; at 5000 nodes a linear scan was 77% of
 * the registry's CPU). Returns the entry or NULL, *pos where it belongs. */
static struct node_seen *seen_find(struct registry *reg, const char *node, size_t *pos)
{
	size_t lo = 0, hi = reg->nseen;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(reg->seen[mid].name, node);
		if (c == 0) {
			if (pos)
				*pos = mid;
			return &reg->seen[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (pos)
		*pos = lo;
	return NULL;
}

long long reg_last_seen(struct registry *reg, const char *node)
{
	struct node_seen *s = seen_find(reg, node, NULL);
	/* Nodes not heard from since the registry started count from its start. */
	return s ? s->last_seen : reg->started;
}

void reg_touch(struct registry *reg, const char *node, long long now)
{
	size_t pos;
	struct node_seen *s = seen_find(reg, node, &pos);
	if (!s) {
		if (reg->nseen == reg->seen_cap) {
			reg->seen_cap = reg->seen_cap ? 2 * reg->seen_cap : 16;
			reg->seen = vs_xrealloc(reg->seen, reg->seen_cap * sizeof(*reg->seen));
		}
		memmove(&reg->seen[pos + 1], &reg->seen[pos],
			(reg->nseen - pos) * sizeof(*reg->seen));
		reg->nseen++;
		s = &reg->seen[pos];
		s->name = vs_xstrdup(node);
		s->unknown = false;
	}
	s->last_seen = now;
}

bool reg_seen_ready(struct registry *reg, long long last_seen, long long now)
{
	return now - last_seen <= (long long)reg->lost_after * reg->heartbeat;
}

bool reg_node_ready(struct registry *reg, const char *node, long long now)
{
	return reg_seen_ready(reg, reg_last_seen(reg, node), now);
}
