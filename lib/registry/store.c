/*
 * store.c - the registry's SQLite database and the state kept beside it.
 *
 * One connection, WAL, synchronous=FULL: desired state (users, tokens,
 * nodes, slices, slivers, result files) survives a host crash once a request
 * is answered. The global revision lives in table meta and is increased in
 * the same transaction as the change it announces. Heartbeats (last_seen)
 * stay in memory: only sliver changes are written.
 *
 * Blobs live in "<db>.d/": logs/<slice>/<node>.log (appended), blobs/<sha256>
 * (result files by content), tmp/ (uploads in flight).
 */
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "registry_int.h"
#include "vslice/units.h"
#include "vslice/util.h"

static const char schema[] =
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
    "INSERT INTO meta VALUES('schema_version', 1), ('revision', 1);"
    "PRAGMA user_version = 1;";

long long reg_now(void)
{
	return (long long)time(NULL);
}

long long reg_now_ms(void)
{
	return (long long)(vs_now_ns() / 1000000);
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

static enum registry_role role_from_name(const char *s)
{
	if (strcmp(s, "admin") == 0)
		return REGISTRY_ROLE_ADMIN;
	if (strcmp(s, "user") == 0)
		return REGISTRY_ROLE_USER;
	if (strcmp(s, "node") == 0)
		return REGISTRY_ROLE_NODE;
	return REGISTRY_ROLE_NONE;
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

int store_db_error(struct registry *reg, const char *what, struct vs_error *err)
{
	int code = sqlite3_errcode(reg->db);
	return vs_error_set(err, code == SQLITE_BUSY ? EBUSY : EIO, "registry db %s: %s: %s",
			    reg->db_path, what, sqlite3_errmsg(reg->db));
}

int store_exec(struct registry *reg, const char *sql, struct vs_error *err)
{
	if (sqlite3_exec(reg->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return store_db_error(reg, "exec", err);
	return 0;
}

sqlite3_stmt *store_prep(struct registry *reg, const char *sql, struct vs_error *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(reg->db, sql, -1, &s, NULL) != SQLITE_OK) {
		store_db_error(reg, "prepare", err);
		return NULL;
	}
	return s;
}

int store_begin(struct registry *reg, struct vs_error *err)
{
	return store_exec(reg, "BEGIN IMMEDIATE", err);
}

void store_rollback(struct registry *reg)
{
	sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
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
		return -err->code;
	}
	if (bump) {
		reg->revision++;
		reg_wake(reg);
	}
	return 0;
}

static int db_configure(struct registry *reg, struct vs_error *err)
{
	sqlite3_busy_timeout(reg->db, 5000);
	return store_exec(reg, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
}

static int db_open(struct registry *reg, const char *path, int flags, struct vs_error *err)
{
	reg->db_path = vs_xstrdup(path);
	reg->blob_dir = vs_xasprintf("%s.d", path);
	if (sqlite3_open_v2(path, &reg->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		int r = vs_error_set(err, EIO, "registry db %s: open: %s", path,
				     reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
		return r;
	}
	return db_configure(reg, err);
}

static void reg_free_db(struct registry *reg)
{
	if (reg->db)
		sqlite3_close(reg->db);
	free(reg->db_path);
	free(reg->blob_dir);
}

int store_token_add(struct registry *reg, const char *token, enum registry_role role,
		    const char *user, const char *node, struct vs_error *err)
{
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, "INSERT INTO tokens(hash, role, user, node, created) VALUES(?, ?, ?, ?, ?)", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, registry_role_name(role), -1, SQLITE_STATIC);
	if (user)
		sqlite3_bind_text(s, 3, user, -1, SQLITE_TRANSIENT);
	if (node)
		sqlite3_bind_text(s, 4, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 5, reg_now());
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "insert token", err);
	return 0;
}

int store_token_lookup(struct registry *reg, const char *token, enum registry_role *role,
		       char **user, char **node, struct vs_error *err)
{
	*role = REGISTRY_ROLE_NONE;
	*user = *node = NULL;
	enum registry_role prefix = registry_token_role(token);
	if (prefix == REGISTRY_ROLE_NONE)
		return vs_error_set(err, ENOENT, "token: not a vslice token");
	/* Looked up by its SHA-256: the lookup's timing depends on the hash,
	 * never on how much of the secret matched. */
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT role, user, node FROM tokens WHERE hash = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "token: unknown token");
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "token lookup", err);
	enum registry_role r = role_from_name((const char *)sqlite3_column_text(s, 0));
	if (r != prefix)
		return vs_error_set(err, ENOENT, "token: unknown token");
	*role = r;
	if (sqlite3_column_type(s, 1) != SQLITE_NULL)
		*user = vs_xstrdup((const char *)sqlite3_column_text(s, 1));
	if (sqlite3_column_type(s, 2) != SQLITE_NULL)
		*node = vs_xstrdup((const char *)sqlite3_column_text(s, 2));
	return 0;
}

int store_token_bind(struct registry *reg, const char *token, const char *node,
		     struct vs_error *err)
{
	char hash[65];
	registry_token_hash(token, hash);
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "UPDATE tokens SET node = ? WHERE hash = ? AND node IS NULL", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, hash, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "bind token", err);
	return 0;
}

int store_node_held(struct registry *reg, const char *node, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT 1 FROM tokens WHERE node = ? LIMIT 1", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_error(reg, "node holder", err);
	return rc == SQLITE_ROW;
}

int store_node_release(struct registry *reg, const char *node, struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "DELETE FROM tokens WHERE node = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "release node", err);
	return sqlite3_changes(reg->db);
}

int registry_init_db(const char *db, char **admin_token, struct vs_error *err)
{
	struct stat st;
	*admin_token = NULL;
	if (lstat(db, &st) == 0)
		return vs_error_set(err, EEXIST, "registry db %s: already exists", db);
	struct registry reg = {0};
	int r = db_open(&reg, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err);
	if (r >= 0)
		r = vs_mkdir_p(reg.blob_dir, 0700, err);
	if (r >= 0)
		r = store_exec(&reg, "BEGIN IMMEDIATE", err);
	if (r >= 0)
		r = store_exec(&reg, schema, err);
	char token[REGISTRY_TOKEN_LEN + 1];
	if (r >= 0)
		r = registry_token_generate(REGISTRY_ROLE_ADMIN, token, err);
	if (r >= 0)
		r = store_token_add(&reg, token, REGISTRY_ROLE_ADMIN, NULL, NULL, err);
	if (r >= 0)
		r = store_exec(&reg, "COMMIT", err);
	reg_free_db(&reg);
	if (r < 0) {
		unlink(db);
		return r;
	}
	chmod(db, 0600);
	*admin_token = vs_xstrdup(token);
	return 0;
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
	reg->started = reg_now();
	reg->listen_fd = -1;
	lim_init(&reg->lim, !opts || !opts->per_address_limit ? REG_ADDR_DEFAULT
			    : opts->per_address_limit == REGISTRY_NO_ADDRESS_LIMIT
				? 0
				: opts->per_address_limit);
	int r = db_open(reg, db, SQLITE_OPEN_READWRITE, err);
	for (const char *sub = "tmp\0logs\0blobs\0"; r >= 0 && *sub; sub += strlen(sub) + 1) {
		cleanup_free char *d = vs_xasprintf("%s/%s", reg->blob_dir, sub);
		r = vs_mkdir_p(d, 0700, err);
	}
	if (r >= 0) {
		cleanup_stmt sqlite3_stmt *s =
		    store_prep(reg,
			       "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),"
			       " (SELECT value FROM meta WHERE key = 'revision')",
			       err);
		if (!s || sqlite3_step(s) != SQLITE_ROW) {
			r = s ? store_db_error(reg, "read schema version", err) : -err->code;
		} else if (sqlite3_column_int64(s, 0) != REGISTRY_SCHEMA_VERSION) {
			r = vs_error_set(
			    err, EINVAL, "registry db %s: schema version %lld, expected %d", db,
			    (long long)sqlite3_column_int64(s, 0), REGISTRY_SCHEMA_VERSION);
		} else {
			reg->revision = sqlite3_column_int64(s, 1);
		}
	}
	if (r >= 0) {
		/* Known nodes count as seen at start: they get one lost window. */
		cleanup_stmt sqlite3_stmt *s = store_prep(reg, "SELECT name FROM nodes", err);
		if (!s)
			r = -err->code;
		while (s && sqlite3_step(s) == SQLITE_ROW)
			reg_touch(reg, (const char *)sqlite3_column_text(s, 0), reg->started);
	}
	if (r < 0) {
		registry_close(reg);
		return r;
	}
	/* Stale uploads from a previous run. */
	cleanup_free char *tmp = vs_xasprintf("%s/tmp", reg->blob_dir);
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
	reg_free_db(reg);
	api_node_cache_free(reg);
	for (size_t i = 0; i < reg->nseen; i++)
		free(reg->seen[i].name);
	free(reg->seen);
	lim_free(&reg->lim);
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

static void sha_list_add(char ***v, size_t *n, const char *sha)
{
	*v = realloc(*v, (*n + 1) * sizeof(char *));
	if (!*v)
		abort();
	(*v)[(*n)++] = vs_xstrdup(sha);
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
			sha_list_add(shas, nshas, (const char *)sqlite3_column_text(s, 0));
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
		changed = sqlite3_changes(reg->db);
	}
	if (changed == 0)
		return vs_error_set(err, ENOENT, "slice %s: not found", slice);
	return 0;
}

int store_slice_delete(struct registry *reg, const char *slice, struct vs_error *err)
{
	reg->node_usage_valid = false; /* its slivers no longer count on their nodes */
	char **shas = NULL;
	size_t n = 0;
	int r = slice_delete_rows(reg, slice, &shas, &n, err);
	if (r >= 0) {
		cleanup_free char *logs = vs_xasprintf("%s/logs/%s", reg->blob_dir, slice);
		struct vs_error ignored;
		vs_rm_rf(logs, &ignored);
		store_blobs_gc(reg, shas, n);
	}
	for (size_t i = 0; i < n; i++)
		free(shas[i]);
	free(shas);
	return r;
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
			cleanup_free char *p = vs_xasprintf("%s/blobs/%s", reg->blob_dir, shas[i]);
			unlink(p);
		}
	}
}

int registry_expire(struct registry *reg, long long now, struct vs_error *err)
{
	pthread_mutex_lock(&reg->lock);
	char **names = NULL;
	size_t n = 0;
	int r = 0;
	{
		cleanup_stmt sqlite3_stmt *s =
		    store_prep(reg, "SELECT name FROM slices WHERE expires <= ?", err);
		if (!s)
			r = -err->code;
		else {
			sqlite3_bind_int64(s, 1, now);
			while (sqlite3_step(s) == SQLITE_ROW)
				sha_list_add(&names, &n, (const char *)sqlite3_column_text(s, 0));
		}
	}
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
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
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
