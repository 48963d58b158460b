/*
 * store_slivers.c - the slivers table: one row per (slice, node) the
 * scheduler placed, with what the node last reported (state, exit code,
 * reason, times, restarts, message), how many bytes of its log the registry
 * holds, and whether its results are complete. A node's assignments are
 * the slices it has a sliver of.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"
#include "vslice/util.h"

static void sliver_clear(struct store_sliver *v)
{
	free(v->slice);
	free(v->node);
	free(v->state);
	free(v->reason);
	free(v->message);
	free(v->results);
	free(v->missing);
	free(v->address);
}

void store_slivers_free(struct store_sliver *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sliver_clear(&v[i]);
	free(v);
}

#define SLIVER_COLS                                                                                \
	"SELECT slice, node, state, exit_code, reason, started, finished, restarts, message,"      \
	" results, missing, log_size, address FROM slivers"

static void sliver_row(sqlite3_stmt *s, struct store_sliver *v)
{
	v->slice = store_col_dup(s, 0);
	v->node = store_col_dup(s, 1);
	v->state = store_col_dup(s, 2);
	v->exit_code = sqlite3_column_int64(s, 3);
	v->reason = store_col_dup(s, 4);
	v->started = sqlite3_column_int64(s, 5);
	v->finished = sqlite3_column_int64(s, 6);
	v->restarts = sqlite3_column_int64(s, 7);
	v->message = store_col_dup(s, 8);
	v->results = store_col_dup(s, 9);
	v->missing = store_col_dup(s, 10);
	v->log_size = sqlite3_column_int64(s, 11);
	v->address = store_col_dup(s, 12);
}

int store_slivers_of(struct registry *reg, const char *slice, const char *only_node,
		     struct store_sliver **out, size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, SLIVER_COLS " WHERE slice = ?1 AND (?2 IS NULL OR node = ?2) ORDER BY node", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	if (only_node)
		sqlite3_bind_text(s, 2, only_node, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		sliver_row(s, store_push((void **)out, &cap, n, sizeof(**out)));
	if (rc != SQLITE_DONE) {
		store_slivers_free(*out, *n);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "list slivers", err);
	}
	return 0;
}

int store_sliver_states(struct registry *reg, struct store_sliver **out, size_t *n,
			struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "SELECT node, state FROM slivers", err);
	if (!s)
		return -err->code;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_sliver *v = store_push((void **)out, &cap, n, sizeof(**out));
		v->node = store_col_dup(s, 0);
		v->state = store_col_dup(s, 1);
	}
	if (rc != SQLITE_DONE) {
		store_slivers_free(*out, *n);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "list sliver states", err);
	}
	return 0;
}

int store_sliver_get(struct registry *reg, const char *slice, const char *node,
		     struct store_sliver *out, struct vs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, SLIVER_COLS " WHERE slice = ? AND node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "sliver %s/%s: not found", slice, node);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read sliver", err);
	sliver_row(s, out);
	return 0;
}

void store_sliver_clear(struct store_sliver *v)
{
	sliver_clear(v);
	memset(v, 0, sizeof(*v));
}

int store_sliver_exists(struct registry *reg, const char *slice, const char *node,
			struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT 1 FROM slivers WHERE slice = ? AND node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(reg, "lookup sliver", err);
	return rc == SQLITE_ROW;
}

int store_sliver_report(struct registry *reg, const struct store_sliver *st, struct vs_error *err)
{
	/* Slivers the registry no longer wants (slice deleted) match no row:
	 * the node learns on its next poll. */
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "UPDATE slivers SET state = ?3, exit_code = ?4, reason = ?5, started = ?6,"
	    " finished = ?7, restarts = ?8, message = ?9 WHERE slice = ?1 AND node = ?2 AND"
	    " (state, exit_code, reason, started, finished, restarts, message) IS NOT"
	    " (?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, st->slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, st->node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, st->state, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, st->exit_code);
	sqlite3_bind_text(s, 5, st->reason ? st->reason : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 6, st->started);
	sqlite3_bind_int64(s, 7, st->finished);
	sqlite3_bind_int64(s, 8, st->restarts);
	sqlite3_bind_text(s, 9, st->message ? st->message : "", -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "sliver status", err);
	return sqlite3_changes(reg->store.db) > 0;
}

long long store_sliver_log_size(struct registry *reg, const char *slice, const char *node)
{
	struct vs_error err;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT log_size FROM slivers WHERE slice = ? AND node = ?", &err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
}

int store_sliver_set_log_size(struct registry *reg, const char *slice, const char *node,
			      long long size, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE slivers SET log_size = ? WHERE slice = ? AND node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_int64(s, 1, size);
	sqlite3_bind_text(s, 2, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "log size", err);
	return 0;
}

int store_sliver_results_done(struct registry *reg, const char *slice, const char *node,
			      const char *missing_json, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "UPDATE slivers SET results = 'complete', missing = ? WHERE slice = ? AND node = ?",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, missing_json, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "commit results", err);
	return 0;
}

void store_assignments_free(struct store_assignment *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].slice);
	free(v);
}

int store_assignments(struct registry *reg, const char *node, struct store_assignment **out,
		      size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT s.name, s.manifest_sha256, s.expires, v.address FROM slivers v"
		       " JOIN slices s"
		       " ON s.name = v.slice WHERE v.node = ? ORDER BY s.name",
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_assignment *a = store_push((void **)out, &cap, n, sizeof(**out));
		a->slice = store_col_dup(s, 0);
		snprintf(a->manifest_sha256, sizeof(a->manifest_sha256), "%s",
			 store_col_text(s, 1));
		a->expires = sqlite3_column_int64(s, 2);
		snprintf(a->address, sizeof(a->address), "%s", store_col_text(s, 3));
	}
	if (rc != SQLITE_DONE) {
		store_assignments_free(*out, *n);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "assignments", err);
	}
	return 0;
}

int store_sliver_move(struct registry *reg, const char *slice, const char *from, const char *to,
		      char ***shas, size_t *nshas, struct vs_error *err)
{
	{
		cleanup_stmt sqlite3_stmt *s = store_prep(
		    reg, "SELECT DISTINCT sha256 FROM result_files WHERE slice = ? AND node = ?",
		    err);
		if (!s)
			return -err->code;
		sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, from, -1, SQLITE_TRANSIENT);
		while (sqlite3_step(s) == SQLITE_ROW)
			store_names_add(shas, nshas, store_col_text(s, 0));
	}
	cleanup_stmt sqlite3_stmt *d =
	    store_prep(reg, "DELETE FROM result_files WHERE slice = ? AND node = ?", err);
	if (!d)
		return -err->code;
	sqlite3_bind_text(d, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(d, 2, from, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(d) != SQLITE_DONE)
		return store_db_error(reg, "drop results", err);
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "UPDATE slivers SET node = ?3, state = 'pending', exit_code = -1, reason = '',"
	    " started = 0, finished = 0, restarts = 0, message = '', log_size = 0,"
	    " results = 'pending', missing = '[]' WHERE slice = ?1 AND node = ?2",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, from, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, to, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "move sliver", err);
	if (sqlite3_changes(reg->store.db) == 0)
		return vs_error_set(err, ENOENT, "sliver %s/%s: not found", slice, from);
	reg->store.usage_valid = false;
	return 0;
}

void store_sliver_log_remove(struct registry *reg, const char *slice, const char *node)
{
	cleanup_free char *p = vs_xasprintf("%s/logs/%s/%s.log", reg->store.blob_dir, slice, node);
	unlink(p);
}

/* ---- the overlay's cluster leases ---- */

static uint32_t addr_of(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1 ? ntohl(a.s_addr) : 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int store_sliver_alloc_address(struct registry *reg, const char *slice, const char *node,
			       uint32_t net, unsigned prefix, char out[16], struct vs_error *err)
{
	uint32_t size = prefix ? 1u << (32 - prefix) : 0, first = net + 2, last = net + size - 2;
	/* The taken ones, ascending: the first gap is the lowest free one. */
	cleanup_stmt sqlite3_stmt *q =
	    store_prep(reg, "SELECT address FROM slivers WHERE address != ''", err);
	if (!q)
		return -err->code;
	uint32_t *used = NULL;
	size_t cap = 0, n = 0;
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		uint32_t a = addr_of(store_col_text(q, 0));
		if (a >= first && a <= last)
			*(uint32_t *)store_push((void **)&used, &cap, &n, sizeof(*used)) = a;
	}
	if (rc != SQLITE_DONE) {
		free(used);
		return store_db_error(reg, "read addresses", err);
	}
	if (n)
		qsort(used, n, sizeof(*used), cmp_u32);
	uint32_t pick = first;
	for (size_t i = 0; i < n && used[i] <= pick; i++)
		if (used[i] == pick)
			pick++;
	free(used);
	if (size < 4 || pick > last)
		return vs_error_set(err, ENOSPC,
				    "sliver %s/%s: no free address in the overlay subnet", slice,
				    node);
	struct in_addr ia = {.s_addr = htonl(pick)};
	inet_ntop(AF_INET, &ia, out, 16);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE slivers SET address = ? WHERE slice = ? AND node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, out, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "store address", err);
	if (sqlite3_changes(reg->store.db) == 0)
		return vs_error_set(err, ENOENT, "sliver %s/%s: not found", slice, node);
	return 0;
}

int store_overlay_peers(struct registry *reg, const char *node, struct store_overlay_peer **out,
			size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT v.address, n.overlay_local FROM slivers v JOIN nodes n"
		       " ON n.name = v.node WHERE v.address != '' AND v.node != ?"
		       " AND n.overlay_local IS NOT NULL ORDER BY v.address",
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_overlay_peer *p = store_push((void **)out, &cap, n, sizeof(**out));
		snprintf(p->address, sizeof(p->address), "%s", store_col_text(s, 0));
		snprintf(p->underlay, sizeof(p->underlay), "%s", store_col_text(s, 1));
	}
	if (rc != SQLITE_DONE) {
		free(*out);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "overlay peers", err);
	}
	return 0;
}

int store_overlay_vni_other(struct registry *reg, const char *node, const char *local,
			    long long *vni, char **holder, struct vs_error *err)
{
	*vni = 0;
	*holder = NULL;
	{
		cleanup_stmt sqlite3_stmt *h = store_prep(
		    reg, "SELECT name FROM nodes WHERE overlay_local = ? AND name != ? LIMIT 1",
		    err);
		if (!h)
			return -err->code;
		sqlite3_bind_text(h, 1, local, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(h, 2, node, -1, SQLITE_TRANSIENT);
		int rh = sqlite3_step(h);
		if (rh == SQLITE_ROW)
			*holder = store_col_dup(h, 0);
		else if (rh != SQLITE_DONE)
			return store_db_error(reg, "overlay address", err);
	}
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, "SELECT overlay_vni FROM nodes WHERE overlay_vni > 0 AND name != ? LIMIT 1", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*vni = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE)
		return store_db_error(reg, "overlay id", err);
	return 0;
}
