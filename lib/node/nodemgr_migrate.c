/*
 * nodemgr_migrate.c - cold migration on the node (docs/migration.md, "The
 * transfer channel: node to node"): the reconcile actions MIGRATE_OUT,
 * MIGRATE_IN and MIGRATE_RESOLVE, and the threads (jobs) that carry a
 * migration's long steps so the main loop keeps its heartbeat meanwhile.
 *
 * The registry decides; the nodes report and follow. Exactly one copy runs:
 * the source stops its sliver only after the registry took "transferring",
 * the target starts its copy only after the registry answered "restored"
 * with "committed", and the source restarts only after the registry took
 * (or already had) "aborted". Every step is saved in the sliver's record
 * before it is taken, so a node manager killed anywhere comes back to a
 * record that says where it stood; nodemgr_decide() then picks
 * MIGRATE_RESOLVE and the registry's answer to one more report says which
 * way to roll.
 *
 * Source (a job thread from the start; VSLICE_FAULT=migrate.out:N kills
 * right after step N):
 *   1 "transferring" acknowledged (409: the migration is gone: nothing done)
 *   2 record "migrating-out" saved    3 sliver stopped (SIGTERM, then SIGKILL)
 *   4 the first MiB of the stream sent (slice_fs_send into a pipe, the pipe
 *     as the body of PUT <url>/v1/transfers/ID; a progress report a second;
 *     live and pre-copy over http: the checkpoint spliced into the socket
 *     of an upgraded GET <url>/v1/transfers/ID, send_upgraded)
 *   5 the PUT answered               6 rolled forward (its copy destroyed:
 *     the registry says committed) or back (restarted: aborted)
 * Target (nodemgr_migrate_in.c: main thread up to 2, then the PUT's job;
 * migrate.in:N; migrate.delay:MS waits MS ms between 1 and 2, a target slow
 * to open the transfer):
 *   1 record "migrating-in" saved     2 the copy made, not started; the
 *                                       transfer open (nodemgr_xfer.c)
 *   3 a PUT with the token taken: record "receiving" (one use)
 *   4 the first MiB received          5 stream verified: record "restored"
 *   6 "restored" acknowledged: "committed" (409 "aborted": copy destroyed)
 *   7 started                         8 "started" reported; then the record
 *                                       says "created"
 * Live and pre-copy (mode "live", "precopy"): the checkpointer's refusal
 * checks run before step 1; step 3 does not stop the sliver: the stream is
 * its checkpoint (live_send), the source frozen before the stream's tail
 * goes, thawed if the migration aborts; the target restores it as it
 * arrives and keeps it frozen until "committed" (docs/migration.md, "Live
 * and pre-copy migration").
 * A failed receive reports "aborted" itself and destroys the copy; the
 * source's PUT then fails and its own "aborted" report is answered 200
 * (the same phase again), so it restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/nodeapi.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/slice_ckpt.h"
#include "vslice/slice_xfer.h"
#include "vslice/util.h"

#define MIG_STOP_GRACE	      10   /* s from SIGTERM to SIGKILL when stopping the source */
#define MIG_PUT_RETRY	      30   /* s a source retries a target that answers 503 */
#define MIG_PUT_RETRY_COLD_MS 100  /* ms between tries before a dump (cold, upgraded) */
#define MIG_LOW_SPEED	      1024 /* bytes/s below which ... */
#define MIG_LOW_SPEED_SECS    15   /* ... for this long the source gives up the PUT */
#define MIG_PIPE_SIZE	      (1 << 20)
#define MIG_HOLD_BACK	      (64 << 10) /* live: the stream's tail, sent once the source is frozen */

uint64_t nm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void nm_block_sigpipe(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* --- jobs ----------------------------------------------------------- */

struct nm_job *nm_job_new(struct nodemgr *nm, enum nm_job_kind kind,
			  const struct nodemgr_migration *mig, const struct nodemgr_record *r)
{
	struct nm_job *j = vs_xcalloc(1, sizeof(*j));
	j->nm = nm;
	j->kind = kind;
	j->mig = *mig;
	j->r = *r;
	j->r.message = r->message ? vs_xstrdup(r->message) : NULL;
	j->in_fd = -1;
	j->refs = 1; /* nm->jobs' */
	return j;
}

static void job_free(struct nm_job *j)
{
	if (j->in_fd >= 0)
		close(j->in_fd);
	nodemgr_record_free(&j->r);
	explicit_bzero(j->mig.token, sizeof(j->mig.token));
	free(j);
}

void nm_job_put_locked(struct nm_job *j)
{
	if (--j->refs == 0)
		job_free(j);
}

static void job_unlink_locked(struct nodemgr *nm, struct nm_job *j)
{
	for (struct nm_job **pp = &nm->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	j->next = NULL;
}

void nm_job_push(struct nodemgr *nm, struct nm_job *j)
{
	pthread_mutex_lock(&nm->mu);
	j->next = nm->jobs;
	nm->jobs = j;
	pthread_mutex_unlock(&nm->mu);
}

/* The job's thread is over: hand the outcome to the main loop. */
void nm_job_finish(struct nm_job *j)
{
	struct nodemgr *nm = j->nm;
	pthread_mutex_lock(&nm->mu);
	j->state = NM_JOB_DONE;
	pthread_cond_broadcast(&nm->job_cv);
	pthread_mutex_unlock(&nm->mu);
	nm_wake(nm);
}

bool nm_job_holds(struct nodemgr *nm, const char *slice, const struct nodemgr_assignment *a)
{
	pthread_mutex_lock(&nm->mu);
	struct nm_job *j = nm->jobs;
	while (j && strcmp(j->r.slice, slice))
		j = j->next;
	bool close_it = j && j->state == NM_JOB_OPEN &&
			!(a && a->mig.role == NODEMGR_MIG_IN && !strcmp(a->mig.id, j->mig.id));
	if (close_it) {
		job_unlink_locked(nm, j);
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s: no longer asked for; its transfer is closed",
		       slice, j->mig.id);
		nm_job_put_locked(j);
		j = NULL;
	}
	pthread_mutex_unlock(&nm->mu);
	return j != NULL;
}

bool nm_jobs_running(struct nodemgr *nm)
{
	pthread_mutex_lock(&nm->mu);
	bool running = false;
	for (struct nm_job *j = nm->jobs; j && !running; j = j->next)
		running = j->state == NM_JOB_RUNNING;
	pthread_mutex_unlock(&nm->mu);
	return running;
}

void nm_jobs_reap(struct nodemgr *nm)
{
	struct nm_job *done = NULL;
	pthread_mutex_lock(&nm->mu);
	for (struct nm_job **pp = &nm->jobs; *pp;) {
		struct nm_job *j = *pp;
		if (j->state != NM_JOB_DONE) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		j->next = done;
		done = j;
	}
	pthread_mutex_unlock(&nm->mu);
	while (done) {
		struct nm_job *j = done;
		done = j->next;
		if (j->thread_started)
			pthread_join(j->thread, NULL);
		struct nm_sliver *s = nm_sliver_find(nm, j->r.slice);
		if (j->gone) {
			if (s)
				nm_sliver_drop(nm, s);
		} else {
			if (!s)
				s = nm_sliver_add(nm, j->r.slice);
			nodemgr_record_free(&s->r);
			s->r = j->r;
			j->r.message = NULL; /* s->r's now */
			s->busy = false;
			s->last_state[0] = '\0';
			s->end_seen = false;
			nm_close_pidfd(s);
			if (j->retry_ns)
				s->mig_retry_ns = j->retry_ns;
		}
		nm->changed = true;
		pthread_mutex_lock(&nm->mu);
		if (j->kind == NM_JOB_IN) { /* its token was used: a replay is a 409 */
			unsigned k = nm->used_next++ % VS_ARRAY_SIZE(nm->used);
			snprintf(nm->used[k].id, sizeof(nm->used[k].id), "%s", j->mig.id);
			snprintf(nm->used[k].sha, sizeof(nm->used[k].sha), "%s",
				 j->mig.token_sha256);
		}
		nm_job_put_locked(j);
		pthread_mutex_unlock(&nm->mu);
	}
}

void nm_jobs_free(struct nodemgr *nm)
{
	nm_jobs_reap(nm);
	pthread_mutex_lock(&nm->mu);
	while (nm->jobs) { /* open transfers: no thread */
		struct nm_job *j = nm->jobs;
		nm->jobs = j->next;
		nm_job_put_locked(j);
	}
	pthread_mutex_unlock(&nm->mu);
}

/* --- talking to the registry from a job ----------------------------- */

/*
 * Report phase of the job's migration until the registry answers: 0 it took
 * it (*got: the phase it is in now, e.g. "committed" after "restored"),
 * 1 it refused (409: *got is the phase it is in: "committed", "aborted"),
 * -1 no answer within patience seconds (or the node manager stops).
 */
int nm_job_report(struct http_client *c, struct nm_job *j, const char *phase, long long bytes,
		  const char *reason, unsigned patience, char got[16])
{
	struct nodemgr *nm = j->nm;
	struct regclient_migration_report rep = {
	    .node = nm->name,
	    .phase = phase,
	    .bytes = bytes,
	    .at_ms = (long long)nm_now_ms(),
	    .reason = reason,
	};
	uint64_t until = vs_now_ns() + (uint64_t)patience * 1000000000ull;
	for (unsigned attempt = 0;; attempt++) {
		long status = 0;
		struct vs_error err;
		int r = regclient_migration_report(c, j->mig.id, &rep, NULL, got, &status, &err);
		if (r == 0)
			return 0;
		if (status == 409 && got[0])
			return 1;
		if (status >= 400 && status < 500 && status != 409) {
			/* 403/404: not ours to report (any more); nothing to retry */
			nm_log(nm, NODEMGR_LOG_INFO, "migration %s: report %s: %s", j->mig.id,
			       phase, err.msg);
			return -1;
		}
		if (attempt == 0 || attempt % 10 == 0)
			nm_log(nm, NODEMGR_LOG_INFO, "migration %s: report %s: %s (retrying)",
			       j->mig.id, phase, err.msg);
		if (atomic_load(&nm->stop) || vs_now_ns() >= until || !nm_nap(nm, 1))
			return -1;
	}
}

int nm_job_client(struct nm_job *j, struct http_client *c)
{
	struct vs_error err;
	if (http_client_init(c, j->nm->registry, j->nm->token, j->nm->ca_file, &err) < 0) {
		nm_log(j->nm, NODEMGR_LOG_INFO, "migration %s: %s", j->mig.id, err.msg);
		return -1;
	}
	return 0;
}

/* Remove the job's slice, intent first, then its record. */
void nm_job_destroy_slice(struct nm_job *j)
{
	struct nodemgr *nm = j->nm;
	struct vs_error err;
	j->r.phase = NODEMGR_DESTROYING;
	nm_record_save_or_warn(nm, &j->r);
	if (slice_destroy(nm->root, j->r.slice, true, &err) < 0) {
		/* The record says destroying: the main loop finishes it. */
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: destroying: %s (retrying later)",
		       j->r.slice, err.msg);
		return;
	}
	nm_record_remove(nm, j->r.slice);
	j->gone = true;
}

/* --- source ----------------------------------------------------------- */

struct sender {
	struct nm_job *job;
	int fd;
	int rc;
	struct vs_error err;
	bool fault_armed;
	/* live / pre-copy: */
	bool frozen;		/* the source was frozen after its dump */
	long long frozen_at_ms; /* unix ms the dump froze it */
	struct ckpt_stats cst;	/* the checkpoint's */
	uint64_t round_bytes[CKPT_MAX_ROUNDS];
	/* fd is the target's socket (an upgraded transfer): */
	bool sock;
	bool (*cancelled)(void *arg); /* the migration is given up */
	void *cancel_arg;
	uint64_t stall_ns; /* since when the socket has had no room (0: it has) */
};

static bool mig_live(const struct nm_job *j)
{
	return strcmp(j->mig.mode, "live") == 0 || strcmp(j->mig.mode, "precopy") == 0;
}

static void out_progress(void *arg, uint64_t bytes)
{
	struct sender *sd = arg;
	atomic_store(&sd->job->bytes, bytes);
	if (bytes >= (1u << 20) && sd->fault_armed) {
		sd->fault_armed = false;
		nm_fault_point(sd->job->nm, "migrate.out", 4);
	}
}

/* --- live / pre-copy source: the checkpoint as the stream --------------- */

/*
 * The dump runs in a child process of its own: the checkpointer's ptrace
 * checks take the dumping process's pid for its tracer, which only holds in
 * a main thread (lib/checkpoint/dump.c), and the node manager is threaded.
 * The child keeps the relay pipe's write end and a pipe for its outcome,
 * nothing else (no end of the PUT's pipe: a PUT that gave up must reach the
 * dump as EPIPE).
 */
struct dump_outcome {
	int rc;
	struct vs_error err;
	struct ckpt_stats st;
};

static pid_t dumper_spawn(struct nm_job *j, int out_fd, int res_fd)
{
	int o1 = fcntl(out_fd, F_DUPFD, 1000), o2 = o1 < 0 ? -1 : fcntl(res_fd, F_DUPFD, 1001);
	if (o1 < 0 || o2 < 0) {
		if (o1 >= 0)
			close(o1);
		return -1;
	}
	bool precopy = strcmp(j->mig.mode, "precopy") == 0;
	pid_t pid = fork();
	if (pid == 0) {
		close_range(3, (unsigned)(o1 < o2 ? o1 : o2) - 1, 0);
		close_range((unsigned)(o1 < o2 ? o2 : o1) + 1, ~0u, 0);
		/* kept frozen from the dump on: nothing the slice did after it
		 * would reach the target (lost on commit, seen twice outside) */
		struct slice_checkpoint_opts o = {
		    .leave_running = true, .keep_frozen = true, .precopy = precopy};
		static struct dump_outcome res;
		res.rc = slice_checkpoint(j->nm->root, j->r.slice, o1, &o, &res.st, &res.err);
		close(o1);
		ssize_t w = write(o2, &res, sizeof(res));
		_exit(w == (ssize_t)sizeof(res) ? 0 : 1);
	}
	close(o1);
	close(o2);
	return pid;
}

static void log_rounds(struct nm_job *j, const struct ckpt_stats *c)
{
	for (unsigned k = 0; k < c->nr_rounds && k < CKPT_MAX_ROUNDS; k++)
		nm_log(j->nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s: round %u: %llu pages, %llu bytes, dirtied "
		       "%.1f MiB/s",
		       j->r.slice, j->mig.id, k + 1, (unsigned long long)c->rounds[k].pages,
		       (unsigned long long)c->rounds[k].bytes,
		       (double)c->rounds[k].dirty_bps / (1 << 20));
}

/* The stats object the source reports: the rounds, the frozen round. */
static json_t *live_stats(const struct nm_job *j, const struct sender *sd, uint64_t total)
{
	const struct ckpt_stats *c = &sd->cst;
	json_t *rounds = json_array();
	uint64_t sent = 0;
	for (unsigned k = 0; k < c->nr_rounds && k < CKPT_MAX_ROUNDS; k++) {
		const struct ckpt_round_stats *rs = &c->rounds[k];
		sent += rs->bytes;
		json_array_append_new(rounds, json_pack("{s:I, s:I, s:I, s:I}", "pages",
							(json_int_t)rs->pages, "bytes",
							(json_int_t)rs->bytes, "ms",
							(json_int_t)(rs->ns / 1000000), "dirty_bps",
							(json_int_t)rs->dirty_bps));
	}
	return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "mode", j->mig.mode, "rounds",
			 rounds, "precopy_ms", (json_int_t)(c->precopy_ns / 1000000),
			 "frozen_pages", (json_int_t)c->pages_written, "frozen_bytes",
			 (json_int_t)(total > sent ? total - sent : 0), "freeze_ms",
			 (json_int_t)((c->freeze_ns + c->frozen_ns) / 1000000), "stream_bytes",
			 (json_int_t)total, "processes", (json_int_t)c->nr_procs);
}

/* After the freeze: "transferring" with the freeze's time (the downtime's
 * start) and the stats. One try: the registry may have committed already
 * (it takes the time then too). */
static void report_frozen(struct sender *sd, uint64_t total)
{
	struct nm_job *j = sd->job;
	struct http_client c;
	if (nm_job_client(j, &c) < 0)
		return;
	c.timeout_secs = 5;
	cleanup_json json_t *stats = live_stats(j, sd, total);
	struct regclient_migration_report rep = {.node = j->nm->name,
						 .phase = "transferring",
						 .bytes = (long long)total,
						 .at_ms = sd->frozen_at_ms,
						 .stats = stats};
	long status = 0;
	struct vs_error err;
	char got[16] = "";
	if (regclient_migration_report(&c, j->mig.id, &rep, NULL, got, &status, &err) < 0)
		nm_log(j->nm, NODEMGR_LOG_INFO, "migration %s: reporting the freeze: %s", j->mig.id,
		       err.msg);
	http_client_free(&c);
}

/* Move exactly n bytes from the pipe in to out, a pipe or a socket (pages,
 * no copy); blocks while out is full (a socket: r->out_wait waits). <0 with
 * errno (EPIPE: out's reader is gone). */
static int splice_all(const struct nm_relay *r, int in, int out, size_t n)
{
	while (n > 0) {
		ssize_t m = splice(in, NULL, out, NULL, n, 0);
		if (m < 0 && errno == EINTR)
			continue;
		if (m < 0 && errno == EAGAIN && r->out_wait) {
			int w = r->out_wait(r->wait_arg, out);
			if (w < 0) {
				errno = -w;
				return -1;
			}
			continue;
		}
		if (m <= 0) {
			if (m == 0)
				errno = EPIPE;
			return -1;
		}
		n -= (size_t)m;
	}
	return 0;
}

int nm_relay_init(struct nm_relay *r, size_t hold)
{
	*r = (struct nm_relay){.hold = hold, .h = {-1, -1}};
	if (pipe2(r->h, O_CLOEXEC) < 0)
		return -errno;
	fcntl(r->h[1], F_SETPIPE_SZ, MIG_PIPE_SIZE); /* else 64 KiB: slower, as right */
	return 0;
}

/*
 * The relay moves pages, it does not copy them: splice from in into the
 * holding pipe, and from there everything but its last r->hold bytes on
 * into out. When nothing can be read it waits on in. When the holding
 * pipe is out of slots (many pieces smaller than a page) while in has
 * more, what it holds is not the end of the stream, and all of it goes.
 */
int nm_relay_run(struct nm_relay *r, int in, int out, void (*progress)(void *, uint64_t), void *arg)
{
	for (;;) {
		int w = r->out_wait ? r->out_wait(r->wait_arg, -1) : 0;
		if (w < 0)
			return w;
		ssize_t got = splice(in, NULL, r->h[1], NULL, MIG_PIPE_SIZE, SPLICE_F_NONBLOCK);
		if (got < 0 && errno == EINTR)
			continue;
		int held = 0, waiting = 0;
		if (got < 0 && errno == EAGAIN) {
			if (ioctl(in, FIONREAD, &waiting) == 0 && waiting == 0) {
				struct pollfd pf = {.fd = in, .events = POLLIN};
				if (poll(&pf, 1, -1) < 0 && errno != EINTR)
					return -errno;
				continue;
			}
			got = 1; /* the holding pipe is full */
		}
		if (got < 0)
			return -errno;
		if (got == 0)
			return 0; /* the end of in: r->h holds the tail */
		if (ioctl(r->h[0], FIONREAD, &held) < 0)
			return -errno;
		size_t keep = waiting > 0 ? 0 : r->hold;
		if ((size_t)held <= keep)
			continue;
		size_t n = (size_t)held - keep;
		if (splice_all(r, r->h[0], out, n) < 0)
			return -errno;
		r->sent += n;
		if (progress)
			progress(arg, r->sent);
	}
}

int nm_relay_flush(struct nm_relay *r, int out)
{
	int n = 0;
	if (ioctl(r->h[0], FIONREAD, &n) < 0 || splice_all(r, r->h[0], out, (size_t)n) < 0)
		return -errno;
	r->sent += (size_t)n;
	return 0;
}

void nm_relay_close(struct nm_relay *r)
{
	for (int k = 0; k < 2; k++)
		if (r->h[k] >= 0)
			close(r->h[k]);
	r->h[0] = r->h[1] = -1;
}

/* The relay's wait on the target's socket: room within MIG_LOW_SPEED_SECS
 * and the migration not given up, as the PUT's low-speed limit and cancel
 * hook have it. fd -1: the check alone. */
static int sock_wait(void *arg, int fd)
{
	struct sender *sd = arg;
	if (sd->cancelled && sd->cancelled(sd->cancel_arg))
		return -ECANCELED;
	if (fd < 0)
		return 0;
	struct pollfd pf = {.fd = fd, .events = POLLOUT};
	int r = poll(&pf, 1, 1000);
	if (r < 0 && errno != EINTR)
		return -errno;
	if (r > 0) {
		sd->stall_ns = 0; /* room, or an error the next splice reports */
		return 0;
	}
	uint64_t now = vs_now_ns();
	if (!sd->stall_ns)
		sd->stall_ns = now;
	else if (now - sd->stall_ns > MIG_LOW_SPEED_SECS * 1000000000ull)
		return -ETIMEDOUT;
	return 0;
}

/* The end of the stream: the pipe closed, the socket shut down for writing
 * (its answer comes back on it). */
static void stream_end(struct sender *sd)
{
	if (sd->sock)
		shutdown(sd->fd, SHUT_WR);
	else
		close(sd->fd);
	sd->fd = -1;
}

/* The test hook migrate.hold:MS: the sender waits MS right after the dump
 * has ended, before anything else (the slice must be frozen there). */
static void hold_after_dump(struct nm_job *j)
{
	unsigned ms = nm_fault_delay_ms(j->nm, "migrate.hold");
	if (!ms)
		return;
	nm_log(j->nm, NODEMGR_LOG_INFO,
	       "sliver %s: migration %s: held %u ms after the dump (test hook)", j->r.slice,
	       j->mig.id, ms);
	nm_nap_ms(j->nm, ms);
}

/* The source after its dump: frozen by the checkpoint, recorded here. */
static void source_frozen(struct sender *sd)
{
	struct nm_job *j = sd->job;
	struct vs_error ferr;
	if (slice_freeze(j->nm->root, j->r.slice, &ferr) == 0) {
		sd->frozen = true;
		return;
	}
	/* Never two copies: stop it (the memory state is lost here; an abort
	 * restarts it cold). */
	nm_log(j->nm, NODEMGR_LOG_INFO, "sliver %s: freezing after the dump: %s; stopping it",
	       j->r.slice, ferr.msg);
	slice_stop(j->nm->root, j->r.slice, MIG_STOP_GRACE, &ferr);
}

/*
 * The live stream: slice_checkpoint (leave_running; with precopy its rounds
 * first) writes into a pipe that this thread relays to the PUT's pipe,
 * holding the last MIG_HOLD_BACK bytes back: the END record is in them, and
 * the target restores nothing that runs before it has it. The checkpoint
 * leaves the source frozen (keep_frozen: it never runs after its dump) and
 * only then does the tail go: two copies never run at once. A failed dump sends no
 * tail (the target's stream ends short); a PUT that gave up closes the
 * relay, the dump fails with EPIPE and the slice runs on untouched.
 */
static void live_send(struct sender *sd)
{
	struct nm_job *j = sd->job;
	struct nodemgr *nm = j->nm;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		sd->rc = vs_error_sys(&sd->err, errno, "pipe");
		return;
	}
	fcntl(p[1], F_SETPIPE_SZ, MIG_PIPE_SIZE);
	int q[2];
	if (pipe2(q, O_CLOEXEC) < 0) {
		sd->rc = vs_error_sys(&sd->err, errno, "pipe");
		close(p[0]);
		close(p[1]);
		return;
	}
	pid_t child = dumper_spawn(j, p[1], q[1]);
	close(p[1]);
	close(q[1]);
	if (child < 0) {
		close(p[0]);
		close(q[0]);
		sd->rc = vs_error_sys(&sd->err, errno, "starting the checkpoint process");
		return;
	}
	struct nm_relay rl;
	int rr = nm_relay_init(&rl, MIG_HOLD_BACK);
	if (sd->sock) {
		rl.out_wait = sock_wait;
		rl.wait_arg = sd;
	}
	if (rr == 0)
		rr = nm_relay_run(&rl, p[0], sd->fd, out_progress, sd);
	bool broken = rr < 0;
	if (broken)
		sd->rc = vs_error_sys(&sd->err, -rr, "sending the checkpoint");
	uint64_t total = rl.sent;
	close(p[0]); /* a dump still writing gets EPIPE: the slice runs on */
	struct dump_outcome res = {.rc = -EPROTO};
	ssize_t got;
	while ((got = read(q[0], &res, sizeof(res))) < 0 && errno == EINTR)
		;
	close(q[0]);
	int wst = 0;
	while (waitpid(child, &wst, 0) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(res)) {
		res.rc = -EPROTO;
		vs_error_set(&res.err, EPROTO, "the checkpoint process died (status %d)", wst);
	}
	sd->cst = res.st;
	if (res.rc == 0) {
		/* The dump left it frozen (keep_frozen): recorded now, so that
		 * an abort from here on thaws it. */
		hold_after_dump(j);
		source_frozen(sd);
	}
	if (broken || res.rc < 0) {
		nm_relay_close(&rl);
		if (broken)
			return;
		sd->err = res.err;
		sd->rc = vs_error_wrap(&sd->err, "checkpoint");
		return; /* no tail: the target's stream ends short */
	}
	log_rounds(j, &sd->cst);
	uint64_t frozen_ns = sd->cst.freeze_ns + sd->cst.frozen_ns;
	sd->frozen_at_ms = (long long)nm_now_ms() - (long long)(frozen_ns / 1000000);
	rr = nm_relay_flush(&rl, sd->fd);
	nm_relay_close(&rl);
	if (rr < 0) {
		sd->rc = vs_error_sys(&sd->err, -rr, "sending the checkpoint");
		return;
	}
	total = rl.sent;
	out_progress(sd, total);
	nm_log(nm, NODEMGR_LOG_INFO,
	       "sliver %s: migration %s: checkpoint sent (%llu bytes, %u rounds), frozen %.1f ms "
	       "(memory %.1f: read %.1f, crc %.1f, write %.1f)",
	       j->r.slice, j->mig.id, (unsigned long long)total, sd->cst.nr_rounds,
	       (double)frozen_ns / 1e6, (double)sd->cst.memdump_ns / 1e6,
	       (double)sd->cst.mem_read_ns / 1e6, (double)sd->cst.mem_crc_ns / 1e6,
	       (double)sd->cst.mem_write_ns / 1e6);
	stream_end(sd); /* the end of the body: the target finishes now */
	report_frozen(sd, total);
	sd->rc = 0;
}

/* The checkpointer's refusals, on the running sliver (nothing stops). */
static int live_check(struct nm_job *j, struct vs_error *err)
{
	cleanup_close int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "/dev/null");
	struct slice_checkpoint_opts o = {.leave_running = true, .check_only = true};
	return slice_checkpoint(j->nm->root, j->r.slice, fd, &o, NULL, err);
}

static void *sender_main(void *arg)
{
	struct sender *sd = arg;
	nm_block_sigpipe();
	if (mig_live(sd->job)) {
		live_send(sd);
		if (sd->fd >= 0)
			close(sd->fd);
		sd->fd = -1;
		return NULL;
	}
	struct slice_xfer_opts o = {.progress = out_progress, .arg = sd};
	struct slice_xfer_stats st = {0};
	sd->rc = slice_fs_send(sd->job->nm->root, sd->job->r.slice, sd->fd, &o, &st, &sd->err);
	if (sd->rc == 0)
		atomic_store(&sd->job->bytes, st.bytes);
	close(sd->fd);
	sd->fd = -1;
	return NULL;
}

/* The progress reporter: "transferring" with the bytes sent, every second
 * while the PUT runs; a 409 (aborted at the registry) gives the PUT up. */
struct reporter {
	struct nm_job *job;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool over;
	atomic_bool cancel;
	char phase[16];
};

static void *reporter_main(void *arg)
{
	struct reporter *rp = arg;
	struct nm_job *j = rp->job;
	nm_block_sigpipe();
	struct http_client c;
	bool have = nm_job_client(j, &c) == 0;
	pthread_mutex_lock(&rp->mu);
	while (!rp->over) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&rp->cv, &rp->mu, &ts);
		if (rp->over || !have)
			continue;
		pthread_mutex_unlock(&rp->mu);
		struct regclient_migration_report rep = {
		    .node = j->nm->name,
		    .phase = "transferring",
		    .bytes = (long long)atomic_load(&j->bytes),
		    .at_ms = -1,
		};
		char got[16] = "";
		long status = 0;
		struct vs_error err;
		/* One try a second, short: a slow registry must not slow the stream. */
		c.timeout_secs = 5;
		if (regclient_migration_report(&c, j->mig.id, &rep, NULL, got, &status, &err) < 0 &&
		    status == 409) {
			snprintf(rp->phase, sizeof(rp->phase), "%s", got);
			atomic_store(&rp->cancel, true);
		}
		pthread_mutex_lock(&rp->mu);
	}
	pthread_mutex_unlock(&rp->mu);
	if (have)
		http_client_free(&c);
	return NULL;
}

static bool put_cancelled(void *arg)
{
	struct reporter *rp = arg;
	return atomic_load(&rp->cancel) || atomic_load(&rp->job->nm->stop);
}

/* The target's answer on an upgraded transfer: one line of JSON once the
 * stream is in ({"status": 200, "phase": "committed"} or {"status": N,
 * "error": ...}). MIG_LOW_SPEED_SECS with no byte of the answer and none of
 * the stream's tail taken off the socket (a slow link still drains it), or a
 * migration given up, ends the wait as the PUT's limits do. 0: 200; else
 * err says why. */
static int read_answer(struct http_upgraded *u, struct reporter *rp, long *status,
		       struct vs_error *err)
{
	char buf[4096];
	size_t len = 0;
	uint64_t until = vs_now_ns() + MIG_LOW_SPEED_SECS * 1000000000ull;
	int unacked = -1; /* bytes of the stream the target has not taken yet */
	while (len < sizeof(buf) - 1 && !memchr(buf, '\n', len)) {
		ssize_t n = http_upgraded_recv(u, buf + len, sizeof(buf) - 1 - len, err);
		if (n == -EAGAIN) {
			if (put_cancelled(rp))
				return vs_error_set(err, ECANCELED,
						    "the registry says the migration is %s",
						    rp->phase[0] ? rp->phase : "given up");
			int q = 0;
			if (ioctl(http_upgraded_fd(u), SIOCOUTQ, &q) == 0 && q != unacked) {
				if (unacked >= 0 && q < unacked)
					until = vs_now_ns() + MIG_LOW_SPEED_SECS * 1000000000ull;
				unacked = q;
			}
			if (vs_now_ns() > until && unacked > 0)
				return vs_error_set(
				    err, ETIMEDOUT,
				    "transfer target: took none of the stream's last "
				    "%d bytes in %d s",
				    unacked, MIG_LOW_SPEED_SECS);
			if (vs_now_ns() > until)
				return vs_error_set(
				    err, ETIMEDOUT,
				    "transfer target: no answer %d s after the stream",
				    MIG_LOW_SPEED_SECS);
			struct pollfd pf = {.fd = http_upgraded_fd(u), .events = POLLIN};
			poll(&pf, 1, 1000);
			continue;
		}
		if (n < 0)
			return vs_error_wrap(err, "transfer target: its answer");
		if (n == 0)
			break;
		len += (size_t)n;
		until = vs_now_ns() + MIG_LOW_SPEED_SECS * 1000000000ull;
	}
	buf[len] = '\0';
	cleanup_json json_t *a = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	*status = (long)json_integer_value(json_object_get(a, "status"));
	if (*status == 200)
		return 0;
	const char *msg = json_string_value(json_object_get(a, "error"));
	if (!msg)
		return vs_error_set(err, EPROTO, "transfer target: no answer after the stream");
	return vs_error_set(err, *status == 507 ? ENOSPC : EPROTO, "%s", msg);
}

/*
 * Live and pre-copy over plain http: the stream on the connection itself
 * (docs/migration.md, "The stream"). GET /v1/transfers/ID with "Upgrade:
 * vslice-transfer"; a 503 (not open yet) is tried again, MIG_PUT_RETRY_COLD_MS
 * apart (nothing was dumped yet: the 101 comes before the dump starts); after
 * the 101 the relay splices the dump's pages into the socket (no copy on this
 * side: the PUT took one into libcurl's buffer and one into the socket) and
 * shuts it down; the target answers with one line. 0 or err as send_stream.
 */
static int send_upgraded(struct nm_job *j, struct http_client *tc, const char *path,
			 struct reporter *rp, struct sender *stats, struct vs_error *err)
{
	uint64_t until = vs_now_ns() + MIG_PUT_RETRY * 1000000000ull;
	struct http_upgraded *u = NULL;
	for (;;) {
		long status = 0;
		if (http_upgrade(tc, path, NM_XFER_PROTO, &u, &status, err) == 0)
			break;
		if (status == 503 && !put_cancelled(rp) && vs_now_ns() < until &&
		    nm_nap_ms(j->nm, MIG_PUT_RETRY_COLD_MS))
			continue;
		if (atomic_load(&rp->cancel))
			vs_error_set(err, ECANCELED, "the registry says the migration is %s",
				     rp->phase);
		return -1;
	}
	struct sender sd = {.job = j,
			    .fd = http_upgraded_fd(u),
			    .fault_armed = true,
			    .sock = true,
			    .cancelled = put_cancelled,
			    .cancel_arg = rp};
	live_send(&sd);
	int r = sd.rc;
	long status = 0;
	if (r == 0)
		r = read_answer(u, rp, &status, err);
	else if (atomic_load(&rp->cancel))
		vs_error_set(err, ECANCELED, "the registry says the migration is %s", rp->phase);
	else
		*err = sd.err;
	*stats = sd;
	http_upgraded_close(u); /* a stream cut short: the target reads its end */
	return r < 0 ? -1 : 0;
}

/*
 * Stream the stopped sliver to the target: slice_fs_send into a pipe (its
 * own thread), the pipe as the PUT's body. A 503 (the target has not heard
 * of the migration yet) is tried again, a second apart, for MIG_PUT_RETRY
 * s, each try with a fresh stream; the body waits for the target's "100
 * Continue" (http_put_stream), so that 503 arrives as a status and not as a
 * send failure on the connection the target closed. 0: the target answered 2xx (it says
 * committed); else err says why (the sender's error first: a stream that
 * broke off on this side makes the target's answer a consequence).
 */
static int send_stream(struct nm_job *j, struct reporter *rp, struct sender *stats,
		       struct vs_error *err)
{
	struct nodemgr *nm = j->nm;
	struct http_client tc;
	int r = http_client_init_peer(&tc, j->mig.url, j->mig.token, nm->ca_file, "transfer target",
				      err);
	if (r < 0)
		return r;
	cleanup_free char *path = nodeapi_transfer_path(j->mig.id);
	struct http_stream_opts so = {.low_speed_bytes = MIG_LOW_SPEED,
				      .low_speed_secs = MIG_LOW_SPEED_SECS,
				      .cancel = put_cancelled,
				      .arg = rp};
	if (mig_live(j) && !strncmp(j->mig.url, "http://", 7)) {
		r = send_upgraded(j, &tc, path, rp, stats, err);
		http_client_free(&tc);
		return r;
	}
	uint64_t until = vs_now_ns() + MIG_PUT_RETRY * 1000000000ull;
	bool fault_armed = true;
	for (;;) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0) {
			r = vs_error_sys(err, errno, "pipe");
			break;
		}
		fcntl(p[1], F_SETPIPE_SZ, MIG_PIPE_SIZE); /* fewer wake-ups; not needed */
		struct sender sd = {.job = j, .fd = p[1], .fault_armed = fault_armed};
		pthread_t t;
		if ((r = pthread_create(&t, NULL, sender_main, &sd)) != 0) {
			close(p[0]);
			close(p[1]);
			r = vs_error_sys(err, r, "starting the sender thread");
			break;
		}
		long status = 0;
		struct vs_error perr;
		r = http_put_stream(&tc, path, p[0], NULL, &so, &status, NULL, &perr);
		close(p[0]); /* a sender still writing gets EPIPE */
		pthread_join(t, NULL);
		fault_armed = sd.fault_armed;
		if (r == 0) {
			*stats = sd;
			break;
		}
		if (sd.frozen && status == 503) {
			/* the target read nothing: the next try dumps afresh */
			struct vs_error terr;
			if (slice_thaw(nm->root, j->r.slice, &terr) < 0)
				nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: thaw: %s", j->r.slice,
				       terr.msg);
			sd.frozen = false;
		}
		*stats = sd;
		/* A cold source is stopped while it waits for the target to open
		 * the transfer (downtime): retry soon; a retried live dump costs
		 * more (pre-copy arms the slice again), so that waits 1 s. */
		if (status == 503 && !put_cancelled(rp) && vs_now_ns() < until &&
		    nm_nap_ms(nm, mig_live(j) ? 1000 : MIG_PUT_RETRY_COLD_MS)) {
			atomic_store(&j->bytes, 0);
			continue;
		}
		if (sd.rc < 0 && sd.err.code != EPIPE && status != 503) {
			*err =
			    sd.err; /* this side broke off: the target's answer follows from it */
			vs_error_wrap(err, mig_live(j) ? "dumping the sliver"
						       : "reading the sliver's files");
		} else if (atomic_load(&rp->cancel))
			vs_error_set(err, ECANCELED, "the registry says the migration is %s",
				     rp->phase);
		else
			*err = perr;
		break;
	}
	http_client_free(&tc);
	return r;
}

/* Restart the source's sliver (rolled back) and make it ours again. */
static void out_roll_back(struct nm_job *j, const char *why)
{
	struct nodemgr *nm = j->nm;
	struct vs_error err;
	struct slice_state st;
	int r = slice_load(nm->root, j->r.slice, NULL, &st, &err);
	if (r == 0 && st.status == SLICE_FROZEN)
		r = slice_thaw(nm->root, j->r.slice, &err); /* live: it carries on */
	else if (r == 0 && st.status != SLICE_RUNNING)
		r = slice_start(nm->root, j->r.slice,
				&(struct slice_start_opts){.foreground = false}, &err);
	if (r < 0)
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: restarting after the aborted migration: %s", j->r.slice,
		       err.msg);
	j->r.phase = NODEMGR_CREATED;
	nm_record_save_or_warn(nm, &j->r);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s aborted (%s); restarted here",
	       j->r.slice, j->mig.id, why);
}

static void *out_main(void *arg)
{
	struct nm_job *j = arg;
	struct nodemgr *nm = j->nm;
	nm_block_sigpipe();
	struct http_client c;
	if (nm_job_client(j, &c) < 0) {
		j->retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
		nm_job_finish(j);
		return NULL;
	}
	char got[16] = "";
	/* Live and pre-copy: what the checkpointer would refuse, before
	 * anything stops; the abort's stats say so ("refused"), so slicectl
	 * can fall back to cold. */
	if (mig_live(j)) {
		struct vs_error cerr;
		if (live_check(j, &cerr) < 0) {
			char reason[VS_ERROR_MAX + 64];
			snprintf(reason, sizeof(reason), "cannot be checkpointed: %s", cerr.msg);
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", j->r.slice,
			       j->mig.id, reason);
			cleanup_json json_t *st = json_pack("{s:b}", "refused", 1);
			struct regclient_migration_report rep = {.node = nm->name,
								 .phase = "aborted",
								 .bytes = -1,
								 .at_ms = (long long)nm_now_ms(),
								 .reason = reason,
								 .stats = st};
			long status = 0;
			regclient_migration_report(&c, j->mig.id, &rep, NULL, got, &status, &cerr);
			j->retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
			goto out;
		}
	}
	/* 1: the registry must know before anything stops. */
	int rr = nm_job_report(&c, j, "transferring", -1, NULL, 5, got);
	if (rr != 0) {
		if (rr > 0)
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: migration %s is %s at the registry: not moving",
			       j->r.slice, j->mig.id, got);
		j->retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
		goto out;
	}
	nm_fault_point(nm, "migrate.out", 1);
	/* 2: the intent, before the sliver stops. */
	j->r.phase = NODEMGR_MIGRATING_OUT;
	snprintf(j->r.migration, sizeof(j->r.migration), "%s", j->mig.id);
	struct vs_error err;
	if (nm_record_save(nm, &j->r, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", j->r.slice, j->mig.id,
		       err.msg);
		nm_job_report(&c, j, "aborted", -1, "the source cannot save its record",
			      NM_MIG_PATIENCE, got);
		j->r.phase = NODEMGR_CREATED;
		goto out;
	}
	nm_fault_point(nm, "migrate.out", 2);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migrating to %s (%s): stopping it", j->r.slice,
	       j->mig.peer, j->mig.id);
	/* 3: cold: execution restarts on the target. Live and pre-copy: it
	 * runs on; the checkpoint freezes it (live_send). */
	if (!mig_live(j) && slice_stop(nm->root, j->r.slice, MIG_STOP_GRACE, &err) < 0)
		nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: stop: %s", j->r.slice, err.msg);
	nm_fault_point(nm, "migrate.out", 3);

	/* 4, 5: the stream, with a progress report a second beside it. */
	struct reporter rp = {.job = j};
	pthread_mutex_init(&rp.mu, NULL);
	pthread_cond_init(&rp.cv, NULL);
	pthread_t rt;
	bool reporting = pthread_create(&rt, NULL, reporter_main, &rp) == 0;
	uint64_t t0 = vs_now_ns();
	struct sender sent = {0};
	int sr = send_stream(j, &rp, &sent, &err);
	pthread_mutex_lock(&rp.mu);
	rp.over = true;
	pthread_cond_signal(&rp.cv);
	pthread_mutex_unlock(&rp.mu);
	if (reporting)
		pthread_join(rt, NULL);
	pthread_cond_destroy(&rp.cv);
	pthread_mutex_destroy(&rp.mu);
	nm_fault_point(nm, "migrate.out", 5);

	/* 6: the registry says which way. The target answers 2xx only after
	 * the commit; check it anyway: a copy is destroyed on the registry's
	 * word alone. */
	if (sr == 0) {
		cleanup_json json_t *m = NULL;
		long status = 0;
		struct vs_error gerr;
		const char *phase = "";
		if (regclient_migration_get(&c, j->mig.id, -1, 0, &m, NULL, &status, &gerr) == 0)
			phase = json_string_value(json_object_get(m, "phase"));
		if (phase && !strcmp(phase, "committed")) {
			double secs = (double)(vs_now_ns() - t0) / 1e9;
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: migrated to %s (%s): %llu bytes in %.2f s; removing it "
			       "here",
			       j->r.slice, j->mig.peer, j->mig.id,
			       (unsigned long long)atomic_load(&j->bytes), secs);
			nm_job_destroy_slice(j);
			nm_fault_point(nm, "migrate.out", 6);
			goto out;
		}
		/* Not committed by the registry's word (or no word): what the
		 * record says is settled by the registry below or, if it does not
		 * answer, by MIGRATE_RESOLVE later. */
		vs_error_set(&err, EPROTO, "the target answered, the registry says %s",
			     phase && *phase ? phase : "nothing");
	}
	char reason[VS_ERROR_MAX + 160];
	/* The registry names the reporter ("source n1: ..."). */
	snprintf(reason, sizeof(reason), "sending to %s: %s", j->mig.peer, err.msg);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", j->r.slice, j->mig.id, reason);
	rr = nm_job_report(&c, j, "aborted", (long long)atomic_load(&j->bytes), reason,
			   NM_MIG_PATIENCE, got);
	if (rr == 1 && !strcmp(got, "committed")) {
		/* The target has it and the registry moved it: roll forward. */
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s was committed after all; removing it here",
		       j->r.slice, j->mig.id);
		nm_job_destroy_slice(j);
	} else if (rr >= 0) {
		out_roll_back(j, reason);
	} else {
		/* No word from the registry: stay stopped; the record
		 * (migrating-out) has MIGRATE_RESOLVE ask again. */
		j->retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
	}
	nm_fault_point(nm, "migrate.out", 6);
out:
	http_client_free(&c);
	nm_job_finish(j);
	return NULL;
}

void nm_migrate_out(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	if (vs_now_ns() < s->mig_retry_ns)
		return;
	struct nm_job *j = nm_job_new(nm, NM_JOB_OUT, &a->mig, &s->r);
	j->state = NM_JOB_RUNNING;
	nm_job_push(nm, j);
	int r = pthread_create(&j->thread, NULL, out_main, j);
	if (r != 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: starting its thread: %s",
		       s->r.slice, a->mig.id, strerror(r));
		pthread_mutex_lock(&nm->mu);
		job_unlink_locked(nm, j);
		nm_job_put_locked(j);
		pthread_mutex_unlock(&nm->mu);
		s->mig_retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
		return;
	}
	j->thread_started = true;
	s->busy = true;
	nm_close_pidfd(s);
}

/* --- resolving a step a restart cut short (main thread) --------------- */

void nm_migrate_resolve(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	(void)a;
	if (vs_now_ns() < s->mig_retry_ns)
		return;
	const char *id = s->r.migration;
	const char *phase = "aborted", *reason = NULL;
	switch (s->r.phase) {
	case NODEMGR_MIGRATING_OUT:
		reason = "the source's node manager restarted during the migration";
		break;
	case NODEMGR_RECEIVING:
		reason = "the target's node manager restarted while receiving";
		break;
	case NODEMGR_RESTORED:
		phase = "restored"; /* again: the registry's answer says which way */
		break;
	default:
		return;
	}
	char got[16] = "";
	long status = 0;
	struct vs_error err;
	struct regclient_migration_report rep = {.node = nm->name,
						 .phase = phase,
						 .bytes = -1,
						 .at_ms = (long long)nm_now_ms(),
						 .reason = reason};
	int r = id[0] ? regclient_migration_report(&nm->hc, id, &rep, NULL, got, &status, &err)
		      : vs_error_set(&err, EINVAL, "the record names no migration");
	if (r < 0 && !(status == 409 && got[0])) {
		if (status == 404 || status == 403 || !id[0]) {
			/* The registry knows no such migration of ours: follow the
			 * assignment alone, as for a plain entry. */
			snprintf(got, sizeof(got), "%s",
				 s->r.phase == NODEMGR_MIGRATING_OUT ? "aborted" : "unknown");
		} else {
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: migration %s: report %s: %s (retrying later)",
			       s->r.slice, id, phase, err.msg);
			s->mig_retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
			return;
		}
	}
	bool committed = !strcmp(got, "committed");
	nm_log(nm, NODEMGR_LOG_INFO,
	       "sliver %s: migration %s was cut short (%s); the registry "
	       "says %s",
	       s->r.slice, id, nodemgr_phase_name(s->r.phase), got);
	nm->changed = true;
	if (s->r.phase == NODEMGR_MIGRATING_OUT && !committed) {
		struct slice_state st;
		int sr = slice_load(nm->root, s->r.slice, NULL, &st, &err);
		if (sr == 0 && st.status == SLICE_FROZEN)
			sr = slice_thaw(nm->root, s->r.slice, &err); /* live: it carries on */
		else if (sr == 0 && st.status != SLICE_RUNNING)
			sr = slice_start(nm->root, s->r.slice,
					 &(struct slice_start_opts){.foreground = false}, &err);
		if (sr < 0)
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: restarting: %s", s->r.slice,
			       err.msg);
		s->r.phase = NODEMGR_CREATED;
		s->last_state[0] = '\0';
		nm_record_save_or_warn(nm, &s->r);
		return;
	}
	if (s->r.phase == NODEMGR_RESTORED && committed) {
		/* Started already when a restart cut the step short after it. */
		struct slice_state st;
		int sr = slice_load(nm->root, s->r.slice, NULL, &st, &err);
		if (sr == 0 && st.status == SLICE_FROZEN)
			sr = slice_thaw(nm->root, s->r.slice, &err); /* live: held until now */
		else if (sr == 0 && st.status != SLICE_RUNNING)
			sr = slice_start(nm->root, s->r.slice,
					 &(struct slice_start_opts){.foreground = false}, &err);
		if (sr < 0) {
			s->r.phase = NODEMGR_FAILED;
			s->r.message = vs_xasprintf("start after the migration: %s", err.msg);
		} else {
			s->r.phase = NODEMGR_CREATED;
		}
		s->r.log_offset = 0;
		s->r.log_capped = false;
		s->r.results_done = false;
		s->last_state[0] = '\0';
		nm_record_save_or_warn(nm, &s->r);
		rep.phase = "started";
		rep.reason = NULL;
		rep.at_ms = (long long)nm_now_ms();
		regclient_migration_report(&nm->hc, id, &rep, NULL, got, &status, &err);
		return;
	}
	/* The source's sliver went to the target (committed), or the target's
	 * copy is not wanted (aborted, or never complete): it goes. */
	if (nm_destroy_slice(nm, s->r.slice, &s) == 0) {
		nm_record_remove(nm, s->r.slice);
		nm_sliver_drop(nm, s);
	}
}
