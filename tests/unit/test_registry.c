/*
 * test_registry.c - the cluster registry (lib/registry): the scheduler's
 * placements and the messages a user sees when placement fails, tokens,
 * the database (init refuses an existing db, tokens round-trip, expiry),
 * and the HTTP API end to end on 127.0.0.1 (port 0) with libcurl: users,
 * node registration, a long-poll that returns when a slice is submitted,
 * status, log append with the offset check, result upload with a sha256
 * mismatch, 401/403, and a clean stop while a long-poll waits.
 *
 * No root needed; the database lives in a mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vslice/manifest.h"
#include "vslice/registry.h"
#include "vslice/util.h"

#include <sqlite3.h>

#include "../../lib/registry/registry_int.h" /* limits.c's accounting, the store */

/* ---- scheduler ---- */

static struct manifest *parse(const char *json)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	int r = manifest_parse(json, strlen(json), NULL, &m, &e);
	if (r < 0)
		manifest_errors_print(&e, stderr, "test manifest");
	manifest_errors_free(&e);
	assert_int_equal(r, 0);
	return m;
}

#define GiB (1ull << 30)

struct fixture_nodes {
	struct sched_node n[5];
	json_t *eu, *us, *imgs;
};

static void nodes_init(struct fixture_nodes *f)
{
	f->eu = json_pack("{s:s}", "region", "eu");
	f->us = json_pack("{s:s}", "region", "us");
	f->imgs = json_pack("[s]", "debian");
	const char *names[] = {"a", "b", "c", "d", "e"};
	for (size_t i = 0; i < 5; i++) {
		f->n[i] = (struct sched_node){
		    .name = names[i],
		    .cpu_millis = 4000,
		    .memory_bytes = 8 * GiB,
		    .labels = i < 3 ? f->eu : f->us,
		    .images = i == 1 ? f->imgs : NULL,
		};
	}
}

static void nodes_free(struct fixture_nodes *f)
{
	json_decref(f->eu);
	json_decref(f->us);
	json_decref(f->imgs);
}

static void expect_fail(const char *json, struct fixture_nodes *f, const char *msg)
{
	struct manifest *m = parse(json);
	size_t *picked = NULL, n = 0;
	struct vs_error err = {0};
	int r = sched_place(m, f->n, 5, &picked, &n, &err);
	if (r != -EAGAIN || strcmp(err.msg, msg) != 0)
		fail_msg("expected \"%s\", got %d \"%s\"", msg, r, err.msg);
	assert_null(picked);
	manifest_free(m);
}

static char *place(const char *json, struct fixture_nodes *f)
{
	struct manifest *m = parse(json);
	size_t *picked = NULL, n = 0;
	struct vs_error err = {0};
	int r = sched_place(m, f->n, 5, &picked, &n, &err);
	if (r < 0)
		fail_msg("placement failed: %s", err.msg);
	char buf[64] = "";
	for (size_t i = 0; i < n; i++)
		strcat(buf, f->n[picked[i]].name);
	free(picked);
	manifest_free(m);
	return vs_xstrdup(buf);
}

#define M(nodes)                                                                                   \
	"{\"apiVersion\":\"vslice/v1\",\"slice\":\"t\"," nodes "\"run\":{\"command\":\"true\"}}"

/* An image the registry holds (issue 14): every ready node can take a
 * sliver of it, whatever its images list says; the others stay with the
 * nodes that list them. */
static void test_sched_registry_image(void **state)
{
	struct fixture_nodes f;
	nodes_init(&f);
	expect_fail(M("\"nodes\":{\"count\":3},\"image\":\"web\","), &f,
		    ".image: 3 slivers wanted, 0 ready nodes have image \"web\" and the registry "
		    "has none of that name (import it with: slicectl image import web SRC)");
	for (size_t i = 0; i < 5; i++)
		f.n[i].image_fetchable = true;
	cleanup_free char *three = place(M("\"nodes\":{\"count\":3},\"image\":\"web\","), &f);
	assert_string_equal(three, "abc");
	char buf[256];
	f.n[3].has_url = true;
	assert_null(sched_target_refusal(&f.n[3], false, "m1", "web", 0, 0, buf, sizeof(buf)));
	f.n[3].image_fetchable = false;
	assert_non_null(sched_target_refusal(&f.n[3], false, "m1", "web", 0, 0, buf, sizeof(buf)));
	assert_string_equal(buf, "node d lacks image web");
	nodes_free(&f);
}

static void test_sched_spread(void **state)
{
	struct fixture_nodes f;
	nodes_init(&f);
	/* Least requested fraction first, then fewer slivers, then name. */
	f.n[0].memory_used = 4 * GiB;
	f.n[2].nslivers = 1;
	cleanup_free char *one = place(M(""), &f);
	assert_string_equal(one, "b");
	cleanup_free char *three = place(M("\"nodes\":{\"count\":3},"), &f);
	assert_string_equal(three, "bde");
	cleanup_free char *eu =
	    place(M("\"nodes\":{\"count\":2,\"labels\":{\"region\":\"eu\"}},"), &f);
	assert_string_equal(eu, "bc");
	cleanup_free char *names = place(M("\"nodes\":{\"names\":[\"e\",\"a\"]},"), &f);
	assert_string_equal(names, "ea");
	/* Only b has the image. */
	cleanup_free char *img = place(M("\"image\":\"debian\","), &f);
	assert_string_equal(img, "b");
	nodes_free(&f);
}

static void test_sched_resources(void **state)
{
	struct fixture_nodes f;
	nodes_init(&f);
	for (size_t i = 0; i < 5; i++)
		f.n[i].memory_used = i == 3 ? 0 : 7 * GiB;
	cleanup_free char *p = place(M("\"resources\":{\"memory\":\"2G\"},"), &f);
	assert_string_equal(p, "d");
	expect_fail(M("\"nodes\":{\"count\":2},\"resources\":{\"memory\":\"2G\"},"), &f,
		    ".resources.memory: 2 slivers wanted, 1 node has 2G free");
	expect_fail(M("\"resources\":{\"memory\":\"64G\"},"), &f,
		    ".resources.memory: 1 sliver wanted, no node has 64G free");
	f.n[3].cpu_used = 3500;
	expect_fail(M("\"resources\":{\"cpus\":1,\"memory\":\"2G\"},"), &f,
		    ".resources.memory: 1 sliver wanted, no node has 2G free");
	expect_fail(M("\"resources\":{\"cpus\":8},"), &f,
		    ".resources.cpus: 1 sliver wanted, no node has 8 cpus free");
	nodes_free(&f);
}

static void test_sched_failures(void **state)
{
	struct fixture_nodes f;
	nodes_init(&f);
	f.n[0].drained = true;
	f.n[2].state = SCHED_NODE_UNKNOWN;
	f.n[2].last_seen_ago = 45;
	expect_fail(M("\"nodes\":{\"count\":3,\"labels\":{\"region\":\"eu\"}},"), &f,
		    ".nodes.count: 3 slivers wanted, 1 ready node matches labels region=eu");
	expect_fail(M("\"nodes\":{\"count\":5},"), &f,
		    ".nodes.count: 5 slivers wanted, 3 ready nodes");
	expect_fail(M("\"nodes\":{\"names\":[\"b\",\"x\"]},"), &f,
		    ".nodes.names[1]: node \"x\" is not registered");
	expect_fail(M("\"nodes\":{\"names\":[\"a\"]},"), &f,
		    ".nodes.names[0]: node \"a\" is drained");
	expect_fail(M("\"nodes\":{\"names\":[\"b\",\"c\"]},"), &f,
		    ".nodes.names[1]: node \"c\" is not ready (last seen 45 s ago)");
	expect_fail(M("\"nodes\":{\"count\":2},\"image\":\"debian\","), &f,
		    ".image: 2 slivers wanted, 1 ready node has image \"debian\" and the registry "
		    "has none of that name (import it with: slicectl image import debian SRC)");
	/* Drained and unknown nodes get nothing new. */
	cleanup_free char *p = place(M("\"nodes\":{\"count\":3},"), &f);
	assert_string_equal(p, "bde");
	f.n[1].drained = f.n[3].drained = f.n[4].drained = true;
	expect_fail(M(""), &f, ".nodes: 1 sliver wanted, 0 ready nodes");
	nodes_free(&f);
}

/* ---- tokens ---- */

static void test_tokens(void **state)
{
	char t[REGISTRY_TOKEN_LEN + 1], u[REGISTRY_TOKEN_LEN + 1];
	struct vs_error err;
	assert_int_equal(registry_token_generate(REGISTRY_ROLE_NODE, t, &err), 0);
	assert_int_equal(strlen(t), 68);
	assert_memory_equal(t, "vsn_", 4);
	assert_int_equal(registry_token_role(t), REGISTRY_ROLE_NODE);
	assert_int_equal(registry_token_generate(REGISTRY_ROLE_USER, u, &err), 0);
	assert_int_equal(registry_token_role(u), REGISTRY_ROLE_USER);
	assert_string_not_equal(t + 4, u + 4);
	assert_int_equal(registry_token_role("vsa_1234"), REGISTRY_ROLE_NONE);
	t[10] = 'G';
	assert_int_equal(registry_token_role(t), REGISTRY_ROLE_NONE);
	char h1[65], h2[65];
	registry_token_hash("vsa_x", h1);
	registry_token_hash("vsa_x", h2);
	assert_string_equal(h1, h2);
	assert_int_equal(strlen(h1), 64);
	assert_true(registry_node_name_valid("Node-1.example_x"));
	assert_false(registry_node_name_valid("-node"));
	assert_false(registry_node_name_valid("a/b"));
	assert_false(registry_node_name_valid(""));
}

/* ---- database and HTTP ---- */

struct env {
	char dir[64];
	char *db, *admin;
	struct registry *reg;
	char base[64];
};

static int env_setup(void **state)
{
	struct env *e = vs_xcalloc(1, sizeof(*e));
	strcpy(e->dir, "/tmp/vs-registry-test-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	e->db = vs_xasprintf("%s/registry.db", e->dir);
	struct vs_error err;
	if (registry_init_db(e->db, &e->admin, &err) < 0)
		fail_msg("%s", err.msg);
	struct registry_opts o = {.heartbeat_secs = 1, .lost_after = 2};
	if (registry_open(e->db, &o, &e->reg, &err) < 0)
		fail_msg("%s", err.msg);
	if (registry_serve(e->reg, "127.0.0.1:0", &err) < 0)
		fail_msg("%s", err.msg);
	snprintf(e->base, sizeof(e->base), "http://127.0.0.1:%u", registry_port(e->reg));
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	registry_close(e->reg);
	struct vs_error err;
	vs_rm_rf(e->dir, &err);
	free(e->db);
	free(e->admin);
	free(e);
	return 0;
}

struct resp {
	long status;
	char *body;
	size_t len;
	char index[32];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;
	r->body = realloc(r->body, r->len + sz * n + 1);
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;
	if (sz * n > 16 && strncasecmp(p, "X-Vslice-Index: ", 16) == 0)
		snprintf(r->index, sizeof(r->index), "%.*s", (int)(sz * n - 18), p + 16);
	return sz * n;
}

/* One request; body NULL = none. extra: a header line or NULL. *ccp: the
 * transport result (threads cannot fail a cmocka test). */
static struct resp req_do(const struct env *e, const char *method, const char *token,
			  const char *path, const char *body, const char *extra, CURLcode *ccp)
{
	struct resp r = {0};
	CURL *c = curl_easy_init();
	cleanup_free char *url = vs_xasprintf("%s%s", e->base, path);
	cleanup_free char *auth = token ? vs_xasprintf("Authorization: Bearer %s", token) : NULL;
	struct curl_slist *h = NULL;
	if (auth)
		h = curl_slist_append(h, auth);
	if (extra)
		h = curl_slist_append(h, extra);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	*ccp = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (!r.body)
		r.body = vs_xstrdup("");
	return r;
}

static struct resp req(const struct env *e, const char *method, const char *token, const char *path,
		       const char *body, const char *extra)
{
	CURLcode cc;
	struct resp r = req_do(e, method, token, path, body, extra, &cc);
	if (cc != CURLE_OK)
		fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
	return r;
}

static char *json_field(const char *body, const char *key)
{
	json_t *j = json_loads(body, 0, NULL);
	assert_non_null(j);
	json_t *v = json_object_get(j, key);
	char *s = json_is_string(v) ? vs_xstrdup(json_string_value(v))
				    : vs_xasprintf("%lld", (long long)json_integer_value(v));
	json_decref(j);
	return s;
}

#define EXPECT(r, code)                                                                            \
	do {                                                                                       \
		if ((r).status != (code))                                                          \
			fail_msg("line %d: status %ld, expected %d: %s", __LINE__, (r).status,     \
				 (code), (r).body);                                                \
	} while (0)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct poll_arg {
	const struct env *e;
	const char *token, *path;
	struct resp r;
	CURLcode cc;
	double took;
};

static void *poll_thread(void *p)
{
	struct poll_arg *a = p;
	double t0 = now_s();
	a->r = req_do(a->e, "GET", a->token, a->path, NULL, NULL, &a->cc);
	a->took = now_s() - t0;
	return NULL;
}

static const char tiny[] = "{\"apiVersion\":\"vslice/v1\",\"slice\":\"t1\",\"nodes\":{\"count\":1},"
			   "\"run\":{\"command\":[\"/bin/true\"]}}";

static void test_db_init(void **state)
{
	struct env *e = *state;
	char *tok = NULL;
	struct vs_error err;
	assert_int_equal(registry_init_db(e->db, &tok, &err), -EEXIST);
	assert_null(tok);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(registry_token_role(e->admin), REGISTRY_ROLE_ADMIN);
	struct stat st;
	cleanup_free char *blobs = vs_xasprintf("%s.d", e->db);
	assert_int_equal(stat(blobs, &st), 0);
	/* A token made through the library works over HTTP with its role. */
	cleanup_free char *node = NULL;
	assert_int_equal(registry_token_create(e->reg, REGISTRY_ROLE_NODE, NULL, &node, &err), 0);
	struct resp r = req(e, "GET", node, "/v1/nodes", NULL, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "GET", e->admin, "/v1/nodes", NULL, NULL);
	EXPECT(r, 200);
	free(r.body);
}

static void test_api_flow(void **state)
{
	struct env *e = *state;
	struct resp r;

	r = req(e, "GET", NULL, "/v1/health", NULL, NULL);
	EXPECT(r, 200);
	free(r.body);
	r = req(e, "GET", NULL, "/v1/slices", NULL, NULL);
	EXPECT(r, 401);
	free(r.body);
	r = req(e, "GET", "vsa_00000000000000000000000000000000000000000000000000000000000000ff",
		"/v1/slices", NULL, NULL);
	EXPECT(r, 401);
	free(r.body);

	r = req(e, "POST", e->admin, "/v1/users", "{\"name\":\"alice\"}", NULL);
	EXPECT(r, 201);
	cleanup_free char *alice = json_field(r.body, "token");
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/users", "{\"name\":\"alice\"}", NULL);
	EXPECT(r, 409);
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/users", "{\"name\":\"bob\"}", NULL);
	EXPECT(r, 201);
	cleanup_free char *bob = json_field(r.body, "token");
	free(r.body);
	r = req(e, "POST", alice, "/v1/users", "{\"name\":\"eve\"}", NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/tokens", "{\"role\":\"node\"}", NULL);
	EXPECT(r, 201);
	cleanup_free char *node = json_field(r.body, "token");
	free(r.body);

	r = req(e, "PUT", node, "/v1/nodes/node1",
		"{\"cpus\":2.0,\"memory\":25769803776,\"labels\":{\"region\":\"eu\"},"
		"\"images\":[\"busybox\"],\"version\":\"0.2.0\"}",
		NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"heartbeat\":1"));
	free(r.body);
	/* The token is bound to node1 now. */
	r = req(e, "PUT", node, "/v1/nodes/node2", "{\"cpus\":1,\"memory\":1}", NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "GET", node, "/v1/nodes/node2/assignments", NULL, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "PUT", node, "/v1/nodes/-bad", "{}", NULL);
	EXPECT(r, 400);
	free(r.body);

	/* Long-poll: returns when the slice lands, not after the wait. */
	r = req(e, "GET", node, "/v1/nodes/node1/assignments", NULL, NULL);
	EXPECT(r, 200);
	cleanup_free char *idx = json_field(r.body, "index");
	assert_true(atoll(r.index) == atoll(idx));
	free(r.body);
	cleanup_free char *path =
	    vs_xasprintf("/v1/nodes/node1/assignments?index=%s&wait=20s", idx);
	struct poll_arg pa = {.e = e, .token = node, .path = path};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, poll_thread, &pa), 0);
	struct timespec ts = {0, 300 * 1000 * 1000};
	nanosleep(&ts, NULL);
	long long rev0 = registry_revision(e->reg);
	r = req(e, "POST", alice, "/v1/slices", tiny, NULL);
	EXPECT(r, 201);
	assert_non_null(strstr(r.body, "\"state\":\"pending\""));
	assert_non_null(strstr(r.body, "\"owner\":\"alice\""));
	free(r.body);
	assert_int_equal(registry_revision(e->reg), rev0 + 1);
	pthread_join(th, NULL);
	assert_int_equal(pa.cc, CURLE_OK);
	EXPECT(pa.r, 200);
	assert_true(pa.took < 5);
	assert_non_null(strstr(pa.r.body, "\"slice\":\"t1\""));
	free(pa.r.body);

	r = req(e, "POST", alice, "/v1/slices", tiny, NULL);
	EXPECT(r, 409);
	free(r.body);
	r = req(e, "POST", node, "/v1/slices", tiny, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "POST", alice, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"t2\",\"files\":[{\"path\":\"/x\","
		"\"source\":\"x\"}],\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 422);
	assert_non_null(strstr(r.body, ".files[0].source: not allowed in a submitted manifest"));
	free(r.body);
	r = req(e, "POST", alice, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"t2\",\"policy\":\"p.json\","
		"\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 422);
	assert_non_null(strstr(r.body, "\"path\":\".policy\""));
	free(r.body);
	r = req(
	    e, "POST", alice, "/v1/slices",
	    "{\"apiVersion\":\"vslice/v1\",\"slice\":\"t2\",\"resources\":{\"memory\":\"lots\"},"
	    "\"run\":{\"command\":\"true\"}}",
	    NULL);
	EXPECT(r, 422);
	assert_non_null(strstr(r.body, "\"path\":\".resources.memory\""));
	free(r.body);
	r = req(e, "POST", alice, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"t2\",\"nodes\":{\"count\":2},"
		"\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 503);
	assert_non_null(strstr(r.body, ".nodes.count: 2 slivers wanted, 1 ready node"));
	free(r.body);

	/* Users see their own slices only. */
	r = req(e, "GET", bob, "/v1/slices/t1", NULL, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "GET", bob, "/v1/slices", NULL, NULL);
	EXPECT(r, 200);
	assert_string_equal(r.body, "{\"slices\":[]}");
	free(r.body);
	r = req(e, "GET", e->admin, "/v1/slices", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"name\":\"t1\""));
	free(r.body);
	r = req(e, "GET", alice, "/v1/slices/Bad!", NULL, NULL);
	EXPECT(r, 400);
	free(r.body);

	/* Status: the sliver's state shows, the revision moves, the slice succeeds. */
	rev0 = registry_revision(e->reg);
	const char *st = "{\"slivers\":[{\"slice\":\"t1\",\"state\":\"exited\",\"exit_code\":0,"
			 "\"reason\":\"exited\",\"started\":1795000001,\"finished\":1795000003,"
			 "\"restarts\":0,\"message\":\"\"}]}";
	r = req(e, "POST", node, "/v1/nodes/node1/status", st, NULL);
	EXPECT(r, 204);
	free(r.body);
	assert_int_equal(registry_revision(e->reg), rev0 + 1);
	r = req(e, "POST", node, "/v1/nodes/node1/status", st, NULL);
	EXPECT(r, 204);
	free(r.body);
	assert_int_equal(registry_revision(e->reg), rev0 + 1); /* nothing changed */
	r = req(e, "GET", alice, "/v1/slices/t1", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"state\":\"succeeded\""));
	assert_non_null(strstr(r.body, "\"exit_code\":0"));
	free(r.body);

	/* Log append: offsets must match the stored size. */
	r = req(e, "PUT", node, "/v1/slices/t1/slivers/node1/log?offset=0", "hello\n", NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "PUT", node, "/v1/slices/t1/slivers/node1/log?offset=0", "again\n", NULL);
	EXPECT(r, 409);
	assert_non_null(strstr(r.body, "\"size\":6"));
	free(r.body);
	r = req(e, "PUT", node, "/v1/slices/t1/slivers/node1/log?offset=6", "world\n", NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "PUT", alice, "/v1/slices/t1/slivers/node1/log?offset=12", "x", NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "GET", alice, "/v1/slices/t1/slivers/node1/log?offset=3", NULL, NULL);
	EXPECT(r, 200);
	assert_string_equal(r.body, "lo\nworld\n");
	free(r.body);

	/* Results: hashed on the way in; a mismatch keeps nothing. */
	char sha[65];
	vs_sha256_buf("hello\n", 6, sha);
	cleanup_free char *good = vs_xasprintf("X-Vslice-Sha256: %s", sha);
	r = req(e, "PUT", node, "/v1/slices/t1/slivers/node1/results/results/hello.txt", "hello\n",
		good);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "PUT", node, "/v1/slices/t1/slivers/node1/results/results/bad.txt", "hellO\n",
		good);
	EXPECT(r, 400);
	assert_non_null(strstr(r.body, "sha256 mismatch"));
	free(r.body);
	r = req(e, "POST", node, "/v1/slices/t1/slivers/node1/results",
		"{\"files\":1,\"missing\":[\"/results/x\"]}", NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "GET", alice, "/v1/slices/t1/slivers/node1/results", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"complete\":true"));
	assert_non_null(strstr(r.body, "\"path\":\"/results/hello.txt\""));
	assert_non_null(strstr(r.body, "\"mode\":420"));
	assert_null(strstr(r.body, "bad.txt"));
	assert_non_null(strstr(r.body, "\"missing\":[\"/results/x\"]"));
	free(r.body);
	r = req(e, "GET", alice, "/v1/slices/t1/slivers/node1/results/results/hello.txt", NULL,
		NULL);
	EXPECT(r, 200);
	assert_string_equal(r.body, "hello\n");
	free(r.body);
	cleanup_free char *blob = vs_xasprintf("%s.d/blobs/%s", e->db, sha);
	assert_int_equal(access(blob, F_OK), 0);

	/* Drain, metrics, renew. */
	r = req(e, "POST", e->admin, "/v1/nodes/node1/drain", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"state\":\"drained\""));
	free(r.body);
	r = req(e, "GET", e->admin, "/metrics", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "vslice_nodes{state=\"drained\"} 1"));
	assert_non_null(strstr(r.body, "vslice_slices 1"));
	assert_non_null(strstr(r.body, "vslice_slivers{state=\"exited\"} 1"));
	assert_non_null(strstr(r.body, "vslice_http_requests_total"));
	free(r.body);
	r = req(e, "GET", alice, "/metrics", NULL, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "POST", alice, "/v1/slices/t1/renew", "{\"lifetime\":\"1h\"}", NULL);
	EXPECT(r, 200);
	cleanup_free char *exp = json_field(r.body, "expires");
	assert_true(llabs(atoll(exp) - (time(NULL) + 3600)) <= 2);
	free(r.body);

	/* Delete: gone at once, blobs too. */
	r = req(e, "DELETE", bob, "/v1/slices/t1", NULL, NULL);
	EXPECT(r, 403);
	free(r.body);
	r = req(e, "DELETE", alice, "/v1/slices/t1", NULL, NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "GET", alice, "/v1/slices/t1", NULL, NULL);
	EXPECT(r, 404);
	free(r.body);
	assert_int_equal(access(blob, F_OK), -1);
	r = req(e, "GET", node, "/v1/nodes/node1/assignments", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"slivers\":[]"));
	free(r.body);
}

static void test_expiry_and_lost(void **state)
{
	struct env *e = *state;
	struct resp r;
	cleanup_free char *node = NULL;
	struct vs_error err;
	assert_int_equal(registry_token_create(e->reg, REGISTRY_ROLE_NODE, NULL, &node, &err), 0);
	r = req(e, "PUT", node, "/v1/nodes/n1", "{\"cpus\":1,\"memory\":1073741824}", NULL);
	EXPECT(r, 200);
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"short\",\"lifetime\":\"1h\","
		"\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 201);
	free(r.body);
	long long rev0 = registry_revision(e->reg);
	assert_int_equal(registry_expire(e->reg, time(NULL), &err), 0);
	assert_int_equal(registry_revision(e->reg), rev0);
	assert_int_equal(registry_expire(e->reg, time(NULL) + 3601, &err), 1);
	assert_int_equal(registry_revision(e->reg), rev0 + 1);
	r = req(e, "GET", e->admin, "/v1/slices/short", NULL, NULL);
	EXPECT(r, 404);
	free(r.body);

	/* Heartbeat 1 s, lost after 2: a silent node turns unknown and its
	 * unfinished slivers show as lost. */
	r = req(e, "POST", e->admin, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"s2\",\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 201);
	free(r.body);
	struct timespec ts = {3, 500 * 1000 * 1000};
	nanosleep(&ts, NULL);
	r = req(e, "GET", e->admin, "/v1/slices/s2", NULL, NULL);
	EXPECT(r, 200);
	assert_non_null(strstr(r.body, "\"state\":\"lost\""));
	free(r.body);
	r = req(e, "GET", e->admin, "/v1/nodes", NULL, NULL);
	assert_non_null(strstr(r.body, "\"state\":\"unknown\""));
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/slices",
		"{\"apiVersion\":\"vslice/v1\",\"slice\":\"s3\",\"nodes\":{\"names\":[\"n1\"]},"
		"\"run\":{\"command\":\"true\"}}",
		NULL);
	EXPECT(r, 503);
	assert_non_null(strstr(r.body, "node \\\"n1\\\" is not ready (last seen"));
	free(r.body);
	r = req(e, "POST", node, "/v1/nodes/n1/status", "{\"slivers\":[]}", NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "GET", e->admin, "/v1/slices/s2", NULL, NULL);
	assert_non_null(strstr(r.body, "\"state\":\"pending\""));
	free(r.body);

	/* No status report for 3.5 s, but the node keeps polling its
	 * assignments (as while it uploads a large result): still ready. */
	for (int i = 0; i < 7; i++) {
		struct timespec half = {0, 500 * 1000 * 1000};
		nanosleep(&half, NULL);
		r = req(e, "GET", node, "/v1/nodes/n1/assignments", NULL, NULL);
		EXPECT(r, 200);
		free(r.body);
	}
	r = req(e, "GET", e->admin, "/v1/nodes", NULL, NULL);
	assert_non_null(strstr(r.body, "\"state\":\"ready\""));
	free(r.body);
}

/* The scheduler's view of what nodes have left follows inserts and deletes
 * (the registry keeps it in memory between submissions). */
static void test_usage_follows_slices(void **state)
{
	struct env *e = *state;
	struct resp r;
	cleanup_free char *node = NULL;
	struct vs_error err;
	assert_int_equal(registry_token_create(e->reg, REGISTRY_ROLE_NODE, NULL, &node, &err), 0);
	r = req(e, "PUT", node, "/v1/nodes/n1", "{\"cpus\":1,\"memory\":1073741824}", NULL);
	EXPECT(r, 200);
	free(r.body);
	r = req(e, "POST", node, "/v1/nodes/n1/status", "{\"slivers\":[]}", NULL);
	EXPECT(r, 204);
	free(r.body);
	static const char *const one_cpu[] = {
	    "{\"apiVersion\":\"vslice/v1\",\"slice\":\"u1\",\"resources\":{\"cpus\":1},"
	    "\"run\":{\"command\":\"true\"}}",
	    "{\"apiVersion\":\"vslice/v1\",\"slice\":\"u2\",\"resources\":{\"cpus\":1},"
	    "\"run\":{\"command\":\"true\"}}",
	};
	r = req(e, "POST", e->admin, "/v1/slices", one_cpu[0], NULL);
	EXPECT(r, 201);
	free(r.body);
	/* The node's one cpu is taken: the next one-cpu slice cannot go. */
	r = req(e, "POST", e->admin, "/v1/slices", one_cpu[1], NULL);
	EXPECT(r, 503);
	assert_non_null(strstr(r.body, ".resources.cpus"));
	free(r.body);
	/* Deleting the first gives the cpu back. */
	r = req(e, "DELETE", e->admin, "/v1/slices/u1", NULL, NULL);
	EXPECT(r, 204);
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/slices", one_cpu[1], NULL);
	EXPECT(r, 201);
	free(r.body);
	/* And a re-registration with more cpus counts at once. */
	r = req(e, "PUT", node, "/v1/nodes/n1", "{\"cpus\":2,\"memory\":1073741824}", NULL);
	EXPECT(r, 200);
	free(r.body);
	r = req(e, "POST", e->admin, "/v1/slices", one_cpu[0], NULL);
	EXPECT(r, 201);
	free(r.body);
}

static void test_stop_wakes_polls(void **state)
{
	struct env *e = *state;
	cleanup_free char *path =
	    vs_xasprintf("/v1/slices?index=%lld&wait=60s", registry_revision(e->reg) + 100);
	struct poll_arg pa = {.e = e, .token = e->admin, .path = path};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, poll_thread, &pa), 0);
	struct timespec ts = {0, 300 * 1000 * 1000};
	nanosleep(&ts, NULL);
	/* A short wait returns by itself. */
	cleanup_free char *p2 =
	    vs_xasprintf("/v1/slices?index=%lld&wait=1s", registry_revision(e->reg) + 100);
	double t0 = now_s();
	struct resp r = req(e, "GET", e->admin, p2, NULL, NULL);
	EXPECT(r, 200);
	assert_true(now_s() - t0 >= 0.9 && now_s() - t0 < 3.5);
	free(r.body);
	registry_stop(e->reg);
	pthread_join(th, NULL);
	/* Stopping answers the waiting poll (it does not just drop it). */
	assert_int_equal(pa.cc, CURLE_OK);
	EXPECT(pa.r, 200);
	assert_true(pa.took < 10);
	free(pa.r.body);
}

static struct sockaddr_storage addr4(const char *a)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &in->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage addr6(const char *a)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
	in->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &in->sin6_addr), 1);
	return ss;
}
#define SA(ss) ((const struct sockaddr *)&(ss))

/* Admission (issue 9, item 5): per-address cap, /64 grouping, headroom for
 * trusted addresses, the total cap; memory shares per token and in all. */
static void test_limits(void **state)
{
	struct reg_limits l = {0};
	lim_init(&l, 2);
	lim_set_conn_cap(&l, 16); /* headroom 8 */
	struct sockaddr_storage a = addr4("10.0.0.1"), b = addr4("10.0.0.2");
	void *ea[3], *others[16];
	assert_true(lim_accept(&l, SA(a)));
	ea[0] = lim_conn_open(&l, SA(a));
	ea[1] = lim_conn_open(&l, SA(a));
	assert_false(lim_accept(&l, SA(a))); /* 2 per address */
	assert_true(lim_accept(&l, SA(b)));
	lim_trust(&l, ea[0]);
	assert_true(lim_accept(&l, SA(a))); /* a node or admin showed up there */
	ea[2] = lim_conn_open(&l, SA(a));
	/* Same /64: one address for the cap. */
	struct sockaddr_storage v1 = addr6("2001:db8:1:2::1"), v2 = addr6("2001:db8:1:2::ffff");
	struct sockaddr_storage v3 = addr6("2001:db8:1:3::1");
	void *ev[2] = {lim_conn_open(&l, SA(v1)), lim_conn_open(&l, SA(v2))};
	assert_false(lim_accept(&l, SA(v1)));
	assert_true(lim_accept(&l, SA(v3)));
	/* 5 open: fill the untrusted share (16 - 8) with other addresses. */
	char ip[32];
	for (int i = 0; i < 3; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
		struct sockaddr_storage o = addr4(ip);
		others[i] = lim_conn_open(&l, SA(o));
	}
	struct sockaddr_storage fresh = addr4("10.9.9.9");
	assert_false(lim_accept(&l, SA(fresh))); /* 8 open: the rest is headroom */
	assert_true(lim_accept(&l, SA(a)));	 /* ... for the trusted */
	for (int i = 3; i < 11; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
		struct sockaddr_storage o = addr4(ip);
		others[i] = lim_conn_open(&l, SA(o));
	}
	assert_false(lim_accept(&l, SA(a))); /* 16: the total cap */
	for (int i = 0; i < 11; i++)
		lim_conn_close(&l, others[i]);
	lim_conn_close(&l, ev[0]);
	lim_conn_close(&l, ev[1]);
	for (int i = 0; i < 3; i++)
		lim_conn_close(&l, ea[i]);
	assert_int_equal(l.conns, 0);
	assert_true(lim_accept(&l, SA(fresh)));

	/* Memory: a token's share, the total, forced charges, release. */
	assert_int_equal(lim_mem_charge(&l, "t1", REG_TOKEN_MEM - 10, false), 0);
	assert_int_equal(lim_mem_charge(&l, "t1", 11, false), -1);
	assert_int_equal(lim_mem_charge(&l, "t2", 11, false), 0);
	assert_int_equal(lim_mem_charge(&l, "t1", 11, true), 0); /* an answer to a change */
	lim_mem_release(&l, "t1", REG_TOKEN_MEM + 1);
	assert_int_equal(lim_mem_charge(&l, "t1", REG_TOKEN_MEM, false), 0);
	lim_mem_release(&l, "t1", REG_TOKEN_MEM);
	lim_mem_release(&l, "t2", 11);
	assert_int_equal(l.mem, 0);
	l.total_cap = 100;
	assert_int_equal(lim_mem_charge(&l, "t3", 60, false), 0);
	assert_int_equal(lim_mem_charge(&l, "t4", 60, false), -2);
	lim_mem_release(&l, "t3", 60);
	assert_null(l.tokens);
	lim_free(&l);
}

/* ---- the store layer (lib/registry/store*.c) ---- */

struct hook_seen {
	unsigned calls;
	long long revision;
};

static void count_commit(void *ctx, long long revision)
{
	struct hook_seen *h = ctx;
	h->calls++;
	h->revision = revision;
}

/* A commit that bumps the revision is reported through the hook registered
 * with the store (not by calling the HTTP server); one that does not bump
 * it, or a rollback, is not. */
static void test_store_commit_hook(void **state)
{
	struct env *e = *state;
	struct registry *reg = e->reg;
	struct hook_seen h = {0};
	struct vs_error err;
	pthread_mutex_lock(&reg->lock);
	store_set_commit_hook(reg, count_commit, &h);
	long long rev = reg->revision;
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_user_add(reg, "alice", &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.revision, rev + 1);
	assert_int_equal(reg->revision, rev + 1);
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_user_add(reg, "bob", &err), 0);
	assert_int_equal(store_commit(reg, false, &err), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_user_add(reg, "carol", &err), 0);
	store_rollback(reg);
	assert_int_equal(h.calls, 1);
	assert_int_equal(store_user_exists(reg, "bob", &err), 1);
	assert_int_equal(store_user_exists(reg, "carol", &err), 0);
	pthread_mutex_unlock(&reg->lock);
	assert_int_equal(registry_revision(reg), rev + 1);
}

/* The typed row functions: what goes in comes out; missing rows are
 * -ENOENT; a report repeating a sliver's state changes nothing. */
static void test_store_rows(void **state)
{
	struct env *e = *state;
	struct registry *reg = e->reg;
	struct vs_error err;
	pthread_mutex_lock(&reg->lock);
	struct store_node in = {.name = "n1",
				.cpus = 2.5,
				.memory = 1 << 30,
				.labels = "{\"zone\":\"a\"}",
				.images = "[\"busybox\"]",
				.version = "v1"};
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_node_put(reg, &in, 1234, &err), 0);
	in.name = "n2";
	assert_int_equal(store_node_put(reg, &in, 1235, &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	struct store_node n;
	assert_int_equal(store_node_get(reg, "n1", &n, &err), 0);
	assert_string_equal(n.name, "n1");
	assert_true(n.cpus == 2.5);
	assert_int_equal(n.memory, 1 << 30);
	assert_string_equal(n.labels, "{\"zone\":\"a\"}");
	assert_string_equal(n.version, "v1");
	assert_int_equal(n.registered, 1234);
	assert_false(n.drained);
	store_node_clear(&n);
	assert_int_equal(store_node_get(reg, "nope", &n, &err), -ENOENT);
	assert_int_equal(store_node_set_drained(reg, "nope", true, &err), -ENOENT);
	assert_int_equal(store_node_exists(reg, "n2", &err), 1);

	const struct store_cached_node *c;
	size_t nc;
	assert_int_equal(store_node_cache_get(reg, &c, &nc, &err), 0);
	assert_int_equal(nc, 2);
	assert_string_equal(c[0].name, "n1");
	assert_int_equal(c[0].cpu_millis, 2500);
	assert_int_equal(c[0].nslivers, 0);

	const char *on[] = {"n1", "n2"};
	struct store_slice sl = {.name = "s1",
				 .owner = "alice",
				 .manifest = "{\"slice\":\"s1\"}",
				 .created = 10,
				 .expires = 20,
				 .cpu_millis = 500,
				 .memory = 1 << 20};
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_slice_insert(reg, &sl, on, 2, &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	size_t idx[] = {0, 1};
	store_node_cache_add_usage(reg, idx, 2, 500, 1 << 20);
	assert_int_equal(store_node_cache_get(reg, &c, &nc, &err), 0);
	assert_int_equal(c[1].nslivers, 1);
	assert_int_equal(c[1].cpu_used, 500);

	struct store_slice got;
	assert_int_equal(store_slice_get(reg, "s1", true, &got, &err), 0);
	assert_string_equal(got.owner, "alice");
	assert_string_equal(got.manifest, "{\"slice\":\"s1\"}");
	assert_int_equal(strlen(got.manifest_sha256), 64);
	assert_int_equal(got.expires, 20);
	store_slice_clear(&got);
	cleanup_free char *owner = NULL;
	bool on_node;
	assert_int_equal(store_slice_owner(reg, "s1", "n2", &owner, &on_node, &err), 0);
	assert_string_equal(owner, "alice");
	assert_true(on_node);

	struct store_sliver rep = {.slice = "s1",
				   .node = "n2",
				   .state = "running",
				   .exit_code = -1,
				   .reason = "",
				   .started = 11,
				   .message = ""};
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_sliver_report(reg, &rep, &err), 1);
	assert_int_equal(store_sliver_report(reg, &rep, &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	struct store_sliver *v;
	size_t nv;
	assert_int_equal(store_slivers_of(reg, "s1", NULL, &v, &nv, &err), 0);
	assert_int_equal(nv, 2);
	assert_string_equal(v[0].state, "pending");
	assert_string_equal(v[1].state, "running");
	assert_int_equal(v[1].started, 11);
	store_slivers_free(v, nv);

	struct store_result r = {.path = "/out/a", .size = 3, .mode = 0644};
	memset(r.sha256, 'a', 64);
	assert_int_equal(store_result_put(reg, "s1", "n9", &r, &err), -ENOENT);
	assert_int_equal(store_result_put(reg, "s1", "n1", &r, &err), 0);
	char sha[65];
	assert_int_equal(store_result_sha(reg, "s1", "n1", "/out/a", sha, &err), 0);
	assert_string_equal(sha, r.sha256);

	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_slice_delete(reg, "s1", &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	assert_int_equal(store_slice_get(reg, "s1", false, &got, &err), -ENOENT);
	assert_int_equal(store_result_sha(reg, "s1", "n1", "/out/a", sha, &err), -ENOENT);
	assert_int_equal(store_node_cache_get(reg, &c, &nc, &err), 0);
	assert_int_equal(c[1].nslivers, 0); /* recomputed after the delete */
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_slice_delete(reg, "s1", &err), -ENOENT);
	store_rollback(reg);
	pthread_mutex_unlock(&reg->lock);
}

static void set_user_version(const char *db, int v)
{
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	cleanup_free char *sql = vs_xasprintf("PRAGMA user_version = %d", v);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* The schema is a list of steps tracked by PRAGMA user_version: a new
 * database is at the newest, a newer one (from a later registry) and one
 * that is no registry database are refused with a message naming it. */
static void test_store_schema_version(void **state)
{
	(void)state;
	char dir[] = "/tmp/vs-registry-schema-XXXXXX";
	assert_non_null(mkdtemp(dir));
	cleanup_free char *db = vs_xasprintf("%s/r.db", dir);
	cleanup_free char *admin = NULL;
	struct vs_error err;
	assert_int_equal(registry_init_db(db, &admin, &err), 0);
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(h,
					    "SELECT (SELECT value FROM meta WHERE key = "
					    "'schema_version'), (SELECT user_version FROM "
					    "pragma_user_version)",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), REGISTRY_SCHEMA_VERSION);
	assert_int_equal(sqlite3_column_int(s, 1), REGISTRY_SCHEMA_VERSION);
	sqlite3_finalize(s);
	sqlite3_close(h);

	struct registry *reg = NULL;
	assert_int_equal(registry_open(db, NULL, &reg, &err), 0);
	registry_close(reg);

	set_user_version(db, REGISTRY_SCHEMA_VERSION + 1);
	reg = NULL;
	assert_int_equal(registry_open(db, NULL, &reg, &err), -EINVAL);
	assert_null(reg);
	assert_non_null(strstr(err.msg, "newer than this registry's"));
	assert_non_null(strstr(err.msg, db));

	set_user_version(db, 0);
	assert_int_equal(registry_open(db, NULL, &reg, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a registry database"));

	set_user_version(db, REGISTRY_SCHEMA_VERSION);
	assert_int_equal(registry_open(db, NULL, &reg, &err), 0);
	registry_close(reg);
	vs_rm_rf(dir, &err);
}

/* ---- migrations (issue 11) ---- */

struct step_case {
	enum migration_phase phase;
	enum migration_party who;
	enum migration_report rep;
	enum migration_verdict want;
	enum migration_phase after;
};

/* Every (phase, party, report): the verdict and the phase after. The rules
 * that keep one copy running: restored only after the source stopped,
 * nothing after an abort but the same abort, no abort after a commit. */
static void test_migration_step(void **state)
{
	(void)state;
#define P  MIGRATION_PREPARED
#define T  MIGRATION_TRANSFERRING
#define C  MIGRATION_COMMITTED
#define A  MIGRATION_ABORTED
#define S  MIGRATION_SOURCE
#define G  MIGRATION_TARGET
#define RT MIGRATION_REPORT_TRANSFERRING
#define RR MIGRATION_REPORT_RESTORED
#define RA MIGRATION_REPORT_ABORTED
#define RS MIGRATION_REPORT_STARTED
	static const struct step_case cases[] = {
	    {P, S, RT, MIGRATION_MOVED, T},	{T, S, RT, MIGRATION_PROGRESS, T},
	    {C, S, RT, MIGRATION_CONFLICT, C},	{A, S, RT, MIGRATION_CONFLICT, A},
	    {P, S, RR, MIGRATION_FORBIDDEN, P}, {T, S, RS, MIGRATION_FORBIDDEN, T},
	    {P, S, RA, MIGRATION_MOVED, A},	{T, S, RA, MIGRATION_MOVED, A},
	    {A, S, RA, MIGRATION_SAME, A},	{C, S, RA, MIGRATION_CONFLICT, C},
	    {P, G, RR, MIGRATION_CONFLICT, P},	{T, G, RR, MIGRATION_COMMIT, C},
	    {C, G, RR, MIGRATION_SAME, C},	{A, G, RR, MIGRATION_CONFLICT, A},
	    {P, G, RT, MIGRATION_PROGRESS, P},	{T, G, RT, MIGRATION_PROGRESS, T},
	    {C, G, RT, MIGRATION_CONFLICT, C},	{T, G, RS, MIGRATION_CONFLICT, T},
	    {C, G, RS, MIGRATION_MOVED, C},	{T, G, RA, MIGRATION_MOVED, A},
	    {C, G, RA, MIGRATION_CONFLICT, C},	{A, G, RA, MIGRATION_SAME, A},
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
		const struct step_case *c = &cases[i];
		struct migration_state m = {.phase = c->phase,
					    .created = 1000,
					    .stopped_ms = 0,
					    .bytes = -1,
					    .total_ms = -1,
					    .downtime_ms = -1};
		struct migration_state before = m;
		enum migration_verdict v = migration_step(&m, c->who, c->rep, 7, 5000, 9000);
		if (v != c->want || m.phase != c->after)
			fail_msg("case %zu (%s, %s, report %d): verdict %d phase %s, want %d %s", i,
				 migration_phase_name(c->phase), c->who == S ? "source" : "target",
				 c->rep, v, migration_phase_name(m.phase), c->want,
				 migration_phase_name(c->after));
		/* refusals and repeats change nothing */
		if (v == MIGRATION_SAME || v == MIGRATION_CONFLICT || v == MIGRATION_FORBIDDEN)
			assert_memory_equal(&m, &before, sizeof(m));
	}
	/* the numbers: stop at the source's at_ms, start at the target's,
	 * downtime between them, total from creation; a repeat keeps them */
	struct migration_state m = {.phase = MIGRATION_PREPARED,
				    .created = 1000,
				    .bytes = -1,
				    .total_ms = -1,
				    .downtime_ms = -1};
	assert_int_equal(migration_step(&m, S, RT, -1, 2000, 2100), MIGRATION_MOVED);
	assert_int_equal(m.stopped_ms, 2000);
	assert_int_equal(migration_step(&m, S, RT, 4096, 2500, 2600), MIGRATION_PROGRESS);
	assert_int_equal(m.stopped_ms, 2000);
	assert_int_equal(m.bytes, 4096);
	assert_int_equal(m.updated, 2600);
	assert_int_equal(migration_step(&m, G, RR, 8192, 3000, 3100), MIGRATION_COMMIT);
	assert_int_equal(m.restored_ms, 3000);
	assert_int_equal(m.committed_ms, 3100);
	assert_int_equal(m.bytes, 8192);
	assert_int_equal(migration_step(&m, G, RS, -1, 3500, 3600), MIGRATION_MOVED);
	assert_int_equal(m.started_ms, 3500);
	assert_int_equal(m.downtime_ms, 1500);
	assert_int_equal(m.total_ms, 2500);
	assert_int_equal(migration_step(&m, G, RS, -1, 9999, 9999), MIGRATION_SAME);
	assert_int_equal(m.downtime_ms, 1500);
	/* clocks that disagree never make a negative downtime */
	m = (struct migration_state){.phase = MIGRATION_COMMITTED,
				     .created = 5000,
				     .stopped_ms = 4000,
				     .bytes = -1,
				     .total_ms = -1,
				     .downtime_ms = -1};
	assert_int_equal(migration_step(&m, G, RS, -1, 3000, 6000), MIGRATION_MOVED);
	assert_int_equal(m.downtime_ms, 0);
	assert_int_equal(m.total_ms, 0);
	assert_int_equal(migration_phase_parse("committed"), MIGRATION_COMMITTED);
	assert_int_equal(migration_phase_parse("done"), -1);
	assert_int_equal(migration_report_parse("started"), MIGRATION_REPORT_STARTED);
	assert_int_equal(migration_report_parse(NULL), -1);
}
#undef P
#undef T
#undef C
#undef A
#undef S
#undef G
#undef RT
#undef RR
#undef RA
#undef RS

static void target_refused(const struct sched_node *nd, bool hosts, const char *image, uint64_t cpu,
			   uint64_t mem, const char *want)
{
	char buf[256];
	const char *why = sched_target_refusal(nd, hosts, "m1", image, cpu, mem, buf, sizeof(buf));
	if (!why || strcmp(why, want) != 0)
		fail_msg("expected \"%s\", got \"%s\"", want, why ? why : "(taken)");
}

/* A migration's target: each reason to refuse a node, in order, and the
 * pick when none is named (spread, never a node that hosts the slice). */
static void test_sched_pick_target(void **state)
{
	(void)state;
	struct fixture_nodes f;
	nodes_init(&f);
	for (size_t i = 0; i < 5; i++)
		f.n[i].has_url = true;
	struct sched_node nd = f.n[0];
	nd.drained = true;
	target_refused(&nd, false, "busybox", 0, 0, "node a is drained");
	nd = f.n[0];
	nd.state = SCHED_NODE_UNKNOWN;
	nd.last_seen_ago = 42;
	target_refused(&nd, false, "busybox", 0, 0, "node a is not ready (last seen 42 s ago)");
	target_refused(&f.n[0], true, "busybox", 0, 0, "node a already hosts a sliver of m1");
	nd = f.n[0];
	nd.has_url = false;
	target_refused(&nd, false, "busybox", 0, 0,
		       "node a has no transfer url (its node manager runs without "
		       "--listen/--advertise)");
	target_refused(&f.n[0], false, "debian", 0, 0, "node a lacks image debian");
	nd = f.n[0];
	nd.cpu_used = 3500;
	target_refused(&nd, false, "busybox", 1000, 0,
		       "node a lacks capacity: 0.5 cpus free, 1 asked");
	nd = f.n[0];
	nd.memory_used = 8 * GiB - 512 * (1 << 20);
	target_refused(&nd, false, "busybox", 0, GiB,
		       "node a lacks capacity: 512 MiB memory free, 1 GiB asked");
	char buf[256];
	assert_null(
	    sched_target_refusal(&f.n[1], false, "m1", "debian", 1000, GiB, buf, sizeof(buf)));

	/* the pick: a hosts the slice, b is the only one with the image */
	bool hosts[5] = {true, false, false, false, false};
	size_t picked = 99;
	struct vs_error err;
	assert_int_equal(sched_pick_target(f.n, 5, hosts, "m1", "debian", 0, 0, &picked, &err), 0);
	assert_int_equal(picked, 1);
	/* busybox: the least used of b..e (c and e loaded) */
	f.n[1].memory_used = 4 * GiB;
	f.n[2].memory_used = 2 * GiB;
	f.n[4].cpu_used = 1000;
	assert_int_equal(sched_pick_target(f.n, 5, hosts, "m1", "busybox", 0, 0, &picked, &err), 0);
	assert_string_equal(f.n[picked].name, "d");
	/* none: the first reasons, the source not among them */
	for (size_t i = 1; i < 5; i++)
		f.n[i].drained = true;
	assert_int_equal(sched_pick_target(f.n, 5, hosts, "m1", "busybox", 0, 0, &picked, &err),
			 -EAGAIN);
	assert_string_equal(err.msg, "no node can take slice m1: node b is drained; node c is "
				     "drained; node d is drained (and 1 more)");
	assert_int_equal(sched_pick_target(f.n, 1, hosts, "m1", "busybox", 0, 0, &picked, &err),
			 -EAGAIN);
	assert_string_equal(err.msg, "no node can take slice m1: no other node is registered");
	nodes_free(&f);
}

/* A database of schema 1 (before migrations) is brought to 2 on open: its
 * nodes keep their rows, gain url NULL, and the migrations table exists. */
static void test_store_upgrade_to_migrations(void **state)
{
	(void)state;
	char dir[] = "/tmp/vs-registry-upgrade-XXXXXX";
	assert_non_null(mkdtemp(dir));
	cleanup_free char *db = vs_xasprintf("%s/r.db", dir);
	cleanup_free char *admin = NULL;
	struct vs_error err;
	assert_int_equal(registry_init_db(db, &admin, &err), 0);
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h,
				      "DROP INDEX slivers_address; ALTER TABLE slivers DROP COLUMN"
				      " address; ALTER TABLE nodes DROP COLUMN overlay_local;"
				      "ALTER TABLE nodes DROP COLUMN overlay_vni;"
				      "DROP TABLE migrations; ALTER TABLE nodes DROP COLUMN url;"
				      "DROP TABLE images;"
				      "INSERT INTO nodes(name, registered) VALUES('old1', 1);"
				      "UPDATE meta SET value = 1 WHERE key = 'schema_version';"
				      "PRAGMA user_version = 1;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	struct registry *reg = NULL;
	assert_int_equal(registry_open(db, NULL, &reg, &err), 0);
	struct store_node n;
	assert_int_equal(store_node_get(reg, "old1", &n, &err), 0);
	assert_null(n.url);
	assert_null(n.overlay_local); /* schema 3: no overlay */
	assert_int_equal(n.overlay_vni, 0);
	store_node_clear(&n);
	struct store_migration *v = NULL;
	size_t nv = 9;
	assert_int_equal(store_migrations_list(reg, NULL, NULL, 10, &v, &nv, &err), 0);
	assert_int_equal(nv, 0);
	store_migrations_free(v, nv);
	struct store_image *imgs = NULL;
	assert_int_equal(store_images_list(reg, &imgs, &nv, &err), 0); /* schema 4 */
	assert_int_equal(nv, 0);
	free(imgs);
	registry_close(reg);
	vs_rm_rf(dir, &err);
}

/*
 * The images table (issue 14): a replace reports the digest it replaced, a
 * blob goes when its last row does (not while another name shares it), a
 * slice naming an image is found, and the sweep at open removes blobs
 * without a row and image uploads' temp files only.
 */
static void put_blob(struct registry *reg, const char *digest)
{
	cleanup_free char *p = store_image_blob_path(reg, digest);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static bool blob_exists(struct registry *reg, const char *digest)
{
	cleanup_free char *p = store_image_blob_path(reg, digest);
	return access(p, F_OK) == 0;
}

static void test_store_images(void **state)
{
	struct env *e = *state;
	struct registry *reg = e->reg;
	struct vs_error err;
	char d1[65], d2[65], old[65];
	memset(d1, 'a', 64);
	memset(d2, 'b', 64);
	d1[64] = d2[64] = '\0';
	pthread_mutex_lock(&reg->lock);
	struct store_image img = {.name = "web", .size = 3, .owner = "alice", .created = 1};
	memcpy(img.digest, d1, 65);
	put_blob(reg, d1);
	assert_int_equal(store_image_put(reg, &img, old, &err), 0);
	assert_string_equal(old, "");
	strcpy(img.name, "copy"); /* the same content under another name */
	assert_int_equal(store_image_put(reg, &img, old, &err), 0);
	strcpy(img.name, "web");
	memcpy(img.digest, d2, 65);
	put_blob(reg, d2);
	assert_int_equal(store_image_put(reg, &img, old, &err), 0);
	assert_string_equal(old, d1);
	store_image_blob_gc(reg, old);
	assert_true(blob_exists(reg, d1)); /* "copy" still has it */
	struct store_image got;
	assert_int_equal(store_image_get(reg, "web", &got, &err), 0);
	assert_string_equal(got.digest, d2);
	assert_string_equal(got.owner, "alice");
	assert_int_equal(store_image_get(reg, "nope", &got, &err), -ENOENT);

	struct store_slice sl = {.name = "s1",
				 .owner = "alice",
				 .manifest = "{\"slice\":\"s1\",\"image\":\"web\"}",
				 .expires = 1};
	assert_int_equal(store_slice_insert(reg, &sl, NULL, 0, &err), 0);
	cleanup_free char *user = NULL;
	assert_int_equal(store_image_user(reg, "web", &user, &err), 0);
	assert_string_equal(user, "s1");
	cleanup_free char *none = NULL;
	assert_int_equal(store_image_user(reg, "copy", &none, &err), 0);
	assert_null(none);

	char gone[65];
	assert_int_equal(store_image_delete(reg, "copy", gone, &err), 0);
	assert_string_equal(gone, d1);
	store_image_blob_gc(reg, gone);
	assert_false(blob_exists(reg, d1));
	assert_int_equal(store_image_delete(reg, "copy", gone, &err), -ENOENT);

	/* The sweep: an orphan blob and an image upload's temp file go; the
	 * blob with a row and another upload's temp file stay. */
	put_blob(reg, d1);
	cleanup_free char *tmp_img = vs_xasprintf("%s/tmp/image-x", reg->store.blob_dir);
	cleanup_free char *tmp_res = vs_xasprintf("%s/tmp/upload-x", reg->store.blob_dir);
	fclose(fopen(tmp_img, "w"));
	fclose(fopen(tmp_res, "w"));
	store_images_sweep(reg);
	assert_false(blob_exists(reg, d1));
	assert_true(blob_exists(reg, d2));
	assert_int_equal(access(tmp_img, F_OK), -1);
	assert_int_equal(access(tmp_res, F_OK), 0);
	unlink(tmp_res);
	struct store_image *v = NULL;
	size_t n = 0;
	assert_int_equal(store_images_list(reg, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "web");
	free(v);
	pthread_mutex_unlock(&reg->lock);
}

/*
 * The overlay's cluster leases (issue 13): the lowest free address of the
 * subnet, never the network or gateway address, unique across slices; the
 * address stays with the sliver row when it moves (a migration's commit)
 * and is free again when its slice is deleted. Peers: every other node's
 * bridged slivers, only on nodes with an overlay.
 */
static void test_store_cluster_leases(void **state)
{
	struct env *e = *state;
	struct registry *reg = e->reg;
	struct vs_error err;
	pthread_mutex_lock(&reg->lock);
	struct store_node in = {.name = "n1", .overlay_local = "10.9.0.1", .overlay_vni = 42};
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_node_put(reg, &in, 1, &err), 0);
	in.name = "n2";
	in.overlay_local = "10.9.0.2";
	assert_int_equal(store_node_put(reg, &in, 1, &err), 0);
	in.name = "n3";
	in.overlay_local = NULL;
	assert_int_equal(store_node_put(reg, &in, 1, &err), 0);
	const char *on[] = {"n1", "n2"};
	struct store_slice sl = {.name = "s1", .owner = "a", .manifest = "{}", .expires = 1};
	assert_int_equal(store_slice_insert(reg, &sl, on, 2, &err), 0);
	sl.name = "s2";
	assert_int_equal(store_slice_insert(reg, &sl, on, 1, &err), 0);
	char a[16];
	const uint32_t net = 0x0ad50000u; /* 10.213.0.0/16 */
	assert_int_equal(store_sliver_alloc_address(reg, "s1", "n1", net, 16, a, &err), 0);
	assert_string_equal(a, "10.213.0.2"); /* .0 the network, .1 the gateway */
	assert_int_equal(store_sliver_alloc_address(reg, "s1", "n2", net, 16, a, &err), 0);
	assert_string_equal(a, "10.213.0.3");
	assert_int_equal(store_sliver_alloc_address(reg, "s2", "n1", net, 16, a, &err), 0);
	assert_string_equal(a, "10.213.0.4");
	assert_int_equal(store_sliver_alloc_address(reg, "nope", "n1", net, 16, a, &err), -ENOENT);
	assert_int_equal(store_commit(reg, true, &err), 0);
	long long vni;
	char *holder;
	assert_int_equal(store_overlay_vni_other(reg, "n1", "10.9.0.1", &vni, &holder, &err), 0);
	assert_int_equal(vni, 42);
	assert_null(holder);
	assert_int_equal(store_overlay_vni_other(reg, "n3", "10.9.0.2", &vni, &holder, &err), 0);
	assert_string_equal(holder, "n2");
	free(holder);

	/* n1's peers: the slivers on n2 (n3 has no overlay). */
	struct store_overlay_peer *p;
	size_t np;
	assert_int_equal(store_overlay_peers(reg, "n1", &p, &np, &err), 0);
	assert_int_equal(np, 1);
	assert_string_equal(p[0].address, "10.213.0.3");
	assert_string_equal(p[0].underlay, "10.9.0.2");
	free(p);

	/* A migration's commit moves the row: the address goes with it. */
	char **shas = NULL;
	size_t nshas = 0;
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_sliver_move(reg, "s1", "n2", "n3", &shas, &nshas, &err), 0);
	assert_int_equal(store_commit(reg, true, &err), 0);
	store_names_free(shas, nshas);
	struct store_sliver v;
	assert_int_equal(store_sliver_get(reg, "s1", "n3", &v, &err), 0);
	assert_string_equal(v.address, "10.213.0.3");
	store_sliver_clear(&v);
	struct store_assignment *as;
	size_t nas;
	assert_int_equal(store_assignments(reg, "n3", &as, &nas, &err), 0);
	assert_int_equal(nas, 1);
	assert_string_equal(as[0].address, "10.213.0.3");
	store_assignments_free(as, nas);
	/* ... and n3 has no overlay: n1 sees no peer there. */
	assert_int_equal(store_overlay_peers(reg, "n1", &p, &np, &err), 0);
	assert_int_equal(np, 0);
	free(p);

	/* A delete frees its addresses: the lowest free one is taken again. */
	assert_int_equal(store_begin(reg, &err), 0);
	assert_int_equal(store_slice_delete(reg, "s1", &err), 0);
	sl.name = "s3";
	assert_int_equal(store_slice_insert(reg, &sl, on, 1, &err), 0);
	assert_int_equal(store_sliver_alloc_address(reg, "s3", "n1", net, 16, a, &err), 0);
	assert_string_equal(a, "10.213.0.2");
	/* A /30 has two host addresses: the gateway and one slice. */
	sl.name = "s4";
	assert_int_equal(store_slice_insert(reg, &sl, on, 2, &err), 0);
	assert_int_equal(store_sliver_alloc_address(reg, "s4", "n1", 0x0a630000u, 30, a, &err), 0);
	assert_string_equal(a, "10.99.0.2");
	assert_int_equal(store_sliver_alloc_address(reg, "s4", "n2", 0x0a630000u, 30, a, &err),
			 -ENOSPC);
	store_rollback(reg);
	pthread_mutex_unlock(&reg->lock);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sched_spread),
	    cmocka_unit_test(test_sched_registry_image),
	    cmocka_unit_test(test_sched_resources),
	    cmocka_unit_test(test_sched_failures),
	    cmocka_unit_test(test_tokens),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test_setup_teardown(test_db_init, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_api_flow, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_expiry_and_lost, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_usage_follows_slices, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_stop_wakes_polls, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_store_commit_hook, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_store_rows, env_setup, env_teardown),
	    cmocka_unit_test(test_store_schema_version),
	    cmocka_unit_test(test_migration_step),
	    cmocka_unit_test(test_sched_pick_target),
	    cmocka_unit_test(test_store_upgrade_to_migrations),
	    cmocka_unit_test_setup_teardown(test_store_cluster_leases, env_setup, env_teardown),
	    cmocka_unit_test_setup_teardown(test_store_images, env_setup, env_teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
