/*
 * reaper.h - the loop of a slice's PID 1, shared by the forked PID 1
 * (lib/runtime/init.c, when it must be able to restart the workload) and the
 * tiny static vslice-init it otherwise execs into (cmd/init), so that an idle
 * slice costs the host only a few pages. Uses nothing but libc.
 */
#ifndef VSLICE_REAPER_H
#define VSLICE_REAPER_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

/*
 * Renewal of a running slice's lifetime: the host writes "expires SECONDS\n"
 * at REAPER_RENEW_OFFSET of the exit file (PID 1 holds an fd to it; nothing
 * in the slice can reach the file) and sends PID 1 REAPER_SIG_RENEW, which
 * PID 1 does not forward. Anyone in the slice may send that signal too: it
 * only makes PID 1 read the file again.
 */
#define REAPER_RENEW_OFFSET 4096
#define REAPER_SIG_RENEW    (SIGRTMIN + 4)

/*
 * The slice's log (detached slices): the workload's stdout and stderr are a
 * pipe, and PID 1 copies it into the host file <slice>/log (an fd opened
 * on the host, O_APPEND). The file's offsets only grow, so readers that
 * follow it by offset (logs -f, submit --wait, the node manager's upload)
 * never see it shrink; but only the last log_max bytes (rounded to 4 KiB
 * blocks) stay on disk: PID 1 punches a hole (FALLOC_FL_PUNCH_HOLE) over
 * everything older. A reader finds the first kept byte with SEEK_DATA and
 * reads zeroes if it lags more than log_max behind. Where the file system
 * cannot punch holes, or the file reaches REAPER_LOG_WRAP bytes, PID 1
 * truncates it to 0 instead (the one case where a reader sees it shrink).
 */
#define REAPER_LOG_DEFAULT (16ull << 20) /* log_max when the slice sets none */
#define REAPER_LOG_MIN	   (64ull << 10)
#define REAPER_LOG_MAX	   (1ull << 40)
#define REAPER_LOG_WRAP	   (1ull << 42) /* 4 TiB of offsets: start again at 0 */

struct reaper {
	int exit_fd;	     /* exit record "code reason restarts finished\n" */
	pid_t workload;	     /* the workload's pid (in the slice's pid ns) */
	time_t run_deadline; /* kill the workload then, reason "timeout" (0 = none) */
	time_t expires;	     /* the slice's lifetime ends then, reason "lifetime" (0 = none) */
	unsigned restart_max;
	unsigned restarts;
	/* Fork a new workload after a failure; NULL: never restart. */
	pid_t (*restart)(void *arg);
	void *restart_arg;
	/* The log pipe's read end (-1: no log, the workload has our stdio),
	 * the log file (O_APPEND) and how much of it stays on disk. */
	int log_in, log_fd;
	unsigned long long log_max;
};

/*
 * Every signal must already be blocked (the workload was forked with them
 * blocked and unblocks its own). Reaps every child, forwards other signals
 * to the workload, enforces the deadlines, copies the log pipe into the log
 * (capped, above), writes the exit record and exits with the workload's
 * code (124 on timeout).
 */
__attribute__((noreturn)) void reaper_run(struct reaper *r);

#endif
