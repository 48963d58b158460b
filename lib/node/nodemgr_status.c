/*
 * nodemgr_status.c - each sliver's state as the registry contract has it
 * (nodemgr_sliver_status), the log lines when one changes, and the node
 * manager's API on --listen ADDR:PORT:
 *   GET /v1/status        the node, whether it is registered and every
 *                         sliver's status as last collected (no token,
 *                         changes nothing);
 *   PUT /v1/transfers/ID  a migration's stream, with its one-time transfer
 *                         token (nodemgr_xfer.c);
 *   /v1/slivers/NAME/...  remote verbs on one sliver, each with a ticket
 *                         the registry issued (nodemgr_api.c).
 * Over HTTPS with --tls-cert/--tls-key. Any host that reaches the address
 * may call it: the status is what `slicectl status` shows the slices'
 * owners, and a transfer needs a token only the registry hands out.
 *
 * The API is an httpd.h server (libmicrohttpd) with a thread per
 * connection (a transfer's thread blocks on its pipe and waits for the
 * registry's commit; a status request must not wait behind it), at most
 * API_CONN_MAX connections, API_CONN_PER_ADDR from one address. The status
 * side only ever reads nm->status_text (under nm->mu), a snapshot the main
 * loop replaces each time it collects the states. httpd.h binds its socket
 * without SO_REUSEPORT, so a port someone else listens on is refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "nodemgr_int.h"
#include "vslice/nodeapi.h"
#include "vslice/httpd.h"
#include "vslice/netaddr.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* The API's routes are the node manager's own, not registry paths (those
 * are regclient.h's). Idle connections are closed after API_TIMEOUT
 * seconds (a transfer sets its own); at most API_CONN_MAX are open at once
 * (a thread each), API_CONN_PER_ADDR from one address. */
#define STATUS_PATH	  NODEAPI_STATUS
#define API_TIMEOUT	  10
#define API_CONN_MAX	  64
#define API_CONN_PER_ADDR 16

/* --- a sliver's state --------------------------------------------- */

json_t *nodemgr_sliver_status(const struct nodemgr_record *r, const struct slice_state *st)
{
	const char *state = "creating", *reason = "", *message = "";
	json_int_t code = -1, started = 0, finished = 0, restarts = 0;
	if (r->phase == NODEMGR_FAILED) {
		state = "failed";
		message = r->message ? r->message : "could not be created";
	} else if (st) {
		started = st->started;
		restarts = st->restarts;
		switch (st->status) {
		case SLICE_CREATED:
			state = "creating";
			break;
		case SLICE_RUNNING:
		case SLICE_FROZEN:
			state = "running";
			break;
		case SLICE_EXITED:
			state = "exited";
			code = st->exit_code;
			reason = st->exit_reason[0] ? st->exit_reason : "exited";
			finished = st->finished;
			break;
		case SLICE_UNKNOWN:
			state = "failed";
			message = "the sliver's state on the node is unknown";
			break;
		}
	}
	return json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:s}", "slice", r->slice, "state",
			 state, "exit_code", code, "reason", reason, "started", started, "finished",
			 finished, "restarts", restarts, "message", message);
}

/* --- local status API (--listen) ---------------------------------- */

static void snapshot_status(struct nodemgr *nm, json_t *slivers)
{
	cleanup_json json_t *j =
	    json_pack("{s:s, s:s, s:b, s:I, s:I, s:O}", "node", nm->name, "registry", nm->registry,
		      "registered", (int)atomic_load(&nm->registered), "heartbeat",
		      (json_int_t)atomic_load(&nm->heartbeat), "updated", (json_int_t)time(NULL),
		      "slivers", slivers);
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return;
	pthread_mutex_lock(&nm->mu);
	free(nm->status_text);
	nm->status_text = text;
	pthread_mutex_unlock(&nm->mu);
}

/* GET (or HEAD) /v1/status, or /: the last snapshot; transfers to
 * nodemgr_xfer.c. Nothing else. */
static void api_begin(struct httpd_request *req, struct httpd_answer *a)
{
	if (nm_xfer_route(req->url))
		nm_xfer_begin(req, a);
	else if (nm_files_route(req->url))
		nm_files_begin(req, a);
}

static int api_data(struct httpd_request *req, const char *buf, size_t len)
{
	/* Only a transfer and a files PUT stream their bodies. */
	if (nm_files_route(req->url))
		return nm_files_data(req, buf, len);
	return nm_xfer_data(req, buf, len);
}

static void api_done(struct httpd_request *req, bool completed)
{
	if (req->data && nm_files_route(req->url))
		nm_files_done(req, completed);
	else if (req->data)
		nm_xfer_done(req, completed);
}

static void status_handle(struct httpd_request *req, struct httpd_answer *a)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	if (nm_xfer_route(req->url)) {
		nm_xfer_handle(req, a);
		return;
	}
	if (nm_api_route(req->url)) {
		nm_api_handle(req, a);
		return;
	}
	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		httpd_answer_error(a, 405, "only GET " STATUS_PATH " and PUT /v1/transfers/ID");
		return;
	}
	if (strcmp(req->url, STATUS_PATH) && strcmp(req->url, "/")) {
		httpd_answer_error(a, 404, "only GET " STATUS_PATH " and PUT /v1/transfers/ID");
		return;
	}
	pthread_mutex_lock(&nm->mu);
	char *text = vs_xasprintf("%s\n", nm->status_text ? nm->status_text : "{}");
	pthread_mutex_unlock(&nm->mu);
	a->status = 200;
	a->body = text;
	a->len = strlen(text);
	a->content_type = "application/json";
}

static const struct httpd_ops api_ops = {
    .begin = api_begin,
    .data = api_data,
    .handle = status_handle,
    .done = api_done,
};

int nodemgr_listen_check(const char *listen, struct vs_error *err)
{
	struct sockaddr_storage ss;
	return vs_parse_listen(listen, &ss, err);
}

int nodemgr_advertise_url(const char *listen, unsigned port, const char *advertise, bool tls,
			  char **out, struct vs_error *err)
{
	*out = NULL;
	if (advertise) {
		bool https = !strncmp(advertise, "https://", 8);
		if (!https && strncmp(advertise, "http://", 7))
			return vs_error_set(err, EINVAL,
					    "--advertise \"%s\": use an http:// or https:// URL",
					    advertise);
		if (strlen(advertise) >= NODEMGR_MIG_URL_MAX ||
		    strlen(advertise) <= (size_t)(https ? 8 : 7))
			return vs_error_set(err, EINVAL, "--advertise: the URL is %s",
					    strlen(advertise) > 8 ? "too long" : "empty");
		for (const char *p = advertise; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == 0x7f)
				return vs_error_set(
				    err, EINVAL,
				    "--advertise: the URL has spaces or control characters");
		if (https != tls)
			return vs_error_set(err, EINVAL,
					    "--advertise \"%s\": the API serves %s (%s)", advertise,
					    tls ? "https://" : "http://",
					    tls ? "--tls-cert is given" : "no --tls-cert");
		*out = vs_xstrdup(advertise);
		return 0;
	}
	if (!listen)
		return 0;
	struct sockaddr_storage ss;
	int r = vs_parse_listen(listen, &ss, err);
	if (r < 0)
		return r;
	char host[INET6_ADDRSTRLEN] = "";
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		if (in->sin_addr.s_addr == htonl(INADDR_ANY))
			return 0;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		if (!port)
			port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
			return 0;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		if (!port)
			port = ntohs(in6->sin6_port);
	}
	*out = vs_xasprintf(ss.ss_family == AF_INET6 ? "%s://[%s]:%u" : "%s://%s:%u",
			    tls ? "https" : "http", host, port);
	return 0;
}

/*
 * httpd.h serves it: a socket of its own without SO_REUSEPORT, so a port
 * another process listens on - a second node manager - is refused
 * (EADDRINUSE, kind VS_EK_BUSY) instead of sharing its connections. A
 * thread per connection, at most API_CONN_MAX (API_CONN_PER_ADDR from one
 * address), so a client that opens many holds at most that many threads
 * and fds; idle connections closed after API_TIMEOUT s; bodies only for a
 * transfer, streamed (nodemgr_xfer.c), any other body: 413.
 */
int nm_status_api_start(struct nodemgr *nm, struct vs_error *err)
{
	struct httpd_config cfg = {
	    .name = "status API", /* as before: the name operators and tests know */
	    .listen = nm->o.listen,
	    .cert_pem = nm->tls_cert_pem,
	    .key_pem = nm->tls_key_pem,
	    .thread_per_conn = true,
	    .upgrades = true, /* remote exec (nodemgr_exec.c) */
	    .conn_limit = API_CONN_MAX,
	    .per_addr_limit = API_CONN_PER_ADDR,
	    .timeout_secs = API_TIMEOUT,
	    .body_max = 0,
	    .ops = &api_ops,
	    .cls = nm,
	};
	int r = httpd_start(&cfg, &nm->status_api, err);
	if (r < 0)
		return r;
	if (!nm->url) {
		char *url = NULL;
		struct vs_error uerr;
		if (nodemgr_advertise_url(nm->o.listen, httpd_port(nm->status_api), NULL,
					  nm->tls_cert_pem != NULL, &url, &uerr) == 0)
			nm->url = url;
	}
	nm_log(nm, NODEMGR_LOG_INFO,
	       "API on %s (port %u, %s): GET " STATUS_PATH ", PUT /v1/transfers/ID, "
	       "/v1/slivers/NAME/...; %s%s",
	       nm->o.listen, httpd_port(nm->status_api), nm->tls_cert_pem ? "https" : "http",
	       nm->url ? "migration target at "
		       : "no migration target (a wildcard --listen "
			 "needs --advertise URL)",
	       nm->url ? nm->url : "");
	return 0;
}

void nm_status_api_stop(struct nodemgr *nm)
{
	httpd_stop(nm->status_api);
	nm->status_api = NULL;
}

/* --- collecting them (each heartbeat) ----------------------------- */

static void note_state(struct nodemgr *nm, struct nm_sliver *s, json_t *status)
{
	const char *state = json_string_value(json_object_get(status, "state"));
	int code = (int)json_integer_value(json_object_get(status, "exit_code"));
	if (!state || (!strcmp(s->last_state, state) && s->last_code == code))
		return;
	if (!strcmp(state, "exited")) {
		const char *reason = json_string_value(json_object_get(status, "reason"));
		if (reason && strcmp(reason, "exited"))
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s exited %d (%s)", s->r.slice, code,
			       reason);
		else
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s exited %d", s->r.slice, code);
	} else if (strcmp(state, "failed")) { /* failed was logged when it happened */
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s %s", s->r.slice, state);
	}
	snprintf(s->last_state, sizeof(s->last_state), "%s", state);
	s->last_code = code;
	s->end_seen = false;
	nm_close_pidfd(s); /* a new state: watch afresh (a new PID 1 after a restart) */
}

/* Every sliver's status as of now (also for the local status API). */
json_t *nm_collect_status(struct nodemgr *nm, bool exited[])
{
	json_t *list = json_array();
	for (size_t i = 0; i < nm->nslivers; i++) {
		struct nm_sliver *s = &nm->slivers[i];
		struct slice_state st;
		struct vs_error err;
		json_t *j;
		exited[i] = false;
		if (s->busy || (s->r.phase != NODEMGR_CREATING && s->r.phase != NODEMGR_CREATED &&
				s->r.phase != NODEMGR_FAILED))
			continue; /* on its way out or migrating: not the registry's business now
				   * (the migration's own reports say where it stands) */
		if (s->r.phase == NODEMGR_CREATED &&
		    slice_load(nm->root, s->r.slice, NULL, &st, &err) == 0) {
			j = nodemgr_sliver_status(&s->r, &st);
			exited[i] = st.status == SLICE_EXITED;
		} else if (s->r.phase == NODEMGR_CREATED) {
			struct nodemgr_record f = s->r;
			f.phase = NODEMGR_FAILED;
			f.message = err.msg;
			j = nodemgr_sliver_status(&f, NULL);
		} else {
			j = nodemgr_sliver_status(&s->r, NULL);
		}
		note_state(nm, s, j);
		json_array_append_new(list, j);
	}
	if (nm->status_api)
		snapshot_status(nm, list);
	return list;
}
