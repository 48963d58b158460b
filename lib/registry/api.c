/*
 * api.c - the registry's endpoints (docs/cluster-api.md), one function per
 * request kind, each a short transaction under reg->lock: it routes,
 * checks the caller's role and the request's JSON, calls the store (store.h,
 * where every SQL statement lives) and answers in JSON.
 *
 * Handlers fill a struct reg_answer; server.c sends it (or, for a long-poll
 * whose revision has not moved, suspends the connection and calls the
 * handler again later). Errors are one line naming the object.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "registry_int.h"
#include "vslice/manifest.h"
#include "vslice/netcfg.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define RESULT_FILE_MAX (1ull << 30)

/* The request's path, split: seg[0..nseg) ("v1", "slices", NAME, ...); rest
 * is everything after "results/" in a result file path. */
struct route {
	char *seg[8];
	size_t nseg;
	const char *rest;
	char *buf;
};

static void route_split(const char *url, struct route *rt)
{
	memset(rt, 0, sizeof(*rt));
	rt->buf = vs_xstrdup(url);
	char *p = rt->buf;
	while (*p == '/')
		p++;
	while (*p && rt->nseg < VS_ARRAY_SIZE(rt->seg)) {
		rt->seg[rt->nseg++] = p;
		char *slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
		if (rt->nseg == 6 && strcmp(rt->seg[1], "slices") == 0 &&
		    strcmp(rt->seg[5], "results") == 0) {
			rt->rest = p;
			break;
		}
	}
}

static bool seg_is(const struct route *rt, size_t i, const char *s)
{
	return i < rt->nseg && strcmp(rt->seg[i], s) == 0;
}

void api_answer_json(struct reg_answer *a, unsigned status, json_t *j)
{
	a->status = status;
	a->body = json_dumps(j, JSON_COMPACT);
	if (!a->body)
		abort();
	a->len = strlen(a->body);
	a->content_type = "application/json";
	json_decref(j);
}

static void answer_empty(struct reg_answer *a, unsigned status)
{
	a->status = status;
	a->body = NULL;
	a->len = 0;
}

void api_answer_header(struct reg_answer *a, const char *name, char *value)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(a->headers); i++) {
		if (!a->headers[i][0]) {
			a->headers[i][0] = vs_xstrdup(name);
			a->headers[i][1] = value;
			return;
		}
	}
	free(value);
}

void api_answer_index(struct reg_request *req, struct reg_answer *a)
{
	api_answer_header(a, "X-Vslice-Index", vs_xasprintf("%lld", req->reg->revision));
}

void api_db_fail(struct reg_answer *a, struct vs_error *err)
{
	api_error(a, err->code == EBUSY ? 503 : 500, "%s", err->msg);
}

static const char *arg(struct reg_request *req, const char *key)
{
	return reg_query(req, key);
}

static bool parse_ll(const char *s, long long *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*end || errno)
		return false;
	*out = v;
	return true;
}

/* Parse the JSON body (must be an object); on failure a holds 400. */
json_t *api_body_object(struct reg_request *req, struct reg_answer *a, bool empty_ok)
{
	if (req->len == 0 && empty_ok)
		return json_object();
	json_error_t je;
	json_t *j = json_loadb(req->body ? req->body : "", req->len, 0, &je);
	if (!j) {
		api_error(a, 400, "%s %s: request body: line %d column %d: %s", req->method,
			  req->url, je.line, je.column, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		api_error(a, 400, "%s %s: request body: expected a JSON object", req->method,
			  req->url);
		return NULL;
	}
	return j;
}

/* ?index=N&wait=D: makes the answer a long-poll. false: a holds 400. */
bool api_long_poll_args(struct reg_request *req, struct reg_answer *a)
{
	const char *idx = arg(req, "index"), *wait = arg(req, "wait");
	long long index;
	if (!idx)
		return true;
	if (!parse_ll(idx, &index)) {
		api_error(a, 400, "%s %s: index: \"%s\" is not a revision", req->method, req->url,
			  idx);
		return false;
	}
	uint64_t secs = REG_WAIT_DEFAULT;
	struct vs_error err;
	if (wait && vs_parse_duration(wait, &secs, &err) < 0) {
		api_error(a, 400, "%s %s: wait: %s", req->method, req->url, err.msg);
		return false;
	}
	if (secs > REG_WAIT_MAX)
		secs = REG_WAIT_MAX;
	if (!req->suspended && req->wait_index < 0)
		req->deadline = reg_now_ms() + (long long)secs * 1000;
	req->wait_index = index;
	return true;
}

bool api_need_role(struct reg_request *req, struct reg_answer *a, bool admin, bool user, bool node)
{
	bool ok = (admin && req->role == REGISTRY_ROLE_ADMIN) ||
		  (user && req->role == REGISTRY_ROLE_USER) ||
		  (node && req->role == REGISTRY_ROLE_NODE);
	if (!ok)
		api_error(a, 403, "%s %s: not allowed for a %s token", req->method, req->url,
			  registry_role_name(req->role));
	return ok;
}

/* A node token may only name the node it is bound to. */
static bool node_self(struct reg_request *req, struct reg_answer *a, const char *node)
{
	if (req->role == REGISTRY_ROLE_ADMIN)
		return true;
	if (req->role == REGISTRY_ROLE_NODE && req->node && strcmp(req->node, node) == 0)
		return true;
	api_error(a, 403, "node %s: token is %s", node,
		  req->role != REGISTRY_ROLE_NODE ? "not a node token"
		  : req->node			  ? "bound to another node"
						  : "not bound to a node yet (register first)");
	return false;
}

bool api_check_slice_name(struct reg_answer *a, const char *s)
{
	if (vs_name_valid(s))
		return true;
	char pb[80];
	api_error(a, 400, "slice \"%s\": invalid name (expected [a-z][a-z0-9_-]{0,62})",
		  vs_printable(s, pb, sizeof(pb)));
	return false;
}

bool api_check_node_name(struct reg_answer *a, const char *s)
{
	if (registry_node_name_valid(s))
		return true;
	char pb[80];
	api_error(a, 400, "node \"%s\": invalid name (expected [A-Za-z0-9][A-Za-z0-9._-]{0,62})",
		  vs_printable(s, pb, sizeof(pb)));
	return false;
}

/* Stored JSON text as a value (null if it does not parse). */
json_t *api_text_json(const char *text)
{
	json_t *j = json_loads(text ? text : "", 0, NULL);
	return j ? j : json_null();
}

/* ---- slices: reading ---- */

static bool sliver_final(const char *state)
{
	return strcmp(state, "exited") == 0 || strcmp(state, "failed") == 0;
}

/* only_node: that node's sliver alone (what a node token may see). */
static json_t *slivers_json(struct registry *reg, const char *slice, const char *only_node,
			    long long now, const char **slice_state)
{
	json_t *arr = json_array();
	struct vs_error err;
	struct store_sliver *v = NULL;
	size_t n = 0, reported = 0, ended = 0, ok = 0;
	if (store_slivers_of(reg, slice, only_node, &v, &n, &err) < 0)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		const struct store_sliver *sv = &v[i];
		const char *state = sv->state;
		if (strcmp(state, "pending") != 0)
			reported++;
		if (sliver_final(state)) {
			ended++;
			if (strcmp(state, "exited") == 0 && sv->exit_code == 0)
				ok++;
		} else if (!reg_node_ready(reg, sv->node, now)) {
			state = "lost";
		}
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:s, s:s, s:I}", "node",
				   sv->node, "state", state, "exit_code", (json_int_t)sv->exit_code,
				   "reason", sv->reason, "started", (json_int_t)sv->started,
				   "finished", (json_int_t)sv->finished, "restarts",
				   (json_int_t)sv->restarts, "message", sv->message, "results",
				   sv->results, "log_size", (json_int_t)sv->log_size));
		if (sv->address[0])
			json_object_set_new(json_array_get(arr, json_array_size(arr) - 1),
					    "address", json_string(sv->address));
	}
	store_slivers_free(v, n);
	if (reported == 0)
		*slice_state = "pending";
	else if (ended < n)
		*slice_state = "running";
	else if (ok == n)
		*slice_state = "succeeded";
	else
		*slice_state = "failed";
	return arr;
}

/* The names of the nodes that hold a sliver of slice, sorted: every view
 * of the slice has them (a node tells its sliver who its peers are; their
 * states stay hidden from it). */
static json_t *slice_nodes_json(struct registry *reg, const char *slice)
{
	json_t *arr = json_array();
	struct vs_error err;
	struct store_sliver *v = NULL;
	size_t n = 0;
	if (store_slivers_of(reg, slice, NULL, &v, &n, &err) < 0)
		return arr;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_string(v[i].node));
	store_slivers_free(v, n);
	return arr;
}

/* The slice object, or NULL when there is no such slice. only_node: show
 * that node's sliver only (a node token's view). Expects reg->lock. */
static json_t *slice_json(struct registry *reg, const char *name, bool with_manifest,
			  const char *only_node)
{
	struct vs_error err;
	struct store_slice sl;
	if (store_slice_get(reg, name, with_manifest, &sl, &err) < 0)
		return NULL;
	const char *state = "pending";
	json_t *slivers = slivers_json(reg, name, only_node, reg_now(), &state);
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I}", "name", name, "owner", sl.owner,
			      "created", (json_int_t)sl.created, "expires", (json_int_t)sl.expires,
			      "state", state, "revision", (json_int_t)reg->revision);
	if (with_manifest)
		json_object_set_new(j, "manifest", api_text_json(sl.manifest));
	json_object_set_new(j, "slivers", slivers);
	json_object_set_new(j, "nodes", slice_nodes_json(reg, name));
	store_slice_clear(&sl);
	return j;
}

/* May req see/touch slice? (admin: all; user: its own; node: slices with
 * a sliver on its node). 404 / 403 in a otherwise. Expects reg->lock. */
static bool slice_access(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	struct vs_error err;
	cleanup_free char *owner = NULL;
	bool on_node;
	int r = store_slice_owner(req->reg, slice, req->node, &owner, &on_node, &err);
	if (r == -ENOENT) {
		api_error(a, 404, "slice %s: not found", slice);
		return false;
	}
	if (r < 0) {
		api_db_fail(a, &err);
		return false;
	}
	/* A migration's target reads the slice (its manifest) before its
	 * sliver row moves there (api_migrations.c). */
	bool ok = req->role == REGISTRY_ROLE_ADMIN ||
		  (req->role == REGISTRY_ROLE_USER && req->user && strcmp(owner, req->user) == 0) ||
		  (req->role == REGISTRY_ROLE_NODE &&
		   (on_node || api_migration_target_of(req->reg, slice, req->node)));
	if (!ok)
		api_error(a, 403, "slice %s: not yours", slice);
	return ok;
}

/* Sliver (slice, node) exists and req may touch it; write: only its node
 * (or admin) may change it. Expects reg->lock. */
static bool sliver_access(struct reg_request *req, struct reg_answer *a, const char *slice,
			  const char *node, bool write)
{
	if (write && !node_self(req, a, node))
		return false;
	if (req->role == REGISTRY_ROLE_NODE && (!req->node || strcmp(req->node, node) != 0)) {
		api_error(a, 403, "sliver %s/%s: not on this token's node", slice, node);
		return false;
	}
	if (!slice_access(req, a, slice))
		return false;
	struct vs_error err;
	int r = store_sliver_exists(req->reg, slice, node, &err);
	if (r < 0) {
		api_db_fail(a, &err);
		return false;
	}
	if (r == 0) {
		api_error(a, 404, "sliver %s/%s: slice %s has no sliver on node %s", slice, node,
			  slice, node);
		return false;
	}
	return true;
}

/* ---- admin ---- */

static void h_tokens(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	const char *role = json_string_value(json_object_get(b, "role"));
	enum registry_role r = !role			    ? REGISTRY_ROLE_NONE
			       : strcmp(role, "node") == 0  ? REGISTRY_ROLE_NODE
			       : strcmp(role, "admin") == 0 ? REGISTRY_ROLE_ADMIN
							    : REGISTRY_ROLE_NONE;
	if (r == REGISTRY_ROLE_NONE) {
		api_error(a, 400,
			  "token: .role must be \"node\" or \"admin\" (user tokens: POST "
			  "/v1/users/NAME/tokens)");
		return;
	}
	/* .node: a node token made for that name (re-enrolling a node after
	 * POST /v1/nodes/NAME/reset, or naming it in advance). */
	json_t *nv = json_object_get(b, "node");
	const char *node = json_string_value(nv);
	if (nv && r != REGISTRY_ROLE_NODE)
		return api_error(a, 400, "token: .node: only for a node token (.role \"node\")");
	if (nv && !node)
		return api_error(a, 400, "token: .node: expected a node name");
	if (node && !api_check_node_name(a, node))
		return;
	struct vs_error err;
	int held = node ? store_node_held(req->reg, node, &err) : 0;
	if (held < 0)
		return api_db_fail(a, &err);
	if (held)
		return api_error(a, 409,
				 "node %s: the name is held by another node token (free it "
				 "first: POST /v1/nodes/%s/reset)",
				 node, node);
	char t[REGISTRY_TOKEN_LEN + 1];
	if (registry_token_generate(r, t, &err) < 0 ||
	    store_token_add(req->reg, t, r, NULL, node, &err) < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 201,
			node ? json_pack("{s:s, s:s}", "token", t, "node", node)
			     : json_pack("{s:s}", "token", t));
}

static void h_users(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	const char *name = json_string_value(json_object_get(b, "name"));
	char pb[80];
	if (!name || !vs_name_valid(name)) {
		api_error(a, 400,
			  "user \"%s\": .name: invalid name (expected [a-z][a-z0-9_-]{0,62})",
			  name ? vs_printable(name, pb, sizeof(pb)) : "");
		return;
	}
	struct vs_error err;
	int exists = strcmp(name, "admin") == 0 ? 1 : store_user_exists(req->reg, name, &err);
	if (exists < 0)
		return api_db_fail(a, &err);
	if (exists) {
		api_error(a, 409, "user %s: already exists%s", name,
			  strcmp(name, "admin") == 0 ? " (reserved for admin tokens)" : "");
		return;
	}
	char t[REGISTRY_TOKEN_LEN + 1];
	if (registry_token_generate(REGISTRY_ROLE_USER, t, &err) < 0 ||
	    store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	if (store_user_add(req->reg, name, &err) < 0 ||
	    store_token_add(req->reg, t, REGISTRY_ROLE_USER, name, NULL, &err) < 0 ||
	    store_commit(req->reg, false, &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	api_answer_json(a, 201, json_pack("{s:s, s:s}", "name", name, "token", t));
}

static void h_user_token(struct reg_request *req, struct reg_answer *a, const char *user)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	if (!vs_name_valid(user)) {
		api_error(a, 400, "user \"%s\": invalid name", user);
		return;
	}
	struct vs_error err;
	int exists = store_user_exists(req->reg, user, &err);
	if (exists < 0)
		return api_db_fail(a, &err);
	if (!exists) {
		api_error(a, 404, "user %s: not found", user);
		return;
	}
	char t[REGISTRY_TOKEN_LEN + 1];
	if (registry_token_generate(REGISTRY_ROLE_USER, t, &err) < 0 ||
	    store_token_add(req->reg, t, REGISTRY_ROLE_USER, user, NULL, &err) < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 201, json_pack("{s:s}", "token", t));
}

/* ---- nodes ---- */

static const char *node_state(struct registry *reg, const char *name, bool drained, long long now)
{
	if (drained)
		return "drained";
	return reg_node_ready(reg, name, now) ? "ready" : "unknown";
}

static json_t *node_row_json(struct registry *reg, const struct store_node *n, long long now)
{
	json_t *j =
	    json_pack("{s:s, s:s, s:f, s:I, s:o, s:o, s:s, s:b, s:I, s:I, s:I, s:s*}", "name",
		      n->name, "state", node_state(reg, n->name, n->drained, now), "cpus", n->cpus,
		      "memory", (json_int_t)n->memory, "labels", api_text_json(n->labels), "images",
		      api_text_json(n->images), "version", n->version, "drained", n->drained,
		      "registered", (json_int_t)n->registered, "slivers", (json_int_t)n->slivers,
		      "last_seen", (json_int_t)reg_last_seen(reg, n->name), "url", n->url);
	if (j && n->overlay_local)
		json_object_set_new(j, "overlay",
				    json_pack("{s:s, s:I}", "local", n->overlay_local, "vni",
					      (json_int_t)n->overlay_vni));
	return j;
}

static json_t *node_json(struct registry *reg, const char *name)
{
	struct vs_error err;
	struct store_node n;
	if (store_node_get(reg, name, &n, &err) < 0)
		return NULL;
	json_t *j = node_row_json(reg, &n, reg_now());
	store_node_clear(&n);
	return j;
}

static void h_nodes_list(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, true, false))
		return;
	struct vs_error err;
	struct store_node *v;
	size_t n;
	if (store_nodes_list(req->reg, &v, &n, &err) < 0)
		return api_db_fail(a, &err);
	json_t *arr = json_array();
	long long now = reg_now();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, node_row_json(req->reg, &v[i], now));
	store_nodes_free(v, n);
	api_answer_json(a, 200, json_pack("{s:o}", "nodes", arr));
}

static void h_node_drain(struct reg_request *req, struct reg_answer *a, const char *node,
			 bool drain)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	struct vs_error err;
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	int r = store_node_set_drained(req->reg, node, drain, &err);
	if (r < 0) {
		store_rollback(req->reg);
		return r == -ENOENT ? api_error(a, 404, "node %s: not registered", node)
				    : api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 200, node_json(req->reg, node));
}

static bool strings_array(json_t *v)
{
	size_t i;
	json_t *e;
	if (!json_is_array(v))
		return false;
	json_array_foreach(v, i, e) if (!json_is_string(e)) return false;
	return true;
}

static bool strings_object(json_t *v)
{
	const char *k;
	json_t *e;
	if (!json_is_object(v))
		return false;
	json_object_foreach(v, k, e) if (!json_is_string(e)) return false;
	return true;
}

/* A node's transfer url: what a source connects to and sends a migration's
 * token to. http(s)://, printable ASCII without spaces, quotes or
 * backslashes, no userinfo, query or fragment; the node manager's own
 * --advertise check is the same. */
static bool transfer_url_valid(const char *u)
{
	if (!u)
		return false;
	size_t len = strlen(u);
	const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
			   : strncmp(u, "https://", 8) == 0 ? u + 8
							    : NULL;
	if (!rest || !*rest || len > 255)
		return false;
	for (const char *p = rest; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("\"'\\@?#<>`{}|^", *p))
			return false;
	return true;
}

/* A node's "overlay": {"local": its underlay IPv4 address, "vni": the
 * cluster's VXLAN id}. < 0: a holds the 400. */
static int overlay_valid(struct reg_answer *a, const char *node, json_t *o, const char **local,
			 long long *vni)
{
	json_t *l = json_object_get(o, "local"), *v = json_object_get(o, "vni");
	struct in_addr ia;
	if (!json_is_object(o))
		return api_error(a, 400, "node %s: .overlay: expected an object", node), -1;
	if (!json_is_string(l) || json_string_length(l) > 15 ||
	    inet_pton(AF_INET, json_string_value(l), &ia) != 1 || ia.s_addr == 0 ||
	    IN_MULTICAST(ntohl(ia.s_addr)) || ia.s_addr == INADDR_BROADCAST)
		return api_error(
			   a, 400,
			   "node %s: .overlay.local: expected the node's unicast IPv4 address",
			   node),
		       -1;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 16777215)
		return api_error(a, 400, "node %s: .overlay.vni: expected 1 to 16777215", node), -1;
	*local = json_string_value(l);
	*vni = json_integer_value(v);
	return 0;
}

static void h_node_register(struct reg_request *req, struct reg_answer *a, const char *node)
{
	if (!api_need_role(req, a, true, false, true))
		return;
	if (req->role == REGISTRY_ROLE_NODE && req->node && strcmp(req->node, node) != 0)
		return api_error(a, 403, "node %s: token is bound to node %s", node, req->node);
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	json_t *cpus = json_object_get(b, "cpus"), *mem = json_object_get(b, "memory");
	json_t *labels = json_object_get(b, "labels"), *images = json_object_get(b, "images");
	json_t *version = json_object_get(b, "version"), *url = json_object_get(b, "url");
	json_t *overlay = json_object_get(b, "overlay");
	if (!json_is_number(cpus) || json_number_value(cpus) < 0)
		return api_error(a, 400, "node %s: .cpus: expected a number >= 0", node);
	if (!json_is_integer(mem) || json_integer_value(mem) < 0)
		return api_error(a, 400, "node %s: .memory: expected bytes (an integer >= 0)",
				 node);
	if (labels && !strings_object(labels))
		return api_error(a, 400, "node %s: .labels: expected an object of strings", node);
	if (images && !strings_array(images))
		return api_error(a, 400, "node %s: .images: expected an array of strings", node);
	if (version && !json_is_string(version))
		return api_error(a, 400, "node %s: .version: expected a string", node);
	if (url && !json_is_null(url) && !transfer_url_valid(json_string_value(url)))
		return api_error(a, 400,
				 "node %s: .url: expected http://HOST:PORT or https://HOST:PORT "
				 "(the node manager's transfer API, up to 255 bytes)",
				 node);
	const char *ov_local = NULL;
	long long ov_vni = 0;
	if (overlay && !json_is_null(overlay) &&
	    overlay_valid(a, node, overlay, &ov_local, &ov_vni) < 0)
		return;
	cleanup_free char *lj =
	    labels ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : vs_xstrdup("{}");
	cleanup_free char *ij = images ? json_dumps(images, JSON_COMPACT) : vs_xstrdup("[]");
	struct vs_error err;
	/* A name held by a token stays with it: a fresh node token cannot take
	 * over a registered node (its slivers' manifests, states, results).
	 * Re-enrolling is an admin's act: POST /v1/nodes/NAME/reset. */
	if (req->role == REGISTRY_ROLE_NODE && !req->node) {
		int held = store_node_held(req->reg, node, &err);
		if (held < 0)
			return api_db_fail(a, &err);
		if (held)
			return api_error(a, 409,
					 "node %s: the name is held by another node token (an "
					 "admin frees it: slicectl node reset %s)",
					 node, node);
	}
	if (ov_local) {
		long long other;
		cleanup_free char *holder = NULL;
		if (store_overlay_vni_other(req->reg, node, ov_local, &other, &holder, &err) < 0)
			return api_db_fail(a, &err);
		if (holder)
			return api_error(
			    a, 409, "node %s: .overlay.local: %s is node %s's underlay address",
			    node, ov_local, holder);
		if (other && other != ov_vni)
			return api_error(
			    a, 409,
			    "node %s: .overlay.vni: %lld is not the cluster's VXLAN id "
			    "%lld (every node's --overlay-vni must be the same)",
			    node, ov_vni, other);
	}
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	struct store_node row = {
	    .name = (char *)node,
	    .cpus = json_number_value(cpus),
	    .memory = json_integer_value(mem),
	    .labels = lj,
	    .images = ij,
	    .version = (char *)(version ? json_string_value(version) : ""),
	    .url = (char *)json_string_value(url),
	    .overlay_local = (char *)ov_local,
	    .overlay_vni = ov_vni,
	};
	if (store_node_put(req->reg, &row, reg_now(), &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (req->role == REGISTRY_ROLE_NODE && !req->node &&
	    store_token_bind(req->reg, req->token, node, &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	reg_touch(req->reg, node, reg_now());
	api_answer_json(
	    a, 200,
	    json_pack("{s:s, s:I}", "name", node, "heartbeat", (json_int_t)req->reg->heartbeat));
}

/* 1: registered; 0: not (a holds 404 when what is set); < 0: a holds 500. */
static int node_registered(struct reg_request *req, struct reg_answer *a, const char *node,
			   const char *what)
{
	struct vs_error err;
	int r = store_node_exists(req->reg, node, &err);
	if (r < 0)
		api_db_fail(a, &err);
	else if (r == 0 && what)
		api_error(a, 404, "node %s: %s", node, what);
	return r;
}

/* Admin: revoke the tokens holding node, so that the next node token (or one
 * made with .node) can enroll under that name. The node's row and slivers
 * stay: a reinstalled machine picks them up. */
static void h_node_reset(struct reg_request *req, struct reg_answer *a, const char *node)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	struct vs_error err;
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	int n = store_node_release(req->reg, node, &err);
	if (n < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (n == 0 && node_registered(req, a, node, "not registered and no token holds it") <= 0)
		return store_rollback(req->reg);
	if (store_commit(req->reg, false, &err) < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 200, json_pack("{s:s, s:i}", "name", node, "revoked", n));
}

/* The addresses of slice's slivers as {"NODE": "ADDRESS"} into *out (NULL
 * if none). */
static int slice_addresses(struct registry *reg, const char *slice, json_t **out,
			   struct vs_error *err)
{
	*out = NULL;
	struct store_sliver *v;
	size_t n;
	if (store_slivers_of(reg, slice, NULL, &v, &n, err) < 0)
		return -err->code;
	for (size_t i = 0; i < n; i++) {
		if (!v[i].address[0])
			continue;
		if (!*out)
			*out = json_object();
		json_object_set_new(*out, v[i].node, json_string(v[i].address));
	}
	store_slivers_free(v, n);
	return 0;
}

/*
 * The overlay's part of a node's assignments (issue 13): each entry of a
 * bridged slice gets its sliver's "address" (a migration's target: the
 * address of the sliver it takes over, on the source) and the slice's
 * "addresses" (node -> address, for /etc/vslice/peers); a node with an
 * overlay gets *peers, every other node's bridged slivers as
 * [{"address", "node": its underlay address}] (netcfg_overlay_set_peers).
 */
static int overlay_assignments(struct registry *reg, const char *node, json_t *arr, json_t **peers,
			       struct vs_error *err)
{
	*peers = NULL;
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		const char *slice = json_string_value(json_object_get(e, "slice"));
		json_t *in = json_object_get(e, "migrate_in");
		const char *from =
		    json_is_object(in) ? json_string_value(json_object_get(in, "from")) : node;
		if (!slice || !from)
			continue;
		json_t *addrs;
		if (slice_addresses(reg, slice, &addrs, err) < 0)
			return -err->code;
		if (!addrs)
			continue;
		json_t *own = json_object_get(addrs, from);
		if (own)
			json_object_set(e, "address", own);
		json_object_set_new(e, "addresses", addrs);
	}
	struct store_node me;
	if (store_node_get(reg, node, &me, err) < 0)
		return -err->code;
	bool has = me.overlay_local != NULL;
	store_node_clear(&me);
	if (!has)
		return 0;
	struct store_overlay_peer *v;
	size_t n;
	if (store_overlay_peers(reg, node, &v, &n, err) < 0)
		return -err->code;
	*peers = json_array();
	for (size_t k = 0; k < n; k++)
		json_array_append_new(*peers, json_pack("{s:s, s:s}", "address", v[k].address,
							"node", v[k].underlay));
	free(v);
	return 0;
}

static void h_assignments(struct reg_request *req, struct reg_answer *a, const char *node)
{
	if (!node_self(req, a, node) || !api_long_poll_args(req, a))
		return;
	if (node_registered(req, a, node, "not registered") <= 0)
		return;
	struct vs_error err;
	struct store_assignment *v;
	size_t n;
	if (store_assignments(req->reg, node, &v, &n, &err) < 0)
		return api_db_fail(a, &err);
	/* Small entries: manifests (up to 24 MiB each) are fetched one by one
	 * with GET /v1/slices/NAME, only when a node has to create a sliver. */
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "slice", v[i].slice,
						     "manifest_sha256", v[i].manifest_sha256,
						     "expires", (json_int_t)v[i].expires));
	store_assignments_free(v, n);
	if (api_migration_assignments(req->reg, node, arr, &err) < 0) {
		json_decref(arr);
		return api_db_fail(a, &err);
	}
	json_t *peers = NULL;
	if (overlay_assignments(req->reg, node, arr, &peers, &err) < 0) {
		json_decref(arr);
		return api_db_fail(a, &err);
	}
	api_answer_index(req, a);
	json_t *j =
	    json_pack("{s:I, s:o}", "index", (json_int_t)req->reg->revision, "slivers", arr);
	if (j && peers)
		json_object_set_new(j, "peers", peers);
	api_answer_json(a, 200, j);
}

static const char *const sliver_states[] = {"creating", "running", "exited", "failed"};

static int status_one(struct reg_request *req, struct reg_answer *a, const char *node, size_t i,
		      json_t *st, bool *changed)
{
	const char *slice = json_string_value(json_object_get(st, "slice"));
	const char *state = json_string_value(json_object_get(st, "state"));
	if (!slice)
		return api_error(a, 400, "node %s: .slivers[%zu].slice: expected a string", node,
				 i),
		       -1;
	bool known = false;
	for (size_t k = 0; state && k < VS_ARRAY_SIZE(sliver_states); k++)
		known |= strcmp(state, sliver_states[k]) == 0;
	if (!known)
		return api_error(a, 400,
				 "node %s: .slivers[%zu].state: expected creating, running, exited "
				 "or failed",
				 node, i),
		       -1;
	json_t *code = json_object_get(st, "exit_code");
	const char *reason = json_string_value(json_object_get(st, "reason"));
	const char *msg = json_string_value(json_object_get(st, "message"));
	struct vs_error err;
	/* Slivers the registry no longer wants (slice deleted) are ignored:
	 * the node learns on its next poll. */
	const struct store_sliver report = {
	    .slice = (char *)slice,
	    .node = (char *)node,
	    .state = (char *)state,
	    .exit_code = json_is_integer(code) ? json_integer_value(code) : -1,
	    .reason = (char *)(reason ? reason : ""),
	    .started = json_integer_value(json_object_get(st, "started")),
	    .finished = json_integer_value(json_object_get(st, "finished")),
	    .restarts = json_integer_value(json_object_get(st, "restarts")),
	    .message = (char *)(msg ? msg : ""),
	};
	int r = store_sliver_report(req->reg, &report, &err);
	if (r < 0)
		return api_db_fail(a, &err), -1;
	if (r > 0)
		*changed = true;
	return 0;
}

static void h_status(struct reg_request *req, struct reg_answer *a, const char *node)
{
	if (!node_self(req, a, node))
		return;
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	if (node_registered(req, a, node, "not registered") <= 0)
		return;
	json_t *slivers = json_object_get(b, "slivers");
	if (slivers && !json_is_array(slivers))
		return api_error(a, 400, "node %s: .slivers: expected an array", node);
	struct vs_error err;
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	bool changed = false;
	size_t i;
	json_t *st;
	json_array_foreach(slivers, i, st)
	{
		if (!json_is_object(st)) {
			store_rollback(req->reg);
			return api_error(a, 400, "node %s: .slivers[%zu]: expected an object", node,
					 i);
		}
		if (status_one(req, a, node, i, st, &changed) < 0) {
			store_rollback(req->reg);
			return;
		}
	}
	long long now = reg_now();
	bool was_unknown = !reg_node_ready(req->reg, node, now);
	reg_touch(req->reg, node, now);
	for (size_t k = 0; k < req->reg->nseen; k++)
		if (strcmp(req->reg->seen[k].name, node) == 0 && req->reg->seen[k].unknown) {
			req->reg->seen[k].unknown = false;
			was_unknown = true;
		}
	if (store_commit(req->reg, changed || was_unknown, &err) < 0)
		return api_db_fail(a, &err);
	answer_empty(a, 204);
}

/* ---- slices ---- */

static void manifest_422(struct reg_answer *a, const struct manifest_errors *errs)
{
	json_t *list = json_array();
	for (size_t i = 0; i < errs->n; i++) {
		const struct manifest_error *e = &errs->v[i];
		json_t *o = json_pack("{s:s, s:s}", "path", e->path ? e->path : "", "message",
				      e->message ? e->message : "");
		if (e->line > 0) {
			json_object_set_new(o, "line", json_integer(e->line));
			json_object_set_new(o, "column", json_integer(e->column));
		}
		json_array_append_new(list, o);
	}
	size_t total = errs->n + errs->dropped;
	cleanup_free char *first = NULL;
	if (errs->n == 0)
		first = vs_xstrdup("manifest: invalid");
	else if (errs->v[0].line > 0)
		first = vs_xasprintf("manifest:%d:%d: %s", errs->v[0].line, errs->v[0].column,
				     errs->v[0].message);
	else
		first = vs_xasprintf("%s: %s", errs->v[0].path, errs->v[0].message);
	if (total > 1)
		api_error(a, 422, "%s (and %zu more error%s)", first, total - 1,
			  total == 2 ? "" : "s");
	else
		api_error(a, 422, "%s", first);
	json_t *j = json_loads(a->body, 0, NULL);
	free(a->body);
	a->body = NULL;
	json_object_set_new(j, "errors", list);
	api_answer_json(a, 422, j);
}

/* Submitted manifests are self-contained: a files[].source would make the
 * parser read from the registry's working directory. */
static bool refuse_sources(struct reg_answer *a, json_t *doc)
{
	json_t *files = json_object_get(doc, "files");
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f)
	{
		if (json_is_object(f) && json_object_get(f, "source")) {
			struct manifest_errors errs = {0};
			struct manifest_error e = {
			    .path = vs_xasprintf(".files[%zu].source", i),
			    .message = vs_xstrdup("not allowed in a submitted manifest (slicectl "
						  "inlines files)")};
			errs.v = &e;
			errs.n = 1;
			manifest_422(a, &errs);
			free(e.path);
			free(e.message);
			return false;
		}
	}
	json_t *policy = json_object_get(doc, "policy");
	const char *ps = json_string_value(policy);
	if (ps && strcmp(ps, "default") != 0 && strcmp(ps, "strict") != 0 &&
	    strcmp(ps, "unconfined") != 0) {
		char pb[128];
		struct manifest_errors errs = {0};
		struct manifest_error e = {
		    .path = vs_xstrdup(".policy"),
		    .message = vs_xasprintf("\"%s\" is not a built-in policy (default, strict, "
					    "unconfined); a policy file is not allowed in a "
					    "submitted manifest (slicectl inlines it as an object)",
					    vs_printable(ps, pb, sizeof(pb)))};
		errs.v = &e;
		errs.n = 1;
		manifest_422(a, &errs);
		free(e.path);
		free(e.message);
		return false;
	}
	return true;
}

/*
 * Every registered node with what its slivers already asked for, as the
 * scheduler sees them: the store's node cache, with each node's liveness.
 * Names, labels and images are borrowed from the cache (caller frees the
 * array only).
 */
int api_sched_nodes(struct registry *reg, struct sched_node **out, size_t *nout,
		    struct vs_error *err)
{
	const struct store_cached_node *c;
	size_t n;
	int r = store_node_cache_get(reg, &c, &n, err);
	if (r < 0)
		return r;
	struct sched_node *v = vs_xcalloc(n + 1, sizeof(*v));
	long long now = reg_now();
	for (size_t i = 0; i < n; i++) {
		long long seen = reg_last_seen(reg, c[i].name);
		v[i] = (struct sched_node){
		    .name = c[i].name,
		    .state = reg_seen_ready(reg, seen, now) ? SCHED_NODE_READY : SCHED_NODE_UNKNOWN,
		    .drained = c[i].drained,
		    .last_seen_ago = now - seen,
		    .cpu_millis = c[i].cpu_millis,
		    .memory_bytes = c[i].memory_bytes,
		    .labels = c[i].labels,
		    .images = c[i].images,
		    .has_url = c[i].has_url,
		    .nslivers = c[i].nslivers,
		    .cpu_used = c[i].cpu_used,
		    .memory_used = c[i].memory_used,
		};
	}
	*out = v;
	*nout = n;
	return 0;
}

static void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}

/* The cluster's overlay subnet: netcfg's default (NETCFG_OVERLAY_SUBNET,
 * 10.213.0.0/16), which every overlay node's bridge uses. */
static const uint32_t overlay_net = 0x0ad50000u;
static const unsigned overlay_prefix = 16;

/*
 * A slice with network "bridge" in a cluster with an overlay (a node
 * registered one): only nodes with an overlay may hold its slivers (the
 * others are hidden from the scheduler, as drained), each sliver gets a
 * cluster address (*bridged). -EAGAIN with err saying why when too few such
 * nodes are there. No node with an overlay: bridged slivers stay per-node.
 */
static int overlay_placement(struct registry *reg, const struct manifest *m,
			     struct sched_node *nodes, size_t n, bool *bridged,
			     struct vs_error *err)
{
	const struct store_cached_node *c;
	size_t nc;
	int r = store_node_cache_get(reg, &c, &nc, err);
	if (r < 0)
		return r;
	size_t with = 0;
	for (size_t i = 0; i < nc; i++)
		with += c[i].has_overlay;
	*bridged = with > 0;
	if (!with)
		return 0;
	for (size_t i = 0; i < n && i < nc; i++) {
		if (c[i].has_overlay)
			continue;
		for (char **p = m->node_names; p && *p; p++)
			if (!strcmp(*p, c[i].name))
				return vs_error_set(
				    err, EAGAIN,
				    "slice %s: network \"bridge\": node %s has no overlay "
				    "(vslice-nodemgr --overlay-local, --overlay-vni), so a "
				    "bridged sliver there could not reach the others",
				    m->name, c[i].name);
		nodes[i].drained = true;
	}
	size_t want = m->node_names ? 0 : m->node_count ? m->node_count : 1;
	if (want > with)
		return vs_error_set(
		    err, EAGAIN,
		    "slice %s: network \"bridge\" needs %zu nodes with an overlay "
		    "(vslice-nodemgr --overlay-local, --overlay-vni); %zu registered",
		    m->name, want, with);
	return 0;
}

static void h_slice_create(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, true, false))
		return;
	const char *text = req->body ? req->body : "";
	cleanup_json json_t *doc = json_loadb(text, req->len, 0, NULL);
	if (doc && !refuse_sources(a, doc))
		return;
	struct manifest_errors errs = {0};
	__attribute__((cleanup(manifest_freep))) struct manifest *m = NULL;
	/* The body is parsed outside the lock: it may be large. */
	pthread_mutex_unlock(&req->reg->lock);
	int r = manifest_parse(text, req->len, NULL, &m, &errs);
	pthread_mutex_lock(&req->reg->lock);
	if (r < 0) {
		manifest_422(a, &errs);
		manifest_errors_free(&errs);
		return;
	}
	manifest_errors_free(&errs);
	const char *owner = req->role == REGISTRY_ROLE_USER ? req->user : "admin";
	struct vs_error err;
	int exists = store_slice_exists(req->reg, m->name, &err);
	if (exists < 0)
		return api_db_fail(a, &err);
	if (exists)
		return api_error(a, 409, "slice %s: already exists", m->name);
	long long now = reg_now();
	long long expires = m->expires ? (long long)m->expires : now + (long long)m->lifetime_secs;
	if (expires <= now)
		return api_error(a, 422, ".expires: slice %s: already passed", m->name);
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	struct sched_node *nodes = NULL;
	size_t n = 0, npicked = 0;
	cleanup_free size_t *picked = NULL;
	r = api_sched_nodes(req->reg, &nodes, &n, &err);
	if (r >= 0)
		r = api_images_sched(req->reg, m->image, nodes, n, &err);
	bool bridged = false;
	if (r >= 0 && !strcmp(m->network, "bridge") &&
	    (r = overlay_placement(req->reg, m, nodes, n, &bridged, &err)) == -EAGAIN) {
		store_rollback(req->reg);
		free(nodes);
		return api_error(a, 503, "%s", err.msg);
	}
	if (r >= 0) {
		r = sched_place(m, nodes, n, &picked, &npicked, &err);
		if (r == -EAGAIN) {
			store_rollback(req->reg);
			free(nodes);
			return api_error(a, 503, "%s", err.msg);
		}
	}
	if (r >= 0) {
		cleanup_free const char **names = vs_xcalloc(npicked + 1, sizeof(*names));
		for (size_t i = 0; i < npicked; i++)
			names[i] = nodes[picked[i]].name;
		const struct store_slice row = {
		    .name = m->name,
		    .owner = (char *)owner,
		    .manifest = (char *)text,
		    .created = now,
		    .expires = expires,
		    .cpu_millis = m->cpu_millis,
		    .memory = m->memory_bytes,
		};
		r = store_slice_insert(req->reg, &row, names, npicked, &err);
		for (size_t i = 0; r >= 0 && bridged && i < npicked; i++) {
			char addr[16];
			r = store_sliver_alloc_address(req->reg, m->name, names[i], overlay_net,
						       overlay_prefix, addr, &err);
		}
	}
	free(nodes);
	if (r < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	/* The new slivers count on their nodes from now on (picked indexes the
	 * node cache, unchanged since api_sched_nodes: all of this holds reg->lock). */
	store_node_cache_add_usage(req->reg, picked, npicked, m->cpu_millis, m->memory_bytes);
	api_answer_json(a, 201, slice_json(req->reg, m->name, true, NULL));
}

static void h_slices_list(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, true, false) || !api_long_poll_args(req, a))
		return;
	struct vs_error err;
	char **names;
	size_t n;
	if (store_slice_names(req->reg,
			      req->role == REGISTRY_ROLE_ADMIN ? NULL
			      : req->user		       ? req->user
							       : "",
			      &names, &n, &err) < 0)
		return api_db_fail(a, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = slice_json(req->reg, names[i], false, NULL);
		if (o)
			json_array_append_new(arr, o);
	}
	store_names_free(names, n);
	api_answer_index(req, a);
	api_answer_json(a, 200, json_pack("{s:o}", "slices", arr));
}

static void h_slice_get(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	if (!slice_access(req, a, slice) || !api_long_poll_args(req, a))
		return;
	/* A node token sees the manifest of a slice it hosts (slice_access
	 * checked that) and its own sliver, never the other nodes'. */
	json_t *o =
	    slice_json(req->reg, slice, true, req->role == REGISTRY_ROLE_NODE ? req->node : NULL);
	if (!o)
		return api_error(a, 404, "slice %s: not found", slice);
	api_answer_index(req, a);
	api_answer_json(a, 200, o);
}

static void h_slice_delete(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	if (req->role == REGISTRY_ROLE_NODE)
		return api_error(a, 403, "slice %s: a node token cannot delete slices", slice);
	if (!slice_access(req, a, slice))
		return;
	struct vs_error err;
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	if (store_slice_delete(req->reg, slice, &err) < 0) {
		store_rollback(req->reg);
		return err.code == ENOENT ? api_error(a, 404, "%s", err.msg) : api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	answer_empty(a, 204);
}

static void h_slice_renew(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	if (req->role == REGISTRY_ROLE_NODE)
		return api_error(a, 403, "slice %s: a node token cannot renew slices", slice);
	if (!slice_access(req, a, slice))
		return;
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	const char *lt = json_string_value(json_object_get(b, "lifetime"));
	uint64_t secs;
	struct vs_error err;
	if (!lt)
		return api_error(a, 400, "slice %s: .lifetime: expected a duration like \"14d\"",
				 slice);
	if (vs_parse_duration(lt, &secs, &err) < 0 || secs == 0 || secs > 10ull * 365 * 86400)
		return api_error(a, 400,
				 "slice %s: .lifetime: \"%s\" is not a duration like \"14d\"",
				 slice, lt);
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	if (store_slice_renew(req->reg, slice, reg_now() + (long long)secs, &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 200, slice_json(req->reg, slice, true, NULL));
}

/* ---- logs and results ---- */

static void h_log_get(struct reg_request *req, struct reg_answer *a, const char *slice,
		      const char *node)
{
	if (!sliver_access(req, a, slice, node, false))
		return;
	long long off = 0;
	const char *o = arg(req, "offset");
	if (o && !parse_ll(o, &off))
		return api_error(a, 400, "log of sliver %s/%s: offset: \"%s\" is not a byte offset",
				 slice, node, o);
	long long size = store_sliver_log_size(req->reg, slice, node);
	if (size < 0)
		size = 0;
	/* Sent from the file (up to the size recorded now: a later append is
	 * the next read's), never copied into memory: a log is up to 16 MiB
	 * and a reader may be slow. */
	uint64_t want = off < size ? (uint64_t)(size - off) : 0;
	int fd = -1;
	if (want > 0) {
		cleanup_free char *p =
		    vs_xasprintf("%s/logs/%s/%s.log", req->reg->store.blob_dir, slice, node);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return api_error(a, 500, "log of sliver %s/%s: open %s: %s", slice, node, p,
					 strerror(errno));
	}
	a->status = 200;
	a->fd = fd;
	a->fd_offset = off;
	a->fd_len = want;
	a->fd_len_set = true;
	a->content_type = "text/plain; charset=utf-8";
	api_answer_header(a, "X-Vslice-Log-Size", vs_xasprintf("%lld", size));
}

static void h_results_get(struct reg_request *req, struct reg_answer *a, const char *slice,
			  const char *node)
{
	if (!sliver_access(req, a, slice, node, false))
		return;
	struct vs_error err;
	struct store_sliver v;
	int r = store_sliver_get(req->reg, slice, node, &v, &err);
	if (r == -ENOENT)
		return api_error(a, 404, "sliver %s/%s: not found", slice, node);
	if (r < 0)
		return api_db_fail(a, &err);
	struct store_result *files;
	size_t n;
	if (store_results_of(req->reg, slice, node, &files, &n, &err) < 0) {
		store_sliver_clear(&v);
		return api_db_fail(a, &err);
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:I}", "path", files[i].path,
						     "size", (json_int_t)files[i].size, "sha256",
						     files[i].sha256, "mode",
						     (json_int_t)files[i].mode));
	store_results_free(files, n);
	api_answer_json(a, 200,
			json_pack("{s:b, s:o, s:o}", "complete", strcmp(v.results, "complete") == 0,
				  "files", arr, "missing", api_text_json(v.missing)));
	store_sliver_clear(&v);
}

static void h_result_get(struct reg_request *req, struct reg_answer *a, const char *slice,
			 const char *node, const char *rest)
{
	if (!sliver_access(req, a, slice, node, false))
		return;
	cleanup_free char *path = vs_xasprintf("/%s", rest);
	struct vs_error err;
	char sha[65];
	int r = store_result_sha(req->reg, slice, node, path, sha, &err);
	if (r == -ENOENT)
		return api_error(a, 404, "result %s of sliver %s/%s: not found", path, slice, node);
	if (r < 0)
		return api_db_fail(a, &err);
	cleanup_free char *blob = vs_xasprintf("%s/blobs/%s", req->reg->store.blob_dir, sha);
	int fd = open(blob, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return api_error(a, 500, "result %s of sliver %s/%s: blob %s: %s", path, slice,
				 node, sha, strerror(errno));
	a->status = 200;
	a->fd = fd;
	a->content_type = "application/octet-stream";
	api_answer_header(a, "X-Vslice-Sha256", vs_xstrdup(sha));
}

static void h_results_commit(struct reg_request *req, struct reg_answer *a, const char *slice,
			     const char *node)
{
	if (!sliver_access(req, a, slice, node, true))
		return;
	cleanup_json json_t *b = api_body_object(req, a, true);
	if (!b)
		return;
	json_t *missing = json_object_get(b, "missing");
	if (missing && !strings_array(missing))
		return api_error(a, 400,
				 "results of sliver %s/%s: .missing: expected an array of "
				 "paths",
				 slice, node);
	cleanup_free char *mj = missing ? json_dumps(missing, JSON_COMPACT) : vs_xstrdup("[]");
	struct vs_error err;
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	if (store_sliver_results_done(req->reg, slice, node, mj, &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (store_commit(req->reg, true, &err) < 0)
		return api_db_fail(a, &err);
	answer_empty(a, 204);
}

/* ---- uploads (streamed; server.c feeds req->fd and req->sha) ---- */

static bool parse_sliver_route(struct reg_request *req, struct reg_answer *a, struct route *rt)
{
	route_split(req->url, rt);
	if (!api_check_slice_name(a, rt->seg[2]) || !api_check_node_name(a, rt->seg[4]))
		return false;
	req->slice = vs_xstrdup(rt->seg[2]);
	req->unode = vs_xstrdup(rt->seg[4]);
	return true;
}

static int open_tmp(struct reg_request *req, struct reg_answer *a)
{
	req->tmp_path = vs_xasprintf("%s/tmp/upload-XXXXXX", req->reg->store.blob_dir);
	req->fd = mkostemp(req->tmp_path, O_CLOEXEC);
	if (req->fd < 0) {
		api_error(a, 500, "upload to %s: %s: %s", req->url, req->tmp_path, strerror(errno));
		free(req->tmp_path);
		req->tmp_path = NULL;
		return -1;
	}
	sha256_init(&req->sha);
	return 0;
}

int api_upload_begin(struct reg_request *req, struct reg_answer *a)
{
	if (api_image_is_upload(req->method, req->url))
		return api_image_upload_begin(req, a);
	struct route rt;
	bool ok = parse_sliver_route(req, a, &rt);
	cleanup_free char *buf = rt.buf;
	if (!ok)
		return -1;
	pthread_mutex_lock(&req->reg->lock);
	ok = sliver_access(req, a, req->slice, req->unode, true);
	long long size = ok ? store_sliver_log_size(req->reg, req->slice, req->unode) : 0;
	if (ok && req->role == REGISTRY_ROLE_NODE)
		reg_touch(req->reg, req->node, reg_now()); /* an upload arriving: life */
	pthread_mutex_unlock(&req->reg->lock);
	if (!ok)
		return -1;
	const char *clen = reg_header(req, "Content-Length");
	long long cl = -1;
	if (clen && !parse_ll(clen, &cl))
		cl = -1;
	if (!rt.rest) {
		const char *o = arg(req, "offset");
		if (!o || !parse_ll(o, &req->offset)) {
			api_error(a, 400, "log of sliver %s/%s: offset: expected ?offset=BYTES",
				  req->slice, req->unode);
			return -1;
		}
		if (req->offset != size) {
			api_error(a, 409,
				  "log of sliver %s/%s: offset %lld, the log has %lld bytes",
				  req->slice, req->unode, req->offset, size);
			json_t *j = json_loads(a->body, 0, NULL);
			json_object_set_new(j, "size", json_integer(size));
			free(a->body);
			a->body = NULL;
			api_answer_json(a, 409, j);
			return -1;
		}
		req->upload = REG_UPLOAD_LOG;
		req->limit = REG_LOG_MAX - (unsigned long long)size;
	} else {
		cleanup_free char *path = vs_xasprintf("/%s", rt.rest);
		const char *why = manifest_check_slice_path(path);
		if (why) {
			api_error(a, 400, "result %s of sliver %s/%s: %s", path, req->slice,
				  req->unode, why);
			return -1;
		}
		const char *sha = reg_header(req, "X-Vslice-Sha256");
		if (!vs_sha256_hex_valid(sha)) {
			api_error(a, 400,
				  "result %s of sliver %s/%s: header X-Vslice-Sha256: expected 64 "
				  "lowercase hex digits",
				  path, req->slice, req->unode);
			return -1;
		}
		const char *mode = reg_header(req, "X-Vslice-Mode");
		unsigned long mv = 0644;
		if (mode) {
			char *end;
			errno = 0;
			mv = strtoul(mode, &end, 8);
			if (!*mode || *end || errno || mv > 07777) {
				api_error(a, 400,
					  "result %s of sliver %s/%s: header X-Vslice-Mode: \"%s\" "
					  "is not an octal mode",
					  path, req->slice, req->unode, mode);
				return -1;
			}
		}
		req->upath = steal_pointer(&path);
		req->want_sha = vs_xstrdup(sha);
		req->mode = (unsigned)mv;
		req->upload = REG_UPLOAD_RESULT;
		req->limit = RESULT_FILE_MAX;
	}
	if (cl >= 0 && (unsigned long long)cl > req->limit) {
		req->upload = REG_UPLOAD_NONE;
		if (req->upath)
			api_error(a, 413, "result %s of sliver %s/%s: larger than %llu bytes",
				  req->upath, req->slice, req->unode, RESULT_FILE_MAX);
		else
			api_error(a, 413, "log of sliver %s/%s: would exceed %u bytes", req->slice,
				  req->unode, REG_LOG_MAX);
		return -1;
	}
	if (open_tmp(req, a) < 0) {
		req->upload = REG_UPLOAD_NONE;
		return -1;
	}
	return 0;
}

static int copy_range(int from, int to, off_t to_off, unsigned long long len)
{
	char buf[65536];
	off_t in = 0;
	while (len > 0) {
		ssize_t r = pread(from, buf, len < sizeof(buf) ? len : sizeof(buf), in);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		for (ssize_t done = 0; done < r;) {
			ssize_t w = pwrite(to, buf + done, (size_t)(r - done), to_off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -errno;
			done += w;
			to_off += w;
		}
		in += r;
		len -= (unsigned long long)r;
	}
	return 0;
}

static void log_finish(struct reg_request *req, struct reg_answer *a)
{
	struct registry *reg = req->reg;
	struct vs_error err;
	cleanup_free char *dir = vs_xasprintf("%s/logs/%s", reg->store.blob_dir, req->slice);
	cleanup_free char *path = vs_xasprintf("%s/%s.log", dir, req->unode);
	pthread_mutex_lock(&reg->lock);
	long long size = store_sliver_log_size(reg, req->slice, req->unode);
	if (size < 0) {
		pthread_mutex_unlock(&reg->lock);
		return api_error(a, 404, "sliver %s/%s: gone (slice deleted)", req->slice,
				 req->unode);
	}
	if (size != req->offset) {
		pthread_mutex_unlock(&reg->lock);
		api_error(a, 409, "log of sliver %s/%s: offset %lld, the log has %lld bytes",
			  req->slice, req->unode, req->offset, size);
		json_t *j = json_loads(a->body, 0, NULL);
		json_object_set_new(j, "size", json_integer(size));
		free(a->body);
		a->body = NULL;
		return api_answer_json(a, 409, j);
	}
	int r = vs_mkdir_p(dir, 0700, &err);
	cleanup_close int fd = r < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || copy_range(req->fd, fd, (off_t)size, req->received) < 0 ||
	    ftruncate(fd, (off_t)(size + (long long)req->received)) < 0) {
		pthread_mutex_unlock(&reg->lock);
		return api_error(a, 500, "log of sliver %s/%s: write %s: %s", req->slice,
				 req->unode, path, strerror(errno));
	}
	if (store_sliver_set_log_size(reg, req->slice, req->unode, size + (long long)req->received,
				      &err) < 0) {
		pthread_mutex_unlock(&reg->lock);
		return api_db_fail(a, &err);
	}
	pthread_mutex_unlock(&reg->lock);
	answer_empty(a, 204);
}

static void result_finish(struct reg_request *req, struct reg_answer *a)
{
	struct registry *reg = req->reg;
	uint8_t digest[SHA256_DIGEST_SIZE];
	char hex[65];
	sha256_digest(&req->sha, sizeof(digest), digest);
	for (size_t i = 0; i < sizeof(digest); i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	if (strcmp(hex, req->want_sha) != 0)
		return api_error(a, 400,
				 "result %s of sliver %s/%s: sha256 mismatch: received %s, header "
				 "X-Vslice-Sha256 says %s",
				 req->upath, req->slice, req->unode, hex, req->want_sha);
	if (fsync(req->fd) < 0)
		return api_error(a, 500, "result %s of sliver %s/%s: fsync: %s", req->upath,
				 req->slice, req->unode, strerror(errno));
	cleanup_free char *blob = vs_xasprintf("%s/blobs/%s", reg->store.blob_dir, hex);
	struct vs_error err;
	pthread_mutex_lock(&reg->lock);
	if (rename(req->tmp_path, blob) < 0) {
		pthread_mutex_unlock(&reg->lock);
		return api_error(a, 500, "result %s of sliver %s/%s: store blob: %s", req->upath,
				 req->slice, req->unode, strerror(errno));
	}
	free(req->tmp_path);
	req->tmp_path = NULL;
	struct store_result row = {
	    .path = req->upath, .size = (long long)req->received, .mode = req->mode};
	memcpy(row.sha256, hex, sizeof(hex));
	int r = store_result_put(reg, req->slice, req->unode, &row, &err);
	pthread_mutex_unlock(&reg->lock);
	if (r == -ENOENT)
		return api_error(a, 404, "%s", err.msg);
	if (r < 0)
		return api_db_fail(a, &err);
	answer_empty(a, 204);
}

void api_upload_finish(struct reg_request *req, struct reg_answer *a)
{
	if (req->upload == REG_UPLOAD_IMAGE)
		return api_image_upload_finish(req, a);
	if (req->received > req->limit) {
		if (req->upload == REG_UPLOAD_LOG)
			return api_error(a, 413, "log of sliver %s/%s: would exceed %u bytes",
					 req->slice, req->unode, REG_LOG_MAX);
		return api_error(a, 413, "result %s of sliver %s/%s: larger than %llu bytes",
				 req->upath, req->slice, req->unode, RESULT_FILE_MAX);
	}
	if (req->too_big)
		return api_error(a, 500, "upload to %s: write %s failed", req->url, req->tmp_path);
	if (req->upload == REG_UPLOAD_LOG)
		log_finish(req, a);
	else
		result_finish(req, a);
}

/* ---- other ---- */

static void h_metrics(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, false, false))
		return;
	struct registry *reg = req->reg;
	struct vs_error err;
	long long now = reg_now();
	size_t nstate[3] = {0};
	struct store_node *nodes;
	size_t n;
	if (store_nodes_list(reg, &nodes, &n, &err) >= 0) {
		for (size_t i = 0; i < n; i++) {
			const char *st = node_state(reg, nodes[i].name, nodes[i].drained, now);
			nstate[st[0] == 'r' ? 0 : st[0] == 'u' ? 1 : 2]++;
		}
		store_nodes_free(nodes, n);
	}
	long long slices = store_slice_count(reg, &err);
	if (slices < 0)
		slices = 0;
	static const char *const states[] = {"pending", "creating", "running",
					     "exited",	"failed",   "lost"};
	size_t vstate[VS_ARRAY_SIZE(states)] = {0};
	struct store_sliver *slivers;
	if (store_sliver_states(reg, &slivers, &n, &err) >= 0) {
		for (size_t k = 0; k < n; k++) {
			const char *st = slivers[k].state;
			if (!sliver_final(st) && !reg_node_ready(reg, slivers[k].node, now))
				st = "lost";
			for (size_t i = 0; i < VS_ARRAY_SIZE(states); i++)
				if (strcmp(st, states[i]) == 0)
					vstate[i]++;
		}
		store_slivers_free(slivers, n);
	}
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		abort();
	fprintf(f, "# HELP vslice_nodes Registered nodes by state.\n# TYPE vslice_nodes gauge\n");
	fprintf(f,
		"vslice_nodes{state=\"ready\"} %zu\nvslice_nodes{state=\"unknown\"} %zu\n"
		"vslice_nodes{state=\"drained\"} %zu\n",
		nstate[0], nstate[1], nstate[2]);
	fprintf(f, "# HELP vslice_slices Slices.\n# TYPE vslice_slices gauge\nvslice_slices %lld\n",
		slices);
	fprintf(f, "# HELP vslice_slivers Slivers by state.\n# TYPE vslice_slivers gauge\n");
	for (size_t i = 0; i < VS_ARRAY_SIZE(states); i++)
		fprintf(f, "vslice_slivers{state=\"%s\"} %zu\n", states[i], vstate[i]);
	fprintf(f,
		"# HELP vslice_revision The global revision.\n# TYPE vslice_revision "
		"counter\nvslice_revision %lld\n",
		reg->revision);
	fprintf(f, "# HELP vslice_http_requests_total HTTP requests answered, by status "
		   "class.\n# TYPE vslice_http_requests_total counter\n");
	for (size_t i = 1; i < VS_ARRAY_SIZE(reg->requests); i++)
		fprintf(f, "vslice_http_requests_total{code=\"%zuxx\"} %llu\n", i,
			reg->requests[i]);
	fclose(f);
	a->status = 200;
	a->body = out;
	a->len = len;
	a->content_type = "text/plain; version=0.0.4";
}

static void dispatch(struct reg_request *req, struct reg_answer *a, struct route *rt)
{
	const char *m = req->method;
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
	bool put = strcmp(m, "PUT") == 0, del = strcmp(m, "DELETE") == 0;
	size_t n = rt->nseg;

	if (n == 1 && seg_is(rt, 0, "metrics") && get)
		return h_metrics(req, a);
	if (!seg_is(rt, 0, "v1"))
		return api_error(a, 404, "%s %s: no such endpoint", m, req->url);
	if (n == 2 && seg_is(rt, 1, "health") && get)
		return api_answer_json(
		    a, 200,
		    json_pack("{s:b, s:I}", "ok", 1, "revision", (json_int_t)req->reg->revision));
	if (n == 2 && seg_is(rt, 1, "tokens") && post)
		return h_tokens(req, a);
	if (seg_is(rt, 1, "users")) {
		if (n == 2 && post)
			return h_users(req, a);
		if (n == 4 && seg_is(rt, 3, "tokens") && post)
			return h_user_token(req, a, rt->seg[2]);
	}
	if (seg_is(rt, 1, "nodes")) {
		if (n == 2 && get)
			return h_nodes_list(req, a);
		if (n >= 3 && !api_check_node_name(a, rt->seg[2]))
			return;
		if (n == 3 && put)
			return h_node_register(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "reset"))
			return h_node_reset(req, a, rt->seg[2]);
		if (n == 4 && post && (seg_is(rt, 3, "drain") || seg_is(rt, 3, "undrain")))
			return h_node_drain(req, a, rt->seg[2], seg_is(rt, 3, "drain"));
		if (n == 4 && get && seg_is(rt, 3, "assignments"))
			return h_assignments(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "status"))
			return h_status(req, a, rt->seg[2]);
	}
	if (seg_is(rt, 1, "slices")) {
		if (n == 2 && post)
			return h_slice_create(req, a);
		if (n == 2 && get)
			return h_slices_list(req, a);
		if (n >= 3 && !api_check_slice_name(a, rt->seg[2]))
			return;
		if (n == 3 && get)
			return h_slice_get(req, a, rt->seg[2]);
		if (n == 3 && del)
			return h_slice_delete(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "renew"))
			return h_slice_renew(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "migrations"))
			return api_migration_create(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "tickets"))
			return api_ticket_create(req, a, rt->seg[2]);
		if (n >= 5 && seg_is(rt, 3, "slivers")) {
			if (!api_check_node_name(a, rt->seg[4]))
				return;
			if (n == 6 && get && seg_is(rt, 5, "log"))
				return h_log_get(req, a, rt->seg[2], rt->seg[4]);
			if (n == 6 && seg_is(rt, 5, "results") && !rt->rest && get)
				return h_results_get(req, a, rt->seg[2], rt->seg[4]);
			if (n == 6 && seg_is(rt, 5, "results") && !rt->rest && post)
				return h_results_commit(req, a, rt->seg[2], rt->seg[4]);
			if (n == 6 && rt->rest && *rt->rest && get)
				return h_result_get(req, a, rt->seg[2], rt->seg[4], rt->rest);
		}
	}
	if (n == 3 && post && seg_is(rt, 1, "tickets") && seg_is(rt, 2, "redeem"))
		return api_ticket_redeem(req, a);
	if (seg_is(rt, 1, "migrations")) {
		if (n == 2 && get)
			return api_migrations_list(req, a);
		if (n == 3 && get)
			return api_migration_get(req, a, rt->seg[2]);
		if (n == 4 && post && seg_is(rt, 3, "report"))
			return api_migration_report(req, a, rt->seg[2]);
	}
	if (seg_is(rt, 1, "images"))
		return api_images_dispatch(req, a, m, rt->seg, n);
	(void)put;
	api_error(a, 404, "%s %s: no such endpoint", m, req->url);
}

void api_dispatch(struct reg_request *req, struct reg_answer *a)
{
	struct route rt;
	route_split(req->url, &rt);
	pthread_mutex_lock(&req->reg->lock);
	/* A request of a node's own token arriving is a sign of life (a node
	 * manager busy uploading a large result, whose status report is late,
	 * is not lost while its poll thread still asks for its assignments).
	 * A parked long-poll answered later is not: its deadline passing says
	 * nothing about the node, which may have died since it asked. */
	if (req->role == REGISTRY_ROLE_NODE && req->node && !req->polled)
		reg_touch(req->reg, req->node, reg_now());
	dispatch(req, a, &rt);
	req->answered_rev = req->reg->revision;
	pthread_mutex_unlock(&req->reg->lock);
	free(rt.buf);
}
