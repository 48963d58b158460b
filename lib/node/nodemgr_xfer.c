/*
 * nodemgr_xfer.c - PUT /v1/transfers/ID on the node manager's --listen API:
 * where a migration's source streams the sliver to this node, the target
 * (docs/migration.md, "The transfer channel: node to node").
 *
 * Who can call it: any host that reaches --listen. What it takes:
 *   - a transfer the registry opened here: nodemgr_migrate.c makes the copy
 *     (not started) when the assignments carry "migrate_in" for it, then
 *     lists an open job with the migration's id and the sha256 of its token
 *     (the registry never tells the target the token itself). An id with no
 *     open job: 503 + Retry-After: 1 (the source retries for 30 s: the
 *     target may not have heard of the migration yet);
 *   - "Authorization: Bearer vst_<64 hex>" whose sha256 equals the job's,
 *     compared in constant time: else 401 (none or malformed) / 403 (wrong),
 *     and nothing changes (a wrong guess burns nothing; 256 random bits are
 *     not guessed);
 *   - once: the first PUT with the right token takes the job (under nm->mu)
 *     and saves "receiving" in the record before a byte is read, so a
 *     replay, also after a restart, gets 409;
 * and then streams the body, chunk by chunk as libmicrohttpd hands it over,
 * into a pipe whose other end slice_fs_receive (the job's thread) reads: no
 * copy in memory beyond the pipe (1 MiB) and libmicrohttpd's buffer, no temp
 * file; the stream's own checks (sha256 trailer, paths, owners, lengths)
 * stand between the body and the slice, and nothing of the slice changes
 * unless the whole stream verifies.
 *
 * Bounds: the API holds at most 64 connections, 16 from one address (one
 * thread each, nodemgr_status.c); a transfer's connection idle for
 * XFER_IDLE_SECS (a sender that stops, a cut link) is closed, which ends the
 * stream short: the receive fails, the target reports "aborted" and removes
 * the copy. A body that never ends costs only disk up to the copy's own
 * limits and the time until the registry's migration timeout aborts it.
 * The answer waits for the job: 200 {"phase": "committed"} once the
 * registry committed and the copy started, else {"error"} with 409
 * (aborted at the registry), 422 (the stream did not verify), 507 (no space
 * left), 503 (the registry did not answer; settled later) or 500.
 *
 * Live and pre-copy over plain http come as GET /v1/transfers/ID with
 * "Upgrade: vslice-transfer" instead (the same checks, the same one use):
 * after the 101 the connection is the body, spliced from the socket into
 * the pipe by the upgrade's thread (xfer_upgraded) until the source shuts
 * its side down, and the answer is one line of JSON on the same connection.
 *
 * The test hook VSLICE_FAULT=migrate.flip:N flips byte N of the body as it
 * arrives (a stream corrupted on the wire).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/nodeapi.h"
#include "vslice/httpd.h"
#include "vslice/util.h"

#define XFER_PREFIX	  NODEAPI_TRANSFERS
#define XFER_IDLE_SECS	  15
#define XFER_PIPE_SIZE	  (1 << 20)
#define XFER_ANSWER_WAIT  180 /* s: the job's reports are bounded well below this */
#define XFER_TOKEN_PREFIX "vst_"
#define XFER_COPY_BUF	  (64 << 10) /* an upgraded stream read by copy (drained, flipped) */

/* One PUT that took a job. */
struct xfer_req {
	struct nm_job *job; /* a reference */
	int wfd;	    /* the pipe's write end; -1 once closed */
	uint64_t off;	    /* body bytes so far */
	long long flip;	    /* VSLICE_FAULT=migrate.flip:N: the offset, else -1 */
	bool broken;	    /* the receiver stopped reading */
};

bool nm_xfer_route(const char *url)
{
	return !strncmp(url, XFER_PREFIX, strlen(XFER_PREFIX));
}

/* Equal 64-character digests, in time that does not depend on where they
 * differ. */
static bool digest_equal(const char *a, const char *b)
{
	unsigned char d = 0;
	for (size_t i = 0; i < VS_SHA256_HEX - 1; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static bool id_shape(const char *id)
{
	size_t n = strlen(id);
	return n > 3 && n < NODEMGR_MIG_ID_MAX && !strncmp(id, "mg_", 3) &&
	       strspn(id + 3, "0123456789abcdef") == n - 3;
}

static void xfer_free(void *arg)
{
	struct xfer_req *x = arg;
	struct nodemgr *nm = x->job->nm;
	/* A connection that ended early (a source that died, a cut link, the
	 * idle timeout): closing the pipe ends the stream short, and the
	 * receiver's check fails. */
	if (x->wfd >= 0)
		close(x->wfd);
	pthread_mutex_lock(&nm->mu);
	nm_job_put_locked(x->job);
	pthread_mutex_unlock(&nm->mu);
	free(x);
}

static void xfer_count(struct xfer_req *x, size_t len);
static int xfer_feed(struct xfer_req *x, const char *buf, size_t len);
static unsigned xfer_outcome(struct xfer_req *x, char *msg, size_t len);

/* The answer on an upgraded transfer: one line of JSON, {"status": 200,
 * "phase": "committed", "id": ...} or {"status": N, "error": ...}. */
static void xfer_send_answer(struct xfer_req *x, int fd, unsigned status, const char *msg)
{
	cleanup_json json_t *j =
	    status == 200
		? json_pack("{s:i, s:s, s:s}", "status", 200, "phase", msg, "id", x->job->mig.id)
		: json_pack("{s:i, s:s}", "status", (int)status, "error", msg);
	cleanup_free char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!text)
		return;
	cleanup_free char *line = vs_xasprintf("%s\n", text);
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			if (poll(&pf, 1, XFER_IDLE_SECS * 1000) > 0)
				continue;
		}
		if (n <= 0)
			return; /* the source is gone: the registry has the outcome */
		off += (size_t)n;
	}
}

/*
 * An upgraded transfer (live and pre-copy over plain http): the body is the
 * connection itself until the source shuts its side down. The pages move
 * from the socket into the receiver's pipe by splice (by reference: no copy
 * on this side before the restore reads the pipe), where the PUT's body
 * took a copy into libmicrohttpd's buffer and another into the pipe. The
 * hooks of the PUT hold: the byte count and migrate.in:4, migrate.flip (by
 * copy, up to the flipped byte), the idle timeout; a receiver that gave up
 * leaves the rest drained unread, so the source gets to the answer, as a
 * PUT's does.
 */
static void xfer_upgraded(void *arg, int fd, const char *extra, size_t extra_len)
{
	struct xfer_req *x = arg;
	struct nodemgr *nm = x->job->nm;
	nm_block_sigpipe(); /* EPIPE from the receiver's pipe, not SIGPIPE */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK); /* EAGAIN: the socket is empty */
	if (extra_len && x->wfd >= 0)
		xfer_feed(x, extra, extra_len);
	cleanup_free char *buf = NULL;
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int pr = poll(&pf, 1, XFER_IDLE_SECS * 1000);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "transfer %s: nothing for %d s; closing",
			       x->job->mig.id, XFER_IDLE_SECS);
			break;
		}
		bool flip_ahead = x->flip >= 0 && (uint64_t)x->flip >= x->off;
		ssize_t n;
		if (x->wfd >= 0 && !flip_ahead) {
			/* Blocks while the pipe is full, as the PUT's write. */
			n = splice(fd, NULL, x->wfd, NULL, XFER_PIPE_SIZE, SPLICE_F_MOVE);
			if (n > 0) {
				xfer_count(x, (size_t)n);
				continue;
			}
			if (n < 0 && errno == EPIPE) { /* the receiver gave up: drain */
				close(x->wfd);
				x->wfd = -1;
				x->broken = true;
				continue;
			}
		} else {
			if (!buf)
				buf = vs_xmalloc(XFER_COPY_BUF);
			n = recv(fd, buf, XFER_COPY_BUF, 0);
			if (n > 0) {
				if (x->wfd >= 0)
					xfer_feed(x, buf, (size_t)n);
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		break; /* 0: the end of the stream; else the connection broke */
	}
	char msg[sizeof(x->job->answer_msg) + 64];
	unsigned status = xfer_outcome(x, msg, sizeof(msg));
	xfer_send_answer(x, fd, status, msg);
}

void nm_xfer_begin(struct httpd_request *req, struct httpd_answer *a)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	const char *id = req->url + strlen(XFER_PREFIX);
	/* Live and pre-copy over plain http: GET with "Upgrade:
	 * vslice-transfer" (the stream on the connection itself). */
	bool upgrade = !strcmp(req->method, "GET") && httpd_wants_upgrade(req, NM_XFER_PROTO);
	if (strcmp(req->method, "PUT") && !upgrade) {
		httpd_answer_error(a, 405,
				   "transfer: only PUT " XFER_PREFIX
				   "ID, or GET with Upgrade: " NM_XFER_PROTO);
		return;
	}
	if (!id_shape(id)) {
		httpd_answer_error(a, 404, "transfer: no such transfer");
		return;
	}
	const char *auth = httpd_header(req, "Authorization");
	const char *tok = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
	size_t plen = strlen(XFER_TOKEN_PREFIX);
	if (!tok || strlen(tok) != plen + 64 || strncmp(tok, XFER_TOKEN_PREFIX, plen) ||
	    strspn(tok + plen, "0123456789abcdef") != 64) {
		httpd_answer_error(a, 401,
				   "transfer %s: needs its transfer token (Authorization: Bearer "
				   "vst_...)",
				   id);
		return;
	}
	char sha[VS_SHA256_HEX];
	vs_sha256_buf(tok, strlen(tok), sha);

	pthread_mutex_lock(&nm->mu);
	struct nm_job *j = nm->jobs;
	while (j && !(j->kind == NM_JOB_IN && !strcmp(j->mig.id, id)))
		j = j->next;
	bool used = false;
	for (size_t k = 0; !j && k < VS_ARRAY_SIZE(nm->used); k++)
		used = used || (!strcmp(nm->used[k].id, id) && digest_equal(sha, nm->used[k].sha));
	if (!j && used) {
		pthread_mutex_unlock(&nm->mu);
		httpd_answer_error(
		    a, 409,
		    "transfer %s: already received (a transfer token is good for one "
		    "transfer)",
		    id);
		return;
	}
	if (!j) {
		pthread_mutex_unlock(&nm->mu);
		httpd_answer_error(a, 503, "transfer %s: not open on this node (yet)", id);
		httpd_answer_header(a, "Retry-After", "1");
		return;
	}
	if (!digest_equal(sha, j->mig.token_sha256)) {
		pthread_mutex_unlock(&nm->mu);
		nm_log(nm, NODEMGR_LOG_INFO, "transfer %s: refused a PUT with a wrong token", id);
		httpd_answer_error(a, 403, "transfer %s: wrong transfer token", id);
		return;
	}
	if (j->state != NM_JOB_OPEN) {
		pthread_mutex_unlock(&nm->mu);
		nm_log(nm, NODEMGR_LOG_INFO, "transfer %s: refused a second PUT", id);
		httpd_answer_error(a, 409,
				   "transfer %s: already received or being received (a transfer "
				   "token is good for one transfer)",
				   id);
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		int e = errno;
		pthread_mutex_unlock(&nm->mu);
		httpd_answer_error(a, 500, "transfer %s: pipe: %s", id, strerror(e));
		return;
	}
	j->state = NM_JOB_RUNNING; /* taken: the one use */
	j->in_fd = p[0];
	j->refs++;
	pthread_mutex_unlock(&nm->mu);
	fcntl(p[1], F_SETPIPE_SZ, XFER_PIPE_SIZE); /* fewer wake-ups; not needed */

	struct xfer_req *x = vs_xcalloc(1, sizeof(*x));
	x->job = j;
	x->wfd = p[1];
	x->flip = nm_fault_flip_offset(nm);
	req->data = x;
	nm_log(nm, NODEMGR_LOG_INFO, "transfer %s: receiving sliver %s from %s (%s)", id,
	       j->r.slice, j->mig.peer, upgrade ? "on the connection" : "the PUT's body");
	struct vs_error err;
	if (nm_job_start_receive(j, &err) < 0) {
		close(x->wfd);
		x->wfd = -1;
		httpd_answer_error(a, 500, "transfer %s: %s", id, err.msg);
		return;
	}
	if (upgrade) {
		/* The stream's thread owns x from the 101 on (xfer_free: also
		 * when the 101 never goes out: the receiver reads a short
		 * stream and fails). */
		req->data = NULL;
		httpd_answer_upgrade(a, NM_XFER_PROTO, xfer_upgraded, x, xfer_free);
		return;
	}
	httpd_stream_body(req);
	httpd_set_timeout(req, XFER_IDLE_SECS);
}

/* Bytes of the body so far: the job's progress, the live fault point. */
static void xfer_count(struct xfer_req *x, size_t len)
{
	x->off += len;
	if (strcmp(x->job->mig.mode, "cold") != 0) {
		/* live / pre-copy: slice_restore has no progress of its own */
		if (x->off >= (1u << 20) && x->off - len < (1u << 20))
			nm_fault_point(x->job->nm, "migrate.in", 4);
		atomic_store(&x->job->bytes, x->off);
	}
}

static int xfer_feed(struct xfer_req *x, const char *buf, size_t len)
{
	if (x->wfd < 0)
		return -1;
	cleanup_free char *flipped = NULL;
	if (x->flip >= 0 && (uint64_t)x->flip >= x->off && (uint64_t)x->flip < x->off + len) {
		flipped = vs_xmalloc(len);
		memcpy(flipped, buf, len);
		flipped[(uint64_t)x->flip - x->off] ^= 0x5a;
		buf = flipped;
	}
	xfer_count(x, len);
	/* Blocks while the pipe is full: this connection's own thread, and
	 * the receiver is local. EPIPE: it gave up (its error is the answer). */
	if (vs_write_all(x->wfd, buf, len) < 0) {
		close(x->wfd);
		x->wfd = -1;
		x->broken = true;
		return -1;
	}
	return 0;
}

int nm_xfer_data(struct httpd_request *req, const char *buf, size_t len)
{
	struct xfer_req *x = req->data;
	return x ? xfer_feed(x, buf, len) : -1;
}

/* The job's outcome, once the stream is in (the receiver's end of it
 * closed): the answer's status and its phase or error text into msg. */
static unsigned xfer_outcome(struct xfer_req *x, char *msg, size_t len)
{
	struct nodemgr *nm = x->job->nm;
	if (x->wfd >= 0) { /* the whole body is in: end of stream for the receiver */
		close(x->wfd);
		x->wfd = -1;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += XFER_ANSWER_WAIT;
	pthread_mutex_lock(&nm->mu);
	while (x->job->state != NM_JOB_DONE)
		if (pthread_cond_timedwait(&nm->job_cv, &nm->mu, &until) == ETIMEDOUT)
			break;
	unsigned status = x->job->state == NM_JOB_DONE ? x->job->answer_status : 504;
	snprintf(msg, len, "%s", x->job->answer_msg);
	pthread_mutex_unlock(&nm->mu);
	if (status == 504)
		snprintf(msg, len, "transfer %s: no outcome after %d s", x->job->mig.id,
			 XFER_ANSWER_WAIT);
	return status ? status : 500;
}

void nm_xfer_handle(struct httpd_request *req, struct httpd_answer *a)
{
	struct xfer_req *x = req->data;
	if (!x) {
		httpd_answer_error(a, 500, "transfer: no transfer for this request");
		return;
	}
	char msg[sizeof(x->job->answer_msg) + 64];
	unsigned status = xfer_outcome(x, msg, sizeof(msg));
	if (status == 200) {
		cleanup_json json_t *j =
		    json_pack("{s:s, s:s}", "phase", msg, "id", x->job->mig.id);
		httpd_answer_json(a, 200, j);
	} else {
		httpd_answer_error(a, status, "%s", msg);
	}
}

void nm_xfer_done(struct httpd_request *req, bool completed)
{
	(void)completed;
	if (req->data)
		xfer_free(req->data);
	req->data = NULL;
}
