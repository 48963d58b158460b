/*
 * slice_files.c - files into and out of a slice as a tar stream
 * (slice_files.h; `slicectl cp`, GET|PUT /v1/slivers/NAME/files).
 *
 * Three parts: the packer and the unpacker (slice_files_tar.c: a file or a
 * tree as pax entries, the top under its own name, the rest below it in
 * pre-order, and the reverse, trusting nothing: see below), and here the
 * slice side (a child process that sees the slice as its root does and runs
 * the packer or the unpacker there, reporting on a pipe) and the local
 * copies that join the two with a pipe.
 *
 * Where the slice's root is. Running (or frozen): the child joins the user
 * and mount namespaces of the slice's PID 1 (setns on a pidfd taken while
 * the slice was checked to run) and becomes uid 0 there; "/" is the
 * slice's root with whatever it mounted. Stopped: under the slice's lock
 * (a start waits), the child mounts the slice's overlay itself as a
 * detached mount (fsopen/fsmount, in no mount namespace): lowerdir the
 * image id-mapped into a fresh user namespace for the slice's range (or
 * the chowned copy where id-mapping is refused, as the launcher does),
 * upperdir/workdir the slice's (in its disk image with --disk:
 * slice_with_upper), then joins that user namespace as uid 0. In both
 * cases the kernel checks every access as the slice's root: a path the
 * slice could not write (the host's /proc/sys through the slice's /proc,
 * a file owned by an id outside the range) it cannot write either.
 *
 * Paths inside the slice are resolved from the root's fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): an absolute symlink, or
 * a ".." above the root, at any component, fails with EXDEV, which is
 * reported as "leaves the slice's root"; relative symlinks that stay
 * inside are followed, like cp does.
 *
 * The unpacker's rules: the first entry is the top, one plain component
 * (a file, a directory or a symlink); every other entry is "top/..." of
 * plain components (no "", ".", ".."), and its parent is the directory the
 * stream made last or one of that one's parents (pre-order), so the
 * unpacker keeps only that chain (a path and the mtimes to set on leaving
 * each level) and opens each entry's directory with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from the staging dir: a
 * symlink from the stream is never walked through. Regular files,
 * directories and symlinks only (no hard links, devices, fifos); at most
 * 2 MiB of input per header (libarchive would otherwise grow a pax header
 * or a sparse map as the input says). Everything goes under a temporary
 * name beside the target (".vslice-cp-<random>") and is renamed into
 * place, a directory with RENAME_NOREPLACE, only after the stream ended
 * and the caller's commit said it was whole; a failure removes it.
 * Owners: in a slice, the stream's ids (ids above 65535 become the slice's
 * root); on the host, the stream's ids with set-uid and set-gid dropped
 * (and, for a caller who is not root, the caller's own).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../image/archive_dl.h"
#include "../runtime/sliver_internal.h"
#include "slice_files_int.h"
#include "slice_xfer_int.h"
#include "vslice/idrange.h"
#include "vslice/image.h"
#include "vslice/slice.h"
#include "vslice/slice_files.h"
#include "vslice/util.h"

/* ---- the slice side: a child that sees the slice as its root does ------- */

enum { REPORT_READY = 1, REPORT_DONE };
struct report {
	int phase;
	int code;
	int kind;
	char msg[VS_ERROR_MAX];
};

/* What the child does (fds already moved to their places). */
struct files_work {
	const char *root, *name, *path;
	enum slice_files_op op;
	int io_fd, status_fd, commit_fd, pidfd;
	bool stopped, idmapped, volatile_upper;
	uint32_t id_base;
	const char *image_rootfs, *lower_copy;
};

static void report(int fd, int phase, const struct vs_error *err)
{
	struct report rp = {.phase = phase};
	if (err && err->code) {
		rp.code = err->code;
		rp.kind = err->kind;
		snprintf(rp.msg, sizeof(rp.msg), "%s", err->msg);
	}
	(void)!write(fd, &rp, sizeof(rp));
}

static int commit_from_pipe(void *arg, struct vs_error *err)
{
	const struct files_work *w = arg;
	char c = 0;
	ssize_t n;
	do
		n = read(w->commit_fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || c != 'c')
		return vs_error_set(err, EPIPE, "the stream was cut short: nothing was copied");
	return 0;
}

/* The copy itself, root_fd being the slice's root, as the slice's root. */
static int work_run(struct files_work *wk, int root_fd, struct vs_error *err)
{
	struct files_where w = {.root_fd = root_fd, .resolve = FILES_SLICE_RESOLV};
	const char *rel = files_slice_rel(wk->path);
	int r;
	if (wk->op == SLICE_FILES_GET) {
		struct pack_src s = {.fd = -1};
		if ((r = files_pack_open(&w, rel, wk->path, &s, err)) < 0)
			return r;
		report(wk->status_fd, REPORT_READY, NULL);
		r = files_pack_run(&s, wk->io_fd, err);
		close(s.fd);
		if (r < 0) {
			/* A reader that only sees the stream (a remote client)
			 * must not take what came as whole: garbage where the
			 * next header would be. */
			uint8_t junk[512];
			memset(junk, 0xff, sizeof(junk));
			(void)!write(wk->io_fd, junk, sizeof(junk));
		}
		return r;
	}
	char name[NAME_MAX + 1];
	struct unpacker u = {.w = &w, .in_fd = wk->io_fd, .shown = wk->path, .err = err};
	if ((r = files_unpack_open(&u, rel, name)) < 0)
		return r;
	report(wk->status_fd, REPORT_READY, NULL);
	r = files_unpack_run(&u, commit_from_pipe, wk);
	close(u.parent_fd);
	return r;
}

static int enter_running(struct files_work *wk, struct vs_error *err)
{
	if (setns(wk->pidfd, CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return vs_error_sys(err, errno, "enter slice %s", wk->name);
	int r = sliver_become_root(err);
	if (r < 0)
		return vs_error_wrap(err, "slice %s", wk->name);
	cleanup_close int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return vs_error_sys(err, errno, "slice %s: open its root", wk->name);
	return work_run(wk, rootfd, err);
}

/* The image id-mapped into userns, as a detached mount (rootfs.c's way). */
static int idmapped_lower(const char *image, int userns, struct vs_error *err)
{
	cleanup_close int tree =
	    open_tree(AT_FDCWD, image, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return vs_error_sys(err, errno, "open_tree %s", image);
	struct mount_attr attr = {
	    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
	    .userns_fd = (uint64_t)userns,
	};
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return vs_error_sys(err, errno, "id-map %s", image);
	return steal_fd(&tree);
}

static int fs_string(int fs, const char *key, const char *val, struct vs_error *err)
{
	if (fsconfig(fs, val ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, key, val, 0) < 0)
		return vs_error_sys(err, errno, "overlay option %s", key);
	return 0;
}

/* A stopped slice: its overlay mounted (detached) over upper_fd. */
static int stopped_with_upper(void *arg, int upper_fd, struct vs_error *err)
{
	struct files_work *wk = arg;
	int r;
	if ((r = xfer_require_stopped(wk->root, wk->name, err)) < 0)
		return r;
	cleanup_close int userns = sliver_make_userns(wk->id_base, IDRANGE_SIZE, err);
	if (userns < 0)
		return userns;
	cleanup_close int lower = -1;
	char lower_path[64];
	if (wk->idmapped) {
		if ((lower = idmapped_lower(wk->image_rootfs, userns, err)) < 0)
			return lower;
		snprintf(lower_path, sizeof(lower_path), "/proc/self/fd/%d", lower);
	} else {
		if ((lower = open(wk->lower_copy, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			return vs_error_sys(err, errno, "%s", wk->lower_copy);
		snprintf(lower_path, sizeof(lower_path), "/proc/self/fd/%d", lower);
	}
	cleanup_close int work =
	    openat(upper_fd, "../work", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (work < 0)
		return vs_error_sys(err, errno, "slice %s: its overlay work dir", wk->name);
	char upper_path[64], work_path[64];
	snprintf(upper_path, sizeof(upper_path), "/proc/self/fd/%d", upper_fd);
	snprintf(work_path, sizeof(work_path), "/proc/self/fd/%d", work);
	cleanup_close int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return vs_error_sys(err, errno, "fsopen overlay");
	/* Reading: the upper dir is the top lower layer of an overlay with no
	 * upper (read-only by construction, its whiteouts still hide what
	 * they hide; a --disk image is opened read-only, which an upperdir
	 * could not be). Writing: the slice's own upper and work dirs. */
	char both[2 * 64 + 2];
	snprintf(both, sizeof(both), "%s:%s", upper_path, lower_path);
	if (wk->op == SLICE_FILES_GET) {
		if ((r = fs_string(fs, "lowerdir", both, err)) < 0)
			return vs_error_wrap(err, "slice %s", wk->name);
	} else if ((r = fs_string(fs, "lowerdir", lower_path, err)) < 0 ||
		   (r = fs_string(fs, "upperdir", upper_path, err)) < 0 ||
		   (r = fs_string(fs, "workdir", work_path, err)) < 0 ||
		   (wk->volatile_upper && (r = fs_string(fs, "volatile", NULL, err)) < 0))
		return vs_error_wrap(err, "slice %s", wk->name);
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return vs_error_sys(err, errno, "slice %s: mount its overlay", wk->name);
	cleanup_close int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
	if (mnt < 0)
		return vs_error_sys(err, errno, "slice %s: mount its overlay", wk->name);
	/* From here on, as the slice's root: the mount is only reached
	 * through mnt, and the lower/upper fds are not used again. */
	if (setns(userns, CLONE_NEWUSER) < 0)
		return vs_error_sys(err, errno, "slice %s: enter its id range", wk->name);
	if ((r = sliver_become_root(err)) < 0)
		return vs_error_wrap(err, "slice %s", wk->name);
	return work_run(wk, mnt, err);
}

static int child_main(struct files_work *wk, struct vs_error *err)
{
	if (!wk->stopped)
		return enter_running(wk, err);
	uint32_t id_base;
	bool disk;
	return xfer_with_upper(wk->root, wk->name, wk->op == SLICE_FILES_PUT, &id_base, &disk,
			       stopped_with_upper, wk, err);
}

/* fds[i] to i + 3 in this (child) process, everything else closed. */
static void child_fds(int *fds, size_t n)
{
	int tmp[8];
	for (size_t i = 0; i < n; i++)
		tmp[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
	for (size_t i = 0; i < n; i++) {
		if (tmp[i] >= 0)
			dup3(tmp[i], (int)i + 3, O_CLOEXEC);
		fds[i] = tmp[i] >= 0 ? (int)i + 3 : -1;
	}
	close_range((unsigned)n + 3, ~0U, 0);
}

static int read_report(struct slice_files_job *job, struct report *rp)
{
	ssize_t n = vs_read_all(job->status_fd, rp, sizeof(*rp));
	return n == (ssize_t)sizeof(*rp) ? 0 : -1;
}

static int reap(struct slice_files_job *job, struct vs_error *err)
{
	int status = 0;
	while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
		;
	job->pid = -1;
	if (WIFSIGNALED(status))
		return vs_error_set(err, EIO, "the copy process was killed (signal %d)",
				    WTERMSIG(status));
	return vs_error_set(err, EIO, "the copy process ended without a report (exit %d)",
			    WEXITSTATUS(status));
}

static void job_close(struct slice_files_job *job)
{
	if (job->commit_fd >= 0)
		close(job->commit_fd);
	if (job->status_fd >= 0)
		close(job->status_fd);
	job->commit_fd = job->status_fd = -1;
}

/* The child's DONE report into err (and reap it). */
static int job_done(struct slice_files_job *job, struct report *rp, struct vs_error *err)
{
	int status;
	while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR)
		;
	job->pid = -1;
	job_close(job);
	if (!rp->code)
		return 0;
	vs_error_set(err, rp->code, "%s", rp->msg);
	return vs_error_kind(err, (enum vs_error_kind)rp->kind);
}

int slice_files_start(const char *root, const char *name, enum slice_files_op op, const char *path,
		      int io_fd, struct slice_files_job *job, struct vs_error *err)
{
	*job = (struct slice_files_job){.pid = -1, .status_fd = -1, .commit_fd = -1};
	struct slice_spec spec;
	struct slice_state st;
	int r = slice_load(root, name, &spec, &st, err);
	if (r < 0)
		return r;
	cleanup_free char *image = NULL;
	cleanup_free char *sdir = slice_dir(root, name);
	cleanup_free char *lower_copy = vs_xasprintf("%s/lower-copy", sdir);
	cleanup_close int pidfd = -1;
	bool stopped = true;
	if ((st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) && st.pid > 0) {
		pidfd = pidfd_open(st.pid, 0);
		/* Still PID 1 of this slice once we hold it: not a reused pid. */
		stopped = pidfd < 0 || slice_pid1(root, name) != st.pid;
		if (stopped && pidfd >= 0) {
			close(pidfd);
			pidfd = -1;
		}
	}
	if (stopped && (r = image_rootfs(root, spec.image, &image, err)) < 0)
		r = vs_error_wrap(err, "slice %s", name);
	struct files_work wk = {
	    .root = root,
	    .name = name,
	    .path = path,
	    .op = op,
	    .stopped = stopped,
	    .idmapped = st.idmapped,
	    .volatile_upper = spec.ephemeral,
	    .id_base = spec.id_base,
	    .image_rootfs = image,
	    .lower_copy = lower_copy,
	};
	slice_spec_free(&spec);
	if (r < 0 || (r = archive_dl_load(err)) < 0)
		return r;
	int sp[2], cp[2] = {-1, -1};
	if (pipe2(sp, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	if (op == SLICE_FILES_PUT && pipe2(cp, O_CLOEXEC) < 0) {
		r = vs_error_sys(err, errno, "pipe");
		close(sp[0]);
		close(sp[1]);
		return r;
	}
	pid_t pid = fork();
	if (pid < 0) {
		r = vs_error_sys(err, errno, "fork");
		close(sp[0]);
		close(sp[1]);
		if (cp[0] >= 0) {
			close(cp[0]);
			close(cp[1]);
		}
		return r;
	}
	if (pid == 0) {
		/* A daemon's threads may block signals (SIGPIPE, SIGTERM):
		 * this child takes the default ones, but never SIGPIPE (a
		 * reader that went away is an error to report). */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_IGN);
		int fds[4] = {io_fd, sp[1], cp[0], pidfd};
		child_fds(fds, 4);
		wk.io_fd = fds[0];
		wk.status_fd = fds[1];
		wk.commit_fd = fds[2];
		wk.pidfd = fds[3];
		struct vs_error cerr = {0};
		r = child_main(&wk, &cerr);
		if (r < 0 && !cerr.code)
			vs_error_set(&cerr, EIO, "failed");
		report(wk.status_fd, REPORT_DONE, r < 0 ? &cerr : NULL);
		_exit(r < 0 ? 1 : 0);
	}
	close(sp[1]);
	if (cp[0] >= 0)
		close(cp[0]);
	job->pid = pid;
	job->status_fd = sp[0];
	job->commit_fd = cp[1];
	struct report rp;
	if (read_report(job, &rp) < 0) {
		job_close(job);
		return reap(job, err);
	}
	if (rp.phase == REPORT_READY)
		return 0;
	/* It failed before it was ready: its error, nothing done. */
	rp.code = rp.code ? rp.code : EIO;
	return job_done(job, &rp, err);
}

void slice_files_commit(struct slice_files_job *job)
{
	if (job->commit_fd >= 0) {
		(void)!write(job->commit_fd, "c", 1);
		close(job->commit_fd);
		job->commit_fd = -1;
	}
}

int slice_files_finish(struct slice_files_job *job, struct vs_error *err)
{
	if (job->pid < 0)
		return 0;
	/* A PUT not committed now never will be: the child gives up. */
	if (job->commit_fd >= 0) {
		close(job->commit_fd);
		job->commit_fd = -1;
	}
	struct report rp;
	if (read_report(job, &rp) < 0 || rp.phase != REPORT_DONE) {
		job_close(job);
		return reap(job, err);
	}
	return job_done(job, &rp, err);
}

/* ---- local copies ------------------------------------------------------- */

int slice_files_copy_in(const char *root, const char *name, const char *host_src, const char *path,
			struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	struct slice_files_job job;
	int r = slice_files_start(root, name, SLICE_FILES_PUT, path, p[0], &job, err);
	close(p[0]);
	if (r < 0) {
		close(p[1]);
		return r;
	}
	struct vs_error perr = {0};
	int pr = slice_files_pack(host_src, p[1], &perr);
	close(p[1]);
	if (pr == 0)
		slice_files_commit(&job);
	int fr = slice_files_finish(&job, err);
	/* The packer's own failure explains the child's "cut short". */
	if (pr < 0 && (perr.code != EPIPE || fr == 0)) {
		*err = perr;
		return pr;
	}
	return fr;
}

static int commit_finish(void *arg, struct vs_error *err)
{
	return slice_files_finish(arg, err);
}

int slice_files_copy_out(const char *root, const char *name, const char *path, const char *host_dst,
			 struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	struct slice_files_job job;
	int r = slice_files_start(root, name, SLICE_FILES_GET, path, p[1], &job, err);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	r = slice_files_unpack(host_dst, p[0], commit_finish, &job, err);
	close(p[0]);
	if (job.pid >= 0) {
		/* The unpack failed before the commit: the child's error, if
		 * it has one of its own, says more than a cut stream. */
		struct vs_error cerr = {0};
		if (slice_files_finish(&job, &cerr) < 0 && cerr.code != EPIPE) {
			*err = cerr;
			return -cerr.code;
		}
	}
	return r;
}
