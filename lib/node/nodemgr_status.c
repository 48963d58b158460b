/*
 * nodemgr_status.c - each sliver's state as the registry contract has it
 * (nodemgr_sliver_status), the log lines when one changes, and the local
 * read-only status API (--listen ADDR:PORT): GET /v1/status answers the
 * node, whether it is registered and every sliver's status as last
 * collected. It holds no token and changes nothing; bind it to loopback.
 *
 * The API runs in libmicrohttpd's own thread and only ever reads
 * nm->status_text (under nm->mu), a snapshot the main loop replaces each
 * time it collects the states. Its socket is ours, bound without
 * SO_REUSEPORT, so a port someone else listens on is refused.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/netaddr.h"
#include "vslice/slice.h"
#include "vslice/util.h"

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

static enum MHD_Result status_request(void *cls, struct MHD_Connection *con, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct nodemgr *nm = cls;
	unsigned code = MHD_HTTP_OK;
	char *text = NULL;
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
		text = vs_xstrdup("{\"error\": \"only GET /v1/status\"}\n");
	} else if (strcmp(url, "/v1/status") && strcmp(url, "/")) {
		code = MHD_HTTP_NOT_FOUND;
		text = vs_xstrdup("{\"error\": \"only GET /v1/status\"}\n");
	} else {
		pthread_mutex_lock(&nm->mu);
		text = vs_xasprintf("%s\n", nm->status_text ? nm->status_text : "{}");
		pthread_mutex_unlock(&nm->mu);
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result r = MHD_queue_response(con, code, resp);
	MHD_destroy_response(resp);
	return r;
}

int nodemgr_listen_check(const char *listen, struct vs_error *err)
{
	struct sockaddr_storage ss;
	return vs_parse_listen(listen, &ss, err);
}

/*
 * The listening socket is ours, not libmicrohttpd's: bound without
 * SO_REUSEPORT (what MHD_OPTION_LISTENING_ADDRESS_REUSE sets), so a port
 * another process listens on - a second node manager - is refused with the
 * kernel's own reason instead of sharing its connections.
 */
static int status_listen(const struct sockaddr_storage *ss, const char *where, struct vs_error *err)
{
	socklen_t len =
	    ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	cleanup_close int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return vs_error_sys(err, errno, "--listen %s: socket", where);
	/* SO_REUSEADDR on Linux only lets a port in TIME_WAIT be bound again. */
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return vs_error_sys(err, errno, "--listen %s: SO_REUSEADDR", where);
	if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		vs_error_sys(err, e, "--listen %s", where);
		return e == EADDRINUSE ? vs_error_kind(err, VS_EK_BUSY) : -e;
	}
	return steal_fd(&fd);
}

int nm_status_api_start(struct nodemgr *nm, struct vs_error *err)
{
	struct sockaddr_storage ss;
	int r = vs_parse_listen(nm->o.listen, &ss, err);
	if (r < 0)
		return r;
	int fd = status_listen(&ss, nm->o.listen, err);
	if (fd < 0)
		return fd;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	nm->status_api = MHD_start_daemon(
	    flags, 0, NULL, NULL, status_request, nm, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!nm->status_api) {
		int e = errno ? errno : EIO;
		close(fd);
		return vs_error_sys(err, e, "--listen %s: starting the status API", nm->o.listen);
	}
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(nm->status_api, MHD_DAEMON_INFO_BIND_PORT);
	nm_log(nm, NODEMGR_LOG_INFO, "status API on %s (port %u): GET /v1/status", nm->o.listen,
	       info ? (unsigned)info->port : 0);
	return 0;
}

void nm_status_api_stop(struct nodemgr *nm)
{
	if (nm->status_api)
		MHD_stop_daemon(nm->status_api);
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
