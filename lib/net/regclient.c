/*
 * regclient.c - the registry's /v1 API as typed calls (regclient.h).
 *
 * Each function builds its path from escaped parts (path_of), sends the
 * request through http.h and picks out the fields its callers need. No
 * other file in vslice spells a /v1/ path to send: a new endpoint is a new
 * function here, so the escaping rule (every name one percent-encoded
 * segment) holds for all of them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vslice/regclient.h"

/* "/v1/" + the parts, each a name escaped as one segment; a part given
 * as RAW(s) is appended as it is (a literal segment or a query). */
#define SEG(s)	(0), (s)
#define PATH(s) (1), (s)
#define RAW(s)	(2), (s)
static char *path_of(int n, ...)
{
	va_list ap;
	va_start(ap, n);
	char *p = vs_xstrdup("/v1");
	for (int i = 0; i < n; i++) {
		int kind = va_arg(ap, int);
		const char *s = va_arg(ap, const char *);
		cleanup_free char *e = kind == 2 ? vs_xstrdup(s) : http_escape(s, kind == 1);
		char *next = vs_xasprintf("%s%s%s", p, kind == 2 ? "" : "/", e);
		free(p);
		p = next;
	}
	va_end(ap);
	return p;
}

/* A JSON request whose answer the caller may want; an error answer's JSON
 * is kept only with keep_error. */
static int call_keep(struct http_client *c, const char *method, const char *path, json_t *body,
		     json_t **resp, bool keep_error, long *status, struct vs_error *err)
{
	long st = 0;
	json_t *r = NULL;
	int rc = http_json(c, method, path, body, 0, &st, resp ? &r : NULL, NULL, err);
	if (status)
		*status = st;
	if (rc < 0 && !keep_error) {
		json_decref(r);
		r = NULL;
	}
	if (resp)
		*resp = r;
	return rc;
}

static int call(struct http_client *c, const char *method, const char *path, json_t *body,
		json_t **resp, long *status, struct vs_error *err)
{
	return call_keep(c, method, path, body, resp, false, status, err);
}

static bool name_ok(const char *what, const char *name, struct vs_error *err)
{
	if (name && *name)
		return true;
	vs_error_set(err, EINVAL, "registry call: empty %s name", what);
	return false;
}

#define NEED(what, name)                                                                           \
	do {                                                                                       \
		if (!name_ok(what, name, err))                                                     \
			return -EINVAL;                                                            \
	} while (0)

int regclient_health(struct http_client *c, long long *revision, long *status, struct vs_error *err)
{
	if (revision)
		*revision = -1;
	json_auto_t *resp = NULL;
	int r = call(c, "GET", "/v1/health", NULL, &resp, status, err);
	if (r < 0)
		return r;
	json_t *rev = json_object_get(resp, "revision");
	if (revision && json_is_integer(rev))
		*revision = json_integer_value(rev);
	return 0;
}

int regclient_node_register(struct http_client *c, const char *node, json_t *info,
			    unsigned *heartbeat, long *status, struct vs_error *err)
{
	if (heartbeat)
		*heartbeat = 0;
	NEED("node", node);
	cleanup_free char *path = path_of(2, RAW("/nodes"), SEG(node));
	json_auto_t *resp = NULL;
	int r = call(c, "PUT", path, info, &resp, status, err);
	if (r < 0)
		return r;
	json_t *hb = json_object_get(resp, "heartbeat");
	if (heartbeat && json_is_integer(hb) && json_integer_value(hb) > 0 &&
	    json_integer_value(hb) <= 3600)
		*heartbeat = (unsigned)json_integer_value(hb);
	return 0;
}

int regclient_assignments(struct http_client *c, const char *node, long long index, long wait_secs,
			  json_t **resp, long long *next_index, long *status, struct vs_error *err)
{
	*resp = NULL;
	if (next_index)
		*next_index = -1;
	NEED("node", node);
	char q[96];
	snprintf(q, sizeof(q), "/assignments?index=%lld&wait=%lds", index < 0 ? 0 : index,
		 wait_secs > 0 ? wait_secs : 0);
	cleanup_free char *path = path_of(3, RAW("/nodes"), SEG(node), RAW(q));
	long st = 0;
	long long hdr = -1;
	json_t *j = NULL;
	int r = http_json(c, "GET", path, NULL, wait_secs, &st, &j, &hdr, err);
	if (status)
		*status = st;
	if (r < 0) {
		json_decref(j);
		return r;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		return vs_error_set(err, EPROTO, "GET %s: the answer is not a JSON object", path);
	}
	json_t *bi = json_object_get(j, "index");
	if (next_index)
		*next_index = hdr >= 0 ? hdr : json_is_integer(bi) ? json_integer_value(bi) : -1;
	*resp = j;
	return 0;
}

int regclient_node_status(struct http_client *c, const char *node, json_t *slivers, long *status,
			  struct vs_error *err)
{
	NEED("node", node);
	cleanup_free char *path = path_of(3, RAW("/nodes"), SEG(node), RAW("/status"));
	json_auto_t *body = json_pack("{s:O}", "slivers", slivers);
	if (!body)
		return vs_error_set(err, EINVAL, "POST %s: slivers is not JSON", path);
	return call(c, "POST", path, body, NULL, status, err);
}

int regclient_log_upload(struct http_client *c, const char *slice, const char *node,
			 uint64_t offset, const void *buf, size_t len, long long *have,
			 long *status, struct vs_error *err)
{
	if (have)
		*have = -1;
	NEED("slice", slice);
	NEED("node", node);
	char q[64];
	snprintf(q, sizeof(q), "/log?offset=%llu", (unsigned long long)offset);
	cleanup_free char *path =
	    path_of(5, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node), RAW(q));
	long st = 0;
	json_auto_t *resp = NULL;
	int r = http_put_buf_resp(c, path, buf, len, NULL, &st, &resp, err);
	if (status)
		*status = st;
	json_t *size = json_object_get(resp, "size");
	if (r < 0 && st == 409 && have && json_is_integer(size) && json_integer_value(size) >= 0)
		*have = json_integer_value(size);
	return r;
}

static bool sha_hex_ok(const char *s)
{
	if (!s || strlen(s) != VS_SHA256_HEX - 1)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

int regclient_result_upload(struct http_client *c, const char *slice, const char *node,
			    const char *rel, int fd, const char *sha256, unsigned mode,
			    long *status, struct vs_error *err)
{
	NEED("slice", slice);
	NEED("node", node);
	NEED("result path", rel);
	if (!sha_hex_ok(sha256))
		return vs_error_set(err, EINVAL, "result %s: sha256 is not 64 lowercase hex digits",
				    rel);
	cleanup_free char *path = path_of(6, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node),
					  RAW("/results"), PATH(rel));
	char h_sha[128], h_mode[64];
	snprintf(h_sha, sizeof(h_sha), "X-Vslice-Sha256: %s", sha256);
	snprintf(h_mode, sizeof(h_mode), "X-Vslice-Mode: %04o", mode & 07777);
	const char *headers[] = {h_sha, h_mode, NULL};
	return http_put_fd(c, path, fd, headers, status, err);
}

int regclient_results_commit(struct http_client *c, const char *slice, const char *node,
			     size_t files, json_t *missing, long *status, struct vs_error *err)
{
	NEED("slice", slice);
	NEED("node", node);
	cleanup_free char *path =
	    path_of(5, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node), RAW("/results"));
	json_auto_t *none = missing ? NULL : json_array();
	json_auto_t *body = json_pack("{s:I, s:O}", "files", (json_int_t)files, "missing",
				      missing ? missing : none);
	if (!body)
		return vs_error_set(err, EINVAL, "POST %s: missing is not JSON", path);
	return call(c, "POST", path, body, NULL, status, err);
}

/* GET COLLECTION/NAME (a slice, a migration); index >= 0 and wait_secs > 0:
 * a long-poll until the registry's revision passes index (*new_index the
 * one the answer was built at). */
static int get_object(struct http_client *c, const char *kind, const char *collection,
		      const char *name, long long index, long wait_secs, json_t **resp,
		      long long *new_index, long *status, struct vs_error *err)
{
	*resp = NULL;
	if (new_index)
		*new_index = -1;
	NEED(kind, name);
	bool poll = index >= 0 && wait_secs > 0;
	char q[96] = "";
	if (poll)
		snprintf(q, sizeof(q), "?index=%lld&wait=%lds", index, wait_secs);
	cleanup_free char *path = path_of(3, RAW(collection), SEG(name), RAW(q));
	long st = 0;
	json_t *j = NULL;
	int r = http_json(c, "GET", path, NULL, poll ? wait_secs : 0, &st, &j, new_index, err);
	if (status)
		*status = st;
	if (r < 0) {
		json_decref(j);
		return r;
	}
	*resp = j;
	return 0;
}

int regclient_slice_create(struct http_client *c, json_t *manifest, json_t **resp, long *status,
			   struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	return call_keep(c, "POST", "/v1/slices", manifest, resp, true, status, err);
}

int regclient_slice_get(struct http_client *c, const char *slice, long long index, long wait_secs,
			json_t **resp, long long *new_index, long *status, struct vs_error *err)
{
	return get_object(c, "slice", "/slices", slice, index, wait_secs, resp, new_index, status,
			  err);
}

int regclient_slice_list(struct http_client *c, json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	return call(c, "GET", "/v1/slices", NULL, resp, status, err);
}

int regclient_slice_delete(struct http_client *c, const char *slice, long *status,
			   struct vs_error *err)
{
	NEED("slice", slice);
	cleanup_free char *path = path_of(2, RAW("/slices"), SEG(slice));
	return call(c, "DELETE", path, NULL, NULL, status, err);
}

int regclient_slice_renew(struct http_client *c, const char *slice, const char *lifetime,
			  json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("slice", slice);
	if (!lifetime || !*lifetime)
		return vs_error_set(err, EINVAL, "renew %s: empty lifetime", slice);
	cleanup_free char *path = path_of(3, RAW("/slices"), SEG(slice), RAW("/renew"));
	json_auto_t *body = json_pack("{s:s}", "lifetime", lifetime);
	if (!body)
		return vs_error_set(err, EINVAL, "renew %s: the lifetime is not UTF-8", slice);
	return call(c, "POST", path, body, resp, status, err);
}

int regclient_log_get(struct http_client *c, const char *slice, const char *node, long long offset,
		      int fd, long long *log_size, long *status, struct vs_error *err)
{
	if (log_size)
		*log_size = -1;
	NEED("slice", slice);
	NEED("node", node);
	char q[64];
	snprintf(q, sizeof(q), "/log?offset=%lld", offset < 0 ? 0 : offset);
	cleanup_free char *path =
	    path_of(5, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node), RAW(q));
	char size[32];
	int r = http_get_fd(c, path, fd, "X-Vslice-Log-Size", size, sizeof(size), status, err);
	if (r < 0)
		return r;
	char *end;
	errno = 0;
	long long n = strtoll(size, &end, 10);
	if (log_size && size[0] && !*end && !errno && n >= 0)
		*log_size = n;
	return 0;
}

int regclient_results_list(struct http_client *c, const char *slice, const char *node,
			   json_t **resp, long *status, struct vs_error *err)
{
	*resp = NULL;
	NEED("slice", slice);
	NEED("node", node);
	cleanup_free char *path =
	    path_of(5, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node), RAW("/results"));
	return call(c, "GET", path, NULL, resp, status, err);
}

int regclient_result_get(struct http_client *c, const char *slice, const char *node,
			 const char *rel, int fd, char sha256[VS_SHA256_HEX], long *status,
			 struct vs_error *err)
{
	if (sha256)
		sha256[0] = '\0';
	NEED("slice", slice);
	NEED("node", node);
	NEED("result path", rel);
	cleanup_free char *path = path_of(6, RAW("/slices"), SEG(slice), RAW("/slivers"), SEG(node),
					  RAW("/results"), PATH(rel));
	return http_get_fd(c, path, fd, sha256 ? "X-Vslice-Sha256" : NULL, sha256,
			   sha256 ? VS_SHA256_HEX : 0, status, err);
}

int regclient_nodes_list(struct http_client *c, json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	return call(c, "GET", "/v1/nodes", NULL, resp, status, err);
}

int regclient_node_drain(struct http_client *c, const char *node, bool drain, json_t **resp,
			 long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("node", node);
	cleanup_free char *path =
	    path_of(3, RAW("/nodes"), SEG(node), RAW(drain ? "/drain" : "/undrain"));
	return call(c, "POST", path, NULL, resp, status, err);
}

int regclient_node_reset(struct http_client *c, const char *node, json_t **resp, long *status,
			 struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("node", node);
	cleanup_free char *path = path_of(3, RAW("/nodes"), SEG(node), RAW("/reset"));
	return call(c, "POST", path, NULL, resp, status, err);
}

int regclient_token_create(struct http_client *c, const char *user, const char *role,
			   const char *node, json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	if (user) {
		NEED("user", user);
		if (role || node)
			return vs_error_set(err, EINVAL,
					    "token for user %s: a user token has no role or node",
					    user);
		cleanup_free char *path = path_of(3, RAW("/users"), SEG(user), RAW("/tokens"));
		json_auto_t *body = json_object();
		return call(c, "POST", path, body, resp, status, err);
	}
	if (!role || !*role)
		return vs_error_set(err, EINVAL, "token: no role (node or admin)");
	json_auto_t *body = json_pack("{s:s}", "role", role);
	if (body && node)
		json_object_set_new(body, "node", json_string(node));
	if (!body || (node && !json_string_value(json_object_get(body, "node"))))
		return vs_error_set(err, EINVAL, "token: role or node is not UTF-8");
	return call(c, "POST", "/v1/tokens", body, resp, status, err);
}

int regclient_user_create(struct http_client *c, const char *name, json_t **resp, long *status,
			  struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("user", name);
	json_auto_t *body = json_pack("{s:s}", "name", name);
	if (!body)
		return vs_error_set(err, EINVAL, "user %s: the name is not UTF-8", name);
	return call(c, "POST", "/v1/users", body, resp, status, err);
}

int regclient_migration_create(struct http_client *c, const char *slice, const char *to,
			       const char *from, const char *mode, json_t **resp, long *status,
			       struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("slice", slice);
	cleanup_free char *path = path_of(3, RAW("/slices"), SEG(slice), RAW("/migrations"));
	json_auto_t *body = json_pack("{s:s}", "mode", mode ? mode : "cold");
	if (body && to)
		json_object_set_new(body, "to", json_string(to));
	if (body && from)
		json_object_set_new(body, "from", json_string(from));
	if (!body || (to && !json_object_get(body, "to")) ||
	    (from && !json_object_get(body, "from")))
		return vs_error_set(err, EINVAL, "migrate %s: a node name or the mode is not UTF-8",
				    slice);
	return call_keep(c, "POST", path, body, resp, true, status, err);
}

int regclient_migration_get(struct http_client *c, const char *id, long long index, long wait_secs,
			    json_t **resp, long long *new_index, long *status, struct vs_error *err)
{
	return get_object(c, "migration", "/migrations", id, index, wait_secs, resp, new_index,
			  status, err);
}

int regclient_migration_list(struct http_client *c, const char *slice, json_t **resp, long *status,
			     struct vs_error *err)
{
	*resp = NULL;
	cleanup_free char *q = NULL;
	if (slice) {
		NEED("slice", slice);
		cleanup_free char *e = http_escape(slice, 0);
		q = vs_xasprintf("?slice=%s", e);
	}
	cleanup_free char *path = path_of(2, RAW("/migrations"), RAW(q ? q : ""));
	return call(c, "GET", path, NULL, resp, status, err);
}

int regclient_migration_report(struct http_client *c, const char *id,
			       const struct regclient_migration_report *rep, json_t **resp,
			       char phase[16], long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	if (phase)
		phase[0] = '\0';
	NEED("migration", id);
	NEED("node", rep->node);
	if (!rep->phase || !*rep->phase)
		return vs_error_set(err, EINVAL, "migration %s: report without a phase", id);
	cleanup_free char *path = path_of(3, RAW("/migrations"), SEG(id), RAW("/report"));
	json_auto_t *body = json_pack("{s:s, s:s}", "node", rep->node, "phase", rep->phase);
	if (body && rep->bytes >= 0)
		json_object_set_new(body, "bytes", json_integer(rep->bytes));
	if (body && rep->at_ms >= 0)
		json_object_set_new(body, "at_ms", json_integer(rep->at_ms));
	if (body && rep->reason)
		json_object_set_new(body, "reason", json_string(rep->reason));
	if (body && rep->stats)
		json_object_set(body, "stats", rep->stats);
	if (!body || (rep->reason && !json_object_get(body, "reason")))
		return vs_error_set(err, EINVAL, "migration %s: report: a field is not UTF-8", id);
	json_t *r = NULL;
	int rc = call_keep(c, "POST", path, body, &r, true, status, err);
	const char *ph = json_string_value(json_object_get(r, "phase"));
	if (phase && ph)
		snprintf(phase, 16, "%s", ph);
	if (resp)
		*resp = r;
	else
		json_decref(r);
	return rc;
}

int regclient_ticket_create(struct http_client *c, const char *slice, const char *node,
			    const char *verb, json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("slice", slice);
	NEED("verb", verb);
	cleanup_free char *path = path_of(3, RAW("/slices"), SEG(slice), RAW("/tickets"));
	json_auto_t *body = json_pack("{s:s}", "verb", verb);
	if (body && node)
		json_object_set_new(body, "node", json_string(node));
	if (!body || (node && !json_string_value(json_object_get(body, "node"))))
		return vs_error_set(err, EINVAL, "ticket for %s: the verb or node is not UTF-8",
				    slice);
	return call(c, "POST", path, body, resp, status, err);
}

int regclient_ticket_redeem(struct http_client *c, const char *ticket, json_t **resp, long *status,
			    struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("ticket", ticket);
	json_auto_t *body = json_pack("{s:s}", "ticket", ticket);
	if (!body)
		return vs_error_set(err, EINVAL, "redeem: the ticket is not UTF-8");
	return call(c, "POST", "/v1/tickets/redeem", body, resp, status, err);
}

/* ---- images (issue 14; docs/cluster-api.md, "Images") ------------ */

int regclient_image_upload(struct http_client *c, const char *name, int fd, uint64_t size,
			   bool replace, bool relative_symlinks, json_t **resp, long *status,
			   struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("image", name);
	char q[64];
	snprintf(q, sizeof(q), "?replace=%d&relative_symlinks=%d", replace ? 1 : 0,
		 relative_symlinks ? 1 : 0);
	cleanup_free char *path = path_of(3, RAW("/images"), SEG(name), RAW(q));
	char h_size[64];
	snprintf(h_size, sizeof(h_size), "X-Vslice-Size: %llu", (unsigned long long)size);
	const char *headers[] = {h_size, NULL};
	return http_put_stream(c, path, fd, headers, NULL, status, resp, err);
}

int regclient_image_upload_check(struct http_client *c, const char *name, uint64_t size,
				 bool replace, long *status, struct vs_error *err)
{
	NEED("image", name);
	char q[64];
	snprintf(q, sizeof(q), "?check=1&replace=%d", replace ? 1 : 0);
	cleanup_free char *path = path_of(3, RAW("/images"), SEG(name), RAW(q));
	char h_size[64];
	snprintf(h_size, sizeof(h_size), "X-Vslice-Size: %llu", (unsigned long long)size);
	const char *headers[] = {h_size, NULL};
	return http_put_buf(c, path, "", 0, headers, status, err);
}

int regclient_image_list(struct http_client *c, json_t **resp, long *status, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	return call(c, "GET", "/v1/images", NULL, resp, status, err);
}

int regclient_image_get(struct http_client *c, const char *name, json_t **resp, long *status,
			struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	NEED("image", name);
	cleanup_free char *path = path_of(2, RAW("/images"), SEG(name));
	return call(c, "GET", path, NULL, resp, status, err);
}

int regclient_image_rm(struct http_client *c, const char *name, long *status, struct vs_error *err)
{
	NEED("image", name);
	cleanup_free char *path = path_of(2, RAW("/images"), SEG(name));
	return call(c, "DELETE", path, NULL, NULL, status, err);
}

int regclient_image_blob_get(struct http_client *c, const char *sha256, int fd, long *status,
			     struct vs_error *err)
{
	if (!sha_hex_ok(sha256))
		return vs_error_set(err, EINVAL,
				    "image blob: sha256 is not 64 lowercase hex digits");
	cleanup_free char *path = vs_xasprintf("/v1/images/sha256:%s", sha256);
	return http_get_fd(c, path, fd, NULL, NULL, 0, status, err);
}
