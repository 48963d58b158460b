/*
 * nodemgr_api.c - the --listen API's routes on one sliver, for remote verbs
 * (docs/cluster-api.md, "Node manager API"; the design in docs/cluster.md,
 * "Remote verbs and tickets"):
 *
 *   GET  /v1/slivers/NAME/stats[?window=MS]       the sliver's stats (JSON)
 *   POST /v1/slivers/NAME/freeze | thaw           the cgroup freezer
 *   GET  /v1/slivers/NAME/logs?offset=N&follow=1  its output, streamed
 *   /v1/slivers/NAME/exec                         h-exec (nodemgr_exec.c)
 *   /v1/slivers/NAME/files                        h-cp (nodemgr_files.c)
 *
 * Every route takes "Authorization: Bearer vtk_..." - a ticket the registry
 * issued to the slice's owner for this verb on this node. nm_ticket_check
 * redeems it at the registry with the node's own token (single use) and
 * checks that it grants the route's verb on slice NAME; the node never
 * sees a user token, and learns the user's name only from the registry.
 * Then the sliver must be on this node (404 otherwise: said only to a
 * ticket holder, who knows the slice exists).
 *
 * Threads: each request runs on its connection's thread (the API is a
 * thread-per-connection httpd.h server, nodemgr_status.c); nothing here
 * touches the main loop's state: the slice functions (slice.h) take the
 * slice's own lock, and the registry is asked through a client made for
 * the request.
 *
 * logs?follow=1: the answer streams the log as it grows (httpd_answer_stream)
 * and ends when the sliver's PID 1 is gone and every byte was sent, or after
 * LOG_FOLLOW_QUIET s without a new byte (the client then asks again, from the
 * offset it reached, with a new ticket): a connection never idles past the
 * idle timeouts of either side. Memory is bounded by one read buffer per
 * connection: a client that stops reading stops the reads (the socket
 * buffer fills), and the idle timeout closes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/nodeapi.h"
#include "vslice/httpd.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define SLIVERS_PREFIX	 NODEAPI_SLIVERS
#define REDEEM_TIMEOUT	 10 /* s: the registry's answer to a redeem */
#define LOG_FOLLOW_QUIET 20 /* s without output before a follow answer ends */
#define LOG_FOLLOW_IDLE	 60 /* s a follow connection may sit unread before it is closed */
#define LOG_POLL_MS	 200

bool nm_api_route(const char *url)
{
	return strncmp(url, SLIVERS_PREFIX, strlen(SLIVERS_PREFIX)) == 0;
}

/* Does a migration job (either side) hold sliver name? Its id into mig.
 * Any thread. */
static bool migrating(struct nodemgr *nm, const char *name, char mig[NODEMGR_MIG_ID_MAX])
{
	bool held = false;
	pthread_mutex_lock(&nm->mu);
	for (struct nm_job *j = nm->jobs; j && !held; j = j->next)
		if (j->state != NM_JOB_DONE && !strcmp(j->r.slice, name)) {
			snprintf(mig, NODEMGR_MIG_ID_MAX, "%s", j->mig.id);
			held = true;
		}
	pthread_mutex_unlock(&nm->mu);
	return held;
}

int nm_ticket_check(struct nodemgr *nm, const struct httpd_request *req, const char *name,
		    const char *verb, unsigned *status, struct vs_error *err)
{
	const char *auth = httpd_header(req, "Authorization");
	const char *ticket = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
	if (!ticket || strlen(ticket) != 68 || strncmp(ticket, "vtk_", 4) != 0) {
		*status = 401;
		return vs_error_set(err, EACCES,
				    "sliver %s: a ticket is needed (Authorization: Bearer vtk_...; "
				    "slicectl asks the registry for one)",
				    name);
	}
	cleanup_http struct http_client c = {0};
	if (http_client_init(&c, nm->registry, nm->token, nm->ca_file, err) < 0) {
		*status = 503;
		return vs_error_wrap(err, "sliver %s: ticket check", name);
	}
	c.timeout_secs = REDEEM_TIMEOUT;
	json_auto_t *g = NULL;
	long st = 0;
	int r = regclient_ticket_redeem(&c, ticket, &g, &st, err);
	if (r < 0 && (st == 401 || st == 403)) {
		/* The registry's log says why; the caller hears one answer. */
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: %s refused (%s)", name, verb, err->msg);
		*status = 403;
		return vs_error_set(err, EACCES, "sliver %s: ticket refused", name);
	}
	if (r < 0) {
		*status = 503;
		return vs_error_wrap(err, "sliver %s: the registry did not check the ticket", name);
	}
	const char *gs = json_string_value(json_object_get(g, "slice"));
	const char *gv = json_string_value(json_object_get(g, "verb"));
	const char *gn = json_string_value(json_object_get(g, "node"));
	if (!gs || !gv || !gn || strcmp(gs, name) || strcmp(gv, verb) || strcmp(gn, nm->name)) {
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: %s refused (the ticket is for %s on %s/%s)", name, verb,
		       gv ? gv : "?", gs ? gs : "?", gn ? gn : "?");
		*status = 403;
		return vs_error_set(err, EACCES, "sliver %s: ticket refused", name);
	}
	const char *user = json_string_value(json_object_get(g, "user"));
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: %s for user %s", name, verb, user ? user : "?");
	char mig[NODEMGR_MIG_ID_MAX];
	if (strcmp(verb, "stats") && strcmp(verb, "logs") && migrating(nm, name, mig)) {
		*status = 409;
		return vs_error_set(err, EBUSY,
				    "sliver %s is being migrated (%s): %s waits until it ends",
				    name, mig, verb);
	}
	struct slice_state s;
	if (slice_load(nm->root, name, NULL, &s, err) < 0) {
		*status = err->code == ENOENT ? 404 : 500;
		return vs_error_wrap(err, "sliver %s", name);
	}
	*status = 200;
	return 0;
}

/* --- GET stats ---------------------------------------------------- */

static void h_stats(struct httpd_request *req, struct httpd_answer *a, const char *name)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	const char *w = httpd_query(req, "window");
	char *end = NULL;
	long window = w ? strtol(w, &end, 10) : 1000;
	if (w && (*end || window < 10 || window > 10000))
		return httpd_answer_error(a, 400, "sliver %s: window: milliseconds, 10..10000",
					  name);
	struct slice_stats st;
	struct vs_error err;
	if (slice_stats(nm->root, name, (unsigned)window, &st, &err) < 0)
		return httpd_answer_error(a, err.code == ENOENT ? 404 : 409, "sliver %s: %s", name,
					  err.msg);
	json_auto_t *j = slice_stats_json(nm->root, name, (unsigned)window, &st);
	httpd_answer_json(a, 200, j);
}

/* --- POST freeze | thaw ------------------------------------------- */

static void h_freeze(struct httpd_request *req, struct httpd_answer *a, const char *name,
		     bool freeze)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	struct vs_error err;
	int r = freeze ? slice_freeze(nm->root, name, &err) : slice_thaw(nm->root, name, &err);
	if (r < 0)
		return httpd_answer_error(a, err.code == ENOENT ? 404 : 409, "sliver %s: %s", name,
					  err.msg);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s %s", name, freeze ? "frozen" : "thawed");
	json_auto_t *j =
	    json_pack("{s:s, s:s, s:b}", "slice", name, "node", nm->name, "frozen", freeze);
	httpd_answer_json(a, 200, j);
}

/* --- GET logs ----------------------------------------------------- */

struct log_stream {
	struct httpd *srv;
	char *root, *name;
	int fd;
	bool follow, ended;
	uint64_t quiet_since; /* vs_now_ns of the last byte (or the start) */
};

static void log_stream_free(void *cls)
{
	struct log_stream *ls = cls;
	if (ls->fd >= 0)
		close(ls->fd);
	free(ls->root);
	free(ls->name);
	free(ls);
}

/* httpd_stream_fn: the log's next bytes, waiting for more while the sliver
 * runs (follow), at most LOG_FOLLOW_QUIET s. */
static ssize_t log_stream_read(void *cls, char *buf, size_t max)
{
	struct log_stream *ls = cls;
	for (;;) {
		ssize_t n = read(ls->fd, buf, max);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n > 0) {
			ls->quiet_since = vs_now_ns();
			return n;
		}
		/* At the end: stop after one more read once the PID 1 is gone
		 * (its last bytes were written before it died). */
		if (!ls->follow || ls->ended || httpd_stopping(ls->srv))
			return 0;
		if (vs_now_ns() - ls->quiet_since > LOG_FOLLOW_QUIET * 1000000000ull)
			return 0;
		if (!slice_pid1(ls->root, ls->name)) {
			ls->ended = true;
			continue;
		}
		poll(NULL, 0, LOG_POLL_MS);
	}
}

static void h_logs(struct httpd_request *req, struct httpd_answer *a, const char *name)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	const char *off = httpd_query(req, "offset"), *fol = httpd_query(req, "follow");
	char *end = NULL;
	errno = 0;
	long long offset = off ? strtoll(off, &end, 10) : 0;
	if (off && (!*off || *end || errno || offset < 0))
		return httpd_answer_error(a, 400, "sliver %s: offset: \"%s\" is not a byte offset",
					  name, off);
	if (fol && strcmp(fol, "0") && strcmp(fol, "1"))
		return httpd_answer_error(a, 400, "sliver %s: follow: 0 or 1", name);
	struct vs_error err;
	int fd = slice_log_open(nm->root, name, &err);
	if (fd < 0)
		return httpd_answer_error(a, err.code == ENOENT ? 404 : 500, "sliver %s: %s", name,
					  err.msg);
	/* slice_log_open starts at the first byte still kept: never before. */
	off_t first = lseek(fd, 0, SEEK_CUR);
	off_t start = first > (off_t)offset ? first : (off_t)offset;
	if (first < 0 || lseek(fd, start, SEEK_SET) < 0) {
		close(fd);
		return httpd_answer_error(a, 500, "sliver %s: log: seek: %s", name,
					  strerror(errno));
	}
	struct log_stream *ls = vs_xcalloc(1, sizeof(*ls));
	*ls = (struct log_stream){
	    .srv = req->srv,
	    .root = vs_xstrdup(nm->root),
	    .name = vs_xstrdup(name),
	    .fd = fd,
	    .follow = fol && !strcmp(fol, "1"),
	    .quiet_since = vs_now_ns(),
	};
	bool running = slice_pid1(nm->root, name) != 0;
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)start);
	httpd_answer_stream(a, 200, log_stream_read, log_stream_free, ls,
			    "text/plain; charset=utf-8");
	/* Known before the first byte: where the bytes start, and whether the
	 * sliver still ran (stopped: this answer is all there will be). */
	httpd_answer_header(a, "X-Vslice-Offset", num);
	httpd_answer_header(a, "X-Vslice-Sliver", running ? "running" : "stopped");
	if (ls->follow)
		httpd_set_timeout(req, LOG_FOLLOW_IDLE);
}

/* --- routing ------------------------------------------------------ */

struct sliver_route {
	const char *verb; /* the ticket's */
	const char *method;
	void (*fn)(struct httpd_request *, struct httpd_answer *, const char *name);
};

static void h_freeze_on(struct httpd_request *req, struct httpd_answer *a, const char *name)
{
	h_freeze(req, a, name, true);
}

static void h_thaw(struct httpd_request *req, struct httpd_answer *a, const char *name)
{
	h_freeze(req, a, name, false);
}

static const struct sliver_route routes[] = {
    {"stats", "GET", h_stats},
    {"freeze", "POST", h_freeze_on},
    {"thaw", "POST", h_thaw},
    {"logs", "GET", h_logs},
};

void nm_api_handle(struct httpd_request *req, struct httpd_answer *a)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	const char *rest = req->url + strlen(SLIVERS_PREFIX);
	const char *slash = strchr(rest, '/');
	char name[64];
	if (!slash || (size_t)(slash - rest) >= sizeof(name))
		return httpd_answer_error(a, 404, "%s: no such route", req->url);
	memcpy(name, rest, (size_t)(slash - rest));
	name[slash - rest] = '\0';
	const char *what = slash + 1;
	if (!vs_name_valid(name)) {
		char pb[80];
		return httpd_answer_error(a, 400, "sliver \"%s\": invalid name",
					  vs_printable(name, pb, sizeof(pb)));
	}
	if (!strcmp(what, "exec")) /* its own ticket check: verb exec or shell */
		return nm_exec_handle(req, name, a);
	/* h-cp: GET|PUT /v1/slivers/NAME/files goes to nodemgr_files.c here. */
	if (!strcmp(what, "files"))
		return nm_files_handle(req, a, name);
	for (size_t i = 0; i < VS_ARRAY_SIZE(routes); i++) {
		if (strcmp(what, routes[i].verb))
			continue;
		if (strcmp(req->method, routes[i].method))
			return httpd_answer_error(a, 405, "sliver %s: %s takes %s", name, what,
						  routes[i].method);
		unsigned status;
		struct vs_error err;
		if (nm_ticket_check(nm, req, name, routes[i].verb, &status, &err) < 0)
			return httpd_answer_error(a, status, "%s", err.msg);
		return routes[i].fn(req, a, name);
	}
	httpd_answer_error(a, 404, "%s: no such route (stats, freeze, thaw, logs, exec, files)",
			   req->url);
}
