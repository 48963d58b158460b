/*
 * vslice-init - PID 1 of an idle slice, once its workload is running.
 *
 * The runtime's forked PID 1 sets the slice up and forks the workload, then
 * execs this small static program (from a root-owned file on the host,
 * opened before pivot_root) so an idle slice costs only a few private pages
 * instead of a copy of slicectl's address space.
 *
 *   vslice-init EXIT_FD WORKLOAD_PID RUN_DEADLINE EXPIRES LOG_PIPE LOG_FD LOG_MAX
 *
 * LOG_PIPE -1: no log (the workload has the caller's terminal).
 */
#include <stdlib.h>
#include <sys/prctl.h>

#include "vslice/reaper.h"

int main(int argc, char **argv)
{
	/* First: nothing in the slice may ptrace us or open our /proc files. */
	prctl(PR_SET_DUMPABLE, 0);
	if (argc != 8)
		return 125;
	struct reaper r = {
	    .exit_fd = atoi(argv[1]),
	    .workload = (pid_t)atoi(argv[2]),
	    .run_deadline = (time_t)atoll(argv[3]),
	    .expires = (time_t)atoll(argv[4]),
	    .log_in = atoi(argv[5]),
	    .log_fd = atoi(argv[6]),
	    .log_max = strtoull(argv[7], NULL, 10),
	};
	prctl(PR_SET_NAME, "vslice-init");
	reaper_run(&r);
}
