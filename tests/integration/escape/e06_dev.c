/*
 * e06_dev: device nodes.
 *   e06_dev HOST_ROOT_DEV(MAJ:MIN)
 *  - mknod block devices (the host's root disk, sda, vda, nvme, loop, dm)
 *    and char devices (/dev/mem, /dev/kmem, /dev/port, /dev/kmsg); if a
 *    node gets made, open and read it.
 *  - /dev holds only the allowed entries, every device there is one of
 *    null zero full random urandom tty ptmx and pts/N; no block devices.
 *  - open host devices by path (/dev/mem, /dev/sda, /dev/kvm, /dev/fuse...).
 */
#include "escape.h"

struct devnode {
	const char *name;
	mode_t type;
	unsigned ma, mi;
};

static void try_node(const char *name, mode_t type, dev_t dev)
{
	char path[128];
	snprintf(path, sizeof(path), "/tmp/esc-%s", name);
	unlink(path);
	if (mknod(path, type | 0600, dev) != 0) {
		blocked("mknod %s (%u:%u): %s", name, major(dev), minor(dev), strerror(errno));
		return;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		blocked("mknod %s worked but open fails: %s", name, strerror(errno));
		unlink(path);
		return;
	}
	char buf[512];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	unlink(path);
	if (n > 0)
		escaped("mknod %s (%u:%u): opened and read %zd bytes", name, major(dev), minor(dev), n);
	else
		escaped("mknod %s (%u:%u): opened (read: %s)", name, major(dev), minor(dev),
			n < 0 ? strerror(errno) : "EOF");
}

static int allowed_name(const char *n)
{
	static const char *ok[] = { "null",   "zero",   "full",	"random", "urandom", "tty",
				    "ptmx",   "pts",	"shm",	"fd",	  "stdin",   "stdout",
				    "stderr", "console", "mqueue", "core",   NULL };
	for (int i = 0; ok[i]; i++)
		if (strcmp(n, ok[i]) == 0)
			return 1;
	return 0;
}

static int allowed_dev(dev_t d)
{
	unsigned ma = major(d), mi = minor(d);
	if (ma == 1 && (mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9))
		return 1; /* null zero full random urandom */
	if (ma == 5 && (mi == 0 || mi == 2))
		return 1; /* tty ptmx */
	if (ma == 136)
		return 1; /* pts/N */
	return 0;
}

static void scan_dev(const char *dir, int top)
{
	DIR *d = opendir(dir);
	if (!d) {
		info("opendir %s: %s", dir, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) != 0)
			continue;
		if (top && !allowed_name(e->d_name))
			escaped("/dev has %s, not in the allowed list", p);
		if (S_ISBLK(st.st_mode))
			escaped("block device %s (%u:%u)", p, major(st.st_rdev), minor(st.st_rdev));
		else if (S_ISCHR(st.st_mode) && !allowed_dev(st.st_rdev))
			escaped("char device %s (%u:%u) is not allowed", p, major(st.st_rdev),
				minor(st.st_rdev));
		else if (S_ISDIR(st.st_mode) && strcmp(e->d_name, "shm") != 0 &&
			 strcmp(e->d_name, "mqueue") != 0)
			scan_dev(p, 0);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	esc_init();
	dev_t host = argc > 1 ? parse_dev(argv[1]) : 0;
	if (host)
		try_node("hostroot", S_IFBLK, host);
	static const struct devnode nodes[] = {
		{ "sda", S_IFBLK, 8, 0 },     { "vda", S_IFBLK, 254, 0 }, { "vda-alt", S_IFBLK, 253, 0 },
		{ "nvme", S_IFBLK, 259, 0 },  { "loop0", S_IFBLK, 7, 0 }, { "mem", S_IFCHR, 1, 1 },
		{ "kmem", S_IFCHR, 1, 2 },    { "port", S_IFCHR, 1, 4 },  { "kmsg", S_IFCHR, 1, 11 },
		{ "tty0", S_IFCHR, 4, 0 },    { "fuse", S_IFCHR, 10, 229 },
	};
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++)
		try_node(nodes[i].name, nodes[i].type, makedev(nodes[i].ma, nodes[i].mi));
	scan_dev("/dev", 1);
	static const char *paths[] = { "/dev/mem",	 "/dev/kmem",	   "/dev/port",
				       "/dev/kmsg",	 "/dev/sda",	   "/dev/vda",
				       "/dev/nvme0n1",	 "/dev/loop0",	   "/dev/loop-control",
				       "/dev/kvm",	 "/dev/fuse",	   "/dev/net/tun",
				       "/dev/tty0",	 "/dev/tty1",	   "/dev/mapper/control",
				       "/dev/autofs",	 "/dev/cpu/0/msr", "/dev/btrfs-control",
				       "/dev/hwrng",	 "/dev/userfaultfd", "/dev/vhost-net" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			escaped("open %s: succeeded", paths[i]);
			close(fd);
		} else
			blocked("open %s: %s", paths[i], strerror(errno));
	}
	/* /dev/console, if present, must not be the host's console (5:1). */
	struct stat st;
	if (stat("/dev/console", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 &&
	    minor(st.st_rdev) == 1)
		escaped("/dev/console is the host console (5:1)");
	return esc_finish();
}
