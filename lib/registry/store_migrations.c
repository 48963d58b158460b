/*
 * store_migrations.c - the migrations table (issue 11): one row per attempt
 * to move a slice's sliver from one node to another, with its phase, why it
 * was aborted, the sha256 of its transfer token (the token itself is never
 * stored: api_migrations.c derives it again when the source asks), the unix
 * ms of each event and the numbers the nodes reported.
 *
 * At most one migration of a slice runs (phase prepared or transferring):
 * a partial unique index says so, so two requests racing cannot both insert
 * one, whatever the code above does. Finished migrations stay, the newest
 * STORE_MIGRATIONS_KEPT per slice, so a user cannot grow the table without
 * bound by migrating one slice back and forth.
 *
 * Phase changes are written with store_migration_save, guarded by the
 * phase the caller read: a row that moved on meanwhile is not overwritten.
 */
#include <errno.h>
#include <string.h>

#include "store_int.h"
#include "vslice/util.h"

#define MIG_COLS                                                                                   \
	"SELECT id, slice, owner, from_node, to_node, mode, phase, reason, token_sha256,"          \
	" created, updated, stopped_ms, restored_ms, committed_ms, started_ms, bytes, total_ms,"   \
	" downtime_ms, stats FROM migrations"

#define RUNNING "phase IN ('prepared', 'transferring')"

bool store_migration_running_phase(const char *phase)
{
	return phase && (strcmp(phase, "prepared") == 0 || strcmp(phase, "transferring") == 0);
}

void store_migration_clear(struct store_migration *m)
{
	free(m->slice);
	free(m->owner);
	free(m->from);
	free(m->to);
	free(m->mode);
	free(m->phase);
	free(m->reason);
	free(m->stats);
	memset(m, 0, sizeof(*m));
}

void store_migrations_free(struct store_migration *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_migration_clear(&v[i]);
	free(v);
}

static void mig_row(sqlite3_stmt *s, struct store_migration *m)
{
	snprintf(m->id, sizeof(m->id), "%s", store_col_text(s, 0));
	m->slice = store_col_dup(s, 1);
	m->owner = store_col_dup(s, 2);
	m->from = store_col_dup(s, 3);
	m->to = store_col_dup(s, 4);
	m->mode = store_col_dup(s, 5);
	m->phase = store_col_dup(s, 6);
	m->reason = store_col_dup(s, 7);
	snprintf(m->token_sha256, sizeof(m->token_sha256), "%s", store_col_text(s, 8));
	m->created = sqlite3_column_int64(s, 9);
	m->updated = sqlite3_column_int64(s, 10);
	m->stopped_ms = sqlite3_column_int64(s, 11);
	m->restored_ms = sqlite3_column_int64(s, 12);
	m->committed_ms = sqlite3_column_int64(s, 13);
	m->started_ms = sqlite3_column_int64(s, 14);
	m->bytes = sqlite3_column_int64(s, 15);
	m->total_ms = sqlite3_column_int64(s, 16);
	m->downtime_ms = sqlite3_column_int64(s, 17);
	m->stats = store_col_dup(s, 18);
}

/* Every row of s (its parameters bound) into *out. */
static int mig_rows(struct registry *reg, sqlite3_stmt *s, struct store_migration **out, size_t *n,
		    struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		mig_row(s, store_push((void **)out, &cap, n, sizeof(**out)));
	if (rc != SQLITE_DONE) {
		store_migrations_free(*out, *n);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "list migrations", err);
	}
	return 0;
}

int store_migration_insert(struct registry *reg, const struct store_migration *m,
			   struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "INSERT INTO migrations(id, slice, owner, from_node, to_node, mode, phase, reason,"
	    " token_sha256, created, updated, stats) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, m->slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, m->owner, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 4, m->from, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 5, m->to, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 6, m->mode, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 7, m->phase, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 8, m->reason ? m->reason : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 9, m->token_sha256, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 10, m->created);
	sqlite3_bind_int64(s, 11, m->updated);
	sqlite3_bind_text(s, 12, m->stats ? m->stats : "{}", -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_CONSTRAINT) {
		vs_error_set(err, EEXIST, "slice %s: a migration is already running", m->slice);
		return vs_error_kind(err, VS_EK_BUSY);
	}
	if (rc != SQLITE_DONE)
		return store_db_error(reg, "insert migration", err);
	/* Its slice now counts on the target (store_node_cache_get). */
	reg->store.usage_valid = false;
	cleanup_stmt sqlite3_stmt *d =
	    store_prep(reg,
		       "DELETE FROM migrations WHERE slice = ?1 AND NOT " RUNNING
		       " AND id NOT IN (SELECT id FROM migrations WHERE slice = ?1"
		       " ORDER BY created DESC, id DESC LIMIT ?2)",
		       err);
	if (!d)
		return -err->code;
	sqlite3_bind_text(d, 1, m->slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(d, 2, STORE_MIGRATIONS_KEPT);
	if (sqlite3_step(d) != SQLITE_DONE)
		return store_db_error(reg, "prune migrations", err);
	return 0;
}

int store_migration_get(struct registry *reg, const char *id, struct store_migration *out,
			struct vs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, MIG_COLS " WHERE id = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "migration %s: not found", id);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read migration", err);
	mig_row(s, out);
	return 0;
}

int store_migration_running(struct registry *reg, const char *slice, struct store_migration *out,
			    struct vs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, MIG_COLS " WHERE slice = ? AND " RUNNING, err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read migration", err);
	mig_row(s, out);
	return 1;
}

int store_migrations_list(struct registry *reg, const char *owner, const char *slice,
			  unsigned limit, struct store_migration **out, size_t *n,
			  struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       MIG_COLS " WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR slice = ?2)"
				" ORDER BY created DESC, id DESC LIMIT ?3",
		       err);
	if (!s)
		return -err->code;
	if (owner)
		sqlite3_bind_text(s, 1, owner, -1, SQLITE_TRANSIENT);
	if (slice)
		sqlite3_bind_text(s, 2, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, limit);
	return mig_rows(reg, s, out, n, err);
}

int store_migrations_running_list(struct registry *reg, const char *node,
				  struct store_migration **out, size_t *n, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    MIG_COLS " WHERE " RUNNING " AND (?1 IS NULL OR from_node = ?1 OR to_node = ?1)"
		     " ORDER BY id",
	    err);
	if (!s)
		return -err->code;
	if (node)
		sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	return mig_rows(reg, s, out, n, err);
}

int store_migration_save(struct registry *reg, const struct store_migration *m, const char *expect,
			 struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "UPDATE migrations SET phase = ?2, reason = ?3, updated = ?4, stopped_ms = ?5,"
	    " restored_ms = ?6, committed_ms = ?7, started_ms = ?8, bytes = ?9, total_ms = ?10,"
	    " downtime_ms = ?11, stats = ?12 WHERE id = ?1 AND phase = ?13",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, m->phase, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, m->reason ? m->reason : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, m->updated);
	sqlite3_bind_int64(s, 5, m->stopped_ms);
	sqlite3_bind_int64(s, 6, m->restored_ms);
	sqlite3_bind_int64(s, 7, m->committed_ms);
	sqlite3_bind_int64(s, 8, m->started_ms);
	sqlite3_bind_int64(s, 9, m->bytes);
	sqlite3_bind_int64(s, 10, m->total_ms);
	sqlite3_bind_int64(s, 11, m->downtime_ms);
	sqlite3_bind_text(s, 12, m->stats ? m->stats : "{}", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 13, expect, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "save migration", err);
	int changed = sqlite3_changes(reg->store.db) > 0;
	if (changed && !store_migration_running_phase(m->phase))
		reg->store.usage_valid = false; /* no longer counts on its target */
	return changed;
}

int store_migration_abort_slice(struct registry *reg, const char *slice, const char *reason,
				long long now_ms, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "UPDATE migrations SET phase = 'aborted', reason = ?2, updated = ?3"
		       " WHERE slice = ?1 AND " RUNNING,
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, reason, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, now_ms);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "abort migration", err);
	int n = sqlite3_changes(reg->store.db);
	if (n > 0)
		reg->store.usage_valid = false;
	return n > 0;
}
