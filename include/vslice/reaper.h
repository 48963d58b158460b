/*
 * reaper.h - the loop of a slice's PID 1, shared by the forked PID 1
 * (lib/runtime/init.c, when it must be able to restart the workload) and the
 * tiny static vslice-init it otherwise execs into (cmd/init), so that an idle
 * slice costs the host only a few pages. Uses nothing but libc.
 */
#ifndef VSLICE_REAPER_H
#define VSLICE_REAPER_H

#include <signal.h>
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
};

/*
 * Every signal must already be blocked (the workload was forked with them
 * blocked and unblocks its own). Reaps every child, forwards other signals
 * to the workload, enforces the deadlines, writes the exit record and exits
 * with the workload's code (124 on timeout).
 */
__attribute__((noreturn)) void reaper_run(struct reaper *r);

#endif
