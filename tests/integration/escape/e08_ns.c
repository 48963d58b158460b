/*
 * e08_ns: win capabilities back through namespaces.
 * unshare(CLONE_NEWUSER) (+ mount in it), unshare of each namespace,
 * setns into our own and PID 1's namespaces, clone() with each namespace
 * flag, clone3 (must answer ENOSYS so libc falls back), rewriting our
 * uid_map/gid_map/setgroups; and threads/fork still work.
 */
#include "escape.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <linux/sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const struct {
	const char *name;
	int flag;
} nsflags[] = {
	{ "CLONE_NEWUSER", CLONE_NEWUSER },   { "CLONE_NEWNS", CLONE_NEWNS },
	{ "CLONE_NEWUTS", CLONE_NEWUTS },     { "CLONE_NEWIPC", CLONE_NEWIPC },
	{ "CLONE_NEWNET", CLONE_NEWNET },     { "CLONE_NEWPID", CLONE_NEWPID },
	{ "CLONE_NEWCGROUP", CLONE_NEWCGROUP }, { "CLONE_NEWTIME", CLONE_NEWTIME },
};

static void try_unshare(void)
{
	for (size_t i = 0; i < sizeof(nsflags) / sizeof(nsflags[0]); i++) {
		pid_t pid = fork();
		if (pid == 0) {
			int r = unshare(nsflags[i].flag);
			int e = errno;
			if (r == 0 && nsflags[i].flag == CLONE_NEWUSER) {
				/* Full caps in the new userns: try a mount with them. */
				int m = unshare(CLONE_NEWNS) == 0 &&
					mount("none", "/tmp", "tmpfs", 0, NULL) == 0;
				_exit(m ? 3 : 2);
			}
			_exit(r == 0 ? 2 : (e == EPERM || e == ENOSYS || e == EINVAL ? 0 : 1));
		}
		int st = 0;
		waitpid(pid, &st, 0);
		int c = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (c == 0 || c == 1)
			blocked("unshare(%s): refused", nsflags[i].name);
		else if (c == 3)
			escaped("unshare(%s): succeeded, and a mount worked inside it", nsflags[i].name);
		else
			escaped("unshare(%s): succeeded", nsflags[i].name);
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0 ? 2 : 0);
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		blocked("unshare(CLONE_NEWUSER|CLONE_NEWNS): refused");
	else
		escaped("unshare(CLONE_NEWUSER|CLONE_NEWNS): succeeded");
}

static void try_setns(void)
{
	static const char *ns[] = { "user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time" };
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		char p[64], what[96];
		snprintf(p, sizeof(p), "/proc/self/ns/%s", ns[i]);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			pid_t pid = fork();
			if (pid == 0)
				_exit(setns(fd, 0) == 0 ? 2 : 0);
			int st = 0;
			waitpid(pid, &st, 0);
			snprintf(what, sizeof(what), "setns(own %s ns)", ns[i]);
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
				blocked("%s: refused", what);
			else
				escaped("%s: allowed (setns is reachable)", what);
			close(fd);
		}
		snprintf(p, sizeof(p), "/proc/1/ns/%s", ns[i]);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		snprintf(what, sizeof(what), "open /proc/1/ns/%s", ns[i]);
		if (fd < 0) {
			blocked("%s: %s", what, strerror(errno));
			continue;
		}
		snprintf(what, sizeof(what), "setns(PID 1's %s ns)", ns[i]);
		pid_t pid = fork();
		if (pid == 0)
			_exit(setns(fd, 0) == 0 ? 2 : 0);
		int st = 0;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			blocked("%s: refused", what);
		else
			escaped("%s: allowed", what);
		close(fd);
	}
	/* A pidfd as a setns target. */
	int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pfd >= 0) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(setns(pfd, CLONE_NEWUSER | CLONE_NEWNS) == 0 ? 2 : 0);
		int st = 0;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			blocked("setns(pidfd of self, USER|NS): refused");
		else
			escaped("setns(pidfd of self, USER|NS): allowed");
		close(pfd);
	}
}

static const char *ns_file(int flag)
{
	switch (flag) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWNS: return "mnt";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWNET: return "net";
	case CLONE_NEWPID: return "pid_for_children";
	case CLONE_NEWCGROUP: return "cgroup";
	default: return "time_for_children";
	}
}

static void try_clone(void)
{
	for (size_t i = 0; i < sizeof(nsflags) / sizeof(nsflags[0]); i++) {
		char p[64], mine[64] = "", child[64] = "";
		snprintf(p, sizeof(p), "/proc/self/ns/%s", ns_file(nsflags[i].flag));
		ssize_t n = readlink(p, mine, sizeof(mine) - 1);
		if (n > 0)
			mine[n] = '\0';
		/* The child reports whether its namespace differs from ours. */
		long r = syscall(SYS_clone, (unsigned long)nsflags[i].flag | SIGCHLD, NULL, NULL, NULL,
				 NULL);
		if (r == 0) {
			const char *f = nsflags[i].flag == CLONE_NEWPID ? "/proc/self/ns/pid"
				      : nsflags[i].flag == CLONE_NEWTIME ? "/proc/self/ns/time"
									 : p;
			ssize_t k = readlink(f, child, sizeof(child) - 1);
			if (k > 0)
				child[k] = '\0';
			_exit(k > 0 && strcmp(child, mine) != 0 ? 3 : 0);
		}
		char what[64];
		snprintf(what, sizeof(what), "clone(%s)", nsflags[i].name);
		if (r > 0) {
			int st = 0;
			waitpid((pid_t)r, &st, __WALL);
			if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
				escaped("%s: created a child in a new namespace", what);
			else
				blocked("%s: the child stayed in our namespace (flag not honoured by clone)",
					what);
		} else
			blocked("%s: %s", what, strerror(errno));
	}
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.exit_signal = SIGCHLD;
	long r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0)
		_exit(0);
	if (r > 0) {
		waitpid((pid_t)r, NULL, 0);
		escaped("clone3(plain): allowed (the policy must answer ENOSYS so flags can't be hidden)");
	} else if (errno == ENOSYS)
		blocked("clone3(plain): ENOSYS (libc falls back to clone)");
	else
		escaped("clone3(plain): %s, not ENOSYS: glibc >= 2.34 will not fall back",
			strerror(errno));
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWUSER;
	ca.exit_signal = SIGCHLD;
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r == 0)
		_exit(0);
	if (r > 0) {
		waitpid((pid_t)r, NULL, 0);
		escaped("clone3(CLONE_NEWUSER): created a child in a new user namespace");
	} else
		blocked("clone3(CLONE_NEWUSER): %s", strerror(errno));
}

static void try_maps(void)
{
	static const char *f[] = { "/proc/self/uid_map", "/proc/self/gid_map" };
	for (int i = 0; i < 2; i++) {
		int fd = open(f[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			blocked("open %s for writing: %s", f[i], strerror(errno));
			continue;
		}
		ssize_t n = write(fd, "0 0 4294967295\n", 15);
		if (n < 0)
			blocked("rewrite %s to map host root: %s", f[i], strerror(errno));
		else
			escaped("rewrite %s to map host root: accepted", f[i]);
		close(fd);
	}
}

static void *thr(void *a)
{
	return a;
}

int main(void)
{
	esc_init();
	try_unshare();
	try_setns();
	try_clone();
	try_maps();
	/* Threads must still work (glibc uses clone3 first, falls back on ENOSYS). */
	pthread_t t;
	if (pthread_create(&t, NULL, thr, NULL) == 0) {
		pthread_join(t, NULL);
		info("pthread_create works");
	} else
		escaped("pthread_create fails: the policy broke threads (clone3 not ENOSYS?)");
	return esc_finish();
}
