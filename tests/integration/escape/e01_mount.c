/*
 * e01_mount: mount, remount, bind, move, umount (unmasking), propagation,
 * the new mount API, pivot_root, and the chroot + fchdir escape.
 *   e01_mount HOST_MARKER_PATH HOST_ROOT_DEV(MAJ:MIN)
 * HOST_MARKER_PATH is a file the driver made on the host; reaching it from
 * inside by any path is an escape. HOST_ROOT_DEV is the host root fs device:
 * a mount of its root visible inside means the host fs is reachable.
 */
#include "escape.h"
#include <sys/mount.h>

static const char *marker;
static dev_t host_dev;

static void try_mount(const char *what, const char *src, const char *tgt, const char *fs,
		      unsigned long flags, const char *data)
{
	expect_fail(what, mount(src, tgt, fs, flags, data));
}

static void check_marker(const char *ctx)
{
	struct stat st;
	if (marker && stat(marker, &st) == 0)
		escaped("%s: host marker %s is visible", ctx, marker);
	else
		blocked("%s: host marker not reachable", ctx);
}

/* In a child: chroot into a subdir, fchdir back out, walk up, chroot("."). */
static void chroot_fchdir_escape(void)
{
	struct stat root0;
	if (stat("/", &root0) != 0) {
		info("stat /: %s", strerror(errno));
		return;
	}
	int pfd[2];
	if (pipe(pfd) != 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		char res = 'B';
		mkdir("/tmp/esc-jail", 0700);
		int fd = open("/", O_RDONLY | O_DIRECTORY);
		if (chroot("/tmp/esc-jail") != 0)
			dprintf(pfd[1], "chroot refused: %s\n", strerror(errno));
		if (fd >= 0 && fchdir(fd) == 0) {
			for (int i = 0; i < 256; i++)
				if (chdir("..") != 0)
					break;
			if (chroot(".") != 0)
				dprintf(pfd[1], "second chroot refused: %s\n", strerror(errno));
		}
		struct stat r, rp;
		if (stat("/", &r) == 0 && stat("/..", &rp) == 0) {
			if (r.st_dev != root0.st_dev || r.st_ino != root0.st_ino ||
			    rp.st_dev != root0.st_dev || rp.st_ino != root0.st_ino)
				res = 'E';
		}
		struct stat ms;
		if (marker && stat(marker, &ms) == 0)
			res = 'M';
		/* The host's /proc/1 would be the host init: is it? */
		char comm[64];
		if (read_file("/proc/1/comm", comm, sizeof(comm)) > 0)
			dprintf(pfd[1], "after escape /proc/1/comm=%s", comm);
		dprintf(pfd[1], "%c\n", res);
		_exit(0);
	}
	close(pfd[1]);
	char buf[512] = { 0 };
	size_t off = 0;
	ssize_t n;
	while (off < sizeof(buf) - 1 && (n = read(pfd[0], buf + off, sizeof(buf) - 1 - off)) > 0)
		off += (size_t)n;
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	char last = off >= 2 ? buf[off - 2] : '?';
	buf[off >= 2 ? off - 2 : 0] = '\0';
	if (buf[0])
		info("chroot child: %s", buf);
	if (last == 'B')
		blocked("chroot+fchdir escape: still at the slice root");
	else if (last == 'E')
		escaped("chroot+fchdir escape: reached a directory above the slice root");
	else if (last == 'M')
		escaped("chroot+fchdir escape: host marker visible");
	else
		info("chroot+fchdir escape: child gave no verdict");
}

static void check_mountinfo(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		info("mountinfo: %s", strerror(errno));
		return;
	}
	char line[4096];
	int bad = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned id, parent, ma, mi;
		char root[1024], mp[1024];
		if (sscanf(line, "%u %u %u:%u %1023s %1023s", &id, &parent, &ma, &mi, root, mp) != 6)
			continue;
		if (host_dev && makedev(ma, mi) == host_dev && strcmp(root, "/") == 0) {
			escaped("host root file system mounted inside at %s", mp);
			bad = 1;
		}
	}
	fclose(f);
	if (!bad)
		blocked("no mount of the host root file system's root inside the slice");
}

int main(int argc, char **argv)
{
	esc_init();
	marker = argc > 1 ? argv[1] : NULL;
	host_dev = argc > 2 ? parse_dev(argv[2]) : 0;
	mkdir("/tmp/esc-mnt", 0700);
	mkdir("/tmp/esc-mnt2", 0700);
	/* First, while / is certainly as the runtime left it. */
	chroot_fchdir_escape();

	try_mount("mount tmpfs on /tmp/esc-mnt", "none", "/tmp/esc-mnt", "tmpfs", 0, NULL);
	try_mount("mount a fresh proc (unmasked) on /tmp/esc-mnt", "proc", "/tmp/esc-mnt", "proc", 0,
		  NULL);
	try_mount("mount sysfs on /tmp/esc-mnt", "sysfs", "/tmp/esc-mnt", "sysfs", 0, NULL);
	try_mount("mount cgroup2 on /tmp/esc-mnt", "cgroup2", "/tmp/esc-mnt", "cgroup2", 0, NULL);
	try_mount("mount devtmpfs on /tmp/esc-mnt", "devtmpfs", "/tmp/esc-mnt", "devtmpfs", 0, NULL);
	try_mount("bind-mount / on /tmp/esc-mnt", "/", "/tmp/esc-mnt", NULL, MS_BIND | MS_REC, NULL);
	try_mount("bind-mount /proc on /tmp/esc-mnt", "/proc", "/tmp/esc-mnt", NULL, MS_BIND, NULL);
	try_mount("remount /sys read-write", NULL, "/sys", NULL, MS_REMOUNT | MS_BIND, NULL);
	try_mount("remount /proc/sys read-write", NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND,
		  NULL);
	try_mount("remount / read-only", NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
	try_mount("make / shared (propagation)", NULL, "/", NULL, MS_SHARED | MS_REC, NULL);
	try_mount("move /proc to /tmp/esc-mnt", "/proc", "/tmp/esc-mnt", NULL, MS_MOVE, NULL);
	expect_fail("umount2 /proc/kcore (unmask)", umount2("/proc/kcore", MNT_DETACH));
	expect_fail("umount2 /proc/sys (unmask)", umount2("/proc/sys", MNT_DETACH));
	expect_fail("umount2 /proc/sysrq-trigger (unmask)",
		    umount2("/proc/sysrq-trigger", MNT_DETACH));
	expect_fail("umount2 /sys/firmware (unmask)", umount2("/sys/firmware", MNT_DETACH));
	expect_fail("umount2 /sys", umount2("/sys", MNT_DETACH));
	expect_fail("umount2 / (reveal what is under the root)", umount2("/", MNT_DETACH));

	/* The new mount API. */
	long fd = syscall(SYS_fsopen, "tmpfs", 0);
	expect_fail("fsopen(tmpfs)", fd);
	if (fd >= 0)
		close((int)fd);
	fd = syscall(SYS_fsopen, "proc", 0);
	expect_fail("fsopen(proc)", fd);
	if (fd >= 0)
		close((int)fd);
	fd = syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | AT_RECURSIVE);
	expect_fail("open_tree(/, OPEN_TREE_CLONE|AT_RECURSIVE)", fd);
	if (fd >= 0) {
		expect_fail("move_mount(cloned tree -> /tmp/esc-mnt2)",
			    syscall(SYS_move_mount, (int)fd, "", AT_FDCWD, "/tmp/esc-mnt2",
				    MOVE_MOUNT_F_EMPTY_PATH));
		close((int)fd);
	}
	fd = syscall(SYS_fspick, AT_FDCWD, "/sys", 0);
	expect_fail("fspick(/sys)", fd);
	if (fd >= 0)
		close((int)fd);
	struct mount_attr attr = { .attr_clr = MOUNT_ATTR_RDONLY };
	expect_fail("mount_setattr(/sys, clear RDONLY)",
		    syscall(SYS_mount_setattr, AT_FDCWD, "/sys", 0, &attr, sizeof(attr)));

	/* pivot_root. */
	if (chdir("/") == 0)
		expect_fail("pivot_root(., .)", syscall(SYS_pivot_root, ".", "."));
	expect_fail("pivot_root(/tmp, /tmp/esc-mnt)",
		    syscall(SYS_pivot_root, "/tmp", "/tmp/esc-mnt"));

	check_marker("after all mount attempts");
	check_mountinfo();
	return esc_finish();
}
