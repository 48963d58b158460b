/*
 * store_slices.c - the slices table: a slice's owner, manifest (the JSON
 * text as submitted, with its SHA-256, which nodes compare to know when to
 * fetch it again), lifetime and per-sliver resources.
 *
 * A slice is inserted with its slivers in one statement group (the caller's
 * transaction), and deleted with its slivers, result rows, log directory
 * and the blobs no other row refers to.
 */
#include <errno.h>
#include <string.h>

#include "store_int.h"
#include "vslice/util.h"

void store_slice_clear(struct store_slice *s)
{
	free(s->name);
	free(s->owner);
	free(s->manifest);
	memset(s, 0, sizeof(*s));
}

int store_slice_get(struct registry *reg, const char *name, bool with_manifest,
		    struct store_slice *out, struct vs_error *err)
{
	memset(out, 0, sizeof(*out));
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    with_manifest ? "SELECT owner, created, expires, cpu_millis, memory, manifest_sha256,"
			    " manifest FROM slices WHERE name = ?"
			  : "SELECT owner, created, expires, cpu_millis, memory, manifest_sha256"
			    " FROM slices WHERE name = ?",
	    err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "slice %s: not found", name);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read slice", err);
	out->name = vs_xstrdup(name);
	out->owner = store_col_dup(s, 0);
	out->created = sqlite3_column_int64(s, 1);
	out->expires = sqlite3_column_int64(s, 2);
	out->cpu_millis = (uint64_t)sqlite3_column_int64(s, 3);
	out->memory = (uint64_t)sqlite3_column_int64(s, 4);
	snprintf(out->manifest_sha256, sizeof(out->manifest_sha256), "%s", store_col_text(s, 5));
	if (with_manifest)
		out->manifest = store_col_dup(s, 6);
	return 0;
}

int store_slice_exists(struct registry *reg, const char *name, struct vs_error *err)
{
	return store_row_exists(reg, "SELECT 1 FROM slices WHERE name = ?", name, err);
}

int store_slice_owner(struct registry *reg, const char *slice, const char *node, char **owner,
		      bool *on_node, struct vs_error *err)
{
	*owner = NULL;
	*on_node = false;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT owner, (SELECT COUNT(*) FROM slivers WHERE slice = ?1 AND node = ?2)"
		       " FROM slices WHERE name = ?1",
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node ? node : "", -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "slice %s: not found", slice);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "slice owner", err);
	*owner = store_col_dup(s, 0);
	*on_node = sqlite3_column_int64(s, 1) > 0;
	return 0;
}

/* The first column of every row of sql (one optional text parameter arg,
 * or one integer parameter num when arg is NULL and num >= 0). */
static int names_query(struct registry *reg, const char *sql, const char *arg, long long num,
		       char ***names, size_t *n, struct vs_error *err)
{
	*names = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, sql, err);
	if (!s)
		return -err->code;
	if (arg)
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_TRANSIENT);
	else if (num >= 0)
		sqlite3_bind_int64(s, 1, num);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		store_names_add(names, n, store_col_text(s, 0));
	if (rc != SQLITE_DONE) {
		store_names_free(*names, *n);
		*names = NULL;
		*n = 0;
		return store_db_error(reg, "list slices", err);
	}
	return 0;
}

int store_slice_names(struct registry *reg, const char *owner, char ***names, size_t *n,
		      struct vs_error *err)
{
	if (!owner)
		return names_query(reg, "SELECT name FROM slices ORDER BY name", NULL, -1, names, n,
				   err);
	return names_query(reg, "SELECT name FROM slices WHERE owner = ? ORDER BY name", owner, -1,
			   names, n, err);
}

int store_slice_expired(struct registry *reg, long long now, char ***names, size_t *n,
			struct vs_error *err)
{
	return names_query(reg, "SELECT name FROM slices WHERE expires <= ?", NULL,
			   now < 0 ? 0 : now, names, n, err);
}

long long store_slice_count(struct registry *reg, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "SELECT COUNT(*) FROM slices", err);
	if (!s)
		return -err->code;
	if (sqlite3_step(s) != SQLITE_ROW)
		return store_db_error(reg, "count slices", err);
	return sqlite3_column_int64(s, 0);
}

int store_slice_insert(struct registry *reg, const struct store_slice *sl, const char *const *nodes,
		       size_t nnodes, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "INSERT INTO slices(name, owner, manifest, created, expires, cpu_millis, memory,"
	    " manifest_sha256) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
	    err);
	if (!s)
		return -err->code;
	char sha[VS_SHA256_HEX];
	vs_sha256_buf(sl->manifest, strlen(sl->manifest), sha);
	sqlite3_bind_text(s, 8, sha, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 1, sl->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, sl->owner, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, sl->manifest, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, sl->created);
	sqlite3_bind_int64(s, 5, sl->expires);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)sl->cpu_millis);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)sl->memory);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "insert slice", err);
	for (size_t i = 0; i < nnodes; i++) {
		cleanup_stmt sqlite3_stmt *v =
		    store_prep(reg, "INSERT INTO slivers(slice, node) VALUES(?, ?)", err);
		if (!v)
			return -err->code;
		sqlite3_bind_text(v, 1, sl->name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(v, 2, nodes[i], -1, SQLITE_TRANSIENT);
		if (sqlite3_step(v) != SQLITE_DONE)
			return store_db_error(reg, "insert sliver", err);
	}
	return 0;
}

int store_slice_renew(struct registry *reg, const char *name, long long expires,
		      struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE slices SET expires = ? WHERE name = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_int64(s, 1, expires);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "renew slice", err);
	return 0;
}

static int slice_delete_rows(struct registry *reg, const char *slice, char ***shas, size_t *nshas,
			     struct vs_error *err)
{
	{
		cleanup_stmt sqlite3_stmt *s = store_prep(
		    reg, "SELECT DISTINCT sha256 FROM result_files WHERE slice = ?", err);
		if (!s)
			return -err->code;
		sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
		while (sqlite3_step(s) == SQLITE_ROW)
			store_names_add(shas, nshas, store_col_text(s, 0));
	}
	static const char *const dels[] = {
	    "DELETE FROM result_files WHERE slice = ?",
	    "DELETE FROM slivers WHERE slice = ?",
	    "DELETE FROM slices WHERE name = ?",
	};
	int changed = 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(dels); i++) {
		cleanup_stmt sqlite3_stmt *s = store_prep(reg, dels[i], err);
		if (!s)
			return -err->code;
		sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(s) != SQLITE_DONE)
			return store_db_error(reg, "delete slice", err);
		changed = sqlite3_changes(reg->store.db);
	}
	if (changed == 0)
		return vs_error_set(err, ENOENT, "slice %s: not found", slice);
	return 0;
}

int store_slice_delete(struct registry *reg, const char *slice, struct vs_error *err)
{
	reg->store.usage_valid = false; /* its slivers no longer count on their nodes */
	char **shas = NULL;
	size_t n = 0;
	/* Its running migration ends here (its record stays): the source's
	 * report of it is refused (409 aborted), the target drops its copy. */
	int r = store_migration_abort_slice(reg, slice, "slice deleted", reg_wall_ms(), err);
	if (r >= 0)
		r = slice_delete_rows(reg, slice, &shas, &n, err);
	if (r >= 0) {
		cleanup_free char *logs = vs_xasprintf("%s/logs/%s", reg->store.blob_dir, slice);
		struct vs_error ignored;
		vs_rm_rf(logs, &ignored);
		store_blobs_gc(reg, shas, n);
	}
	store_names_free(shas, n);
	return r;
}
