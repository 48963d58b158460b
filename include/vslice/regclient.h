/*
 * regclient.h - the registry's API (docs/cluster-api.md) as C calls: one
 * function per /v1 endpoint that slicectl and the node manager use. The
 * paths, their escaping and the query strings are built here and nowhere
 * else; the transport is http.h's client, which the caller opens
 * (http_client_init) and owns.
 *
 * Every call returns 0 on a 2xx answer, else a negative errno with err
 * holding one line, exactly as http.h maps them: the registry's own
 * {"error"} text when it sent one (400/422 EINVAL, 401/403 EACCES, 404
 * ENOENT, 409 EEXIST, 413 EFBIG, 503 EAGAIN, others EIO), the transport
 * error otherwise (ECONNREFUSED, ETIMEDOUT, EPROTO, EIO). *status (when
 * not NULL) is the HTTP status, 0 when no answer came back.
 *
 * Names (slice, node, user) and result paths may hold any byte: each is
 * percent-encoded as one path segment (a result path keeps its '/'s), so a
 * name can never reach another endpoint than the one called.
 *
 * json_t ** outputs are new references the caller decrefs; they are NULL
 * when the call fails (except where said), or the answer had no body.
 */
#ifndef VSLICE_REGCLIENT_H
#define VSLICE_REGCLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/http.h"
#include "vslice/util.h"

/* ---- anyone ----------------------------------------------------- */

/* GET /v1/health: *revision (when not NULL) is the registry's revision. */
int regclient_health(struct http_client *c, long long *revision, long *status,
		     struct vs_error *err);

/* ---- the node manager ------------------------------------------- */

/* PUT /v1/nodes/NODE with info ({"cpus", "memory", "labels", "images",
 * "version", "url"}; "url": the node manager's transfer API base, e.g.
 * "http://10.0.0.2:7481", absent when it has none). *heartbeat: the seconds between status reports
 * the registry asks for, 0 when it named none in 1..3600. */
int regclient_node_register(struct http_client *c, const char *node, json_t *info,
			    unsigned *heartbeat, long *status, struct vs_error *err);

/* GET /v1/nodes/NODE/assignments?index=INDEX&wait=WAITs, a long-poll when
 * wait_secs > 0. *resp: the answer ({"index", "slivers"}); *next_index: the
 * index to poll with next (the X-Vslice-Index header, else the answer's
 * "index", else -1). */
int regclient_assignments(struct http_client *c, const char *node, long long index, long wait_secs,
			  json_t **resp, long long *next_index, long *status, struct vs_error *err);

/* POST /v1/nodes/NODE/status with {"slivers": slivers}. */
int regclient_node_status(struct http_client *c, const char *node, json_t *slivers, long *status,
			  struct vs_error *err);

/* PUT /v1/slices/SLICE/slivers/NODE/log?offset=OFFSET: len bytes of buf.
 * On a 409 (the offset is not the stored size), *have (when not NULL) is
 * the size the registry holds, from its answer's "size" (-1 otherwise). */
int regclient_log_upload(struct http_client *c, const char *slice, const char *node,
			 uint64_t offset, const void *buf, size_t len, long long *have,
			 long *status, struct vs_error *err);

/* PUT /v1/slices/SLICE/slivers/NODE/results/REL: the bytes of fd from its
 * offset to EOF (streamed), declared with their sha256 (64 hex digits) and
 * mode. rel: the path in the slice without its leading '/'. */
int regclient_result_upload(struct http_client *c, const char *slice, const char *node,
			    const char *rel, int fd, const char *sha256, unsigned mode,
			    long *status, struct vs_error *err);

/* POST /v1/slices/SLICE/slivers/NODE/results with {"files": files,
 * "missing": missing} (an array of absolute paths). */
int regclient_results_commit(struct http_client *c, const char *slice, const char *node,
			     size_t files, json_t *missing, long *status, struct vs_error *err);

/* A node's report on a migration it is the source or target of
 * (docs/cluster-api.md, "Migrations"). node and phase are required. */
struct regclient_migration_report {
	const char *node;
	const char *phase;  /* "transferring", "restored", "aborted", "started" */
	long long bytes;    /* < 0: not sent */
	long long at_ms;    /* unix ms of the event; < 0: not sent (registry's clock) */
	const char *reason; /* NULL: not sent (an abort's reason) */
	json_t *stats;	    /* an object kept as given; NULL: not sent (borrowed) */
};

/* POST /v1/migrations/ID/report. 0: acknowledged, *resp the migration as
 * this node sees it. A refused transition is a 409 (-EEXIST) whose *resp
 * is still set ({"error", "phase"}: the phase the migration is in, e.g.
 * "committed" or "aborted"), so the caller rolls forward or back. *phase
 * (when not NULL, 16 bytes) is that phase from either answer, "" if none. */
int regclient_migration_report(struct http_client *c, const char *id,
			       const struct regclient_migration_report *rep, json_t **resp,
			       char phase[16], long *status, struct vs_error *err);

/* ---- slices ----------------------------------------------------- */

/* POST /v1/slices with a resolved manifest. *resp (when not NULL): the
 * slice object; also on a refusal when the registry explained it in JSON
 * (422's {"errors": [...]}). */
int regclient_slice_create(struct http_client *c, json_t *manifest, json_t **resp, long *status,
			   struct vs_error *err);

/* GET /v1/slices/SLICE; with index >= 0 and wait_secs > 0 a long-poll that
 * answers once the registry's revision passed index (or the wait is over).
 * *new_index (when not NULL): the X-Vslice-Index header, or -1. */
int regclient_slice_get(struct http_client *c, const char *slice, long long index, long wait_secs,
			json_t **resp, long long *new_index, long *status, struct vs_error *err);

/* GET /v1/slices: {"slices": [...]}. */
int regclient_slice_list(struct http_client *c, json_t **resp, long *status, struct vs_error *err);

/* DELETE /v1/slices/SLICE. */
int regclient_slice_delete(struct http_client *c, const char *slice, long *status,
			   struct vs_error *err);

/* POST /v1/slices/SLICE/renew with {"lifetime": lifetime} ("14d"). */
int regclient_slice_renew(struct http_client *c, const char *slice, const char *lifetime,
			  json_t **resp, long *status, struct vs_error *err);

/* GET /v1/slices/SLICE/slivers/NODE/log?offset=OFFSET into fd. *log_size
 * (when not NULL): the whole log's size (X-Vslice-Log-Size), -1 when not
 * given. */
int regclient_log_get(struct http_client *c, const char *slice, const char *node, long long offset,
		      int fd, long long *log_size, long *status, struct vs_error *err);

/* GET /v1/slices/SLICE/slivers/NODE/results: {"complete", "files", "missing"}. */
int regclient_results_list(struct http_client *c, const char *slice, const char *node,
			   json_t **resp, long *status, struct vs_error *err);

/* GET /v1/slices/SLICE/slivers/NODE/results/REL into fd (rel: without its
 * leading '/'). sha256 (when not NULL): the X-Vslice-Sha256 header the
 * registry sent ("" when none); the caller checks it against the bytes. */
int regclient_result_get(struct http_client *c, const char *slice, const char *node,
			 const char *rel, int fd, char sha256[VS_SHA256_HEX], long *status,
			 struct vs_error *err);

/* ---- migrations (users and admins; node tokens may get theirs) --- */

/* POST /v1/slices/SLICE/migrations with {"to", "from", "mode"}; to and
 * from NULL: the registry picks the target / the slice's only sliver;
 * mode NULL: "cold". *resp (when not NULL): the migration object, also the
 * {"error"} answer of a refusal. */
int regclient_migration_create(struct http_client *c, const char *slice, const char *to,
			       const char *from, const char *mode, json_t **resp, long *status,
			       struct vs_error *err);

/* GET /v1/migrations/ID; with index >= 0 and wait_secs > 0 a long-poll
 * that answers once the registry's revision passed index (or the wait is
 * over). *new_index (when not NULL): the X-Vslice-Index header, or -1. */
int regclient_migration_get(struct http_client *c, const char *id, long long index, long wait_secs,
			    json_t **resp, long long *new_index, long *status,
			    struct vs_error *err);

/* GET /v1/migrations (slice NULL) or /v1/migrations?slice=SLICE:
 * {"migrations": [...]}, newest first. */
int regclient_migration_list(struct http_client *c, const char *slice, json_t **resp, long *status,
			     struct vs_error *err);

/* ---- tickets (docs/cluster.md, "Remote verbs and tickets") ------- */

/* POST /v1/slices/SLICE/tickets with {"verb": verb, "node": node} (node
 * NULL: the slice's only sliver). A user's (its own slice) or an admin's.
 * *resp: {"ticket": "vtk_...", "node", "url" (the node's API), "verb",
 * "slice", "expires" (ISO 8601 UTC), "ttl" (s)}. 429 (EIO): too many
 * tickets open; 409 (EEXIST): no sliver on node, several and no node, or a
 * node without an API URL. */
int regclient_ticket_create(struct http_client *c, const char *slice, const char *node,
			    const char *verb, json_t **resp, long *status, struct vs_error *err);

/* POST /v1/tickets/redeem with {"ticket": ticket}, a node's token: *resp
 * {"user", "slice", "node", "verb"}, and the ticket is used. 403 (EACCES)
 * "ticket refused" for any reason. */
int regclient_ticket_redeem(struct http_client *c, const char *ticket, json_t **resp, long *status,
			    struct vs_error *err);

/* ---- nodes, tokens, users (users and admins) -------------------- */

/* GET /v1/nodes: {"nodes": [...]}. */
int regclient_nodes_list(struct http_client *c, json_t **resp, long *status, struct vs_error *err);

/* POST /v1/nodes/NODE/drain (drain) or .../undrain: the node object. */
int regclient_node_drain(struct http_client *c, const char *node, bool drain, json_t **resp,
			 long *status, struct vs_error *err);

/* POST /v1/nodes/NODE/reset: {"name", "revoked": N}. */
int regclient_node_reset(struct http_client *c, const char *node, json_t **resp, long *status,
			 struct vs_error *err);

/* A token: with user, POST /v1/users/USER/tokens (role and node must be
 * NULL); else POST /v1/tokens with {"role": role} and, for a node token
 * bound to one name, "node". *resp: {"token", ...}. */
int regclient_token_create(struct http_client *c, const char *user, const char *role,
			   const char *node, json_t **resp, long *status, struct vs_error *err);

/* POST /v1/users with {"name": name}: {"name", "token"}. */
int regclient_user_create(struct http_client *c, const char *name, json_t **resp, long *status,
			  struct vs_error *err);

#endif
