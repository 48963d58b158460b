/*
 * store.c - the registry's SQLite database: opening it, its schema and the
 * ordered migrations that build and upgrade it, transactions, and the hook
 * through which a commit is announced. The tables' own statements live in
 * store_users.c, store_nodes.c, store_slices.c, store_slivers.c and
 * store_results.c, store_migrations.c and store_images.c (see store.h).
 *
 * One connection, WAL, synchronous=FULL: desired state (users, tokens,
 * nodes, slices, slivers, result files) survives a host crash once a request
 * is answered. The global revision lives in table meta and is increased in
 * the same transaction as the change it announces; after the commit the
 * store calls the commit hook (the registry wakes its long-polls there), so
 * the store never calls up into the HTTP server. Heartbeats (last_seen) stay
 * in memory (registry.c): only sliver changes are written.
 *
 * Blobs live in "<db>.d/": logs/<slice>/<node>.log (appended), blobs/<sha256>
 * (result files by content), images/sha256/<sha256> (images as uploaded,
 * store_images.c), tmp/ (uploads in flight).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"
#include "vslice/util.h"

/*
 * The schema, as an ordered list of upgrade steps: migrations[i] takes a
 * database from PRAGMA user_version i to i + 1. A new database runs them
 * all; an older one, opened by a newer registry, runs those it lacks, in
 * one transaction; a newer one is refused.
 *
 * To add a table: append a step {"what it adds", "CREATE TABLE ...;"} below (never edit a
 * step that has shipped), raise REGISTRY_SCHEMA_VERSION in
 * include/vslice/registry.h to the new length, and give the table its own
 * store_<table>.c with typed functions declared in store.h. The steps'
 * user_version and meta.schema_version are set by store_migrate, not by
 * the SQL.
 */
struct schema_step {
	const char *what;
	const char *sql;
};

static const struct schema_step migrations[] = {
    {"users, tokens, nodes, slices, slivers, result_files, meta",
     "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
     "CREATE TABLE users(name TEXT PRIMARY KEY, created INTEGER NOT NULL);"
     "CREATE TABLE tokens(hash TEXT PRIMARY KEY, role TEXT NOT NULL, user TEXT, node TEXT,"
     " created INTEGER NOT NULL);"
     "CREATE TABLE nodes(name TEXT PRIMARY KEY, cpus REAL NOT NULL DEFAULT 0,"
     " memory INTEGER NOT NULL DEFAULT 0, labels TEXT NOT NULL DEFAULT '{}',"
     " images TEXT NOT NULL DEFAULT '[]', version TEXT NOT NULL DEFAULT '',"
     " drained INTEGER NOT NULL DEFAULT 0, registered INTEGER NOT NULL);"
     "CREATE TABLE slices(name TEXT PRIMARY KEY, owner TEXT NOT NULL, manifest TEXT NOT NULL,"
     " manifest_sha256 TEXT NOT NULL DEFAULT '',"
     " created INTEGER NOT NULL, expires INTEGER NOT NULL, cpu_millis INTEGER NOT NULL,"
     " memory INTEGER NOT NULL);"
     "CREATE TABLE slivers(slice TEXT NOT NULL, node TEXT NOT NULL,"
     " state TEXT NOT NULL DEFAULT 'pending', exit_code INTEGER NOT NULL DEFAULT -1,"
     " reason TEXT NOT NULL DEFAULT '', started INTEGER NOT NULL DEFAULT 0,"
     " finished INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,"
     " message TEXT NOT NULL DEFAULT '', log_size INTEGER NOT NULL DEFAULT 0,"
     " results TEXT NOT NULL DEFAULT 'pending', missing TEXT NOT NULL DEFAULT '[]',"
     " PRIMARY KEY(slice, node));"
     "CREATE INDEX slivers_node ON slivers(node);"
     "CREATE TABLE result_files(slice TEXT NOT NULL, node TEXT NOT NULL, path TEXT NOT NULL,"
     " size INTEGER NOT NULL, sha256 TEXT NOT NULL, mode INTEGER NOT NULL,"
     " PRIMARY KEY(slice, node, path));"
     "CREATE INDEX result_files_sha ON result_files(sha256);"
     "INSERT INTO meta VALUES('schema_version', 0), ('revision', 1);"},
    /* Issue 11: cold migration. At most one running (prepared or
     * transferring) migration per slice is the partial unique index; the
     * finished ones stay (slicectl migrations). Times are unix ms, 0 when
     * the event has not happened; bytes/total_ms/downtime_ms -1 when not
     * known. */
    {"nodes.url, migrations",
     "ALTER TABLE nodes ADD COLUMN url TEXT;"
     "CREATE TABLE migrations(id TEXT PRIMARY KEY, slice TEXT NOT NULL, owner TEXT NOT NULL,"
     " from_node TEXT NOT NULL, to_node TEXT NOT NULL, mode TEXT NOT NULL,"
     " phase TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', token_sha256 TEXT NOT NULL,"
     " created INTEGER NOT NULL, updated INTEGER NOT NULL,"
     " stopped_ms INTEGER NOT NULL DEFAULT 0, restored_ms INTEGER NOT NULL DEFAULT 0,"
     " committed_ms INTEGER NOT NULL DEFAULT 0, started_ms INTEGER NOT NULL DEFAULT 0,"
     " bytes INTEGER NOT NULL DEFAULT -1, total_ms INTEGER NOT NULL DEFAULT -1,"
     " downtime_ms INTEGER NOT NULL DEFAULT -1, stats TEXT NOT NULL DEFAULT '{}');"
     "CREATE UNIQUE INDEX migrations_running ON migrations(slice)"
     " WHERE phase IN ('prepared', 'transferring');"
     "CREATE INDEX migrations_slice ON migrations(slice, created, id);"
     "CREATE INDEX migrations_owner ON migrations(owner, created, id);"
     "CREATE INDEX migrations_created ON migrations(created, id);"},
    /* Issue 13: the overlay. A node's underlay address and VXLAN id (NULL
     * / 0: no overlay); a bridged sliver's cluster-wide address ('' when
     * none), unique among the slivers: the lease is the row, so it moves
     * with a migration's commit and goes with the slice's delete. */
    {"nodes.overlay_local, nodes.overlay_vni, slivers.address",
     "ALTER TABLE nodes ADD COLUMN overlay_local TEXT;"
     "ALTER TABLE nodes ADD COLUMN overlay_vni INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE slivers ADD COLUMN address TEXT NOT NULL DEFAULT '';"
     "CREATE UNIQUE INDEX slivers_address ON slivers(address) WHERE address != '';"},
    /* Issue 14: images across the cluster. name -> the sha256 of the
     * archive as uploaded (its blob: <db>.d/images/sha256/<digest>), its
     * size, who uploaded it, when, and the import flags nodes use
     * (IMAGE_IMPORT_*). One digest may back several names. */
    {"images",
     "CREATE TABLE images(name TEXT PRIMARY KEY, digest TEXT NOT NULL, size INTEGER NOT NULL,"
     " owner TEXT NOT NULL, created INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0);"
     "CREATE INDEX images_digest ON images(digest);"},
};

_Static_assert(VS_ARRAY_SIZE(migrations) == REGISTRY_SCHEMA_VERSION,
	       "REGISTRY_SCHEMA_VERSION is the number of migration steps");

int store_db_error(struct registry *reg, const char *what, struct vs_error *err)
{
	int code = sqlite3_errcode(reg->store.db);
	return vs_error_set(err, code == SQLITE_BUSY ? EBUSY : EIO, "registry db %s: %s: %s",
			    reg->store.path, what, sqlite3_errmsg(reg->store.db));
}

int store_exec(struct registry *reg, const char *sql, struct vs_error *err)
{
	if (sqlite3_exec(reg->store.db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return store_db_error(reg, "exec", err);
	return 0;
}

sqlite3_stmt *store_prep(struct registry *reg, const char *sql, struct vs_error *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(reg->store.db, sql, -1, &s, NULL) != SQLITE_OK) {
		store_db_error(reg, "prepare", err);
		return NULL;
	}
	return s;
}

int store_row_exists(struct registry *reg, const char *sql, const char *arg, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, sql, err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, arg, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(reg, "lookup", err);
	return rc == SQLITE_ROW;
}

char *store_col_dup(sqlite3_stmt *s, int i)
{
	return vs_xstrdup(store_col_text(s, i));
}

void store_names_add(char ***v, size_t *n, const char *str)
{
	*v = vs_xrealloc(*v, (*n + 1) * sizeof(char *));
	(*v)[(*n)++] = vs_xstrdup(str);
}

void store_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void *store_push(void **v, size_t *cap, size_t *n, size_t elem)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		*v = vs_xrealloc(*v, *cap * elem);
	}
	char *e = (char *)*v + (*n)++ * elem;
	memset(e, 0, elem);
	return e;
}

int store_begin(struct registry *reg, struct vs_error *err)
{
	return store_exec(reg, "BEGIN IMMEDIATE", err);
}

void store_rollback(struct registry *reg)
{
	sqlite3_exec(reg->store.db, "ROLLBACK", NULL, NULL, NULL);
}

int store_commit(struct registry *reg, bool bump, struct vs_error *err)
{
	if (bump &&
	    store_exec(reg, "UPDATE meta SET value = value + 1 WHERE key = 'revision'", err) < 0) {
		store_rollback(reg);
		return -err->code;
	}
	if (store_exec(reg, "COMMIT", err) < 0) {
		store_rollback(reg);
		reg->store.usage_valid = false;
		return -err->code;
	}
	if (bump) {
		reg->revision++;
		if (reg->store.on_commit)
			reg->store.on_commit(reg->store.on_commit_ctx, reg->revision);
	}
	return 0;
}

void store_set_commit_hook(struct registry *reg, store_commit_fn fn, void *ctx)
{
	reg->store.on_commit = fn;
	reg->store.on_commit_ctx = ctx;
}

static int user_version(struct registry *reg, long long *v, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "PRAGMA user_version", err);
	if (!s)
		return -err->code;
	if (sqlite3_step(s) != SQLITE_ROW)
		return store_db_error(reg, "read schema version", err);
	*v = sqlite3_column_int64(s, 0);
	return 0;
}

/* Run the steps the database lacks, in one transaction. from_empty: a new
 * database (user_version 0 is only valid then). */
static int store_migrate(struct registry *reg, bool from_empty, struct vs_error *err)
{
	long long v = 0;
	int r = user_version(reg, &v, err);
	if (r < 0)
		return r;
	if (v == 0 && !from_empty)
		return vs_error_set(err, EINVAL,
				    "registry db %s: not a registry database (schema version 0; "
				    "create one with vslice-registry init)",
				    reg->store.path);
	if (v > REGISTRY_SCHEMA_VERSION || v < 0)
		return vs_error_set(err, EINVAL,
				    "registry db %s: schema version %lld, newer than this "
				    "registry's %d",
				    reg->store.path, v, REGISTRY_SCHEMA_VERSION);
	if (v == REGISTRY_SCHEMA_VERSION)
		return 0;
	if ((r = store_begin(reg, err)) < 0)
		return r;
	for (; r >= 0 && v < REGISTRY_SCHEMA_VERSION; v++) {
		r = store_exec(reg, migrations[v].sql, err);
		if (r < 0) {
			vs_error_wrap(err, "schema step %lld (%s)", v + 1, migrations[v].what);
			break;
		}
		cleanup_free char *mark = vs_xasprintf(
		    "PRAGMA user_version = %lld; UPDATE meta SET value = %lld WHERE key = "
		    "'schema_version';",
		    v + 1, v + 1);
		r = store_exec(reg, mark, err);
	}
	if (r < 0) {
		store_rollback(reg);
		return r;
	}
	return store_commit(reg, false, err);
}

static int db_open(struct registry *reg, const char *path, int flags, struct vs_error *err)
{
	reg->store.path = vs_xstrdup(path);
	reg->store.blob_dir = vs_xasprintf("%s.d", path);
	if (sqlite3_open_v2(path, &reg->store.db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return vs_error_set(err, EIO, "registry db %s: open: %s", path,
				    reg->store.db ? sqlite3_errmsg(reg->store.db)
						  : "out of memory");
	sqlite3_busy_timeout(reg->store.db, 5000);
	return store_exec(reg, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
}

void store_close(struct registry *reg)
{
	if (reg->store.db)
		sqlite3_close(reg->store.db);
	reg->store.db = NULL;
	free(reg->store.path);
	free(reg->store.blob_dir);
	reg->store.path = reg->store.blob_dir = NULL;
	store_node_cache_free(reg);
}

int store_create(const char *path, const char *admin_token, struct vs_error *err)
{
	struct stat st;
	if (lstat(path, &st) == 0)
		return vs_error_set(err, EEXIST, "registry db %s: already exists", path);
	struct registry reg = {0};
	int r = db_open(&reg, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err);
	if (r >= 0)
		r = vs_mkdir_p(reg.store.blob_dir, 0700, err);
	if (r >= 0)
		r = store_migrate(&reg, true, err);
	if (r >= 0)
		r = store_token_add(&reg, admin_token, REGISTRY_ROLE_ADMIN, NULL, NULL, err);
	store_close(&reg);
	if (r < 0) {
		unlink(path);
		return r;
	}
	chmod(path, 0600);
	return 0;
}

int store_open(struct registry *reg, const char *path, struct vs_error *err)
{
	int r = db_open(reg, path, SQLITE_OPEN_READWRITE, err);
	for (const char *sub = "tmp\0logs\0blobs\0images/sha256\0"; r >= 0 && *sub;
	     sub += strlen(sub) + 1) {
		cleanup_free char *d = vs_xasprintf("%s/%s", reg->store.blob_dir, sub);
		r = vs_mkdir_p(d, 0700, err);
	}
	if (r >= 0)
		r = store_migrate(reg, false, err);
	if (r < 0)
		return r;
	store_images_sweep(reg);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT value FROM meta WHERE key = 'revision'", err);
	if (!s)
		return -err->code;
	if (sqlite3_step(s) != SQLITE_ROW)
		return store_db_error(reg, "read revision", err);
	reg->revision = sqlite3_column_int64(s, 0);
	return 0;
}
