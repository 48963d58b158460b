/*
 * slice_ckpt.c - checkpoint / restore of a whole local slice over an fd.
 *
 * Checkpoint: load the slice (it must run), refuse a --disk slice up front
 * (slice_upper_dir), find the workload (the first child of the slice's
 * PID 1), dump its tree with the spec as the EXTRA blob and the upper dir
 * as the file system delta. The stream is "complete" - and the slice may
 * die - once the END record is written; for a regular file it must also be
 * on disk and read back whole. PID 1 follows its workload; we wait on a
 * pidfd, then remove the slice.
 *
 * Restore: read and verify the stream, create the slice from the spec in
 * it (the id range is new: owners in the delta are shifted), fill its upper
 * dir, start it with the restore stub as its workload (old root pid, clock
 * offsets; without offsets if the kernel refuses them - VS_EK_TIMENS),
 * then finish the restore from the host. Any failure removes the slice.
 *
 * Assumes the caller is host root (ptrace, clone3 set_tid, id mapping).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vslice/cgroup.h"
#include "vslice/ckpt.h"
#include "vslice/ckpt_dirty.h"
#include "vslice/slice.h"
#include "vslice/slice_ckpt.h"
#include "vslice/util.h"

#define PID1_EXIT_MS 5000

static void spec_freep(struct slice_spec *s)
{
	slice_spec_free(s);
}
#define cleanup_spec __attribute__((cleanup(spec_freep)))

static void image_freep(struct ckpt_image **img)
{
	ckpt_image_free(*img);
}
#define cleanup_image __attribute__((cleanup(image_freep)))

static void cgroup_freep(struct cgroup **cg)
{
	if (*cg)
		cgroup_free(*cg);
}

/* A regular file: the stream must be on disk and read back whole (every
 * CRC, every record) before the slice may die. */
static int verify_file(void *arg, struct vs_error *err)
{
	int fd = *(const int *)arg;
	if (fsync(fd) < 0)
		return vs_error_sys(err, errno, "checkpoint image: fsync");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	cleanup_close int rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return vs_error_sys(err, errno, "checkpoint image: read back");
	if (ckpt_image_verify_fd(rfd, err) < 0)
		return vs_error_wrap(err, "checkpoint image: verify");
	return 0;
}

static int refused(struct vs_error *err, int code, const char *what)
{
	vs_error_set(err, code, "%s", what);
	return vs_error_kind(err, VS_EK_REFUSED);
}

/* ckpt_precopy_opts.freeze: the slice's freezer cgroup */
static int freeze_slice(void *arg, bool frozen, struct vs_error *err)
{
	struct cgroup *cg = arg;
	return frozen ? cgroup_freeze(cg, err) : cgroup_thaw(cg, err);
}

/*
 * The pre-copy rounds, while the slice runs; stops by the rule in
 * slice_checkpoint_opts. st->rounds filled.
 */
static int precopy_rounds(struct ckpt_precopy *pc, const struct slice_checkpoint_opts *o,
			  struct ckpt_stats *st, struct vs_error *err)
{
	unsigned max_rounds = o->max_rounds ? o->max_rounds : 8;
	uint64_t min_pages = o->min_pages ? o->min_pages : 64;
	if (max_rounds > CKPT_MAX_ROUNDS - 1)
		max_rounds = CKPT_MAX_ROUNDS - 1;
	uint64_t total = 0, t0 = vs_now_ns();
	st->nr_rounds = 0;
	for (unsigned k = 0; k < max_rounds; k++) {
		struct ckpt_round_stats *rs = &st->rounds[k];
		int r = ckpt_precopy_round(pc, rs, err);
		if (r < 0)
			return r;
		st->nr_rounds = k + 1;
		total += rs->bytes;
		if (o->on_round)
			o->on_round(o->on_round_arg, k, rs);
		uint64_t bound = o->max_bytes ? o->max_bytes : 2 * st->rounds[0].bytes;
		if (k >= 1 && rs->pages < min_pages)
			break; /* small enough: the frozen round will be short */
		if (k >= 2 && rs->pages >= st->rounds[k - 1].pages)
			break; /* not converging: the slice writes as fast as we copy */
		if (total >= bound)
			break;
	}
	st->precopy_ns = vs_now_ns() - t0;
	return 0;
}

/* Wait until the process behind pidfd is gone (it has no reason to linger:
 * its workload is dead), at most ms. */
static void wait_pidfd(int pidfd, unsigned ms)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	while (poll(&p, 1, (int)ms) < 0 && errno == EINTR)
		;
}

int slice_checkpoint(const char *root, const char *name, int out_fd,
		     const struct slice_checkpoint_opts *o, struct ckpt_stats *st,
		     struct vs_error *err)
{
	static const struct slice_checkpoint_opts defaults = {0};
	if (!o)
		o = &defaults;
	cleanup_spec struct slice_spec spec = {0};
	struct slice_state state;
	int r = slice_load(root, name, &spec, &state, err);
	if (r < 0)
		return r;
	if (state.status != SLICE_RUNNING || state.pid <= 0) {
		vs_error_set(err, EINVAL, "is not running (%s)", slice_status_name(state.status));
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	cleanup_free char *upper = NULL;
	if ((r = slice_upper_dir(root, &spec, &upper, err)) < 0)
		return r;
	struct stat ost;
	if (fstat(out_fd, &ost) < 0)
		return vs_error_sys(err, errno, "checkpoint output");
	bool is_file = S_ISREG(ost.st_mode);
	/* it is read back from its start: it must hold this stream only (an
	 * O_APPEND fd reports offset 0 whatever its size) */
	if (is_file && (ost.st_size != 0 || lseek(out_fd, 0, SEEK_CUR) != 0))
		return refused(err, EINVAL, "checkpoint output: a regular file must be empty");
	/* Held before the dump: PID 1 cannot be recycled under us. */
	cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, state.pid, 0);
	if (pidfd < 0)
		return vs_error_sys(err, errno, "PID 1 (%d): pidfd_open", state.pid);
	pid_t workload = 0;
	if (ckpt_first_child(state.pid, &workload, err) < 0) {
		vs_error_wrap(err, "no workload under its PID 1 (%d)", state.pid);
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	cleanup_free char *dir = slice_dir(root, name);
	cleanup_free char *spec_path = vs_xasprintf("%s/spec.json", dir);
	cleanup_free char *spec_text = NULL;
	size_t spec_len = 0;
	if ((r = vs_read_file(spec_path, 0, &spec_text, &spec_len, err)) < 0)
		return r;
	__attribute__((cleanup(cgroup_freep))) struct cgroup *cg = NULL;
	struct vs_error e2;
	if (cgroup_open(NULL, NULL, name, &cg, &e2) < 0)
		cg = NULL;
	struct ckpt_dump_opts d = {
	    .root_pid = workload,
	    .init_pid = state.pid,
	    /* v1 or v2: the cgroup module's freezer (a v1 path was written
	     * here once, which a v2 host does not have) */
	    .freeze = cg ? freeze_slice : NULL,
	    .freeze_arg = cg,
	    .out_fd = out_fd,
	    .leave_running = o->leave_running,
	    .keep_frozen = o->keep_frozen, /* the dump heeds it with leave_running */
	    .name = name,
	    .extra = spec_text,
	    .extra_len = spec_len + 1,
	    .verbose = o->verbose,
	    .fs_root = upper,
	    /* the read-back holds the tree stopped only when the slice dies
	     * after it; with --leave-running it runs after the thaw */
	    .while_stopped = is_file && !o->leave_running ? verify_file : NULL,
	    .while_stopped_arg = &out_fd,
	};
	/* A reader that went away must fail the dump (EPIPE), not kill us
	 * while the tree is stopped: hold SIGPIPE off for the call (the
	 * dump's writer thread inherits the mask) and drop one we caused. */
	sigset_t pipe_set, old_mask, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
	sigpending(&pending);
	bool was_pending = sigismember(&pending, SIGPIPE);
	if (o->check_only) {
		struct ckpt_dump_opts chk = d;
		chk.check_only = true;
		r = ckpt_dump(&chk, NULL, err);
		pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
		if (r < 0)
			vs_error_kind(err, VS_EK_REFUSED);
		return r;
	}
	/* Pre-copy: the rounds go first into the same stream; any failure
	 * disarms every process (ckpt_precopy_free) and the slice runs on. */
	struct ckpt_precopy *pc = NULL;
	struct ckpt_stats pst = {0};
	r = 0;
	if (o->precopy) {
		/* what the dump would refuse, before any round is spent */
		struct ckpt_dump_opts chk = d;
		chk.check_only = true;
		r = ckpt_dump(&chk, NULL, err);
	}
	if (r >= 0 && o->precopy) {
		struct ckpt_precopy_opts po = {
		    .verbose = o->verbose, .freeze = cg ? freeze_slice : NULL, .freeze_arg = cg};
		r = ckpt_precopy_start(state.pid, out_fd, &po, &pc, err);
		if (r >= 0)
			r = precopy_rounds(pc, o, &pst, err);
		d.precopy = pc;
	}
	if (r >= 0)
		r = ckpt_dump(&d, st, err);
	ckpt_precopy_free(pc);
	if (o->precopy && st) {
		st->nr_rounds = pst.nr_rounds;
		st->precopy_ns = pst.precopy_ns;
		memcpy(st->rounds, pst.rounds, sizeof(st->rounds));
	}
	sigpending(&pending);
	if (!was_pending && sigismember(&pending, SIGPIPE)) {
		struct timespec zero = {0, 0};
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (r < 0)
		return r;
	if (o->leave_running)
		return is_file ? verify_file(&out_fd, err) : 0;
	/* the tree is dead; PID 1 follows: the slice is gone */
	wait_pidfd(pidfd, PID1_EXIT_MS);
	if ((r = slice_destroy(root, name, true, err)) < 0)
		return vs_error_wrap(err, "checkpoint written; remove the slice");
	return 0;
}

static int restore_stub_main(void *arg)
{
	struct vs_error err;
	vs_error_clear(&err);
	ckpt_restore_stub(arg, &err);
	/* the host reads the cause from the image's error box; this line
	 * goes to the slice log */
	fprintf(stderr, "restore stub: %s\n", err.msg);
	return 125;
}

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* A stopped slice of that name is replaced; a running one is not. */
static int clear_name(const char *root, const char *name, struct vs_error *err)
{
	struct slice_spec cur = {0};
	struct slice_state cst;
	struct vs_error e2;
	if (slice_load(root, name, &cur, &cst, &e2) < 0)
		return 0;
	slice_spec_free(&cur);
	if (cst.status == SLICE_RUNNING || cst.status == SLICE_FROZEN) {
		vs_error_set(err, EBUSY,
			     "is running; destroy it first or restore under another name");
		return vs_error_kind(err, VS_EK_BUSY);
	}
	return slice_destroy(root, name, true, err);
}

/* The slice exists: start it with the stub and finish the restore. */
static int restore_into(const char *root, const char *name, struct ckpt_image *img,
			struct slice_spec *spec, uint32_t old_base,
			const struct slice_restore_opts *o, struct ckpt_stats *st,
			struct vs_error *err)
{
	cleanup_free char *upper = NULL;
	int r = slice_upper_dir(root, spec, &upper, err);
	if (r < 0)
		return r;
	if ((r = ckpt_image_extract_fs(img, upper, old_base, spec->id_base, err)) < 0)
		return r;
	struct slice_start_opts so = {
	    .stdin_fd = -1,
	    .stdout_fd = -1,
	    .stderr_fd = -1,
	    .workload_fn = restore_stub_main,
	    .workload_arg = img,
	    .workload_pid = ckpt_image_root_pid(img),
	    .monotonic_offset_ns = ckpt_image_monotonic_ns(img) - now_ns(CLOCK_MONOTONIC),
	    .boottime_offset_ns = ckpt_image_boottime_ns(img) - now_ns(CLOCK_BOOTTIME),
	};
	uint64_t t0 = vs_now_ns();
	r = slice_start(root, name, &so, err);
	if (r < 0 && err->kind == VS_EK_TIMENS) {
		/* A kernel without time namespaces (or refusing the offsets):
		 * restore without clock offsets rather than not at all. */
		if (o->warn)
			o->warn(o->warn_arg, err);
		so.monotonic_offset_ns = so.boottime_offset_ns = 0;
		vs_error_clear(err);
		r = slice_start(root, name, &so, err);
	}
	if (r < 0)
		return r;
	pid_t pid1 = slice_pid1(root, name), root_hpid;
	if (pid1 <= 0)
		return vs_error_set(err, ESRCH, "PID 1 is gone after start");
	unsigned timeout = o->timeout_ms ? o->timeout_ms : 30000;
	if (ckpt_find_child_nspid(pid1, ckpt_image_root_pid(img), 10000, &root_hpid, err) < 0 ||
	    ckpt_restore_finish(img, root_hpid, timeout, st, err) < 0) {
		/* the stubs' own error beats "no child with pid N" / "stub died" */
		const char *why = ckpt_image_restore_error(img);
		if (why)
			vs_error_set(err, ECHILD, "%s", why);
		return -err->code;
	}
	st->restore_ns = vs_now_ns() - t0;
	return 0;
}

int slice_restore(const char *root, const char *name, int in_fd, const struct slice_restore_opts *o,
		  struct ckpt_stats *st, struct vs_error *err)
{
	static const struct slice_restore_opts defaults = {0};
	struct ckpt_stats dummy;
	if (!o)
		o = &defaults;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	cleanup_image struct ckpt_image *img = NULL;
	int r = ckpt_image_read_fd(in_fd, &img, err);
	if (r < 0)
		return r;
	size_t elen = 0;
	const char *etext = ckpt_image_extra(img, &elen);
	if (!etext || !elen || etext[elen - 1] != 0)
		return vs_error_set(err, EINVAL, "checkpoint: no slice spec in the stream");
	cleanup_spec struct slice_spec spec = {0};
	if ((r = slice_spec_parse(etext, ckpt_image_name(img), &spec, err)) < 0)
		return vs_error_wrap(err, "checkpoint: slice spec");
	uint32_t old_base = spec.id_base;
	snprintf(spec.name, sizeof(spec.name), "%s", name);
	/* up front: the same refusal a checkpoint of it would have met */
	cleanup_free char *probe = NULL;
	if ((r = slice_upper_dir(root, &spec, &probe, err)) < 0)
		return r;
	if ((r = clear_name(root, name, err)) < 0)
		return r;
	if ((r = slice_create(root, &spec, err)) < 0)
		return r;
	r = o->created ? o->created(o->created_arg, err) : 0;
	if (r >= 0)
		r = restore_into(root, name, img, &spec, old_base, o, st, err);
	if (r >= 0 && o->frozen && (r = slice_freeze(root, name, err)) < 0)
		vs_error_wrap(err, "restored; freezing it");
	if (r < 0) {
		struct vs_error e2;
		slice_destroy(root, name, true, &e2);
	}
	return r;
}
