/*
 * nodemgr_int.h - what the files of the node manager (vslice-nodemgr) share:
 * the daemon's state and the calls they make into each other. Not an
 * interface: include/vslice/nodemgr.h is the module's contract.
 *
 * One concern per file:
 *   nodemgr.c            the daemon's life: nodemgr_new (locks, records,
 *                        cache), nodemgr_run (the main loop: wake-ups, the
 *                        slivers' PID 1s, heartbeat ticks), stop, free; the
 *                        log, the VSLICE_FAULT hook, the root/cgroup locks
 *   nodemgr_poll.c       the poll thread: register, long-poll the node's
 *                        assignments, cache each answer on disk, hand it to
 *                        the main loop; parsing an answer; the desired set
 *   nodemgr_records.c    sliver records (<root>/nodemgr/slivers/NAME.json,
 *                        the intent phases) and the main loop's sliver list
 *   nodemgr_reconcile.c  desired against actual: what is on disk, the pure
 *                        nodemgr_decide(), and the one switch that acts on it
 *   nodemgr_actions.c    what that switch calls: create, destroy, resume,
 *                        adopt, renew, fail, forget (intent record first)
 *   nodemgr_upload.c     the main loop's exchanges with the registry: the
 *                        heartbeat (status, new log bytes, results) and the
 *                        manifest fetch a create needs
 *   nodemgr_status.c     each sliver's state as reported, and the --listen
 *                        API (an httpd.h server): GET /v1/status, routing
 *   nodemgr_migrate.c    cold migration: the jobs (threads that run a
 *                        migration's long steps) and their outcome, the
 *                        source's side (MIGRATE_OUT), MIGRATE_RESOLVE
 *   nodemgr_migrate_in.c the target's side (MIGRATE_IN, the receiving job)
 *   nodemgr_xfer.c       the --listen API's PUT /v1/transfers/ID: the
 *                        transfer token check, one use, the body into a pipe
 *   nodemgr_api.c        the --listen API's /v1/slivers/NAME/... routes (remote
 *                        verbs) and nm_ticket_check, the registry's tickets
 * Requests to the registry are made in nodemgr_poll.c (the poll thread's own
 * client) and nodemgr_upload.c (nm->hc, the main thread's) and nowhere else,
 * each through regclient.h: no file here spells a registry path.
 *
 * Threads and what they may touch (struct nodemgr below):
 *   main thread (nodemgr_run): everything marked "main thread only"; records
 *     and slices are only ever changed here, so no lock guards them.
 *   poll thread (nm_poller_main): its own HTTP client; hands answers over in
 *     nm->answer under nm->mu, then nm_wake().
 *   --listen API threads (httpd.h's, one per connection): read
 *     nm->status_text, find and take an open transfer (nm->jobs) under
 *     nm->mu; a PUT that took one runs its receiving side (nodemgr_xfer.c).
 *   migration jobs (nodemgr_migrate.c): one thread per running migration,
 *     with its own HTTP client; while a job holds a sliver (nm_job_holds)
 *     the main loop neither reconciles nor reports it, and the job alone
 *     writes its record and touches its slice. Its outcome goes back under
 *     nm->mu (state DONE) and the main loop takes it (nm_jobs_reap).
 *   any thread, signal handlers: the atomics (stop, registered, heartbeat)
 *     and nm_wake().
 *
 * Adding a reconcile action (e.g. NODEMGR_MIGRATE_OUT / NODEMGR_MIGRATE_IN):
 *   1. a value in enum nodemgr_action (include/vslice/nodemgr.h), with a
 *      comment saying when it applies;
 *   2. the case of nodemgr_decide() (nodemgr_reconcile.c) that returns it,
 *      from its inputs alone - an input it lacks (say, the node a sliver is to
 *      move to) becomes a field of struct nodemgr_assignment or of the record,
 *      never a lookup inside the decision;
 *   3. its case in reconcile_one()'s switch (nodemgr_reconcile.c), one call
 *      to a function in nodemgr_actions.c, and its name in
 *      nodemgr_action_name(). Both switches have no default: the build
 *      (-Wswitch -Werror) fails until they name every action.
 * An action of several steps writes its intent to the record first (a new
 * enum nodemgr_phase, named in nodemgr_records.c, decided on in step 2) so
 * a crash rolls forward.
 */
#ifndef VSLICE_NODEMGR_INT_H
#define VSLICE_NODEMGR_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/http.h"
#include "vslice/json.h"
#include "vslice/netcfg.h"
#include "vslice/nodemgr.h"

struct httpd;
struct nm_job;

/* Where a node manager records its cgroup parent, below its root. */
#define CGROUP_PARENT_FILE "nodemgr/cgroup-parent"

struct nodemgr {
	struct nodemgr_opts o;
	char *registry, *name, *token, *root, *listen, *ca_file; /* copies */
	char **labels;
	char *dir, *slivers_dir, *cache_path, *origin;
	int wake_fd;		    /* eventfd: the poller and nodemgr_stop wake the main loop */
	int root_lock, cgroup_lock; /* flock'ed for nm's life; -1 when not held */
	char *cgroup_lock_path;	    /* removed (still locked) on the way out */
	const char *fault_op;	    /* VSLICE_FAULT (a test hook); NULL = none */
	unsigned fault_step;

	atomic_bool stop;
	atomic_bool registered;
	atomic_uint heartbeat; /* seconds */

	pthread_t poller;
	bool poller_started;
	pthread_mutex_t mu;
	json_t *answer;	  /* under mu: the newest successful answer not yet taken */
	bool poller_done; /* under mu */
	bool refused;	  /* under mu: the registry refuses our token for good (401/403) */
	struct vs_error refused_err; /* under mu: why, for nodemgr_run to return */
	char *status_text;	     /* under mu: what the local status API serves */
	struct httpd *status_api;
	char *url; /* what the node registers as its "url" (NULL: none); set before
		    * the poll thread starts */
	char *tls_cert_pem, *tls_key_pem;
	struct nm_job *jobs; /* under mu: migrations in progress (nodemgr_migrate.c) */
	/* under mu: transfers used and over (id, token digest), the newest
	 * 16, so a replay gets 409 rather than "not open (yet)" */
	struct {
		char id[NODEMGR_MIG_ID_MAX];
		char sha[VS_SHA256_HEX];
	} used[16];
	unsigned used_next;
	pthread_cond_t job_cv; /* under mu: a job changed state */

	/* main thread only */
	struct http_client hc;
	bool hc_ready;
	struct nodemgr_assignment *desired;
	size_t ndesired;
	bool have_desired;
	struct nm_sliver *slivers;
	size_t nslivers, cap;
	bool changed; /* a sliver was made, removed or failed: report at once */
	/* The overlay (issue 13): on when netcfg's node settings have one
	 * (--overlay-local/--overlay-vni); the newest answer's "peers" and
	 * whether netcfg has them yet (nodemgr_reconcile.c applies them). */
	struct netcfg_node net;
	bool overlay;
	struct netcfg_peer *peers;
	size_t npeers;
	bool peers_known, peers_applied;
	struct nm_fetch *fetches; /* image fetches in threads (nodemgr_images.c) */
};

/* A record plus what the main loop remembers to log changes once. */
struct nm_sliver {
	struct nodemgr_record r;
	char last_state[16];
	int last_code;
	bool upload_warned;
	bool end_seen;	       /* its PID 1 was found gone since last_state changed */
	int pidfd;	       /* of its PID 1 while it runs, -1 otherwise (main loop polls it) */
	bool busy;	       /* a migration job holds it: not reported, not watched */
	uint64_t mig_retry_ns; /* a migration step failed for now: not again before */
};

/* --- a migration in progress (nodemgr_migrate.c, nodemgr_xfer.c) --- */

enum nm_job_kind { NM_JOB_OUT, NM_JOB_IN };
enum nm_job_state {
	NM_JOB_OPEN,	/* in: the copy is made, the transfer waits for its PUT */
	NM_JOB_RUNNING, /* a thread works on it (out: from the start; in: from the PUT) */
	NM_JOB_DONE,	/* the thread is over; the main loop takes the outcome */
};

struct nm_job {
	struct nm_job *next; /* nm->jobs, under nm->mu */
	int refs;	     /* under nm->mu: nm->jobs' and a PUT's (nodemgr_xfer.c) */
	struct nodemgr *nm;
	enum nm_job_kind kind;
	enum nm_job_state state; /* under nm->mu */
	struct nodemgr_migration mig;
	struct nodemgr_record r; /* the sliver's record: the job's while it runs */
	pthread_t thread;
	bool thread_started;
	int in_fd; /* in: the pipe's read end slice_fs_receive reads (the job's) */
	_Atomic uint64_t bytes;
	/* The outcome (set before state DONE): */
	bool gone;		/* the slice is removed: drop the sliver */
	unsigned answer_status; /* in: the PUT's answer */
	char answer_msg[512];	/* in: its {"error"} (status >= 300) or phase */
	uint64_t retry_ns;	/* out: failed for now, try again after (vs_now_ns) */
};

/* --- nodemgr.c ---------------------------------------------------- */

/* One event to opts.log (a line; made printable). Any thread. */
void nm_log(struct nodemgr *nm, enum nodemgr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Wake the main loop. Any thread, async-signal-safe. */
void nm_wake(struct nodemgr *nm);
/* Sleep secs, a slice at a time, so a stop is seen; false if stopped. */
bool nm_nap(struct nodemgr *nm, unsigned secs);
/* The same in milliseconds (200 ms steps at most). */
bool nm_nap_ms(struct nodemgr *nm, unsigned ms);
/* The test hook (VSLICE_FAULT): SIGKILL ourselves right after step `step`
 * of op ("nodemgr.create", "nodemgr.destroy") when it is the one armed. */
void nm_fault_point(struct nodemgr *nm, const char *op, unsigned step);
/* migrate.flip:N armed: the offset of the byte to flip, else -1. */
long long nm_fault_flip_offset(struct nodemgr *nm);
/* A delay hook (migrate.delay, migrate.hold, nodemgr.fetch_delay) armed as
 * op: its milliseconds, else 0. */
unsigned nm_fault_delay_ms(struct nodemgr *nm, const char *op);

/* --- nodemgr_migrate.c: the live stream's relay ------------------- */

/* Passes a pipe on into another by splice (pages, no copy), holding the
 * last `hold` bytes back until nm_relay_flush (the live stream's tail: sent
 * once the source is frozen). */
struct nm_relay {
	size_t hold;
	int h[2];      /* the holding pipe */
	uint64_t sent; /* bytes passed on so far */
	/* out is a non-blocking socket: called with it when it is full (wait
	 * for room: 0 to try again), and with -1 before each piece (a check
	 * only); -errno gives the relay up. NULL: out blocks (a pipe). */
	int (*out_wait)(void *arg, int fd);
	void *wait_arg;
};
/* 0 or -errno (pipe2). */
int nm_relay_init(struct nm_relay *r, size_t hold);
/* Until the end of in: 0 (the held bytes still in r), or -errno (out's
 * reader gone: -EPIPE). progress (may be NULL) gets r->sent as it grows. */
int nm_relay_run(struct nm_relay *r, int in, int out, void (*progress)(void *, uint64_t),
		 void *arg);
/* The held bytes on into out: 0 or -errno. */
int nm_relay_flush(struct nm_relay *r, int out);
void nm_relay_close(struct nm_relay *r);

/* --- nodemgr_poll.c ----------------------------------------------- */

void *nm_poller_main(void *nm);
/* Replace the desired set with a successful answer's. Main thread. */
int nm_take_answer(struct nodemgr *nm, json_t *answer, struct vs_error *err);
/* The cached answer (<root>/nodemgr/assignments.json), if any, as the
 * desired set. */
int nm_cache_load(struct nodemgr *nm, struct vs_error *err);
struct nodemgr_assignment *nm_assignment_find(struct nodemgr *nm, const char *slice);

/* --- nodemgr_records.c -------------------------------------------- */

struct nm_sliver *nm_sliver_find(struct nodemgr *nm, const char *slice);
/* A new sliver with an empty record naming slice; pointers into
 * nm->slivers are good until the next add or drop. */
struct nm_sliver *nm_sliver_add(struct nodemgr *nm, const char *slice);
/* Forget s (memory only: see nm_record_remove). */
void nm_sliver_drop(struct nodemgr *nm, struct nm_sliver *s);
void nm_close_pidfd(struct nm_sliver *s);
/* Write r atomically to <root>/nodemgr/slivers/NAME.json. */
int nm_record_save(struct nodemgr *nm, const struct nodemgr_record *r, struct vs_error *err);
/* As nm_record_save, logging a failure (the next change saves again). */
void nm_record_save_or_warn(struct nodemgr *nm, const struct nodemgr_record *r);
void nm_record_remove(struct nodemgr *nm, const char *slice);
/* Every valid record into nm->slivers (bad ones are logged and skipped). */
int nm_records_load(struct nodemgr *nm, struct vs_error *err);

/* --- nodemgr_reconcile.c ------------------------------------------ */

/* Bring every slice name that may need work to what the desired set asks
 * (nothing without a desired set: an unknown set destroys nothing). */
void nm_reconcile(struct nodemgr *nm);

/* --- nodemgr_actions.c: one per reconcile action ------------------- *
 * a: the slice's assignment, s: its sliver (NULL = none; may be made or
 * dropped). Failures are logged and recorded, never returned: the next
 * reconcile decides again. */

/* Make the slice of assignment a from its resolved manifest mj (node
 * defaults applied, busybox built if it is the image missing), started or
 * not (a migration's copy). A failed start removes the slice again. */
int nm_make_slice(struct nodemgr *nm, const struct nodemgr_assignment *a, json_t *mj, bool start,
		  char *const *nodes, struct vs_error *err);
/* nodemgr_images.c: make image present here (busybox built, an image the
 * registry holds fetched, its sha256 checked, imported; else a local
 * image of that name) and put the local image's name to use in local.
 * wait false: a fetch runs in a thread of its own and this answers
 * -EINPROGRESS (kind VS_EK_BUSY) until it is over (the main loop is woken
 * then); wait true: fetched here, unless a thread fetches it (-EBUSY). */
int nm_image_ensure(struct nodemgr *nm, const char *image, bool wait, char local[64],
		    struct vs_error *err);
/* Take the background fetches that are over: true when one ended since the
 * last call (its sliver is made by the next reconcile). */
bool nm_images_reap(struct nodemgr *nm);
/* Leave the fetches still running to the process exit (nodemgr_free). */
void nm_images_free(struct nodemgr *nm);
/* The registry's "nodes" of a slice object (the nodes holding its slivers,
 * the sliver's peers) as a NULL-terminated list; NULL when absent. */
char **nm_slice_nodes(json_t *slice);
/* Remove slice, intent first (record "destroying"; *sp made if NULL);
 * the record stays: the caller removes it. < 0: logged, try again later. */
int nm_destroy_slice(struct nodemgr *nm, const char *slice, struct nm_sliver **sp);

void nm_create(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_recreate(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_resume(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_adopt(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_renew(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
/* Record the assignment as failed, why in one line (printf-like, at most
 * 255 bytes); nothing on disk but the record is touched. */
void nm_fail(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Remove slice (intent first), then its record. */
void nm_destroy(struct nodemgr *nm, const char *slice, struct nm_sliver *s);
/* Drop the record of a slice that is gone. */
void nm_forget(struct nodemgr *nm, const char *slice, struct nm_sliver *s);

/* --- nodemgr_migrate.c: the migration actions and jobs -------------- */

void nm_migrate_out(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_migrate_in(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s);
void nm_migrate_resolve(struct nodemgr *nm, const struct nodemgr_assignment *a,
			struct nm_sliver *s);
/* Does a job hold slice (main thread)? An open transfer whose migration a
 * no longer asks for (aborted, or another id) is dropped first. */
bool nm_job_holds(struct nodemgr *nm, const char *slice, const struct nodemgr_assignment *a);
/* Take the outcome of every job that is over (main thread). */
void nm_jobs_reap(struct nodemgr *nm);
/* Jobs still running (any thread): nodemgr_free must then leave nm. */
bool nm_jobs_running(struct nodemgr *nm);
/* Shared by the two sides' jobs (nodemgr_migrate.c, nodemgr_migrate_in.c). */
#define NM_MIG_RETRY_NS 2000000000ull /* a step the registry did not answer: again after */
#define NM_MIG_PATIENCE 30	      /* s a job retries a report before leaving it to RESOLVE */
uint64_t nm_now_ms(void);	      /* unix ms */
void nm_block_sigpipe(void);
/* A job for r's sliver (copied) and migration mig, one reference (nm->jobs'). */
struct nm_job *nm_job_new(struct nodemgr *nm, enum nm_job_kind kind,
			  const struct nodemgr_migration *mig, const struct nodemgr_record *r);
void nm_job_push(struct nodemgr *nm, struct nm_job *j);
/* The job's thread is over: state DONE, the main loop woken. */
void nm_job_finish(struct nm_job *j);
/* Its own registry client (logged when it cannot be made). */
int nm_job_client(struct nm_job *j, struct http_client *c);
/* Report phase of j's migration until the registry answers: 0 taken (*got:
 * the phase it is in now), 1 refused (409; *got: its phase), -1 no answer
 * within patience s (or stopping). */
int nm_job_report(struct http_client *c, struct nm_job *j, const char *phase, long long bytes,
		  const char *reason, unsigned patience, char got[16]);
/* Remove j's slice, intent first, then its record (j->gone). */
void nm_job_destroy_slice(struct nm_job *j);
/* Drop a reference to j (freed with the last). Expects nm->mu. */
void nm_job_put_locked(struct nm_job *j);
/* Free every job (none running: nodemgr_free). */
void nm_jobs_free(struct nodemgr *nm);
/* The receiving side of a PUT that took job (nodemgr_xfer.c, on the
 * connection's thread): start the job's thread, reading job->in_fd. */
int nm_job_start_receive(struct nm_job *job, struct vs_error *err);

/* --- nodemgr_xfer.c: PUT /v1/transfers/ID --------------------------- */

struct httpd_request;
struct httpd_answer;
/* Is this request the transfer endpoint's (method aside)? */
/* The protocol of an upgraded transfer (live and pre-copy over plain http):
 * after the 101 the source sends the stream and shuts its side down; the
 * target answers with one line of JSON (nodemgr_xfer.c). */
#define NM_XFER_PROTO "vslice-transfer"
bool nm_xfer_route(const char *url);
void nm_xfer_begin(struct httpd_request *req, struct httpd_answer *a);
int nm_xfer_data(struct httpd_request *req, const char *buf, size_t len);
void nm_xfer_handle(struct httpd_request *req, struct httpd_answer *a);
void nm_xfer_done(struct httpd_request *req, bool completed);

/* --- nodemgr_api.c: /v1/slivers/NAME/... (remote verbs) ------------ */

/* Is this request one for a sliver route (method aside)? */
bool nm_api_route(const char *url);
/* Route it: ticket check, then the verb (stats, freeze, thaw, logs; exec
 * and files: their own files). On the connection's thread. */
void nm_api_handle(struct httpd_request *req, struct httpd_answer *a);
/* Redeems the request's ticket for VERB on slice NAME; fills *status and an
 * error message on refusal (401 no/malformed ticket, 403 refused for any
 * reason, 404 no such sliver here, 503 registry unreachable). Blocks
 * (thread per connection): call from a hook only. */
int nm_ticket_check(struct nodemgr *nm, const struct httpd_request *req, const char *name,
		    const char *verb, unsigned *status, struct vs_error *err);

/* --- nodemgr_files.c: GET|PUT /v1/slivers/NAME/files (slicectl cp) --- */

/* Is this request the files route's (method aside)? */
bool nm_files_route(const char *url);
/* PUT: ticket and path checked, the copy started, the body streamed to it. */
void nm_files_begin(struct httpd_request *req, struct httpd_answer *a);
int nm_files_data(struct httpd_request *req, const char *buf, size_t len);
/* From nm_api_handle: GET streams the tar; PUT answers once it is in place. */
void nm_files_handle(struct httpd_request *req, struct httpd_answer *a, const char *name);
void nm_files_done(struct httpd_request *req, bool completed);
/* --- nodemgr_exec.c: GET /v1/slivers/NAME/exec (remote exec, shell) --- */

/* The route's handler (nodemgr_api.c routes to it, on the connection's
 * thread): the ticket (verb exec, or shell with ?shell=1), then a 101 to
 * EXEC_PROTO and the command's stream on a thread of its own. */
void nm_exec_handle(struct httpd_request *req, const char *name, struct httpd_answer *a);

/* --- nodemgr_upload.c --------------------------------------------- */

/* States, new log bytes, the status report, then results of exited
 * slivers (only while registered). */
void nm_heartbeat(struct nodemgr *nm);
/* GET the slice object for its manifest (*out: the whole object). */
int nm_fetch_manifest(struct nodemgr *nm, const char *slice, json_t **out, struct vs_error *err);

/* --- nodemgr_status.c --------------------------------------------- */

/* Every sliver's status now (a new array; exited[i]: slivers[i] has
 * exited), logging changes; also what the status API serves next. */
json_t *nm_collect_status(struct nodemgr *nm, bool exited[]);
/* Listen on opts.listen and serve GET /v1/status from a thread of its own. */
int nm_status_api_start(struct nodemgr *nm, struct vs_error *err);
void nm_status_api_stop(struct nodemgr *nm);

#endif
