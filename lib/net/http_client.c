/*
 * http_client.c - the HTTP client (include/vslice/http.h) on libcurl: the
 * registry's, and a node manager's for a migration's stream to another node
 * (http_put_stream: from a pipe, with a low-speed limit and a cancel hook).
 *
 * libcurl is loaded with dlopen on first use: linked in, it and the eleven
 * libraries it pulls (TLS, nghttp2, ldap, ssh, idn...) would be mapped and
 * relocated on every slicectl run, local slice starts included, for a verb
 * family most runs never use. Only the easy interface is used, through the
 * function pointers below; one easy handle per client, reused so the
 * connection stays alive between calls.
 *
 * TLS: every request sets CURLOPT_SSL_VERIFYPEER and VERIFYHOST on itself
 * rather than trusting libcurl's defaults (a curlrc or a distribution patch
 * cannot turn them off here), and there is deliberately no option to skip
 * verification: a bearer token sent to an unverified peer is a token given
 * away. With a CA file, CAINFO names it and CAPATH is cleared, so that file
 * alone decides (Debian's libcurl also searches /etc/ssl/certs otherwise).
 *
 * Upgraded connections (http_upgrade): libcurl has no client for a 101
 * to a protocol of ours, so the handle only connects (CONNECT_ONLY: TCP,
 * and the TLS handshake with the same verification), and the request and
 * its answer's head go through curl_easy_send/recv; the head is read up to
 * a cap (UPGRADE_HEAD_MAX), an error answer's body up to ERROR_BODY_MAX.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <unistd.h>

#include "vslice/http.h"
#include "vslice/json.h"
#include "vslice/util.h"
#include "vslice_version.h"

#define ERROR_BODY_MAX	  (64u << 10) /* an error answer kept for its message */
#define JSON_BODY_MAX	  (64u << 20) /* a JSON answer */
#define STREAM_UPLOAD_BUF (1L << 20)  /* http_put_stream: libcurl's upload buffer */

static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_reset)(CURL *);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	curl_version_info_data *(*version_info)(CURLversion);
	CURLcode (*easy_send)(CURL *, const void *, size_t, size_t *);
	CURLcode (*easy_recv)(CURL *, void *, size_t, size_t *);
} cu;
static char load_error[256] = "libcurl not loaded";
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void)
{
	const struct vs_dlsym syms[] = {
	    {"curl_global_init", (void **)&cu.global_init},
	    {"curl_easy_init", (void **)&cu.easy_init},
	    {"curl_easy_setopt", (void **)&cu.easy_setopt},
	    {"curl_easy_perform", (void **)&cu.easy_perform},
	    {"curl_easy_getinfo", (void **)&cu.easy_getinfo},
	    {"curl_easy_reset", (void **)&cu.easy_reset},
	    {"curl_easy_cleanup", (void **)&cu.easy_cleanup},
	    {"curl_easy_strerror", (void **)&cu.easy_strerror},
	    {"curl_slist_append", (void **)&cu.slist_append},
	    {"curl_slist_free_all", (void **)&cu.slist_free_all},
	    {"curl_easy_escape", (void **)&cu.easy_escape},
	    {"curl_free", (void **)&cu.free},
	    {"curl_version_info", (void **)&cu.version_info},
	    {"curl_easy_send", (void **)&cu.easy_send},
	    {"curl_easy_recv", (void **)&cu.easy_recv},
	};
	if (!vs_dl_resolve("libcurl.so.4", syms, VS_ARRAY_SIZE(syms), load_error,
			   sizeof(load_error)))
		return;
	if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(load_error, sizeof(load_error), "curl_global_init failed");
		return;
	}
	load_error[0] = '\0';
}

static int ensure_loaded(struct vs_error *err)
{
	pthread_once(&load_once, load);
	if (load_error[0])
		return vs_error_set(err, ENOSYS, "%s", load_error);
	return 0;
}

int http_client_init(struct http_client *c, const char *base_url, const char *token,
		     const char *ca_file, struct vs_error *err)
{
	return http_client_init_peer(c, base_url, token, ca_file, "registry", err);
}

int http_client_init_peer(struct http_client *c, const char *base_url, const char *token,
			  const char *ca_file, const char *what, struct vs_error *err)
{
	memset(c, 0, sizeof(*c));
	bool reg = !strcmp(what, "registry");
	const char *opt = reg ? "--registry" : what;
	if (!base_url || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8)))
		return vs_error_set(err, EINVAL, "%s: \"%s\" is not an http:// or https:// URL",
				    opt, base_url ? base_url : "");
	size_t len = strlen(base_url);
	while (len > 8 && base_url[len - 1] == '/')
		len--;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)base_url[i] <= 0x20 || base_url[i] == 0x7f)
			return vs_error_set(err, EINVAL,
					    "%s: the URL has spaces or control characters", opt);
	if (token && strpbrk(token, "\r\n"))
		return vs_error_set(err, EINVAL, "--token: has a line break");
	int r = ensure_loaded(err);
	if (r < 0)
		return r;
	if (!strncmp(base_url, "https://", 8)) {
		const curl_version_info_data *vi = cu.version_info(CURLVERSION_NOW);
		if (!vi || !(vi->features & CURL_VERSION_SSL))
			return vs_error_set(err, ENOTSUP,
					    "%s: this libcurl was built without TLS; "
					    "cannot speak https://",
					    opt);
	}
	if (ca_file) {
		/* Read it once now, so a wrong path is one line naming --ca
		 * rather than a TLS failure on the first request. */
		cleanup_free char *pem = NULL;
		if (!*ca_file)
			return vs_error_set(err, EINVAL, "--ca: empty file name");
		if (vs_read_file(ca_file, 64u << 20, &pem, NULL, err) < 0)
			return vs_error_wrap(err, "--ca");
		if (!strstr(pem, "-----BEGIN CERTIFICATE-----"))
			return vs_error_set(err, EINVAL,
					    "--ca: %s: no PEM certificate in it (\"-----BEGIN "
					    "CERTIFICATE-----\")",
					    ca_file);
	}
	c->what = what;
	c->base = vs_xasprintf("%.*s", (int)len, base_url);
	c->token = token && *token ? vs_xstrdup(token) : NULL;
	c->ca_file = ca_file ? vs_xstrdup(ca_file) : NULL;
	c->timeout_secs = 30;
	c->curl = cu.easy_init();
	if (!c->curl) {
		http_client_free(c);
		return vs_error_set(err, ENOMEM, "curl_easy_init failed");
	}
	return 0;
}

void http_client_free(struct http_client *c)
{
	if (c->curl)
		cu.easy_cleanup(c->curl);
	free(c->base);
	free(c->token);
	free(c->ca_file);
	memset(c, 0, sizeof(*c));
}

char *http_escape(const char *s, int keep_slash)
{
	size_t n = strlen(s);
	char *out = vs_xmalloc(3 * n + 1), *o = out;
	static const char hexd[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			     *p == '~' || (keep_slash && *p == '/');
		if (plain) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hexd[*p >> 4];
			*o++ = hexd[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

/* One request's state, shared by the curl callbacks. */
struct xfer {
	/* response body */
	int out_fd; /* >= 0: 2xx bodies stream here */
	char *body; /* else (and for error bodies): kept in memory */
	size_t len, cap, max;
	bool too_big;
	int write_errno;
	long status; /* known once the first body byte arrives */
	CURL *curl;
	/* request body */
	int in_fd;
	const char *in_buf;
	size_t in_len, in_off;
	/* one response header to capture */
	const char *want_header;
	char *header_value;
	size_t header_len;
	long long index;
	/* a stream's limits (http_put_stream); NULL: perform's defaults */
	const struct http_stream_opts *stream;
	bool cancelled;
};

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	struct xfer *x = arg;
	if (x->stream->cancel && x->stream->cancel(x->stream->arg)) {
		x->cancelled = true;
		return 1; /* CURLE_ABORTED_BY_CALLBACK */
	}
	return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (!x->status)
		cu.easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->out_fd >= 0 && x->status >= 200 && x->status < 300) {
		int r = vs_write_all(x->out_fd, ptr, n);
		if (r < 0) {
			x->write_errno = -r;
			return 0;
		}
		return n;
	}
	size_t max = x->out_fd >= 0 ? ERROR_BODY_MAX : x->max;
	if (x->len + n > max) {
		x->too_big = true;
		return 0;
	}
	if (x->len + n + 1 > x->cap) {
		x->cap = (x->len + n + 1) * 2;
		x->body = vs_xrealloc(x->body, x->cap);
	}
	memcpy(x->body + x->len, ptr, n);
	x->len += n;
	x->body[x->len] = '\0';
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems;
	const char *colon = memchr(buf, ':', n);
	if (!colon)
		return n;
	size_t klen = (size_t)(colon - buf);
	const char *v = colon + 1;
	size_t vlen = n - klen - 1;
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	if (klen == strlen("X-Vslice-Index") && !strncasecmp(buf, "X-Vslice-Index", klen)) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%.*s", (int)(vlen < 31 ? vlen : 31), v);
		x->index = strtoll(tmp, NULL, 10);
	}
	if (x->want_header && klen == strlen(x->want_header) &&
	    !strncasecmp(buf, x->want_header, klen) && x->header_value) {
		size_t k = vlen < x->header_len - 1 ? vlen : x->header_len - 1;
		memcpy(x->header_value, v, k);
		x->header_value[k] = '\0';
	}
	return n;
}

static size_t on_read(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (x->in_buf) {
		size_t left = x->in_len - x->in_off;
		if (n > left)
			n = left;
		memcpy(ptr, x->in_buf + x->in_off, n);
		x->in_off += n;
		return n;
	}
	for (;;) {
		ssize_t r = read(x->in_fd, ptr, n);
		if (r >= 0)
			return (size_t)r;
		if (errno != EINTR)
			return CURL_READFUNC_ABORT;
	}
}

static int status_errno(long status)
{
	switch (status) {
	case 400:
	case 422:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 409:
		return EEXIST;
	case 413:
		return EFBIG;
	case 503:
		return EAGAIN;
	default:
		return EIO;
	}
}

/* The host of "scheme://host[:port][/...]" ("[v6]" kept whole). */
static const char *url_host(const char *url, char *buf, size_t len)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	size_t n = h[0] == '[' ? strcspn(h, "]") + (h[strcspn(h, "]")] == ']') : strcspn(h, ":/");
	snprintf(buf, len, "%.*s", (int)n, h);
	return buf;
}

/*
 * After CURLE_PEER_FAILED_VERIFICATION: does the chain verify when the host
 * name is not checked? Then the name is what failed. libcurl reports both
 * with one code (and, with OpenSSL, checks the name before it stores the
 * chain's verify result), so ask with a second handshake (connect only, no
 * request, no token) on this error path.
 */
static bool chain_trusted(struct http_client *c)
{
	CURL *h = cu.easy_init();
	if (!h)
		return false;
	cu.easy_setopt(h, CURLOPT_URL, c->base);
	cu.easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	cu.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	cu.easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	cu.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	if (c->ca_file) {
		cu.easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
		cu.easy_setopt(h, CURLOPT_CAPATH, (char *)NULL);
	}
	bool ok = cu.easy_perform(h) == CURLE_OK;
	cu.easy_cleanup(h);
	return ok;
}

/* A request that got no HTTP answer: one line, with a hint where the cause
 * is usually a wrong URL or a missing CA rather than the network. */
static int transport_error(struct http_client *c, CURLcode rc, const char *why,
			   struct vs_error *err)
{
	bool https = !strncmp(c->base, "https://", 8);
	bool reg = !strcmp(c->what, "registry");
	const char *w = c->what;
	const char *reason = why && *why ? why : cu.easy_strerror(rc);
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		/* A CA will not fix a certificate for another name. */
		if (chain_trusted(c)) {
			char host[256];
			return vs_error_set(
			    err, EACCES,
			    "registry %s: the registry's certificate does not match "
			    "the name %s (its subjectAltName must hold the URL's host "
			    "name or address): %s",
			    c->base, url_host(c->base, host, sizeof(host)), reason);
		}
		return vs_error_set(err, EACCES,
				    "%s %s: the %s's certificate is not trusted (give its CA with "
				    "--ca FILE%s): %s",
				    w, c->base, w, reg ? " or VSLICE_CA" : "", reason);
	case CURLE_SSL_CACERT_BADFILE:
		return vs_error_set(err, EINVAL, "%s %s: cannot use the CA file %s: %s", w, c->base,
				    c->ca_file ? c->ca_file : "(system)", reason);
	case CURLE_SSL_CONNECT_ERROR:
		return vs_error_set(err, EPROTO,
				    "%s %s: TLS handshake failed (is it a plain http:// %s?): %s",
				    w, c->base, w, reason);
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_WEIRD_SERVER_REPLY:
		if (!https && reg)
			return vs_error_set(err, EPROTO,
					    "registry %s: no HTTP answer (does it serve https://? "
					    "then use an https:// URL): %s",
					    c->base, reason);
		if (!reg)
			return vs_error_set(err, EPROTO, "%s %s: %s", w, c->base, reason);
		break;
	default:
		break;
	}
	int e = rc == CURLE_COULDNT_CONNECT	 ? ECONNREFUSED
		: rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT
						 : EIO;
	/* A peer's stream: libcurl's own words say more ("Operation too slow.
	 * Less than 1024 bytes/sec transferred the last 15 seconds"). */
	return vs_error_set(err, e, "%s %s: %s", w, c->base, reg ? cu.easy_strerror(rc) : reason);
}

/* Run the prepared request; turn transport errors and non-2xx answers into err. */
static int perform(struct http_client *c, struct xfer *x, const char *method, const char *path,
		   long timeout, struct curl_slist *hdrs, long *status, struct vs_error *err)
{
	CURL *h = c->curl;
	x->curl = h;
	x->index = -1;
	cleanup_free char *url = vs_xasprintf("%s%s", c->base, path);
	cleanup_free char *auth =
	    c->token ? vs_xasprintf("Authorization: Bearer %s", c->token) : NULL;
	if (auth)
		hdrs = cu.slist_append(hdrs, auth);
	hdrs = cu.slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
	cu.easy_reset(h);
	cu.easy_setopt(h, CURLOPT_URL, url);
	cu.easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	cu.easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	cu.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	cu.easy_setopt(h, CURLOPT_WRITEDATA, x);
	cu.easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	cu.easy_setopt(h, CURLOPT_HEADERDATA, x);
	cu.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	cu.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	if (timeout == 0) { /* a stream: no deadline, but not a stalled peer either */
		const struct http_stream_opts *so = x->stream;
		bool own = so && so->low_speed_secs > 0;
		cu.easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, own ? so->low_speed_bytes : 1L);
		cu.easy_setopt(h, CURLOPT_LOW_SPEED_TIME, own ? so->low_speed_secs : 60L);
		if (so && so->cancel) {
			cu.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
			cu.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
			cu.easy_setopt(h, CURLOPT_XFERINFODATA, x);
		}
	}
	cu.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	cu.easy_setopt(h, CURLOPT_USERAGENT, "vslice/" VSLICE_VERSION);
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file) {
		CURLcode ca = cu.easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
		if (ca == CURLE_OK)
			ca = cu.easy_setopt(h, CURLOPT_CAPATH, (char *)NULL);
		if (ca != CURLE_OK) {
			cu.slist_free_all(hdrs);
			return vs_error_set(err, ENOTSUP,
					    "registry %s: this libcurl cannot take a CA file "
					    "(--ca): %s",
					    c->base, cu.easy_strerror(ca));
		}
	}
	char why[CURL_ERROR_SIZE] = ""; /* libcurl's detailed reason, for TLS failures */
	cu.easy_setopt(h, CURLOPT_ERRORBUFFER, why);
	if (x->in_buf || x->in_fd >= 0) {
		cu.easy_setopt(h, CURLOPT_UPLOAD, 1L);
		cu.easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		cu.easy_setopt(h, CURLOPT_READDATA, x);
		if (x->in_buf)
			cu.easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->in_len);
		/* A stream (http_put_stream) reads its pipe and sends in
		 * pieces of up to STREAM_UPLOAD_BUF instead of libcurl's
		 * 64 KiB: fewer reads, sends and wake-ups per byte. */
		if (x->stream)
			cu.easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)STREAM_UPLOAD_BUF);
		/* UPLOAD means PUT; CUSTOMREQUEST above names the real method. */
	}
	CURLcode rc = cu.easy_perform(h);
	long st = 0;
	cu.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	cu.easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL); /* why[] ends here */
	cu.slist_free_all(hdrs);
	if (status)
		*status = st;
	if (rc != CURLE_OK && !(st >= 400 && (x->too_big || rc == CURLE_WRITE_ERROR))) {
		if (x->cancelled)
			return vs_error_set(err, ECANCELED, "%s %s: %s %s: given up", c->what,
					    c->base, method, path);
		if (x->write_errno)
			return vs_error_sys(err, x->write_errno, "%s %s: writing the answer",
					    method, path);
		if (x->too_big)
			return vs_error_set(err, EFBIG, "%s %s: answer too large", method, path);
		return transport_error(c, rc, why, err);
	}
	if (st >= 200 && st < 300)
		return 0;
	/* The registry's own words, when it sent {"error": "..."}. */
	const char *msg = NULL;
	json_t *j = x->body ? json_loads(x->body, 0, NULL) : NULL;
	if (j)
		msg = json_string_value(json_object_get(j, "error"));
	if (msg)
		vs_error_set(err, status_errno(st), "%s", msg);
	else
		vs_error_set(err, status_errno(st), "%s %s: %s %s: HTTP %ld", c->what, c->base,
			     method, path, st);
	json_decref(j);
	return -status_errno(st);
}

int http_json(struct http_client *c, const char *method, const char *path, json_t *body,
	      long wait_secs, long *status, json_t **resp, long long *index, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	if (index)
		*index = -1;
	cleanup_free char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !text)
		return vs_error_set(err, ENOMEM, "%s %s: cannot encode the request", method, path);
	struct xfer x = {.out_fd = -1, .in_fd = -1, .max = JSON_BODY_MAX};
	struct curl_slist *hdrs = NULL;
	if (text) {
		x.in_buf = text;
		x.in_len = strlen(text);
		hdrs = cu.slist_append(hdrs, "Content-Type: application/json");
	}
	hdrs = cu.slist_append(hdrs, "Accept: application/json");
	long timeout = wait_secs > 0 ? wait_secs + 15 : c->timeout_secs;
	int r = perform(c, &x, method, path, timeout, hdrs, status, err);
	if (index)
		*index = x.index;
	if (resp && x.body && x.len) {
		json_error_t je;
		*resp = json_loadb(x.body, x.len, 0, &je);
		if (!*resp && r == 0)
			r = vs_error_set(err, EPROTO,
					 "%s %s: the registry's answer is not JSON: %s", method,
					 path, je.text);
	}
	free(x.body);
	return r;
}

int http_put_fd(struct http_client *c, const char *path, int fd, const char *const *headers,
		long *status, struct vs_error *err)
{
	struct xfer x = {.out_fd = -1, .in_fd = fd, .max = ERROR_BODY_MAX};
	struct curl_slist *hdrs = cu.slist_append(NULL, "Content-Type: application/octet-stream");
	for (const char *const *h = headers; h && *h; h++)
		hdrs = cu.slist_append(hdrs, *h);
	/* Streamed: no size up front, so curl sends it chunked. */
	hdrs = cu.slist_append(hdrs, "Transfer-Encoding: chunked");
	int r = perform(c, &x, "PUT", path, 0, hdrs, status, err);
	free(x.body);
	return r;
}

int http_put_stream(struct http_client *c, const char *path, int fd, const char *const *headers,
		    const struct http_stream_opts *o, long *status, json_t **resp,
		    struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	struct xfer x = {.out_fd = -1, .in_fd = fd, .max = ERROR_BODY_MAX, .stream = o};
	/* The body waits for the peer's "100 Continue": a peer that refuses
	 * the request on its headers (a migration target whose transfer is
	 * not open yet: 503) answers before a byte of the stream goes, and
	 * the answer arrives as such, not as a send failure on a connection
	 * it closed with the body unread ("Broken pipe", no status). Listed
	 * first, so libcurl takes it over perform()'s "Expect:". */
	struct curl_slist *hdrs = cu.slist_append(NULL, "Expect: 100-continue");
	hdrs = cu.slist_append(hdrs, "Content-Type: application/octet-stream");
	for (const char *const *h = headers; h && *h; h++)
		hdrs = cu.slist_append(hdrs, *h);
	hdrs = cu.slist_append(hdrs, "Transfer-Encoding: chunked");
	int r = perform(c, &x, "PUT", path, 0, hdrs, status, err);
	if (resp && x.body && x.len)
		*resp = json_loadb(x.body, x.len, 0, NULL);
	free(x.body);
	return r;
}

int http_put_buf(struct http_client *c, const char *path, const void *buf, size_t len,
		 const char *const *headers, long *status, struct vs_error *err)
{
	return http_put_buf_resp(c, path, buf, len, headers, status, NULL, err);
}

int http_put_buf_resp(struct http_client *c, const char *path, const void *buf, size_t len,
		      const char *const *headers, long *status, json_t **resp, struct vs_error *err)
{
	if (resp)
		*resp = NULL;
	static const char empty[1];
	struct xfer x = {.out_fd = -1,
			 .in_fd = -1,
			 .in_buf = len ? buf : empty,
			 .in_len = len,
			 .max = ERROR_BODY_MAX};
	struct curl_slist *hdrs = cu.slist_append(NULL, "Content-Type: application/octet-stream");
	for (const char *const *h = headers; h && *h; h++)
		hdrs = cu.slist_append(hdrs, *h);
	int r = perform(c, &x, "PUT", path, c->timeout_secs, hdrs, status, err);
	if (resp && x.body && x.len)
		*resp = json_loadb(x.body, x.len, 0, NULL); /* an answer that is not JSON: NULL */
	free(x.body);
	return r;
}

int http_get_fd(struct http_client *c, const char *path, int fd, const char *header, char *value,
		size_t value_len, long *status, struct vs_error *err)
{
	if (value && value_len)
		value[0] = '\0';
	struct xfer x = {.out_fd = fd,
			 .in_fd = -1,
			 .want_header = header,
			 .header_value = value,
			 .header_len = value_len};
	/* Large downloads: no whole-request timeout (perform gives up on a stalled peer). */
	int r = perform(c, &x, "GET", path, 0, NULL, status, err);
	free(x.body);
	return r;
}

/* ---- upgraded connections ------------------------------------------ */

#define UPGRADE_HEAD_MAX (16u << 10)
#define UPGRADE_WAIT_MS	 30000 /* for the answer's head (and an error's body) */

struct http_upgraded {
	CURL *curl;
	int fd;
	/* What came after the 101's head in the same read: returned first. */
	char *early;
	size_t early_len, early_off;
};

int http_upgraded_fd(const struct http_upgraded *u)
{
	return u->fd;
}

void http_upgraded_close(struct http_upgraded *u)
{
	if (!u)
		return;
	if (u->curl)
		cu.easy_cleanup(u->curl);
	free(u->early);
	free(u);
}

ssize_t http_upgraded_recv(struct http_upgraded *u, void *buf, size_t len, struct vs_error *err)
{
	if (u->early_off < u->early_len) {
		size_t n = u->early_len - u->early_off;
		if (n > len)
			n = len;
		memcpy(buf, u->early + u->early_off, n);
		u->early_off += n;
		return (ssize_t)n;
	}
	size_t n = 0;
	CURLcode rc = cu.easy_recv(u->curl, buf, len, &n);
	if (rc == CURLE_AGAIN)
		return -EAGAIN;
	if (rc != CURLE_OK)
		return vs_error_set(err, ECONNRESET, "receive: %s", cu.easy_strerror(rc));
	return (ssize_t)n;
}

ssize_t http_upgraded_send(struct http_upgraded *u, const void *buf, size_t len,
			   struct vs_error *err)
{
	size_t n = 0;
	CURLcode rc = cu.easy_send(u->curl, buf, len, &n);
	if (rc == CURLE_AGAIN)
		return n ? (ssize_t)n : -EAGAIN;
	if (rc != CURLE_OK)
		return vs_error_set(err, ECONNRESET, "send: %s", cu.easy_strerror(rc));
	return (ssize_t)n;
}

/* Wait up to ms for fd to be ready for events; false on timeout. */
static bool wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r;
	while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	return r > 0;
}

static int upgraded_send_all(struct http_upgraded *u, const char *buf, size_t len,
			     struct vs_error *err)
{
	while (len) {
		ssize_t n = http_upgraded_send(u, buf, len, err);
		if (n == -EAGAIN) {
			if (!wait_fd(u->fd, POLLOUT, UPGRADE_WAIT_MS))
				return vs_error_set(err, ETIMEDOUT, "send: timed out");
			continue;
		}
		if (n < 0)
			return (int)n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read more into buf (up to cap), waiting up to UPGRADE_WAIT_MS for a
 * byte; 0 the peer closed, > 0 bytes, < 0 err. */
static ssize_t upgraded_read_some(struct http_upgraded *u, char *buf, size_t cap,
				  struct vs_error *err)
{
	for (;;) {
		ssize_t n = http_upgraded_recv(u, buf, cap, err);
		if (n != -EAGAIN)
			return n;
		if (!wait_fd(u->fd, POLLIN, UPGRADE_WAIT_MS))
			return vs_error_set(err, ETIMEDOUT, "no answer within %d s",
					    UPGRADE_WAIT_MS / 1000);
	}
}

/* The value of header name in the head (text up to the blank line), into
 * out; false when absent. */
static bool head_value(const char *head, const char *name, char *out, size_t len)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
		const char *p = l + 2;
		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			p += nl + 1;
			p += strspn(p, " \t");
			size_t n = strcspn(p, "\r");
			while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			snprintf(out, len, "%.*s", (int)n, p);
			return true;
		}
	}
	return false;
}

int http_upgrade(struct http_client *c, const char *path, const char *proto,
		 struct http_upgraded **out, long *status, struct vs_error *err)
{
	*out = NULL;
	if (status)
		*status = 0;
	struct http_upgraded *u = vs_xcalloc(1, sizeof(*u));
	u->fd = -1;
	u->curl = cu.easy_init();
	if (!u->curl) {
		http_upgraded_close(u);
		return vs_error_set(err, ENOMEM, "curl_easy_init failed");
	}
	CURL *h = u->curl;
	cleanup_free char *url = vs_xasprintf("%s%s", c->base, path);
	cu.easy_setopt(h, CURLOPT_URL, url);
	cu.easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	cu.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	cu.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	cu.easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file) {
		cu.easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
		cu.easy_setopt(h, CURLOPT_CAPATH, (char *)NULL);
	}
	char why[CURL_ERROR_SIZE] = "";
	cu.easy_setopt(h, CURLOPT_ERRORBUFFER, why);
	CURLcode rc = cu.easy_perform(h);
	cu.easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL);
	if (rc != CURLE_OK) {
		http_upgraded_close(u);
		return transport_error(c, rc, why, err);
	}
	curl_socket_t sock = CURL_SOCKET_BAD;
	cu.easy_getinfo(h, CURLINFO_ACTIVESOCKET, &sock);
	u->fd = (int)sock;

	/* Host: the URL's authority, as libcurl would send it. */
	const char *auth_start = strstr(c->base, "://") + 3;
	size_t auth_len = strcspn(auth_start, "/");
	cleanup_free char *req = vs_xasprintf(
	    "GET %s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: vslice/" VSLICE_VERSION
	    "\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s%s%s\r\n",
	    path, (int)auth_len, auth_start, proto, c->token ? "Authorization: Bearer " : "",
	    c->token ? c->token : "", c->token ? "\r\n" : "");
	int r = upgraded_send_all(u, req, strlen(req), err);
	if (r < 0) {
		http_upgraded_close(u);
		return vs_error_wrap(err, "%s %s: GET %s", c->what, c->base, path);
	}

	/* The answer's head. */
	cleanup_free char *head = vs_xmalloc(UPGRADE_HEAD_MAX + 1);
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		if (len == UPGRADE_HEAD_MAX) {
			http_upgraded_close(u);
			return vs_error_set(err, EPROTO,
					    "%s %s: GET %s: an answer head over %u bytes", c->what,
					    c->base, path, UPGRADE_HEAD_MAX);
		}
		ssize_t n = upgraded_read_some(u, head + len, UPGRADE_HEAD_MAX - len, err);
		if (n <= 0) {
			if (n == 0)
				vs_error_set(err, ECONNRESET, "closed the connection");
			http_upgraded_close(u);
			return vs_error_wrap(err, "%s %s: GET %s", c->what, c->base, path);
		}
		len += (size_t)n;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	size_t head_len = (size_t)(end - head) + 4;
	long st = 0;
	if (sscanf(head, "HTTP/1.%*1[01] %3ld", &st) != 1 || st < 100) {
		http_upgraded_close(u);
		return vs_error_set(err, EPROTO, "%s %s: GET %s: not an HTTP answer", c->what,
				    c->base, path);
	}
	if (status)
		*status = st;
	char value[256];
	if (st == 101) {
		if (!head_value(head, "Upgrade", value, sizeof(value)) ||
		    strcasecmp(value, proto)) {
			http_upgraded_close(u);
			return vs_error_set(err, EPROTO,
					    "%s %s: GET %s: switched to \"%s\", not %s", c->what,
					    c->base, path, value, proto);
		}
		if (len > head_len) {
			u->early_len = len - head_len;
			u->early = vs_xmalloc(u->early_len);
			memcpy(u->early, head + head_len, u->early_len);
		}
		*out = u;
		return 0;
	}

	/* An error answer: its {"error"} from a body of Content-Length bytes. */
	size_t want = 0;
	if (head_value(head, "Content-Length", value, sizeof(value)))
		want = strtoul(value, NULL, 10);
	if (want > ERROR_BODY_MAX)
		want = ERROR_BODY_MAX;
	cleanup_free char *body = vs_xmalloc(want + 1);
	size_t have = len - head_len < want ? len - head_len : want;
	memcpy(body, head + head_len, have);
	while (have < want) {
		struct vs_error ignore;
		ssize_t n = upgraded_read_some(u, body + have, want - have, &ignore);
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	body[have] = '\0';
	http_upgraded_close(u);
	cleanup_json json_t *j = json_loads(body, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	int e = st >= 200 && st < 300 ? EPROTO : status_errno(st);
	if (msg)
		return vs_error_set(err, e, "%s", msg);
	return vs_error_set(err, e, "%s %s: GET %s: HTTP %ld%s", c->what, c->base, path, st,
			    st >= 200 && st < 300 ? " (not switching protocols)" : "");
}
