/*
 * http.h - the HTTP client slicectl and vslice-nodemgr use to talk to the
 * registry (docs/cluster-api.md). libcurl underneath, loaded on first use
 * (dlopen), so local-mode slicectl never pays for mapping it and its
 * dependencies.
 *
 * Every call returns 0 for a 2xx answer. Anything else is a negative errno
 * with err filled with one line: the registry's own {"error": ...} text when
 * it sent one, else the transport error ("registry http://h:7480: Could not
 * connect to server"). The errno follows the status: 400 EINVAL, 401/403
 * EACCES, 404 ENOENT, 409 EEXIST, 413 EFBIG, 422 EINVAL, 503 EAGAIN, other
 * EIO; transport failures ECONNREFUSED / ETIMEDOUT / EIO.
 * *status (when not NULL) holds the HTTP status, 0 when none came back.
 *
 * https:// is always verified, peer certificate and host name, against the
 * system CAs or against ca_file alone when one is given; there is no way to
 * turn that off. A certificate that does not verify is one line: "registry
 * https://h:7480: the registry's certificate is not trusted (give its CA
 * with --ca FILE or VSLICE_CA): <libcurl's reason>" (EACCES).
 */
#ifndef VSLICE_HTTP_H
#define VSLICE_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vslice/error.h"

struct http_client {
	const char *what;  /* who base is, in messages: "registry" (default), "transfer target" */
	char *base;	   /* "http://host:port", no trailing slash */
	char *token;	   /* bearer token, NULL = none */
	char *ca_file;	   /* PEM CA bundle that https:// peers must chain to; NULL = system CAs */
	long timeout_secs; /* whole-request timeout for non-long-poll calls (default 30) */
	void *curl;	   /* reused easy handle (keep-alive); one thread per client */
};

/* base_url must be http:// or https://; a trailing '/' is dropped.
 * ca_file (NULL = the system's CAs): a PEM bundle, checked readable here
 * (error names --ca); it replaces the system CAs for https:// URLs. */
int http_client_init(struct http_client *c, const char *base_url, const char *token,
		     const char *ca_file, struct vs_error *err);
void http_client_free(struct http_client *c);
static inline void http_client_freep(struct http_client *c)
{
	if (c->base)
		http_client_free(c);
}
/* A client freed at scope end (one that was never set up is left alone). */
#define cleanup_http __attribute__((cleanup(http_client_freep)))
/* As http_client_init, for a peer that is not the registry: what (a static
 * string, e.g. "transfer target") names it in every message, and the URL
 * errors name it instead of --registry. */
int http_client_init_peer(struct http_client *c, const char *base_url, const char *token,
			  const char *ca_file, const char *what, struct vs_error *err);

/*
 * method path (path starts with '/', already escaped, may carry a query).
 * body: JSON to send (NULL = none). wait_secs > 0: a long-poll, the timeout
 * becomes wait_secs + 15. *resp (when resp != NULL): the parsed JSON answer,
 * also for error statuses when the body was JSON (422's "errors"), NULL for
 * an empty body. *index (when not NULL): the X-Vslice-Index header, or -1.
 */
int http_json(struct http_client *c, const char *method, const char *path, json_t *body,
	      long wait_secs, long *status, json_t **resp, long long *index, struct vs_error *err);

/* PUT the bytes of fd from its current offset to EOF (streamed), or len
 * bytes of buf. headers: NULL-terminated "Name: value" strings, or NULL. */
int http_put_fd(struct http_client *c, const char *path, int fd, const char *const *headers,
		long *status, struct vs_error *err);
int http_put_buf(struct http_client *c, const char *path, const void *buf, size_t len,
		 const char *const *headers, long *status, struct vs_error *err);
/* As http_put_buf; *resp (when resp != NULL): the answer's JSON body, also
 * for an error status (a 409's {"error", "size"}), NULL when none or not JSON. */
int http_put_buf_resp(struct http_client *c, const char *path, const void *buf, size_t len,
		      const char *const *headers, long *status, json_t **resp,
		      struct vs_error *err);

/* A streamed upload's limits (http_put_stream). */
struct http_stream_opts {
	/* Give up when fewer than low_speed_bytes a second moved, either way,
	 * for low_speed_secs (0: 1 byte for 60 s). It counts the wait for the
	 * answer after the body too. */
	long low_speed_bytes, low_speed_secs;
	/* Polled while the request runs (about once a second, and as bytes
	 * move): true gives up at once (ECANCELED). NULL: never. */
	bool (*cancel)(void *arg);
	void *arg;
};

/* PUT the bytes read from fd (a pipe: until EOF, sent chunked) with o's
 * limits; *resp (when not NULL): the answer's JSON body, also for an error
 * status, NULL when none or not JSON. */
int http_put_stream(struct http_client *c, const char *path, int fd, const char *const *headers,
		    const struct http_stream_opts *o, long *status, json_t **resp,
		    struct vs_error *err);

/* GET path, streaming the body into fd. If header is not NULL, the value of
 * that response header (case-insensitive name, no colon) is copied into
 * value (value[0] = 0 when absent). An error answer is not written to fd. */
int http_get_fd(struct http_client *c, const char *path, int fd, const char *header, char *value,
		size_t value_len, long *status, struct vs_error *err);

/*
 * An upgraded connection: GET path with "Connection: Upgrade", "Upgrade:
 * proto" (and the client's token); a 101 answer naming proto leaves a raw
 * byte stream, over TLS for https:// (verified as every request here).
 * Any other answer fails as the other calls do (err: the peer's {"error"}
 * text, *status its code). Made with libcurl's CONNECT_ONLY and
 * curl_easy_send/recv on an easy handle of its own (c stays usable).
 */
struct http_upgraded;
int http_upgrade(struct http_client *c, const char *path, const char *proto,
		 struct http_upgraded **out, long *status, struct vs_error *err);
/* The socket, for poll(). */
int http_upgraded_fd(const struct http_upgraded *u);
/* Bytes received (> 0), 0 when the peer closed, -EAGAIN when none are
 * there now, other < 0 with err. Poll the fd for POLLIN only after
 * -EAGAIN: TLS may hold bytes already taken off the socket. */
ssize_t http_upgraded_recv(struct http_upgraded *u, void *buf, size_t len, struct vs_error *err);
/* Bytes sent (> 0), -EAGAIN (poll for POLLOUT, then send the same bytes
 * again), other < 0 with err. */
ssize_t http_upgraded_send(struct http_upgraded *u, const void *buf, size_t len,
			   struct vs_error *err);
void http_upgraded_close(struct http_upgraded *u);

/* Percent-encode s for one path segment or query value (caller frees).
 * With keep_slash, '/' stays as is (a result path). */
char *http_escape(const char *s, int keep_slash);

#endif
