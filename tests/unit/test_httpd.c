/*
 * test_httpd.c - the daemons' HTTP server wrapper (lib/net/httpd.c), over
 * real sockets on 127.0.0.1 with a kernel-picked port, called with vslice's
 * own client (http.h) or a raw socket where the client would hide the case:
 * routing and the raw target, JSON and {"error"} answers, the body cap
 * (declared and chunked), a body_grow refusal, a streamed upload, an
 * answer from an fd, a streamed answer (chunks until its source says the
 * end; its source freed also when the answer is replaced), a busy port refused, a bad --listen, the
 * accept / connection hooks, the cap per address, a long-poll suspended and resumed from another
 * thread, resumes held back in order (resume_batch), a stop while a request is suspended, upgraded
 * connections (101: the stream echoed, bytes sent with the request kept, the stream's arg freed, a
 * stop with a stream open waits for it), and TLS with a certificate made by openssl here, an
 * upgraded stream through it with http_upgrade (skipped, saying so, without openssl).
 *
 * Nothing is timed: every wait is on a condition the server signals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vslice/http.h"
#include "vslice/httpd.h"
#include "vslice/util.h"

/* ---- a small server under test ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int marker_stream;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct httpd_request *parked; /* under mu: the suspended /wait */
static bool release;		     /* under mu: /wait may answer */
static bool poll_over;		     /* under mu: the poller got its answer */
static unsigned conns_open, conns_closed, dones;
static bool refuse_accept;

struct upload {
	int fd;
	size_t bytes;
};

static void on_begin(struct httpd_request *req, struct httpd_answer *a)
{
	if (!strcmp(req->url, "/early")) {
		httpd_answer_error(a, 401, "%s %s: missing bearer token", req->method, req->url);
		return;
	}
	if (!strcmp(req->method, "PUT") && !strcmp(req->url, "/upload")) {
		struct upload *u = vs_xcalloc(1, sizeof(*u));
		u->fd = memfd_create("upload", MFD_CLOEXEC);
		assert_true(u->fd >= 0);
		req->data = u;
		httpd_stream_body(req);
	}
}

static int on_data(struct httpd_request *req, const char *buf, size_t len)
{
	struct upload *u = req->data;
	u->bytes += len;
	return vs_write_all(u->fd, buf, len);
}

static int on_grow(struct httpd_request *req, size_t total, struct httpd_answer *a)
{
	if (!strcmp(req->url, "/budget") && total > 10) {
		httpd_answer_error(a, 429, "%s: over this token's budget", req->url);
		return -1;
	}
	return 0;
}

/* /many?i=K (K < MANY): parked until resumed, then answers; the order in
 * which resumed handlers ran is kept. */
#define MANY 6
static struct httpd_request *many_parked[MANY]; /* under mu */
static bool many_seen[MANY];			/* under mu */
static unsigned many_nparked, many_order[MANY], many_nrun;

static void many_handle(struct httpd_request *req, struct httpd_answer *a)
{
	const char *i = httpd_query(req, "i");
	unsigned k = i ? (unsigned)atoi(i) : MANY;
	if (k >= MANY) {
		httpd_answer_error(a, 400, "i");
		return;
	}
	pthread_mutex_lock(&mu);
	if (!many_seen[k]) {
		many_seen[k] = true;
		many_parked[k] = req;
		many_nparked++;
		httpd_suspend(req);
		pthread_cond_broadcast(&cond);
	} else {
		many_order[many_nrun++] = k;
		httpd_answer_error(a, 200, "resumed %u", k);
	}
	pthread_mutex_unlock(&mu);
}

/* A streamed answer's source: "chunk0".."chunk4", then the end. */
struct chunks {
	int next;
};
static unsigned chunks_freed; /* under mu */

static ssize_t chunks_read(void *cls, char *buf, size_t max)
{
	struct chunks *c = cls;
	if (c->next == 5)
		return 0;
	return snprintf(buf, max, "chunk%d;", c->next++);
}

static void chunks_free(void *cls)
{
	free(cls);
	pthread_mutex_lock(&mu);
	chunks_freed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

/* ---- upgraded streams: an echo until EOF ---- */
static unsigned streams_run, streams_freed; /* under mu */

static void echo_stream(void *arg, int fd, const char *extra, size_t extra_len)
{
	(void)arg;
	if (extra_len)
		assert_int_equal(send(fd, extra, extra_len, MSG_NOSIGNAL), (ssize_t)extra_len);
	char buf[4096];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, -1);
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0 || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	}
	pthread_mutex_lock(&mu);
	streams_run++;
	pthread_mutex_unlock(&mu);
}

static void stream_free(void *arg)
{
	assert_ptr_equal(arg, &marker_stream);
	/* A free_arg that takes a while: httpd_stop must still wait for it
	 * (it returned before the free had run, once in ~40 runs). */
	usleep(100 * 1000);
	pthread_mutex_lock(&mu);
	streams_freed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static void on_handle(struct httpd_request *req, struct httpd_answer *a)
{
	if (!strcmp(req->url, "/stream") || !strcmp(req->url, "/stream-replaced")) {
		httpd_answer_stream(a, 200, chunks_read, chunks_free,
				    vs_xcalloc(1, sizeof(struct chunks)), "text/plain");
		httpd_answer_header(a, "X-Stream", "yes");
		if (!strcmp(req->url, "/stream-replaced"))
			httpd_answer_error(a, 409, "changed my mind");
		return;
	}
	if (!strcmp(req->url, "/upgrade")) {
		if (httpd_wants_upgrade(req, "echo/1"))
			httpd_answer_upgrade(a, "echo/1", echo_stream, &marker_stream, stream_free);
		else
			httpd_answer_error(a, 426, "echo/1 only");
	} else if (!strcmp(req->url, "/echo") || !strcmp(req->url, "/budget")) {
		json_t *j =
		    json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?}", "method", req->method, "url",
			      req->url, "raw", httpd_raw_url(req), "q", httpd_query(req, "q"),
			      "body", req->body, "hdr", httpd_header(req, "X-Test"));
		httpd_answer_json(a, 200, j);
		httpd_answer_header(a, "X-Vslice-Index", "42");
		json_decref(j);
	} else if (!strcmp(req->url, "/null")) {
		httpd_answer_json(a, 200, NULL); /* what a failed json_pack hands over */
	} else if (!strcmp(req->url, "/upload")) {
		struct upload *u = req->data;
		char sha[VS_SHA256_HEX];
		lseek(u->fd, 0, SEEK_SET);
		assert_int_equal(vs_sha256_fd(u->fd, sha), 0);
		json_t *j = json_pack("{s:I, s:s}", "bytes", (json_int_t)u->bytes, "sha256", sha);
		httpd_answer_json(a, 201, j);
		json_decref(j);
	} else if (!strcmp(req->url, "/file")) {
		int fd = memfd_create("answer", MFD_CLOEXEC);
		assert_int_equal(vs_write_all(fd, "0123456789abcdef", 16), 0);
		httpd_answer_fd(a, 200, fd, 4, 0, false, "text/plain");
		httpd_answer_header(a, "X-Vslice-Log-Size", "16");
	} else if (!strcmp(req->url, "/many")) {
		many_handle(req, a);
	} else if (!strcmp(req->url, "/wait")) {
		pthread_mutex_lock(&mu);
		if (httpd_stopping(req->srv)) {
			httpd_answer_error(a, 503, "stopping");
		} else if (!release) {
			parked = req;
			httpd_suspend(req);
			pthread_cond_broadcast(&cond);
		} else {
			json_t *j = json_pack("{s:b}", "resumed", 1);
			httpd_answer_json(a, 200, j);
			json_decref(j);
		}
		pthread_mutex_unlock(&mu);
	} else {
		httpd_answer_error(a, 404, "%s %s: no such endpoint", req->method, req->url);
	}
}

static unsigned answered[6]; /* under mu: answers by status class */

/* Every answer passes here: counted, and /secret's replaced (as the
 * registry replaces an answer a token cannot afford). */
static void on_answer(struct httpd_request *req, struct httpd_answer *a)
{
	if (!strcmp(req->url, "/secret")) {
		httpd_answer_clear(a);
		httpd_answer_error(a, 429, "%s: over budget", req->url);
	}
	pthread_mutex_lock(&mu);
	answered[a->status / 100 < 6 ? a->status / 100 : 0]++;
	pthread_mutex_unlock(&mu);
}

static void on_done(struct httpd_request *req, bool completed)
{
	struct upload *u = req->data;
	if (u) {
		close(u->fd);
		free(u);
	}
	pthread_mutex_lock(&mu);
	if (parked == req)
		parked = NULL;
	dones++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static bool on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	return !__atomic_load_n(&refuse_accept, __ATOMIC_SEQ_CST);
}

static void *on_conn_open(void *cls, const struct sockaddr *addr)
{
	__atomic_add_fetch(&conns_open, 1, __ATOMIC_SEQ_CST);
	return cls;
}

static void on_conn_close(void *cls, void *ctx)
{
	assert_ptr_equal(cls, ctx);
	pthread_mutex_lock(&mu);
	conns_closed++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static const struct httpd_ops ops = {
    .begin = on_begin,
    .data = on_data,
    .body_grow = on_grow,
    .handle = on_handle,
    .answer = on_answer,
    .done = on_done,
    .accept = on_accept,
    .conn_open = on_conn_open,
    .conn_close = on_conn_close,
};

static int marker;

static unsigned threads = 2;

static struct httpd *start(const char *listen, unsigned per_addr)
{
	struct httpd_config cfg = {.name = "test server",
				   .listen = listen,
				   .body_max = 64,
				   .per_addr_limit = per_addr,
				   .threads = threads,
				   .upgrades = true,
				   .ops = &ops,
				   .cls = &marker};
	struct httpd *h;
	struct vs_error err;
	int r = httpd_start(&cfg, &h, &err);
	if (r < 0)
		fail_msg("httpd_start: %s", err.msg);
	assert_true(httpd_port(h) > 0);
	assert_ptr_equal(httpd_cls(h), &marker);
	return h;
}

static void client(struct http_client *c, struct httpd *h, const char *scheme, const char *ca)
{
	char base[64];
	snprintf(base, sizeof(base), "%s://127.0.0.1:%u", scheme, httpd_port(h));
	struct vs_error err;
	if (http_client_init(c, base, NULL, ca, &err) < 0)
		fail_msg("http_client_init: %s", err.msg);
}

/* ---- tests ---- */

static void test_json_routing_and_raw_target(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	json_t *body = json_pack("{s:i}", "n", 1), *resp = NULL;
	long status;
	long long index;
	struct vs_error err;
	assert_int_equal(
	    http_json(&c, "POST", "/echo?q=a%20b", body, 0, &status, &resp, &index, &err), 0);
	assert_int_equal(status, 200);
	assert_int_equal(index, 42);
	assert_string_equal(json_string_value(json_object_get(resp, "method")), "POST");
	assert_string_equal(json_string_value(json_object_get(resp, "url")), "/echo");
	assert_string_equal(json_string_value(json_object_get(resp, "raw")), "/echo?q=a%20b");
	assert_string_equal(json_string_value(json_object_get(resp, "q")), "a b");
	assert_string_equal(json_string_value(json_object_get(resp, "body")), "{\"n\":1}");
	json_decref(resp);
	resp = NULL;
	/* An unknown path: the handler's {"error"} arrives as the message. */
	assert_int_equal(http_json(&c, "GET", "/nope", NULL, 0, &status, NULL, NULL, &err),
			 -ENOENT);
	assert_int_equal(status, 404);
	assert_string_equal(err.msg, "GET /nope: no such endpoint");
	/* The answer hook sees (and may replace) every answer. */
	pthread_mutex_lock(&mu);
	unsigned ok_before = answered[2], refused_before = answered[4];
	pthread_mutex_unlock(&mu);
	assert_int_equal(http_json(&c, "GET", "/secret", NULL, 0, &status, NULL, NULL, &err), -EIO);
	assert_int_equal(status, 429);
	assert_string_equal(err.msg, "/secret: over budget");
	pthread_mutex_lock(&mu);
	unsigned ok_after = answered[2], refused_after = answered[4];
	pthread_mutex_unlock(&mu);
	assert_int_equal(ok_after, ok_before);
	assert_int_equal(refused_after, refused_before + 1);
	/* A JSON answer that could not be built: a 500 that says so. */
	assert_int_equal(http_json(&c, "GET", "/null", NULL, 0, &status, NULL, NULL, &err), -EIO);
	assert_int_equal(status, 500);
	assert_string_equal(err.msg, "the answer could not be encoded");
	/* Answered from begin, before the body. */
	assert_int_equal(http_json(&c, "GET", "/early", NULL, 0, &status, NULL, NULL, &err),
			 -EACCES);
	assert_string_equal(err.msg, "GET /early: missing bearer token");
	json_decref(body);
	http_client_free(&c);
	httpd_stop(h);
}

static void test_body_cap(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	long status;
	struct vs_error err;
	char big[100];
	memset(big, 'x', sizeof(big));
	/* Declared (Content-Length): refused before it is read. */
	assert_int_equal(http_put_buf(&c, "/echo", big, sizeof(big), NULL, &status, &err), -EFBIG);
	assert_int_equal(status, 413);
	assert_string_equal(err.msg, "PUT /echo: request body larger than 64 bytes");
	/* Chunked (no length): refused once collected past the cap. */
	int fd = memfd_create("big", MFD_CLOEXEC);
	assert_int_equal(vs_write_all(fd, big, sizeof(big)), 0);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(http_put_fd(&c, "/echo", fd, NULL, &status, &err), -EFBIG);
	assert_int_equal(status, 413);
	assert_string_equal(err.msg, "PUT /echo: request body larger than 64 bytes");
	/* At the cap: taken. */
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(ftruncate(fd, 64), 0);
	assert_int_equal(http_put_fd(&c, "/echo", fd, NULL, &status, &err), 0);
	close(fd);
	/* body_grow refuses past 10 bytes: its answer, after the body. */
	assert_int_equal(http_put_buf(&c, "/budget", big, 11, NULL, &status, &err), -EIO);
	assert_int_equal(status, 429);
	assert_string_equal(err.msg, "/budget: over this token's budget");
	assert_int_equal(http_put_buf(&c, "/budget", big, 10, NULL, &status, &err), 0);
	http_client_free(&c);
	httpd_stop(h);
}

static void test_streamed_upload_and_fd_answer(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	long status;
	struct vs_error err;
	/* Streamed: past body_max (64), the handler sees every byte. */
	char data[200];
	memset(data, 'u', sizeof(data));
	int fd = memfd_create("up", MFD_CLOEXEC);
	assert_int_equal(vs_write_all(fd, data, sizeof(data)), 0);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(http_put_fd(&c, "/upload", fd, NULL, &status, &err), 0);
	assert_int_equal(status, 201);
	close(fd);

	/* From an fd, at an offset, to EOF, with a header. */
	int out = memfd_create("out", MFD_CLOEXEC);
	char size[16];
	assert_int_equal(
	    http_get_fd(&c, "/file", out, "X-Vslice-Log-Size", size, sizeof(size), &status, &err),
	    0);
	assert_string_equal(size, "16");
	char got[32] = "";
	assert_int_equal(pread(out, got, sizeof(got) - 1, 0), 12);
	assert_string_equal(got, "456789abcdef");
	close(out);
	http_client_free(&c);
	httpd_stop(h);
}

static void wait_freed(unsigned n)
{
	pthread_mutex_lock(&mu);
	while (chunks_freed < n)
		pthread_cond_wait(&cond, &mu);
	pthread_mutex_unlock(&mu);
}

/* A streamed answer: every chunk, in order, then the end; its source freed. */
static void test_streamed_answer(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	long status;
	struct vs_error err;
	pthread_mutex_lock(&mu);
	unsigned freed = chunks_freed;
	pthread_mutex_unlock(&mu);
	int out = memfd_create("out", MFD_CLOEXEC);
	char hdr[16];
	assert_int_equal(
	    http_get_fd(&c, "/stream", out, "X-Stream", hdr, sizeof(hdr), &status, &err), 0);
	assert_int_equal(status, 200);
	assert_string_equal(hdr, "yes");
	char got[128] = "";
	assert_int_equal(pread(out, got, sizeof(got) - 1, 0), 35);
	assert_string_equal(got, "chunk0;chunk1;chunk2;chunk3;chunk4;");
	close(out);
	wait_freed(freed + 1);
	/* Replaced by an error before it was sent: the error goes out, the
	 * source is freed all the same. */
	json_t *j = NULL;
	assert_int_equal(http_json(&c, "GET", "/stream-replaced", NULL, 0, &status, &j, NULL, &err),
			 -EEXIST);
	assert_int_equal(status, 409);
	json_decref(j);
	wait_freed(freed + 2);
	http_client_free(&c);
	httpd_stop(h);
}

/* The whole streamed upload arrived intact (sha256 over 3 MiB). */
static void test_streamed_upload_intact(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	size_t n = 3u << 20;
	char *buf = vs_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i * 7 + (i >> 12));
	char want[VS_SHA256_HEX];
	vs_sha256_buf(buf, n, want);
	long status;
	json_t *resp = NULL;
	struct vs_error err;
	assert_int_equal(http_put_buf_resp(&c, "/upload", buf, n, NULL, &status, &resp, &err), 0);
	free(buf);
	assert_int_equal(json_integer_value(json_object_get(resp, "bytes")), (json_int_t)n);
	assert_string_equal(json_string_value(json_object_get(resp, "sha256")), want);
	json_decref(resp);
	http_client_free(&c);
	httpd_stop(h);
}

static void test_ipv6(void **state)
{
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
	if (probe >= 0)
		close(probe);
	if (!have_v6) {
		print_message("test_ipv6: SKIPPED: no ::1 on this machine\n");
		skip();
	}
	struct httpd *h = start("[::1]:0", 0);
	char base[64];
	snprintf(base, sizeof(base), "http://[::1]:%u", httpd_port(h));
	struct http_client c;
	struct vs_error err;
	assert_int_equal(http_client_init(&c, base, NULL, NULL, &err), 0);
	long status;
	assert_int_equal(http_json(&c, "GET", "/echo", NULL, 0, &status, NULL, NULL, &err), 0);
	http_client_free(&c);
	httpd_stop(h);
}

static void test_busy_port_and_bad_listen(void **state)
{
	struct httpd *a = start("127.0.0.1:0", 0);
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", httpd_port(a));
	struct httpd_config cfg = {.name = "second", .listen = listen, .ops = &ops};
	struct httpd *b = NULL;
	struct vs_error err;
	assert_int_equal(httpd_start(&cfg, &b, &err), -EADDRINUSE);
	assert_null(b);
	assert_int_equal(err.kind, VS_EK_BUSY);
	assert_non_null(strstr(err.msg, "address already in use"));
	assert_non_null(strstr(err.msg, listen));
	/* The first one still serves. */
	struct http_client c;
	client(&c, a, "http", NULL);
	long status;
	assert_int_equal(http_json(&c, "GET", "/echo", NULL, 0, &status, NULL, NULL, &err), 0);
	http_client_free(&c);

	cfg.listen = "localhost:80";
	assert_int_equal(httpd_start(&cfg, &b, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "second: --listen localhost:80: localhost is not an IP address");
	cfg.listen = "127.0.0.1:0";
	cfg.cert_pem = "x";
	assert_int_equal(httpd_start(&cfg, &b, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "both a certificate and a key"));
	httpd_stop(a);
}

static void test_accept_hook_and_connections(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	long status;
	struct vs_error err;
	unsigned before = __atomic_load_n(&conns_open, __ATOMIC_SEQ_CST);
	assert_int_equal(http_json(&c, "GET", "/echo", NULL, 0, &status, NULL, NULL, &err), 0);
	assert_true(__atomic_load_n(&conns_open, __ATOMIC_SEQ_CST) > before);
	http_client_free(&c); /* closes the connection */
	__atomic_store_n(&refuse_accept, true, __ATOMIC_SEQ_CST);
	client(&c, h, "http", NULL);
	assert_true(http_json(&c, "GET", "/echo", NULL, 0, &status, NULL, NULL, &err) < 0);
	assert_int_equal(status, 0); /* no HTTP answer: closed at accept */
	http_client_free(&c);
	__atomic_store_n(&refuse_accept, false, __ATOMIC_SEQ_CST);
	httpd_stop(h);
	/* Every connection opened was closed, through the hook. */
	pthread_mutex_lock(&mu);
	assert_int_equal(conns_open, conns_closed);
	pthread_mutex_unlock(&mu);
}

/* Send n bytes through an upgraded echo stream and read them back. */
static void upgraded_echo(struct http_upgraded *u, size_t n)
{
	unsigned char *out = vs_xmalloc(n), *back = vs_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(i * 7 + 3);
	size_t sent = 0, got = 0;
	struct vs_error err;
	while (got < n) {
		struct pollfd p = {.fd = http_upgraded_fd(u),
				   .events = (short)(POLLIN | (sent < n ? POLLOUT : 0))};
		ssize_t r;
		if (sent < n &&
		    (r = http_upgraded_send(u, out + sent, n - sent, &err)) != -EAGAIN) {
			assert_true(r > 0);
			sent += (size_t)r;
		}
		while ((r = http_upgraded_recv(u, back + got, n - got, &err)) > 0)
			got += (size_t)r;
		assert_int_equal(r == 0 && got < n, 0); /* no EOF before the end */
		if (got < n)
			poll(&p, 1, -1);
	}
	assert_memory_equal(out, back, n);
	free(out);
	free(back);
}

static int tcp_connect(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* Send one keep-alive request; return the bytes read until the header end
 * (or EOF: 0). */
static ssize_t roundtrip(int fd)
{
	const char req[] = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
	/* send, not write: a peer that closed must not SIGPIPE the test */
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		return -1;
	char buf[4096];
	size_t got = 0;
	while (got < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			return r < 0 ? -1 : (ssize_t)got;
		got += (size_t)r;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return (ssize_t)got;
	}
	return (ssize_t)got;
}

static void test_per_address_cap(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 1);
	int a = tcp_connect(httpd_port(h));
	assert_true(roundtrip(a) > 0); /* a is in, and counted */
	int b = tcp_connect(httpd_port(h));
	assert_true(roundtrip(b) <= 0); /* the second one from 127.0.0.1: closed */
	assert_true(roundtrip(a) > 0);	/* the first still served */
	close(b);
	close(a);
	httpd_stop(h);
}

/* A request cut off after its request line, and one cut off in its body:
 * every request object is freed (ASan's leak check in make unit-asan), and
 * the handler's done hook runs only for requests it saw begin. */
static void test_cut_off_requests(void **state)
{
	/* One thread, one poll loop: a connection accepted before the probe
	 * has had its bytes read by the time the probe is answered. */
	threads = 1;
	struct httpd *h = start("127.0.0.1:0", 0);
	threads = 2;
	pthread_mutex_lock(&mu);
	unsigned dones_before = dones;
	pthread_mutex_unlock(&mu);
	const char *cuts[] = {
	    "GET /echo HTTP/1.1\r\nHost: x\r\n",
	    "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789",
	    "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789",
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(cuts); i++) {
		int fd = tcp_connect(httpd_port(h));
		assert_int_equal(send(fd, cuts[i], strlen(cuts[i]), MSG_NOSIGNAL),
				 (ssize_t)strlen(cuts[i]));
		/* The probe connects after the cut request was sent, so once
		 * the probe is answered the cut one has been read. */
		int probe = tcp_connect(httpd_port(h));
		assert_true(roundtrip(probe) > 0);
		close(probe);
		close(fd);
	}
	httpd_stop(h);
	pthread_mutex_lock(&mu);
	unsigned d = dones - dones_before;
	pthread_mutex_unlock(&mu);
	/* 3 probes + the 2 cut requests whose headers were complete. */
	assert_int_equal(d, 5);
}

struct poll_arg {
	struct httpd *h;
	int rc;
	long status;
	char msg[VS_ERROR_MAX];
};

static void *poller(void *arg)
{
	struct poll_arg *p = arg;
	struct http_client c;
	client(&c, p->h, "http", NULL);
	struct vs_error err = {0};
	p->rc = http_json(&c, "GET", "/wait", NULL, 30, &p->status, NULL, NULL, &err);
	snprintf(p->msg, sizeof(p->msg), "%s", err.msg);
	http_client_free(&c);
	pthread_mutex_lock(&mu);
	poll_over = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* Until the /wait request is parked (or, if the server answered it at
 * once instead, until the poller is back: the caller's checks then fail). */
static void wait_parked(void)
{
	pthread_mutex_lock(&mu);
	while (!parked && !poll_over)
		pthread_cond_wait(&cond, &mu);
	bool ok = parked != NULL;
	pthread_mutex_unlock(&mu);
	assert_true(ok);
}

static void test_suspend_resume(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	release = poll_over = false;
	struct poll_arg p = {.h = h};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, poller, &p), 0);
	wait_parked();
	/* Resumed from this thread: the handler runs again and answers. */
	pthread_mutex_lock(&mu);
	release = true;
	struct httpd_request *q = parked;
	pthread_mutex_unlock(&mu);
	httpd_resume(q);
	pthread_join(t, NULL);
	assert_int_equal(p.rc, 0);
	assert_int_equal(p.status, 200);
	httpd_stop(h);
}

struct many_arg {
	struct httpd *h;
	unsigned k;
	long status;
};

static void *many_poller(void *arg)
{
	struct many_arg *p = arg;
	struct http_client c;
	client(&c, p->h, "http", NULL);
	struct vs_error err = {0};
	char path[32];
	snprintf(path, sizeof(path), "/many?i=%u", p->k);
	http_json(&c, "GET", path, NULL, 30, &p->status, NULL, NULL, &err);
	http_client_free(&c);
	return NULL;
}

/* resume_batch 1: one resumed request at a time waits for its handler; the
 * rest are resumed, in the order httpd_resume was called, as each runs.
 * None is lost. */
static void test_resume_batch(void **state)
{
	struct httpd_config cfg = {.name = "test server",
				   .listen = "127.0.0.1:0",
				   .threads = 2,
				   .resume_batch = 1,
				   .ops = &ops,
				   .cls = &marker};
	struct httpd *h;
	struct vs_error err;
	if (httpd_start(&cfg, &h, &err) < 0)
		fail_msg("httpd_start: %s", err.msg);
	struct many_arg args[MANY];
	pthread_t t[MANY];
	for (unsigned k = 0; k < MANY; k++) {
		args[k] = (struct many_arg){.h = h, .k = k};
		assert_int_equal(pthread_create(&t[k], NULL, many_poller, &args[k]), 0);
	}
	pthread_mutex_lock(&mu);
	while (many_nparked < MANY)
		pthread_cond_wait(&cond, &mu);
	struct httpd_request *q[MANY];
	memcpy(q, many_parked, sizeof(q));
	pthread_mutex_unlock(&mu);
	for (unsigned k = MANY; k-- > 0;) /* last parked, first resumed */
		httpd_resume(q[k]);
	for (unsigned k = 0; k < MANY; k++) {
		pthread_join(t[k], NULL);
		assert_int_equal(args[k].status, 200);
	}
	pthread_mutex_lock(&mu);
	assert_int_equal(many_nrun, MANY);
	for (unsigned k = 0; k < MANY; k++)
		assert_int_equal(many_order[k], MANY - 1 - k);
	pthread_mutex_unlock(&mu);
	httpd_stop(h);
}

static void test_stop_while_suspended(void **state)
{
	struct httpd *h = start("127.0.0.1:0", 0);
	release = poll_over = false;
	struct poll_arg p = {.h = h};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, poller, &p), 0);
	wait_parked();
	/* No panic, no hang: the parked request answers "stopping". */
	httpd_stop(h);
	pthread_join(t, NULL);
	assert_int_equal(p.status, 503);
	assert_int_equal(p.rc, -EAGAIN);
	assert_string_equal(p.msg, "stopping");
}

/* ---- TLS ---- */

static char tls_dir[] = "/tmp/vslice-test-httpd-XXXXXX";

static bool make_cert(const char *name, const char *cn)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=%s "
		 "-addext subjectAltName=IP:127.0.0.1 -keyout %s/%s.key -out %s/%s.crt "
		 ">/dev/null 2>&1",
		 cn, tls_dir, name, tls_dir, name);
	return system(cmd) == 0;
}

static char *slurp(const char *name, const char *ext)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s.%s", tls_dir, name, ext);
	char *text = NULL;
	struct vs_error err;
	if (vs_read_file(path, 1 << 20, &text, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return text;
}

static void test_upgrade(void **state)
{
	(void)state;
	pthread_mutex_lock(&mu);
	streams_run = streams_freed = 0;
	pthread_mutex_unlock(&mu);
	struct httpd *h = start("127.0.0.1:0", 0);
	struct http_client c;
	client(&c, h, "http", NULL);
	struct vs_error err;
	long status;
	struct http_upgraded *u;
	assert_int_equal(http_upgrade(&c, "/upgrade", "echo/1", &u, &status, &err), 0);
	assert_int_equal(status, 101);
	upgraded_echo(u, 300000);
	http_upgraded_close(u);
	/* Another protocol: the server's 426 and its words. */
	assert_int_equal(http_upgrade(&c, "/upgrade", "other/1", &u, &status, &err), -EIO);
	assert_int_equal(status, 426);
	assert_string_equal(err.msg, "echo/1 only");
	assert_null(u);
	http_client_free(&c);
	pthread_mutex_lock(&mu);
	while (streams_freed < 1)
		pthread_cond_wait(&cond, &mu);
	assert_int_equal(streams_run, 1);
	pthread_mutex_unlock(&mu);

	/* An upgrade answered that libmicrohttpd cannot send (HTTP/1.0): the
	 * connection closes, the stream never runs, its arg is freed. */
	int fd = tcp_connect(httpd_port(h));
	const char old[] =
	    "GET /upgrade HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\n";
	assert_int_equal(send(fd, old, sizeof(old) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(old) - 1);
	char buf[4096];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	pthread_mutex_lock(&mu);
	while (streams_freed < 2)
		pthread_cond_wait(&cond, &mu);
	assert_int_equal(streams_run, 1);
	pthread_mutex_unlock(&mu);

	/* Raw: bytes sent right behind the request reach the stream first;
	 * then a stop while it is open shuts it down and waits for it. */
	fd = tcp_connect(httpd_port(h));
	const char req[] = "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
			   "Upgrade: ECHO/1\r\n\r\nearly";
	assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
	size_t got = 0;
	buf[0] = '\0';
	while (got < sizeof(buf) - 1 && !strstr(buf, "early")) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		assert_true(n > 0);
		got += (size_t)n;
		buf[got] = '\0';
	}
	assert_non_null(strstr(buf, "HTTP/1.1 101"));
	assert_non_null(strstr(buf, "\r\n\r\nearly"));
	httpd_stop(h); /* returns only once echo_stream has */
	pthread_mutex_lock(&mu);
	assert_int_equal(streams_run, 2);
	assert_int_equal(streams_freed, 3);
	pthread_mutex_unlock(&mu);
	assert_int_equal(read(fd, buf, sizeof(buf)), 0); /* closed */
	close(fd);
}

static void test_tls(void **state)
{
	if (system("openssl version >/dev/null 2>&1") != 0) {
		print_message("test_tls: SKIPPED: no openssl to make a certificate with\n");
		skip();
	}
	assert_non_null(mkdtemp(tls_dir));
	assert_true(make_cert("a", "127.0.0.1"));
	assert_true(make_cert("b", "127.0.0.1"));
	cleanup_free char *cert = slurp("a", "crt"), *key = slurp("a", "key"),
			  *other_key = slurp("b", "key");
	struct httpd_config cfg = {.name = "tls server",
				   .listen = "127.0.0.1:0",
				   .cert_pem = cert,
				   .key_pem = key,
				   .body_max = 64,
				   .thread_per_conn = true, /* as the node manager's API */
				   .upgrades = true,
				   .ops = &ops};
	struct httpd *h;
	struct vs_error err;
	if (httpd_start(&cfg, &h, &err) < 0)
		fail_msg("httpd_start: %s", err.msg);
	char ca[256];
	snprintf(ca, sizeof(ca), "%s/a.crt", tls_dir);
	struct http_client c;
	client(&c, h, "https", ca);
	long status;
	json_t *resp = NULL;
	assert_int_equal(http_json(&c, "GET", "/echo", NULL, 0, &status, &resp, NULL, &err), 0);
	assert_string_equal(json_string_value(json_object_get(resp, "url")), "/echo");
	json_decref(resp);
	/* An upgraded stream through TLS (libmicrohttpd relays it). */
	struct http_upgraded *u;
	assert_int_equal(http_upgrade(&c, "/upgrade", "echo/1", &u, &status, &err), 0);
	assert_int_equal(status, 101);
	upgraded_echo(u, 100000);
	http_upgraded_close(u);
	http_client_free(&c);
	/* Another CA: the client refuses the server. */
	snprintf(ca, sizeof(ca), "%s/b.crt", tls_dir);
	client(&c, h, "https", ca);
	assert_int_equal(http_json(&c, "GET", "/echo", NULL, 0, &status, NULL, NULL, &err),
			 -EACCES);
	http_client_free(&c);
	/* TLS 1.1 is refused (the priorities allow 1.2 and 1.3 only). */
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect 127.0.0.1:%u -tls1_1 -cipher DEFAULT@SECLEVEL=0 "
		 "</dev/null >/dev/null 2>&1",
		 httpd_port(h));
	assert_int_not_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect 127.0.0.1:%u -tls1_2 </dev/null >/dev/null 2>&1",
		 httpd_port(h));
	assert_int_equal(system(cmd), 0);
	httpd_stop(h);

	/* A key that is not the certificate's: the start fails, saying why. */
	cfg.key_pem = other_key;
	assert_int_equal(httpd_start(&cfg, &h, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "tls server: --tls-cert/--tls-key: cannot set up TLS"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_routing_and_raw_target),
	    cmocka_unit_test(test_body_cap),
	    cmocka_unit_test(test_streamed_upload_and_fd_answer),
	    cmocka_unit_test(test_streamed_upload_intact),
	    cmocka_unit_test(test_streamed_answer),
	    cmocka_unit_test(test_busy_port_and_bad_listen),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_accept_hook_and_connections),
	    cmocka_unit_test(test_per_address_cap),
	    cmocka_unit_test(test_cut_off_requests),
	    cmocka_unit_test(test_suspend_resume),
	    cmocka_unit_test(test_stop_while_suspended),
	    cmocka_unit_test(test_resume_batch),
	    cmocka_unit_test(test_upgrade),
	    cmocka_unit_test(test_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
