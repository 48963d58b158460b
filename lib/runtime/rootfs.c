/*
 * rootfs.c - a slice's root file system.
 *
 * Host side (launcher, host root, in a private mount ns that no host process
 * sees): the shared image is cloned as a detached mount, id-mapped into the
 * slice's user namespace (so image files owned by host root show as the
 * slice's root and writes land as the slice's ids), attached at <slice>/lower,
 * and overlayfs is mounted with it as lowerdir and the slice's own upper/work.
 * If the kernel or file system refuses the id-mapping, a chowned copy of the
 * image (<slice>/lower-copy, made once) is the lower layer instead.
 * Because all of this lives in a mount namespace that dies with the slice,
 * nothing is ever mounted on the host and nothing can be left mounted there.
 *
 * Slice side (P1, slice root in its own mount ns): the rootfs is bound onto
 * itself (pivot_root refuses a locked mount), /proc, read-only /sys, a tmpfs
 * /dev with only null zero full random urandom tty + devpts + shm, masked and
 * read-only proc/sys paths (the runc/crun lists), then pivot_root and the old
 * root detached.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sliver_internal.h"
#include "vslice/trace.h"
#include "vslice/util.h"

static int idmap_image(const struct sliver_config *c, int userns, struct vs_error *err)
{
	cleanup_close int tree = open_tree(AT_FDCWD, c->image_rootfs,
					   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (tree < 0)
		return vs_error_sys(err, errno, "open_tree %s", c->image_rootfs);
	struct mount_attr attr = {
	    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
	    .userns_fd = (uint64_t)userns,
	};
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return vs_error_sys(err, errno, "id-map %s", c->image_rootfs);
	if (move_mount(tree, "", AT_FDCWD, c->lower_mnt, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return vs_error_sys(err, errno, "attach id-mapped image at %s", c->lower_mnt);
	return 0;
}

/* nftw state for the chowned copy (single-threaded launcher only). */
static const char *copy_src, *copy_dst;
static uint32_t copy_base;

static int copy_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char dst[PATH_MAX];
	if (snprintf(dst, sizeof(dst), "%s%s", copy_dst, path + strlen(copy_src)) >=
	    (int)sizeof(dst))
		return ENAMETOOLONG;
	uid_t uid = st->st_uid < 65536 ? copy_base + st->st_uid : copy_base + 65534;
	gid_t gid = st->st_gid < 65536 ? copy_base + st->st_gid : copy_base + 65534;
	mode_t mode = st->st_mode & 07777 & ~(mode_t)06000;
	if (S_ISDIR(st->st_mode)) {
		if (mkdir(dst, 0700) < 0 && errno != EEXIST)
			return errno;
	} else if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			return errno;
		target[n] = '\0';
		if (symlink(target, dst) < 0)
			return errno;
		return lchown(dst, uid, gid) < 0 ? errno : 0;
	} else if (S_ISREG(st->st_mode)) {
		cleanup_close int in = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		cleanup_close int out =
		    open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (in < 0 || out < 0)
			return errno;
		char buf[65536];
		ssize_t n;
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (vs_write_all(out, buf, (size_t)n) < 0)
				return errno;
		if (n < 0)
			return errno;
	} else {
		return 0; /* images hold no devices, fifos or sockets */
	}
	if (lchown(dst, uid, gid) < 0 || chmod(dst, mode) < 0)
		return errno;
	return 0;
}

/* Fallback when id-mapped mounts are refused: a copy owned by the slice's ids. */
static int chowned_copy(const struct sliver_config *c, struct vs_error *err)
{
	struct stat st;
	cleanup_free char *done = vs_xasprintf("%s/.complete", c->lower_copy);
	if (stat(done, &st) == 0)
		return 0;
	int r = vs_rm_rf(c->lower_copy, err);
	if (r < 0)
		return r;
	copy_src = c->image_rootfs;
	copy_dst = c->lower_copy;
	copy_base = c->id_base;
	r = nftw(c->image_rootfs, copy_one, 64, FTW_PHYS);
	if (r != 0) {
		int e = r > 0 ? r : errno;
		struct vs_error ignore;
		vs_rm_rf(c->lower_copy, &ignore);
		return vs_error_sys(err, e, "chowned copy of %s", c->image_rootfs);
	}
	cleanup_close int fd = open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	return 0;
}

int rootfs_mount_overlay(const struct sliver_config *c, int userns, bool *idmapped,
			 struct vs_error *err)
{
	const char *lower = c->lower_mnt;
	/* VSLICE_IDMAP=off forces the copy (file systems whose id-mapping is
	 * known to misbehave; and the tests of this path). */
	const char *knob = getenv("VSLICE_IDMAP");
	int r = knob && !strcmp(knob, "off") ? vs_error_set(err, EOPNOTSUPP, "id-mapping disabled")
					     : idmap_image(c, userns, err);
	*idmapped = r == 0;
	if (r < 0) {
		if (err->code != EINVAL && err->code != EPERM && err->code != ENOSYS &&
		    err->code != EOPNOTSUPP)
			return r;
		if ((r = chowned_copy(c, err)) < 0)
			return r;
		lower = c->lower_copy;
	}
	char opts[3 * PATH_MAX + 64];
	/* volatile (ephemeral slices): unmounting the overlay when the slice
	 * ends would otherwise sync the whole upper file system. */
	if (snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s%s", lower, c->upper,
		     c->work, c->volatile_upper ? ",volatile" : "") >= (int)sizeof(opts))
		return vs_error_set(err, ENAMETOOLONG, "overlay options too long");
	if (c->volatile_upper) {
		/* A volatile mount leaves work/incompat/volatile/dirty behind,
		 * and overlayfs refuses the next mount while it is there (its
		 * guard against an upper layer that a host crash left unsynced).
		 * An ephemeral slice started again (its run --rm was killed)
		 * holds scratch data only: drop the mark. */
		char mark[PATH_MAX];
		snprintf(mark, sizeof(mark), "%s/work/incompat/volatile/dirty", c->work);
		if (rmdir(mark) == 0) {
			*strrchr(mark, '/') = '\0';
			(void)rmdir(mark);
		}
	}
	if (mount("overlay", c->rootfs, "overlay", MS_NODEV | MS_NOSUID, opts) < 0)
		return vs_error_sys(err, errno, "mount overlay at %s", c->rootfs);
	return 0;
}

/* Join root and a path inside it. */
static void at(char *buf, size_t len, const char *root, const char *rel)
{
	snprintf(buf, len, "%s/%s", root, rel);
}

static int mount_at(const char *root, const char *rel, const char *src, const char *type,
		    unsigned long flags, const char *data, struct vs_error *err)
{
	char p[PATH_MAX];
	at(p, sizeof(p), root, rel);
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return vs_error_sys(err, errno, "mkdir /%s", rel);
	if (mount(src, p, type, flags, data) < 0)
		return vs_error_sys(err, errno, "mount %s on /%s", type ? type : src, rel);
	return 0;
}

static int bind_dev(const char *root, const char *name, struct vs_error *err)
{
	char host[64], p[PATH_MAX];
	snprintf(host, sizeof(host), "/dev/%s", name);
	snprintf(p, sizeof(p), "%s/dev/%s", root, name);
	cleanup_close int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		return vs_error_sys(err, errno, "create /dev/%s", name);
	if (mount(host, p, NULL, MS_BIND, NULL) < 0)
		return vs_error_sys(err, errno, "bind %s", host);
	return 0;
}

static const char *const masked_files[] = {
    "proc/kcore",	"proc/keys",	      "proc/latency_stats", "proc/timer_list",
    "proc/timer_stats", "proc/sched_debug",   "proc/interrupts",    "proc/kallsyms",
    "proc/kmsg",	"proc/sysrq-trigger", "proc/config.gz",	    "proc/vmcoreinfo",
};
static const char *const masked_dirs[] = {
    "proc/acpi",	"proc/asound",	       "proc/scsi",
    "proc/driver",	"sys/firmware",	       "sys/devices/virtual/powercap",
    "sys/kernel/debug", "sys/kernel/security",
};
static const char *const readonly_paths[] = {
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
};

static int mask_paths(const char *root, struct vs_error *err)
{
	char p[PATH_MAX], devnull[PATH_MAX];
	struct stat st;
	at(devnull, sizeof(devnull), root, "dev/null");
	for (size_t i = 0; i < VS_ARRAY_SIZE(masked_files); i++) {
		at(p, sizeof(p), root, masked_files[i]);
		if (lstat(p, &st) < 0)
			continue;
		if (mount(devnull, p, NULL, MS_BIND, NULL) < 0)
			return vs_error_sys(err, errno, "mask /%s", masked_files[i]);
	}
	/* One empty read-only tmpfs, bound over every masked directory: a new
	 * superblock per directory costs a shrinker allocation each, and that
	 * cost grows with the number of slices on the node. */
	char first[PATH_MAX] = "";
	for (size_t i = 0; i < VS_ARRAY_SIZE(masked_dirs); i++) {
		at(p, sizeof(p), root, masked_dirs[i]);
		if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		int m = first[0] ? mount(first, p, NULL, MS_BIND, NULL)
				 : mount("tmpfs", p, "tmpfs",
					 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
					 "size=0,mode=000");
		if (m < 0)
			return vs_error_sys(err, errno, "mask /%s", masked_dirs[i]);
		if (!first[0])
			snprintf(first, sizeof(first), "%s", p);
	}
	for (size_t i = 0; i < VS_ARRAY_SIZE(readonly_paths); i++) {
		at(p, sizeof(p), root, readonly_paths[i]);
		if (lstat(p, &st) < 0)
			continue;
		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, p, NULL,
			  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			return vs_error_sys(err, errno, "read-only /%s", readonly_paths[i]);
	}
	return 0;
}

static int setup_dev(const char *root, struct vs_error *err)
{
	int r;
	if ((r = mount_at(root, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_STRICTATIME,
			  "mode=755,size=1m,nr_inodes=256", err)) < 0)
		return r;
	static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(devs); i++)
		if ((r = bind_dev(root, devs[i], err)) < 0)
			return r;
	/* max=: ptys come from one machine-wide pool (kernel.pty.max); without a
	 * cap per instance one slice could take them all from the others. */
	if ((r = mount_at(root, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
			  "newinstance,ptmxmode=0666,mode=0620,gid=5,max=256", err)) < 0)
		return r;
	if ((r = mount_at(root, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  "mode=1777,size=65536k", err)) < 0)
		return r;
	static const char *const links[][2] = {
	    {"pts/ptmx", "dev/ptmx"},	       {"/proc/self/fd", "dev/fd"},
	    {"/proc/self/fd/0", "dev/stdin"},  {"/proc/self/fd/1", "dev/stdout"},
	    {"/proc/self/fd/2", "dev/stderr"},
	};
	char p[PATH_MAX];
	for (size_t i = 0; i < VS_ARRAY_SIZE(links); i++) {
		at(p, sizeof(p), root, links[i][1]);
		if (symlink(links[i][0], p) < 0)
			return vs_error_sys(err, errno, "symlink /%s", links[i][1]);
	}
	at(p, sizeof(p), root, "dev");
	/* No new device nodes, no exec from /dev. */
	if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC | MS_RDONLY, NULL) <
	    0)
		return vs_error_sys(err, errno, "read-only /dev");
	return 0;
}

int rootfs_enter(const struct sliver_config *c, struct vs_error *err)
{
	const char *root = c->rootfs;
	int r;
	/* pivot_root needs the new root to be a mount we own (not a locked copy). */
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == EACCES)
			return vs_error_sys(
			    err, errno,
			    "%s: every directory above it must be searchable by the "
			    "slice's ids (chmod o+x)",
			    root);
		return vs_error_sys(err, errno, "bind %s", root);
	}
	if ((r = mount_at(root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
			  err)) < 0)
		return r;
	vs_trace("P1.proc");
	if (c->host_net) {
		char p[PATH_MAX];
		at(p, sizeof(p), root, "sys");
		if (mkdir(p, 0555) < 0 && errno != EEXIST)
			return vs_error_sys(err, errno, "mkdir /sys");
		if (mount("/sys", p, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, p, NULL,
			  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			return vs_error_sys(err, errno, "bind /sys read-only");
	} else if ((r = mount_at(root, "sys", "sysfs", "sysfs",
				 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err)) < 0) {
		return r;
	}
	vs_trace("P1.sys");
	if ((r = setup_dev(root, err)) < 0)
		return r;
	vs_trace("P1.dev");
	if ((r = mask_paths(root, err)) < 0)
		return r;
	vs_trace("P1.masks");
	char tmp[PATH_MAX];
	at(tmp, sizeof(tmp), root, "tmp");
	if (mkdir(tmp, 01777) == 0)
		chmod(tmp, 01777);
	if (chdir(root) < 0)
		return vs_error_sys(err, errno, "chdir %s", root);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return vs_error_sys(err, errno, "pivot_root %s", root);
	vs_trace("P1.pivot");
	if (umount2(".", MNT_DETACH) < 0)
		return vs_error_sys(err, errno, "detach old root");
	if (chdir("/") < 0)
		return vs_error_sys(err, errno, "chdir /");
	return 0;
}
