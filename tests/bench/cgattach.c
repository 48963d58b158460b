/* cgattach: cost of moving a fresh process into a v1 cgroup (write of its pid
 * to cgroup.procs), either after IDLE_MS of quiet (what one slice start sees)
 * or back to back. On v1/hybrid hosts the first migration after idle waits for
 * an RCU grace period (cgroup_threadgroup_rwsem, percpu_down_write -> rcu_sync).
 *   cgattach CGROUP_DIR N IDLE_MS     prints N lines of microseconds */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: cgattach CGROUP_DIR N IDLE_MS\n");
		return 2;
	}
	char procs[4096];
	snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[1]);
	int n = atoi(argv[2]), idle = atoi(argv[3]);
	for (int i = 0; i < n; i++) {
		if (idle)
			usleep(idle * 1000);
		pid_t p = fork();
		if (p == 0) {
			pause();
			_exit(0);
		}
		char b[32];
		int l = snprintf(b, sizeof b, "%d", (int)p);
		int fd = open(procs, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			perror(procs);
			kill(p, SIGKILL);
			return 1;
		}
		double t0 = now_us();
		ssize_t w = write(fd, b, l);
		double t1 = now_us();
		close(fd);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		if (w != l) {
			perror("write cgroup.procs");
			return 1;
		}
		printf("%.1f\n", t1 - t0);
	}
	return 0;
}
