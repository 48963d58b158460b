/*
 * nodemgr.c - vslice-nodemgr: the node side of docs/cluster-api.md.
 *
 * Two threads, each with its own HTTP client:
 *   poller: registers the node (retrying with backoff, 1 s doubling to 30 s,
 *     while the registry is unreachable), then long-polls the node's
 *     assignments; every successful answer is cached atomically at
 *     <root>/nodemgr/assignments.json and handed to the main loop.
 *   main: reconciles desired (assignments) with actual (slices under the
 *     root) on every new answer and every heartbeat; each heartbeat it also
 *     reports the slivers' states, uploads new log bytes and, for slivers
 *     that exited, their result files.
 *
 * The desired set only ever comes from a successful answer or the cache: an
 * unreachable registry never looks like "nothing assigned", so a partition
 * destroys nothing. Slivers never depend on this process (they are detached
 * slices); stopping it stops polling and reporting, nothing else.
 *
 * Ownership of slices: a record in <root>/nodemgr/slivers/NAME.json, written
 * before the slice is created, plus the origin experiment_create recorded
 * ("registry URL", node = ours). A slice without both is never touched -
 * except the one a record's intent ("creating", "destroying") explains: the
 * half-made or half-removed slice a SIGKILL left (nodemgr_decide).
 *
 * Steps of a create, numbered as the test hook VSLICE_FAULT=nodemgr.create:N
 * counts them (it SIGKILLs the process right after step N):
 *   1 record "creating" saved    2 slice made (dir, id range, cgroup, spec)
 *   3 files placed               4 experiment.json written (the slice is ours)
 *   5 slice started              6 record "created" saved
 * and of a destroy (nodemgr.destroy:N):
 *   1 record "destroying" saved  2 slice removed   3 record removed
 *
 * One node manager per root and per cgroup parent: both are flock'ed for
 * the daemon's life (nodemgr_new), so two nodes on one machine never share
 * slices, records or a slice's cgroup.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vslice/experiment.h"
#include "vslice/http.h"
#include "vslice/image.h"
#include "vslice/manifest.h"
#include "vslice/netaddr.h"
#include "vslice/nodemgr.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

static void json_decref_p(json_t **j)
{
	if (*j)
		json_decref(*j);
}
#define cleanup_json __attribute__((cleanup(json_decref_p)))

/* ------------------------------------------------------------------ */
/* pure parts                                                          */

bool nodemgr_node_name_valid(const char *s)
{
	return vs_node_name_valid(s) && strlen(s) < NODEMGR_NODE_NAME_MAX;
}

static void manifest_hash(json_t *manifest, char out[VS_SHA256_HEX])
{
	cleanup_free char *text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		abort(); /* only allocation fails here */
	vs_sha256_buf(text, strlen(text), out);
}

void nodemgr_assignments_free(struct nodemgr_assignment *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].manifest)
			json_decref(a[i].manifest);
	free(a);
}

int nodemgr_assignments_parse(json_t *answer, struct nodemgr_assignment **out, size_t *n,
			      long long *index, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	if (index)
		*index = -1;
	if (!json_is_object(answer))
		return vs_error_set(err, EINVAL, "assignments: not a JSON object");
	json_t *slivers = json_object_get(answer, "slivers");
	if (!json_is_array(slivers))
		return vs_error_set(err, EINVAL, "assignments: .slivers: not an array");
	json_t *ix = json_object_get(answer, "index");
	if (index && json_is_integer(ix))
		*index = json_integer_value(ix);
	size_t cnt = json_array_size(slivers), k = 0;
	struct nodemgr_assignment *v = vs_xcalloc(cnt ? cnt : 1, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		json_t *e = json_array_get(slivers, i);
		const char *slice = json_string_value(json_object_get(e, "slice"));
		if (!slice || !vs_name_valid(slice))
			continue;
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = !strcmp(v[j].slice, slice);
		if (dup)
			continue;
		struct nodemgr_assignment *a = &v[k++];
		snprintf(a->slice, sizeof(a->slice), "%s", slice);
		json_t *m = json_object_get(e, "manifest");
		const char *sha = json_string_value(json_object_get(e, "manifest_sha256"));
		if (sha && strlen(sha) == 64 && strspn(sha, "0123456789abcdef") == 64) {
			/* The registry's digest; the manifest is fetched when needed. */
			snprintf(a->sha256, sizeof(a->sha256), "%s", sha);
		} else if (json_is_object(m)) {
			a->manifest = json_incref(m);
			manifest_hash(m, a->sha256);
		}
		json_t *ex = json_object_get(e, "expires");
		a->expires = json_is_integer(ex) ? json_integer_value(ex) : 0;
	}
	*out = v;
	*n = k;
	return 0;
}

static const char *phase_name(enum nodemgr_phase p)
{
	switch (p) {
	case NODEMGR_CREATING:
		return "creating";
	case NODEMGR_CREATED:
		return "created";
	case NODEMGR_FAILED:
		return "failed";
	case NODEMGR_DESTROYING:
		return "destroying";
	}
	return "?";
}

json_t *nodemgr_record_to_json(const struct nodemgr_record *r)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:b, s:b}", "version", 1,
			 "slice", r->slice, "phase", phase_name(r->phase), "manifest_sha256",
			 r->sha256, "expires", (json_int_t)r->expires, "message",
			 r->message ? r->message : "", "created", (json_int_t)r->created,
			 "log_offset", (json_int_t)r->log_offset, "log_capped", r->log_capped,
			 "results_uploaded", r->results_done);
}

int nodemgr_record_from_json(json_t *j, struct nodemgr_record *r, struct vs_error *err)
{
	memset(r, 0, sizeof(*r));
	const char *slice, *phase, *sha, *msg;
	json_int_t expires, created, off;
	int capped, done;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT,
			   "{s:i, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:b, s:b}", "version",
			   &(int){0}, "slice", &slice, "phase", &phase, "manifest_sha256", &sha,
			   "expires", &expires, "message", &msg, "created", &created, "log_offset",
			   &off, "log_capped", &capped, "results_uploaded", &done) < 0)
		return vs_error_set(err, EINVAL, "%s", je.text);
	if (!vs_name_valid(slice))
		return vs_error_set(err, EINVAL, ".slice: not a slice name");
	if (strlen(sha) >= VS_SHA256_HEX || off < 0)
		return vs_error_set(err, EINVAL, ".manifest_sha256/.log_offset: out of range");
	if (!strcmp(phase, "creating"))
		r->phase = NODEMGR_CREATING;
	else if (!strcmp(phase, "created"))
		r->phase = NODEMGR_CREATED;
	else if (!strcmp(phase, "failed"))
		r->phase = NODEMGR_FAILED;
	else if (!strcmp(phase, "destroying"))
		r->phase = NODEMGR_DESTROYING;
	else
		return vs_error_set(
		    err, EINVAL, ".phase: \"%s\" is not creating/created/failed/destroying", phase);
	snprintf(r->slice, sizeof(r->slice), "%s", slice);
	snprintf(r->sha256, sizeof(r->sha256), "%s", sha);
	r->expires = expires;
	r->message = msg[0] ? vs_xstrdup(msg) : NULL;
	r->created = created;
	r->log_offset = (uint64_t)off;
	r->log_capped = capped;
	r->results_done = done;
	return 0;
}

void nodemgr_record_free(struct nodemgr_record *r)
{
	free(r->message);
	r->message = NULL;
}

enum nodemgr_action nodemgr_decide(const struct nodemgr_assignment *a,
				   const struct nodemgr_record *r, enum nodemgr_local local)
{
	/* PARTIAL comes only with an intent record (classify); without one it
	 * would be a slice nobody explains, and those are never touched. */
	bool intent = r && (r->phase == NODEMGR_CREATING || r->phase == NODEMGR_DESTROYING);
	if (local == NODEMGR_LOCAL_PARTIAL && !intent)
		local = NODEMGR_LOCAL_FOREIGN;
	if (!a) {
		if (local == NODEMGR_LOCAL_OURS || local == NODEMGR_LOCAL_PARTIAL)
			return NODEMGR_DESTROY; /* also rolls back a create, finishes a destroy */
		return r ? NODEMGR_FORGET : NODEMGR_NOTHING;
	}
	if (r && r->phase == NODEMGR_FAILED) {
		/* Retry only when the assignment changed (deleted and re-created,
		 * or different): never in a loop. */
		if (!strcmp(r->sha256, a->sha256) && r->expires == a->expires)
			return NODEMGR_KEEP;
		if (local == NODEMGR_LOCAL_OURS)
			return NODEMGR_RECREATE;
		r = NULL;
	}
	if (!r) {
		switch (local) {
		case NODEMGR_LOCAL_NONE:
			return NODEMGR_CREATE;
		case NODEMGR_LOCAL_OURS:
			/* Ours without a record (bookkeeping lost): take it as it is. */
			return NODEMGR_ADOPT;
		case NODEMGR_LOCAL_FOREIGN:
		case NODEMGR_LOCAL_PARTIAL:
			return NODEMGR_CONFLICT;
		}
	}
	switch (r->phase) {
	case NODEMGR_DESTROYING:
		/* A destroy (or the first half of a re-create) was cut short:
		 * finish it, then make the sliver the assignment asks for. */
		if (local == NODEMGR_LOCAL_FOREIGN)
			return NODEMGR_CONFLICT;
		return local == NODEMGR_LOCAL_NONE ? NODEMGR_CREATE : NODEMGR_RECREATE;
	case NODEMGR_CREATING:
		switch (local) {
		case NODEMGR_LOCAL_NONE:
			return NODEMGR_CREATE;
		case NODEMGR_LOCAL_FOREIGN:
			return NODEMGR_CONFLICT;
		case NODEMGR_LOCAL_PARTIAL:
			return NODEMGR_RECREATE; /* half made: remove it, make it again */
		case NODEMGR_LOCAL_OURS:
			/* Complete (experiment.json is written last): finish the
			 * create rather than run the experiment twice. */
			return strcmp(r->sha256, a->sha256) ? NODEMGR_RECREATE : NODEMGR_RESUME;
		}
		break;
	case NODEMGR_CREATED:
	case NODEMGR_FAILED:
		break;
	}
	/* created */
	if (local != NODEMGR_LOCAL_OURS)
		return NODEMGR_VANISHED;
	return strcmp(r->sha256, a->sha256) ? NODEMGR_RECREATE : NODEMGR_KEEP;
}

const char *nodemgr_action_name(enum nodemgr_action a)
{
	static const char *const names[] = {
	    [NODEMGR_NOTHING] = "nothing",   [NODEMGR_KEEP] = "keep",
	    [NODEMGR_CREATE] = "create",     [NODEMGR_RECREATE] = "recreate",
	    [NODEMGR_ADOPT] = "adopt",	     [NODEMGR_CONFLICT] = "conflict",
	    [NODEMGR_VANISHED] = "vanished", [NODEMGR_DESTROY] = "destroy",
	    [NODEMGR_FORGET] = "forget",     [NODEMGR_RESUME] = "resume",
	};
	return (unsigned)a < VS_ARRAY_SIZE(names) ? names[a] : "?";
}

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

unsigned nodemgr_apply_defaults(struct manifest *m, uint64_t memory, uint64_t pids)
{
	unsigned applied = 0;
	if (!m->memory_bytes && memory) {
		m->memory_bytes = memory;
		applied |= NODEMGR_DEFAULTED_MEMORY;
	}
	if (!m->pids_max && pids) {
		m->pids_max = pids;
		applied |= NODEMGR_DEFAULTED_PIDS;
	}
	return applied;
}

int nodemgr_fault_parse(const char *value, const char **op, unsigned *step, struct vs_error *err)
{
	static const char *const ops[] = {"nodemgr.create", "nodemgr.destroy"};
	*op = NULL;
	*step = 0;
	if (!value || strncmp(value, "nodemgr.", 8))
		return 0; /* unset, or another component's hook */
	const char *colon = strchr(value, ':');
	for (size_t i = 0; colon && i < VS_ARRAY_SIZE(ops); i++) {
		if (strlen(ops[i]) != (size_t)(colon - value) ||
		    strncmp(value, ops[i], strlen(ops[i])))
			continue;
		char *end;
		errno = 0;
		unsigned long n = strtoul(colon + 1, &end, 10);
		if (colon[1] < '0' || colon[1] > '9' || errno || *end || n == 0 || n > 100)
			break;
		*op = ops[i];
		*step = (unsigned)n;
		return 0;
	}
	return vs_error_set(err, EINVAL,
			    "VSLICE_FAULT \"%s\": use nodemgr.create:N or nodemgr.destroy:N "
			    "(N >= 1; a test hook)",
			    value);
}

/* The number right after the last occurrence of key (digits, after
 * non-digits up to the first digit). */
static long long number_after(const char *msg, const char *key, bool adjacent)
{
	const char *p = NULL;
	for (const char *q = msg; (q = strstr(q, key)); q++)
		p = q + strlen(key);
	if (!p)
		return -1;
	while (!adjacent && *p && (*p < '0' || *p > '9'))
		p++;
	if (*p < '0' || *p > '9')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	return errno ? -1 : v;
}

long long nodemgr_conflict_size(const char *msg)
{
	/* vslice-registry: "log of sliver S/N: offset 0, the log has 120 bytes" */
	long long v = number_after(msg, " has ", true);
	return v >= 0 ? v : number_after(msg, "size", false);
}

/* ------------------------------------------------------------------ */
/* the daemon                                                          */

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
	json_t *answer;	   /* under mu: the newest successful answer not yet taken */
	bool poller_done;  /* under mu */
	char *status_text; /* under mu: what the local status API serves */
	struct MHD_Daemon *status_api;

	/* main thread only */
	struct http_client hc;
	bool hc_ready;
	struct nodemgr_assignment *desired;
	size_t ndesired;
	bool have_desired;
	struct nm_sliver *slivers;
	size_t nslivers, cap;
	bool changed; /* a sliver was made, removed or failed: report at once */
};

/* A record plus what the main loop remembers to log changes once. */
struct nm_sliver {
	struct nodemgr_record r;
	char last_state[16];
	int last_code;
	bool upload_warned;
	bool end_seen; /* its PID 1 was found gone since last_state changed */
	int pidfd;     /* of its PID 1 while it runs, -1 otherwise (main loop polls it) */
};

static void close_pidfd(struct nm_sliver *s)
{
	if (s->pidfd >= 0)
		close(s->pidfd);
	s->pidfd = -1;
}

static void nm_log(struct nodemgr *nm, enum nodemgr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nm_log(struct nodemgr *nm, enum nodemgr_log_level level, const char *fmt, ...)
{
	if (!nm->o.log || (level == NODEMGR_LOG_DEBUG && !nm->o.verbose))
		return;
	char buf[2048], shown[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nm->o.log(nm->o.log_arg, level, vs_printable(buf, shown, sizeof(shown)));
}

static void wake(struct nodemgr *nm)
{
	uint64_t one = 1;
	ssize_t r = write(nm->wake_fd, &one, sizeof(one));
	(void)r;
}

void nodemgr_stop(struct nodemgr *nm)
{
	atomic_store(&nm->stop, true);
	wake(nm);
}

/* Sleep secs, a slice at a time, so a stop is seen; false if stopped. */
static bool nap(struct nodemgr *nm, unsigned secs)
{
	for (unsigned i = 0; i < secs * 5; i++) {
		if (atomic_load(&nm->stop))
			return false;
		nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
	}
	return !atomic_load(&nm->stop);
}

/* The test hook (VSLICE_FAULT): die at once, as a power cut or the OOM
 * killer would, right after step `step` of op. */
static void fault_point(struct nodemgr *nm, const char *op, unsigned step)
{
	if (!nm->fault_op || strcmp(nm->fault_op, op) || nm->fault_step != step)
		return;
	nm_log(nm, NODEMGR_LOG_INFO, "VSLICE_FAULT: SIGKILL after step %u of %s", step, op);
	kill(getpid(), SIGKILL);
}

/* --- one node manager per root and per cgroup parent --------------- */

/*
 * flock path for nm's life and write who holds it into it; a lock another
 * process holds: -EBUSY (kind busy), err says who ("what" names the object).
 * The file may be unlinked by its holder on the way out (the cgroup lock
 * is): a lock taken on a file no longer at path is let go and taken again.
 */
static int hold_lock(struct nodemgr *nm, const char *path, const char *what, int *out,
		     struct vs_error *err)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: lock %s", what, path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK)
				return vs_error_sys(err, errno, "%s: lock %s", what, path);
			char who[256] = "", shown[256];
			ssize_t n = pread(fd, who, sizeof(who) - 1, 0);
			who[n > 0 ? n : 0] = '\0';
			who[strcspn(who, "\n")] = '\0';
			vs_error_set(err, EBUSY, "%s: another vslice-nodemgr holds it (%s)", what,
				     who[0] ? vs_printable(who, shown, sizeof(shown)) : path);
			return vs_error_kind(err, VS_EK_BUSY);
		}
		struct stat held, now;
		if (fstat(fd, &held) < 0)
			return vs_error_sys(err, errno, "%s: stat %s", what, path);
		if (stat(path, &now) < 0 || now.st_ino != held.st_ino || now.st_dev != held.st_dev)
			continue; /* unlinked by the holder we waited for: lock the new one */
		cleanup_free char *me =
		    vs_xasprintf("pid %ld, node %s, root %s\n", (long)getpid(), nm->name, nm->root);
		if (ftruncate(fd, 0) < 0 || pwrite(fd, me, strlen(me), 0) < 0)
			return vs_error_sys(err, errno, "%s: write %s", what, path);
		*out = steal_fd(&fd);
		return 0;
	}
	return vs_error_set(err, EAGAIN, "%s: lock %s: replaced again and again", what, path);
}

/*
 * Two node managers with one cgroup parent would put their slivers of one
 * slice into one cgroup (shared limits and freezer; the second fails). The
 * parent is what cgroup_open will use ($VSLICE_CGROUP_ROOT and
 * $VSLICE_CGROUP_PARENT, defaults /sys/fs/cgroup and vslice); the lock is a
 * machine-wide file named after it, under NODEMGR_RUN_DIR (tmpfs: gone at
 * boot, like the cgroups). A second node manager on one machine needs a
 * VSLICE_CGROUP_PARENT of its own.
 */
#define NODEMGR_RUN_DIR "/run/vslice/nodemgr"
static int lock_cgroup_parent(struct nodemgr *nm, struct vs_error *err)
{
	const char *croot = getenv("VSLICE_CGROUP_ROOT");
	const char *parent = getenv("VSLICE_CGROUP_PARENT");
	if (!croot || !*croot)
		croot = "/sys/fs/cgroup";
	if (!parent || !*parent)
		parent = "vslice";
	while (*parent == '/')
		parent++;
	size_t plen = strlen(parent), clen = strlen(croot);
	while (plen > 0 && parent[plen - 1] == '/')
		plen--;
	while (clen > 1 && croot[clen - 1] == '/')
		clen--;
	cleanup_free char *key = vs_xasprintf("%.*s\n%.*s", (int)clen, croot, (int)plen, parent);
	char sha[VS_SHA256_HEX];
	vs_sha256_buf(key, strlen(key), sha);
	int r = vs_mkdir_p(NODEMGR_RUN_DIR, 0700, err);
	if (r < 0)
		return r;
	cleanup_free char *path = vs_xasprintf("%s/cgroup-%.16s.lock", NODEMGR_RUN_DIR, sha);
	cleanup_free char *what =
	    vs_xasprintf("cgroup parent %.*s/%.*s", (int)clen, croot, (int)plen, parent);
	r = hold_lock(nm, path, what, &nm->cgroup_lock, err);
	if (r == 0)
		nm->cgroup_lock_path = steal_pointer(&path);
	if (r == -EBUSY) {
		size_t l = strlen(err->msg);
		snprintf(err->msg + l, sizeof(err->msg) - l,
			 "; give each node manager on a machine its own VSLICE_CGROUP_PARENT");
	}
	return r;
}

static int lock_root(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_free char *path = vs_xasprintf("%s/lock", nm->dir);
	cleanup_free char *what = vs_xasprintf("root %s", nm->root);
	return hold_lock(nm, path, what, &nm->root_lock, err);
}

/* --- records ------------------------------------------------------ */

static struct nm_sliver *find_sliver(struct nodemgr *nm, const char *slice)
{
	for (size_t i = 0; i < nm->nslivers; i++)
		if (!strcmp(nm->slivers[i].r.slice, slice))
			return &nm->slivers[i];
	return NULL;
}

static struct nm_sliver *add_sliver(struct nodemgr *nm, const char *slice)
{
	if (nm->nslivers == nm->cap) {
		nm->cap = nm->cap ? 2 * nm->cap : 16;
		struct nm_sliver *v = realloc(nm->slivers, nm->cap * sizeof(*v));
		if (!v)
			abort();
		nm->slivers = v;
	}
	struct nm_sliver *s = &nm->slivers[nm->nslivers++];
	memset(s, 0, sizeof(*s));
	s->pidfd = -1;
	snprintf(s->r.slice, sizeof(s->r.slice), "%s", slice);
	return s;
}

static void drop_sliver(struct nodemgr *nm, struct nm_sliver *s)
{
	close_pidfd(s);
	nodemgr_record_free(&s->r);
	size_t i = (size_t)(s - nm->slivers);
	memmove(&nm->slivers[i], &nm->slivers[i + 1], (nm->nslivers - i - 1) * sizeof(*s));
	nm->nslivers--;
}

static int save_record(struct nodemgr *nm, const struct nodemgr_record *r, struct vs_error *err)
{
	cleanup_json json_t *j = nodemgr_record_to_json(r);
	cleanup_free char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return vs_error_set(err, ENOMEM, "sliver %s: cannot encode its record", r->slice);
	cleanup_free char *p = vs_xasprintf("%s/%s.json", nm->slivers_dir, r->slice);
	return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

/* Save, logging a failure (the next change saves again). */
static void save_or_warn(struct nodemgr *nm, const struct nodemgr_record *r)
{
	struct vs_error err;
	if (save_record(nm, r, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: saving its record: %s", r->slice, err.msg);
}

static void remove_record(struct nodemgr *nm, const char *slice)
{
	cleanup_free char *p = vs_xasprintf("%s/%s.json", nm->slivers_dir, slice);
	if (unlink(p) < 0 && errno != ENOENT)
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: removing %s: %s", slice, p,
		       strerror(errno));
}

static int load_records(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_closedir DIR *d = opendir(nm->slivers_dir);
	if (!d)
		return vs_error_sys(err, errno, "%s", nm->slivers_dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		cleanup_free char *p = vs_xasprintf("%s/%s", nm->slivers_dir, de->d_name);
		cleanup_free char *text = NULL;
		struct vs_error e;
		json_error_t je;
		if (vs_read_file(p, 1 << 20, &text, NULL, &e) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: %s", p, e.msg);
			continue;
		}
		cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
		struct nodemgr_record r;
		if (!j || nodemgr_record_from_json(j, &r, &e) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: %s", p,
			       j ? e.msg : je.text);
			continue;
		}
		if (strlen(r.slice) + 5 != len || strncmp(r.slice, de->d_name, len - 5) ||
		    find_sliver(nm, r.slice)) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: names another slice", p);
			nodemgr_record_free(&r);
			continue;
		}
		struct nm_sliver *s = add_sliver(nm, r.slice);
		s->r = r;
	}
	return 0;
}

/* --- assignments -------------------------------------------------- */

/* Replace the desired set with answer's (parsed already by the caller). */
static int take_answer(struct nodemgr *nm, json_t *answer, struct vs_error *err)
{
	struct nodemgr_assignment *a;
	size_t n;
	int r = nodemgr_assignments_parse(answer, &a, &n, NULL, err);
	if (r < 0)
		return r;
	nodemgr_assignments_free(nm->desired, nm->ndesired);
	nm->desired = a;
	nm->ndesired = n;
	nm->have_desired = true;
	return 0;
}

static int load_cache(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_free char *text = NULL;
	int r = vs_read_file(nm->cache_path, 64u << 20, &text, NULL, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	json_error_t je;
	cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return vs_error_set(err, EINVAL, "%s: %s", nm->cache_path, je.text);
	if ((r = take_answer(nm, j, err)) < 0)
		return vs_error_wrap(err, "%s", nm->cache_path);
	nm_log(nm, NODEMGR_LOG_INFO, "loaded %zu cached assignment%s", nm->ndesired,
	       nm->ndesired == 1 ? "" : "s");
	return 0;
}

static struct nodemgr_assignment *find_assignment(struct nodemgr *nm, const char *slice)
{
	for (size_t i = 0; i < nm->ndesired; i++)
		if (!strcmp(nm->desired[i].slice, slice))
			return &nm->desired[i];
	return NULL;
}

/* --- poller ------------------------------------------------------- */

static int read_images(const char *root, json_t *out)
{
	struct image_info *v = NULL;
	size_t n = 0;
	struct vs_error err;
	if (image_list(root, &v, &n, &err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, json_string(v[i].name));
	free(v);
	return 0;
}

static int register_node(struct nodemgr *nm, struct http_client *c, long *status,
			 struct vs_error *err)
{
	cleanup_json json_t *labels = json_object();
	for (char **l = nm->labels; l && *l; l++) {
		const char *eq = strchr(*l, '=');
		cleanup_free char *k = strndup(*l, (size_t)(eq - *l));
		json_object_set_new(labels, k, json_string(eq + 1));
	}
	cleanup_json json_t *images = json_array();
	read_images(nm->root, images);
	cleanup_json json_t *body = json_pack("{s:f, s:I, s:O, s:O, s:s}", "cpus", nm->o.cpus,
					      "memory", (json_int_t)nm->o.memory, "labels", labels,
					      "images", images, "version", NODEMGR_VERSION);
	cleanup_free char *ename = http_escape(nm->name, 0);
	cleanup_free char *path = vs_xasprintf("/v1/nodes/%s", ename);
	cleanup_json json_t *resp = NULL;
	int r = http_json(c, "PUT", path, body, 0, status, &resp, NULL, err);
	if (r < 0)
		return r;
	json_t *hb = json_object_get(resp, "heartbeat");
	unsigned secs = nm->o.heartbeat_secs;
	if (!secs)
		secs = json_is_integer(hb) && json_integer_value(hb) > 0 &&
			       json_integer_value(hb) <= 3600
			   ? (unsigned)json_integer_value(hb)
			   : 10;
	atomic_store(&nm->heartbeat, secs);
	atomic_store(&nm->registered, true);
	nm_log(nm, NODEMGR_LOG_INFO, "registered with %s (heartbeat %u s)", nm->registry, secs);
	return 0;
}

static void poller_fail(struct nodemgr *nm, const char *what, long status,
			const struct vs_error *err, unsigned *backoff)
{
	if (!status)
		what = "registry unreachable";
	nm_log(nm, NODEMGR_LOG_INFO, "%s (%s), retrying in %u s", what, err->msg, *backoff);
	nap(nm, *backoff);
	*backoff = *backoff * 2 > NODEMGR_BACKOFF_MAX ? NODEMGR_BACKOFF_MAX : *backoff * 2;
}

/* An answer the main loop has to see: cache it, then hand it over. */
static void publish(struct nodemgr *nm, json_t *answer)
{
	cleanup_free char *text = json_dumps(answer, JSON_COMPACT);
	struct vs_error err;
	if (!text || vs_write_file_atomic(nm->cache_path, text, strlen(text), 0600, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "caching assignments: %s",
		       text ? err.msg : "cannot encode");
	pthread_mutex_lock(&nm->mu);
	if (nm->answer)
		json_decref(nm->answer);
	nm->answer = json_incref(answer);
	pthread_mutex_unlock(&nm->mu);
	wake(nm);
}

static void *poller_main(void *arg)
{
	struct nodemgr *nm = arg;
	struct http_client c;
	struct vs_error err;
	if (http_client_init(&c, nm->registry, nm->token, nm->ca_file, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "poller: %s", err.msg);
		return NULL;
	}
	cleanup_free char *ename = http_escape(nm->name, 0);
	unsigned backoff = 1;
	long long index = 0;
	while (!atomic_load(&nm->stop)) {
		if (!atomic_load(&nm->registered)) {
			long status = 0;
			if (register_node(nm, &c, &status, &err) < 0) {
				poller_fail(nm, "registering failed", status, &err, &backoff);
				continue;
			}
			backoff = 1;
			index = 0;
			wake(nm);
		}
		cleanup_free char *path =
		    vs_xasprintf("/v1/nodes/%s/assignments?index=%lld&wait=%ds", ename, index,
				 NODEMGR_POLL_WAIT);
		cleanup_json json_t *resp = NULL;
		long status = 0;
		long long hdr = -1;
		uint64_t t0 = vs_now_ns();
		int r =
		    http_json(&c, "GET", path, NULL, NODEMGR_POLL_WAIT, &status, &resp, &hdr, &err);
		if (atomic_load(&nm->stop))
			break;
		if (r < 0) {
			if (status == 404 || status == 401 || status == 403)
				atomic_store(&nm->registered, false); /* registry reset? */
			poller_fail(nm, "polling assignments failed", status, &err, &backoff);
			continue;
		}
		struct nodemgr_assignment *a;
		size_t n;
		long long bindex;
		if (nodemgr_assignments_parse(resp, &a, &n, &bindex, &err) < 0) {
			poller_fail(nm, "assignments answer refused", 200, &err, &backoff);
			continue;
		}
		nodemgr_assignments_free(a, n);
		backoff = 1;
		long long next = hdr >= 0 ? hdr : bindex;
		if (next < 0)
			next = 0;
		nm_log(nm, NODEMGR_LOG_DEBUG, "assignments: %zu sliver%s at index %lld", n,
		       n == 1 ? "" : "s", next);
		publish(nm, resp);
		/* An answer that came back at once without progress: do not spin. */
		if (next == index && vs_now_ns() - t0 < 1000000000ull)
			nap(nm, 1);
		index = next;
	}
	http_client_free(&c);
	pthread_mutex_lock(&nm->mu);
	nm->poller_done = true;
	pthread_mutex_unlock(&nm->mu);
	return NULL;
}

/* --- reconcile ---------------------------------------------------- */

/*
 * A slice without experiment.json is the one our intent r explains when we
 * were destroying it (experiment.json may go first), or creating it and it
 * is not older than the intent (a slice someone made before is not ours).
 */
static bool partial_is_ours(struct nodemgr *nm, const char *slice, const struct nodemgr_record *r)
{
	if (!r || (r->phase != NODEMGR_CREATING && r->phase != NODEMGR_DESTROYING))
		return false;
	if (r->phase == NODEMGR_DESTROYING)
		return true;
	struct slice_spec spec;
	struct vs_error err;
	if (slice_load(nm->root, slice, &spec, NULL, &err) < 0)
		return true; /* no spec.json yet: the half our create made */
	bool ours = (long long)spec.created >= r->created;
	slice_spec_free(&spec);
	return ours;
}

static enum nodemgr_local classify(struct nodemgr *nm, const char *slice,
				   const struct nodemgr_record *r)
{
	cleanup_free char *d = slice_dir(nm->root, slice);
	struct stat st;
	if (lstat(d, &st) < 0 && errno == ENOENT)
		return NODEMGR_LOCAL_NONE;
	cleanup_free char *origin = NULL, *node = NULL;
	struct vs_error err;
	int rc = experiment_origin(nm->root, slice, &origin, &node, &err);
	if (rc == -ENOENT && S_ISDIR(st.st_mode) && partial_is_ours(nm, slice, r))
		return NODEMGR_LOCAL_PARTIAL;
	if (rc < 0)
		return NODEMGR_LOCAL_FOREIGN;
	if (origin && !strncmp(origin, "registry ", 9) && node && !strcmp(node, nm->name))
		return NODEMGR_LOCAL_OURS;
	return NODEMGR_LOCAL_FOREIGN;
}

static void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}

/* Parse the resolved manifest; every error in one line. */
static int parse_manifest(json_t *j, const char *slice, struct manifest **out, struct vs_error *err)
{
	if (!j)
		return vs_error_set(err, EINVAL, "the assignment has no manifest");
	cleanup_free char *text = json_dumps(j, JSON_COMPACT);
	if (!text)
		return vs_error_set(err, ENOMEM, "manifest: cannot encode");
	struct manifest_errors errs = {0};
	int r = manifest_parse(text, strlen(text), NULL, out, &errs);
	if (r < 0) {
		size_t total = errs.n + errs.dropped;
		if (errs.n)
			vs_error_set(err, EINVAL, "manifest: %s%s%s%s", errs.v[0].path,
				     errs.v[0].path[0] ? ": " : "", errs.v[0].message,
				     total > 1 ? " (and more)" : "");
		else
			vs_error_set(err, -r, "manifest: invalid");
		manifest_errors_free(&errs);
		return -err->code;
	}
	manifest_errors_free(&errs);
	if (strcmp((*out)->name, slice)) {
		vs_error_set(err, EINVAL, "manifest: .slice: \"%s\" is not the assigned \"%s\"",
			     (*out)->name, slice);
		manifest_free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* experiment_create's steps, as the create's steps 2 to 4 (see the top). */
static void create_step(void *arg, enum experiment_step step)
{
	fault_point(arg, "nodemgr.create", 1 + (unsigned)step);
}

static void log_defaults(struct nodemgr *nm, const char *slice, unsigned applied,
			 const struct manifest *m)
{
	char mem[32] = "", pids[48] = "";
	if (applied & NODEMGR_DEFAULTED_MEMORY)
		snprintf(mem, sizeof(mem), "memory %lluM",
			 (unsigned long long)(m->memory_bytes >> 20));
	if (applied & NODEMGR_DEFAULTED_PIDS)
		snprintf(pids, sizeof(pids), "%spids %llu", mem[0] ? ", " : "",
			 (unsigned long long)m->pids_max);
	if (applied)
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: its manifest sets no %s%s%s: node default %s%s", slice,
		       (applied & NODEMGR_DEFAULTED_MEMORY) ? "memory" : "",
		       applied == (NODEMGR_DEFAULTED_MEMORY | NODEMGR_DEFAULTED_PIDS) ? "/" : "",
		       (applied & NODEMGR_DEFAULTED_PIDS) ? "pids" : "", mem, pids);
}

static int create_sliver(struct nodemgr *nm, const struct nodemgr_assignment *a, json_t *mj,
			 struct vs_error *err)
{
	__attribute__((cleanup(manifest_freep))) struct manifest *m = NULL;
	int r = parse_manifest(mj, a->slice, &m, err);
	if (r < 0)
		return r;
	unsigned applied = nodemgr_apply_defaults(m, nm->o.default_memory, nm->o.default_pids);
	log_defaults(nm, a->slice, applied, m);
	struct image_info info;
	struct vs_error ierr;
	if (image_get(nm->root, m->image, &info, &ierr) == -ENOENT &&
	    !strcmp(m->image, "busybox")) {
		nm_log(nm, NODEMGR_LOG_INFO, "building image busybox for sliver %s", a->slice);
		r = image_build_busybox(nm->root, NULL, NULL, err);
		if (r < 0 && r != -EEXIST)
			return vs_error_wrap(err, "building image busybox");
	}
	struct experiment_create_opts eo = {.step = create_step, .arg = nm};
	if ((r = experiment_create_with(nm->root, m, nm->origin, nm->name, &eo, err)) < 0)
		return r;
	r = slice_start(nm->root, a->slice, &(struct slice_start_opts){.foreground = false}, err);
	if (r < 0) {
		struct vs_error derr;
		if (slice_destroy(nm->root, a->slice, true, &derr) < 0)
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: cleaning up after a failed start: %s", a->slice,
			       derr.msg);
		return vs_error_wrap(err, "start");
	}
	return 0;
}

/* Assignments carry the manifest's digest only: the manifest itself (up to
 * 24 MiB) is fetched from the slice object when a sliver is to be made. */
static int fetch_manifest(struct nodemgr *nm, const char *slice, json_t **out, struct vs_error *err)
{
	cleanup_free char *ename = http_escape(slice, 0);
	cleanup_free char *path = vs_xasprintf("/v1/slices/%s", ename);
	long status;
	int r = http_json(&nm->hc, "GET", path, NULL, 0, &status, out, NULL, err);
	if (r == 0 && !json_is_object(json_object_get(*out, "manifest")))
		r = vs_error_set(err, EPROTO, "the slice object has no manifest");
	return r;
}

static void do_create(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	cleanup_json json_t *fetched = NULL;
	json_t *mj = a->manifest;
	if (!mj) {
		struct vs_error ferr;
		if (fetch_manifest(nm, a->slice, &fetched, &ferr) < 0) {
			/* Leave no record: the next reconcile creates it afresh. */
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: fetching its manifest: %s (retrying later)", a->slice,
			       ferr.msg);
			if (s) {
				remove_record(nm, a->slice);
				drop_sliver(nm, s);
			}
			return;
		}
		mj = json_object_get(fetched, "manifest");
	}
	if (!s)
		s = add_sliver(nm, a->slice);
	nodemgr_record_free(&s->r);
	memset(&s->r, 0, sizeof(s->r));
	snprintf(s->r.slice, sizeof(s->r.slice), "%s", a->slice);
	snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
	s->r.expires = a->expires;
	s->r.phase = NODEMGR_CREATING;
	s->r.created = time(NULL);
	s->last_state[0] = 0;
	struct vs_error err;
	/* The record comes first: a crash mid-create leaves a slice we know. */
	if (save_record(nm, &s->r, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: %s (not created)", a->slice, err.msg);
		drop_sliver(nm, s);
		return;
	}
	nm->changed = true;
	fault_point(nm, "nodemgr.create", 1);
	if (create_sliver(nm, a, mj, &err) < 0) {
		char one[VS_ERROR_MAX];
		s->r.phase = NODEMGR_FAILED;
		s->r.message = vs_xstrdup(vs_printable(err.msg, one, sizeof(one)));
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s failed: %s", a->slice, s->r.message);
	} else {
		fault_point(nm, "nodemgr.create", 5);
		s->r.phase = NODEMGR_CREATED;
		nm_log(nm, NODEMGR_LOG_INFO, "created sliver %s", a->slice);
	}
	save_or_warn(nm, &s->r);
	fault_point(nm, "nodemgr.create", 6);
}

/*
 * Destroy slice, intent first: its record (made if it had none) says
 * "destroying" before anything goes, so a crash half-way through leaves a
 * slice the next reconcile still knows to remove. *sp: the sliver (may be
 * NULL; set to the one made).
 */
static int do_destroy(struct nodemgr *nm, const char *slice, struct nm_sliver **sp)
{
	struct vs_error err;
	struct nm_sliver *s = *sp;
	if (!s) {
		s = *sp = add_sliver(nm, slice);
		s->r.created = time(NULL);
	}
	if (s->r.phase != NODEMGR_DESTROYING) {
		close_pidfd(s);
		s->r.phase = NODEMGR_DESTROYING;
		if (save_record(nm, &s->r, &err) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "destroying sliver %s: %s (retrying later)",
			       slice, err.msg);
			return -1;
		}
	}
	fault_point(nm, "nodemgr.destroy", 1);
	if (slice_destroy(nm->root, slice, true, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "destroying sliver %s: %s (retrying later)", slice,
		       err.msg);
		return -1;
	}
	nm_log(nm, NODEMGR_LOG_INFO, "destroyed sliver %s", slice);
	nm->changed = true;
	fault_point(nm, "nodemgr.destroy", 2);
	return 0;
}

/*
 * The create of s was cut short after experiment.json (step 4 or 5): the
 * slice is complete. Start it if it never ran, then record it; a slice in
 * any other shape is made again.
 */
static void do_resume(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	struct slice_state st;
	struct vs_error err;
	int r = slice_load(nm->root, a->slice, NULL, &st, &err);
	if (r == 0 && st.status == SLICE_CREATED)
		r = slice_start(nm->root, a->slice, &(struct slice_start_opts){.foreground = false},
				&err);
	else if (r == 0 && st.status == SLICE_UNKNOWN)
		r = vs_error_set(&err, EIO, "its state is unknown");
	if (r < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: finishing its create: %s; re-creating",
		       a->slice, err.msg);
		if (do_destroy(nm, a->slice, &s) == 0)
			do_create(nm, a, s);
		return;
	}
	s->r.phase = NODEMGR_CREATED;
	s->last_state[0] = 0;
	nm->changed = true;
	nm_log(nm, NODEMGR_LOG_INFO, "created sliver %s (finished after a restart)", a->slice);
	save_or_warn(nm, &s->r);
}

static void mark_failed(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s,
			const char *msg)
{
	if (!s)
		s = add_sliver(nm, a->slice);
	nodemgr_record_free(&s->r);
	s->r.phase = NODEMGR_FAILED;
	s->r.message = vs_xstrdup(msg);
	snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
	s->r.expires = a->expires;
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s failed: %s", a->slice, msg);
	save_or_warn(nm, &s->r);
	nm->changed = true;
}

static void reconcile_one(struct nodemgr *nm, const char *slice)
{
	struct nodemgr_assignment *a = find_assignment(nm, slice);
	struct nm_sliver *s = find_sliver(nm, slice);
	enum nodemgr_local local = classify(nm, slice, s ? &s->r : NULL);
	enum nodemgr_action act = nodemgr_decide(a, s ? &s->r : NULL, local);
	if (act != NODEMGR_KEEP && act != NODEMGR_NOTHING)
		nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: %s", slice, nodemgr_action_name(act));
	switch (act) {
	case NODEMGR_NOTHING:
		return;
	case NODEMGR_KEEP:
		if (s && a && s->r.phase == NODEMGR_CREATED && a->expires > 0 &&
		    s->r.expires != a->expires) {
			/* Renewed at the registry: move the sliver's end too. */
			struct vs_error err;
			if (slice_renew(nm->root, slice, (time_t)a->expires, &err) < 0) {
				nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: renew: %s", slice,
				       err.msg);
				return;
			}
			s->r.expires = a->expires;
			save_or_warn(nm, &s->r);
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: renewed until %lld", slice,
			       (long long)a->expires);
		}
		return;
	case NODEMGR_CREATE:
		do_create(nm, a, s);
		return;
	case NODEMGR_RECREATE:
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: assignment changed or half made, re-creating", slice);
		if (do_destroy(nm, slice, &s) == 0)
			do_create(nm, a, s);
		return;
	case NODEMGR_RESUME:
		do_resume(nm, a, s);
		return;
	case NODEMGR_ADOPT: {
		if (!s)
			s = add_sliver(nm, slice);
		nodemgr_record_free(&s->r);
		memset(&s->r, 0, sizeof(s->r));
		snprintf(s->r.slice, sizeof(s->r.slice), "%s", slice);
		snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
		s->r.expires = a->expires;
		s->r.phase = NODEMGR_CREATED;
		s->r.created = time(NULL);
		nm_log(nm, NODEMGR_LOG_INFO, "adopted sliver %s", slice);
		save_or_warn(nm, &s->r);
		return;
	}
	case NODEMGR_CONFLICT: {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "a slice named %s already exists on this node and was not made by "
			 "vslice-nodemgr for this node; not touched",
			 slice);
		mark_failed(nm, a, s, msg);
		return;
	}
	case NODEMGR_VANISHED:
		mark_failed(nm, a, s,
			    "the sliver's slice was removed from the node behind the "
			    "node manager's back");
		return;
	case NODEMGR_DESTROY:
		if (do_destroy(nm, slice, &s) < 0)
			return;
		remove_record(nm, slice);
		drop_sliver(nm, s);
		fault_point(nm, "nodemgr.destroy", 3);
		return;
	case NODEMGR_FORGET:
		remove_record(nm, slice);
		if (s)
			drop_sliver(nm, s);
		return;
	}
}

static void reconcile(struct nodemgr *nm)
{
	if (!nm->have_desired)
		return; /* never destroy on a set we do not know */
	/* Every name that may need work: assigned, recorded, or ours on disk. */
	size_t cap = nm->ndesired + nm->nslivers + 1, n = 0;
	char **names = vs_xcalloc(cap, sizeof(char *));
	for (size_t i = 0; i < nm->ndesired; i++)
		names[n++] = vs_xstrdup(nm->desired[i].slice);
	for (size_t i = 0; i < nm->nslivers; i++)
		if (!find_assignment(nm, nm->slivers[i].r.slice))
			names[n++] = vs_xstrdup(nm->slivers[i].r.slice);
	char **local = NULL;
	size_t nlocal = 0;
	struct vs_error err;
	if (slice_list(nm->root, &local, &nlocal, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "listing slices: %s", err.msg);
	for (size_t i = 0; i < nlocal; i++) {
		bool known = false;
		for (size_t j = 0; j < n && !known; j++)
			known = !strcmp(names[j], local[i]);
		if (!known && classify(nm, local[i], NULL) == NODEMGR_LOCAL_OURS) {
			if (n + 1 >= cap) {
				cap *= 2;
				char **v = realloc(names, cap * sizeof(char *));
				if (!v)
					abort();
				names = v;
			}
			names[n++] = vs_xstrdup(local[i]);
		}
	}
	vs_strv_free(local);
	for (size_t i = 0; i < n && !atomic_load(&nm->stop); i++)
		reconcile_one(nm, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* --- heartbeat: status, logs, results ------------------------------ */

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
	close_pidfd(s); /* a new state: watch afresh (a new PID 1 after a restart) */
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

static int start_status_api(struct nodemgr *nm, struct vs_error *err)
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

/* Every sliver's status as of now (also for the local status API). */
static json_t *collect_status(struct nodemgr *nm, bool exited[])
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

static void post_status(struct nodemgr *nm, json_t *list)
{
	cleanup_json json_t *body = json_pack("{s:O}", "slivers", list);
	cleanup_free char *ename = http_escape(nm->name, 0);
	cleanup_free char *path = vs_xasprintf("/v1/nodes/%s/status", ename);
	long status;
	struct vs_error err;
	if (http_json(&nm->hc, "POST", path, body, 0, &status, NULL, NULL, &err) < 0)
		nm_log(nm, status ? NODEMGR_LOG_INFO : NODEMGR_LOG_DEBUG, "status report: %s",
		       err.msg);
}

static char *sliver_path(struct nodemgr *nm, const char *slice, const char *rest)
{
	cleanup_free char *es = http_escape(slice, 0);
	cleanup_free char *en = http_escape(nm->name, 0);
	return vs_xasprintf("/v1/slices/%s/slivers/%s%s", es, en, rest);
}

/* Upload up to NODEMGR_LOG_CHUNK new log bytes. Returns 1 when the registry
 * has the whole log (or will take no more), 0 when bytes are left, -1 on
 * an error. */
static int upload_log(struct nodemgr *nm, struct nm_sliver *s)
{
	if (s->r.log_capped)
		return 1;
	struct vs_error err;
	cleanup_close int fd = slice_log_open(nm->root, s->r.slice, &err);
	if (fd < 0) {
		nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: log: %s", s->r.slice, err.msg);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	uint64_t size = (uint64_t)st.st_size;
	if (s->r.log_offset > size) /* a log that shrank (cannot happen): start over */
		s->r.log_offset = size;
	size_t budget = NODEMGR_LOG_CHUNK;
	cleanup_free char *buf = NULL;
	for (int attempt = 0; attempt < 3 && budget > 0 && s->r.log_offset < size; attempt++) {
		size_t want = size - s->r.log_offset < budget ? size - s->r.log_offset : budget;
		if (!buf)
			buf = vs_xmalloc(NODEMGR_LOG_CHUNK);
		ssize_t got = pread(fd, buf, want, (off_t)s->r.log_offset);
		if (got <= 0)
			return -1;
		cleanup_free char *path = NULL;
		char rest[64];
		snprintf(rest, sizeof(rest), "/log?offset=%llu",
			 (unsigned long long)s->r.log_offset);
		path = sliver_path(nm, s->r.slice, rest);
		long status = 0;
		int r = http_put_buf(&nm->hc, path, buf, (size_t)got, NULL, &status, &err);
		if (r == 0) {
			s->r.log_offset += (uint64_t)got;
			budget -= (size_t)got;
			continue;
		}
		if (status == 409) {
			long long have = nodemgr_conflict_size(err.msg);
			if (have < 0 || (uint64_t)have > size) {
				nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: log upload: %s",
				       s->r.slice, err.msg);
				return -1;
			}
			nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: registry has %lld log bytes",
			       s->r.slice, have);
			s->r.log_offset = (uint64_t)have;
			continue;
		}
		if (status == 413) {
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: the registry takes no more of its log (%s)", s->r.slice,
			       err.msg);
			s->r.log_capped = true;
			save_or_warn(nm, &s->r);
			return 1;
		}
		nm_log(nm, status ? NODEMGR_LOG_INFO : NODEMGR_LOG_DEBUG,
		       "sliver %s: log upload: %s", s->r.slice, err.msg);
		save_or_warn(nm, &s->r);
		return -1;
	}
	save_or_warn(nm, &s->r);
	return s->r.log_offset >= size ? 1 : 0;
}

struct results_ctx {
	struct nodemgr *nm;
	struct nm_sliver *s;
	size_t files;
	json_t *missing;
	bool abort; /* the registry failed us: try the whole upload again later */
};

static int result_file(void *arg, const char *rel, int fd, const struct stat *st,
		       struct vs_error *err)
{
	struct results_ctx *rc = arg;
	if (rc->abort)
		return 0;
	char sha[VS_SHA256_HEX];
	int r = vs_sha256_fd(fd, sha);
	if (r < 0)
		return vs_error_sys(err, -r, "read");
	if (lseek(fd, 0, SEEK_SET) < 0)
		return vs_error_sys(err, errno, "seek");
	char h_sha[128], h_mode[64];
	snprintf(h_sha, sizeof(h_sha), "X-Vslice-Sha256: %s", sha);
	snprintf(h_mode, sizeof(h_mode), "X-Vslice-Mode: %04o", (unsigned)(st->st_mode & 07777));
	const char *headers[] = {h_sha, h_mode, NULL};
	cleanup_free char *erel = http_escape(rel, 1);
	cleanup_free char *rest = vs_xasprintf("/results/%s", erel);
	cleanup_free char *path = sliver_path(rc->nm, rc->s->r.slice, rest);
	long status = 0;
	r = http_put_fd(&rc->nm->hc, path, fd, headers, &status, err);
	if (r == 0) {
		rc->files++;
		return 0;
	}
	/* Transport trouble, 5xx, or not (yet / any more) ours: retry later.
	 * A refusal of this file (400 mismatch, 413) is final: it counts as
	 * missing, so one bad file does not hold the others back forever. */
	if (status == 0 || status >= 500 || status == 401 || status == 403 || status == 404)
		rc->abort = true;
	return r;
}

static void result_problem(void *arg, const char *rel, const char *why, bool missing, bool failed)
{
	struct results_ctx *rc = arg;
	if (rc->abort)
		return;
	if (missing || failed) {
		cleanup_free char *abs = vs_xasprintf("/%s", rel);
		json_array_append_new(rc->missing, json_string(abs));
	}
	nm_log(rc->nm, missing ? NODEMGR_LOG_DEBUG : NODEMGR_LOG_INFO, "sliver %s: result /%s: %s",
	       rc->s->r.slice, rel, why);
}

static void upload_results(struct nodemgr *nm, struct nm_sliver *s)
{
	struct vs_error err;
	char **paths = NULL;
	size_t n = 0;
	int r = experiment_result_paths(nm->root, s->r.slice, &paths, &n, &err);
	if (r < 0 && r != -ENOENT) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results: %s", s->r.slice, err.msg);
		return;
	}
	cleanup_json json_t *missing = json_array();
	struct results_ctx rc = {.nm = nm, .s = s, .missing = missing};
	struct experiment_walk w = {.file = result_file, .problem = result_problem, .arg = &rc};
	r = n ? experiment_walk_results(nm->root, s->r.slice, paths, n, &w, &err) : 0;
	vs_strv_free(paths);
	if (r < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results: %s", s->r.slice, err.msg);
		return;
	}
	if (rc.abort) {
		if (!s->upload_warned)
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: results upload interrupted, retrying", s->r.slice);
		s->upload_warned = true;
		return;
	}
	cleanup_json json_t *body =
	    json_pack("{s:I, s:O}", "files", (json_int_t)rc.files, "missing", missing);
	cleanup_free char *path = sliver_path(nm, s->r.slice, "/results");
	long status;
	if (http_json(&nm->hc, "POST", path, body, 0, &status, NULL, NULL, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results commit: %s", s->r.slice, err.msg);
		return;
	}
	s->r.results_done = true;
	save_or_warn(nm, &s->r);
	size_t nm_missing = json_array_size(missing);
	nm_log(nm, NODEMGR_LOG_INFO, "uploaded results of sliver %s: %zu file%s, %zu missing",
	       s->r.slice, rc.files, rc.files == 1 ? "" : "s", nm_missing);
}

static void heartbeat(struct nodemgr *nm)
{
	/*
	 * States first, then the logs, then the states are posted: a sliver
	 * the registry sees as exited has its whole output there already (it
	 * exited before its log was read), so `submit --wait` never misses the
	 * tail of a run. The final log bytes also go before the results commit.
	 */
	bool *exited = vs_xcalloc(nm->nslivers + 1, sizeof(bool));
	int *logged = vs_xcalloc(nm->nslivers + 1, sizeof(int));
	cleanup_json json_t *list = collect_status(nm, exited);
	if (atomic_load(&nm->registered)) {
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++)
			if (nm->slivers[i].r.phase == NODEMGR_CREATED)
				logged[i] = upload_log(nm, &nm->slivers[i]);
		post_status(nm, list);
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++) {
			struct nm_sliver *s = &nm->slivers[i];
			if (s->r.phase == NODEMGR_CREATED && exited[i] && logged[i] == 1 &&
			    !s->r.results_done)
				upload_results(nm, s);
		}
	}
	free(logged);
	free(exited);
}

/* --- main loop ---------------------------------------------------- */

int nodemgr_new(const struct nodemgr_opts *o, struct nodemgr **out, struct vs_error *err)
{
	*out = NULL;
	if (!nodemgr_node_name_valid(o->name))
		return vs_error_set(err, EINVAL,
				    "node name \"%s\": use [A-Za-z0-9][A-Za-z0-9._-]{0,62}",
				    o->name ? o->name : "");
	if (o->listen) {
		int r = nodemgr_listen_check(o->listen, err);
		if (r < 0)
			return r;
	}
	struct nodemgr *nm = vs_xcalloc(1, sizeof(*nm));
	nm->o = *o;
	nm->registry = vs_xstrdup(o->registry);
	nm->name = vs_xstrdup(o->name);
	nm->token = vs_xstrdup(o->token);
	nm->root = vs_xstrdup(o->root);
	nm->listen = o->listen ? vs_xstrdup(o->listen) : NULL;
	nm->o.listen = nm->listen;
	nm->ca_file = o->ca_file ? vs_xstrdup(o->ca_file) : NULL;
	nm->o.ca_file = nm->ca_file;
	size_t nl = 0;
	while (o->labels && o->labels[nl])
		nl++;
	nm->labels = vs_xcalloc(nl + 1, sizeof(char *));
	for (size_t i = 0; i < nl; i++)
		nm->labels[i] = vs_xstrdup(o->labels[i]);
	nm->dir = vs_xasprintf("%s/nodemgr", nm->root);
	nm->slivers_dir = vs_xasprintf("%s/slivers", nm->dir);
	nm->cache_path = vs_xasprintf("%s/assignments.json", nm->dir);
	nm->origin = vs_xasprintf("registry %s", nm->registry);
	nm->wake_fd = -1;
	nm->root_lock = nm->cgroup_lock = -1;
	pthread_mutex_init(&nm->mu, NULL);
	atomic_store(&nm->heartbeat, o->heartbeat_secs ? o->heartbeat_secs : 10);
	int r = http_client_init(&nm->hc, nm->registry, nm->token, nm->ca_file, err);
	nm->hc_ready = r == 0;
	if (r == 0) {
		nm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (nm->wake_fd < 0)
			r = vs_error_sys(err, errno, "eventfd");
	}
	if (r == 0)
		r = nodemgr_fault_parse(getenv("VSLICE_FAULT"), &nm->fault_op, &nm->fault_step,
					err);
	if (r == 0)
		r = vs_mkdir_p(nm->slivers_dir, 0700, err);
	/* Both locks before any record is read: what another node manager
	 * writes is not ours to act on. */
	if (r == 0)
		r = lock_root(nm, err);
	if (r == 0)
		r = lock_cgroup_parent(nm, err);
	if (r == 0)
		r = load_records(nm, err);
	if (r < 0) {
		nodemgr_free(nm);
		return r;
	}
	struct vs_error cerr;
	if (load_cache(nm, &cerr) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "ignoring the assignments cache: %s", cerr.msg);
	*out = nm;
	return 0;
}

int nodemgr_run(struct nodemgr *nm, struct vs_error *err)
{
	nm_log(nm, NODEMGR_LOG_INFO, "starting (registry %s, root %s, %zu sliver record%s)",
	       nm->registry, nm->root, nm->nslivers, nm->nslivers == 1 ? "" : "s");
	char dmem[32] = "none", dpids[32] = "none";
	if (nm->o.default_memory)
		snprintf(dmem, sizeof(dmem), "%lluM",
			 (unsigned long long)(nm->o.default_memory >> 20));
	if (nm->o.default_pids)
		snprintf(dpids, sizeof(dpids), "%llu", (unsigned long long)nm->o.default_pids);
	nm_log(nm, NODEMGR_LOG_INFO,
	       "default limits of a sliver whose manifest sets none: memory %s, pids %s", dmem,
	       dpids);
	if (nm->fault_op)
		nm_log(nm, NODEMGR_LOG_INFO, "test hook armed: VSLICE_FAULT=%s:%u", nm->fault_op,
		       nm->fault_step);
	/* Signals go to the main thread only (its poll() is what they wake). */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int r = nm->o.listen ? start_status_api(nm, err) : 0;
	if (r < 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return r;
	}
	r = pthread_create(&nm->poller, NULL, poller_main, nm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return vs_error_sys(err, r, "starting the poll thread");
	nm->poller_started = true;

	reconcile(nm);
	uint64_t next_tick = vs_now_ns();
	bool was_registered = false;
	while (!atomic_load(&nm->stop)) {
		uint64_t now = vs_now_ns();
		bool registered = atomic_load(&nm->registered);
		if (registered && !was_registered)
			next_tick = now; /* report at once, not a heartbeat later */
		was_registered = registered;
		if (now >= next_tick) {
			reconcile(nm);
			heartbeat(nm);
			now = vs_now_ns();
			next_tick = now + (uint64_t)atomic_load(&nm->heartbeat) * 1000000000ull;
		}
		int timeout_ms = (int)((next_tick - now) / 1000000) + 1;
		/* Besides the poll thread's wake-ups: the PID 1 of every running
		 * sliver, so a run's end is reported at once, not a heartbeat later. */
		size_t nfds = 1;
		bool ended = false;
		struct pollfd *p = vs_xcalloc(nm->nslivers + 1, sizeof(*p));
		size_t *who = vs_xcalloc(nm->nslivers + 1, sizeof(*who));
		p[0] = (struct pollfd){.fd = nm->wake_fd, .events = POLLIN};
		for (size_t i = 0; i < nm->nslivers; i++) {
			struct nm_sliver *sv = &nm->slivers[i];
			if (sv->r.phase != NODEMGR_CREATED || strcmp(sv->last_state, "running") ||
			    sv->end_seen)
				continue;
			if (sv->pidfd < 0) {
				pid_t pid = slice_pid1(nm->root, sv->r.slice);
				sv->pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
			}
			if (sv->pidfd < 0) {
				/* Reported running, already gone: once, not in a loop. */
				sv->end_seen = true;
				ended = true;
				continue;
			}
			who[nfds] = i;
			p[nfds++] = (struct pollfd){.fd = sv->pidfd, .events = POLLIN};
		}
		int pr = poll(p, nfds, ended ? 0 : timeout_ms);
		int perr = errno;
		for (size_t k = 1; pr > 0 && k < nfds; k++)
			if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
				struct nm_sliver *sv = &nm->slivers[who[k]];
				close_pidfd(sv);
				sv->end_seen = true;
				ended = true;
			}
		free(who);
		free(p);
		if (pr < 0 && perr != EINTR)
			return vs_error_sys(err, perr, "poll");
		if (ended)
			next_tick = vs_now_ns(); /* a sliver's run ended: report now */
		uint64_t v;
		while (read(nm->wake_fd, &v, sizeof(v)) > 0)
			;
		if (atomic_load(&nm->stop))
			break;
		pthread_mutex_lock(&nm->mu);
		json_t *answer = nm->answer;
		nm->answer = NULL;
		pthread_mutex_unlock(&nm->mu);
		if (answer) {
			struct vs_error aerr;
			if (take_answer(nm, answer, &aerr) < 0)
				nm_log(nm, NODEMGR_LOG_INFO, "%s", aerr.msg);
			json_decref(answer);
			nm->changed = false;
			reconcile(nm);
			if (nm->changed) /* new, removed or failed slivers: report now */
				next_tick = vs_now_ns();
		}
	}
	nm_log(nm, NODEMGR_LOG_INFO, "stopping (its %zu sliver%s keep%s running)", nm->nslivers,
	       nm->nslivers == 1 ? "" : "s", nm->nslivers == 1 ? "s" : "");
	return 0;
}

void nodemgr_free(struct nodemgr *nm)
{
	if (!nm)
		return;
	atomic_store(&nm->stop, true);
	if (nm->cgroup_lock >= 0) {
		/* The main loop is done: let go of the parent now, before waiting
		 * for the poller (which may be left to the exit). Unlinked while
		 * held, so a node manager waiting on this file retries (hold_lock),
		 * and files under /run do not pile up, one per parent ever used. */
		unlink(nm->cgroup_lock_path);
		close(nm->cgroup_lock);
		nm->cgroup_lock = -1;
	}
	if (nm->status_api)
		MHD_stop_daemon(nm->status_api);
	nm->status_api = NULL;
	if (nm->poller_started) {
		/* The poller may sit in a long-poll for up to a minute: give it a
		 * moment, then leave it (and what it uses) to the process exit. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 300 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(nm->poller, NULL, &ts) != 0)
			return;
	}
	if (nm->hc_ready)
		http_client_free(&nm->hc);
	if (nm->wake_fd >= 0)
		close(nm->wake_fd);
	if (nm->root_lock >= 0)
		close(nm->root_lock);
	free(nm->cgroup_lock_path);
	if (nm->answer)
		json_decref(nm->answer);
	nodemgr_assignments_free(nm->desired, nm->ndesired);
	for (size_t i = 0; i < nm->nslivers; i++) {
		close_pidfd(&nm->slivers[i]);
		nodemgr_record_free(&nm->slivers[i].r);
	}
	free(nm->slivers);
	vs_strv_free(nm->labels);
	free(nm->registry);
	free(nm->name);
	free(nm->token);
	free(nm->ca_file);
	free(nm->root);
	free(nm->listen);
	free(nm->dir);
	free(nm->slivers_dir);
	free(nm->cache_path);
	free(nm->origin);
	free(nm->status_text);
	pthread_mutex_destroy(&nm->mu);
	free(nm);
}
