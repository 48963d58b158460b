/* exitlat: how long the exit of the last process of a mount namespace takes,
 * from its exit() to the parent's waitpid() returning, with:
 *   plain     an empty private mount namespace
 *   overlay   + an overlayfs mount (lower/upper/work under DIR)
 *   volatile  + the same overlayfs mounted with -o volatile (no sync on umount)
 * The umount of the last reference runs in the exiting task: overlayfs syncs
 * its upper file system (a disk cache flush on ext4) and frees with an RCU wait.
 *   exitlat MODE DIR N       prints N lines of microseconds */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
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
		fprintf(stderr, "usage: exitlat plain|overlay|volatile DIR N\n");
		return 2;
	}
	const char *mode = argv[1], *dir = argv[2];
	int n = atoi(argv[3]);
	char l[1024], u[1024], w[1024], m[1024], opts[4096];
	snprintf(l, sizeof l, "%s/lower", dir);
	snprintf(m, sizeof m, "%s/merged", dir);
	mkdir(l, 0755);
	mkdir(m, 0755);
	for (int i = 0; i < n; i++) {
		/* a fresh upper/work each time: volatile leaves work/incompat behind */
		snprintf(u, sizeof u, "%s/upper%d", dir, i);
		snprintf(w, sizeof w, "%s/work%d", dir, i);
		mkdir(u, 0755);
		mkdir(w, 0755);
		snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", l, u, w,
			 strcmp(mode, "volatile") == 0 ? ",volatile" : "");
		int pfd[2];
		if (pipe(pfd) < 0)
			return 1;
		pid_t p = fork();
		if (p == 0) {
			close(pfd[0]);
			if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
				_exit(1);
			if (strcmp(mode, "plain") != 0 && mount("overlay", m, "overlay", 0, opts) < 0) {
				perror("mount overlay");
				_exit(1);
			}
			/* some upper-layer activity (64 KiB, not synced), like a workload writing /tmp */
			if (strcmp(mode, "plain") != 0) {
				char f[1100];
				snprintf(f, sizeof f, "%s/f", m);
				FILE *fp = fopen(f, "w");
				if (fp) {
					static char blk[64 << 10];
					memset(blk, 'x', sizeof blk);
					fwrite(blk, 1, sizeof blk, fp);
					fclose(fp);
				}
			}
			char c = 'x';
			if (write(pfd[1], &c, 1) != 1)
				_exit(1);
			_exit(0);
		}
		close(pfd[1]);
		char c;
		if (read(pfd[0], &c, 1) != 1) {
			fprintf(stderr, "exitlat: child failed\n");
			waitpid(p, NULL, 0);
			return 1;
		}
		double t0 = now_us();
		int st;
		waitpid(p, &st, 0);
		double t1 = now_us();
		close(pfd[0]);
		printf("%.1f\n", t1 - t0);
		usleep(20000);
	}
	return 0;
}
