/*
 * httpd.h - the small HTTP server the registry and the node manager's API
 * share: libmicrohttpd underneath, run the way vslice's daemons need it.
 *
 * What the wrapper does, so no caller does it again:
 *  - listens on a --listen address (netaddr.h) on a socket of its own, with
 *    SO_REUSEADDR (a restart may bind over TIME_WAIT) and never SO_REUSEPORT:
 *    a port another process listens on is refused (-EADDRINUSE, kind
 *    VS_EK_BUSY), not shared;
 *  - optional TLS from PEM text in memory, TLS 1.2 and 1.3 only; a key that
 *    does not match its certificate fails the start, not the first client;
 *  - poll() mode in its own threads (libmicrohttpd 0.9.75's epoll loop can
 *    miss a dying client's FIN: see lib/registry/server.c), a connection
 *    cap (global, from RLIMIT_NOFILE unless given), an optional cap per
 *    client address, an idle timeout that a handler may raise per request;
 *  - request bodies collected in memory up to body_max (413 beyond, with an
 *    {"error"} naming the request), or handed to the caller chunk by chunk
 *    (an upload to a file); a hook sees every growth so a caller can charge
 *    the memory to someone and refuse;
 *  - answers from memory (JSON, text) or from an fd (streamed by MHD);
 *  - long-polls: a handler may suspend its request (httpd_suspend) and
 *    resume it from any thread (httpd_resume); the handler then runs again.
 *
 * Threads: every hook runs on one of the server's threads; none may block,
 * except with cfg.thread_per_conn, where each connection has a thread of
 * its own (and nothing can be suspended). httpd_resume may be called from
 * any thread.
 */
#ifndef VSLICE_HTTPD_H
#define VSLICE_HTTPD_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "vslice/error.h"

#define HTTPD_HEADERS_MAX 4 /* extra answer headers */

struct httpd;

/* A streamed answer's source (httpd_answer_stream): up to max bytes into
 * buf; > 0 bytes given, 0 the end, < 0 abort the connection. It may block
 * (only with cfg.thread_per_conn): it runs on the connection's thread, and
 * only when the client has taken what came before (a client that stops
 * reading stops the calls, and the idle timeout closes it). */
typedef ssize_t (*httpd_stream_fn)(void *cls, char *buf, size_t max);

/* The answer a hook fills. status 0 = no answer yet. body is malloc'd and
 * taken by the wrapper; fd (>= 0) is taken and closed by it. */
struct httpd_answer {
	unsigned status;
	char *body;
	size_t len;
	const char *content_type; /* static string */
	int fd;			  /* >= 0: answer with the file from fd_offset */
	uint64_t fd_offset;
	uint64_t fd_len; /* bytes from fd_offset; 0 with !fd_len_set: to EOF */
	bool fd_len_set;
	char *headers[HTTPD_HEADERS_MAX][2];
	struct httpd_upgrade *upgrade; /* httpd_answer_upgrade's (taken by the wrapper) */
	httpd_stream_fn stream;	       /* non-NULL: a streamed answer (httpd_answer_stream) */
	void (*stream_free)(void *cls);
	void *stream_cls;
};

/* One request. method/url are the request line's (url without the query);
 * the wrapper owns them and the body. data: the handler's own per-request
 * state, which ops->done frees. */
struct httpd_request {
	struct httpd *srv;
	const char *method;
	const char *url;
	void *conn_ctx; /* what ops->conn_open returned for this connection */
	void *data;	/* the handler's */
	char *body;	/* the collected body, NUL-terminated (NULL: none) */
	size_t len;
};

struct httpd_ops {
	/* Headers are in, no body yet. Fill a to answer at once (a client
	 * that was sending a body then sees its connection closed after the
	 * answer); call httpd_stream_body to get the body through ops->data
	 * instead of collected. May be NULL. */
	void (*begin)(struct httpd_request *req, struct httpd_answer *a);
	/* A streamed body's next chunk. Return < 0 to stop taking it: later
	 * chunks are dropped and ops->handle still runs (to say why). */
	int (*data)(struct httpd_request *req, const char *buf, size_t len);
	/* A collected body is about to grow to total bytes. Return < 0 with a
	 * filled to refuse it (that answer is sent once the body has been
	 * read; what was collected is freed). May be NULL. */
	int (*body_grow)(struct httpd_request *req, size_t total, struct httpd_answer *a);
	/* The whole request is in: answer it, or httpd_suspend(req) and
	 * return (a is dropped); after httpd_resume it runs again. While
	 * httpd_stopping() it must answer: a request it leaves without an
	 * answer then gets 503 (500 when not stopping: a handler's bug). */
	void (*handle)(struct httpd_request *req, struct httpd_answer *a);
	/* Every answer passes here just before it is queued (count it, charge
	 * it, replace it). May be NULL. */
	void (*answer)(struct httpd_request *req, struct httpd_answer *a);
	/* The request is over (answered, or its connection dropped, also
	 * while suspended): free req->data. May be NULL. */
	void (*done)(struct httpd_request *req, bool completed);
	/* Admission of a new connection (false: closed at once), then its
	 * open and close; conn_open's result is each request's conn_ctx. */
	bool (*accept)(void *cls, const struct sockaddr *addr, socklen_t len);
	void *(*conn_open)(void *cls, const struct sockaddr *addr);
	void (*conn_close)(void *cls, void *conn_ctx);
};

struct httpd_config {
	const char *name;		/* in error messages: "registry", "status API" */
	const char *listen;		/* "ADDR:PORT" (netaddr.h); port 0: the kernel picks */
	const char *cert_pem, *key_pem; /* both or neither: TLS */
	unsigned threads;		/* 0: 1 */
	unsigned conn_limit;		/* 0: half of RLIMIT_NOFILE beyond 64 */
	unsigned per_addr_limit;	/* 0: no cap per client address */
	unsigned timeout_secs;		/* idle connection timeout; 0: 30 */
	size_t body_max;		/* collected bodies; 0: no body taken (413) */
	/* Resumed requests whose handler has not run yet, at most (0: no
	 * cap). A commit that resumes a thousand long-polls at once would
	 * have every handler run before the first answer is written (poll()
	 * mode writes in the next round): with a cap, the rest wait in order
	 * and are resumed as the first ones are handled, so answers go out
	 * while later ones are still being built. */
	unsigned resume_batch;
	/* A thread per connection (at most conn_limit of them) instead of a
	 * pool: hooks may then block, say writing a streamed body into a pipe,
	 * without holding up other connections; httpd_suspend is a no-op. */
	bool thread_per_conn;
	/* Requests may be answered with httpd_answer_upgrade. */
	bool upgrades;
	const struct httpd_ops *ops;
	void *cls; /* httpd_cls() */
};

/* Start serving. Errors: bad listen (EINVAL, names --listen), busy port
 * (EADDRINUSE, kind VS_EK_BUSY), TLS that cannot be set up (EINVAL, with
 * GnuTLS's reason), no TLS in this libmicrohttpd (ENOTSUP). */
int httpd_start(const struct httpd_config *cfg, struct httpd **out, struct vs_error *err);

/* The bound port (useful with port 0). */
unsigned httpd_port(const struct httpd *h);
void *httpd_cls(const struct httpd *h);
/* The connection limit in force (cfg's or the one derived), and the one
 * derived from RLIMIT_NOFILE (for a caller that sizes its own admission
 * before starting). */
unsigned httpd_conn_limit(const struct httpd *h);
unsigned httpd_conn_limit_default(void);

/* Stop accepting new connections; those open go on. */
void httpd_quiesce(struct httpd *h);
/* Stop: no new connections; every suspended request is resumed (its
 * handler, seeing httpd_stopping, answers) and given up to 2 s to go out;
 * then every connection is closed (ops->done runs for each) and h freed. */
void httpd_stop(struct httpd *h);
bool httpd_stopping(const struct httpd *h);

/* A request header's value (case-insensitive name), a query argument's,
 * the client's address; NULL when absent. Valid while the request lives. */
const char *httpd_header(const struct httpd_request *req, const char *name);
const char *httpd_query(const struct httpd_request *req, const char *name);
const struct sockaddr *httpd_client_addr(const struct httpd_request *req);
/* The request target as the client sent it: still percent-encoded, with
 * its query (req->url is decoded, so "a%2Fb" and "a/b" look alike there). */
const char *httpd_raw_url(const struct httpd_request *req);

/* From ops->begin: the body goes to ops->data, not into req->body. */
void httpd_stream_body(struct httpd_request *req);
/* This request's idle timeout from now on (a long-poll, a slow upload). */
void httpd_set_timeout(struct httpd_request *req, unsigned secs);
/* From ops->handle: park the request; no answer goes out until resumed
 * (not with cfg.thread_per_conn). */
void httpd_suspend(struct httpd_request *req);
/* Any thread, while the request lives (ops->done has not run): run
 * ops->handle for a suspended request again (with cfg.resume_batch, once
 * fewer than that many resumed requests wait for their handler; in the
 * order resumed). A no-op if not suspended. */
void httpd_resume(struct httpd_request *req);

/* Answers. json: encoded compactly plus '\n' (a borrowed reference; NULL,
 * as from a failed json_pack, becomes a 500).
 * error: {"error": "<message>"} with line breaks turned into spaces. */
void httpd_answer_json(struct httpd_answer *a, unsigned status, const json_t *json);
void httpd_answer_error(struct httpd_answer *a, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The {"error": ...} object httpd_answer_error sends (new reference), for
 * servers that build their own answers. */
json_t *httpd_error_vjson(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void httpd_answer_fd(struct httpd_answer *a, unsigned status, int fd, uint64_t offset, uint64_t len,
		     bool len_set, const char *content_type);
/* A body of unknown length (chunked) read from fn(cls, ...) as the client
 * takes it; free_cls(cls) (may be NULL) once the answer is over or
 * dropped. thread_per_conn servers only (fn may block). */
void httpd_answer_stream(struct httpd_answer *a, unsigned status, httpd_stream_fn fn,
			 void (*free_cls)(void *), void *cls, const char *content_type);
/* Add a header (copied); false when all HTTPD_HEADERS_MAX are taken. */
bool httpd_answer_header(struct httpd_answer *a, const char *name, const char *value);
/* Free what a holds and make it empty (fd = -1). */
void httpd_answer_clear(struct httpd_answer *a);

/* ---- upgraded connections (101 Switching Protocols) ----------------
 *
 * A handler may turn its connection into a bidirectional byte stream of
 * its own protocol (the node manager's remote exec). It answers with
 * httpd_answer_upgrade; once the 101 has gone out, fn runs on a thread of
 * its own (hooks may not block; fn may) with:
 *   fd     the stream: a non-blocking socket, the client's with plain HTTP,
 *          with TLS one end of a socketpair whose other end libmicrohttpd
 *          relays through TLS (its buffers, a fixed size, are the
 *          connection's memory pool). fn never closes it;
 *   extra  bytes the client sent after its request that were read with it
 *          (the start of the stream), extra_len of them.
 * When fn returns the wrapper closes the connection and calls free_arg(arg)
 * (also when the 101 never went out). httpd_stop shuts every open stream
 * down (fd then reads EOF) and waits for its fn to return and its
 * free_arg to run: fn must end soon after its fd reports the end.
 * The request must be HTTP/1.1 with "Connection: Upgrade" and "Upgrade:"
 * (httpd_wants_upgrade); the answer carries "Upgrade: proto".
 */
typedef void (*httpd_upgrade_fn)(void *arg, int fd, const char *extra, size_t extra_len);
void httpd_answer_upgrade(struct httpd_answer *a, const char *proto, httpd_upgrade_fn fn, void *arg,
			  void (*free_arg)(void *arg));
/* Does the request ask to switch to proto (its Upgrade header names it,
 * case-insensitively, and Connection holds the token "upgrade")? */
bool httpd_wants_upgrade(const struct httpd_request *req, const char *proto);

#endif
