/*
 * e03_procs: see or signal host processes or another slice's processes;
 * ptrace the slice's own PID 1; reach the host's slicectl while it execs.
 *   e03_procs scan SENTINEL_PID MARKER...
 *     scan /proc for MARKERs (in cmdlines of host sentinels / other slices),
 *     kill(SENTINEL_PID, 0), kill(-1, SIGKILL), ptrace/process_vm_readv/
 *     pidfd_getfd against PID 1.
 *   e03_procs race SECONDS
 *     from the workload's first instant, ptrace / readlink fds / open mem of
 *     PID 1 in a loop (PID 1 re-execs vslice-init while the workload runs).
 *   e03_procs watch SECONDS SLICECTL_DEV:INO HOST_ROOT_DEV
 *     (until SECONDS have passed or /tmp/.watch-stop exists)
 *     for SECONDS, every new process that shows up (e.g. `slicectl exec`
 *     entering the slice) is probed: /proc/PID/exe must not be the host's
 *     slicectl binary (CVE-2019-5736), ptrace must not catch a runtime
 *     process, its fds must not be host directories.
 */
#include "escape.h"
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <time.h>

static int count_marker(const char *m, int *nprocs)
{
	DIR *d = opendir("/proc");
	int found = 0;
	*nprocs = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int pid = atoi(e->d_name);
		if (pid <= 0)
			continue;
		(*nprocs)++;
		char p[64], buf[4096];
		snprintf(p, sizeof(p), "/proc/%d/cmdline", pid);
		ssize_t n = read_file(p, buf, sizeof(buf));
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\0')
				buf[i] = ' ';
		if (n > 0 && strstr(buf, m)) {
			if (pid != getpid())
				found++;
		}
	}
	closedir(d);
	return found;
}

static void scan(int argc, char **argv)
{
	pid_t sentinel = atoi(argv[2]);
	int nprocs = 0;
	for (int i = 3; i < argc; i++) {
		int f = count_marker(argv[i], &nprocs);
		if (f)
			escaped("a process outside this slice is visible (cmdline has %s)", argv[i]);
		else
			blocked("no process with %s in its cmdline is visible", argv[i]);
	}
	count_marker("\x01", &nprocs);
	char comm[64] = "";
	read_file("/proc/1/comm", comm, sizeof(comm));
	info("visible processes: %d; my pid %d; /proc/1/comm=%s", nprocs, getpid(), comm);
	if (nprocs > 20)
		escaped("%d processes visible: not a private pid namespace", nprocs);
	else
		blocked("only %d processes visible", nprocs);

	if (sentinel > 0) {
		if (kill(sentinel, 0) == 0) {
			char p[64], buf[4096] = "";
			snprintf(p, sizeof(p), "/proc/%d/cmdline", sentinel);
			ssize_t n = read_file(p, buf, sizeof(buf));
			for (ssize_t i = 0; i < n; i++)
				if (buf[i] == '\0')
					buf[i] = ' ';
			int hit = 0;
			for (int i = 3; i < argc; i++)
				if (strstr(buf, argv[i]))
					hit = 1;
			if (hit)
				escaped("kill(%d, 0) reached the host sentinel", sentinel);
			else
				info("pid %d exists in the slice but is not the sentinel", sentinel);
		} else
			blocked("kill(host sentinel %d, 0): %s", sentinel, strerror(errno));
		errno = 0;
		int r = kill(sentinel, SIGKILL);
		if (r == 0)
			info("kill(%d, SIGKILL) returned 0 (driver checks the sentinel lives)", sentinel);
		else
			blocked("kill(host sentinel %d, SIGKILL): %s", sentinel, strerror(errno));
	}
	/* Everything we may signal: the driver checks the host and other slices. */
	int r = kill(-1, SIGKILL);
	info("kill(-1, SIGKILL) = %d (%s)", r, r ? strerror(errno) : "signalled the slice");

	expect_fail("ptrace(PTRACE_ATTACH, 1)", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
	expect_fail("ptrace(PTRACE_SEIZE, 1)", ptrace(PTRACE_SEIZE, 1, NULL, NULL));
	char buf[64];
	struct iovec l = { buf, sizeof(buf) }, rm = { (void *)0x400000, sizeof(buf) };
	long n = process_vm_readv(1, &l, 1, &rm, 1, 0);
	if (n == -1 && errno == EFAULT)
		escaped("process_vm_readv(1): got past the permission check (EFAULT)");
	else
		expect_fail("process_vm_readv(1)", n);
	int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
	if (pfd >= 0) {
		for (int fd = 0; fd < 8; fd++) {
			int got = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
			if (got >= 0) {
				escaped("pidfd_getfd(PID 1, %d) stole a runtime fd", fd);
				close(got);
			} else if (errno == EPERM || errno == ENOSYS || errno == EACCES) {
				blocked("pidfd_getfd(PID 1, %d): %s", fd, strerror(errno));
				break;
			}
		}
		close(pfd);
	} else
		blocked("pidfd_open(1): %s", strerror(errno));
	expect_fail("setpgid(1, 1)", setpgid(1, 1));
}

static void watch(int argc, char **argv)
{
	int secs = atoi(argv[2]);
	unsigned ma = 0, mi = 0;
	unsigned long ino = 0;
	if (argc > 3)
		sscanf(argv[3], "%u:%u:%lu", &ma, &mi, &ino);
	dev_t ctl_dev = makedev(ma, mi);
	dev_t host_dev = argc > 4 ? parse_dev(argv[4]) : 0;
	static char seen[1 << 16];
	time_t end = time(NULL) + secs;
	int probed = 0, attached = 0, bad = 0;
	pid_t self = getpid();
	printf("WATCHING\n");
	fflush(stdout);
	while (time(NULL) < end && access("/tmp/.watch-stop", F_OK) != 0) {
		DIR *d = opendir("/proc");
		if (!d)
			break;
		struct dirent *e;
		while ((e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == self || pid >= (1 << 16) || seen[pid])
				continue;
			seen[pid] = 1;
			probed++;
			char p[64];
			snprintf(p, sizeof(p), "/proc/%d/exe", pid);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			struct stat st;
			if (fd >= 0 && fstat(fd, &st) == 0 && ino && st.st_dev == ctl_dev &&
			    st.st_ino == ino) {
				escaped("/proc/%d/exe is the host's slicectl binary", pid);
				bad++;
				int w = open(p, O_WRONLY | O_CLOEXEC);
				if (w >= 0) {
					escaped("/proc/%d/exe opened for writing (host binary)", pid);
					close(w);
				}
			}
			if (fd >= 0)
				close(fd);
			if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) == 0) {
				attached++;
				fd = open(p, O_RDONLY | O_CLOEXEC);
				if (fd >= 0 && fstat(fd, &st) == 0 && ino && st.st_dev == ctl_dev &&
				    st.st_ino == ino) {
					escaped("ptrace caught pid %d while it was the host's slicectl",
						pid);
					bad++;
				}
				if (fd >= 0)
					close(fd);
				ptrace(PTRACE_DETACH, pid, NULL, NULL);
			}
			snprintf(p, sizeof(p), "/proc/%d/fd", pid);
			DIR *fdd = opendir(p);
			if (fdd) {
				struct dirent *f;
				while ((f = readdir(fdd))) {
					if (f->d_name[0] == '.')
						continue;
					char fp[64];
					snprintf(fp, sizeof(fp), "/proc/%d/fd/%d", pid, atoi(f->d_name));
					int x = open(fp, O_PATH | O_CLOEXEC);
					if (x >= 0 && fstat(x, &st) == 0 && host_dev &&
					    st.st_dev == host_dev && S_ISDIR(st.st_mode)) {
						escaped("pid %d holds a host directory at fd %s", pid,
							f->d_name);
						bad++;
					}
					if (x >= 0)
						close(x);
				}
				closedir(fdd);
			}
		}
		closedir(d);
	}
	info("watched %d new processes, ptrace-attached %d (slice-owned ones are fine)", probed,
	     attached);
	if (!bad)
		blocked("no entering process exposed the host's slicectl or host directories");
	if (probed == 0)
		info("no process entered the slice while watching");
}

/* From the first instant of the workload: PID 1 re-execs vslice-init while
 * we already run; between that execve and its PR_SET_DUMPABLE 0 it is
 * dumpable. Hammer it for SECS seconds. */
static void race(int secs)
{
	time_t end = time(NULL) + secs;
	long tries = 0;
	int got = 0;
	while (time(NULL) < end && !got) {
		tries++;
		if (ptrace(PTRACE_SEIZE, 1, NULL, NULL) == 0) {
			escaped("ptrace(PTRACE_SEIZE, 1) succeeded after %ld tries", tries);
			ptrace(PTRACE_DETACH, 1, NULL, NULL);
			got = 1;
		}
		for (int fd = 0; fd < 8 && !got; fd++) {
			char p[32], t[256];
			snprintf(p, sizeof(p), "/proc/1/fd/%d", fd);
			if (readlink(p, t, sizeof(t)) >= 0) {
				escaped("readlink /proc/1/fd/%d succeeded after %ld tries", fd, tries);
				got = 1;
			}
		}
		int m = open("/proc/1/mem", O_RDONLY | O_CLOEXEC);
		if (m >= 0) {
			escaped("open /proc/1/mem succeeded after %ld tries", tries);
			close(m);
			got = 1;
		}
	}
	if (!got)
		blocked("PID 1 stayed out of reach for %d s (%ld rounds from the workload's start)", secs,
			tries);
}

int main(int argc, char **argv)
{
	esc_init();
	if (argc > 2 && strcmp(argv[1], "scan") == 0)
		scan(argc, argv);
	else if (argc > 2 && strcmp(argv[1], "race") == 0)
		race(atoi(argv[2]));
	else if (argc > 2 && strcmp(argv[1], "watch") == 0)
		watch(argc, argv);
	else {
		fprintf(stderr, "usage: e03_procs scan PID MARKER... | watch SECS DEV:INO HOSTDEV\n");
		return 2;
	}
	return esc_finish();
}
