/*
 * slice.c - local slices: the verbs behind slicectl's local mode.
 *
 * <root>/slices/<name>/ holds spec.json, state.json, upper/ work/ (overlay),
 * lower/ rootfs/ (mount points used only inside the slice's own mount
 * namespace), log, exit, lock. Every verb takes the slice's flock first, so
 * two slicectl calls never interleave on one slice; create and destroy also
 * take <root>/.lock to reserve or free a name.
 *
 * The pid in state.json is only trusted when the process still has the
 * recorded start time and sits in the slice's own cgroup: a stale or
 * tampered state never makes us signal a foreign process.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node_internal.h"
#include "vslice/caps.h"
#include "vslice/cgroup.h"
#include "vslice/idrange.h"
#include "vslice/image.h"
#include "vslice/pool.h"
#include "vslice/reaper.h"
#include "vslice/seccomp_policy.h"
#include "vslice/sliver.h"
#include "vslice/trace.h"
#include "vslice/units.h"
#include "vslice/util.h"

static void cgroup_freep(struct cgroup **cg)
{
	if (*cg)
		cgroup_free(*cg);
}
#define cleanup_cgroup __attribute__((cleanup(cgroup_freep)))

static void spec_freep(struct slice_spec *s)
{
	slice_spec_free(s);
}
#define cleanup_spec __attribute__((cleanup(spec_freep)))

const char *slice_default_root(void)
{
	const char *r = getenv("VSLICE_ROOT");
	return r && *r ? r : "/var/lib/vslice";
}

char *slice_dir(const char *root, const char *name)
{
	return vs_xasprintf("%s/slices/%s", root, name);
}

static char *slice_file(const char *root, const char *name, const char *file)
{
	return vs_xasprintf("%s/slices/%s/%s", root, name, file);
}

/* flock a lock file; returns the fd (the lock lives as long as it). */
static int lock_path(const char *path, struct vs_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "lock %s", path);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return vs_error_sys(err, e, "lock %s", path);
		}
	}
	return fd;
}

static int lock_root(const char *root, struct vs_error *err)
{
	int r = vs_mkdir_p(root, 0711, err);
	if (r < 0)
		return r;
	/* A slice's PID 1 (its own uid) walks down to its rootfs: the root
	 * must be searchable by others (mktemp -d makes it 0700). */
	struct stat st;
	if (stat(root, &st) == 0 && !(st.st_mode & S_IXOTH) &&
	    chmod(root, (st.st_mode & 07777) | S_IXOTH) < 0)
		return vs_error_sys(err, errno, "chmod o+x %s", root);
	cleanup_free char *p = vs_xasprintf("%s/.lock", root);
	return lock_path(p, err);
}

/* A valid name whose state directory exists (not a symlink). */
static int require_slice(const char *root, const char *name, struct vs_error *err)
{
	int r = vs_check_name("slice", name, err);
	if (r < 0)
		return r;
	cleanup_free char *d = slice_dir(root, name);
	struct stat st;
	if (lstat(d, &st) < 0 || !S_ISDIR(st.st_mode))
		return vs_error_set(err, ENOENT, "no such slice (see: slicectl list)");
	return 0;
}

/* The lock is the file in the slice's directory as it is when we hold it:
 * a destroy renames the directory away (with its lock file) while others
 * wait, and a create may make the name anew, with a lock file of its own.
 * Whoever waited looks again. */
static int lock_slice(const char *root, const char *name, struct vs_error *err)
{
	cleanup_free char *p = slice_file(root, name, "lock");
	for (;;) {
		int r = require_slice(root, name, err);
		if (r < 0)
			return r;
		int fd = lock_path(p, err);
		if (fd < 0)
			return require_slice(root, name, err) < 0 ? -ENOENT : fd;
		struct stat held, now;
		if (fstat(fd, &held) == 0 && stat(p, &now) == 0 && held.st_dev == now.st_dev &&
		    held.st_ino == now.st_ino)
			return fd;
		close(fd);
	}
}

static int open_cgroup(const char *name, struct cgroup **cg, struct vs_error *err)
{
	return cgroup_open(NULL, NULL, name, cg, err);
}

static int write_json_file(const char *root, const char *name, const char *file, char *text,
			   bool durable, struct vs_error *err)
{
	if (!text)
		abort();
	cleanup_free char *p = slice_file(root, name, file);
	int r = vs_write_file_replace(p, text, strlen(text), 0600, durable, err);
	free(text);
	return r;
}

/* state.json is replaced atomically but not fsync'd: it caches what the
 * kernel knows (PID 1, its start time, the exit record), and after a host
 * crash every slice is stopped whatever it says. */
static int save_state(const char *root, const char *name, const struct slice_state *st,
		      struct vs_error *err)
{
	return write_json_file(root, name, "state.json", state_to_json(st), false, err);
}

/* A slice's JSON state file, at most 1 MiB (caller frees *text). */
static int read_slice_file(const char *root, const char *name, const char *file, char **text,
			   struct vs_error *err)
{
	cleanup_free char *p = slice_file(root, name, file);
	return vs_read_file(p, 1 << 20, text, NULL, err);
}

static int read_spec(const char *root, const char *name, struct slice_spec *spec,
		     struct vs_error *err)
{
	cleanup_free char *text = NULL;
	int r = read_slice_file(root, name, "spec.json", &text, err);
	return r < 0 ? r : spec_from_json(text, name, spec, err);
}

static int read_state(const char *root, const char *name, struct slice_state *st,
		      struct vs_error *err)
{
	cleanup_free char *text = NULL;
	int r = read_slice_file(root, name, "state.json", &text, err);
	return r < 0 ? r : state_from_json(text, st, err);
}

/* Is pid (with this start time) the PID 1 of this slice? */
static bool pid_is_slice(struct cgroup *cg, pid_t pid, uint64_t starttime)
{
	if (pid <= 1 || !starttime || sliver_proc_starttime(pid) != starttime)
		return false;
	cleanup_free pid_t *pids = NULL;
	size_t n = 0;
	struct vs_error ignore;
	if (cgroup_pids(cg, &pids, &n, &ignore) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

/* The cgroup outlives the run: what it counted during the run says why the
 * run ended (an OOM kill shows as SIGKILL in the exit record). */
static void set_exit_cause(struct cgroup *cg, struct slice_state *st)
{
	struct cgroup_stats cs = {0};
	struct vs_error ignore;
	if (cgroup_stats(cg, &cs, &ignore) < 0)
		return;
	uint64_t oom = cs.oom_kills > st->oom_kills_base ? cs.oom_kills - st->oom_kills_base : 0;
	uint64_t pids =
	    cs.pids_refused > st->pids_refused_base ? cs.pids_refused - st->pids_refused_base : 0;
	snprintf(st->exit_reason, sizeof(st->exit_reason), "%s",
		 slice_exit_cause(st->exit_reason, st->exit_code, oom, pids));
}

/* Bring state up to date with the kernel: a dead PID 1 means exited. */
static void refresh_state(const char *root, const char *name, struct cgroup *cg,
			  struct slice_state *st)
{
	if (st->status != SLICE_RUNNING && st->status != SLICE_FROZEN)
		return;
	if (pid_is_slice(cg, st->pid, st->pid_starttime)) {
		struct cgroup_stats cs;
		struct vs_error ignore;
		if (cgroup_stats(cg, &cs, &ignore) == 0)
			st->status = cs.frozen ? SLICE_FROZEN : SLICE_RUNNING;
		return;
	}
	st->status = SLICE_EXITED;
	st->pid = 0;
	st->pid_starttime = 0;
	cleanup_free char *p = slice_file(root, name, "exit");
	cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	time_t fin = 0;
	if (fd >= 0 && sliver_read_exit(fd, &st->exit_code, st->exit_reason,
					sizeof(st->exit_reason), &st->restarts, &fin) == 0) {
		st->finished = fin;
	} else {
		st->exit_code = 137;
		snprintf(st->exit_reason, sizeof(st->exit_reason), "killed");
		st->finished = time(NULL);
	}
	set_exit_cause(cg, st);
}

const char *slice_exit_cause(const char *reason, int code, uint64_t oom_kills,
			     uint64_t pids_refused)
{
	if (!strcmp(reason, "timeout") || !strcmp(reason, "lifetime"))
		return !strcmp(reason, "timeout") ? "timeout" : "lifetime";
	bool failed = code != 0 || !strcmp(reason, "killed");
	if (failed && oom_kills > 0)
		return "oom";
	if (failed && pids_refused > 0)
		return "pids";
	if (!strcmp(reason, "killed"))
		return "killed";
	return !strcmp(reason, "signal") ? "signal" : "exited";
}

const char *slice_exit_reason_text(const char *reason)
{
	static const struct {
		const char *reason, *text;
	} texts[] = {
	    {"oom", "killed by the OOM killer: the slice reached its memory limit (--memory)"},
	    {"pids", "failed after the process limit (--pids) refused a fork"},
	    {"timeout", "killed: the run took longer than its --timeout"},
	    {"lifetime",
	     "killed: the slice's lifetime ended (--lifetime; slicectl renew moves it)"},
	    {"killed", "its PID 1 was killed from outside (SIGKILL)"},
	};
	for (size_t i = 0; reason && i < VS_ARRAY_SIZE(texts); i++)
		if (!strcmp(reason, texts[i].reason))
			return texts[i].text;
	return NULL;
}

int slice_load(const char *root, const char *name, struct slice_spec *spec, struct slice_state *st,
	       struct vs_error *err)
{
	int r = require_slice(root, name, err);
	if (r < 0)
		return r;
	struct slice_spec tmp;
	if ((r = read_spec(root, name, spec ? spec : &tmp, err)) < 0)
		return r;
	if (!spec)
		slice_spec_free(&tmp);
	if (st) {
		if ((r = read_state(root, name, st, err)) < 0) {
			if (spec)
				slice_spec_free(spec);
			return r;
		}
		cleanup_cgroup struct cgroup *cg = NULL;
		if (open_cgroup(name, &cg, err) == 0)
			refresh_state(root, name, cg, st);
	}
	return 0;
}

pid_t slice_pid1(const char *root, const char *name)
{
	struct slice_state st;
	struct vs_error err;
	if (slice_load(root, name, NULL, &st, &err) < 0)
		return 0;
	return (st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) ? st.pid : 0;
}

int slice_spec_check(const char *root, const struct slice_spec *spec, struct vs_error *err)
{
	int r = vs_check_name("slice", spec->name, err);
	if (r < 0)
		return r;
	if (!vs_name_valid(spec->image))
		return vs_error_set(err, EINVAL, "--image: invalid image name \"%s\"", spec->image);
	struct image_info info;
	if ((r = image_get(root, spec->image, &info, err)) < 0)
		return vs_error_wrap(err, "--image");
	if (spec->hostname[0]) {
		const char *h = spec->hostname;
		bool ok = strlen(h) <= 63;
		for (; *h && ok; h++)
			ok = (*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
			     (*h >= '0' && *h <= '9') || *h == '-' || *h == '.';
		if (!ok)
			return vs_error_set(
			    err, EINVAL,
			    "--hostname: invalid hostname \"%s\" (letters, digits, '-', '.')",
			    spec->hostname);
	}
	/* Compiling checks the policy; the cache makes the next check (and the
	 * start that follows) a file read instead of a 10+ ms compile. */
	cleanup_free char *cache = vs_xasprintf("%s/cache/seccomp", root);
	struct seccomp_bpf bpf = {0};
	if (spec->policy_text)
		r = seccomp_policy_compile(spec->policy_text, strlen(spec->policy_text),
					   caps_default_mask(), &bpf, err);
	else
		r = seccomp_policy_load(spec->policy ? spec->policy : "default", cache,
					caps_default_mask(), &bpf, err);
	seccomp_bpf_free(&bpf);
	if (r < 0)
		return vs_error_wrap(err, "--policy");
	if (spec->net != SLICE_NET_BRIDGE &&
	    (spec->netopts.n_publish || spec->netopts.rate_bps || spec->netopts.no_egress))
		return vs_error_set(err, EINVAL,
				    "--publish, --net-rate and no-egress need --net bridge");
	if (spec->workdir && spec->workdir[0] != '/')
		return vs_error_set(err, EINVAL, "--workdir: must be an absolute path");
	for (char **e = spec->env; e && *e; e++)
		if (!strchr(*e, '=') || **e == '=')
			return vs_error_set(err, EINVAL, "--env: \"%s\" is not K=V", *e);
	if (spec->memory_bytes && spec->memory_bytes < (4u << 20))
		return vs_error_set(err, EINVAL, "--memory: at least 4M");
	if (spec->disk_bytes && spec->disk_bytes < SLIVER_DISK_MIN)
		return vs_error_set(err, EINVAL, "--disk: at least 16M");
	if (spec->disk_bytes > SLIVER_DISK_MAX)
		return vs_error_set(err, EINVAL, "--disk: at most 16T");
	if (spec->log_max_bytes &&
	    (spec->log_max_bytes < REAPER_LOG_MIN || spec->log_max_bytes > REAPER_LOG_MAX))
		return vs_error_set(err, EINVAL, "--log-size: 64K to 1T");
	return 0;
}

/*
 * The refill a create asks for is not done on the way to the slice's
 * workload: a detached start does it after its spawn, a destroy (run --rm)
 * in the process that removes the slice's files, anything else when the
 * process exits. On two busy CPUs
 * the filler running beside a start took back most of what the pool saved
 * it.
 */
static struct {
	bool pending, registered, volatile_upper;
	char *root, *image, *image_root;
	unsigned size;
} refill;

static void refill_now(void)
{
	if (!refill.pending)
		return;
	refill.pending = false;
	pool_refill_async(refill.root, refill.image, refill.volatile_upper, refill.image_root,
			  refill.size, NULL, NULL);
	free(refill.root);
	free(refill.image);
	free(refill.image_root);
	refill.root = refill.image = refill.image_root = NULL;
}

/*
 * A slice's files go in the background: the directory is renamed out of
 * the way (slices/.rm-NAME-PID-NS: not a slice name, so no verb sees it,
 * and the name is free at once) and a detached process at nice 10 removes
 * it. On this VM an rm -rf of even an empty slice took 1-36 ms (every
 * unlink waits for the inode table block when the host writes back), the
 * largest phase of a run --rm. That process also removes .rm- directories
 * older than a minute: what a remover killed half way left.
 */
static void remove_stale_trash(const char *root)
{
	cleanup_free char *sd = vs_xasprintf("%s/slices", root);
	cleanup_closedir DIR *dir = opendir(sd);
	struct dirent *de;
	time_t now = time(NULL);
	while (dir && (de = readdir(dir))) {
		struct stat st;
		if (strncmp(de->d_name, ".rm-", 4) != 0 ||
		    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode) || now - st.st_mtime < 60)
			continue;
		cleanup_free char *p = vs_xasprintf("%s/%s", sd, de->d_name);
		struct vs_error ignore;
		pool_release_ns(p);
		vs_rm_rf(p, &ignore);
	}
}

struct trash_job {
	const char *root, *trash;
	const struct netcfg_later *net; /* NULL: nothing of the network's */
};

/* In the detached process: the network's leftovers (netcfg.h), this
 * slice's files, then any left over. */
static void remove_trash(void *arg)
{
	const struct trash_job *j = arg;
	struct vs_error ignore;
	if (j->net)
		netcfg_later_run(j->net);
	/* Made from the pool: its kept namespaces (the rename carried the
	 * bind mounts along), before the files under them. */
	pool_release_ns(j->trash);
	vs_rm_rf(j->trash, &ignore);
	remove_stale_trash(j->root);
}

static int remove_files_in(const char *root, const char *name, const char *d,
			   struct netcfg_later *net, struct vs_error *err);

/* net: what the network's detach left for a process that outlives us
 * (netcfg_detach_later); handed to the remover, or detached on its own. */
static int remove_files(const char *root, const char *name, const char *d, struct netcfg_later *net,
			struct vs_error *err)
{
	struct vs_error ignore;
	int r = remove_files_in(root, name, d, net, err);
	/* Not handed on (no remover forked): a detached process of its own. */
	netcfg_later_detached(net, &ignore);
	return r;
}

static int remove_files_in(const char *root, const char *name, const char *d,
			   struct netcfg_later *net, struct vs_error *err)
{
	static unsigned seq;
	cleanup_free char *trash = vs_xasprintf("%s/slices/.rm-%s-%d-%u-%llu", root, name, getpid(),
						seq++, (unsigned long long)vs_now_ns());
	if (rename(d, trash) < 0) {
		if (errno == ENOENT)
			return 0;
		/* Cannot move it (EXDEV, a mount point): remove it here. */
		pool_release_ns(d);
		return vs_rm_rf(d, err);
	}
	/* mtime: the sweep's clock (rename does not touch it). */
	utimensat(AT_FDCWD, trash, NULL, AT_SYMLINK_NOFOLLOW);
	/* A refill is due (run --rm): its process removes the files first
	 * (the network's leftovers are not handed to it: it keeps no fd but
	 * its lock, and the batch socket's last close must not be its first
	 * child's exit, which we wait for). */
	struct trash_job job = {.root = root, .trash = trash};
	if (refill.pending && !strcmp(refill.root, root)) {
		bool forked = pool_refill_async(refill.root, refill.image, refill.volatile_upper,
						refill.image_root, refill.size, remove_trash, &job);
		refill.pending = false;
		free(refill.root);
		free(refill.image);
		free(refill.image_root);
		refill.root = refill.image = refill.image_root = NULL;
		if (forked)
			return 0;
	}
	job.net = net->fd >= 0 || net->veth ? net : NULL;
	/* Shared by every remover while it works, from before we return:
	 * who needs the files gone waits for an exclusive lock of it (the
	 * tests do; a refill's remover above holds pool/fill.lock). */
	cleanup_free char *rmlock = vs_xasprintf("%s/slices/.rm.lock", root);
	cleanup_close int hold = open(rmlock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (hold >= 0)
		(void)flock(hold, LOCK_SH);
	pid_t p = fork();
	if (p < 0) {
		pool_release_ns(trash);
		return vs_rm_rf(trash, err);
	}
	if (p > 0) {
		/* The remover holds the batch socket now: this close is not
		 * its last. */
		netcfg_later_release(net);
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		return 0;
	}
	setsid();
	if (fork() != 0)
		_exit(0);
	/* Nothing of ours but the batch socket, kept to the end (its last
	 * close, waiting for a grace period, is this process's exit), and
	 * the shared lock. */
	vs_close_fds_but(net->fd, hold);
	int fd = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && fd >= 0; i++)
		if (i != fd)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
	(void)!nice(10);
	remove_trash(&job);
	_exit(0);
}

/* Remove whatever a slice has on this node. Used by destroy and to undo a
 * failed create; every step tolerates "already gone". The slow part (the
 * processes, the cgroups, the network) needs only the slice's lock; the
 * name is freed (the directory renamed away, its id range released) under
 * the root lock, which destroy (root_locked false) takes just for that,
 * so destroys of different slices overlap. A create of the same name waits
 * for that step: until then the directory holds the name. */
static int remove_slice(const char *root, const char *name, uint32_t id_base, bool root_locked,
			struct vs_error *err)
{
	cleanup_cgroup struct cgroup *cg = NULL;
	int r = open_cgroup(name, &cg, err);
	if (r == 0)
		r = cgroup_destroy(cg, err);
	if (r < 0)
		return vs_error_wrap(err, "remove cgroup");
	vs_trace("destroy.cgroup");
	/* After the processes: a lease is dropped with everything it made. */
	struct netcfg_later net;
	struct vs_error ignore;
	if ((r = netcfg_detach_later(root, name, &net, err)) < 0) {
		netcfg_later_detached(&net, &ignore);
		return r;
	}
	vs_trace("destroy.net");
	cleanup_free char *d = slice_dir(root, name);
	cleanup_close int rl = -1;
	if (!root_locked && (rl = lock_root(root, err)) < 0) {
		netcfg_later_detached(&net, &ignore);
		return rl;
	}
	if ((r = remove_files(root, name, d, &net, err)) < 0)
		return vs_error_wrap(err, "remove %s", d);
	vs_trace("destroy.files");
	/* Without spec.json (a damaged or half-made slice, destroy --force) the
	 * base is unknown: find the claims by their owner, this directory. */
	if (id_base)
		idrange_release(idrange_default_dir(), d, id_base, err);
	else if ((r = idrange_release_owner(idrange_default_dir(), d, err)) < 0)
		return vs_error_wrap(err, "release id range");
	return 0;
}

/* What the pool can make ahead of time (pool.h): a network namespace with
 * lo (--net none as it is; --net bridge gets its veth at the start, into
 * that namespace), no disk image (made per slice at create). */
static bool pool_fits(const struct slice_spec *spec)
{
	return (spec->net == SLICE_NET_NONE || spec->net == SLICE_NET_BRIDGE) && !spec->disk_bytes;
}

/* Cold create: id range, directories, cgroups. */
static int create_fresh(const char *root, struct slice_spec *spec, const char *d,
			const struct cgroup_limits *lim, struct vs_error *err)
{
	int r = idrange_claim(idrange_default_dir(), d, !spec->ephemeral, &spec->id_base, err);
	if (r < 0)
		return r;
	/* With a disk limit, upper/ and work/ live in the slice's image (made
	 * at its first start, disk.c); disk/ is where it is mounted.
	 * lower-copy/ is made by the id-mapping fallback when it is needed
	 * (rootfs.c): every inode made costs on the start path (the
	 * allocator of a journal-less ext4 checks recently deleted inodes). */
	static const char *const dirs[] = {"upper", "work", "lower", "rootfs"};
	static const char *const disk_dirs[] = {"disk", "lower", "rootfs"};
	const char *const *mk = spec->disk_bytes ? disk_dirs : dirs;
	size_t nmk = spec->disk_bytes ? VS_ARRAY_SIZE(disk_dirs) : VS_ARRAY_SIZE(dirs);
	for (size_t i = 0; i < nmk; i++) {
		cleanup_free char *p = slice_file(root, spec->name, mk[i]);
		if (mkdir(p, 0700) < 0)
			return vs_error_sys(err, errno, "mkdir %s", p);
	}
	if (spec->disk_bytes) {
		cleanup_free char *img = slice_file(root, spec->name, "disk.img");
		if ((r = sliver_disk_create(img, spec->disk_bytes, !spec->ephemeral, err)) < 0)
			return vs_error_wrap(err, "--disk");
	} else {
		/* The slice's root owns the top of its upper layer. */
		cleanup_free char *upper = slice_file(root, spec->name, "upper");
		if (chown(upper, spec->id_base, spec->id_base) < 0 || chmod(upper, 0755) < 0)
			return vs_error_sys(err, errno, "chown %s", upper);
	}
	cleanup_cgroup struct cgroup *cg = NULL;
	if ((r = open_cgroup(spec->name, &cg, err)) < 0)
		return r;
	vs_trace("create.dirs");
	if ((r = cgroup_create(cg, lim, err)) == -EEXIST) {
		/* Left by a crashed run of a slice with this name: ours to reuse. */
		struct vs_error e2;
		if (cgroup_destroy(cg, &e2) == 0)
			r = cgroup_create(cg, lim, err);
	}
	if (r < 0)
		return r;
	vs_trace("create.cgroup");
	return 0;
}

/* The part of create that can fail after the name is reserved (pooled:
 * the directory, id range and cgroups came from the pool). */
static int create_in(const char *root, struct slice_spec *spec, const char *d, bool pooled,
		     const struct cgroup_limits *lim, struct vs_error *err)
{
	int r;
	if (!pooled && (r = create_fresh(root, spec, d, lim, err)) < 0)
		return r;
	spec->created = time(NULL);
	spec->expires = spec->lifetime_secs ? spec->created + (time_t)spec->lifetime_secs : 0;
	if (!spec->hostname[0])
		snprintf(spec->hostname, sizeof(spec->hostname), "%s", spec->name);
	if (!spec->argv) {
		spec->argv = vs_xcalloc(2, sizeof(char *));
		spec->argv[0] = vs_xstrdup("/bin/sh");
	}
	if (spec->policy_text) {
		/* The slice keeps its own copy of an inline policy. */
		free(spec->policy);
		spec->policy = slice_file(root, spec->name, "policy.json");
		r = vs_write_file_replace(spec->policy, spec->policy_text,
					  strlen(spec->policy_text), 0600, !spec->ephemeral, err);
		if (r < 0)
			return r;
	}
	if (!spec->policy)
		spec->policy = vs_xstrdup("default");
	struct slice_state st = {.status = SLICE_CREATED, .exit_code = -1, .idmapped = true};
	if ((r = save_state(root, spec->name, &st, err)) < 0)
		return r;
	/* spec.json last: its presence marks a complete slice. */
	return write_json_file(root, spec->name, "spec.json", spec_to_json(spec), !spec->ephemeral,
			       err);
}

static int create_locked(const char *root, struct slice_spec *spec, unsigned pool_size,
			 struct vs_error *err)
{
	int r;
	cleanup_close int rl = lock_root(root, err);
	if (rl < 0)
		return rl;
	cleanup_free char *slices = vs_xasprintf("%s/slices", root);
	if ((r = vs_mkdir_p(slices, 0711, err)) < 0)
		return r;
	cleanup_free char *d = slice_dir(root, spec->name);
	spec->id_base = 0;
	struct cgroup_limits lim = {
	    .cpu_millis = spec->cpu_millis,
	    .memory_bytes = spec->memory_bytes,
	    .pids_max = spec->pids_max,
	};
	r = 0;
	struct stat st;
	if (pool_size && pool_fits(spec) && lstat(d, &st) < 0 && errno == ENOENT) {
		/* The claim's rename (no replace) reserves the name itself; the
		 * name is free (we hold the root lock), so what a failed claim
		 * leaves under it is ours to remove. */
		r = pool_claim(root, spec->image, spec->ephemeral, d, spec->name, &lim,
			       !spec->ephemeral, &spec->id_base, err);
		if (r == -EEXIST)
			return vs_error_set(err, EEXIST,
					    "name in use (choose another, or: slicectl destroy %s)",
					    spec->name);
		if (r < 0) {
			struct vs_error e2;
			remove_slice(root, spec->name, spec->id_base, true, &e2);
			return vs_error_wrap(err, "warm pool");
		}
		if (r == 1)
			vs_trace("create.claimed");
	}
	if (r == 0 && mkdir(d, 0711) < 0) {
		if (errno == EEXIST)
			return vs_error_set(err, EEXIST,
					    "name in use (choose another, or: slicectl destroy %s)",
					    spec->name);
		return vs_error_sys(err, errno, "mkdir %s", d);
	}
	if ((r = create_in(root, spec, d, r == 1, &lim, err)) < 0) {
		struct vs_error e2;
		remove_slice(root, spec->name, spec->id_base, true, &e2);
	}
	return r;
}

/* After a create: a detached process makes the pool whole again (or, at
 * size 0, removes what an earlier setting left in it). */
static void pool_refill(const char *root, const struct slice_spec *spec, unsigned pool_size)
{
	cleanup_free char *pd = vs_xasprintf("%s/pool", root);
	struct stat st;
	if (!pool_size && stat(pd, &st) < 0)
		return;
	if (pool_size && !pool_fits(spec))
		return;
	cleanup_free char *image_root = NULL;
	struct vs_error ignore;
	if (image_rootfs(root, spec->image, &image_root, &ignore) < 0)
		return;
	if (!pool_size) {
		/* Only when something is left: not a fork per create. */
		cleanup_closedir DIR *d = opendir(pd);
		struct dirent *de;
		bool any = false;
		while (d && !any && (de = readdir(d)))
			any = de->d_name[0] == 'e' || !strncmp(de->d_name, ".x-", 3);
		if (!any)
			return;
	}
	refill_now(); /* an earlier create's, not yet done */
	refill.root = vs_xstrdup(root);
	refill.image = vs_xstrdup(spec->image);
	refill.image_root = steal_pointer(&image_root);
	refill.volatile_upper = spec->ephemeral;
	refill.size = pool_size;
	refill.pending = true;
	if (!refill.registered)
		refill.registered = atexit(refill_now) == 0;
}

int slice_create(const char *root, struct slice_spec *spec, struct vs_error *err)
{
	vs_trace("create");
	int r = slice_spec_check(root, spec, err);
	if (r < 0)
		return r;
	unsigned pool_size;
	if ((r = pool_size_setting(root, &pool_size, err)) < 0)
		return r;
	vs_trace("create.checked");
	r = create_locked(root, spec, pool_size, err);
	vs_trace("create.done");
	pool_refill(root, spec, pool_size);
	return r;
}

/* spec.json's id range must be the one claimed for this very slice: a
 * tampered id_base could otherwise run it as another slice's ids. */
static int check_id_range(const char *root, const struct slice_spec *spec, struct vs_error *err)
{
	cleanup_free char *d = slice_dir(root, spec->name);
	if (!idrange_owned(idrange_default_dir(), d, spec->id_base))
		return vs_error_set(
		    err, EPERM,
		    "spec.json: .id_base %u is not the id range claimed for this slice "
		    "(refusing; slicectl destroy --force %s)",
		    spec->id_base, spec->name);
	return 0;
}

/*
 * The pipe between a detached workload and PID 1, made as a FIFO on the
 * host (<slice>/logpipe, unlinked once both ends are open) rather than
 * pipe2(): a checkpoint then sees the workload's stdout as a file from
 * outside the slice's file system, like the log file it used to be, and
 * has the restorer supply it again (lib/checkpoint/files.c) instead of
 * restoring a pipe that nobody reads.
 */
static int open_log_pipe(const char *root, const char *name, int *rd, int *wr, struct vs_error *err)
{
	cleanup_free char *p = slice_file(root, name, "logpipe");
	if (unlink(p) < 0 && errno != ENOENT)
		return vs_error_sys(err, errno, "%s", p);
	if (mkfifo(p, 0600) < 0)
		return vs_error_sys(err, errno, "mkfifo %s", p);
	/* The reader first (O_NONBLOCK: no writer yet), then the writer. */
	*rd = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	*wr = *rd >= 0 ? open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	int e = errno;
	unlink(p);
	if (*rd < 0 || *wr < 0)
		return vs_error_sys(err, e, "open %s", p);
	return 0;
}

/* Spawn with everything loaded; the caller holds the slice lock. */

/* --net bridge: the launcher's new network namespace gets its veth, address,
 * routes, caps and rules from here (host root), before PID 1 exists; the
 * host's half that needs no namespace, then the veth and eth0, while the
 * launcher mounts (sliver.h: net_begin, net_setup, net_files, net_commit,
 * net_abort). */
struct slice_net_ctx {
	const char *root;
	const struct slice_spec *spec;
	struct netcfg_pending *pending; /* from slice_net_begin to _commit or _abort */
};

static bool slice_exists(const char *name, void *root)
{
	cleanup_free char *d = slice_dir(root, name);
	struct stat st;
	return stat(d, &st) == 0;
}

/* Stale leases, the lease, the bridge, the nft elements: while the
 * launcher mounts the slice's root. */
static int slice_net_begin(void *arg, struct vs_error *err)
{
	struct slice_net_ctx *n = arg;
	struct netcfg_slice want = n->spec->netopts;
	want.hostname = *n->spec->hostname ? n->spec->hostname : n->spec->name;
	return netcfg_attach_begin(n->root, n->spec->name, &want, slice_exists, (void *)n->root,
				   &n->pending, err);
}

static void slice_net_abort(void *arg)
{
	struct slice_net_ctx *n = arg;
	netcfg_attach_abort(n->pending);
	n->pending = NULL;
}

/* The veth into the launcher's network namespace, lo and eth0 up, eth0's
 * address and default route. */
static int slice_net_setup(void *arg, int netns, int nl, struct vs_error *err)
{
	struct slice_net_ctx *n = arg;
	return netcfg_attach_netns(n->pending, netns, nl, err);
}

/* /etc/resolv.conf and /etc/hosts, once the launcher has mounted the root. */
static int slice_net_files(void *arg, int rootfs, struct vs_error *err)
{
	struct slice_net_ctx *n = arg;
	return netcfg_attach_files(n->pending, rootfs, n->spec->id_base, err);
}

static void slice_net_commit(void *arg)
{
	struct slice_net_ctx *n = arg;
	netcfg_attach_finish(n->pending, NULL);
	n->pending = NULL;
}

/* first: never started (its cgroup is as create made it). */
static int start_locked(const char *root, const char *name, const struct slice_spec *spec,
			const struct slice_start_opts *o, const struct seccomp_bpf *bpf,
			uint64_t caps, bool first, struct vs_error *err)
{
	int r;
	cleanup_free char *image_root = NULL;
	if ((r = image_rootfs(root, spec->image, &image_root, err)) < 0)
		return r;
	cleanup_cgroup struct cgroup *cg = NULL;
	if ((r = open_cgroup(name, &cg, err)) < 0)
		return r;
	if (!cgroup_exists(cg)) {
		struct cgroup_limits lim = {.cpu_millis = spec->cpu_millis,
					    .memory_bytes = spec->memory_bytes,
					    .pids_max = spec->pids_max};
		if ((r = cgroup_create(cg, &lim, err)) < 0)
			return r;
	}
	cleanup_free char *exitp = slice_file(root, name, "exit");
	cleanup_free char *logp = slice_file(root, name, "log");
	cleanup_close int exit_fd =
	    open(exitp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (exit_fd < 0)
		return vs_error_sys(err, errno, "%s", exitp);
	cleanup_close int log_fd = -1;
	cleanup_close int null_fd = -1;
	/* Detached: the workload writes into a pipe, PID 1 into the log. The
	 * workload never holds the host file, so it cannot grow it past the
	 * cap (reaper.h). */
	cleanup_close int log_r = -1, log_w = -1;
	bool fg = o && o->foreground;
	if (!fg) {
		log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (log_fd < 0 || null_fd < 0)
			return vs_error_sys(err, errno, "%s", logp);
		if ((r = open_log_pipe(root, name, &log_r, &log_w, err)) < 0)
			return r;
	}
	cleanup_free char *cache = vs_xasprintf("%s/cache", root);
	cleanup_close int init_fd = sliver_init_open(cache, err);
	if (init_fd < 0)
		return init_fd;
	bool disk = spec->disk_bytes > 0;
	cleanup_free char *disk_img = disk ? slice_file(root, name, "disk.img") : NULL;
	cleanup_free char *disk_mnt = disk ? slice_file(root, name, "disk") : NULL;
	cleanup_free char *upper = slice_file(root, name, disk ? "disk/upper" : "upper");
	cleanup_free char *work = slice_file(root, name, disk ? "disk/work" : "work");
	cleanup_free char *lower = slice_file(root, name, "lower");
	cleanup_free char *rootfs = slice_file(root, name, "rootfs");
	cleanup_free char *lower_copy = slice_file(root, name, "lower-copy");
	struct sliver_config c = {
	    .name = name,
	    .hostname = spec->hostname,
	    .image_rootfs = image_root,
	    .lower_mnt = lower,
	    .upper = upper,
	    .work = work,
	    .disk_image = disk_img,
	    .disk_mnt = disk_mnt,
	    .rootfs = rootfs,
	    .lower_copy = lower_copy,
	    .id_base = spec->id_base,
	    .id_count = IDRANGE_SIZE,
	    .cg = cg,
	    .host_net = spec->net == SLICE_NET_HOST,
	    .workload =
		{
		    .argv = spec->argv,
		    .env = spec->env,
		    .workdir = spec->workdir,
		    .stdin_fd = fg ? o->stdin_fd : null_fd,
		    .stdout_fd = fg ? o->stdout_fd : log_w,
		    .stderr_fd = fg ? o->stderr_fd : log_w,
		    .caps = caps,
		    .bpf = bpf,
		},
	    .log_pipe = log_r,
	    .log_fd = log_fd,
	    .log_max = spec->log_max_bytes ? spec->log_max_bytes : REAPER_LOG_DEFAULT,
	    .detach = !fg,
	    .exit_fd = exit_fd,
	    .init_fd = init_fd,
	    .timeout_secs = spec->timeout_secs,
	    .restart_max = spec->restart_max,
	    .expires = spec->expires,
	    .volatile_upper = spec->ephemeral,
	};
	if (o) {
		c.workload_fn = o->workload_fn;
		c.workload_arg = o->workload_arg;
		c.workload_pid = o->workload_pid;
		c.monotonic_offset_ns = o->monotonic_offset_ns;
		c.boottime_offset_ns = o->boottime_offset_ns;
	}
	/* Made from the pool: join its namespaces (pool.h). */
	cleanup_free char *sdir = slice_dir(root, name);
	struct sliver_pooled pooled;
	if ((r = pool_open_ns(sdir, pooled.fds, err)) < 0)
		return vs_error_wrap(err, "kept namespaces");
	if (r == 1) {
		c.pooled = &pooled;
		vs_trace("start.kept_ns");
	}
	struct slice_net_ctx net = {.root = root, .spec = spec};
	if (spec->net == SLICE_NET_BRIDGE) {
		c.net_begin = slice_net_begin;
		c.net_abort = slice_net_abort;
		c.net_setup = slice_net_setup;
		c.net_files = slice_net_files;
		c.net_commit = slice_net_commit;
		c.net_arg = &net;
	}
	/* The counters the run starts from (the cgroup lives across runs;
	 * before the first, nothing has run in it: all 0). */
	struct cgroup_stats base = {0};
	struct vs_error ignore;
	if (!first)
		(void)cgroup_stats(cg, &base, &ignore);
	struct sliver_result res;
	vs_trace("start.spawn");
	r = sliver_spawn(&c, &res, err);
	if (c.pooled) {
		/* Joined (or failed: the next start is cold either way). The
		 * unmount waits for an RCU grace period (about 0.5 ms): a run
		 * --rm leaves it to the destroy that follows, whose remover
		 * does it off the path (remove_trash); should that destroy
		 * never come, the next start drops them (slice_start). */
		if (!(fg && spec->ephemeral))
			pool_release_ns(sdir);
		for (int i = 0; i < POOL_NS_COUNT; i++)
			close(pooled.fds[i]);
	}
	if (!fg)
		refill_now();
	struct slice_state ns = {.status = SLICE_CREATED,
				 .exit_code = -1,
				 .idmapped = res.idmapped,
				 .started = time(NULL),
				 .oom_kills_base = base.oom_kills,
				 .pids_refused_base = base.pids_refused};
	if (res.pid1 > 0) {
		ns.status = SLICE_RUNNING;
		ns.pid = res.pid1;
		ns.pid_starttime = sliver_proc_starttime(res.pid1);
		if (!ns.pid_starttime) {
			/* Already gone (a very short workload): its exit record tells. */
			ns.status = SLICE_EXITED;
			ns.pid = 0;
			time_t fin = 0;
			if (sliver_read_exit(exit_fd, &ns.exit_code, ns.exit_reason,
					     sizeof(ns.exit_reason), &ns.restarts, &fin) == 0)
				ns.finished = fin;
			set_exit_cause(cg, &ns);
		}
	}
	struct vs_error e2;
	int r2 = save_state(root, name, &ns, &e2);
	if (r == 0 && r2 < 0) {
		*err = e2;
		r = r2;
	}
	vs_trace("start.done");
	/* The bridge's fast path, after the start (netcfg.h). */
	if (r == 0 && spec->net == SLICE_NET_BRIDGE && ns.status == SLICE_RUNNING)
		(void)netcfg_fast_later(root, name, &e2);
	return r;
}

int slice_start(const char *root, const char *name, const struct slice_start_opts *o,
		struct vs_error *err)
{
	vs_trace("start");
	cleanup_close int lk = lock_slice(root, name, err);
	if (lk < 0)
		return lk;
	cleanup_spec struct slice_spec spec = {0};
	struct slice_state st;
	int r = slice_load(root, name, &spec, &st, err);
	if (r < 0)
		return r;
	if (st.status == SLICE_RUNNING || st.status == SLICE_FROZEN)
		return vs_error_set(err, EBUSY, "already running");
	if (spec.expires && time(NULL) >= spec.expires)
		return vs_error_set(err, ETIME, "lifetime ended (renew or destroy it)");
	if ((r = check_id_range(root, &spec, err)) < 0)
		return r;
	if (st.started) {
		/* Started before: namespaces kept from the pool were for the
		 * first start only (a run --rm whose destroy never came leaves
		 * them, start_locked). */
		cleanup_free char *sdir = slice_dir(root, name);
		pool_release_ns(sdir);
	}
	cleanup_free char *cache = vs_xasprintf("%s/cache/seccomp", root);
	struct seccomp_bpf bpf = {0};
	uint64_t caps = caps_default_mask();
	if ((r = seccomp_policy_load(spec.policy, cache, caps, &bpf, err)) < 0)
		return vs_error_wrap(err, "policy %s", spec.policy);
	r = start_locked(root, name, &spec, o, &bpf, caps, !st.started, err);
	seccomp_bpf_free(&bpf);
	return r;
}

int slice_wait(const char *root, const char *name, int *code, struct slice_state *out,
	       struct vs_error *err)
{
	struct slice_state st;
	int r = slice_load(root, name, NULL, &st, err);
	if (r < 0)
		return r;
	if (st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) {
		cleanup_close int pfd = pidfd_open(st.pid, 0);
		if (pfd >= 0 && sliver_proc_starttime(st.pid) == st.pid_starttime) {
			struct pollfd p = {.fd = pfd, .events = POLLIN};
			while (poll(&p, 1, -1) < 0 && errno == EINTR)
				;
		}
		vs_trace("wait.pid1_exited");
		cleanup_close int lk = lock_slice(root, name, err);
		if (lk < 0)
			return lk;
		cleanup_spec struct slice_spec spec = {0};
		if ((r = slice_load(root, name, &spec, &st, err)) < 0)
			return r;
		/* state.json caches what slice_load finds out anyway (PID 1
		 * gone, the exit record); a run --rm slice is destroyed next,
		 * so it is not written again (a new file per write). */
		if (!spec.ephemeral && (r = save_state(root, name, &st, err)) < 0)
			return r;
	}
	if (st.status == SLICE_CREATED)
		return vs_error_set(err, EINVAL, "not started");
	*code = st.exit_code < 0 ? 137 : st.exit_code;
	if (out)
		*out = st;
	return 0;
}

/* Lock + load + require a live PID 1. */
static int running_slice(const char *root, const char *name, struct slice_spec *spec,
			 struct slice_state *st, struct cgroup **cg, struct vs_error *err)
{
	int r = slice_load(root, name, spec, st, err);
	if (r < 0)
		return r;
	if (st->status != SLICE_RUNNING && st->status != SLICE_FROZEN) {
		if (spec)
			slice_spec_free(spec);
		return vs_error_set(err, ESRCH,
				    "not running (state: %s; start it with: slicectl start %s)",
				    slice_status_name(st->status), name);
	}
	if ((r = open_cgroup(name, cg, err)) < 0 && spec)
		slice_spec_free(spec);
	return r;
}

int slice_exec_start(const char *root, const char *name, const struct slice_exec_opts *o,
		     struct sliver_exec_proc *p, struct vs_error *err)
{
	cleanup_spec struct slice_spec spec = {0};
	struct slice_state st;
	cleanup_cgroup struct cgroup *cg = NULL;
	int r;
	{
		cleanup_close int lk = lock_slice(root, name, err);
		if (lk < 0)
			return lk;
		if ((r = running_slice(root, name, &spec, &st, &cg, err)) < 0)
			return r;
	}
	if (st.status == SLICE_FROZEN)
		return vs_error_set(err, EBUSY, "frozen (thaw it first: slicectl thaw %s)", name);
	if ((r = check_id_range(root, &spec, err)) < 0)
		return r;
	cleanup_free char *cache = vs_xasprintf("%s/cache/seccomp", root);
	struct seccomp_bpf bpf = {0};
	uint64_t caps = caps_default_mask();
	if ((r = seccomp_policy_load(spec.policy, cache, caps, &bpf, err)) < 0)
		return vs_error_wrap(err, "policy %s", spec.policy);
	/* Spec env first, then the exec's own (later wins in the workload). */
	size_t n = 0, m = 0;
	for (char **e = spec.env; e && *e; e++)
		n++;
	for (char **e = o->env; e && *e; e++)
		m++;
	cleanup_free char **env = vs_xcalloc(n + m + 1, sizeof(char *));
	if (n)
		memcpy(env, spec.env, n * sizeof(char *));
	if (m)
		memcpy(env + n, o->env, m * sizeof(char *));
	struct sliver_exec_config c = {
	    .name = name,
	    .pid1 = st.pid,
	    .cg = cg,
	    .host_net = spec.net == SLICE_NET_HOST,
	    .threaded = o->threaded,
	    .workload =
		{
		    .argv = o->argv,
		    .env = env,
		    .workdir = o->workdir ? o->workdir : spec.workdir,
		    .stdin_fd = o->stdio ? o->stdio[0] : 0,
		    .stdout_fd = o->stdio ? o->stdio[1] : 1,
		    .stderr_fd = o->stdio ? o->stdio[2] : 2,
		    .caps = caps,
		    .bpf = &bpf,
		    .tty = o->tty,
		},
	};
	/* The helper has its copies of env, the filter and the fds: ours go. */
	r = sliver_exec_start(&c, p, err);
	seccomp_bpf_free(&bpf);
	return r;
}

int slice_exec(const char *root, const char *name, const struct slice_exec_opts *o, int *code,
	       struct vs_error *err)
{
	struct sliver_exec_proc p;
	int r = slice_exec_start(root, name, o, &p, err);
	if (r < 0)
		return r;
	/* Ignore terminal signals while the helper forwards them inside
	 * (our terminal's Ctrl-C reaches the helper too). A threaded caller
	 * keeps its own: the disposition is the whole process's. */
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	sigemptyset(&ign.sa_mask);
	if (!o->threaded) {
		sigaction(SIGINT, &ign, &old_int);
		sigaction(SIGQUIT, &ign, &old_quit);
	}
	r = sliver_exec_wait(&p, code, err);
	if (!o->threaded) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
	}
	return r;
}

/* Signal the slice's PID 1 through a pidfd, once it is proven to be the
 * recorded process in the slice's cgroup; -ESRCH when it is gone. */
static int send_to_pid1(struct cgroup *cg, const struct slice_state *st, int sig,
			struct vs_error *err)
{
	cleanup_close int pfd = pidfd_open(st->pid, 0);
	if (pfd < 0 || !pid_is_slice(cg, st->pid, st->pid_starttime))
		return vs_error_set(err, ESRCH, "pid 1 is gone");
	if (syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) < 0)
		return vs_error_sys(err, errno, "signal pid 1");
	return 0;
}

static int signal_pid1(const char *root, const char *name, int sig, struct slice_state *st,
		       struct vs_error *err)
{
	cleanup_cgroup struct cgroup *cg = NULL;
	int r = running_slice(root, name, NULL, st, &cg, err);
	if (r < 0)
		return r;
	if (st->status == SLICE_FROZEN && (r = cgroup_thaw(cg, err)) < 0)
		return r;
	return send_to_pid1(cg, st, sig, err);
}

static bool wait_gone(pid_t pid, uint64_t starttime, unsigned ms)
{
	cleanup_close int pfd = pidfd_open(pid, 0);
	if (pfd < 0 || sliver_proc_starttime(pid) != starttime)
		return true;
	struct pollfd p = {.fd = pfd, .events = POLLIN};
	int n;
	while ((n = poll(&p, 1, (int)ms)) < 0 && errno == EINTR)
		;
	return n > 0;
}

static int finish_state(const char *root, const char *name, struct vs_error *err)
{
	struct slice_state st;
	int r = slice_load(root, name, NULL, &st, err);
	if (r < 0)
		return r;
	return save_state(root, name, &st, err);
}

/* Signal PID 1 (which forwards to the workload), wait up to wait_ms for the
 * slice to end, SIGKILL everything in its cgroup if it has not and
 * escalate is set, then record the outcome. */
static int signal_and_settle(const char *root, const char *name, int sig, unsigned wait_ms,
			     bool escalate, struct vs_error *err)
{
	cleanup_close int lk = lock_slice(root, name, err);
	if (lk < 0)
		return lk;
	struct slice_state st;
	int r = signal_pid1(root, name, sig, &st, err);
	if (r < 0)
		return r;
	if (!wait_gone(st.pid, st.pid_starttime, wait_ms) && escalate) {
		cleanup_cgroup struct cgroup *cg = NULL;
		if ((r = open_cgroup(name, &cg, err)) < 0 ||
		    (r = cgroup_kill(cg, SIGKILL, err)) < 0)
			return r;
		wait_gone(st.pid, st.pid_starttime, 5000);
	}
	return finish_state(root, name, err);
}

int slice_stop(const char *root, const char *name, unsigned timeout_secs, struct vs_error *err)
{
	return signal_and_settle(root, name, SIGTERM, timeout_secs * 1000, true, err);
}

int slice_kill(const char *root, const char *name, int sig, struct vs_error *err)
{
	return signal_and_settle(root, name, sig, sig == SIGKILL ? 5000 : 0, false, err);
}

int slice_renew(const char *root, const char *name, time_t expires, struct vs_error *err)
{
	if (expires <= time(NULL))
		return vs_error_set(err, EINVAL, "--lifetime: the new end is in the past");
	cleanup_close int lk = lock_slice(root, name, err);
	if (lk < 0)
		return lk;
	cleanup_spec struct slice_spec spec = {0};
	struct slice_state st;
	int r = slice_load(root, name, &spec, &st, err);
	if (r < 0)
		return r;
	spec.expires = expires;
	spec.lifetime_secs = (uint64_t)(expires - spec.created);
	if ((r = write_json_file(root, name, "spec.json", spec_to_json(&spec), !spec.ephemeral,
				 err)) < 0)
		return r;
	if (st.status != SLICE_RUNNING && st.status != SLICE_FROZEN)
		return 0; /* the next start reads spec.json */
	/* Tell the running PID 1 (reaper.h): the record, then the signal. */
	cleanup_free char *p = slice_file(root, name, "exit");
	cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s", p);
	char rec[48];
	int n = snprintf(rec, sizeof(rec), "expires %lld\n", (long long)expires);
	if (pwrite(fd, rec, (size_t)n, REAPER_RENEW_OFFSET) != n)
		return vs_error_sys(err, errno, "%s: write the renewal", p);
	cleanup_cgroup struct cgroup *cg = NULL;
	if ((r = open_cgroup(name, &cg, err)) < 0)
		return r;
	r = send_to_pid1(cg, &st, REAPER_SIG_RENEW, err);
	return r == -ESRCH ? 0 : r; /* ended meanwhile: nothing left to extend */
}

static int freeze_thaw(const char *root, const char *name, bool freeze, struct vs_error *err)
{
	cleanup_close int lk = lock_slice(root, name, err);
	if (lk < 0)
		return lk;
	struct slice_state st;
	cleanup_cgroup struct cgroup *cg = NULL;
	int r = running_slice(root, name, NULL, &st, &cg, err);
	if (r < 0)
		return r;
	r = freeze ? cgroup_freeze(cg, err) : cgroup_thaw(cg, err);
	if (r < 0)
		return r;
	st.status = freeze ? SLICE_FROZEN : SLICE_RUNNING;
	return save_state(root, name, &st, err);
}

int slice_freeze(const char *root, const char *name, struct vs_error *err)
{
	return freeze_thaw(root, name, true, err);
}

int slice_thaw(const char *root, const char *name, struct vs_error *err)
{
	return freeze_thaw(root, name, false, err);
}

int slice_destroy(const char *root, const char *name, bool force, struct vs_error *err)
{
	vs_trace("destroy");
	int r = vs_check_name("slice", name, err);
	if (r < 0)
		return r;
	cleanup_close int lk = lock_slice(root, name, err);
	if (lk < 0)
		return lk;
	struct slice_spec spec;
	struct slice_state st;
	uint32_t id_base = 0;
	struct vs_error lerr;
	if (slice_load(root, name, &spec, &st, &lerr) == 0) {
		id_base = spec.id_base;
		slice_spec_free(&spec);
		if ((st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) && !force)
			return vs_error_set(
			    err, EBUSY,
			    "is running (stop it first, or: slicectl destroy --force %s)", name);
	} else if (!force) {
		/* A half-created or damaged slice: say why, but let --force clean it. */
		return vs_error_set(err, lerr.code,
				    "%s (remove what is left with: slicectl destroy --force %s)",
				    lerr.msg, name);
	}
	r = remove_slice(root, name, id_base, false, err);
	vs_trace("destroy.done");
	refill_now();
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int slice_list(const char *root, char ***names, size_t *n, struct vs_error *err)
{
	*names = NULL;
	*n = 0;
	cleanup_free char *d = vs_xasprintf("%s/slices", root);
	cleanup_closedir DIR *dir = opendir(d);
	if (!dir)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "%s", d);
	size_t cap = 16, k = 0;
	char **v = vs_xcalloc(cap, sizeof(char *));
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (!vs_name_valid(de->d_name))
			continue;
		if (k + 1 >= cap) {
			cap *= 2;
			char **nv = realloc(v, cap * sizeof(char *));
			if (!nv)
				abort();
			v = nv;
		}
		v[k++] = vs_xstrdup(de->d_name);
	}
	qsort(v, k, sizeof(char *), cmp_str);
	v[k] = NULL;
	*names = v;
	*n = k;
	return 0;
}

bool slice_image_in_use(const char *root, const char *image)
{
	char **names;
	size_t n;
	struct vs_error err;
	bool used = false;
	if (slice_list(root, &names, &n, &err) < 0)
		return true; /* cannot tell: refuse rather than break a slice */
	for (size_t i = 0; i < n; i++) {
		struct slice_spec spec;
		if (!used && read_spec(root, names[i], &spec, &err) == 0) {
			used = !strcmp(spec.image, image);
			slice_spec_free(&spec);
		}
		free(names[i]);
	}
	free(names);
	return used;
}

int slice_upper_dir(const char *root, const struct slice_spec *spec, char **path,
		    struct vs_error *err)
{
	if (spec->disk_bytes) {
		vs_error_set(err, ENOTSUP,
			     "has a disk limit (--disk): its files are in its own disk image, "
			     "which checkpoint and restore cannot read or fill yet");
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	*path = slice_file(root, spec->name, "upper");
	return 0;
}

int slice_with_upper(const char *root, const struct slice_spec *spec, bool write, slice_upper_fn fn,
		     void *arg, struct vs_error *err)
{
	if (!spec->disk_bytes) {
		cleanup_free char *upper = slice_file(root, spec->name, "upper");
		cleanup_close int fd = open(upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s", upper);
		return fn(arg, fd, err);
	}
	/* The lock keeps a start (which attaches the image) and a second
	 * access (which would attach it through another loop device) out
	 * until the image is detached again. */
	cleanup_close int lk = lock_slice(root, spec->name, err);
	if (lk < 0)
		return lk;
	/* The top of a new upper layer is chowned to id_base. */
	int r = check_id_range(root, spec, err);
	if (r < 0)
		return r;
	cleanup_free char *img = slice_file(root, spec->name, "disk.img");
	/* Its own errors name the image; fn's are fn's. */
	return sliver_disk_with_upper(img, spec->name, spec->id_base, write, fn, arg, err);
}

int slice_log_open(const char *root, const char *name, struct vs_error *err)
{
	int r = require_slice(root, name, err);
	if (r < 0)
		return r;
	cleanup_free char *p = slice_file(root, name, "log");
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s", p);
	/* PID 1 keeps only the log's tail on disk, the rest is a hole
	 * (reaper.h): start at the first line kept (ENXIO: none, stay at 0). */
	off_t data = lseek(fd, 0, SEEK_DATA);
	char buf[4096];
	ssize_t n = data > 0 ? pread(fd, buf, sizeof(buf), data) : 0;
	char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
	if (nl)
		lseek(fd, data + (nl - buf) + 1, SEEK_SET);
	return fd;
}
