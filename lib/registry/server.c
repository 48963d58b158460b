/*
 * server.c - the registry's HTTP plumbing: libmicrohttpd in its own polling
 * threads, authentication, request bodies, long-polls and the timer.
 *
 * libmicrohttpd runs in poll() mode (level-triggered), not epoll: its epoll
 * loop (0.9.75) takes a read shorter than its buffer for "socket drained"
 * and waits for the next edge; when a client dies mid-upload, the last data
 * and the FIN arrive together, the read returns the data, no edge follows,
 * and the connection sat in CLOSE-WAIT with its temp file for the whole
 * connection timeout (test_registry_api: 3-8 of 18 killed uploads).
 *
 * The listening socket is ours (SO_REUSEADDR for TIME_WAIT, never
 * SO_REUSEPORT): a second registry on a port in use fails to start instead
 * of sharing the port. Admission (connections per address, memory per
 * token) is limits.c's.
 *
 * No callback ever blocks. A long-poll that has to wait suspends its
 * connection (MHD_suspend_connection) and sits in reg->waiters; a commit
 * that bumps the revision, the timer (wait expired) or registry_stop()
 * resumes it, and MHD calls the handler again, which then answers. JSON
 * bodies are collected up to 32 MiB; log and result uploads go straight to
 * a temp file in "<db>.d/tmp", hashed on the way (api.c).
 *
 * TLS (registry_serve_tls) is libmicrohttpd's own, on GnuTLS: the PEM
 * certificate and key are handed over in memory and loaded when the daemon
 * starts, so a key that does not match its certificate fails the start, with
 * GnuTLS's reason, rather than the first handshake.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <strings.h>
#include <time.h>

#include "registry_int.h"
#include "vslice/netaddr.h"
#include "vslice/util.h"

/* Resume every waiter whose index the revision passed, whose wait is over
 * (now_ms: reg_now_ms()), or all when stopping. Expects reg->lock. */
static void resume_waiters(struct registry *reg, long long now)
{
	struct waiter **pp = &reg->waiters;
	while (*pp) {
		struct waiter *w = *pp;
		if (reg->stopping || reg->revision > w->index || now >= w->deadline) {
			*pp = w->next;
			MHD_resume_connection(w->con);
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
	char msg[VS_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	json_t *j = json_pack("{s:s}", "error", msg);
	free(a->body);
	a->status = status;
	a->body = json_dumps(j, JSON_COMPACT);
	a->len = strlen(a->body);
	a->content_type = "application/json";
	json_decref(j);
}

/* Charge an answer held in memory to the request's token. Answers to reads
 * that do not fit are replaced by 429/503 (the client may retry); answers
 * to requests that changed state are always sent. */
static void charge_answer(struct reg_request *req, struct reg_answer *a)
{
	if (a->fd >= 0 || a->len == 0)
		return;
	bool read_only = strcmp(req->method, "GET") == 0;
	int r = lim_mem_charge(&req->reg->lim, req->token, a->len, !read_only);
	if (r == 0) {
		req->charged += a->len;
		return;
	}
	for (size_t i = 0; i < VS_ARRAY_SIZE(a->headers); i++) {
		free(a->headers[i][0]);
		free(a->headers[i][1]);
		a->headers[i][0] = a->headers[i][1] = NULL;
	}
	size_t len = a->len;
	if (r == -1)
		api_error(a, 429,
			  "%s %s: answer of %zu bytes: this token already holds %u MiB of "
			  "requests and answers in the registry's memory; retry later",
			  req->method, req->url, len, REG_TOKEN_MEM >> 20);
	else
		api_error(a, 503,
			  "%s %s: answer of %zu bytes: the registry holds %u MiB of requests "
			  "and answers in memory; retry later",
			  req->method, req->url, len, REG_TOTAL_MEM >> 20);
}

static enum MHD_Result send_answer(struct reg_request *req, struct reg_answer *a)
{
	struct MHD_Response *resp;
	charge_answer(req, a);
	if (a->fd >= 0) {
		uint64_t size = a->fd_len;
		if (!a->fd_len_set) {
			off_t end = lseek(a->fd, 0, SEEK_END);
			size = end < 0 ? 0 : (uint64_t)end;
		}
		resp = MHD_create_response_from_fd_at_offset64(size, a->fd, (uint64_t)a->fd_offset);
		a->fd = -1; /* MHD closes it */
	} else {
		resp = MHD_create_response_from_buffer(a->len, a->body, MHD_RESPMEM_MUST_FREE);
		a->body = NULL;
	}
	if (!resp) {
		answer_free(a);
		return MHD_NO;
	}
	if (a->content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
	for (size_t i = 0; i < VS_ARRAY_SIZE(a->headers); i++)
		if (a->headers[i][0])
			MHD_add_response_header(resp, a->headers[i][0], a->headers[i][1]);
	pthread_mutex_lock(&req->reg->lock);
	reg_count_status(req->reg, a->status);
	pthread_mutex_unlock(&req->reg->lock);
	enum MHD_Result r = MHD_queue_response(req->con, a->status, resp);
	MHD_destroy_response(resp);
	answer_free(a);
	return r;
}

static void authenticate(struct reg_request *req, struct reg_answer *a)
{
	const char *h =
	    MHD_lookup_connection_value(req->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		api_error(a, 401, "%s %s: missing bearer token", req->method, req->url);
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
		api_error(a, 401, "%s %s: unknown token", req->method, req->url);
	else if (r < 0)
		api_error(a, 500, "%s", err.msg);
	else
		req->token = vs_xstrdup(t);
}

/* The connection's address entry (limits.c), set when it opened. */
static void *conn_addr(struct MHD_Connection *con)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A JSON body of Content-Length bytes is charged before it is read: past the
 * token's or the registry's share it is refused at once. */
static int charge_body(struct reg_request *req, struct reg_answer *a)
{
	const char *clen =
	    MHD_lookup_connection_value(req->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!clen)
		return 0; /* chunked: charged as it arrives */
	char *end;
	errno = 0;
	unsigned long long n = strtoull(clen, &end, 10);
	if (errno || *end || *clen == '-')
		return 0; /* libmicrohttpd refuses it */
	if (!req->token && n > 0) {
		api_error(a, 413, "%s %s: takes no request body", req->method, req->url);
		return -1;
	}
	if (n > REG_BODY_MAX) {
		api_error(a, 413, "%s %s: request body larger than %u bytes", req->method, req->url,
			  REG_BODY_MAX);
		return -1;
	}
	int r = lim_mem_charge(&req->reg->lim, req->token, (size_t)n, false);
	if (r == 0) {
		req->charged = (size_t)n;
		return 0;
	}
	if (r == -1)
		api_error(a, 429,
			  "%s %s: request body of %llu bytes: this token already holds %u MiB of "
			  "requests and answers in the registry's memory; retry later",
			  req->method, req->url, n, REG_TOKEN_MEM >> 20);
	else
		api_error(a, 503,
			  "%s %s: request body of %llu bytes: the registry holds %u MiB of "
			  "requests and answers in memory; retry later",
			  req->method, req->url, n, REG_TOTAL_MEM >> 20);
	return -1;
}

static bool is_upload(const char *method, const char *url)
{
	if (strcmp(method, "PUT") != 0 || strncmp(url, "/v1/slices/", 11) != 0)
		return false;
	const char *p = strstr(url + 11, "/slivers/");
	if (!p)
		return false;
	p = strchr(p + 9, '/');
	return p && (strcmp(p, "/log") == 0 || strncmp(p, "/results/", 9) == 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *data_size, void **con_cls)
{
	struct registry *reg = cls;
	struct reg_request *req = *con_cls;
	struct reg_answer a = {.fd = -1};

	if (!req) {
		req = vs_xcalloc(1, sizeof(*req));
		req->reg = reg;
		req->con = con;
		req->method = vs_xstrdup(method);
		req->url = vs_xstrdup(url);
		req->fd = -1;
		req->wait_index = -1;
		*con_cls = req;
		if (strcmp(url, "/v1/health") != 0) {
			authenticate(req, &a);
			if (a.status)
				return send_answer(req, &a);
			/* Headers in and a known token: long-polls and slow uploads
			 * may stay; node managers' and admins' addresses get the
			 * connections kept for them. */
			MHD_set_connection_option(con, MHD_CONNECTION_OPTION_TIMEOUT,
						  (unsigned)(REG_WAIT_MAX + 60));
			if (req->role == REGISTRY_ROLE_NODE || req->role == REGISTRY_ROLE_ADMIN)
				lim_trust(&reg->lim, conn_addr(con));
		}
		if (is_upload(method, url)) {
			if (api_upload_begin(req, &a) < 0)
				return send_answer(req, &a);
		} else if (charge_body(req, &a) < 0) {
			return send_answer(req, &a);
		}
		return MHD_YES;
	}

	if (*data_size > 0) {
		if (req->upload) {
			size_t n = *data_size;
			if (!req->too_big && req->received + n > req->limit)
				req->too_big = true;
			if (!req->too_big) {
				sha256_update(&req->sha, n, (const uint8_t *)data);
				if (vs_write_all(req->fd, data, n) < 0)
					req->too_big =
					    true; /* reported as a write error at the end */
			}
			req->received += n;
		} else if (!req->too_big && !req->over_budget) {
			size_t want = req->len + *data_size + 1;
			if (!req->token) {
				req->too_big = true; /* /v1/health takes no body */
			} else if (req->len + *data_size > REG_BODY_MAX) {
				req->too_big = true;
			} else if (want > req->charged &&
				   (req->over_budget = lim_mem_charge(
					&reg->lim, req->token, want - req->charged, false)) == 0) {
				req->charged = want;
			}
			if (req->too_big || req->over_budget) {
				free(req->body);
				req->body = NULL;
				req->len = req->cap = 0;
			} else {
				if (req->len + *data_size + 1 > req->cap) {
					req->cap = (req->len + *data_size + 1) * 2;
					if (req->cap > REG_BODY_MAX + 1)
						req->cap = REG_BODY_MAX + 1;
					req->body = realloc(req->body, req->cap);
					if (!req->body)
						abort();
				}
				memcpy(req->body + req->len, data, *data_size);
				req->len += *data_size;
				req->body[req->len] = '\0';
			}
		}
		*data_size = 0;
		return MHD_YES;
	}

	if (req->upload) {
		api_upload_finish(req, &a);
		return send_answer(req, &a);
	}
	if (req->too_big) {
		if (!req->token)
			api_error(&a, 413, "%s %s: takes no request body", method, url);
		else
			api_error(&a, 413, "%s %s: request body larger than %u bytes", method, url,
				  REG_BODY_MAX);
		return send_answer(req, &a);
	}
	if (req->over_budget) {
		api_error(&a, req->over_budget == -1 ? 429 : 503,
			  "%s %s: request body: %s holds %u MiB of requests and answers in "
			  "memory; retry later",
			  method, url,
			  req->over_budget == -1 ? "this token already" : "the registry",
			  (req->over_budget == -1 ? REG_TOKEN_MEM : REG_TOTAL_MEM) >> 20);
		return send_answer(req, &a);
	}
	for (;;) {
		req->suspended = false;
		api_dispatch(req, &a);
		if (req->wait_index < 0)
			break;
		pthread_mutex_lock(&reg->lock);
		if (!reg->stopping && reg->revision <= req->wait_index &&
		    reg_now_ms() < req->deadline) {
			struct waiter *w = vs_xcalloc(1, sizeof(*w));
			w->con = con;
			w->index = req->wait_index;
			w->deadline = req->deadline;
			w->next = reg->waiters;
			reg->waiters = w;
			req->suspended = true;
			if (!req->polled)
				__atomic_add_fetch(&reg->polls, 1, __ATOMIC_SEQ_CST);
			req->polled = true;
			MHD_suspend_connection(con);
			pthread_mutex_unlock(&reg->lock);
			answer_free(&a);
			return MHD_YES;
		}
		/* A change landed between building the answer and this check: the
		 * answer would show no progress (and the client would wait for
		 * nothing), so build it again. */
		bool stale = !reg->stopping && req->answered_rev <= req->wait_index &&
			     reg->revision > req->wait_index;
		pthread_mutex_unlock(&reg->lock);
		if (!stale)
			break;
		answer_free(&a);
		a = (struct reg_answer){.fd = -1};
	}
	return send_answer(req, &a);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct registry *reg = cls;
	struct reg_request *req = *con_cls;
	if (!req)
		return;
	/* Resumed polls left the waiters list when they were resumed; only a
	 * connection MHD drops while still suspended (at shutdown, after
	 * registry_stop emptied the list) could be there. Taking reg->lock
	 * only then keeps this callback from ever waiting on a thread that
	 * holds reg->lock while it calls MHD_resume_connection. */
	if (req->polled)
		__atomic_sub_fetch(&reg->polls, 1, __ATOMIC_SEQ_CST);
	if (req->suspended) {
		pthread_mutex_lock(&reg->lock);
		for (struct waiter **pp = &reg->waiters; *pp; pp = &(*pp)->next) {
			if ((*pp)->con == con) {
				struct waiter *w = *pp;
				*pp = w->next;
				free(w);
				break;
			}
		}
		pthread_mutex_unlock(&reg->lock);
	}
	lim_mem_release(&reg->lim, req->token, req->charged);
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
	free(req->body);
	free(req->slice);
	free(req->unode);
	free(req->upath);
	free(req->want_sha);
	free(req);
	*con_cls = NULL;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct registry *reg = cls;
	return lim_accept(&reg->lim, addr) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct registry *reg = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		*socket_context = lim_conn_open(&reg->lim, ci ? ci->client_addr : NULL);
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		lim_conn_close(&reg->lim, *socket_context);
		*socket_context = NULL;
	}
}

/* Our own listening socket: SO_REUSEADDR lets a restart bind while old
 * connections sit in TIME_WAIT; without SO_REUSEPORT a port another socket
 * listens on is refused (EADDRINUSE) rather than shared. */
static int listen_socket(const struct sockaddr_storage *ss, const char *shown, struct vs_error *err)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vs_error_sys(err, errno, "registry: listen on %s: socket", shown);
	int one = 1;
	socklen_t len =
	    ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE) {
			vs_error_set(err, e,
				     "registry: listen on %s: address already in use (another "
				     "registry or program listens there)",
				     shown);
			return vs_error_kind(err, VS_EK_BUSY);
		}
		return vs_error_sys(err, e, "registry: listen on %s", shown);
	}
	return fd;
}

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
		pthread_mutex_unlock(&reg->lock);
		struct vs_error err;
		if (registry_expire(reg, now, &err) < 0)
			fprintf(stderr, "vslice-registry: expiry: %s\n", err.msg);
		pthread_mutex_lock(&reg->lock);
	}
	pthread_mutex_unlock(&reg->lock);
	return NULL;
}

/*
 * libmicrohttpd's error lines go to the logging thread's own buffer: the
 * starting thread reads why MHD_start_daemon failed ("GnuTLS failed to
 * setup x509 certificate/key: The certificate and the given key do not
 * match") from its copy; what the worker threads log later (a client's
 * failed handshake) is dropped, as it was before there was a logger.
 */
static __thread char mhd_last_error[256]; /* the first line since it was cleared */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	if (mhd_last_error[0])
		return; /* the first line is the cause, the next ones its effects */
	vsnprintf(mhd_last_error, sizeof(mhd_last_error), fmt, ap);
	size_t n = strlen(mhd_last_error);
	while (n && (mhd_last_error[n - 1] == '\n' || mhd_last_error[n - 1] == '.'))
		mhd_last_error[--n] = '\0';
}

int registry_serve(struct registry *reg, const char *listen, struct vs_error *err)
{
	return registry_serve_tls(reg, listen, NULL, NULL, err);
}

int registry_serve_tls(struct registry *reg, const char *listen, const char *cert_pem,
		       const char *key_pem, struct vs_error *err)
{
	const char *shown = listen ? listen : REGISTRY_DEFAULT_LISTEN;
	struct sockaddr_storage ss;
	int r = vs_parse_listen(shown, &ss, err);
	if (r < 0)
		return r;
	if (!cert_pem != !key_pem)
		return vs_error_set(err, EINVAL,
				    "registry: TLS needs both a certificate and a key");
	unsigned flags =
	    MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert_pem) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			return vs_error_set(err, ENOTSUP,
					    "registry: this libmicrohttpd was built without TLS");
		flags |= MHD_USE_TLS;
	}
	/* TLS 1.2 and 1.3 only. Without TLS only the last item (the END)
	 * is passed. */
	struct MHD_OptionItem tls_opts[] = {
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert_pem},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key_pem},
	    {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
	    {MHD_OPTION_END, 0, NULL},
	};
	/* Every node manager parks a long-poll on a connection of its own: the
	 * limit follows the fd limit, half of what is left after 64 for the
	 * database and the like, as each connection may hold one more fd (an
	 * upload's temp file, a file answer). limits.c keeps an eighth of it
	 * for node managers and admins. */
	struct rlimit nofile;
	unsigned conn_limit = 1000;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
	    nofile.rlim_cur > 128)
		conn_limit =
		    (unsigned)((nofile.rlim_cur - 64) / 2 > 1000000 ? 1000000
								    : (nofile.rlim_cur - 64) / 2);
	lim_set_conn_cap(&reg->lim, conn_limit);
	int lfd = listen_socket(&ss, shown, err);
	if (lfd < 0)
		return lfd;
	reg->stopping = false;
	mhd_last_error[0] = '\0';
	errno = 0;
	/* The logger first: MHD complains (on stderr) about any other order.
	 * The connection timeout is for connections that have not sent a
	 * request yet (or whose token was refused); on_request raises it for
	 * authenticated ones. */
	reg->daemon = MHD_start_daemon(
	    flags, 0, on_accept, reg, on_request, reg, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)reg->threads,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, reg, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, reg, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)REG_HEADER_TIMEOUT,
	    MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_ARRAY,
	    cert_pem ? tls_opts : tls_opts + 3, MHD_OPTION_END);
	/* From here the listening socket is libmicrohttpd's: a failed start
	 * closes it, registry_stop() gets it back from MHD_quiesce_daemon. */
	if (!reg->daemon && cert_pem && mhd_last_error[0] &&
	    (strcasestr(mhd_last_error, "tls") || strcasestr(mhd_last_error, "cert") ||
	     strcasestr(mhd_last_error, "key")))
		return vs_error_set(err, EINVAL, "--tls-cert/--tls-key: cannot set up TLS: %s",
				    mhd_last_error);
	if (!reg->daemon)
		return vs_error_sys(err, errno ? errno : EADDRINUSE, "registry: listen on %s",
				    shown);
	reg->listen_fd = lfd;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	reg->port = 0;
	if (getsockname(lfd, (struct sockaddr *)&bound, &blen) == 0)
		reg->port =
		    ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	if (pthread_create(&reg->timer, NULL, timer_main, reg) != 0) {
		MHD_stop_daemon(reg->daemon);
		reg->daemon = NULL;
		return vs_error_set(err, EAGAIN, "registry: cannot start the timer thread");
	}
	reg->timer_running = true;
	return 0;
}

unsigned registry_port(const struct registry *reg)
{
	return reg->port;
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
	if (reg->daemon) {
		/* The polls resumed above answer at once now that stopping is set:
		 * give them (at most 2 s) to go out before the daemon closes. */
		/* Quiescing hands the listening socket back to us: close it. */
		MHD_socket q = MHD_quiesce_daemon(reg->daemon);
		if (q != MHD_INVALID_SOCKET)
			close(q);
		reg->listen_fd = -1;
		for (int i = 0; i < 200; i++) {
			if (__atomic_load_n(&reg->polls, __ATOMIC_SEQ_CST) == 0)
				break;
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		MHD_stop_daemon(reg->daemon);
		reg->daemon = NULL;
	}
}
