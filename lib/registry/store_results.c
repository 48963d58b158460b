/*
 * store_results.c - the result_files table and the blobs it refers to.
 *
 * A result file's content lives once, in "<db>.d/blobs/<sha256>", however
 * many slivers produced it; a row names (slice, node, path) -> sha256, size
 * and mode. A blob is removed when the last row referring to it goes (a
 * result replaced, a slice deleted).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"
#include "vslice/util.h"

void store_results_free(struct store_result *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

int store_results_of(struct registry *reg, const char *slice, const char *node,
		     struct store_result **out, size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT path, size, sha256, mode FROM result_files WHERE slice = ? AND"
		       " node = ? ORDER BY path",
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_result *r = store_push((void **)out, &cap, n, sizeof(**out));
		r->path = store_col_dup(s, 0);
		r->size = sqlite3_column_int64(s, 1);
		snprintf(r->sha256, sizeof(r->sha256), "%s", store_col_text(s, 2));
		r->mode = (unsigned)sqlite3_column_int64(s, 3);
	}
	if (rc != SQLITE_DONE) {
		store_results_free(*out, *n);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "list results", err);
	}
	return 0;
}

int store_result_sha(struct registry *reg, const char *slice, const char *node, const char *path,
		     char sha[65], struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, "SELECT sha256 FROM result_files WHERE slice = ? AND node = ? AND path = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, path, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "result %s of sliver %s/%s: not found", path,
				    slice, node);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read result", err);
	snprintf(sha, 65, "%s", store_col_text(s, 0));
	return 0;
}

int store_result_put(struct registry *reg, const char *slice, const char *node,
		     const struct store_result *r, struct vs_error *err)
{
	char *old[1] = {NULL};
	char old_sha[65];
	struct vs_error ignored;
	if (store_result_sha(reg, slice, node, r->path, old_sha, &ignored) >= 0 &&
	    strcmp(old_sha, r->sha256) != 0)
		old[0] = old_sha;
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg,
	    "INSERT OR REPLACE INTO result_files(slice, node, path, size, sha256, mode)"
	    " SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM slivers WHERE slice = ?1"
	    " AND node = ?2)",
	    err);
	int ret = 0;
	if (s) {
		sqlite3_bind_text(s, 1, slice, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 3, r->path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 4, r->size);
		sqlite3_bind_text(s, 5, r->sha256, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 6, r->mode);
		if (sqlite3_step(s) != SQLITE_DONE)
			ret = store_db_error(reg, "insert result", err);
	} else {
		ret = -err->code;
	}
	if (old[0])
		store_blobs_gc(reg, old, 1);
	if (ret >= 0 && sqlite3_changes(reg->store.db) == 0) {
		char sha[65];
		snprintf(sha, sizeof(sha), "%s", r->sha256);
		char *gc[1] = {sha};
		store_blobs_gc(reg, gc, 1);
		return vs_error_set(err, ENOENT, "sliver %s/%s: gone (slice deleted)", slice, node);
	}
	return ret;
}

/* Unlinks blobs no row refers to. Inside the caller's transaction, the rows
 * of the deleted slice are already gone from its view; a rollback after this
 * would leave rows without blobs, so callers delete last. */
void store_blobs_gc(struct registry *reg, char **shas, size_t n)
{
	struct vs_error err;
	for (size_t i = 0; i < n; i++) {
		cleanup_stmt sqlite3_stmt *s =
		    store_prep(reg, "SELECT 1 FROM result_files WHERE sha256 = ? LIMIT 1", &err);
		if (!s)
			continue;
		sqlite3_bind_text(s, 1, shas[i], -1, SQLITE_TRANSIENT);
		if (sqlite3_step(s) == SQLITE_DONE) {
			cleanup_free char *p =
			    vs_xasprintf("%s/blobs/%s", reg->store.blob_dir, shas[i]);
			unlink(p);
		}
	}
}
