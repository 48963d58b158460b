/*
 * pool.c - the warm pool (see pool.h for what an entry is and its life).
 *
 * Layout, under <root>/pool/ (0711, host root):
 *   lock          flock: a claim and the filler's sweep never touch one entry at once
 *   fill.lock     flock: one filler at a time; held while entries are made or removed
 *   eN-PID/       an entry: upper/ work/ lower/ rootfs/ (as a slice's),
 *                 sandbox ("IMAGE ID_BASE", written right after the id range is
 *                 claimed), ns/{user,mnt,net,ipc,uts} (nsfs bind mounts), and
 *                 ready (written last: only then may it be claimed)
 *   .x-eN-PID/    an entry being removed (renamed under lock so no claim takes it)
 * Its cgroups are pool@eN-PID beside the slices' own (a name no slice can
 * have: slice names are [a-z][a-z0-9_-]*), its id range claim is owned by
 * the entry's path until a claim hands it to the slice's directory.
 *
 * What makes an entry: the filler (host root) forks M, which joins the
 * entry's cgroups (so what the kernel allocates for the namespaces is charged
 * to the slice-to-be), makes the user namespace with the id map, a private
 * mount namespace with the id-mapped image and the overlay (rootfs.c, the
 * same code as a cold start), then, as the slice's root in the user
 * namespace, the network (lo up), IPC and UTS namespaces. The filler binds
 * M's five /proc/M/ns files onto the entry and lets M exit: no process is
 * left. A mount namespace copies the bind mounts of the one it came from
 * (all but mount-namespace files), so M first unmounts, in its own copy, the
 * bind mounts of every other entry and slice: a sandbox never holds another's
 * namespaces.
 *
 * Crash safety: an entry without `ready` is only ever touched by the filler
 * holding fill.lock, so any the next filler finds were left by a killed one
 * and are removed (bind mounts, cgroups, id range, files). A claimed entry is
 * a slice directory: destroy removes it like any other, and drops its bind
 * mounts if it never started (pool_release_ns).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sliver_internal.h"
#include "vslice/idrange.h"
#include "vslice/pool.h"
#include "vslice/trace.h"
#include "vslice/util.h"

const char *const pool_ns_names[POOL_NS_COUNT] = {"user", "mnt", "net", "ipc", "uts"};
static const int ns_types[POOL_NS_COUNT] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC,
					    CLONE_NEWUTS};

/* "N", from 0 to POOL_SIZE_MAX; what: the setting's name for the error,
 * which quotes the value on one line. */
static int parse_size(const char *what, const char *text, unsigned *size, struct vs_error *err)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (!errno && !*end && *text >= '0' && *text <= '9' && v <= POOL_SIZE_MAX) {
		*size = (unsigned)v;
		return 0;
	}
	char shown[33];
	snprintf(shown, sizeof(shown), "%s", text);
	for (char *c = shown; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return vs_error_set(err, EINVAL, "%s: \"%s\" is not a number from 0 to %d", what, shown,
			    POOL_SIZE_MAX);
}

int pool_size_setting(const char *root, unsigned *size, struct vs_error *err)
{
	*size = 0;
	const char *e = getenv("VSLICE_POOL");
	if (e && *e)
		return parse_size("VSLICE_POOL", e, size, err);
	cleanup_free char *p = vs_xasprintf("%s/pool/size", root);
	cleanup_free char *text = NULL;
	int r = vs_read_file(p, 64, &text, NULL, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	size_t len = strlen(text);
	if (len && text[len - 1] == '\n')
		text[len - 1] = '\0';
	return parse_size(p, text, size, err);
}

static char *pool_path(const char *root, const char *file)
{
	return file ? vs_xasprintf("%s/pool/%s", root, file) : vs_xasprintf("%s/pool", root);
}

static int lock_file(const char *path, int how, struct vs_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "pool: lock %s", path);
	while (flock(fd, how) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		if (e == EWOULDBLOCK)
			return -EWOULDBLOCK;
		return vs_error_sys(err, e, "pool: lock %s", path);
	}
	return fd;
}

/* "IMAGE ID_BASE" of an entry (dir: its path). */
static int read_sandbox(const char *dir, char *image, size_t len, uint32_t *base)
{
	cleanup_free char *p = vs_xasprintf("%s/sandbox", dir);
	cleanup_free char *text = NULL;
	struct vs_error ignore;
	if (vs_read_file(p, 4096, &text, NULL, &ignore) < 0)
		return -ENOENT;
	char img[128];
	unsigned long b;
	if (sscanf(text, "%127s %lu", img, &b) != 2 || b > UINT32_MAX)
		return -EINVAL;
	snprintf(image, len, "%s", img);
	*base = (uint32_t)b;
	return 0;
}

/*
 * <dir>/ns is a bind mount of itself with the five nsfs bind mounts on
 * its files, so one lazy unmount takes them all (one mount-namespace
 * unlock and its RCU wait instead of five). The files stay: plain empty
 * files are "nothing kept" to pool_open_ns, and go with the directory.
 */
static void unmount_ns(const char *dir)
{
	cleanup_free char *d = vs_xasprintf("%s/ns", dir);
	if (umount2(d, MNT_DETACH | UMOUNT_NOFOLLOW) == 0 || errno == ENOENT)
		return;
	/* Not a mount: a half-made entry may hold file mounts only. */
	for (int i = 0; i < POOL_NS_COUNT; i++) {
		cleanup_free char *p = vs_xasprintf("%s/ns/%s", dir, pool_ns_names[i]);
		(void)umount2(p, MNT_DETACH | UMOUNT_NOFOLLOW);
	}
}

void pool_release_ns(const char *slice_dir)
{
	unmount_ns(slice_dir);
}

/* In M's own mount namespace: drop the copies of every entry's and slice's
 * nsfs bind mounts (see the top of this file). */
static void drop_copied_ns_mounts(const char *root)
{
	static const char *const parents[] = {"pool", "slices"};
	for (size_t k = 0; k < VS_ARRAY_SIZE(parents); k++) {
		cleanup_free char *pd = vs_xasprintf("%s/%s", root, parents[k]);
		cleanup_closedir DIR *d = opendir(pd);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' && (!de->d_name[1] || de->d_name[1] == '.'))
				continue;
			cleanup_free char *e = vs_xasprintf("%s/%s", pd, de->d_name);
			unmount_ns(e);
		}
	}
}

/* What a claim must match: the image, and whether the overlay is mounted
 * "volatile" (run --rm: no sync of the upper file system when it ends;
 * a slice that lives on must not get one). '+' is not in image names. */
static char *pool_key(const char *image, bool volatile_upper)
{
	return vs_xasprintf("%s%s", image, volatile_upper ? "+volatile" : "");
}

/* The pool's name for an entry's cgroups. */
static char *entry_cgroup(const char *entry)
{
	return vs_xasprintf("pool@%s", entry);
}

/*
 * Remove an entry: bind mounts, cgroups, id range, files. `dir` is where it
 * is now, `entry` its name when it was made (cgroup and id range owner).
 */
static int remove_entry(const char *root, const char *dir, const char *entry, struct vs_error *err)
{
	pool_release_ns(dir);
	cleanup_free char *cgname = entry_cgroup(entry);
	struct cgroup *cg = NULL;
	int r = cgroup_open(NULL, NULL, cgname, &cg, err);
	if (r == 0) {
		r = cgroup_destroy(cg, err);
		cgroup_free(cg);
	}
	if (r < 0)
		return vs_error_wrap(err, "pool entry %s", entry);
	cleanup_free char *owner = pool_path(root, entry);
	char image[128];
	uint32_t base;
	if (read_sandbox(dir, image, sizeof(image), &base) == 0)
		r = idrange_release(idrange_default_dir(), owner, base, err);
	else
		r = idrange_release_owner(idrange_default_dir(), owner, err);
	if (r < 0)
		return vs_error_wrap(err, "pool entry %s", entry);
	if ((r = vs_rm_rf(dir, err)) < 0)
		return vs_error_wrap(err, "pool entry %s", entry);
	return 0;
}

/* In M: everything of the sandbox that lives in namespaces. */
static int build_namespaces(const char *root, const char *dir, const char *image_rootfs,
			    bool volatile_upper, uint32_t base, struct cgroup *cg,
			    struct vs_error *err)
{
	prctl(PR_SET_DUMPABLE, 0);
	int r = cgroup_enter_self(cg, err);
	if (r < 0)
		return r;
	cleanup_close int userns = sliver_make_userns(base, IDRANGE_SIZE, err);
	if (userns < 0)
		return userns;
	if (unshare(CLONE_NEWNS) < 0)
		return vs_error_sys(err, errno, "unshare(mount ns)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return vs_error_sys(err, errno, "make / private");
	drop_copied_ns_mounts(root);
	cleanup_free char *lower = vs_xasprintf("%s/lower", dir);
	cleanup_free char *upper = vs_xasprintf("%s/upper", dir);
	cleanup_free char *work = vs_xasprintf("%s/work", dir);
	cleanup_free char *rootfs = vs_xasprintf("%s/rootfs", dir);
	cleanup_free char *copy = vs_xasprintf("%s/lower-copy", dir);
	struct sliver_config c = {
	    .name = dir,
	    .image_rootfs = image_rootfs,
	    .lower_mnt = lower,
	    .upper = upper,
	    .work = work,
	    .rootfs = rootfs,
	    .lower_copy = copy,
	    .id_base = base,
	    .id_count = IDRANGE_SIZE,
	    .cg = cg,
	    .volatile_upper = volatile_upper,
	};
	bool idmapped = true;
	if ((r = rootfs_mount_overlay(&c, userns, &idmapped, err)) < 0)
		return r;
	/* The copy fallback is a cold start's business (it says so in show). */
	if (!idmapped)
		return vs_error_set(err, EOPNOTSUPP, "id-mapped mounts refused: no pool");
	if (setns(userns, CLONE_NEWUSER) < 0)
		return vs_error_sys(err, errno, "setns(user ns)");
	if ((r = sliver_become_root(err)) < 0)
		return r;
	if (unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
		return vs_error_sys(err, errno, "unshare(net, ipc, uts)");
	return sliver_loopback_up(err);
}

/* Fork M, bind its namespaces onto dir/ns, let it go. */
static int keep_namespaces(const char *root, const char *dir, const char *image_rootfs,
			   bool volatile_upper, uint32_t base, struct cgroup *cg,
			   struct vs_error *err)
{
	int go[2], rep[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	if (pipe2(rep, O_CLOEXEC) < 0) {
		int e = errno;
		close(go[0]);
		close(go[1]);
		return vs_error_sys(err, e, "pipe");
	}
	pid_t m = fork();
	if (m < 0) {
		int e = errno;
		close(go[0]);
		close(go[1]);
		close(rep[0]);
		close(rep[1]);
		return vs_error_sys(err, e, "fork");
	}
	if (m == 0) {
		close(go[1]);
		close(rep[0]);
		struct vs_error e2;
		vs_error_clear(&e2);
		if (build_namespaces(root, dir, image_rootfs, volatile_upper, base, cg, &e2) < 0) {
			sliver_send(rep[1], MSG_ERROR, e2.code, e2.msg);
			_exit(1);
		}
		sliver_send(rep[1], MSG_PID, 0, NULL);
		char ch;
		while (read(go[0], &ch, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(go[0]);
	close(rep[1]);
	struct sliver_msg msg;
	int r = 0;
	if (vs_read_all(rep[0], &msg, sizeof(msg)) != (ssize_t)sizeof(msg)) {
		r = vs_error_set(err, EIO, "sandbox maker died");
	} else if (msg.kind != MSG_PID) {
		msg.text[sizeof(msg.text) - 1] = '\0';
		r = vs_error_set(err, msg.code ? msg.code : EIO, "%s", msg.text);
	}
	cleanup_free char *nsdir = vs_xasprintf("%s/ns", dir);
	if (r == 0 && mount(nsdir, nsdir, NULL, MS_BIND, NULL) < 0)
		r = vs_error_sys(err, errno, "bind %s on itself", nsdir);
	for (int i = 0; r == 0 && i < POOL_NS_COUNT; i++) {
		char src[64];
		snprintf(src, sizeof(src), "/proc/%d/ns/%s", m, pool_ns_names[i]);
		cleanup_free char *dst = vs_xasprintf("%s/ns/%s", dir, pool_ns_names[i]);
		int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			r = vs_error_sys(err, errno, "create %s", dst);
			break;
		}
		close(fd);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
			r = vs_error_sys(err, errno, "bind %s on %s", src, dst);
	}
	close(rep[0]);
	close(go[1]);
	while (waitpid(m, NULL, 0) < 0 && errno == EINTR)
		;
	return r;
}

static int make_entry(const char *root, const char *key, const char *image_rootfs,
		      const char *entry, struct vs_error *err)
{
	cleanup_free char *dir = pool_path(root, entry);
	if (mkdir(dir, 0711) < 0)
		return vs_error_sys(err, errno, "mkdir %s", dir);
	static const char *const dirs[] = {"upper", "work", "lower", "rootfs", "ns"};
	int r = 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(dirs) && r == 0; i++) {
		cleanup_free char *p = vs_xasprintf("%s/%s", dir, dirs[i]);
		if (mkdir(p, 0700) < 0)
			r = vs_error_sys(err, errno, "mkdir %s", p);
	}
	uint32_t base = 0;
	if (r == 0)
		r = idrange_claim(idrange_default_dir(), dir, false, &base, err);
	if (r == 0) {
		cleanup_free char *sb = vs_xasprintf("%s/sandbox", dir);
		cleanup_free char *line = vs_xasprintf("%s %u\n", key, base);
		r = vs_write_file_replace(sb, line, strlen(line), 0600, false, err);
	}
	/* Files every slice gets at its first lock and start: made here, they
	 * are not new inodes on the start path. */
	static const char *const files[] = {"lock", "exit"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(files) && r == 0; i++) {
		cleanup_free char *p = vs_xasprintf("%s/%s", dir, files[i]);
		cleanup_close int fd =
		    open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			r = vs_error_sys(err, errno, "create %s", p);
	}
	if (r == 0) {
		/* The slice's root owns the top of its upper layer. */
		cleanup_free char *upper = vs_xasprintf("%s/upper", dir);
		if (chown(upper, base, base) < 0 || chmod(upper, 0755) < 0)
			r = vs_error_sys(err, errno, "chown %s", upper);
	}
	cleanup_free char *cgname = entry_cgroup(entry);
	struct cgroup *cg = NULL;
	if (r == 0 && (r = cgroup_open(NULL, NULL, cgname, &cg, err)) == 0)
		r = cgroup_create(cg, NULL, err);
	if (r == 0)
		r = keep_namespaces(root, dir, image_rootfs, strstr(key, "+volatile") != NULL, base,
				    cg, err);
	if (cg)
		cgroup_free(cg);
	if (r == 0) {
		cleanup_free char *ready = vs_xasprintf("%s/ready", dir);
		cleanup_close int fd =
		    open(ready, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			r = vs_error_sys(err, errno, "create %s", ready);
	}
	if (r < 0) {
		struct vs_error ignore;
		remove_entry(root, dir, entry, &ignore);
		return vs_error_wrap(err, "pool entry %s", entry);
	}
	return 0;
}

static bool entry_ready(int dfd, const char *entry)
{
	cleanup_free char *p = vs_xasprintf("%s/ready", entry);
	return faccessat(dfd, p, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * Under pool/lock: rename every entry that must go (not ready: a dead
 * filler's; of another image; ready ones beyond `keep`: the size was
 * lowered) to .x-NAME, and count the ready ones that stay. Then, outside the
 * lock, remove every .x-.
 */
static int sweep(const char *root, const char *image, unsigned keep, unsigned *ready,
		 struct vs_error *err)
{
	cleanup_free char *pd = pool_path(root, NULL);
	cleanup_free char *lockp = pool_path(root, "lock");
	*ready = 0;
	{
		cleanup_close int lk = lock_file(lockp, LOCK_EX, err);
		if (lk < 0)
			return lk;
		cleanup_closedir DIR *d = opendir(pd);
		if (!d)
			return vs_error_sys(err, errno, "pool: open %s", pd);
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] != 'e')
				continue;
			char img[128] = "";
			uint32_t base;
			cleanup_free char *ep = pool_path(root, de->d_name);
			if (*ready < keep && entry_ready(dirfd(d), de->d_name) &&
			    read_sandbox(ep, img, sizeof(img), &base) == 0 && !strcmp(img, image)) {
				(*ready)++;
				continue;
			}
			cleanup_free char *gone = vs_xasprintf(".x-%s", de->d_name);
			if (renameat(dirfd(d), de->d_name, dirfd(d), gone) < 0)
				return vs_error_sys(err, errno, "pool: rename %s", de->d_name);
		}
	}
	cleanup_closedir DIR *d = opendir(pd);
	if (!d)
		return vs_error_sys(err, errno, "pool: open %s", pd);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, ".x-", 3) != 0)
			continue;
		cleanup_free char *p = pool_path(root, de->d_name);
		struct vs_error e2;
		if (remove_entry(root, p, de->d_name + 3, &e2) < 0 && r == 0) {
			*err = e2;
			r = -e2.code;
		}
	}
	return r;
}

static unsigned count_ready(const char *root, const char *image)
{
	cleanup_free char *pd = pool_path(root, NULL);
	cleanup_closedir DIR *d = opendir(pd);
	unsigned n = 0;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char img[128];
		uint32_t base;
		cleanup_free char *ep = pool_path(root, de->d_name);
		if (de->d_name[0] == 'e' && entry_ready(dirfd(d), de->d_name) &&
		    read_sandbox(ep, img, sizeof(img), &base) == 0 && !strcmp(img, image))
			n++;
	}
	return n;
}

static int fill_locked(const char *root, const char *image, const char *image_rootfs, unsigned size,
		       struct vs_error *err)
{
	unsigned have;
	int r = sweep(root, image, size, &have, err);
	if (r < 0)
		return r;
	static unsigned seq;
	/* Count again after each one: creates claim entries meanwhile, and
	 * their refill requests find us busy. */
	for (; have < size; have = count_ready(root, image)) {
		char entry[64];
		snprintf(entry, sizeof(entry), "e%u-%d", seq++, getpid());
		if ((r = make_entry(root, image, image_rootfs, entry, err)) < 0)
			return r;
		vs_trace("pool.made");
	}
	return 0;
}

int pool_fill(const char *root, const char *image, bool volatile_upper, const char *image_rootfs,
	      unsigned size, struct vs_error *err)
{
	cleanup_free char *key = pool_key(image, volatile_upper);
	cleanup_free char *pd = pool_path(root, NULL);
	int r = vs_mkdir_p(pd, 0711, err);
	if (r < 0)
		return r;
	cleanup_free char *fl = pool_path(root, "fill.lock");
	/* Another filler at it: it fills, we are not needed; but emptying
	 * (size 0) waits for it, or what it makes would stay. */
	cleanup_close int lk = lock_file(fl, size ? LOCK_EX | LOCK_NB : LOCK_EX, err);
	if (lk == -EWOULDBLOCK)
		return 0;
	if (lk < 0)
		return lk;
	return fill_locked(root, key, image_rootfs, size, err);
}

int pool_drain(const char *root, struct vs_error *err)
{
	cleanup_free char *pd = pool_path(root, NULL);
	struct stat st;
	if (stat(pd, &st) < 0)
		return 0;
	cleanup_free char *fl = pool_path(root, "fill.lock");
	cleanup_close int lk = lock_file(fl, LOCK_EX, err);
	if (lk < 0)
		return lk;
	unsigned have;
	return sweep(root, "", 0, &have, err);
}

bool pool_refill_async(const char *root, const char *image, bool volatile_upper,
		       const char *image_rootfs, unsigned size, void (*before)(void *), void *arg)
{
	cleanup_free char *key = pool_key(image, volatile_upper);
	struct vs_error err;
	vs_error_clear(&err);
	cleanup_free char *pd = pool_path(root, NULL);
	if (vs_mkdir_p(pd, 0711, &err) < 0)
		return false;
	/* The lock is taken here, before we return, and handed to the filler
	 * (a flock belongs to the open file, which it inherits): once our
	 * caller is done, fill.lock tells whether the pool is still being
	 * filled. A filler already at it: nothing to do, not even a fork. */
	cleanup_free char *fl = pool_path(root, "fill.lock");
	cleanup_close int lk = lock_file(fl, LOCK_EX | LOCK_NB, &err);
	if (lk < 0)
		return false;
	pid_t p = fork();
	if (p != 0) {
		if (p < 0)
			return false;
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		return true;
	}
	/* Not our caller's child (it would have to reap us), not in its
	 * session, and holding none of its fds but the lock: a flock or the
	 * write end of a pipe someone waits on must not live on in here. */
	setsid();
	if (fork() != 0)
		_exit(0);
	if (dup2(lk, 3) < 0)
		_exit(1);
	close_range(4, ~0U, 0);
	int fd = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && fd >= 0; i++)
		if (i != fd)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
	prctl(PR_SET_NAME, "vslice-pool");
	/* Behind the starts it is there to speed up: on a busy node a refill
	 * competing with the next start for the CPUs would cost that start
	 * what the pool saves it. */
	(void)!nice(10);
	if (before)
		before(arg);
	_exit(fill_locked(root, key, image_rootfs, size, &err) < 0 ? 1 : 0);
}

int pool_claim(const char *root, const char *image, bool volatile_upper, const char *slice_dir,
	       const char *name, const struct cgroup_limits *lim, bool durable, uint32_t *id_base,
	       struct vs_error *err)
{
	cleanup_free char *key = pool_key(image, volatile_upper);
	cleanup_free char *pd = pool_path(root, NULL);
	cleanup_free char *lockp = pool_path(root, "lock");
	char entry[256] = "";
	uint32_t base = 0;
	{
		struct stat st;
		if (stat(pd, &st) < 0)
			return 0;
		cleanup_close int lk = lock_file(lockp, LOCK_EX, err);
		if (lk < 0)
			return lk;
		cleanup_closedir DIR *d = opendir(pd);
		if (!d)
			return vs_error_sys(err, errno, "pool: open %s", pd);
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] != 'e' || !entry_ready(dirfd(d), de->d_name))
				continue;
			char img[128];
			cleanup_free char *ep = pool_path(root, de->d_name);
			if (read_sandbox(ep, img, sizeof(img), &base) < 0 || strcmp(img, key))
				continue;
			/* To the slice's name, which must be free (this is
			 * create's reservation of it): the entry is the slice
			 * from here on, and nobody else can take it. */
			if (renameat2(dirfd(d), de->d_name, AT_FDCWD, slice_dir, RENAME_NOREPLACE) <
			    0) {
				if (errno == EEXIST)
					return -EEXIST;
				return vs_error_sys(err, errno, "pool: take %s", de->d_name);
			}
			snprintf(entry, sizeof(entry), "%s", de->d_name);
			break;
		}
	}
	if (!entry[0])
		return 0;
	cleanup_free char *owner = pool_path(root, entry);
	int r = idrange_transfer(idrange_default_dir(), owner, slice_dir, base, durable, err);
	cleanup_free char *cgname = entry_cgroup(entry);
	struct cgroup *from = NULL, *to = NULL;
	if (r == 0 && (r = cgroup_open(NULL, NULL, cgname, &from, err)) == 0 &&
	    (r = cgroup_open(NULL, NULL, name, &to, err)) == 0) {
		if (cgroup_exists(to)) {
			/* Left by a crashed run of a slice with this name: ours. */
			struct vs_error e2;
			cgroup_destroy(to, &e2);
		}
		r = cgroup_rename(from, to, lim, err);
	}
	if (r < 0) {
		struct vs_error ignore;
		if (from && cgroup_exists(from))
			cgroup_destroy(from, &ignore);
		idrange_release(idrange_default_dir(), owner, base, &ignore);
		r = vs_error_wrap(err, "pool entry %s", entry);
	}
	if (from)
		cgroup_free(from);
	if (to)
		cgroup_free(to);
	if (r < 0)
		return r;
	*id_base = base;
	return 1;
}

int pool_open_ns(const char *slice_dir, int fds[POOL_NS_COUNT], struct vs_error *err)
{
	for (int i = 0; i < POOL_NS_COUNT; i++)
		fds[i] = -1;
	int r = 1;
	struct stat user_st = {0};
	for (int i = 0; i < POOL_NS_COUNT && r == 1; i++) {
		cleanup_free char *p = vs_xasprintf("%s/ns/%s", slice_dir, pool_ns_names[i]);
		fds[i] = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fds[i] < 0) {
			/* None kept (or a bind mount lost with a reboot): cold. */
			r = errno == ENOENT && i == 0 ? 0 : vs_error_sys(err, errno, "open %s", p);
			break;
		}
		struct statfs fs;
		if (fstatfs(fds[i], &fs) < 0 || fs.f_type != NSFS_MAGIC) {
			r = 0;
			break;
		}
		if (ioctl(fds[i], NS_GET_NSTYPE) != ns_types[i]) {
			r = vs_error_set(err, EINVAL, "%s: not a %s namespace", p,
					 pool_ns_names[i]);
			break;
		}
		if (i == POOL_NS_USER) {
			fstat(fds[i], &user_st);
		} else if (i != POOL_NS_MNT) {
			/* net, ipc, uts must belong to the slice's user ns. */
			cleanup_close int owner = ioctl(fds[i], NS_GET_USERNS);
			struct stat st;
			if (owner < 0 || fstat(owner, &st) < 0 || st.st_ino != user_st.st_ino ||
			    st.st_dev != user_st.st_dev)
				r = vs_error_set(err, EPERM,
						 "%s: not owned by the slice's user namespace", p);
		}
	}
	if (r == 1)
		return 1;
	pool_release_ns(slice_dir);
	for (int i = 0; i < POOL_NS_COUNT; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	return r;
}
