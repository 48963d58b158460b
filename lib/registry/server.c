/*
 * server.c - the registry on lib/net's HTTP server (httpd.h): who may ask
 * (tokens, connections, memory), how request bodies arrive, long-polls and
 * the timer.
 *
 * httpd.c owns the socket and libmicrohttpd: its own listening socket (a
 * busy port is refused, never shared), poll() mode (a client that dies
 * mid-upload is seen at once, and its temp file goes with it), TLS 1.2/1.3
 * from PEM in memory, suspend/resume, and the stop that answers parked
 * requests. What is the registry's is here, one hook each:
 *
 *   accept, conn_open/close  limits.c: connections per address, with
 *                            headroom kept for node and admin addresses;
 *   begin                    the token (unknown: 401 before any body is
 *                            read), then the idle timeout raised from
 *                            REG_HEADER_TIMEOUT to a long-poll's, the
 *                            address trusted for a node or admin token; an
 *                            upload (log, result file) is streamed
 *                            (api_upload_begin opens its temp file), a JSON
 *                            body's Content-Length charged up front;
 *   data                     an upload's bytes: hashed and written to the
 *                            temp file as they come;
 *   body_grow                a JSON body charged to its token as it grows
 *                            (429 past the token's share, 503 past the
 *                            registry's);
 *   handle                   api.c's answer; a long-poll with nothing new
 *                            parks (httpd_suspend) in reg->waiters;
 *   answer                   every answer counted by status class, an
 *                            answer in memory charged to the token;
 *   done                     charges released, the temp file removed.
 *
 * No hook blocks. A commit that bumps the revision (reg_wake), the timer (a
 * wait that is over) or registry_stop resumes parked polls: handle runs
 * again and answers. A change that lands between building an answer and
 * parking is caught by re-checking the revision under reg->lock (the lock
 * a commit holds while it wakes the waiters), so no poll sleeps through it.
 *
 * Locks: reg->lock, then httpd's own (httpd_suspend/resume take it); done
 * takes reg->lock only for a request still parked, which httpd has already
 * taken off its list.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "registry_int.h"
#include "vslice/util.h"

/* Resume every waiter whose index the revision passed, whose wait is over
 * (now: reg_now_ms()), or all when stopping. Expects reg->lock. */
static void resume_waiters(struct registry *reg, long long now)
{
	struct waiter **pp = &reg->waiters;
	while (*pp) {
		struct waiter *w = *pp;
		if (reg->stopping || reg->revision > w->index || now >= w->deadline) {
			*pp = w->next;
			w->req->waiting = NULL;
			httpd_resume(w->req->http);
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

void reg_wake(struct registry *reg)
{
	resume_waiters(reg, reg_now_ms());
}

void reg_count_status(struct registry *reg, unsigned status)
{
	unsigned cls = status / 100;
	reg->requests[cls < VS_ARRAY_SIZE(reg->requests) ? cls : 0]++;
}

const char *reg_query(struct reg_request *req, const char *key)
{
	return httpd_query(req->http, key);
}

const char *reg_header(struct reg_request *req, const char *name)
{
	return httpd_header(req->http, name);
}

static void answer_free(struct reg_answer *a)
{
	free(a->body);
	if (a->fd >= 0)
		close(a->fd);
	for (size_t i = 0; i < VS_ARRAY_SIZE(a->headers); i++) {
		free(a->headers[i][0]);
		free(a->headers[i][1]);
	}
	memset(a, 0, sizeof(*a));
	a->fd = -1;
}

void api_error(struct reg_answer *a, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *j = httpd_error_vjson(fmt, ap);
	va_end(ap);
	free(a->body);
	a->status = status;
	a->body = json_dumps(j, JSON_COMPACT);
	a->len = strlen(a->body);
	a->content_type = "application/json";
	json_decref(j);
}

/* Hand api.c's answer over to httpd (ra is left empty). */
static void to_httpd(struct reg_answer *ra, struct httpd_answer *a)
{
	httpd_answer_clear(a);
	a->status = ra->status;
	a->body = steal_pointer(&ra->body);
	a->len = ra->len;
	a->content_type = ra->content_type;
	a->fd = ra->fd;
	ra->fd = -1;
	a->fd_offset = ra->fd_offset > 0 ? (uint64_t)ra->fd_offset : 0;
	a->fd_len = ra->fd_len;
	a->fd_len_set = ra->fd_len_set;
	_Static_assert(VS_ARRAY_SIZE(ra->headers) <= HTTPD_HEADERS_MAX, "answer headers");
	for (size_t i = 0; i < VS_ARRAY_SIZE(ra->headers); i++) {
		a->headers[i][0] = steal_pointer(&ra->headers[i][0]);
		a->headers[i][1] = steal_pointer(&ra->headers[i][1]);
	}
	answer_free(ra);
}

/* A refusal to hold n more bytes (lim_mem_charge's r: -1 the token's
 * share, -2 the registry's) as the answer. */
static void over_budget(struct httpd_answer *a, struct reg_request *req, const char *what,
			unsigned long long n, int r)
{
	if (r == -1)
		httpd_answer_error(a, 429,
				   "%s %s: %s of %llu bytes: this token already holds %u MiB of "
				   "requests and answers in the registry's memory; retry later",
				   req->method, req->url, what, n, REG_TOKEN_MEM >> 20);
	else
		httpd_answer_error(a, 503,
				   "%s %s: %s of %llu bytes: the registry holds %u MiB of requests "
				   "and answers in memory; retry later",
				   req->method, req->url, what, n, REG_TOTAL_MEM >> 20);
}

/* ---- hooks -------------------------------------------------------- */

static bool on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct registry *reg = cls;
	return lim_accept(&reg->lim, addr);
}

static void *on_conn_open(void *cls, const struct sockaddr *addr)
{
	struct registry *reg = cls;
	return lim_conn_open(&reg->lim, addr);
}

static void on_conn_close(void *cls, void *conn_ctx)
{
	struct registry *reg = cls;
	lim_conn_close(&reg->lim, conn_ctx);
}

static void authenticate(struct reg_request *req, struct httpd_answer *a)
{
	const char *h = reg_header(req, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		httpd_answer_error(a, 401, "%s %s: missing bearer token", req->method, req->url);
		return;
	}
	const char *t = h + 7;
	while (*t == ' ')
		t++;
	struct vs_error err;
	pthread_mutex_lock(&req->reg->lock);
	int r = store_token_lookup(req->reg, t, &req->role, &req->user, &req->node, &err);
	pthread_mutex_unlock(&req->reg->lock);
	if (r == -ENOENT)
		httpd_answer_error(a, 401, "%s %s: unknown token", req->method, req->url);
	else if (r < 0)
		httpd_answer_error(a, 500, "%s", err.msg);
	else
		req->token = vs_xstrdup(t);
}

/* A JSON body of Content-Length bytes is charged before it is read: past the
 * token's or the registry's share it is refused at once. (Larger than
 * REG_BODY_MAX: httpd refuses it, 413.) */
static void charge_body(struct reg_request *req, struct httpd_answer *a)
{
	const char *clen = reg_header(req, "Content-Length");
	if (!clen)
		return; /* chunked: charged as it arrives (on_body_grow) */
	char *end;
	errno = 0;
	unsigned long long n = strtoull(clen, &end, 10);
	if (errno || *end || *clen == '-' || end == clen)
		return; /* libmicrohttpd refuses it */
	if (!req->token && n > 0) {
		httpd_answer_error(a, 413, "%s %s: takes no request body", req->method, req->url);
		return;
	}
	if (n > REG_BODY_MAX)
		return;
	int r = lim_mem_charge(&req->reg->lim, req->token, (size_t)n, false);
	if (r == 0)
		req->charged = (size_t)n;
	else
		over_budget(a, req, "request body", n, r);
}

static bool is_upload(const char *method, const char *url)
{
	if (api_image_is_upload(method, url))
		return true;
	if (strcmp(method, "PUT") != 0 || strncmp(url, "/v1/slices/", 11) != 0)
		return false;
	const char *p = strstr(url + 11, "/slivers/");
	if (!p)
		return false;
	p = strchr(p + 9, '/');
	return p && (strcmp(p, "/log") == 0 || strncmp(p, "/results/", 9) == 0);
}

static void on_begin(struct httpd_request *h, struct httpd_answer *a)
{
	struct registry *reg = httpd_cls(h->srv);
	struct reg_request *req = vs_xcalloc(1, sizeof(*req));
	h->data = req;
	req->reg = reg;
	req->http = h;
	req->method = vs_xstrdup(h->method);
	req->url = vs_xstrdup(h->url);
	req->fd = -1;
	req->wait_index = -1;
	if (strcmp(h->url, "/v1/health") != 0) {
		authenticate(req, a);
		if (a->status)
			return;
		/* Headers in and a known token: long-polls and slow uploads may
		 * stay; node managers' and admins' addresses get the
		 * connections kept for them. */
		httpd_set_timeout(h, (unsigned)(REG_WAIT_MAX + 60));
		if (req->role == REGISTRY_ROLE_NODE || req->role == REGISTRY_ROLE_ADMIN)
			lim_trust(&reg->lim, h->conn_ctx);
	}
	if (is_upload(h->method, h->url)) {
		struct reg_answer ra = {.fd = -1};
		if (api_upload_begin(req, &ra) < 0)
			to_httpd(&ra, a);
		else
			httpd_stream_body(h);
		return;
	}
	charge_body(req, a);
}

/* An upload's next bytes: into the temp file, hashed. Past the limit (or a
 * failed write) the rest is dropped; api_upload_finish says why. */
static int on_data(struct httpd_request *h, const char *buf, size_t n)
{
	struct reg_request *req = h->data;
	req->received += n;
	if (req->received > req->limit)
		return -1;
	sha256_update(&req->sha, n, (const uint8_t *)buf);
	if (vs_write_all(req->fd, buf, n) < 0) {
		req->too_big = true; /* reported as a write error at the end */
		return -1;
	}
	return 0;
}

static int on_body_grow(struct httpd_request *h, size_t total, struct httpd_answer *a)
{
	struct reg_request *req = h->data;
	if (!req->token) {
		httpd_answer_error(a, 413, "%s %s: takes no request body", req->method, req->url);
		return -1;
	}
	size_t want = total + 1; /* with its NUL */
	if (want <= req->charged)
		return 0;
	int r = lim_mem_charge(&req->reg->lim, req->token, want - req->charged, false);
	if (r < 0) {
		over_budget(a, req, "request body", (unsigned long long)total, r);
		return -1;
	}
	req->charged = want;
	return 0;
}

static void on_handle(struct httpd_request *h, struct httpd_answer *a)
{
	struct reg_request *req = h->data;
	struct registry *reg = req->reg;
	struct reg_answer ra = {.fd = -1};
	if (req->upload) {
		api_upload_finish(req, &ra);
		to_httpd(&ra, a);
		return;
	}
	req->body = h->body; /* httpd's, for api.c to read */
	req->len = h->len;
	for (;;) {
		req->suspended = false;
		api_dispatch(req, &ra);
		if (req->wait_index < 0)
			break;
		pthread_mutex_lock(&reg->lock);
		if (!reg->stopping && reg->revision <= req->wait_index &&
		    reg_now_ms() < req->deadline) {
			struct waiter *w = vs_xcalloc(1, sizeof(*w));
			w->req = req;
			w->index = req->wait_index;
			w->deadline = req->deadline;
			w->next = reg->waiters;
			reg->waiters = w;
			req->waiting = w;
			req->suspended = true;
			req->polled = true;
			httpd_suspend(h);
			pthread_mutex_unlock(&reg->lock);
			answer_free(&ra);
			return;
		}
		/* A change landed between building the answer and this check: the
		 * answer would show no progress (and the client would wait for
		 * nothing), so build it again. */
		bool stale = !reg->stopping && req->answered_rev <= req->wait_index &&
			     reg->revision > req->wait_index;
		pthread_mutex_unlock(&reg->lock);
		if (!stale)
			break;
		answer_free(&ra);
		ra = (struct reg_answer){.fd = -1};
	}
	to_httpd(&ra, a);
}

/* Every answer: counted; one held in memory charged to the token. Answers
 * to reads that do not fit are replaced by 429/503 (the client may retry);
 * answers to requests that changed state are always sent. */
static void on_answer(struct httpd_request *h, struct httpd_answer *a)
{
	struct reg_request *req = h->data;
	struct registry *reg = httpd_cls(h->srv);
	if (req && a->fd < 0 && a->len > 0) {
		bool read_only = strcmp(req->method, "GET") == 0;
		size_t len = a->len;
		int r = lim_mem_charge(&reg->lim, req->token, len, !read_only);
		if (r == 0) {
			req->charged += len;
		} else {
			httpd_answer_clear(a);
			over_budget(a, req, "answer", len, r);
		}
	}
	pthread_mutex_lock(&reg->lock);
	reg_count_status(reg, a->status);
	pthread_mutex_unlock(&reg->lock);
}

static void on_done(struct httpd_request *h, bool completed)
{
	struct reg_request *req = h->data;
	if (!req)
		return;
	struct registry *reg = req->reg;
	/* Resumed polls left the waiters list when they were resumed; only a
	 * request dropped while still parked (at shutdown) is there. */
	if (req->waiting) {
		pthread_mutex_lock(&reg->lock);
		for (struct waiter **pp = &reg->waiters; *pp; pp = &(*pp)->next) {
			if (*pp == req->waiting) {
				*pp = req->waiting->next;
				free(req->waiting);
				break;
			}
		}
		req->waiting = NULL;
		pthread_mutex_unlock(&reg->lock);
	}
	lim_mem_release(&reg->lim, req->token, req->charged);
	if (req->upload == REG_UPLOAD_IMAGE)
		api_image_upload_done(req);
	if (req->fd >= 0)
		close(req->fd);
	if (req->tmp_path)
		unlink(req->tmp_path);
	free(req->tmp_path);
	free(req->method);
	free(req->url);
	free(req->user);
	free(req->node);
	free(req->token);
	free(req->slice);
	free(req->unode);
	free(req->upath);
	free(req->want_sha);
	free(req);
	h->data = NULL;
}

static const struct httpd_ops registry_ops = {
    .begin = on_begin,
    .data = on_data,
    .body_grow = on_body_grow,
    .handle = on_handle,
    .answer = on_answer,
    .done = on_done,
    .accept = on_accept,
    .conn_open = on_conn_open,
    .conn_close = on_conn_close,
};

/* ---- the timer ------------------------------------------------------ */

static void node_states_tick(struct registry *reg, long long now)
{
	bool changed = false;
	for (size_t i = 0; i < reg->nseen; i++) {
		bool unknown = !reg_seen_ready(reg, reg->seen[i].last_seen, now);
		if (unknown != reg->seen[i].unknown) {
			reg->seen[i].unknown = unknown;
			changed = true;
		}
	}
	struct vs_error err;
	if (changed && store_begin(reg, &err) >= 0)
		store_commit(reg, true, &err);
}

static void *timer_main(void *arg)
{
	struct registry *reg = arg;
	unsigned tick = 0;
	pthread_mutex_lock(&reg->lock);
	while (!reg->stopping) {
		/* Four ticks a second: long-poll deadlines are kept to 250 ms;
		 * node states and expiry once a second. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&reg->cond, &reg->lock, &ts);
		if (reg->stopping)
			break;
		resume_waiters(reg, reg_now_ms());
		if (++tick % 4)
			continue;
		long long now = reg_now();
		node_states_tick(reg, now);
		mig_tick(reg);
		pthread_mutex_unlock(&reg->lock);
		struct vs_error err;
		if (registry_expire(reg, now, &err) < 0)
			fprintf(stderr, "vslice-registry: expiry: %s\n", err.msg);
		pthread_mutex_lock(&reg->lock);
	}
	pthread_mutex_unlock(&reg->lock);
	return NULL;
}

/* ---- serving ---------------------------------------------------------- */

int registry_serve(struct registry *reg, const char *listen, struct vs_error *err)
{
	return registry_serve_tls(reg, listen, NULL, NULL, err);
}

int registry_serve_tls(struct registry *reg, const char *listen, const char *cert_pem,
		       const char *key_pem, struct vs_error *err)
{
	/* Every node manager parks a long-poll on a connection of its own: the
	 * limit follows the fd limit (httpd's default), and limits.c keeps an
	 * eighth of it for node managers and admins. */
	unsigned conn_limit = httpd_conn_limit_default();
	lim_set_conn_cap(&reg->lim, conn_limit);
	/* The idle timeout is for connections that have not sent a request yet
	 * (or whose token was refused); on_begin raises it for known tokens.
	 * The per-address cap is limits.c's (with trust), not httpd's. */
	struct httpd_config cfg = {
	    .name = "registry",
	    .listen = listen ? listen : REGISTRY_DEFAULT_LISTEN,
	    .cert_pem = cert_pem,
	    .key_pem = key_pem,
	    .threads = reg->threads,
	    .conn_limit = conn_limit,
	    .timeout_secs = REG_HEADER_TIMEOUT,
	    .body_max = REG_BODY_MAX,
	    .resume_batch = REG_RESUME_BATCH,
	    .ops = &registry_ops,
	    .cls = reg,
	};
	reg->stopping = false;
	int r = httpd_start(&cfg, &reg->http, err);
	if (r < 0)
		return r;
	if (pthread_create(&reg->timer, NULL, timer_main, reg) != 0) {
		httpd_stop(reg->http);
		reg->http = NULL;
		return vs_error_set(err, EAGAIN, "registry: cannot start the timer thread");
	}
	reg->timer_running = true;
	return 0;
}

unsigned registry_port(const struct registry *reg)
{
	return reg->http ? httpd_port(reg->http) : 0;
}

void registry_stop(struct registry *reg)
{
	pthread_mutex_lock(&reg->lock);
	reg->stopping = true;
	resume_waiters(reg, reg_now_ms());
	pthread_cond_broadcast(&reg->cond);
	pthread_mutex_unlock(&reg->lock);
	if (reg->timer_running) {
		pthread_join(reg->timer, NULL);
		reg->timer_running = false;
	}
	/* The polls resumed above answer at once now that stopping is set;
	 * httpd_stop gives them up to 2 s to go out. */
	httpd_stop(reg->http);
	reg->http = NULL;
}
