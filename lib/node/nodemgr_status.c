/*
 * nodemgr_status.c - each sliver's state as the registry contract has it
 * (nodemgr_sliver_status), the log lines when one changes, and the local
 * read-only status API (--listen ADDR:PORT): GET /v1/status answers the
 * node, whether it is registered and every sliver's status as last
 * collected. It holds no token and changes nothing; bind it to loopback.
 *
 * The API is an httpd.h server (libmicrohttpd) with one thread of its own
 * that only ever reads nm->status_text (under nm->mu), a snapshot the main
 * loop replaces each time it collects the states. httpd.h binds its socket
 * without SO_REUSEPORT, so a port someone else listens on is refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "nodemgr_int.h"
#include "vslice/httpd.h"
#include "vslice/netaddr.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* The status API's one route: the node manager's own, not a registry path
 * (those are regclient.h's). Idle connections are closed after
 * STATUS_TIMEOUT seconds; at most STATUS_CONN_MAX are open at once. */
#define STATUS_PATH	"/v1/status"
#define STATUS_TIMEOUT	10
#define STATUS_CONN_MAX 64

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

/* GET (or HEAD) /v1/status, or /: the last snapshot. Nothing else. */
static void status_handle(struct httpd_request *req, struct httpd_answer *a)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		httpd_answer_error(a, 405, "only GET " STATUS_PATH);
		return;
	}
	if (strcmp(req->url, STATUS_PATH) && strcmp(req->url, "/")) {
		httpd_answer_error(a, 404, "only GET " STATUS_PATH);
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

static const struct httpd_ops status_ops = {.handle = status_handle};

int nodemgr_listen_check(const char *listen, struct vs_error *err)
{
	struct sockaddr_storage ss;
	return vs_parse_listen(listen, &ss, err);
}

/*
 * httpd.h serves it: a socket of its own without SO_REUSEPORT, so a port
 * another process listens on - a second node manager - is refused
 * (EADDRINUSE, kind VS_EK_BUSY) instead of sharing its connections. One
 * thread; no request body (413); idle connections closed after 10 s; at
 * most 64 connections, so a local client that opens many holds at most
 * that many of the node manager's fds.
 */
int nm_status_api_start(struct nodemgr *nm, struct vs_error *err)
{
	struct httpd_config cfg = {
	    .name = "status API",
	    .listen = nm->o.listen,
	    .threads = 1,
	    .conn_limit = STATUS_CONN_MAX,
	    .timeout_secs = STATUS_TIMEOUT,
	    .body_max = 0,
	    .ops = &status_ops,
	    .cls = nm,
	};
	int r = httpd_start(&cfg, &nm->status_api, err);
	if (r < 0)
		return r;
	nm_log(nm, NODEMGR_LOG_INFO, "status API on %s (port %u): GET " STATUS_PATH, nm->o.listen,
	       httpd_port(nm->status_api));
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
		if (s->r.phase == NODEMGR_DESTROYING)
			continue; /* on its way out: no longer the registry's business */
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
