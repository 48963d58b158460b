/*
 * store.h - the registry's store layer: every SQL statement of the registry
 * sits behind the typed store_* functions declared here (lib/registry/store*.c,
 * one file per table group). Callers above (api.c, registry.c, server.c) see
 * plain C rows and struct vs_error, never a sqlite3 handle or statement.
 *
 *   store.c          open, schema and its ordered migrations, transactions,
 *                    the commit hook
 *   store_users.c    users and tokens (stored by SHA-256)
 *   store_nodes.c    nodes, and the node cache the scheduler reads
 *   store_slices.c   slices (insert, renew, delete with their slivers/results)
 *   store_slivers.c  slivers: states, logs' sizes, results' completion,
 *                    a node's assignments
 *   store_results.c  result files and their content-addressed blobs
 *   store_migrations.c  migrations (issue 11): one row per attempt, its
 *                    phase and numbers; the sliver row moves in
 *                    store_sliver_move (store_slivers.c)
 *   store_images.c   images (issue 14): name -> digest, size, owner, and
 *                    their blobs under images/sha256/
 *
 * Every call expects reg->lock held. Transactions are explicit: store_begin,
 * then the changes, then store_commit (or store_rollback). A commit that
 * bumps the revision reports the new revision through the commit hook
 * (store_set_commit_hook); the store never calls the HTTP server itself.
 *
 * Errors: < 0 with err set (EBUSY when SQLite was busy, EIO otherwise;
 * ENOENT for a missing row where a function says so). Rows returned to the
 * caller are the caller's: free them with the matching *_free function.
 */
#ifndef VSLICE_REGISTRY_STORE_H
#define VSLICE_REGISTRY_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/registry.h"

struct registry;
struct sqlite3;

/* Called after a commit that increased the revision (reg->revision holds the
 * new value). Runs under reg->lock. */
typedef void (*store_commit_fn)(void *ctx, long long revision);

/* One row of the nodes table as the scheduler needs it (the node cache). */
struct store_cached_node {
	char *name;
	uint64_t cpu_millis, memory_bytes;
	bool drained;
	bool has_url;	  /* it registered a transfer url (a migration target) */
	bool has_overlay; /* it registered an overlay (may hold bridged slivers) */
	json_t *labels, *images;
	/* what its slivers asked for */
	unsigned nslivers;
	uint64_t cpu_used, memory_used;
};

/* The store's part of struct registry. */
struct store {
	struct sqlite3 *db;
	char *path;
	char *blob_dir; /* "<db>.d": logs/, blobs/, tmp/ */
	store_commit_fn on_commit;
	void *on_commit_ctx;

	/* store_nodes.c: the nodes table as the scheduler reads it
	 * (registration and drain clear cache_valid) */
	struct store_cached_node *cache;
	size_t cache_n;
	bool cache_valid;
	bool usage_valid; /* the cache's per-node usage matches the slivers; a
			   * slice insert adds to it (store_node_cache_add_usage),
			   * a delete or rollback clears it */
};

/* ---- store.c ---- */

/* Create the database at path (which must not exist) at the newest schema
 * and store the admin token. Removes the file again on failure. */
int store_create(const char *path, const char *admin_token, struct vs_error *err);
/* Open an existing database and bring its schema up to date (migrations);
 * reg->revision is read from it. */
int store_open(struct registry *reg, const char *path, struct vs_error *err);
void store_close(struct registry *reg);
void store_set_commit_hook(struct registry *reg, store_commit_fn fn, void *ctx);
int store_begin(struct registry *reg, struct vs_error *err);
/* Commit; when bump, increase the revision in the same transaction and,
 * once committed, call the commit hook. On failure the transaction is
 * rolled back (and the node cache's usage recomputed on its next use). */
int store_commit(struct registry *reg, bool bump, struct vs_error *err);
void store_rollback(struct registry *reg);

/* ---- store_users.c ---- */

/* 1 if user exists, 0 if not, < 0 on error. */
int store_user_exists(struct registry *reg, const char *name, struct vs_error *err);
int store_user_add(struct registry *reg, const char *name, struct vs_error *err);
/* Store token's hash; user: a user token's user; node: bind a node token to
 * that node name at once (NULL: bound when it first registers). */
int store_token_add(struct registry *reg, const char *token, enum registry_role role,
		    const char *user, const char *node, struct vs_error *err);
/* Look token up: 0 and role/user/node (strings caller frees, NULL if none),
 * -ENOENT when unknown. */
int store_token_lookup(struct registry *reg, const char *token, enum registry_role *role,
		       char **user, char **node, struct vs_error *err);
int store_token_bind(struct registry *reg, const char *token, const char *node,
		     struct vs_error *err);
/* Is the node name held (bound) by a token? 1 yes, 0 no, < 0 error. A held
 * name stays with its token: only store_node_release frees it. */
int store_node_held(struct registry *reg, const char *node, struct vs_error *err);
/* Revoke (delete) every token bound to node; returns how many. */
int store_node_release(struct registry *reg, const char *node, struct vs_error *err);

/* ---- store_nodes.c ---- */

struct store_node {
	char *name;
	double cpus;
	long long memory;
	char *labels, *images; /* JSON text: an object / an array of strings */
	char *version;
	char *url; /* transfer API base, NULL when it registered none */
	/* the overlay's underlay IPv4 address and VXLAN id; NULL / 0: none */
	char *overlay_local;
	long long overlay_vni;
	bool drained;
	long long registered;
	long long slivers; /* how many slivers it hosts */
};
void store_node_clear(struct store_node *n);
void store_nodes_free(struct store_node *v, size_t n);

/* 1 if node is registered, 0 if not, < 0 on error. */
int store_node_exists(struct registry *reg, const char *name, struct vs_error *err);
/* -ENOENT when not registered. */
int store_node_get(struct registry *reg, const char *name, struct store_node *out,
		   struct vs_error *err);
/* Every node, by name. */
int store_nodes_list(struct registry *reg, struct store_node **out, size_t *n,
		     struct vs_error *err);
/* Insert or update the node's capacity, labels, images, version, url and
 * overlay (name, cpus, memory, labels, images, version, url, overlay_local,
 * overlay_vni of in; registered: when new). */
int store_node_put(struct registry *reg, const struct store_node *in, long long registered,
		   struct vs_error *err);
/* -ENOENT when not registered. */
int store_node_set_drained(struct registry *reg, const char *name, bool drained,
			   struct vs_error *err);
/* The node cache with every node's usage (its slivers', and the slices a
 * running migration moves to it), sorted by name; borrowed until the
 * next store call that changes nodes or slivers. */
int store_node_cache_get(struct registry *reg, const struct store_cached_node **v, size_t *n,
			 struct vs_error *err);
/* A slice with cpu_millis/memory per sliver got slivers on the cached nodes
 * idx[0..n) (indexes into store_node_cache_get's array) and was committed. */
void store_node_cache_add_usage(struct registry *reg, const size_t *idx, size_t n,
				uint64_t cpu_millis, uint64_t memory);
void store_node_cache_free(struct registry *reg);

/* ---- store_slices.c ---- */

struct store_slice {
	char *name, *owner;
	char *manifest; /* JSON text; NULL unless asked for */
	char manifest_sha256[65];
	long long created, expires;
	uint64_t cpu_millis, memory; /* per sliver */
};
void store_slice_clear(struct store_slice *s);

/* -ENOENT when there is no such slice. with_manifest: fill s->manifest. */
int store_slice_get(struct registry *reg, const char *name, bool with_manifest,
		    struct store_slice *out, struct vs_error *err);
int store_slice_exists(struct registry *reg, const char *name, struct vs_error *err);
/* The owner of slice (caller frees) and whether node (may be NULL) hosts
 * one of its slivers; -ENOENT when there is no such slice. */
int store_slice_owner(struct registry *reg, const char *slice, const char *node, char **owner,
		      bool *on_node, struct vs_error *err);
/* Names of the slices owner owns (NULL: all), sorted. */
int store_slice_names(struct registry *reg, const char *owner, char ***names, size_t *n,
		      struct vs_error *err);
/* Names of the slices whose expires <= now. */
int store_slice_expired(struct registry *reg, long long now, char ***names, size_t *n,
			struct vs_error *err);
void store_names_free(char **names, size_t n);
long long store_slice_count(struct registry *reg, struct vs_error *err);
/* Insert slice s (manifest_sha256 computed here) with a pending sliver on
 * each of nodes[0..nnodes). */
int store_slice_insert(struct registry *reg, const struct store_slice *s, const char *const *nodes,
		       size_t nnodes, struct vs_error *err);
int store_slice_renew(struct registry *reg, const char *name, long long expires,
		      struct vs_error *err);
/* Delete slice (rows, log directory, unreferenced blobs) inside the caller's
 * transaction. -ENOENT if there is no such slice. */
int store_slice_delete(struct registry *reg, const char *slice, struct vs_error *err);

/* ---- store_slivers.c ---- */

struct store_sliver {
	char *slice, *node, *state;
	long long exit_code;
	char *reason;
	long long started, finished, restarts;
	char *message;
	char *results; /* "pending" or "complete" */
	char *missing; /* JSON text: an array of paths */
	long long log_size;
	char *address; /* its cluster-wide address (overlay), "" when none */
};
void store_sliver_clear(struct store_sliver *v);
void store_slivers_free(struct store_sliver *v, size_t n);

/* The slivers of slice (only_node: that node's alone), by node. */
int store_slivers_of(struct registry *reg, const char *slice, const char *only_node,
		     struct store_sliver **out, size_t *n, struct vs_error *err);
/* Every sliver's node and state (the other fields are empty). */
int store_sliver_states(struct registry *reg, struct store_sliver **out, size_t *n,
			struct vs_error *err);
/* -ENOENT when slice has no sliver on node. */
int store_sliver_get(struct registry *reg, const char *slice, const char *node,
		     struct store_sliver *out, struct vs_error *err);
int store_sliver_exists(struct registry *reg, const char *slice, const char *node,
			struct vs_error *err);
/* A node's report on one sliver (slice, node, state, exit_code, reason,
 * started, finished, restarts, message of st). 1: the row changed; 0: it
 * had those values already, or the sliver is gone. */
int store_sliver_report(struct registry *reg, const struct store_sliver *st, struct vs_error *err);
/* The sliver's log size, or -1 when there is no such sliver. */
long long store_sliver_log_size(struct registry *reg, const char *slice, const char *node);
int store_sliver_set_log_size(struct registry *reg, const char *slice, const char *node,
			      long long size, struct vs_error *err);
/* Mark the sliver's results complete; missing_json: the paths not found. */
int store_sliver_results_done(struct registry *reg, const char *slice, const char *node,
			      const char *missing_json, struct vs_error *err);

struct store_assignment {
	char *slice;
	char manifest_sha256[65];
	long long expires;
	char address[16]; /* the sliver's cluster-wide address, "" when none */
};
void store_assignments_free(struct store_assignment *v, size_t n);
/* The slices with a sliver on node, by name. */
int store_assignments(struct registry *reg, const char *node, struct store_assignment **out,
		      size_t *n, struct vs_error *err);

/*
 * The overlay's cluster leases (issue 13): give the sliver (slice, node) the
 * lowest free address of the IPv4 subnet net/prefix (host order), the
 * network address, the gateway (net + 1) and broadcast never; inside the
 * caller's transaction. -ENOSPC when every one is taken.
 */
int store_sliver_alloc_address(struct registry *reg, const char *slice, const char *node,
			       uint32_t net, unsigned prefix, char out[16], struct vs_error *err);
/* One bridged sliver on a node with an overlay, as another node sees it. */
struct store_overlay_peer {
	char address[16];  /* the sliver's */
	char underlay[16]; /* its node's overlay_local */
};
/* Every sliver with an address whose node is not node and has an overlay,
 * by address. */
int store_overlay_peers(struct registry *reg, const char *node, struct store_overlay_peer **out,
			size_t *n, struct vs_error *err);
/* The overlay id of a node other than node that has one (0: none): the
 * cluster's VNI, which every node must share; *holder: the name of another
 * node that registered the underlay address local (caller frees; NULL:
 * none). */
int store_overlay_vni_other(struct registry *reg, const char *node, const char *local,
			    long long *vni, char **holder, struct vs_error *err);

/* Move slice's sliver row from node from to node to, as new (pending, no
 * log, no results): a migration's commit, inside the caller's transaction.
 * The result rows of (slice, from) are deleted; their blobs' sha256s are
 * added to *shas (store_blobs_gc them after the commit). -ENOENT when
 * slice has no sliver on from. */
int store_sliver_move(struct registry *reg, const char *slice, const char *from, const char *to,
		      char ***shas, size_t *nshas, struct vs_error *err);
/* Remove the log file of (slice, node) (after a commit that dropped it). */
void store_sliver_log_remove(struct registry *reg, const char *slice, const char *node);

/* ---- store_results.c ---- */

struct store_result {
	char *path;
	long long size;
	char sha256[65];
	unsigned mode;
};
void store_results_free(struct store_result *v, size_t n);

/* The sliver's result files, by path. */
int store_results_of(struct registry *reg, const char *slice, const char *node,
		     struct store_result **out, size_t *n, struct vs_error *err);
/* The blob of one result file: its sha256; -ENOENT when there is none. */
int store_result_sha(struct registry *reg, const char *slice, const char *node, const char *path,
		     char sha[65], struct vs_error *err);
/* Record a result file whose content is already blobs/<r->sha256>; the blob
 * it replaces is removed when no row refers to it any more. -ENOENT when the
 * sliver is gone (the new blob is removed too, unless referenced). */
int store_result_put(struct registry *reg, const char *slice, const char *node,
		     const struct store_result *r, struct vs_error *err);
/* Remove blobs no result row refers to any more. */
void store_blobs_gc(struct registry *reg, char **shas, size_t n);

/* ---- store_migrations.c ---- */

#define STORE_MIGRATION_ID_LEN 19 /* "mg_" + 16 hex digits */

struct store_migration {
	char id[STORE_MIGRATION_ID_LEN + 1];
	char *slice, *owner, *from, *to;
	char *mode;   /* "cold", "live", "precopy" */
	char *phase;  /* "prepared", "transferring", "restored", "committed", "aborted" */
	char *reason; /* why it was aborted; "" */
	char token_sha256[65];
	long long created, updated; /* unix ms */
	/* unix ms of each event, 0 until it happened */
	long long stopped_ms, restored_ms, committed_ms, started_ms;
	long long bytes, total_ms, downtime_ms; /* -1: not known yet */
	char *stats;				/* JSON text: an object */
};
void store_migration_clear(struct store_migration *m);
void store_migrations_free(struct store_migration *v, size_t n);
/* Is phase one of a running migration (prepared, transferring)? */
bool store_migration_running_phase(const char *phase);

/* Insert m (every field; stats NULL: "{}"). -EEXIST (VS_EK_BUSY) when the
 * slice has a running migration already (the partial unique index). Keeps
 * the newest STORE_MIGRATIONS_KEPT finished ones of the slice. */
#define STORE_MIGRATIONS_KEPT 100
int store_migration_insert(struct registry *reg, const struct store_migration *m,
			   struct vs_error *err);
/* -ENOENT when there is no such migration. */
int store_migration_get(struct registry *reg, const char *id, struct store_migration *out,
			struct vs_error *err);
/* The running migration of slice: 1 and *out filled, 0 when none. */
int store_migration_running(struct registry *reg, const char *slice, struct store_migration *out,
			    struct vs_error *err);
/* Newest first, at most limit: owner NULL = anyone's, slice NULL = any. */
int store_migrations_list(struct registry *reg, const char *owner, const char *slice,
			  unsigned limit, struct store_migration **out, size_t *n,
			  struct vs_error *err);
/* The running migrations (node NULL: all; else those node is the source
 * or the target of), by id. */
int store_migrations_running_list(struct registry *reg, const char *node,
				  struct store_migration **out, size_t *n, struct vs_error *err);
/* Write m's phase, reason, updated, event times, numbers and stats, if its
 * row is still in phase expect: 1 written, 0 not (it moved on). */
int store_migration_save(struct registry *reg, const struct store_migration *m, const char *expect,
			 struct vs_error *err);
/* Abort slice's running migration (if any) with reason, inside the
 * caller's transaction: 1 one was aborted, 0 none ran. */
int store_migration_abort_slice(struct registry *reg, const char *slice, const char *reason,
				long long now_ms, struct vs_error *err);

/* ---- store_images.c ---- */

struct store_image {
	char name[64];
	char digest[65]; /* sha256 of the blob, 64 lowercase hex digits */
	long long size;
	char owner[64]; /* a user's name, or "admin" */
	long long created;
	unsigned flags; /* IMAGE_IMPORT_* the nodes import it with */
};

/* -ENOENT when there is no such image. */
int store_image_get(struct registry *reg, const char *name, struct store_image *out,
		    struct vs_error *err);
/* Every image, by name (caller frees *out). */
int store_images_list(struct registry *reg, struct store_image **out, size_t *n,
		      struct vs_error *err);
/* Insert or replace the row of in->name; old (65 bytes): the digest it
 * had, "" when it is new. The blob must be in place already. */
int store_image_put(struct registry *reg, const struct store_image *in, char old[65],
		    struct vs_error *err);
/* Delete name's row; digest (65 bytes): its digest. -ENOENT if none. */
int store_image_delete(struct registry *reg, const char *name, char digest[65],
		       struct vs_error *err);
/* A slice whose manifest names image (caller frees; NULL: none). */
int store_image_user(struct registry *reg, const char *image, char **slice, struct vs_error *err);
/* Does a row refer to digest? 1 yes, 0 no, < 0 error. */
int store_image_digest_used(struct registry *reg, const char *digest, struct vs_error *err);
/* The blob path of digest: "<db>.d/images/sha256/<digest>" (caller frees). */
char *store_image_blob_path(struct registry *reg, const char *digest);
/* Unlink digest's blob when no row refers to it any more. */
void store_image_blob_gc(struct registry *reg, const char *digest);
/* Unlink blobs no row refers to and image uploads' temp files (at open,
 * before any request: what a crash left). */
void store_images_sweep(struct registry *reg);
#endif
