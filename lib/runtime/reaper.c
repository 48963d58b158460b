/*
 * reaper.c - PID 1's loop (see reaper.h). Only libc: this file is also
 * linked statically into vslice-init.
 *
 * One poll() over a signalfd (every signal is blocked, so they all arrive
 * there) and the log pipe, with the nearest deadline as its timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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

/* Where the log stands: its size (= the next offset) and the first byte
 * still kept on disk. */
struct log_state {
	unsigned long long size, kept;
};

/* Drop what lies more than log_max behind the end: a hole keeps the
 * offsets of what follows. Batched by a sixteenth of log_max so a busy log
 * is not punched on every write. */
static void log_trim(struct reaper *r, struct log_state *ls)
{
	unsigned long long keep_from = ls->size > r->log_max ? ls->size - r->log_max : 0;
	keep_from &= ~4095ull;
	if (ls->size >= REAPER_LOG_WRAP) {
		if (ftruncate(r->log_fd, 0) == 0)
			ls->size = ls->kept = 0;
		return;
	}
	if (keep_from <= ls->kept || keep_from - ls->kept < r->log_max / 16)
		return;
	if (fallocate(r->log_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)ls->kept,
		      (off_t)(keep_from - ls->kept)) == 0) {
		ls->kept = keep_from;
		return;
	}
	/* No holes on this file system: start the log again. */
	if (ftruncate(r->log_fd, 0) == 0)
		ls->size = ls->kept = 0;
}

/* Copy what the pipe holds into the log, at most `budget` bytes. Returns
 * false once no writer is left (EOF). */
static bool log_pump(struct reaper *r, struct log_state *ls, size_t budget)
{
	char buf[65536];
	while (budget > 0) {
		ssize_t n = read(r->log_in, buf, budget < sizeof(buf) ? budget : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return false;
		if (n < 0)
			return true; /* EAGAIN: drained */
		budget -= (size_t)n;
		/* A log that cannot be written (host disk full) loses the
		 * output, never blocks the workload. */
		for (ssize_t off = 0, w; off < n; off += w) {
			w = write(r->log_fd, buf + off, (size_t)(n - off));
			if (w <= 0)
				break;
			ls->size += (unsigned long long)w;
		}
		log_trim(r, ls);
	}
	return true;
}

static void log_start(struct reaper *r, struct log_state *ls)
{
	struct stat st;
	ls->size = fstat(r->log_fd, &st) == 0 ? (unsigned long long)st.st_size : 0;
	off_t d = lseek(r->log_fd, 0, SEEK_DATA);
	ls->kept = d > 0 ? (unsigned long long)d & ~4095ull : 0;
	if (!r->log_max)
		r->log_max = REAPER_LOG_DEFAULT;
	int fl = fcntl(r->log_in, F_GETFL);
	if (fl >= 0)
		fcntl(r->log_in, F_SETFL, fl | O_NONBLOCK);
	log_trim(r, ls);
}

/* The workload is done: what it (or what it left) wrote before, up to a
 * bound (a daemon that goes on writing must not keep the slice alive). */
static void log_finish(struct reaper *r, struct log_state *ls)
{
	if (r->log_in >= 0)
		log_pump(r, ls, 4u << 20);
}

/* Milliseconds until deadline, for poll(); -1: none. */
static int poll_timeout(time_t deadline)
{
	if (!deadline)
		return -1;
	time_t left = deadline - time(NULL);
	if (left <= 0)
		return 0;
	return left > 3600 ? 3600 * 1000 : (int)left * 1000;
}

static void on_signal(struct reaper *r, struct log_state *ls, const char **reason, int sig)
{
	if (sig == REAPER_SIG_RENEW) {
		if (!*reason)
			read_renewal(r);
		return;
	}
	if (sig != SIGCHLD) {
		if (r->workload > 0)
			kill(r->workload, sig);
		return;
	}
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p != r->workload)
			continue;
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (!*reason && code != 0 && r->restart && r->restarts < r->restart_max) {
			r->restarts++;
			kill(-1, SIGKILL); /* what the failed run left */
			r->workload = r->restart(r->restart_arg);
			if (r->workload > 0)
				continue;
		}
		if (*reason && !strcmp(*reason, "timeout"))
			code = 124;
		log_finish(r, ls);
		write_exit(r->exit_fd, code,
			   *reason ? *reason : (WIFEXITED(st) ? "exited" : "signal"), r->restarts);
		_exit(code);
	}
}

void reaper_run(struct reaper *r)
{
	sigset_t all;
	sigfillset(&all);
	const char *reason = NULL;
	struct log_state ls = {0};
	if (r->log_in >= 0 && r->log_fd >= 0)
		log_start(r, &ls);
	else
		r->log_in = -1;
	/* Without a signalfd (out of fds or memory) we still reap: signals
	 * are then taken every 100 ms with sigtimedwait. */
	int sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	for (;;) {
		time_t deadline = r->run_deadline;
		if (r->expires && (!deadline || r->expires < deadline))
			deadline = r->expires;
		int timeout = reason ? -1 : poll_timeout(deadline);
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
				      {.fd = r->log_in, .events = POLLIN}};
		if (sfd < 0 && (timeout < 0 || timeout > 100))
			timeout = 100;
		poll(p, 2, timeout);
		/* Checked whatever woke us: a workload that writes all the time
		 * must not keep its deadline from coming. */
		if (!reason && deadline && time(NULL) >= deadline) {
			reason = (r->expires && deadline == r->expires) ? "lifetime" : "timeout";
			kill(-1, SIGKILL); /* everything in the slice but us */
		}
		if (r->log_in >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    !log_pump(r, &ls, 1u << 20))
			r->log_in = -1; /* every writer is gone */
		if (sfd < 0) {
			struct timespec zero = {0};
			int sig;
			while ((sig = sigtimedwait(&all, NULL, &zero)) > 0)
				on_signal(r, &ls, &reason, sig);
			continue;
		}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			on_signal(r, &ls, &reason, (int)si.ssi_signo);
	}
}
