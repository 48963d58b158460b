/*
 * store_nodes.c - the nodes table, and the node cache the scheduler reads.
 *
 * A node's row holds what it registered (capacity, labels, images, version)
 * and whether an admin drained it; its liveness is not here (registry.c
 * keeps last_seen in memory). The node cache is a copy of the table, sorted
 * by name, with what each node's slivers asked for: a submission then reads
 * no node row from SQLite. Registration and drain (store_node_put,
 * store_node_set_drained) invalidate the copy; the usage part is recomputed
 * in one pass over the slivers after a delete or failed commit and kept up to
 * date by store_node_cache_add_usage after an insert.
 */
#include <errno.h>
#include <string.h>

#include "store_int.h"
#include "vslice/util.h"

#define NODE_COLS                                                                                  \
	"SELECT n.name, n.cpus, n.memory, n.labels, n.images, n.version, n.drained,"               \
	" n.registered, (SELECT COUNT(*) FROM slivers v WHERE v.node = n.name), n.url,"            \
	" n.overlay_local, n.overlay_vni FROM nodes n"

void store_node_clear(struct store_node *n)
{
	free(n->name);
	free(n->labels);
	free(n->images);
	free(n->version);
	free(n->url);
	free(n->overlay_local);
	memset(n, 0, sizeof(*n));
}

void store_nodes_free(struct store_node *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_node_clear(&v[i]);
	free(v);
}

static void node_row(sqlite3_stmt *s, struct store_node *n)
{
	n->name = store_col_dup(s, 0);
	n->cpus = sqlite3_column_double(s, 1);
	n->memory = sqlite3_column_int64(s, 2);
	n->labels = store_col_dup(s, 3);
	n->images = store_col_dup(s, 4);
	n->version = store_col_dup(s, 5);
	n->drained = sqlite3_column_int(s, 6);
	n->registered = sqlite3_column_int64(s, 7);
	n->slivers = sqlite3_column_int64(s, 8);
	n->url = sqlite3_column_type(s, 9) == SQLITE_NULL ? NULL : store_col_dup(s, 9);
	n->overlay_local = sqlite3_column_type(s, 10) == SQLITE_NULL ? NULL : store_col_dup(s, 10);
	n->overlay_vni = sqlite3_column_int64(s, 11);
}

int store_node_exists(struct registry *reg, const char *name, struct vs_error *err)
{
	return store_row_exists(reg, "SELECT 1 FROM nodes WHERE name = ?", name, err);
}

int store_node_get(struct registry *reg, const char *name, struct store_node *out,
		   struct vs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, NODE_COLS " WHERE n.name = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "node %s: not registered", name);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read node", err);
	node_row(s, out);
	return 0;
}

int store_nodes_list(struct registry *reg, struct store_node **out, size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, NODE_COLS " ORDER BY n.name", err);
	if (!s)
		return -err->code;
	struct store_node *v = NULL;
	size_t cap = 0, len = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		node_row(s, store_push((void **)&v, &cap, &len, sizeof(*v)));
	if (rc != SQLITE_DONE) {
		store_nodes_free(v, len);
		return store_db_error(reg, "list nodes", err);
	}
	*out = v;
	*n = len;
	return 0;
}

int store_node_put(struct registry *reg, const struct store_node *in, long long registered,
		   struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "INSERT INTO nodes(name, cpus, memory, labels, images, version, registered, url,"
	    " overlay_local, overlay_vni) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
	    " ON CONFLICT(name) DO UPDATE SET cpus = ?2, memory = ?3, labels = ?4, images = ?5,"
	    " version = ?6, url = ?8, overlay_local = ?9, overlay_vni = ?10",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, in->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(s, 2, in->cpus);
	sqlite3_bind_int64(s, 3, in->memory);
	sqlite3_bind_text(s, 4, in->labels ? in->labels : "{}", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 5, in->images ? in->images : "[]", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 6, in->version ? in->version : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 7, registered);
	if (in->url)
		sqlite3_bind_text(s, 8, in->url, -1, SQLITE_TRANSIENT);
	if (in->overlay_local)
		sqlite3_bind_text(s, 9, in->overlay_local, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 10, in->overlay_local ? in->overlay_vni : 0);
	reg->store.cache_valid = false;
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "register node", err);
	return 0;
}

int store_node_set_drained(struct registry *reg, const char *name, bool drained,
			   struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE nodes SET drained = ? WHERE name = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_int(s, 1, drained);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
	reg->store.cache_valid = false;
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "drain node", err);
	if (sqlite3_changes(reg->store.db) == 0)
		return vs_error_set(err, ENOENT, "node %s: not registered", name);
	return 0;
}

/* ---- the node cache ---- */

void store_node_cache_free(struct registry *reg)
{
	struct store *st = &reg->store;
	for (size_t i = 0; i < st->cache_n; i++) {
		free(st->cache[i].name);
		json_decref(st->cache[i].labels);
		json_decref(st->cache[i].images);
	}
	free(st->cache);
	st->cache = NULL;
	st->cache_n = 0;
	st->cache_valid = false;
	st->usage_valid = false;
}

static json_t *col_json(sqlite3_stmt *s, int i)
{
	json_t *j = json_loads(store_col_text(s, i), 0, NULL);
	return j ? j : json_null();
}

static int cache_load(struct registry *reg, struct vs_error *err)
{
	struct store *st = &reg->store;
	if (st->cache_valid)
		return 0;
	store_node_cache_free(reg);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT name, cpus, memory, labels, images, drained, url IS NOT NULL,"
		       " overlay_local IS NOT NULL FROM nodes ORDER BY name",
		       err);
	if (!s)
		return -err->code;
	size_t cap = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct store_cached_node *c =
		    store_push((void **)&st->cache, &cap, &st->cache_n, sizeof(*st->cache));
		c->name = store_col_dup(s, 0);
		c->cpu_millis = (uint64_t)(sqlite3_column_double(s, 1) * 1000.0 + 0.5);
		c->memory_bytes = (uint64_t)sqlite3_column_int64(s, 2);
		c->labels = col_json(s, 3);
		c->images = col_json(s, 4);
		c->drained = sqlite3_column_int(s, 5);
		c->has_url = sqlite3_column_int(s, 6);
		c->has_overlay = sqlite3_column_int(s, 7);
	}
	st->cache_valid = true;
	return 0;
}

static int cache_find(const struct store *st, const char *name)
{
	size_t lo = 0, hi = st->cache_n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(st->cache[mid].name, name);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* One pass over every sliver and running migration (its slice counts on
 * the target from the start: the target must hold it when it lands); later
 * inserts keep it up to date. */
static int usage_load(struct registry *reg, struct vs_error *err)
{
	struct store *st = &reg->store;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT node, COUNT(*), SUM(cpu), SUM(mem) FROM ("
		       "SELECT v.node AS node, s.cpu_millis AS cpu, s.memory AS mem FROM slivers v"
		       " JOIN slices s ON s.name = v.slice UNION ALL"
		       " SELECT m.to_node, s.cpu_millis, s.memory FROM migrations m"
		       " JOIN slices s ON s.name = m.slice"
		       " WHERE m.phase IN ('prepared', 'transferring')) GROUP BY node",
		       err);
	if (!s)
		return -err->code;
	for (size_t i = 0; i < st->cache_n; i++) {
		st->cache[i].nslivers = 0;
		st->cache[i].cpu_used = st->cache[i].memory_used = 0;
	}
	while (sqlite3_step(s) == SQLITE_ROW) {
		int i = cache_find(st, store_col_text(s, 0));
		if (i < 0)
			continue;
		st->cache[i].nslivers = (unsigned)sqlite3_column_int64(s, 1);
		st->cache[i].cpu_used = (uint64_t)sqlite3_column_int64(s, 2);
		st->cache[i].memory_used = (uint64_t)sqlite3_column_int64(s, 3);
	}
	st->usage_valid = true;
	return 0;
}

int store_node_cache_get(struct registry *reg, const struct store_cached_node **v, size_t *n,
			 struct vs_error *err)
{
	int r = cache_load(reg, err);
	if (r >= 0 && !reg->store.usage_valid)
		r = usage_load(reg, err);
	if (r < 0)
		return r;
	*v = reg->store.cache;
	*n = reg->store.cache_n;
	return 0;
}

void store_node_cache_add_usage(struct registry *reg, const size_t *idx, size_t n,
				uint64_t cpu_millis, uint64_t memory)
{
	struct store *st = &reg->store;
	for (size_t i = 0; st->usage_valid && i < n; i++) {
		if (idx[i] >= st->cache_n)
			continue;
		struct store_cached_node *c = &st->cache[idx[i]];
		c->nslivers++;
		c->cpu_used += cpu_millis;
		c->memory_used += memory;
	}
}
