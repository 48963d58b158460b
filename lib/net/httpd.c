/*
 * httpd.c - the daemons' HTTP server (include/vslice/httpd.h) on
 * libmicrohttpd.
 *
 * libmicrohttpd calls one access handler several times per request: first
 * with the headers, then once per body chunk, then with no data when the
 * body is complete, and again after a suspended connection is resumed.
 * This file turns that into the hooks of httpd_ops (begin, data or
 * body_grow, handle, answer, done), keeps the body cap and the answer
 * plumbing in one place, and leaves what a request means to the caller.
 *
 * Choices that are the daemons' requirements, not libmicrohttpd's defaults:
 *  - poll() mode, level-triggered (in a thread pool, or with a thread per
 *    connection for a server whose hooks block: cfg.thread_per_conn):
 *    libmicrohttpd 0.9.75's epoll loop takes a
 *    short read for "drained" and can miss the FIN that came with a dying
 *    client's last bytes, leaving the connection (and an upload's temp
 *    file) open for the whole timeout;
 *  - our own listening socket, SO_REUSEADDR only: MHD's
 *    LISTENING_ADDRESS_REUSE sets SO_REUSEPORT, which lets a second daemon
 *    share a port another one serves;
 *  - TLS 1.2/1.3 only (GnuTLS priorities), certificate and key given in
 *    memory so a mismatch fails MHD_start_daemon, with GnuTLS's words
 *    caught by the error logger below.
 *
 * Suspended requests sit in a list under h->lock so that httpd_stop can
 * resume every one of them (libmicrohttpd panics when stopped with a
 * connection still suspended) and a resume from another thread never
 * races a second resume of the same connection.
 *
 * With cfg.resume_batch, httpd_resume hands at most that many requests to
 * libmicrohttpd at a time (h->resuming counts those whose handler has not
 * run yet); the others wait in h->resume_queue, first in first out, and
 * each handler that runs lets the next one go. In poll() mode an answer
 * queued by a handler is written in the next round of the loop, so without
 * the cap a commit that resumes every long-poll builds all their answers
 * before writing the first (the fan-out benchmark's middle answer came as
 * late as the last).
 *
 * Upgraded connections (httpd_answer_upgrade): the answer is libmicrohttpd's
 * upgrade response; its callback, on the connection's thread, starts a
 * thread of ours for the caller's fn (with a thread per connection and TLS,
 * that connection thread goes on to relay TLS to the socketpair, so it must
 * not be held). Open streams sit in h->upgraded under h->lock: httpd_stop
 * shuts each one's fd down and waits for its fn before stopping the daemon,
 * whose stop would otherwise free the upgrade handles under their threads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vslice/httpd.h"
#include "vslice/netaddr.h"
#include "vslice/util.h"

/* A thread-per-connection server's per-connection pool (its read buffer is
 * half of it): see httpd_start. */
#define HTTPD_STREAM_POOL (256 << 10)

/* An upgrade answered, and then its stream (see the top of the file). */
struct httpd_upgrade {
	struct httpd *h;
	char *proto;
	httpd_upgrade_fn fn;
	void *arg;
	void (*free_arg)(void *arg);
	struct MHD_UpgradeResponseHandle *urh;
	int fd;
	char *extra;
	size_t extra_len;
	struct httpd_upgrade *next; /* h->upgraded, under h->lock */
};

struct req {
	struct httpd_request pub;
	struct httpd_upgrade *upgrade; /* answered with a 101: ours until handed */
	struct MHD_Connection *con;
	size_t cap;
	struct httpd_answer pending; /* a refusal sent once the body is in */
	bool streamed, data_refused, too_big, suspended, polled, handled;
	bool parked;  /* httpd_suspend ran during this handle call */
	bool started; /* the access handler saw the headers */
	bool queued;  /* in h->resume_queue (under h->lock) */
	bool resumed; /* handed to MHD, counted in h->resuming (under h->lock) */
	char *raw_url;
	struct req *next_suspended;
	struct req *next_queued;
};

struct httpd {
	struct httpd_config cfg;
	char *name, *listen;
	struct MHD_Daemon *daemon;
	int listen_fd;
	unsigned port, conn_limit;
	pthread_mutex_t lock;
	struct req *suspended;			/* under lock */
	struct req *resume_queue, *resume_tail; /* under lock: resumes held back */
	unsigned resuming;			/* under lock: resumed, handler not run */
	bool stopping;				/* under lock */
	struct httpd_upgrade *upgraded;		/* under lock: streams whose fn runs */
	unsigned nupgraded;			/* under lock */
	pthread_cond_t upgraded_cv;		/* under lock: an fn returned */
	unsigned polls;				/* requests ever suspended and not done (atomic) */
};

static struct req *req_of(struct httpd_request *r)
{
	return (struct req *)((char *)r - offsetof(struct req, pub));
}

/* ---- answers ---------------------------------------------------- */

/* A streamed answer given up before it was sent: its source is freed. */
static void drop_stream(struct httpd_answer *a)
{
	if (a->stream && a->stream_free)
		a->stream_free(a->stream_cls);
	a->stream = NULL;
	a->stream_free = NULL;
	a->stream_cls = NULL;
}

static void upgrade_free(struct httpd_upgrade *u)
{
	if (!u)
		return;
	if (u->free_arg)
		u->free_arg(u->arg);
	free(u->proto);
	free(u->extra);
	free(u);
}

void httpd_answer_clear(struct httpd_answer *a)
{
	upgrade_free(a->upgrade);
	free(a->body);
	if (a->fd >= 0)
		close(a->fd);
	drop_stream(a);
	for (size_t i = 0; i < HTTPD_HEADERS_MAX; i++) {
		free(a->headers[i][0]);
		free(a->headers[i][1]);
	}
	memset(a, 0, sizeof(*a));
	a->fd = -1;
}

static void answer_text(struct httpd_answer *a, unsigned status, char *text,
			const char *content_type)
{
	drop_stream(a);
	free(a->body);
	a->status = status;
	a->body = text;
	a->len = strlen(text);
	a->content_type = content_type;
}

void httpd_answer_json(struct httpd_answer *a, unsigned status, const json_t *json)
{
	char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
	if (!text) { /* a NULL from a failed json_pack: say so, do not crash */
		answer_text(a, 500, vs_xstrdup("{\"error\":\"the answer could not be encoded\"}\n"),
			    "application/json");
		return;
	}
	answer_text(a, status, vs_xasprintf("%s\n", text), "application/json");
	free(text);
}

json_t *httpd_error_vjson(const char *fmt, va_list ap)
{
	char msg[VS_ERROR_MAX];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	json_t *j = json_pack("{s:s}", "error", msg);
	if (!j) /* not UTF-8: say so rather than send nothing */
		j = json_pack("{s:s}", "error", "(an error message that is not UTF-8)");
	return j;
}

void httpd_answer_error(struct httpd_answer *a, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *j = httpd_error_vjson(fmt, ap);
	va_end(ap);
	httpd_answer_json(a, status, j);
	json_decref(j);
}

void httpd_answer_fd(struct httpd_answer *a, unsigned status, int fd, uint64_t offset, uint64_t len,
		     bool len_set, const char *content_type)
{
	free(a->body);
	a->body = NULL;
	a->len = 0;
	drop_stream(a);
	if (a->fd >= 0)
		close(a->fd);
	a->status = status;
	a->fd = fd;
	a->fd_offset = offset;
	a->fd_len = len;
	a->fd_len_set = len_set;
	a->content_type = content_type;
}

void httpd_answer_stream(struct httpd_answer *a, unsigned status, httpd_stream_fn fn,
			 void (*free_cls)(void *), void *cls, const char *content_type)
{
	free(a->body);
	a->body = NULL;
	a->len = 0;
	drop_stream(a);
	a->status = status;
	a->stream = fn;
	a->stream_free = free_cls;
	a->stream_cls = cls;
	a->content_type = content_type;
}

/* A streamed answer as MHD's content reader: chunked, of unknown length. */
struct stream_ctx {
	httpd_stream_fn fn;
	void (*free_cls)(void *);
	void *cls;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct stream_ctx *s = cls;
	ssize_t n = s->fn(s->cls, buf, max);
	return n > 0	? n
	       : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM
			: MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
	struct stream_ctx *s = cls;
	if (s->free_cls)
		s->free_cls(s->cls);
	free(s);
}

bool httpd_answer_header(struct httpd_answer *a, const char *name, const char *value)
{
	for (size_t i = 0; i < HTTPD_HEADERS_MAX; i++) {
		if (!a->headers[i][0]) {
			a->headers[i][0] = vs_xstrdup(name);
			a->headers[i][1] = vs_xstrdup(value);
			return true;
		}
	}
	return false;
}

void httpd_answer_upgrade(struct httpd_answer *a, const char *proto, httpd_upgrade_fn fn, void *arg,
			  void (*free_arg)(void *arg))
{
	httpd_answer_clear(a);
	struct httpd_upgrade *u = vs_xcalloc(1, sizeof(*u));
	u->proto = vs_xstrdup(proto);
	u->fn = fn;
	u->arg = arg;
	u->free_arg = free_arg;
	u->fd = -1;
	a->status = MHD_HTTP_SWITCHING_PROTOCOLS;
	a->upgrade = u;
}

bool httpd_wants_upgrade(const struct httpd_request *req, const char *proto)
{
	const char *up = httpd_header(req, MHD_HTTP_HEADER_UPGRADE);
	const char *conn = httpd_header(req, MHD_HTTP_HEADER_CONNECTION);
	if (!up || !conn || strcasecmp(up, proto))
		return false;
	/* Connection is a list of tokens: "keep-alive, Upgrade". */
	for (const char *p = conn; *p;) {
		p += strspn(p, " \t,");
		size_t n = strcspn(p, " \t,");
		if (n == 7 && !strncasecmp(p, "upgrade", 7))
			return true;
		p += n;
	}
	return false;
}

static void *upgrade_main(void *arg)
{
	struct httpd_upgrade *u = arg;
	struct httpd *h = u->h;
	u->fn(u->arg, u->fd, u->extra, u->extra_len);
	pthread_mutex_lock(&h->lock);
	for (struct httpd_upgrade **pp = &h->upgraded; *pp; pp = &(*pp)->next) {
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	}
	/* Before the count drops: httpd_stop stops the daemon once it is 0,
	 * and returns: the caller's free_arg has run by then (it ran after
	 * httpd_stop had returned, 1 run in ~40 of test_httpd). */
	MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
	pthread_mutex_unlock(&h->lock);
	upgrade_free(u);
	pthread_mutex_lock(&h->lock);
	h->nupgraded--;
	pthread_cond_broadcast(&h->upgraded_cv);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* libmicrohttpd's upgrade callback, on the connection's thread, once the
 * 101 is out: the stream goes to a thread of ours. */
static void on_upgrade(void *cls, struct MHD_Connection *con, void *con_cls, const char *extra,
		       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	(void)cls;
	/* libmicrohttpd turns Nagle back on for an upgraded connection; a
	 * stream of small writes (keystrokes, frames) then waits on delayed
	 * ACKs, 40 ms a round. */
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
	int one = 1;
	if (ci)
		setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct req *q = con_cls;
	struct httpd_upgrade *u = q->upgrade;
	struct httpd *h = q->pub.srv;
	q->upgrade = NULL; /* the stream's thread owns it now, and may free it at once */
	u->h = h;
	u->urh = urh;
	u->fd = sock;
	if (extra_len) {
		u->extra = vs_xmalloc(extra_len);
		memcpy(u->extra, extra, extra_len);
		u->extra_len = extra_len;
	}
	pthread_mutex_lock(&h->lock);
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	bool started = !h->stopping && pthread_create(&th, &attr, upgrade_main, u) == 0;
	pthread_attr_destroy(&attr);
	if (started) {
		u->next = h->upgraded;
		h->upgraded = u;
		h->nupgraded++;
	}
	pthread_mutex_unlock(&h->lock);
	if (!started) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		upgrade_free(u);
	}
}

static enum MHD_Result send_answer(struct req *q, struct httpd_answer *a)
{
	struct httpd *h = q->pub.srv;
	if (h->cfg.ops->answer)
		h->cfg.ops->answer(&q->pub, a);
	struct MHD_Response *resp;
	if (a->upgrade) {
		resp = MHD_create_response_for_upgrade(on_upgrade, NULL);
		if (resp) {
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "Upgrade");
			MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, a->upgrade->proto);
			/* Ours until libmicrohttpd hands the stream over (on_upgrade),
			 * or the request ends without it (on_completed frees it). */
			upgrade_free(q->upgrade);
			q->upgrade = a->upgrade;
			a->upgrade = NULL;
		}
	} else if (a->stream) {
		struct stream_ctx *s = vs_xcalloc(1, sizeof(*s));
		*s = (struct stream_ctx){a->stream, a->stream_free, a->stream_cls};
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s,
							 stream_free);
		if (resp)
			a->stream = NULL; /* MHD frees it with the response */
		else
			free(s);
	} else if (a->fd >= 0) {
		uint64_t size = a->fd_len;
		if (!a->fd_len_set) {
			off_t end = lseek(a->fd, 0, SEEK_END);
			size = end < 0 || (uint64_t)end < a->fd_offset
				   ? 0
				   : (uint64_t)end - a->fd_offset;
		}
		resp = MHD_create_response_from_fd_at_offset64(size, a->fd, a->fd_offset);
		if (resp)
			a->fd = -1; /* MHD closes it with the response */
	} else {
		resp = MHD_create_response_from_buffer(a->len, a->body, MHD_RESPMEM_MUST_FREE);
		if (resp)
			a->body = NULL;
	}
	if (!resp) {
		httpd_answer_clear(a);
		return MHD_NO;
	}
	if (a->content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
	for (size_t i = 0; i < HTTPD_HEADERS_MAX; i++)
		if (a->headers[i][0])
			MHD_add_response_header(resp, a->headers[i][0], a->headers[i][1]);
	enum MHD_Result r = MHD_queue_response(q->con, a->status ? a->status : 500, resp);
	MHD_destroy_response(resp);
	httpd_answer_clear(a);
	q->handled = true;
	return r;
}

/* ---- requests ---------------------------------------------------- */

const char *httpd_header(const struct httpd_request *r, const char *name)
{
	return MHD_lookup_connection_value(req_of((struct httpd_request *)r)->con, MHD_HEADER_KIND,
					   name);
}

const char *httpd_query(const struct httpd_request *r, const char *name)
{
	return MHD_lookup_connection_value(req_of((struct httpd_request *)r)->con,
					   MHD_GET_ARGUMENT_KIND, name);
}

const struct sockaddr *httpd_client_addr(const struct httpd_request *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    req_of((struct httpd_request *)r)->con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	return ci ? ci->client_addr : NULL;
}

void httpd_stream_body(struct httpd_request *r)
{
	/* Without a data hook the body is collected (and capped) as usual. */
	if (r->srv->cfg.ops->data)
		req_of(r)->streamed = true;
}

void httpd_set_timeout(struct httpd_request *r, unsigned secs)
{
	MHD_set_connection_option(req_of(r)->con, MHD_CONNECTION_OPTION_TIMEOUT, secs);
}

void httpd_suspend(struct httpd_request *r)
{
	struct req *q = req_of(r);
	struct httpd *h = r->srv;
	pthread_mutex_lock(&h->lock);
	if (!h->stopping && !q->suspended && !h->cfg.thread_per_conn) {
		q->suspended = true;
		q->next_suspended = h->suspended;
		h->suspended = q;
		if (!q->polled)
			__atomic_add_fetch(&h->polls, 1, __ATOMIC_SEQ_CST);
		q->polled = true;
		q->parked = true;
		MHD_suspend_connection(q->con);
	}
	pthread_mutex_unlock(&h->lock);
}

/* Take q off the suspended list. Expects h->lock. */
static void unlist(struct httpd *h, struct req *q)
{
	for (struct req **pp = &h->suspended; *pp; pp = &(*pp)->next_suspended) {
		if (*pp == q) {
			*pp = q->next_suspended;
			break;
		}
	}
	q->next_suspended = NULL;
	q->suspended = false;
}

/* Hand q back to MHD. Expects h->lock. */
static void resume_now(struct httpd *h, struct req *q)
{
	if (h->cfg.resume_batch) {
		q->resumed = true;
		h->resuming++;
	}
	MHD_resume_connection(q->con);
}

/* Resume held-back requests while fewer than resume_batch wait for their
 * handler (all of them when stopping). Expects h->lock. */
static void resume_queued(struct httpd *h)
{
	while (h->resume_queue && (h->stopping || h->resuming < h->cfg.resume_batch)) {
		struct req *q = h->resume_queue;
		h->resume_queue = q->next_queued;
		if (!h->resume_queue)
			h->resume_tail = NULL;
		q->next_queued = NULL;
		q->queued = false;
		resume_now(h, q);
	}
}

/* Is q's handler about to run for a resume that holds one of the
 * resume_batch places? Then the place is q's until resume_done. */
static bool resume_taken(struct httpd *h, struct req *q)
{
	if (!h->cfg.resume_batch)
		return false;
	pthread_mutex_lock(&h->lock);
	bool taken = q->resumed;
	q->resumed = false;
	pthread_mutex_unlock(&h->lock);
	return taken;
}

/* A resumed request's handler ran (its place is free), or, closing, its
 * connection is gone (with any place or queue entry it held): one more may
 * go. */
static void resume_done(struct httpd *h, struct req *q, bool closing)
{
	pthread_mutex_lock(&h->lock);
	if (!closing) {
		h->resuming--;
	} else if (q->resumed) { /* resumed, closed before its handler ran */
		q->resumed = false;
		h->resuming--;
	}
	if (closing && q->queued) { /* dropped while held back: only at shutdown */
		for (struct req **pp = &h->resume_queue; *pp; pp = &(*pp)->next_queued) {
			if (*pp == q) {
				*pp = q->next_queued;
				break;
			}
		}
		h->resume_tail = NULL;
		for (struct req *t = h->resume_queue; t; t = t->next_queued)
			h->resume_tail = t;
		q->queued = false;
	}
	resume_queued(h);
	pthread_mutex_unlock(&h->lock);
}

void httpd_resume(struct httpd_request *r)
{
	struct req *q = req_of(r);
	struct httpd *h = r->srv;
	pthread_mutex_lock(&h->lock);
	if (q->suspended) {
		unlist(h, q);
		if (!h->cfg.resume_batch || h->stopping ||
		    (h->resuming < h->cfg.resume_batch && !h->resume_queue)) {
			resume_now(h, q);
		} else {
			q->queued = true;
			if (h->resume_tail)
				h->resume_tail->next_queued = q;
			else
				h->resume_queue = q;
			h->resume_tail = q;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

bool httpd_stopping(const struct httpd *h)
{
	return __atomic_load_n(&h->stopping, __ATOMIC_SEQ_CST);
}

/* A collected body grows by n bytes: within the cap, and what body_grow allows. */
static void collect(struct req *q, const char *data, size_t n)
{
	struct httpd *h = q->pub.srv;
	if (q->too_big || q->pending.status)
		return;
	size_t total = q->pub.len + n;
	if (total > h->cfg.body_max || total < n) {
		q->too_big = true;
	} else if (h->cfg.ops->body_grow &&
		   h->cfg.ops->body_grow(&q->pub, total, &q->pending) < 0) {
		if (!q->pending.status)
			httpd_answer_error(&q->pending, 503, "%s %s: request body refused",
					   q->pub.method, q->pub.url);
	}
	if (q->too_big || q->pending.status) {
		free(q->pub.body);
		q->pub.body = NULL;
		q->pub.len = q->cap = 0;
		return;
	}
	if (total + 1 > q->cap) {
		q->cap = (total + 1) * 2;
		if (q->cap > h->cfg.body_max + 1)
			q->cap = h->cfg.body_max + 1;
		q->pub.body = vs_xrealloc(q->pub.body, q->cap);
	}
	memcpy(q->pub.body + q->pub.len, data, n);
	q->pub.len = total;
	q->pub.body[total] = '\0';
}

static void too_big_answer(struct req *q, struct httpd_answer *a)
{
	size_t max = q->pub.srv->cfg.body_max;
	if (max == 0)
		httpd_answer_error(a, 413, "%s %s: takes no request body", q->pub.method,
				   q->pub.url);
	else
		httpd_answer_error(a, 413, "%s %s: request body larger than %zu bytes",
				   q->pub.method, q->pub.url, max);
}

/* A Content-Length beyond the cap is refused before a byte is read. */
static bool declared_too_big(struct req *q)
{
	const char *clen = httpd_header(&q->pub, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!clen)
		return false;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(clen, &end, 10);
	if (errno || *end || *clen == '-' || end == clen)
		return false; /* libmicrohttpd refuses it */
	return n > q->pub.srv->cfg.body_max;
}

static struct req *new_req(struct httpd *h, struct MHD_Connection *con, const char *raw)
{
	struct req *q = vs_xcalloc(1, sizeof(*q));
	q->con = con;
	q->pending.fd = -1;
	q->pub.srv = h;
	q->raw_url = vs_xstrdup(raw);
	return q;
}

/* Called once per request, before its headers are parsed, with the target
 * as the client sent it: the request is born here so it can keep that. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *con)
{
	return new_req(cls, con, uri);
}

const char *httpd_raw_url(const struct httpd_request *r)
{
	return req_of((struct httpd_request *)r)->raw_url;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *data_size, void **con_cls)
{
	(void)version;
	struct httpd *h = cls;
	const struct httpd_ops *ops = h->cfg.ops;
	struct req *q = *con_cls;
	struct httpd_answer a = {.fd = -1};

	if (!q)
		q = *con_cls = new_req(h, con, url);
	if (!q->started) {
		q->started = true;
		q->pub.method = vs_xstrdup(method);
		q->pub.url = vs_xstrdup(url);
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		q->pub.conn_ctx = ci ? ci->socket_context : NULL;
		*con_cls = q;
		if (ops->begin)
			ops->begin(&q->pub, &a);
		if (!a.status && !q->streamed && declared_too_big(q))
			too_big_answer(q, &a);
		if (a.status)
			return send_answer(q, &a);
		return MHD_YES;
	}
	if (q->handled) { /* answered early: drop what still comes */
		*data_size = 0;
		return MHD_YES;
	}
	if (*data_size > 0) {
		if (!q->streamed)
			collect(q, data, *data_size);
		else if (!q->data_refused && ops->data(&q->pub, data, *data_size) < 0)
			q->data_refused = true;
		*data_size = 0;
		return MHD_YES;
	}
	if (q->too_big)
		too_big_answer(q, &a);
	else if (q->pending.status)
		a = q->pending, q->pending = (struct httpd_answer){.fd = -1};
	if (a.status)
		return send_answer(q, &a);

	/* The whole request is in, or a suspended one was resumed. */
	/* Whether it parked is read from q->parked, set by this thread: by now
	 * another thread may have resumed it already (MHD then calls again). */
	q->parked = false;
	bool taken = resume_taken(h, q);
	ops->handle(&q->pub, &a);
	if (taken)
		resume_done(h, q, false);
	if (q->parked) {
		httpd_answer_clear(&a);
		return MHD_YES;
	}
	if (!a.status && httpd_stopping(h))
		httpd_answer_error(&a, 503, "%s %s: the %s is stopping", method, url, h->name);
	else if (!a.status)
		httpd_answer_error(&a, 500, "%s %s: the %s gave no answer", method, url, h->name);
	return send_answer(q, &a);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)con;
	struct httpd *h = cls;
	struct req *q = *con_cls;
	if (!q)
		return;
	if (q->suspended) { /* only at shutdown; taken under the lock */
		pthread_mutex_lock(&h->lock);
		unlist(h, q);
		pthread_mutex_unlock(&h->lock);
	}
	if (h->cfg.resume_batch && q->polled) /* only a parked one holds a place */
		resume_done(h, q, true);
	if (h->cfg.ops->done && q->started) /* not for a request refused before its headers */
		h->cfg.ops->done(&q->pub, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
	/* An upgrade's callback runs before this, on the same thread, and
	 * takes it: still here, it was never handed over. */
	upgrade_free(q->upgrade);
	if (q->polled)
		__atomic_sub_fetch(&h->polls, 1, __ATOMIC_SEQ_CST);
	httpd_answer_clear(&q->pending);
	free((char *)q->pub.method);
	free((char *)q->pub.url);
	free(q->raw_url);
	free(q->pub.body);
	free(q);
	*con_cls = NULL;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct httpd *h = cls;
	return h->cfg.ops->accept(h->cfg.cls, addr, len) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct httpd *h = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		*socket_context =
		    h->cfg.ops->conn_open
			? h->cfg.ops->conn_open(h->cfg.cls, ci ? ci->client_addr : NULL)
			: NULL;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (h->cfg.ops->conn_close)
			h->cfg.ops->conn_close(h->cfg.cls, *socket_context);
		*socket_context = NULL;
	}
}

/* ---- the daemon -------------------------------------------------- */

/*
 * libmicrohttpd's error lines go to the logging thread's own buffer: the
 * starting thread reads why MHD_start_daemon failed ("GnuTLS failed to
 * setup x509 certificate/key: ...") from its copy; what worker threads log
 * later (a client's failed handshake) is dropped.
 */
static __thread char mhd_last_error[256]; /* the first line since it was cleared */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (mhd_last_error[0])
		return; /* the first line is the cause, the next ones its effects */
	vsnprintf(mhd_last_error, sizeof(mhd_last_error), fmt, ap);
	size_t n = strlen(mhd_last_error);
	while (n && (mhd_last_error[n - 1] == '\n' || mhd_last_error[n - 1] == '.'))
		mhd_last_error[--n] = '\0';
}

/* SO_REUSEADDR lets a restart bind while old connections sit in TIME_WAIT;
 * without SO_REUSEPORT a port another socket listens on is refused. */
static int listen_socket(const struct httpd *h, const struct sockaddr_storage *ss,
			 struct vs_error *err)
{
	cleanup_close int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: --listen %s: socket", h->name, h->listen);
	int one = 1;
	socklen_t len =
	    ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int e = errno;
		if (e == EADDRINUSE) {
			vs_error_set(err, e,
				     "%s: --listen %s: address already in use (another program "
				     "listens there)",
				     h->name, h->listen);
			return vs_error_kind(err, VS_EK_BUSY);
		}
		return vs_error_sys(err, e, "%s: --listen %s", h->name, h->listen);
	}
	return steal_fd(&fd);
}

/* Each connection may hold one more fd (an upload's temp file, a file
 * answer): half of what the fd limit leaves after 64 for the rest. */
unsigned httpd_conn_limit_default(void)
{
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur == RLIM_INFINITY ||
	    nofile.rlim_cur <= 128)
		return 1000;
	rlim_t n = (nofile.rlim_cur - 64) / 2;
	return n > 1000000 ? 1000000 : (unsigned)n;
}

static void httpd_free(struct httpd *h)
{
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->upgraded_cv);
	free(h->name);
	free(h->listen);
	free(h);
}

int httpd_start(const struct httpd_config *cfg, struct httpd **out, struct vs_error *err)
{
	*out = NULL;
	const char *name = cfg->name ? cfg->name : "http server";
	if (!cfg->ops || !cfg->ops->handle)
		return vs_error_set(err, EINVAL, "%s: no request handler", name);
	if (!cfg->listen)
		return vs_error_set(err, EINVAL, "%s: --listen: no address", name);
	if (!cfg->cert_pem != !cfg->key_pem)
		return vs_error_set(err, EINVAL,
				    "%s: TLS needs both a certificate and a key (--tls-cert and "
				    "--tls-key)",
				    name);
	struct sockaddr_storage ss;
	int r = vs_parse_listen(cfg->listen, &ss, err);
	if (r < 0)
		return vs_error_wrap(err, "%s", name);
	/* A thread per connection cannot be combined with suspend/resume in
	 * libmicrohttpd; such a server has no long-polls (httpd.h). */
	unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (cfg->thread_per_conn)
		flags |= MHD_USE_THREAD_PER_CONNECTION;
	else
		flags |= MHD_ALLOW_SUSPEND_RESUME;
	if (cfg->upgrades)
		flags |= MHD_ALLOW_UPGRADE;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cfg->cert_pem) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			return vs_error_set(err, ENOTSUP, "%s: this libmicrohttpd has no TLS",
					    name);
		flags |= MHD_USE_TLS;
	}

	struct httpd *h = vs_xcalloc(1, sizeof(*h));
	h->cfg = *cfg;
	h->name = vs_xstrdup(name);
	h->listen = vs_xstrdup(cfg->listen);
	h->cfg.name = h->name;
	h->cfg.listen = h->listen;
	h->cfg.cert_pem = h->cfg.key_pem = NULL; /* the daemon has them loaded */
	h->listen_fd = -1;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->upgraded_cv, NULL);
	h->conn_limit = cfg->conn_limit ? cfg->conn_limit : httpd_conn_limit_default();

	/* The optional items come first so that a prefix can be cut off. */
	struct MHD_OptionItem opts[9];
	size_t n = 0;
	if (!cfg->thread_per_conn)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
						    cfg->threads > 1 ? cfg->threads : 1, NULL};
	if (cfg->cert_pem) {
		opts[n++] =
		    (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->cert_pem};
		opts[n++] =
		    (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->key_pem};
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
						    (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:"
							    "+VERS-TLS1.2"};
	}
	/* An upgraded stream's TLS relay buffers are what is left of the
	 * connection's pool (libmicrohttpd >= 0.9.77; 0.9.75, Debian 12's,
	 * leaves the 101's write buffer holding all of it and relays through
	 * an 8-byte emergency buffer, 4 bytes a round - upstream a93ca180).
	 * The pool is mmap'd: untouched, it costs address space only. */
	/* A server with a thread per connection streams request bodies into
	 * its hooks (a migration's PUT: hundreds of MiB): libmicrohttpd reads
	 * into half the pool and hands the body over a buffer at a time, so
	 * its 32 KiB default means a poll, a recv and a hook call (a pipe
	 * write) per 16 KiB. 256 KiB: 128 KiB a round. */
	if (cfg->thread_per_conn)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
						    (intptr_t)HTTPD_STREAM_POOL, NULL};
	else if (cfg->upgrades && cfg->cert_pem)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
						    (intptr_t)(128 << 10), NULL};
	if (cfg->per_addr_limit)
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
						    (intptr_t)cfg->per_addr_limit, NULL};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

	int lfd = listen_socket(h, &ss, err);
	if (lfd < 0) {
		httpd_free(h);
		return lfd;
	}
	mhd_last_error[0] = '\0';
	errno = 0;
	/* The logger first: MHD complains about any other order. */
	h->daemon = MHD_start_daemon(
	    flags, 0, cfg->ops->accept ? on_accept : NULL, h, on_request, h,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, lfd,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, h, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_CONNECTION_TIMEOUT,
	    cfg->timeout_secs ? cfg->timeout_secs : 30u, MHD_OPTION_CONNECTION_LIMIT, h->conn_limit,
	    MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!h->daemon) {
		int e = errno ? errno : EIO;
		close(lfd);
		const char *why = mhd_last_error[0] ? mhd_last_error : "no reason given";
		httpd_free(h);
		/* Our socket is bound and listening already: with TLS asked
		 * for, what is left to fail is the certificate and key. */
		if (cfg->cert_pem)
			return vs_error_set(err, EINVAL,
					    "%s: --tls-cert/--tls-key: cannot set up TLS: %s", name,
					    why);
		return vs_error_set(err, e, "%s: --listen %s: cannot start serving: %s", name,
				    cfg->listen, why);
	}
	h->listen_fd = lfd;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(lfd, (struct sockaddr *)&bound, &blen) == 0)
		h->port =
		    ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	*out = h;
	return 0;
}

unsigned httpd_port(const struct httpd *h)
{
	return h->port;
}

void *httpd_cls(const struct httpd *h)
{
	return h->cfg.cls;
}

unsigned httpd_conn_limit(const struct httpd *h)
{
	return h->conn_limit;
}

void httpd_quiesce(struct httpd *h)
{
	if (h->listen_fd < 0 || !h->daemon)
		return;
	/* Quiescing hands the listening socket back: ours to close. */
	MHD_socket s = MHD_quiesce_daemon(h->daemon);
	if (s != MHD_INVALID_SOCKET) {
		close(s);
		h->listen_fd = -1;
	}
}

void httpd_stop(struct httpd *h)
{
	if (!h)
		return;
	httpd_quiesce(h);
	pthread_mutex_lock(&h->lock);
	__atomic_store_n(&h->stopping, true, __ATOMIC_SEQ_CST);
	while (h->suspended) {
		struct req *q = h->suspended;
		unlist(h, q);
		MHD_resume_connection(q->con);
	}
	resume_queued(h); /* every held-back one too */
	/* Upgraded streams: their fd reads EOF now; wait for every fn. */
	for (struct httpd_upgrade *u = h->upgraded; u; u = u->next)
		shutdown(u->fd, SHUT_RDWR);
	while (h->nupgraded)
		pthread_cond_wait(&h->upgraded_cv, &h->lock);
	pthread_mutex_unlock(&h->lock);
	/* The resumed requests answer at once now: give those answers (at
	 * most 2 s) to go out before the connections are closed. */
	for (int i = 0; i < 200 && __atomic_load_n(&h->polls, __ATOMIC_SEQ_CST); i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(h->daemon);
	h->listen_fd = -1; /* closed by MHD_stop_daemon unless quiesced */
	httpd_free(h);
}
