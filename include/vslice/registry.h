/*
 * registry.h - the cluster registry (vslice-registry): the HTTP API of
 * docs/cluster-api.md over a SQLite database, plus the scheduler that places
 * a submitted manifest's slivers on registered nodes.
 *
 * A registry is opened on an existing database (registry_init_db() creates
 * one), then served on an address; the server runs in its own threads
 * (libmicrohttpd), so registry_serve() returns as soon as it listens.
 * registry_stop() stops serving; registry_close() frees everything.
 *
 * The scheduler (sched_place) is a pure function over an array of node
 * records, so it can be tested without a database or a network.
 */
#ifndef VSLICE_REGISTRY_H
#define VSLICE_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/manifest.h"

#define REGISTRY_DEFAULT_LISTEN	   "127.0.0.1:7480"
#define REGISTRY_DEFAULT_HEARTBEAT 10
#define REGISTRY_DEFAULT_LOST	   3
#define REGISTRY_TOKEN_LEN	   68 /* "vsa_" + 64 hex */
#define REGISTRY_SCHEMA_VERSION	   4

enum registry_role {
	REGISTRY_ROLE_NONE = 0,
	REGISTRY_ROLE_ADMIN,
	REGISTRY_ROLE_USER,
	REGISTRY_ROLE_NODE,
};

struct registry_opts {
	unsigned heartbeat_secs; /* status interval nodes are told (0 = default 10) */
	unsigned lost_after;	 /* heartbeats missed before a node is unknown (0 = 3) */
	unsigned threads;	 /* HTTP worker threads (0 = 4) */
	/* connections one client address (IPv6: /64) may hold unless it has
	 * shown a node or admin token (0 = 64; REGISTRY_NO_ADDRESS_LIMIT: none) */
	unsigned per_address_limit;
	/* a running migration with no report from its nodes for this long is
	 * aborted (0 = REGISTRY_DEFAULT_MIGRATION_TIMEOUT) */
	unsigned migration_timeout_secs;
};
#define REGISTRY_DEFAULT_MIGRATION_TIMEOUT 60
#define REGISTRY_NO_ADDRESS_LIMIT	   0xffffffffu

struct registry;

/*
 * Create the database at db (and its blob directory "<db>.d/") with the
 * schema and a first admin token, returned in *admin_token (caller frees).
 * Fails with -EEXIST if db already exists.
 */
int registry_init_db(const char *db, char **admin_token, struct vs_error *err);

/* Open an initialized database. *out is freed with registry_close(). */
int registry_open(const char *db, const struct registry_opts *opts, struct registry **out,
		  struct vs_error *err);

/* Start serving on "ADDR:PORT" (port 0: any free port, see registry_port()).
 * Returns once the socket listens; requests run in the registry's threads.
 * A port another socket listens on is refused (-EADDRINUSE, VS_EK_BUSY). */
int registry_serve(struct registry *reg, const char *listen, struct vs_error *err);

/* As registry_serve, over HTTPS: cert_pem is the PEM certificate (chain,
 * leaf first) and key_pem its PEM private key, both NUL-terminated text the
 * caller keeps until registry_close(). Both NULL: plain HTTP (registry_serve).
 * A key that does not fit the certificate fails here (-EINVAL). */
int registry_serve_tls(struct registry *reg, const char *listen, const char *cert_pem,
		       const char *key_pem, struct vs_error *err);

/* The port the registry listens on (after registry_serve). */
unsigned registry_port(const struct registry *reg);

/* Stop serving: wake every long-poll, stop the HTTP daemon and timer thread.
 * Idempotent; registry_close() calls it. */
void registry_stop(struct registry *reg);
void registry_close(struct registry *reg);

/* The current global revision. */
long long registry_revision(struct registry *reg);

/*
 * Make a new token for role (user: for that existing user) and store its
 * hash. *token is the caller's to free.
 */
int registry_token_create(struct registry *reg, enum registry_role role, const char *user,
			  char **token, struct vs_error *err);

/* Delete every slice whose expires <= now (as DELETE does). Returns how many
 * were deleted, or a negative errno. The timer thread calls it every second. */
int registry_expire(struct registry *reg, long long now, struct vs_error *err);

/* Token helpers: a fresh random token "vsX_" + 64 hex digits (out holds
 * REGISTRY_TOKEN_LEN + 1 bytes), the role a token's prefix names, and the
 * SHA-256 (hex) under which it is stored. */
int registry_token_generate(enum registry_role role, char *out, struct vs_error *err);
enum registry_role registry_token_role(const char *token);
void registry_token_hash(const char *token, char out[65]);
const char *registry_role_name(enum registry_role role);

/* Node names: [A-Za-z0-9][A-Za-z0-9._-]{0,62}. */
bool registry_node_name_valid(const char *s);

/*
 * Scheduling (docs/cluster-api.md, "Scheduling").
 */
enum sched_node_state {
	SCHED_NODE_READY = 0,
	SCHED_NODE_UNKNOWN,
};

struct sched_node {
	const char *name;
	enum sched_node_state state;
	bool drained;
	long long last_seen_ago; /* seconds, for "is not ready" messages */
	uint64_t cpu_millis;	 /* capacity */
	uint64_t memory_bytes;
	uint64_t cpu_used; /* requested by slivers already placed there */
	uint64_t memory_used;
	unsigned nslivers;
	const json_t *labels; /* object string -> string, or NULL */
	const json_t *images; /* array of strings, or NULL */
	bool has_url;	      /* registered a transfer url (may be a migration target) */
	/* the image asked for is at the registry: the node fetches it on first
	 * use, whatever its images list says */
	bool image_fetchable;
};

/*
 * Place m's slivers on nodes[0..n). On success *picked (caller frees) holds
 * *npicked indexes into nodes, in placement order. On failure returns
 * -EAGAIN with err naming the manifest field (".nodes.count: 3 slivers
 * wanted, 2 ready nodes match labels region=eu").
 */
int sched_place(const struct manifest *m, const struct sched_node *nodes, size_t n, size_t **picked,
		size_t *npicked, struct vs_error *err);

/*
 * Migration targets. A node takes a migrated sliver of slice when it is
 * ready, not drained, has a transfer url, holds no sliver of the slice
 * (hosts), has the image and the cpu and memory the slice asks for free.
 * sched_target_refusal: why nd cannot, as one line in buf ("node n2 lacks
 * capacity: 512 MiB memory free, 1 GiB asked"), NULL when it can.
 * sched_pick_target: the best of nodes[0..n) by the same spread score as
 * sched_place (hosts[i]: nodes[i] holds a sliver of the slice); -EAGAIN with
 * err naming why the first few nodes cannot when none can.
 */
const char *sched_target_refusal(const struct sched_node *nd, bool hosts, const char *slice,
				 const char *image, uint64_t cpu_millis, uint64_t memory_bytes,
				 char *buf, size_t len);
int sched_pick_target(const struct sched_node *nodes, size_t n, const bool *hosts,
		      const char *slice, const char *image, uint64_t cpu_millis,
		      uint64_t memory_bytes, size_t *picked, struct vs_error *err);

/*
 * A migration's state machine (docs/migration.md), pure: the registry's
 * api_migrations.c runs it on each node report. Phases:
 *
 *   prepared --source "transferring"--> transferring --target "restored"-->
 *   committed (restored and committed in one step: the sliver row moves)
 *   prepared | transferring --either "aborted", the timer--> aborted
 *
 * A "started" report of the target on a committed migration records the
 * times (downtime, total); "restored" is never a standing phase.
 */
enum migration_phase {
	MIGRATION_PREPARED = 0,
	MIGRATION_TRANSFERRING,
	MIGRATION_RESTORED,
	MIGRATION_COMMITTED,
	MIGRATION_ABORTED,
};
enum migration_party { MIGRATION_SOURCE = 0, MIGRATION_TARGET };
enum migration_report {
	MIGRATION_REPORT_TRANSFERRING = 0,
	MIGRATION_REPORT_RESTORED,
	MIGRATION_REPORT_ABORTED,
	MIGRATION_REPORT_STARTED,
};
enum migration_verdict {
	MIGRATION_SAME = 0,  /* allowed, nothing changes (a repeat): answer 200 */
	MIGRATION_PROGRESS,  /* bytes/updated change, the phase does not */
	MIGRATION_MOVED,     /* the phase changed (or the start was recorded) */
	MIGRATION_COMMIT,    /* transferring -> committed: move the sliver row too */
	MIGRATION_FORBIDDEN, /* this party never sends this report: 403 */
	MIGRATION_CONFLICT,  /* not in this phase: 409 with the phase */
};

/* Times are unix ms, 0 until the event happened; numbers -1 until known. */
struct migration_state {
	enum migration_phase phase;
	long long created, updated;
	long long stopped_ms, restored_ms, committed_ms, started_ms;
	long long bytes, total_ms, downtime_ms;
};

/* "prepared" ... -> the phase, -1 when s names none. */
int migration_phase_parse(const char *s);
const char *migration_phase_name(enum migration_phase p);
/* "transferring", "restored", "aborted", "started" -> the report, else -1. */
int migration_report_parse(const char *s);
/* Apply who's report (bytes, at_ms: -1 when not given; now_ms: the
 * registry's clock) to m; m changes only for PROGRESS, MOVED and COMMIT. */
enum migration_verdict migration_step(struct migration_state *m, enum migration_party who,
				      enum migration_report rep, long long bytes, long long at_ms,
				      long long now_ms);

#endif
