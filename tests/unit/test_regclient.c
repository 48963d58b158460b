/*
 * test_regclient.c - the typed registry client (lib/net/regclient.c)
 * against a scripted server (lib/net/httpd.c) on 127.0.0.1, port picked by
 * the kernel. The server records each request as it arrived (method, the
 * target still percent-encoded, body, the headers that matter) and answers
 * what the test scripted. Checked: every call's method, path and body as
 * docs/cluster-api.md has them; names with '/', '?', '#', '%', spaces and
 * UTF-8 staying one path segment (a result path keeping its '/'); the
 * fields the callers need picked out (heartbeat, next index, a 409's size,
 * the log size and sha256 headers); errors as errno plus the registry's own
 * {"error"} text; a refused connection; bad input refused before sending.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vslice/httpd.h"
#include "vslice/regclient.h"
#include "vslice/util.h"

/* ---- the scripted server ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* A request as it arrived. */
struct rec {
	unsigned count;
	char method[16], target[1024], body[4096], sha[128], mode[32], auth[128];
};

static struct {
	struct rec last;
	/* the next answer */
	unsigned status;
	char answer[4096];
	const char *hdr_name, *hdr_value;
	const char *content_type;
} s;

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

static void on_handle(struct httpd_request *req, struct httpd_answer *a)
{
	pthread_mutex_lock(&mu);
	struct rec *r = &s.last;
	r->count++;
	copy(r->method, sizeof(r->method), req->method);
	copy(r->target, sizeof(r->target), httpd_raw_url(req));
	copy(r->body, sizeof(r->body), req->body);
	copy(r->sha, sizeof(r->sha), httpd_header(req, "X-Vslice-Sha256"));
	copy(r->mode, sizeof(r->mode), httpd_header(req, "X-Vslice-Mode"));
	copy(r->auth, sizeof(r->auth), httpd_header(req, "Authorization"));
	a->status = s.status;
	a->body = vs_xstrdup(s.answer);
	a->len = strlen(s.answer);
	a->content_type = s.content_type ? s.content_type : "application/json";
	if (s.hdr_name)
		httpd_answer_header(a, s.hdr_name, s.hdr_value);
	pthread_mutex_unlock(&mu);
}

static const struct httpd_ops ops = {.handle = on_handle};

/* The next answer. */
static void script(unsigned status, const char *answer)
{
	pthread_mutex_lock(&mu);
	s.status = status;
	copy(s.answer, sizeof(s.answer), answer);
	s.hdr_name = s.hdr_value = NULL;
	s.content_type = NULL;
	pthread_mutex_unlock(&mu);
}

static void script_header(const char *name, const char *value)
{
	pthread_mutex_lock(&mu);
	s.hdr_name = name;
	s.hdr_value = value;
	pthread_mutex_unlock(&mu);
}

/* A copy of the last request: assertions run on it, never under mu (a
 * failing one jumps out of the test). */
static struct rec last(void)
{
	pthread_mutex_lock(&mu);
	struct rec r = s.last;
	pthread_mutex_unlock(&mu);
	return r;
}

static unsigned count(void)
{
	return last().count;
}

/* The last request was METHOD TARGET with body (NULL: none); bodies are
 * compared as JSON. */
static void expect(const char *method, const char *target, const char *body)
{
	struct rec r = last();
	assert_string_equal(r.method, method);
	assert_string_equal(r.target, target);
	if (!body) {
		assert_string_equal(r.body, "");
	} else {
		json_t *want = json_loads(body, 0, NULL), *got = json_loads(r.body, 0, NULL);
		assert_non_null(want);
		bool same = got && json_equal(want, got);
		json_decref(want);
		json_decref(got);
		if (!same)
			fail_msg("body: want %s, got %s", body, r.body);
	}
}

struct fx {
	struct httpd *srv;
	struct http_client c;
};

static int setup(void **state)
{
	struct fx *f = vs_xcalloc(1, sizeof(*f));
	struct httpd_config cfg = {
	    .name = "fake registry", .listen = "127.0.0.1:0", .body_max = 1 << 20, .ops = &ops};
	struct vs_error err;
	if (httpd_start(&cfg, &f->srv, &err) < 0)
		fail_msg("%s", err.msg);
	char base[64];
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", httpd_port(f->srv));
	if (http_client_init(&f->c, base, "vsn_secret", NULL, &err) < 0)
		fail_msg("%s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	http_client_free(&f->c);
	httpd_stop(f->srv);
	free(f);
	return 0;
}

/* A name with every byte that could leave its path segment. */
#define ODD	"n/1?x#y%41 \xc3\xa9"
#define ODD_ENC "n%2F1%3Fx%23y%2541%20%C3%A9"

/* ---- node manager calls ---- */

static void test_node_calls(void **state)
{
	struct fx *f = *state;
	struct http_client *c = &f->c;
	struct vs_error err;
	long status;

	script(200, "{\"name\": \"x\", \"heartbeat\": 7}");
	json_t *info = json_pack("{s:f, s:i}", "cpus", 2.0, "memory", 1024);
	unsigned hb;
	assert_int_equal(regclient_node_register(c, ODD, info, &hb, &status, &err), 0);
	json_decref(info);
	expect("PUT", "/v1/nodes/" ODD_ENC, "{\"cpus\": 2.0, \"memory\": 1024}");
	assert_int_equal(hb, 7);
	assert_int_equal(status, 200);
	assert_string_equal(last().auth, "Bearer vsn_secret");
	script(200, "{\"heartbeat\": 99999}"); /* out of range: none */
	assert_int_equal(regclient_node_register(c, "n1", NULL, &hb, NULL, &err), 0);
	assert_int_equal(hb, 0);

	/* Assignments: the header's index wins over the body's. */
	script(200, "{\"index\": 5, \"slivers\": []}");
	script_header("X-Vslice-Index", "9");
	json_t *resp;
	long long next;
	assert_int_equal(regclient_assignments(c, "n1", 4, 30, &resp, &next, &status, &err), 0);
	expect("GET", "/v1/nodes/n1/assignments?index=4&wait=30s", NULL);
	assert_int_equal(next, 9);
	assert_true(json_is_array(json_object_get(resp, "slivers")));
	json_decref(resp);
	script(200, "{\"index\": 5, \"slivers\": []}");
	assert_int_equal(regclient_assignments(c, "n1", 0, 0, &resp, &next, &status, &err), 0);
	expect("GET", "/v1/nodes/n1/assignments?index=0&wait=0s", NULL);
	assert_int_equal(next, 5);
	json_decref(resp);
	script(200, "[1]");
	assert_int_equal(regclient_assignments(c, "n1", 0, 0, &resp, &next, &status, &err),
			 -EPROTO);
	assert_null(resp);

	script(204, "");
	json_t *list = json_pack("[{s:s}]", "slice", "a");
	assert_int_equal(regclient_node_status(c, "n1", list, &status, &err), 0);
	json_decref(list);
	expect("POST", "/v1/nodes/n1/status", "{\"slivers\": [{\"slice\": \"a\"}]}");
	assert_int_equal(status, 204);
}

static void test_uploads(void **state)
{
	struct fx *f = *state;
	struct http_client *c = &f->c;
	struct vs_error err;
	long status;
	long long have;

	script(204, "");
	assert_int_equal(
	    regclient_log_upload(c, "web 1", ODD, 12, "hello", 5, &have, &status, &err), 0);
	struct rec r = last();
	assert_string_equal(r.method, "PUT");
	assert_string_equal(r.target, "/v1/slices/web%201/slivers/" ODD_ENC "/log?offset=12");
	assert_string_equal(r.body, "hello");
	assert_int_equal(have, -1);

	/* 409: the size the registry holds, from its JSON, not its words. */
	script(409, "{\"error\": \"log of sliver web/n1: offset 12, the log has 3 bytes\", "
		    "\"size\": 120}");
	assert_int_equal(regclient_log_upload(c, "web", "n1", 12, "x", 1, &have, &status, &err),
			 -EEXIST);
	assert_int_equal(status, 409);
	assert_int_equal(have, 120);
	assert_string_equal(err.msg, "log of sliver web/n1: offset 12, the log has 3 bytes");
	script(413, "{\"error\": \"log full\"}");
	assert_int_equal(regclient_log_upload(c, "web", "n1", 0, "x", 1, &have, &status, &err),
			 -EFBIG);
	assert_int_equal(have, -1);

	/* A result: its path keeps '/', everything else is escaped. */
	int fd = memfd_create("result", MFD_CLOEXEC);
	assert_int_equal(vs_write_all(fd, "result!", 7), 0);
	lseek(fd, 0, SEEK_SET);
	char sha[VS_SHA256_HEX];
	vs_sha256_buf("result!", 7, sha);
	script(204, "");
	assert_int_equal(regclient_result_upload(c, "web", "n1", "results/a b/%c?.txt", fd, sha,
						 0100644, &status, &err),
			 0);
	r = last();
	assert_string_equal(r.target,
			    "/v1/slices/web/slivers/n1/results/results/a%20b/%25c%3F.txt");
	assert_string_equal(r.body, "result!");
	assert_string_equal(r.sha, sha);
	assert_string_equal(r.mode, "0644");
	unsigned before = count();
	assert_int_equal(
	    regclient_result_upload(c, "web", "n1", "r", fd, "ABC", 0644, &status, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "sha256"));
	assert_int_equal(count(), before); /* refused before sending */
	close(fd);

	json_t *missing = json_pack("[s]", "/results/x");
	script(204, "");
	assert_int_equal(regclient_results_commit(c, "web", "n1", 3, missing, &status, &err), 0);
	json_decref(missing);
	expect("POST", "/v1/slices/web/slivers/n1/results",
	       "{\"files\": 3, \"missing\": [\"/results/x\"]}");
	assert_int_equal(regclient_results_commit(c, "web", "n1", 0, NULL, &status, &err), 0);
	expect("POST", "/v1/slices/web/slivers/n1/results", "{\"files\": 0, \"missing\": []}");
}

/* ---- slices ---- */

static void test_slices(void **state)
{
	struct fx *f = *state;
	struct http_client *c = &f->c;
	struct vs_error err;
	long status;
	json_t *resp;

	json_t *m = json_pack("{s:s}", "name", "web");
	script(201, "{\"name\": \"web\"}");
	assert_int_equal(regclient_slice_create(c, m, &resp, &status, &err), 0);
	expect("POST", "/v1/slices", "{\"name\": \"web\"}");
	assert_string_equal(json_string_value(json_object_get(resp, "name")), "web");
	json_decref(resp);
	/* 422: the explanation stays for the caller to print. */
	script(422, "{\"error\": \"invalid manifest\", \"errors\": [\".cpu: bad\"]}");
	assert_int_equal(regclient_slice_create(c, m, &resp, &status, &err), -EINVAL);
	assert_int_equal(status, 422);
	assert_string_equal(err.msg, "invalid manifest");
	assert_true(json_is_array(json_object_get(resp, "errors")));
	json_decref(resp);
	json_decref(m);

	long long idx;
	script(200, "{\"name\": \"web\"}");
	script_header("X-Vslice-Index", "17");
	assert_int_equal(regclient_slice_get(c, "web", -1, 0, &resp, &idx, &status, &err), 0);
	expect("GET", "/v1/slices/web", NULL);
	assert_int_equal(idx, 17);
	json_decref(resp);
	script(200, "{}");
	assert_int_equal(regclient_slice_get(c, "web", 16, 5, &resp, &idx, &status, &err), 0);
	expect("GET", "/v1/slices/web?index=16&wait=5s", NULL);
	json_decref(resp);
	script(404, "{\"error\": \"slice web: no such slice\"}");
	assert_int_equal(regclient_slice_get(c, "web", -1, 0, &resp, &idx, &status, &err), -ENOENT);
	assert_null(resp);
	assert_string_equal(err.msg, "slice web: no such slice");

	script(200, "{\"slices\": []}");
	assert_int_equal(regclient_slice_list(c, &resp, &status, &err), 0);
	expect("GET", "/v1/slices", NULL);
	json_decref(resp);
	script(204, "");
	assert_int_equal(regclient_slice_delete(c, "a?b", &status, &err), 0);
	expect("DELETE", "/v1/slices/a%3Fb", NULL);
	script(200, "{\"expires\": 5}");
	assert_int_equal(regclient_slice_renew(c, "web", "14d", &resp, &status, &err), 0);
	expect("POST", "/v1/slices/web/renew", "{\"lifetime\": \"14d\"}");
	json_decref(resp);

	/* Log download: bytes into the fd, the whole size from the header. */
	int fd = memfd_create("log", MFD_CLOEXEC);
	script(200, "tail");
	pthread_mutex_lock(&mu);
	s.content_type = "text/plain";
	pthread_mutex_unlock(&mu);
	script_header("X-Vslice-Log-Size", "104");
	long long size;
	assert_int_equal(regclient_log_get(c, "web", ODD, 100, fd, &size, &status, &err), 0);
	expect("GET", "/v1/slices/web/slivers/" ODD_ENC "/log?offset=100", NULL);
	assert_int_equal(size, 104);
	char got[16] = "";
	assert_int_equal(pread(fd, got, sizeof(got) - 1, 0), 4);
	assert_string_equal(got, "tail");
	close(fd);

	script(200, "{\"complete\": true, \"files\": []}");
	assert_int_equal(regclient_results_list(c, "web", "n1", &resp, &status, &err), 0);
	expect("GET", "/v1/slices/web/slivers/n1/results", NULL);
	assert_true(json_is_true(json_object_get(resp, "complete")));
	json_decref(resp);

	fd = memfd_create("result", MFD_CLOEXEC);
	script(200, "bytes");
	script_header("X-Vslice-Sha256", "ab12");
	char sha[VS_SHA256_HEX];
	assert_int_equal(
	    regclient_result_get(c, "web", "n1", "results/x y.txt", fd, sha, &status, &err), 0);
	expect("GET", "/v1/slices/web/slivers/n1/results/results/x%20y.txt", NULL);
	assert_string_equal(sha, "ab12");
	/* An error answer is not written into the fd. */
	script(404, "{\"error\": \"no such result\"}");
	assert_int_equal(regclient_result_get(c, "web", "n1", "r", fd, sha, &status, &err),
			 -ENOENT);
	assert_int_equal(lseek(fd, 0, SEEK_END), 5);
	close(fd);
}

/* ---- admin and the rest ---- */

static void test_admin(void **state)
{
	struct fx *f = *state;
	struct http_client *c = &f->c;
	struct vs_error err;
	long status;
	json_t *resp;

	script(200, "{\"nodes\": []}");
	assert_int_equal(regclient_nodes_list(c, &resp, &status, &err), 0);
	expect("GET", "/v1/nodes", NULL);
	json_decref(resp);
	script(200, "{\"state\": \"drained\"}");
	assert_int_equal(regclient_node_drain(c, "n1", true, &resp, &status, &err), 0);
	expect("POST", "/v1/nodes/n1/drain", NULL);
	json_decref(resp);
	script(200, "{}");
	assert_int_equal(regclient_node_drain(c, "n1", false, &resp, &status, &err), 0);
	expect("POST", "/v1/nodes/n1/undrain", NULL);
	json_decref(resp);
	script(200, "{\"name\": \"n1\", \"revoked\": 1}");
	assert_int_equal(regclient_node_reset(c, "n/1", &resp, &status, &err), 0);
	expect("POST", "/v1/nodes/n%2F1/reset", NULL);
	json_decref(resp);

	script(201, "{\"token\": \"vsn_x\"}");
	assert_int_equal(regclient_token_create(c, NULL, "node", "n1", &resp, &status, &err), 0);
	expect("POST", "/v1/tokens", "{\"role\": \"node\", \"node\": \"n1\"}");
	json_decref(resp);
	assert_int_equal(regclient_token_create(c, NULL, "admin", NULL, &resp, &status, &err), 0);
	expect("POST", "/v1/tokens", "{\"role\": \"admin\"}");
	json_decref(resp);
	assert_int_equal(regclient_token_create(c, "alice", NULL, NULL, &resp, &status, &err), 0);
	expect("POST", "/v1/users/alice/tokens", "{}");
	json_decref(resp);
	unsigned before = count();
	assert_int_equal(regclient_token_create(c, "alice", "node", NULL, &resp, &status, &err),
			 -EINVAL);
	assert_int_equal(regclient_token_create(c, NULL, NULL, NULL, &resp, &status, &err),
			 -EINVAL);
	assert_int_equal(count(), before);

	script(201, "{\"name\": \"bob\", \"token\": \"vsu_y\"}");
	assert_int_equal(regclient_user_create(c, "bob", &resp, &status, &err), 0);
	expect("POST", "/v1/users", "{\"name\": \"bob\"}");
	json_decref(resp);

	long long rev;
	script(200, "{\"ok\": true, \"revision\": 33}");
	assert_int_equal(regclient_health(c, &rev, &status, &err), 0);
	expect("GET", "/v1/health", NULL);
	assert_int_equal(rev, 33);
}

/* Status to errno, and the message: the registry's own, else one naming
 * the request; no answer at all: status 0. */
static void test_errors(void **state)
{
	struct fx *f = *state;
	struct http_client *c = &f->c;
	struct vs_error err;
	long status;
	json_t *resp;
	static const struct {
		unsigned status;
		int rc;
	} map[] = {{400, -EINVAL}, {401, -EACCES}, {403, -EACCES}, {404, -ENOENT},
		   {409, -EEXIST}, {413, -EFBIG},  {429, -EIO},	   {503, -EAGAIN}};
	for (size_t i = 0; i < VS_ARRAY_SIZE(map); i++) {
		script(map[i].status, "{\"error\": \"slice x: refused\"}");
		assert_int_equal(regclient_slice_list(c, &resp, &status, &err), map[i].rc);
		assert_int_equal(status, map[i].status);
		assert_null(resp);
		assert_string_equal(err.msg, "slice x: refused");
	}
	script(500, "oops");
	pthread_mutex_lock(&mu);
	s.content_type = "text/plain";
	pthread_mutex_unlock(&mu);
	assert_int_equal(regclient_slice_delete(c, "x", &status, &err), -EIO);
	char want[256];
	snprintf(want, sizeof(want), "registry %s: DELETE /v1/slices/x: HTTP 500", c->base);
	assert_string_equal(err.msg, want);

	/* Bad input: refused here, nothing sent. */
	unsigned before = count();
	assert_int_equal(regclient_slice_delete(c, "", &status, &err), -EINVAL);
	assert_string_equal(err.msg, "registry call: empty slice name");
	assert_int_equal(regclient_node_status(c, NULL, NULL, &status, &err), -EINVAL);
	assert_int_equal(count(), before);

	/* Nobody listening: a port held, bound but not listening, by us. */
	int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sin);
	assert_int_equal(bind(hold, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(hold, (struct sockaddr *)&sin, &len), 0);
	struct http_client dead;
	char base[64];
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", ntohs(sin.sin_port));
	assert_int_equal(http_client_init(&dead, base, NULL, NULL, &err), 0);
	assert_int_equal(regclient_health(&dead, NULL, &status, &err), -ECONNREFUSED);
	assert_int_equal(status, 0);
	http_client_free(&dead);
	close(hold);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_node_calls, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slices, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
