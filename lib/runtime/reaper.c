/*
 * reaper.c - PID 1's loop (see reaper.h). Only libc: this file is also
 * linked statically into vslice-init.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vslice/reaper.h"

static void write_exit(int fd, int code, const char *reason, unsigned restarts)
{
	if (fd < 0)
		return;
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "%d %s %u %lld\n", code, reason, restarts,
			 (long long)time(NULL));
	/* The file was truncated when the slice started; one write, no fsync:
	 * after a host crash the slice is gone anyway. */
	(void)!pwrite(fd, buf, (size_t)n, 0);
	(void)!ftruncate(fd, n); /* drop a renewal record: the file is the exit record now */
}

/* The host's renewal record, if any: a new end of the slice's lifetime. */
static void read_renewal(struct reaper *r)
{
	char buf[48];
	ssize_t n =
	    r->exit_fd >= 0 ? pread(r->exit_fd, buf, sizeof(buf) - 1, REAPER_RENEW_OFFSET) : -1;
	if (n <= 0)
		return;
	buf[n] = '\0';
	long long e;
	if (sscanf(buf, "expires %lld", &e) == 1 && e > 0)
		r->expires = (time_t)e;
}

void reaper_run(struct reaper *r)
{
	sigset_t all;
	sigfillset(&all);
	const char *reason = NULL;
	for (;;) {
		time_t deadline = r->run_deadline;
		if (r->expires && (!deadline || r->expires < deadline))
			deadline = r->expires;
		struct timespec ts = {.tv_sec = 3600};
		if (deadline) {
			time_t left = deadline - time(NULL);
			ts.tv_sec = left > 0 ? left : 0;
		}
		siginfo_t si;
		int sig = sigtimedwait(&all, &si, deadline && !reason ? &ts : NULL);
		if (sig < 0 && errno == EAGAIN && deadline && time(NULL) >= deadline) {
			reason = (r->expires && deadline == r->expires) ? "lifetime" : "timeout";
			kill(-1, SIGKILL); /* everything in the slice but us */
			continue;
		}
		if (sig < 0)
			continue;
		if (sig == REAPER_SIG_RENEW) {
			if (!reason)
				read_renewal(r);
			continue;
		}
		if (sig != SIGCHLD) {
			if (r->workload > 0)
				kill(r->workload, sig);
			continue;
		}
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			if (p != r->workload)
				continue;
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			if (!reason && code != 0 && r->restart && r->restarts < r->restart_max) {
				r->restarts++;
				kill(-1, SIGKILL); /* what the failed run left */
				r->workload = r->restart(r->restart_arg);
				if (r->workload > 0)
					continue;
			}
			if (reason && !strcmp(reason, "timeout"))
				code = 124;
			write_exit(r->exit_fd, code,
				   reason ? reason : (WIFEXITED(st) ? "exited" : "signal"),
				   r->restarts);
			_exit(code);
		}
	}
}
