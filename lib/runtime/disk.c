/*
 * disk.c - a slice's disk limit: its overlay upper layer on a file system of
 * its own, a sparse ext4 image (<slice>/disk.img) of the size asked for.
 *
 * Why an image and not project quotas: quotas need the host file system to
 * carry them (ext4 -O quota,project, or XFS prjquota) and a project id per
 * upper dir; vslice cannot count on that (this build machine mounts its
 * ext4 root "noquota"). An image works on any host file system that has
 * sparse files, and the kernel itself enforces the size: a write past it
 * fails with ENOSPC inside the slice, and the host file system never holds
 * more than the image's size for the slice's files.
 *
 * The image is made at create by mkfs.ext4 (e2fsprogs), 4 KiB blocks, no
 * reserved blocks (the slice's root is not host root, it would not get
 * them), its journal left unzeroed (lazy_journal_init: the holes of a sparse
 * file read as zeroes), and no journal at all for run --rm slices. It costs
 * a few hundred KiB of the host disk until the slice writes.
 *
 * At start, the launcher (host root, in its private mount namespace, see
 * sliver.c) attaches the image to a loop device (/dev/loop-control
 * LOOP_CTL_GET_FREE + LOOP_CONFIGURE, autoclear, direct I/O so the data is
 * not cached twice) and mounts it at <slice>/disk, nodev, nosuid, with
 * online discard so that what the slice deletes goes back to the host (loop
 * punches holes in the image). upper/ and work/ live in it. The mount
 * exists only in the slice's mount namespaces: when the slice's last process
 * is gone, the file system is unmounted, and autoclear frees the loop device.
 *
 * One image must never be mounted through two loop devices at once (two
 * file systems writing one file). A start right after a stop can come
 * before the old mount is torn down, so the launcher waits until no loop
 * device is backed by the image before it attaches it (the slice's lock
 * keeps two starts of one slice apart).
 *
 * The host reaches a slice's files (a manifest's files placed at create,
 * results read after a run) through sliver_disk_with_upper(), under the
 * slice's lock too: the image is mounted with the new mount API (fsopen,
 * fsmount) as a detached mount, attached to no mount namespace at all, so
 * nothing ever shows on the host, nothing needs a child process, and the
 * mount is gone when its last fd is closed; the loop device (autoclear)
 * goes with it, and the function waits for that before it returns, on
 * failure too. While the slice runs, its image is already attached: a read
 * then goes through that same loop device, and the kernel hands back the
 * slice's own super block (one file system per image, never two); a write
 * is refused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sliver_internal.h"
#include "vslice/util.h"

/* mkfs.ext4 from e2fsprogs: only these, never through the caller's PATH. */
static const char *const mkfs_paths[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};

/* Run mkfs.ext4 on path; its stderr (first line) goes into the error. */
static int run_mkfs(const char *path, bool journal, struct vs_error *err)
{
	const char *mkfs = NULL;
	for (size_t i = 0; i < VS_ARRAY_SIZE(mkfs_paths) && !mkfs; i++)
		if (access(mkfs_paths[i], X_OK) == 0)
			mkfs = mkfs_paths[i];
	if (!mkfs)
		return vs_error_set(err, ENOENT, "mkfs.ext4 not found (install e2fsprogs)");
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "pipe");
	pid_t p = fork();
	if (p < 0) {
		int e = errno;
		close(ep[0]);
		close(ep[1]);
		return vs_error_sys(err, e, "fork");
	}
	if (p == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(ep[1], 2) < 0)
			_exit(126);
		char *argv[] = {(char *)"mkfs.ext4",
				(char *)"-q",
				(char *)"-F",
				(char *)"-b",
				(char *)"4096",
				(char *)"-m",
				(char *)"0",
				(char *)"-L",
				(char *)"vslice",
				(char *)"-E",
				(char *)"lazy_itable_init=1,lazy_journal_init=1",
				(char *)"-O",
				(char *)(journal ? "has_journal" : "^has_journal"),
				(char *)path,
				NULL};
		char *envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C",
				NULL};
		execve(mkfs, argv, envp);
		_exit(127);
	}
	close(ep[1]);
	char msg[256];
	ssize_t n = vs_read_all(ep[0], msg, sizeof(msg) - 1);
	close(ep[0]);
	msg[n > 0 ? n : 0] = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	int st;
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return vs_error_sys(err, errno, "wait for %s", mkfs);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return vs_error_set(err, EIO, "%s %s: failed (status %d)%s%s", mkfs, path,
				    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
				    msg[0] ? ": " : "", msg);
	return 0;
}

int sliver_disk_create(const char *path, uint64_t bytes, bool durable, struct vs_error *err)
{
	if (bytes < SLIVER_DISK_MIN || bytes > SLIVER_DISK_MAX)
		return vs_error_set(err, ERANGE, "disk image %s: size out of range", path);
	cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "disk image %s", path);
	/* Sparse: the host disk pays only for what the slice writes. */
	if (ftruncate(fd, (off_t)bytes) < 0)
		return vs_error_sys(err, errno, "disk image %s: size", path);
	int r = run_mkfs(path, durable, err);
	if (r < 0)
		return r;
	if (durable && fsync(fd) < 0)
		return vs_error_sys(err, errno, "disk image %s: fsync", path);
	return 0;
}

/* The loop device backed by the file at real (a canonical path), or -1. */
static int backing_loop(const char *real)
{
	cleanup_closedir DIR *d = opendir("/sys/block");
	if (!d)
		return -1;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		char p[PATH_MAX + 64], buf[PATH_MAX + 16];
		snprintf(p, sizeof(p), "/sys/block/%s/loop/backing_file", de->d_name);
		cleanup_close int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* not bound */
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (!strcmp(buf, real))
			return atoi(de->d_name + 4);
	}
	return -1;
}

int sliver_disk_loop(const char *path)
{
	char real[PATH_MAX];
	return realpath(path, real) ? backing_loop(real) : -1;
}

/* Wait (up to ~10 s) until no loop device is backed by the image. */
static int wait_detached(const char *path, struct vs_error *err)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return vs_error_sys(err, errno, "disk image %s", path);
	int n = -1;
	for (int i = 0; i < 1000 && (n = backing_loop(real)) >= 0; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (n >= 0)
		return vs_error_set(err, EBUSY,
				    "disk image %s: still attached to /dev/loop%d (the slice's "
				    "last run has not ended)",
				    path, n);
	return 0;
}

/* Attach img_fd to a free loop device (autoclear); returns its fd. */
static int loop_attach(int img_fd, const char *name, char *dev, size_t dev_len,
		       struct vs_error *err)
{
	cleanup_close int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return vs_error_sys(err, errno, "/dev/loop-control");
	uint32_t flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
	/* Another process may take the free device between the two calls:
	 * LOOP_CONFIGURE then says EBUSY and we ask again. */
	for (int tries = 0; tries < 64; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return vs_error_sys(err, errno, "/dev/loop-control: no free loop device");
		snprintf(dev, dev_len, "/dev/loop%d", n);
		int fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s", dev);
		struct loop_config lc = {.fd = (uint32_t)img_fd, .block_size = 4096};
		lc.info.lo_flags = flags;
		snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name), "vslice:%s",
			 name);
		if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (e == EINVAL && (flags & LO_FLAGS_DIRECT_IO)) {
			flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO; /* file system without O_DIRECT */
			tries--;
			continue;
		}
		if (e != EBUSY)
			return vs_error_sys(err, e, "%s: attach", dev);
	}
	return vs_error_set(err, EBUSY, "no loop device could be attached (all busy)");
}

/*
 * upper/ and work/ at the top of the image's file system (dfd; where names
 * it in errors), made at the first mount: the slice's root owns the top of
 * its upper layer, 0755 whatever the umask (the slice's "/").
 */
static int make_upper_work(int dfd, const char *where, uint32_t id_base, struct vs_error *err)
{
	if (mkdirat(dfd, "upper", 0700) == 0) {
		if (fchownat(dfd, "upper", id_base, id_base, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fchmodat(dfd, "upper", 0755, 0) < 0)
			return vs_error_sys(err, errno, "chown %s/upper", where);
	} else if (errno != EEXIST) {
		return vs_error_sys(err, errno, "mkdir %s/upper", where);
	}
	if (mkdirat(dfd, "work", 0700) < 0 && errno != EEXIST)
		return vs_error_sys(err, errno, "mkdir %s/work", where);
	return 0;
}

int rootfs_mount_disk(const struct sliver_config *c, struct vs_error *err)
{
	int r = wait_detached(c->disk_image, err);
	if (r < 0)
		return r;
	cleanup_close int img = open(c->disk_image, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (img < 0)
		return vs_error_sys(err, errno, "disk image %s", c->disk_image);
	char dev[32];
	/* Held only until the mount holds the device: then autoclear frees it
	 * when the file system goes, with the slice's last process. */
	cleanup_close int loop = loop_attach(img, c->name, dev, sizeof(dev), err);
	if (loop < 0)
		return vs_error_wrap(err, "disk image %s", c->disk_image);
	if (mount(dev, c->disk_mnt, "ext4", MS_NODEV | MS_NOSUID, "discard") < 0)
		return vs_error_sys(err, errno, "mount %s (%s) at %s", c->disk_image, dev,
				    c->disk_mnt);
	/* c->upper and c->work are <disk_mnt>/upper and /work (slice.c). */
	cleanup_close int top = open(c->disk_mnt, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return vs_error_sys(err, errno, "%s", c->disk_mnt);
	return make_upper_work(top, c->disk_mnt, c->id_base, err);
}

/* ------------------------------------------------------------------ */
/* the host's access to a slice's files                                */

/*
 * The loop device the image (img_st: its fstat) is attached to, opened, or
 * -1 if none. Opened, the device cannot be cleared under us (autoclear
 * waits for its last opener), and LOOP_GET_STATUS64 then proves that it is
 * still backed by this very file, not by one attached to it since sysfs
 * was read.
 */
static int open_attached_loop(const char *path, const struct stat *img_st, char *dev,
			      size_t dev_len)
{
	int n = sliver_disk_loop(path);
	if (n < 0)
		return -1;
	snprintf(dev, dev_len, "/dev/loop%d", n);
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct loop_info64 li;
	if (ioctl(fd, LOOP_GET_STATUS64, &li) < 0 || li.lo_device != (uint64_t)img_st->st_dev ||
	    li.lo_inode != (uint64_t)img_st->st_ino) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Mount the ext4 on dev as a detached mount (nodev, nosuid, noexec);
 * returns its fd. A dev that already carries a mounted ext4 gives back that
 * super block (it must be read-write, as the slice's is). */
static int mount_detached(const char *dev, const char *image, struct vs_error *err)
{
	cleanup_close int fs = fsopen("ext4", FSOPEN_CLOEXEC);
	if (fs < 0)
		return vs_error_sys(err, errno, "disk image %s: fsopen ext4", image);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_FLAG, "discard", NULL, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int e = errno;
		/* The file system's own words, if it left any ("e ext4: ..."). */
		char msg[256];
		ssize_t n = read(fs, msg, sizeof(msg) - 1);
		msg[n > 2 ? n : 0] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		return vs_error_sys(err, e, "disk image %s: mount %s%s%s", image, dev,
				    msg[0] ? ": " : "", msg[0] ? msg + 2 : "");
	}
	int m =
	    fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
	if (m < 0)
		return vs_error_sys(err, errno, "disk image %s: fsmount %s", image, dev);
	return m;
}

/* sliver_disk_with_upper's work; every fd it opens is closed when it
 * returns. *attached: it attached a loop device (to wait for after). */
static int with_upper(const char *image, const char *name, uint32_t id_base, bool write,
		      sliver_upper_fn fn, void *arg, bool *attached, struct vs_error *err)
{
	/* A write waits for the end of a run that is still being torn down,
	 * as a start does; after that the slice's lock keeps it detached. */
	int r = write ? wait_detached(image, err) : 0;
	if (r < 0)
		return r;
	cleanup_close int img = open(image, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (img < 0 || fstat(img, &st) < 0)
		return vs_error_sys(err, errno, "disk image %s", image);
	char dev[32];
	cleanup_close int loop = open_attached_loop(image, &st, dev, sizeof(dev));
	if (loop >= 0 && write) {
		vs_error_set(err, EBUSY, "disk image %s: in use by the running slice (%s)", image,
			     dev);
		return vs_error_kind(err, VS_EK_BUSY);
	}
	/* Never a second loop device on an attached image, even if the one it
	 * is on could not be opened or proven (then sysfs still names it). */
	int n = loop < 0 ? sliver_disk_loop(image) : -1;
	if (n >= 0) {
		vs_error_set(err, EBUSY,
			     "disk image %s: attached to /dev/loop%d, which cannot be used", image,
			     n);
		return vs_error_kind(err, VS_EK_BUSY);
	}
	if (loop < 0) {
		loop = loop_attach(img, name, dev, sizeof(dev), err);
		if (loop < 0)
			return vs_error_wrap(err, "disk image %s", image);
		*attached = true;
	}
	cleanup_close int mnt = mount_detached(dev, image, err);
	if (mnt < 0)
		return mnt;
	/* A slice that never ran has no upper/ yet (its running self has). */
	if (*attached && (r = make_upper_work(mnt, image, id_base, err)) < 0)
		return r;
	/* Read-only for this mount only: the super block stays read-write,
	 * as the running slice's is (the kernel refuses to mix the two). */
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	if (!write && mount_setattr(mnt, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
		return vs_error_sys(err, errno, "disk image %s: read-only mount", image);
	cleanup_close int upper =
	    openat(mnt, "upper", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (upper < 0)
		return vs_error_sys(err, errno, "disk image %s: upper", image);
	return fn(arg, upper, err);
}

int sliver_disk_with_upper(const char *image, const char *name, uint32_t id_base, bool write,
			   sliver_upper_fn fn, void *arg, struct vs_error *err)
{
	bool attached = false;
	int r = with_upper(image, name, id_base, write, fn, arg, &attached, err);
	/* The mount went with its last fd, then the loop device with ours
	 * (autoclear): make sure, so that a start right after finds it free
	 * and no caller ever leaves one behind. Only fn can hold the mount
	 * on, with an fd it did not close. */
	struct vs_error e2;
	if (attached && wait_detached(image, &e2) < 0 && r == 0) {
		*err = e2;
		r = -e2.code;
	}
	return r;
}
