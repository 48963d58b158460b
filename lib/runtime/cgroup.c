/*
 * cgroup.c - detection, the handle, dispatch to the v1/v2 backends, and what
 * both backends share: file access that names the object in every error,
 * listing and signalling the processes of a cgroup, directory removal.
 *
 * Detection (systemd's algorithm, runtimes.md 6.1): statfs() on the root
 * itself, never "is cgroup2 mounted somewhere".
 *   - root is cgroup2                              -> unified, v2 backend
 *   - root/unified is cgroup2                      -> hybrid, v1 backend
 *   - some root/<dir> is a v1 cgroupfs             -> legacy, v1 backend
 *   - no cgroup file system at or under the root   -> at /sys/fs/cgroup an
 *     error (cgroups not mounted); elsewhere a fake tree (unit tests):
 *     unified if root/cgroup.controllers exists, hybrid if root/unified
 *     exists, else legacy.
 * Hybrid always uses the v1 controllers for limits, even if someone moved a
 * controller to the unified tree: we never put anything in unified/.
 *
 * Safety rules: we create and remove only <mount>/<parent>/<name> (and the
 * <parent> directories, which are created when missing and never removed);
 * the one write outside them is enabling controllers in the
 * cgroup.subtree_control of the v2 root and of the <parent> levels.
 * Processes are signalled through pidfds that are checked against a second
 * read of cgroup.procs, so a recycled pid is never hit.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

#include "cgroup_internal.h"
#include "vslice/util.h"

#define CG_DEFAULT_ROOT	      "/sys/fs/cgroup"
#define CG_DEFAULT_PARENT     "vslice"
#define CG_DEFAULT_TIMEOUT_MS 5000
#define CG_MAX_DEPTH	      32

const char *const cg_ctrl_names[CG_NCTRL] = {"memory", "pids", "cpu", "cpuacct", "freezer"};

const char *cgroup_mode_name(enum cgroup_mode mode)
{
	switch (mode) {
	case CGROUP_UNIFIED:
		return "unified";
	case CGROUP_HYBRID:
		return "hybrid";
	case CGROUP_LEGACY:
		return "legacy";
	}
	return "unknown";
}

/* ---- small helpers ---------------------------------------------------- */

char *cg_join(const char *dir, const char *file)
{
	return vs_xasprintf("%s/%s", dir, file);
}

void cg_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool cg_file_exists(const char *dir, const char *file)
{
	cleanup_free char *p = cg_join(dir, file);
	return access(p, F_OK) == 0;
}

int cg_write(const struct cgroup *cg, const char *dir, const char *label, const char *file,
	     const char *val, struct vs_error *err)
{
	cleanup_free char *p = cg_join(dir, file);
	/* Real cgroupfs files exist or the knob is not there (O_CREAT would
	 * turn that into a misleading EACCES); fake-tree files are made here. */
	int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW;
	if (cg->fake)
		flags |= O_CREAT | O_TRUNC;
	cleanup_close int fd = open(p, flags, 0644);
	if (fd < 0)
		return vs_error_sys(err, errno, "cgroup %s: write %s \"%s\"", label, file, val);
	size_t len = strlen(val);
	ssize_t w = write(fd, val, len);
	if (w < 0 || (size_t)w != len)
		return vs_error_sys(err, w < 0 ? errno : EIO, "cgroup %s: write %s \"%s\"", label,
				    file, val);
	return 0;
}

int cg_write_u64(const struct cgroup *cg, const struct cg_hier *h, const char *file, uint64_t v,
		 struct vs_error *err)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return cg_write(cg, h->path, h->label, file, buf, err);
}

int cg_write_if_exists(const struct cgroup *cg, const char *dir, const char *label,
		       const char *file, const char *val, struct vs_error *err)
{
	if (!cg_file_exists(dir, file))
		return 0;
	return cg_write(cg, dir, label, file, val, err);
}

int cg_read(const char *dir, const char *label, const char *file, char **out, struct vs_error *err)
{
	cleanup_free char *p = cg_join(dir, file);
	struct vs_error e2;
	if (vs_read_file(p, 0, out, NULL, &e2) < 0)
		return vs_error_sys(err, e2.code, "cgroup %s: read %s", label, file);
	return 0;
}

int cg_parse_u64(const char *s, uint64_t *v, bool *is_max)
{
	while (isspace((unsigned char)*s))
		s++;
	if (is_max)
		*is_max = false;
	if (!strncmp(s, "max", 3)) {
		s += 3;
		while (isspace((unsigned char)*s))
			s++;
		if (*s || !is_max)
			return -EINVAL;
		*is_max = true;
		*v = 0;
		return 0;
	}
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -EINVAL;
	*v = x;
	return 0;
}

int cg_keyed_u64(const char *buf, const char *key, uint64_t *v)
{
	size_t klen = strlen(key);
	for (const char *line = buf; line && *line;) {
		const char *nl = strchr(line, '\n');
		if (!strncmp(line, key, klen) && (line[klen] == ' ' || line[klen] == '\t')) {
			char tmp[64];
			size_t n = nl ? (size_t)(nl - line) - klen : strlen(line + klen);
			if (n >= sizeof(tmp))
				return -EINVAL;
			memcpy(tmp, line + klen, n);
			tmp[n] = '\0';
			return cg_parse_u64(tmp, v, NULL);
		}
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

int cg_read_u64_opt(const char *dir, const char *label, const char *file, uint64_t *v, bool *is_max,
		    struct vs_error *err)
{
	cleanup_free char *buf = NULL;
	int r = cg_read(dir, label, file, &buf, err);
	if (r == -ENOENT) {
		vs_error_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	if (cg_parse_u64(buf, v, is_max) < 0)
		return vs_error_set(err, EINVAL, "cgroup %s: %s: unexpected content \"%.40s\"",
				    label, file, buf);
	return 0;
}

int cg_wait(struct cgroup *cg, int (*pred)(struct cgroup *, void *, struct vs_error *), void *arg,
	    struct vs_error *err)
{
	uint64_t deadline = vs_now_ns() + (uint64_t)cg->timeout_ms * 1000000ull;
	unsigned nap = 1;
	for (;;) {
		int r = pred(cg, arg, err);
		if (r != 0)
			return r < 0 ? r : 0;
		if (vs_now_ns() >= deadline)
			return -ETIMEDOUT;
		cg_sleep_ms(nap);
		if (nap < 20)
			nap *= 2;
	}
}

struct cg_hier *cg_hier_for(struct cgroup *cg, unsigned c)
{
	for (size_t i = 0; i < cg->nhier; i++)
		if (cg->hier[i].ctrls & c)
			return &cg->hier[i];
	return NULL;
}

/* ---- processes ---------------------------------------------------------- */

struct pidvec {
	pid_t *v;
	size_t n, cap;
	/* Listed as 0: processes outside the reader's pid namespace. */
	size_t hidden;
};

static void pidvec_push(struct pidvec *pv, pid_t p)
{
	if (pv->n == pv->cap) {
		pv->cap = pv->cap ? pv->cap * 2 : 64;
		pid_t *nv = realloc(pv->v, pv->cap * sizeof(*nv));
		if (!nv)
			abort();
		pv->v = nv;
	}
	pv->v[pv->n++] = p;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

/* Whether a directory entry is a directory (d_type, else a stat). */
static bool entry_is_dir(DIR *d, const struct dirent *de)
{
	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	struct stat st;
	return fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Whether dir may have subdirectories: a directory's link count is 2 plus
 * its subdirectories on cgroupfs (kernfs keeps it so), tmpfs and ext4; 1 is
 * "not counted" (some file systems): maybe. Saves listing every control
 * file of a cgroup that has no sub-cgroups (nearly all). */
static bool has_subdirs(const char *dir)
{
	struct stat st;
	return stat(dir, &st) < 0 || st.st_nlink != 2;
}

static int collect_dir(const char *dir, const char *label, int depth, struct pidvec *pv,
		       struct vs_error *err)
{
	cleanup_free char *buf = NULL;
	int r = cg_read(dir, label, "cgroup.procs", &buf, err);
	if (r == -ENOENT) {
		/* The cgroup went away (opendir below says so), or a fake dir
		 * nothing was written to. */
		vs_error_clear(err);
		buf = vs_xstrdup("");
	} else if (r < 0) {
		return r;
	}
	for (char *s = buf; *s;) {
		char *end;
		long p = strtol(s, &end, 10);
		if (end == s) {
			s++;
			continue;
		}
		if (p > 0 && p <= INT_MAX)
			pidvec_push(pv, (pid_t)p);
		else if (p == 0)
			pv->hidden++;
		s = end;
	}
	if (depth >= CG_MAX_DEPTH || !has_subdirs(dir))
		return 0;
	/* Sub-cgroups the slice made for itself (cgroup namespace + delegation). */
	cleanup_closedir DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "cgroup %s: opendir", label);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!entry_is_dir(d, de))
			continue;
		cleanup_free char *sub = cg_join(dir, de->d_name);
		cleanup_free char *sublabel = cg_join(label, de->d_name);
		if ((r = collect_dir(sub, sublabel, depth + 1, pv, err)) < 0)
			return r;
	}
	return 0;
}

/* Sorted, duplicate-free union of every hierarchy's processes. */
static int collect_pids(struct cgroup *cg, struct pidvec *pv, struct vs_error *err)
{
	for (size_t i = 0; i < cg->nhier; i++) {
		int r = collect_dir(cg->hier[i].path, cg->hier[i].label, 0, pv, err);
		if (r < 0)
			return r;
	}
	if (pv->n) {
		qsort(pv->v, pv->n, sizeof(pid_t), cmp_pid);
		size_t m = 1;
		for (size_t i = 1; i < pv->n; i++)
			if (pv->v[i] != pv->v[m - 1])
				pv->v[m++] = pv->v[i];
		pv->n = m;
	}
	return 0;
}

/* Zombies are not listed by a real cgroupfs, but a fake tree lists what was
 * written to it; a dead process is not something left to kill either way. */
static bool pid_is_dead(pid_t p)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	char *rp = strrchr(buf, ')');
	if (!rp || rp[1] != ' ')
		return false;
	return rp[2] == 'Z' || rp[2] == 'X';
}

int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, struct vs_error *err)
{
	struct pidvec pv = {0};
	int r = collect_pids(cg, &pv, err);
	if (r < 0) {
		free(pv.v);
		return r;
	}
	*pids = pv.v;
	*n = pv.n;
	return 0;
}

/* Pidfds held at once: a big slice must not run the caller out of fds. */
#define CG_PIDFD_BATCH 256

static void close_pidfds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Signal pids[0..n) (taken from an earlier read of cgroup.procs). */
static int signal_batch(struct cgroup *cg, const pid_t *pids, size_t n, int sig, size_t *left,
			struct vs_error *err)
{
	int fds[CG_PIDFD_BATCH];
	size_t nfds = 0;
	int r = 0;
	for (; nfds < n; nfds++) {
		fds[nfds] = pidfd_open(pids[nfds], 0);
		if (fds[nfds] < 0 && errno != ESRCH) {
			r = vs_error_sys(err, errno, "cgroup %s: pidfd_open(%d)", cg->label,
					 (int)pids[nfds]);
			close_pidfds(fds, nfds);
			return r;
		}
	}
	/* A pid still listed now belongs to a process inside the cgroup; if that
	 * is not the process our pidfd holds, ours is dead and the signal is a
	 * harmless ESRCH. */
	struct pidvec now = {0};
	r = collect_pids(cg, &now, err);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (fds[i] < 0 || !now.n ||
		    !bsearch(&pids[i], now.v, now.n, sizeof(pid_t), cmp_pid) ||
		    pid_is_dead(pids[i]))
			continue;
		if (pidfd_send_signal(fds[i], sig, NULL, 0) < 0) {
			if (errno != ESRCH)
				r = vs_error_sys(err, errno, "cgroup %s: signal %d to pid %d",
						 cg->label, sig, (int)pids[i]);
			continue;
		}
		(*left)++;
	}
	free(now.v);
	close_pidfds(fds, n);
	return r;
}

int cg_signal_pass(struct cgroup *cg, int sig, size_t *remaining, struct vs_error *err)
{
	struct pidvec pv = {0};
	size_t left = 0;
	int r = collect_pids(cg, &pv, err);
	cleanup_free pid_t *all = pv.v;
	if (r < 0)
		return r;
	/* A caller in another pid namespace (slicectl run inside a container)
	 * cannot name them: say so at once rather than wait for a cgroup that
	 * never empties. Only v2's cgroup.kill reaches them. */
	if (pv.hidden && !(cg->mode == CGROUP_UNIFIED && sig == SIGKILL))
		return vs_error_set(
		    err, EPERM,
		    "cgroup %s: %zu process(es) outside this pid namespace cannot be "
		    "signalled from here (run slicectl in the host's pid namespace)",
		    cg->label, pv.hidden);
	/* Never the caller: it may be the launcher, or a test. */
	pid_t self = getpid();
	size_t m = 0;
	for (size_t i = 0; i < pv.n; i++)
		if (all[i] != self)
			all[m++] = all[i];
	for (size_t off = 0; off < m; off += CG_PIDFD_BATCH) {
		size_t n = m - off < CG_PIDFD_BATCH ? m - off : CG_PIDFD_BATCH;
		if ((r = signal_batch(cg, all + off, n, sig, &left, err)) < 0)
			return r;
	}
	if (remaining)
		*remaining = left;
	return 0;
}

/*
 * Wait up to ms for one of the cgroup's processes to end: poll on pidfds of
 * (up to 64 of) them, so destroy sees the end of a slice as it happens
 * instead of at the next of a series of growing sleeps. A fake tree lists
 * pids that are not the cgroup's: it sleeps.
 */
static void wait_some_exit(struct cgroup *cg, unsigned ms)
{
	struct pidvec pv = {0};
	struct vs_error ignore;
	struct pollfd fds[64];
	nfds_t n = 0;
	if (!cg->fake && collect_pids(cg, &pv, &ignore) == 0)
		for (size_t i = 0; i < pv.n && n < VS_ARRAY_SIZE(fds); i++) {
			int fd = pv.v[i] != getpid() ? pidfd_open(pv.v[i], 0) : -1;
			if (fd >= 0)
				fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
		}
	free(pv.v);
	if (n == 0) {
		cg_sleep_ms(ms);
		return;
	}
	while (poll(fds, n, (int)ms) < 0 && errno == EINTR)
		;
	for (nfds_t i = 0; i < n; i++)
		close(fds[i].fd);
}

int cg_kill_until_empty(struct cgroup *cg, int (*before)(struct cgroup *, struct vs_error *),
			struct vs_error *err)
{
	uint64_t deadline = vs_now_ns() + (uint64_t)cg->timeout_ms * 1000000ull;
	unsigned nap = 1;
	for (;;) {
		int r;
		size_t left = 0;
		if ((r = cg_signal_pass(cg, SIGKILL, &left, err)) < 0)
			return r;
		/* after the signal: a frozen task acts on the pending SIGKILL as
		 * it is thawed, before it returns to user space */
		if (before && (r = before(cg, err)) < 0)
			return r;
		if (left == 0)
			return 0;
		if (vs_now_ns() >= deadline)
			return vs_error_set(
			    err, ETIMEDOUT,
			    "cgroup %s: %zu process(es) still alive %u ms after SIGKILL", cg->label,
			    left, cg->timeout_ms);
		wait_some_exit(cg, nap);
		if (nap < 20)
			nap *= 2;
	}
}

/* ---- directories -------------------------------------------------------- */

int cg_mkdir(const char *path, const char *label, struct vs_error *err)
{
	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno == EEXIST)
		return 1;
	return vs_error_sys(err, errno, "cgroup %s: mkdir %s", label, path);
}

int cg_mkdir_parent(const struct cgroup *cg, const struct cg_hier *h, struct vs_error *err)
{
	/* Component by component from the mount, never above it. */
	cleanup_free char *path = vs_xstrdup(h->parent);
	size_t base = strlen(h->mount);
	for (char *p = path + base + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (cg_mkdir(path, h->label, err) < 0)
				return -err->code;
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

static bool knob_name(const char *n)
{
	static const char *const prefixes[] = {"cgroup.", "memory.",  "pids.",
					       "cpu.",	  "cpuacct.", "freezer."};
	for (size_t i = 0; i < VS_ARRAY_SIZE(prefixes); i++)
		if (!strncmp(n, prefixes[i], strlen(prefixes[i])))
			return true;
	return false;
}

void cg_fake_populate(const struct cgroup *cg, const struct cg_hier *h)
{
	if (!cg->fake)
		return;
	cleanup_closedir DIR *d = opendir(h->mount);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		cleanup_free char *p = cg_join(h->path, de->d_name);
		if (S_ISREG(st.st_mode)) {
			int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd >= 0)
				close(fd);
		} else if (S_ISDIR(st.st_mode) && knob_name(de->d_name)) {
			(void)mkdir(p, 0755);
		}
	}
}

static int rmdir_retry(struct cgroup *cg, const char *path, const char *label, struct vs_error *err)
{
	uint64_t deadline = vs_now_ns() + (uint64_t)cg->timeout_ms * 1000000ull;
	/* EBUSY right after the last task died: the kernel drops the css a
	 * moment later (usually well under a millisecond: 1, 2, 4, 8, then
	 * 10 ms steps, not a whole 10 ms for the first). */
	unsigned step = 1;
	while (rmdir(path) < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno != EBUSY || vs_now_ns() >= deadline)
			return vs_error_sys(err, errno, "cgroup %s: rmdir", label);
		cg_sleep_ms(step);
		step = step * 2 > 10 ? 10 : step * 2;
	}
	return 0;
}

static int remove_tree(struct cgroup *cg, const char *path, const char *label, int depth,
		       struct vs_error *err)
{
	/* A slice's cgroup seldom has sub-cgroups: one rmdir, no listing of
	 * its control files. Busy (sub-cgroups, or the kernel not yet done
	 * with the last task): list, remove what is below, retry. */
	if (rmdir(path) == 0 || errno == ENOENT)
		return 0;
	if (depth < CG_MAX_DEPTH && has_subdirs(path)) {
		cleanup_closedir DIR *d = opendir(path);
		if (!d)
			return errno == ENOENT
				   ? 0
				   : vs_error_sys(err, errno, "cgroup %s: opendir", label);
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (!entry_is_dir(d, de))
				continue;
			cleanup_free char *sub = cg_join(path, de->d_name);
			cleanup_free char *sublabel = cg_join(label, de->d_name);
			int r = remove_tree(cg, sub, sublabel, depth + 1, err);
			if (r < 0)
				return r;
		}
	}
	return rmdir_retry(cg, path, label, err);
}

int cg_remove_dir(struct cgroup *cg, const struct cg_hier *h, struct vs_error *err)
{
	if (cg->fake) {
		int r = vs_rm_rf(h->path, err);
		return r < 0 ? vs_error_wrap(err, "cgroup %s: remove", h->label) : 0;
	}
	/* Control files go with the directory on cgroupfs; only sub-cgroups
	 * need removing first. */
	return remove_tree(cg, h->path, h->label, 0, err);
}

/* ---- detection and the handle ------------------------------------------ */

static bool is_fs(const char *path, unsigned long magic)
{
	struct statfs fs;
	return statfs(path, &fs) == 0 && (unsigned long)fs.f_type == magic;
}

static int detect(const char *root, enum cgroup_mode *mode, bool *fake, struct vs_error *err)
{
	struct statfs fs;
	if (statfs(root, &fs) < 0)
		return vs_error_sys(err, errno, "cgroup root %s: statfs", root);
	*fake = false;
	if ((unsigned long)fs.f_type == CGROUP2_SUPER_MAGIC) {
		*mode = CGROUP_UNIFIED;
		return 0;
	}
	if ((unsigned long)fs.f_type == CGROUP_SUPER_MAGIC)
		return vs_error_set(
		    err, ENOTSUP,
		    "cgroup root %s: a v1 hierarchy mounted on the root itself is not "
		    "supported (expected cgroup2, or a tmpfs with one mount per controller)",
		    root);
	cleanup_free char *unified = cg_join(root, "unified");
	if (is_fs(unified, CGROUP2_SUPER_MAGIC)) {
		*mode = CGROUP_HYBRID;
		return 0;
	}
	cleanup_closedir DIR *d = opendir(root);
	if (!d)
		return vs_error_sys(err, errno, "cgroup root %s: opendir", root);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		cleanup_free char *p = cg_join(root, de->d_name);
		if (is_fs(p, CGROUP_SUPER_MAGIC)) {
			*mode = CGROUP_LEGACY;
			return 0;
		}
	}
	/* No cgroup file system anywhere. At the real location that means
	 * cgroups are not mounted: refuse, rather than "enforce" limits by
	 * writing plain files. Anywhere else it is a fake tree (unit tests);
	 * the layout says which. */
	size_t n = strlen(root);
	while (n > 1 && root[n - 1] == '/')
		n--;
	if (n == strlen(CG_DEFAULT_ROOT) && !strncmp(root, CG_DEFAULT_ROOT, n))
		return vs_error_set(
		    err, ENOTSUP,
		    "cgroup root %s: no cgroup file system mounted (neither cgroup2 "
		    "nor v1 controllers)",
		    root);
	*fake = true;
	struct stat st;
	if (cg_file_exists(root, "cgroup.controllers"))
		*mode = CGROUP_UNIFIED;
	else if (stat(unified, &st) == 0 && S_ISDIR(st.st_mode))
		*mode = CGROUP_HYBRID;
	else
		*mode = CGROUP_LEGACY;
	return 0;
}

static const char *default_root(const char *root)
{
	if (root && *root)
		return root;
	const char *e = getenv("VSLICE_CGROUP_ROOT");
	return e && *e ? e : CG_DEFAULT_ROOT;
}

int cgroup_detect(const char *root, enum cgroup_mode *mode, struct vs_error *err)
{
	bool fake;
	return detect(default_root(root), mode, &fake, err);
}

/* One path component of a cgroup name: no '/', no leading '.', a modest
 * character set (the name ends up in error messages and in paths other
 * tools read), at most 128 bytes. */
static bool valid_component(const char *s, size_t len)
{
	if (len == 0 || len > 128 || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != '@')
			return false;
	}
	return true;
}

static int check_parent(const char *parent, struct vs_error *err)
{
	const char *s = parent;
	if (!*s)
		return vs_error_set(err, EINVAL, "cgroup parent is empty");
	for (;;) {
		const char *slash = strchr(s, '/');
		size_t len = slash ? (size_t)(slash - s) : strlen(s);
		if (!valid_component(s, len))
			return vs_error_set(
			    err, EINVAL,
			    "cgroup parent \"%s\": invalid component (letters, digits, "
			    "'-', '_', '.', '@'; not starting with '.')",
			    parent);
		if (!slash)
			return 0;
		s = slash + 1;
	}
}

void cgroup_free(struct cgroup *cg)
{
	if (!cg)
		return;
	for (size_t i = 0; i < cg->nhier; i++) {
		free(cg->hier[i].mount);
		free(cg->hier[i].parent);
		free(cg->hier[i].path);
		free(cg->hier[i].label);
	}
	free(cg->root);
	free(cg->parent);
	free(cg->name);
	free(cg->label);
	free(cg);
}

static void cgroup_freep(struct cgroup **p)
{
	cgroup_free(*p);
}

int cgroup_open(const char *root, const char *parent, const char *name, struct cgroup **out,
		struct vs_error *err)
{
	root = default_root(root);
	if (!parent || !*parent) {
		const char *e = getenv("VSLICE_CGROUP_PARENT");
		parent = e && *e ? e : CG_DEFAULT_PARENT;
	}
	while (*parent == '/')
		parent++;
	if (!name || !valid_component(name, strlen(name)))
		return vs_error_set(
		    err, EINVAL,
		    "cgroup name \"%s\": invalid (letters, digits, '-', '_', '.', '@'; "
		    "not starting with '.'; at most 128 bytes)",
		    name ? name : "");
	int r = check_parent(parent, err);
	if (r < 0)
		return r;

	__attribute__((cleanup(cgroup_freep))) struct cgroup *cg = vs_xcalloc(1, sizeof(*cg));
	cg->root = vs_xstrdup(root);
	/* Trailing slashes on the root would double up in every path. */
	for (size_t n = strlen(cg->root); n > 1 && cg->root[n - 1] == '/'; n--)
		cg->root[n - 1] = '\0';
	cg->parent = vs_xstrdup(parent);
	cg->name = vs_xstrdup(name);
	cg->label = vs_xasprintf("%s/%s", cg->parent, cg->name);
	cg->timeout_ms = CG_DEFAULT_TIMEOUT_MS;
	if ((r = detect(cg->root, &cg->mode, &cg->fake, err)) < 0)
		return r;
	cg->ops = cg->mode == CGROUP_UNIFIED ? &cgroup_v2_ops : &cgroup_v1_ops;
	if ((r = cg->ops->init(cg, err)) < 0)
		return r;
	for (size_t i = 0; i < cg->nhier; i++)
		cg->ctrls |= cg->hier[i].ctrls;
	*out = steal_pointer(&cg);
	return 0;
}

enum cgroup_mode cgroup_get_mode(const struct cgroup *cg)
{
	return cg->mode;
}

/* ---- the contract ------------------------------------------------------- */

void cg_cpu_quota(uint64_t millis, uint64_t *quota_us, uint64_t *period_us)
{
	/* The kernel refuses quotas under 1 ms: below 10 millicpus the period
	 * grows to its 1 s maximum instead. */
	*period_us = millis < 10 ? 1000000 : 100000;
	*quota_us = millis * (*period_us / 1000);
}

unsigned cg_limits_ctrls(const struct cgroup_limits *lim)
{
	unsigned need = 0;
	if (lim->cpu_millis || lim->cpu_weight)
		need |= CG_CPU;
	if (lim->memory_bytes)
		need |= CG_MEMORY;
	if (lim->pids_max)
		need |= CG_PIDS;
	return need;
}

static int check_limits(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	if (lim->cpu_weight > 10000)
		return vs_error_set(err, EINVAL, "cgroup %s: cpu weight %llu out of range 1..10000",
				    cg->label, (unsigned long long)lim->cpu_weight);
	if (lim->cpu_millis > UINT64_MAX / 1000)
		return vs_error_set(err, EINVAL, "cgroup %s: cpu %llu millicpus out of range",
				    cg->label, (unsigned long long)lim->cpu_millis);
	unsigned need = cg_limits_ctrls(lim);
	for (unsigned i = 0; i < CG_NCTRL; i++)
		if ((need & (1u << i)) && !(cg->ctrls & (1u << i)))
			return vs_error_set(
			    err, ENOTSUP,
			    "cgroup %s: a %s limit was asked for, but the %s controller "
			    "is not available under %s",
			    cg->label, cg_ctrl_names[i], cg_ctrl_names[i], cg->root);
	return 0;
}

int cgroup_create(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	static const struct cgroup_limits none;
	if (!lim)
		lim = &none;
	int r = check_limits(cg, lim, err);
	if (r < 0)
		return r;
	return cg->ops->create(cg, lim, err);
}

int cgroup_rename(struct cgroup *from, struct cgroup *to, const struct cgroup_limits *lim,
		  struct vs_error *err)
{
	static const struct cgroup_limits none;
	if (!lim)
		lim = &none;
	int r = check_limits(to, lim, err);
	if (r < 0)
		return r;
	if (from->nhier != to->nhier || strcmp(from->parent, to->parent) != 0)
		return vs_error_set(err, EINVAL, "cgroup %s: rename to %s: not siblings",
				    from->label, to->label);
	/* cgroupfs renames a directory within its parent (kernfs_rename): the
	 * memcg and every other css stay as they are. */
	for (size_t i = 0; i < from->nhier; i++) {
		if (rename(from->hier[i].path, to->hier[i].path) < 0) {
			int e = errno;
			struct vs_error ignore;
			for (size_t j = i; j-- > 0;)
				if (rename(to->hier[j].path, from->hier[j].path) < 0)
					vs_error_clear(&ignore);
			return vs_error_sys(err, e, "cgroup %s: rename to %s", from->hier[i].label,
					    to->name);
		}
	}
	return to->ops->limits(to, lim, err);
}

int cgroup_enter(struct cgroup *cg, pid_t pid, struct vs_error *err)
{
	if (pid <= 0)
		return vs_error_set(err, EINVAL, "cgroup %s: enter: bad pid %d", cg->label,
				    (int)pid);
	char buf[24];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (size_t i = 0; i < cg->nhier; i++) {
		/* A fake tree would create the file in a missing directory's place. */
		if (cg->fake && access(cg->hier[i].path, F_OK) < 0)
			return vs_error_sys(err, errno, "cgroup %s: write cgroup.procs \"%s\"",
					    cg->hier[i].label, buf);
		int r = cg_write(cg, cg->hier[i].path, cg->hier[i].label, "cgroup.procs", buf, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * On v1, "0" written to a hierarchy's `tasks` moves the writing thread only,
 * and the kernel then skips cgroup_threadgroup_rwsem (cgroup_procs_write_
 * start: pid 0 and no threadgroup): no RCU grace period, 0.04 ms instead of
 * 7-23 ms on this hybrid host after an idle spell. For a single-threaded
 * caller (the launcher, the exec helper: just forked) one thread is the
 * whole process. v2 has no such file for domain cgroups: cgroup.procs "0".
 */
int cgroup_enter_self(struct cgroup *cg, struct vs_error *err)
{
	const char *file = cg->mode == CGROUP_UNIFIED ? "cgroup.procs" : "tasks";
	for (size_t i = 0; i < cg->nhier; i++) {
		if (cg->fake && access(cg->hier[i].path, F_OK) < 0)
			return vs_error_sys(err, errno, "cgroup %s: write %s \"0\"",
					    cg->hier[i].label, file);
		int r = cg_write(cg, cg->hier[i].path, cg->hier[i].label, file, "0", err);
		if (r < 0)
			return r;
	}
	return 0;
}

int cgroup_dirfd(struct cgroup *cg, struct vs_error *err)
{
	return cg->ops->dirfd(cg, err);
}

static int set_frozen(struct cgroup *cg, bool frozen, struct vs_error *err)
{
	if (!(cg->ctrls & CG_FREEZER))
		return vs_error_set(err, ENOTSUP, "cgroup %s: %s: no freezer controller under %s",
				    cg->label, frozen ? "freeze" : "thaw", cg->root);
	return cg->ops->set_frozen(cg, frozen, err);
}

int cgroup_freeze(struct cgroup *cg, struct vs_error *err)
{
	return set_frozen(cg, true, err);
}

int cgroup_thaw(struct cgroup *cg, struct vs_error *err)
{
	return set_frozen(cg, false, err);
}

int cgroup_kill(struct cgroup *cg, int sig, struct vs_error *err)
{
	if (sig < 0 || sig >= NSIG)
		return vs_error_set(err, EINVAL, "cgroup %s: kill: bad signal %d", cg->label, sig);
	return cg->ops->kill(cg, sig, err);
}

bool cgroup_exists(struct cgroup *cg)
{
	for (size_t i = 0; i < cg->nhier; i++) {
		struct stat st;
		if (stat(cg->hier[i].path, &st) == 0 && S_ISDIR(st.st_mode))
			return true;
	}
	return false;
}

int cgroup_stats(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err)
{
	memset(st, 0, sizeof(*st));
	if (!cgroup_exists(cg))
		return vs_error_set(err, ENOENT, "cgroup %s: stats: no such cgroup", cg->label);
	return cg->ops->stats(cg, st, err);
}

int cgroup_destroy(struct cgroup *cg, struct vs_error *err)
{
	if (!cgroup_exists(cg))
		return 0;
	int r = cg->ops->kill(cg, SIGKILL, err);
	if (r < 0)
		return r;
	/* Every hierarchy, even after a failure, so as little as possible is
	 * left; the first error is the one reported. */
	struct vs_error scratch;
	int first = 0;
	for (size_t i = cg->nhier; i-- > 0;) {
		r = cg_remove_dir(cg, &cg->hier[i], first ? &scratch : err);
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

const char *cgroup_path(struct cgroup *cg, const char *controller)
{
	if (cg->mode == CGROUP_UNIFIED || !controller)
		return cg->nhier ? cg->hier[0].path : NULL;
	for (unsigned i = 0; i < CG_NCTRL; i++)
		if (!strcmp(controller, cg_ctrl_names[i])) {
			struct cg_hier *h = cg_hier_for(cg, 1u << i);
			return h ? h->path : NULL;
		}
	return NULL;
}
