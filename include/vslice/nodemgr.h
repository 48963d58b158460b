/*
 * nodemgr.h - the node manager (vslice-nodemgr): the node side of the
 * registry API (docs/cluster-api.md), PlanetLab NodeManager style.
 *
 * It registers the node, long-polls the node's assignments (the full desired
 * set, level-triggered) in a thread of its own, and reconciles that set with
 * the slices on this node: assigned and absent -> experiment_create +
 * slice_start (detached); present, made by this node manager and no longer
 * assigned -> slice_destroy. Every heartbeat it reports each sliver's state,
 * uploads new log bytes and, once a sliver exited, its result files.
 *
 * State under <root>/nodemgr/: assignments.json (the last successful answer,
 * so slivers keep running - and are never destroyed - while the registry is
 * away), slivers/NAME.json (one record per sliver this node manager made;
 * slices without one, or whose experiment.json names another origin, are
 * never touched) and lock (flock'ed for the daemon's life: one node manager
 * per root). A restarted node manager re-adopts its slivers from these.
 *
 * Crash safety: a record states the intent (phase "creating" / "destroying")
 * atomically before the slice is touched, and experiment_create writes
 * experiment.json last, so a SIGKILL at any step leaves either a complete
 * sliver or a half-made / half-removed slice that the record names; the next
 * reconcile finishes the create (or redoes it) or the destroy
 * (nodemgr_decide). VSLICE_FAULT=nodemgr.create:N / nodemgr.destroy:N is a
 * test hook that SIGKILLs the process at step N (docs/cluster.md).
 *
 * Cold migration (docs/migration.md): an assignment with "migrate_out" has
 * the sliver stopped and streamed to the target's --listen API (PUT
 * /v1/transfers/ID with the migration's one-time token), one with
 * "migrate_in" makes a copy, not started, that the stream fills; the
 * registry's answers to the nodes' reports decide which copy runs. Each
 * step is an intent phase in the record first (migrating-out,
 * migrating-in, receiving, restored), so a restart asks the registry and
 * rolls forward or back (NODEMGR_MIGRATE_RESOLVE).
 *
 * The pure parts (assignment parsing, the reconcile decision, state mapping,
 * records) are public so tests can reach them without a registry.
 */
#ifndef VSLICE_NODEMGR_H
#define VSLICE_NODEMGR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/manifest.h"
#include "vslice/slice.h"
#include "vslice/util.h"

#define NODEMGR_POLL_WAIT     30	 /* seconds a long-poll may block */
#define NODEMGR_BACKOFF_MAX   30	 /* seconds between attempts while unreachable */
#define NODEMGR_LOG_CHUNK     (1u << 20) /* log bytes uploaded per sliver per heartbeat */
#define NODEMGR_NODE_NAME_MAX 64

/* Built-in per-sliver limits for manifests that set none (--default-memory,
 * --default-pids): an experiment without limits must not take a node down. */
#define NODEMGR_DEFAULT_MEMORY (1ull << 30) /* or half the node's memory, if less */
#define NODEMGR_DEFAULT_PIDS   1024
/* No disk limit unless the operator asks (--default-disk): a limit is an
 * ext4 image, loop device and mount per sliver, and such a sliver cannot
 * be checkpointed yet (docs/cluster.md, "Node manager: default limits"). */
#define NODEMGR_DEFAULT_DISK 0

/* ------------------------------------------------------------------ */
/* pure parts                                                          */

/* A migration an assignment asks of this node (docs/migration.md): the
 * source's entry carries "migrate_out" {"id", "to", "url", "token",
 * "mode"}, the target's "migrate_in" {"id", "from", "token_sha256", "mode"},
 * while the registry's migration is prepared or transferring. */
enum nodemgr_mig_role { NODEMGR_MIG_NONE, NODEMGR_MIG_OUT, NODEMGR_MIG_IN };
#define NODEMGR_MIG_ID_MAX    40  /* "mg_" + 16 hex, with room */
#define NODEMGR_MIG_TOKEN_MAX 80  /* "vst_" + 64 hex */
#define NODEMGR_MIG_URL_MAX   512 /* the target's transfer API base */
struct nodemgr_migration {
	enum nodemgr_mig_role role;
	char id[NODEMGR_MIG_ID_MAX];
	char peer[NODEMGR_NODE_NAME_MAX]; /* out: the target ("to"); in: the source ("from") */
	char mode[16];
	char url[NODEMGR_MIG_URL_MAX];	   /* out: http(s)://HOST:PORT of the target */
	char token[NODEMGR_MIG_TOKEN_MAX]; /* out: the one-time transfer token (a secret) */
	char token_sha256[VS_SHA256_HEX];  /* in: its sha256, what a PUT is checked against */
};

/* One entry of an assignments answer. */
struct nodemgr_assignment {
	char slice[SLICE_NAME_MAX];
	json_t *manifest;	      /* owned reference; NULL if the entry had none */
	long long expires;	      /* 0 if absent */
	char sha256[VS_SHA256_HEX];   /* of the manifest (compact, sorted keys); "" if none */
	struct nodemgr_migration mig; /* role NONE: no migration (or a malformed one) */
	/* The overlay (issue 13): the sliver's cluster-wide address ("" when
	 * none, or not an IPv4 address) and its slice's {"NODE": "ADDRESS"}
	 * (owned; NULL when absent), for /etc/vslice/peers. */
	char address[16];
	json_t *addresses;
};

/*
 * Parse an assignments answer {"index": R, "slivers": [...]}. Fails (-EINVAL,
 * err says why) unless it is an object with a "slivers" array: such an answer
 * must not count as "nothing assigned". Entries without a valid slice name
 * are skipped (they can name no slice here); later duplicates are dropped.
 * A "migrate_out"/"migrate_in" whose fields do not check out (id, token and
 * digest shapes, an http(s):// url) leaves the entry without a migration.
 * *index gets "index" (-1 if absent). Free with nodemgr_assignments_free().
 */
int nodemgr_assignments_parse(json_t *answer, struct nodemgr_assignment **out, size_t *n,
			      long long *index, struct vs_error *err);
void nodemgr_assignments_free(struct nodemgr_assignment *a, size_t n);

/* Node names: [A-Za-z0-9][A-Za-z0-9._-]{0,62}. */
bool nodemgr_node_name_valid(const char *s);

enum nodemgr_phase {
	NODEMGR_CREATING,   /* create begun (a crash here leaves a slice to redo) */
	NODEMGR_CREATED,    /* created and started: a sliver of this node manager */
	NODEMGR_FAILED,	    /* could not be created or started; not retried until the
			     * assignment changes (manifest or expires) */
	NODEMGR_DESTROYING, /* destroy begun (a crash here leaves a slice to remove) */
	/* Cold migration (docs/migration.md), each saved before its step: */
	NODEMGR_MIGRATING_OUT, /* source: the registry took "transferring"; the sliver is
				* being stopped and sent (a crash here: ask the registry) */
	NODEMGR_MIGRATING_IN,  /* target: a copy (not started) is being made for the stream */
	NODEMGR_RECEIVING,     /* target: a PUT was taken (one use: never a second one) */
	NODEMGR_RESTORED,      /* target: the stream is in and verified; waiting for the
				* registry's commit, then start */
};

/* Bookkeeping of one sliver: <root>/nodemgr/slivers/NAME.json. */
struct nodemgr_record {
	char slice[SLICE_NAME_MAX];
	enum nodemgr_phase phase;
	char sha256[VS_SHA256_HEX];	    /* manifest hash of the assignment it came from */
	long long expires;		    /* the assignment's expires */
	char *message;			    /* failed: why (one line); else NULL */
	long long created;		    /* Unix seconds */
	uint64_t log_offset;		    /* log bytes the registry has */
	bool log_capped;		    /* the registry refused more (413) */
	bool results_done;		    /* results uploaded and committed */
	char migration[NODEMGR_MIG_ID_MAX]; /* the migration of a migrating phase, kept
					     * after it ("" none) */
};

/* "creating", "created", ..., "migrating-out", "restored": as records hold them. */
const char *nodemgr_phase_name(enum nodemgr_phase p);
json_t *nodemgr_record_to_json(const struct nodemgr_record *r);
/* Fill r from a record's JSON (every field type-checked); r->message is
 * the caller's, to free with nodemgr_record_free(). */
int nodemgr_record_from_json(json_t *j, struct nodemgr_record *r, struct vs_error *err);
void nodemgr_record_free(struct nodemgr_record *r);

/* Who a local slice of this name belongs to. */
enum nodemgr_local {
	NODEMGR_LOCAL_NONE,    /* no such slice here */
	NODEMGR_LOCAL_OURS,    /* experiment.json: origin "registry ...", node = ours */
	NODEMGR_LOCAL_FOREIGN, /* anything else: never touched */
	/* A slice without experiment.json that our record's intent explains: one
	 * we were creating (and it is not older than the intent) or destroying
	 * when the node manager died. Only ever with such a record. */
	NODEMGR_LOCAL_PARTIAL,
};

/* What the reconcile does with one slice name. To add one, see the top of
 * lib/node/nodemgr_int.h (an enum value, a nodemgr_decide case, a case in
 * the action switch). */
enum nodemgr_action {
	NODEMGR_NOTHING,     /* not assigned, not ours */
	NODEMGR_KEEP,	     /* as it should be */
	NODEMGR_RENEW,	     /* as it should be, but renewed: move the slice's expiry */
	NODEMGR_CREATE,	     /* create and start */
	NODEMGR_RECREATE,    /* destroy ours, then create (half-made, or the assignment changed) */
	NODEMGR_RESUME,	     /* ours and complete, its create interrupted: start it if it never
			      * ran, then record it as created */
	NODEMGR_ADOPT,	     /* ours without a record: take it over as it is */
	NODEMGR_CONFLICT,    /* assigned, but a slice of that name is not ours: failed */
	NODEMGR_VANISHED,    /* ours, but its slice was removed behind our back: failed */
	NODEMGR_DESTROY,     /* ours and no longer assigned */
	NODEMGR_FORGET,	     /* no longer assigned, nothing here: drop the record */
	NODEMGR_MIGRATE_OUT, /* source: report, stop, stream to the target, then destroy
			      * (committed) or restart (aborted); a thread of its own */
	NODEMGR_MIGRATE_IN,  /* target: make the copy, not started, and open the transfer
			      * (PUT /v1/transfers/ID) for it */
	NODEMGR_MIGRATE_RESOLVE, /* a migration step cut short (a restart): ask the registry,
				  * roll forward (start / destroy) or back (restart / destroy) */
};

/*
 * The reconcile decision for one slice name. a: its assignment (NULL = not
 * assigned; only ever from a successful answer or the cache), r: our record
 * (NULL = none), local: what is on disk. Every crash point of a create or
 * destroy (record phase creating/destroying) rolls forward from here.
 */
enum nodemgr_action nodemgr_decide(const struct nodemgr_assignment *a,
				   const struct nodemgr_record *r, enum nodemgr_local local);
const char *nodemgr_action_name(enum nodemgr_action a);

/*
 * A sliver's status as the contract has it ({"slice", "state", "exit_code",
 * "reason", "started", "finished", "restarts", "message"}). st NULL: from
 * the record alone (creating, or failed with its message).
 */
json_t *nodemgr_sliver_status(const struct nodemgr_record *r, const struct slice_state *st);

/*
 * Give m the node's default limits where its manifest sets none (0: no
 * default for that one; disk in bytes, as m->disk_bytes: the caller keeps
 * it in SLIVER_DISK_MIN..SLIVER_DISK_MAX). Returns a bit set of what was
 * applied: NODEMGR_DEFAULTED_MEMORY, _PIDS, _DISK.
 */
#define NODEMGR_DEFAULTED_MEMORY 1u
#define NODEMGR_DEFAULTED_PIDS	 2u
#define NODEMGR_DEFAULTED_DISK	 4u
unsigned nodemgr_apply_defaults(struct manifest *m, uint64_t memory, uint64_t pids, uint64_t disk);

/*
 * The test hook VSLICE_FAULT: "nodemgr.create:N", "nodemgr.destroy:N",
 * "migrate.out:N", "migrate.in:N" (N >= 1: SIGKILL after step N) or
 * "migrate.flip:N" (the target flips byte N, from 0, of a stream it
 * receives) sets *op (a static string) and *step. A value naming another
 * component (neither "nodemgr." nor "migrate." prefix) or unset/empty:
 * *op = NULL, returns 0. A malformed value of ours: -EINVAL, err names it.
 */
int nodemgr_fault_parse(const char *value, const char **op, unsigned *step, struct vs_error *err);

/* ------------------------------------------------------------------ */
/* the daemon                                                          */

enum nodemgr_log_level { NODEMGR_LOG_INFO, NODEMGR_LOG_DEBUG };

struct nodemgr_opts {
	const char *registry;	 /* base URL, http:// or https:// */
	const char *name;	 /* node name */
	const char *token;	 /* vsn_... (or admin) */
	const char *ca_file;	 /* PEM CA bundle for an https:// registry; NULL = system CAs */
	const char *root;	 /* state root (slices, images, nodemgr/) */
	char **labels;		 /* "K=V", NULL-terminated, may be NULL */
	unsigned heartbeat_secs; /* 0: what the registry answers at register */
	double cpus;		 /* capacity reported at register */
	uint64_t memory;	 /* bytes */
	/* Limits for slivers whose manifest sets none (0: none); the caller
	 * picks the built-in NODEMGR_DEFAULT_* unless told otherwise. */
	uint64_t default_memory; /* bytes */
	uint64_t default_pids;
	uint64_t default_disk; /* bytes: an ext4 image per sliver (off by default,
				* NODEMGR_DEFAULT_DISK; docs/cluster.md) */
	bool verbose;	       /* also NODEMGR_LOG_DEBUG lines */
	/* "ADDR:PORT" (port 0: any) for the node manager's API: GET /v1/status
	 * (the node, whether it is registered, every sliver's status as last
	 * reported; no token) and PUT /v1/transfers/ID (a migration's stream,
	 * with its one-time transfer token). NULL = none (then this node
	 * cannot be a migration's target). */
	const char *listen;
	/* The URL other nodes reach opts.listen at (sent to the registry as the
	 * node's "url": a migration's target); NULL: http(s)://ADDR:PORT of
	 * listen unless ADDR is a wildcard (then none: not a migration target). */
	const char *advertise;
	/* PEM text (not file names): serve opts.listen over HTTPS. Both or
	 * neither. */
	const char *tls_cert_pem, *tls_key_pem;
	/* One event, one line without newline (caller adds its prefix). Called
	 * from both of the node manager's threads. */
	void (*log)(void *arg, enum nodemgr_log_level level, const char *line);
	void *log_arg;
};

/*
 * The cgroup parent of a node manager's slivers. Several node managers on
 * one machine must not share one (their slivers of one slice would share a
 * cgroup), so unless one is given (--cgroup-parent or $VSLICE_CGROUP_PARENT:
 * `given`, may be NULL or "") it is derived from the node: "vslice-NAME".
 * nodemgr_new records the parent in use ($VSLICE_CGROUP_PARENT) in
 * <root>/nodemgr/cgroup-parent once it holds the root and the parent, so
 * that slicectl on that root finds the slivers (nodemgr_root_cgroup_parent)
 * and a restart keeps it (read here when none is given); a root that holds
 * slices but no record was run with the old default, "vslice", and keeps
 * it. *out: the parent, no outer slashes (caller frees); -EINVAL for a
 * given one cgroup_open would refuse. The caller makes it the process's
 * $VSLICE_CGROUP_PARENT before nodemgr_new (which locks it).
 */
int nodemgr_cgroup_parent(const char *root, const char *name, const char *given, char **out,
			  struct vs_error *err);
/* The parent recorded for root by a node manager; NULL when none (or the
 * record does not hold a valid parent). For slicectl, when no
 * $VSLICE_CGROUP_PARENT is set. Caller frees. */
char *nodemgr_root_cgroup_parent(const char *root);

/* Is listen a usable "ADDR:PORT" for opts.listen? */
int nodemgr_listen_check(const char *listen, struct vs_error *err);

/* The URL to register as the node's "url": advertise when given (checked:
 * http:// or https://, no spaces or control characters, shorter than
 * NODEMGR_MIG_URL_MAX; err names --advertise), else "http(s)://ADDR:PORT"
 * of listen (https when tls; port: the bound one when listen asked for 0),
 * else *out = NULL: no listen, or a wildcard ADDR (0.0.0.0, ::) that other
 * nodes cannot dial. *out: the caller frees. */
int nodemgr_advertise_url(const char *listen, unsigned port, const char *advertise, bool tls,
			  char **out, struct vs_error *err);

struct nodemgr;

/* Copy o, make <root>/nodemgr/slivers, lock the root (<root>/nodemgr/lock)
 * and the cgroup parent (a lock file under /run/vslice/nodemgr named after
 * $VSLICE_CGROUP_ROOT + $VSLICE_CGROUP_PARENT), both for nm's life; load
 * records and the cached assignments; record the parent for the root
 * (nodemgr_cgroup_parent). Nothing is started yet. A root or a
 * cgroup parent another live node manager holds: -EBUSY, kind VS_EK_BUSY,
 * err names that node manager. */
int nodemgr_new(const struct nodemgr_opts *o, struct nodemgr **out, struct vs_error *err);

/* Run until nodemgr_stop(): poll thread + reconcile/heartbeat loop. Returns
 * 0 after a stop, < 0 on a fatal error. Registry trouble is none (retried
 * with backoff), except a registry that refuses the token at registration
 * (401: revoked or unknown; 403: bound to another node, not a node token):
 * -EACCES, kind VS_EK_REFUSED, err saying why and what to do. A 409 (the
 * name held by another token) is retried: an admin's reset ends it. An
 * opts.listen address another process listens on is one: -EADDRINUSE, kind
 * VS_EK_BUSY (the socket is bound without SO_REUSEPORT). */
int nodemgr_run(struct nodemgr *nm, struct vs_error *err);

/* Ask nodemgr_run to return; async-signal-safe. Slivers keep running. */
void nodemgr_stop(struct nodemgr *nm);

/* Free nm. A poll thread still blocked in a request is left to end with
 * the process (its state is not freed): call this only on the way out. */
void nodemgr_free(struct nodemgr *nm);

#endif
