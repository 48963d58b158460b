/*
 * ckpt-harness - run one zdtm-style program through a checkpoint cycle in
 * namespaces of its own, without the slice runtime:
 *
 *   start:   new pid + time namespace; a tiny PID 1 (this code) forks the
 *            program as pid 2 (stdout/stderr -> DIR/out), all inside a v1
 *            freezer cgroup vslice-ckpt-test-<pid>
 *   wait:    "READY" in DIR/out
 *   dump:    ckpt_dump -> DIR/img (the tree is killed; or left running)
 *   restore: fresh pid + time namespace (clock offsets = dumped - now),
 *            PID 1 forks pid 2 = ckpt_restore_stub; ckpt_restore_finish
 *   verify:  after CKPT_RUN_MS (default 300), SIGTERM to pid 2, wait,
 *            "PASS" must be in DIR/out.
 *
 * Usage: ckpt-harness [-l] [-n CYCLES] DIR PROG [ARGS...]
 *   -l  leave running: dump, then let the original run on and verify it
 *   -n  checkpoint/restore this many times in a row (default 1)
 *   -r  the dump must be refused; the original must run on and PASS
 *   -x CMD  run CMD (sh -c) between the dump and the restore
 *   -f WORD the restore must fail with a one-line error containing WORD
 *           (the restorer's own reason, not "stub died")
 *   -P N    pre-copy: N page rounds while the program runs, then the
 *           frozen dump; after each running round but the last, SIGUSR2
 *           to the program and wait for "STEP k" in its output
 * Exit 0 on PASS. Stats of the last cycle in DIR/stats.json (the restore's
 * own in DIR/restore-stats.json).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sched.h>
#include <net/if.h>

#include "vslice/ckpt.h"
#include "vslice/ckpt_dirty.h"
#include "vslice/util.h"

static char cg[256];
static const char *dir;

static void die(const char *what)
{
	fprintf(stderr, "ckpt-harness: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* PID 1 of the namespace: reap everything; leave when pid 2 is gone. */
static void reaper(void)
{
	for (;;) {
		int st;
		pid_t p = wait(&st);
		if (p < 0 && errno == ECHILD)
			_exit(0);
		if (p == 2) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/status", dir);
			FILE *f = fopen(path, "w");
			if (f) {
				fprintf(f, "%d\n", st);
				fclose(f);
			}
			_exit(0);
		}
	}
}

static void join_cgroup(void)
{
	char p[300], buf[32];
	snprintf(p, sizeof(p), "%s/cgroup.procs", cg);
	int fd = open(p, O_WRONLY);
	if (fd < 0)
		die("freezer cgroup.procs");
	int n = snprintf(buf, sizeof(buf), "%d", getpid());
	if (write(fd, buf, (size_t)n) < 0)
		die("join freezer cgroup");
	close(fd);
}

static const struct ckpt_image *g_img;

static int stub_main(void)
{
	struct vs_error err;
	ckpt_restore_stub(g_img, &err);
	fprintf(stderr, "ckpt-harness: stub: %s\n", err.msg);
	return 101;
}

/* Bring up lo in the new network namespace, as the slice runtime does. */
static void lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		die("lo flags");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		die("lo up");
	close(s);
}

/* Fork (in new pid+time ns) a PID 1 which forks pid 2 = prog or the stub.
 * Returns PID 1's host pid. */
static pid_t spawn(char **argv, int64_t mono_off, int64_t boot_off, bool restore)
{
	int pp[2];
	if (pipe(pp) < 0)
		die("pipe");
	pid_t i = fork();
	if (i < 0)
		die("fork");
	if (i == 0) {
		join_cgroup();
		if (unshare(CLONE_NEWPID | CLONE_NEWTIME | CLONE_NEWIPC | CLONE_NEWNET) < 0)
			die("unshare pid+time");
		lo_up(); /* as a slice's runtime does (lib/runtime/sliver.c) */
		if (mono_off || boot_off) {
			char buf[128];
			/* nsec must be in [0, 1e9): floor the seconds */
			long long ms = mono_off / 1000000000, mn = mono_off % 1000000000;
			long long bs = boot_off / 1000000000, bn = boot_off % 1000000000;
			if (mn < 0)
				mn += 1000000000, ms--;
			if (bn < 0)
				bn += 1000000000, bs--;
			int n =
			    snprintf(buf, sizeof(buf), "monotonic %lld %lld\nboottime %lld %lld\n",
				     ms, mn, bs, bn);
			int fd = open("/proc/self/timens_offsets", O_WRONLY);
			if (fd < 0 || write(fd, buf, (size_t)n) != n)
				die("timens_offsets");
			close(fd);
		}
		pid_t p1 = fork();
		if (p1 < 0)
			die("fork pid 1");
		if (p1 == 0) {
			close(pp[0]);
			pid_t w;
			if (restore) {
				pid_t want = ckpt_image_root_pid(g_img);
				struct clone_args a = {.exit_signal = SIGCHLD,
						       .set_tid = (uintptr_t)&want,
						       .set_tid_size = 1};
				w = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
				if (w == 0)
					_exit(stub_main());
			} else {
				w = fork();
				if (w == 0) {
					char path[4096];
					snprintf(path, sizeof(path), "%s/out", dir);
					int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
					int nul = open("/dev/null", O_RDONLY);
					dup2(nul, 0);
					dup2(fd, 1);
					dup2(fd, 2);
					close(fd);
					close(nul);
					close(pp[1]);
					execv(argv[0], argv);
					_exit(127);
				}
			}
			if (w < 0)
				die("fork workload");
			close(pp[1]);
			reaper();
		}
		if (write(pp[1], &p1, sizeof(p1)) < 0)
			_exit(1);
		_exit(0);
	}
	close(pp[1]);
	pid_t p1 = 0;
	if (read(pp[0], &p1, sizeof(p1)) != sizeof(p1))
		die("read pid 1");
	close(pp[0]);
	waitpid(i, NULL, 0);
	return p1;
}

static bool out_has(const char *word)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/out", dir);
	char *buf = NULL;
	size_t len;
	if (vs_read_file(path, 0, &buf, &len, NULL) < 0)
		return false;
	bool r = strstr(buf, word) != NULL;
	free(buf);
	return r;
}

static void cleanup(void)
{
	if (cg[0]) {
		char p[300];
		snprintf(p, sizeof(p), "%s/freezer.state", cg);
		vs_write_str(p, "THAWED", NULL);
		snprintf(p, sizeof(p), "%s/cgroup.procs", cg);
		for (int round = 0; round < 100; round++) {
			char *buf = NULL;
			if (vs_read_file(p, 0, &buf, NULL, NULL) < 0)
				break;
			bool any = false;
			for (char *t = strtok(buf, "\n"); t; t = strtok(NULL, "\n")) {
				kill(atoi(t), SIGKILL);
				any = true;
			}
			free(buf);
			if (!any)
				break;
			msleep(10);
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		rmdir(cg);
	}
}

static void on_signal(int s)
{
	cleanup();
	_exit(3);
}

/* -P: the tree stops while new memory is registered (ckpt_dirty.h) */
static int freeze_cg(void *arg, bool frozen, struct vs_error *err)
{
	(void)arg;
	char path[300];
	snprintf(path, sizeof(path), "%s/freezer.state", cg);
	const char *want = frozen ? "FROZEN" : "THAWED";
	if (vs_write_str(path, want, err) < 0)
		return -1;
	for (int i = 0; i < 5000; i++) {
		char buf[32] = "";
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		if (n > 0 && strncmp(buf, want, strlen(want)) == 0)
			return 0;
		msleep(0);
	}
	return vs_error_set(err, ETIMEDOUT, "freezer: %s not reached", want);
}

int main(int argc, char **argv)
{
	bool leave = false, refuse = false;
	const char *between = NULL, *must_fail = NULL;
	int cycles = 1, opt, precopy = 0;
	while ((opt = getopt(argc, argv, "+lrn:x:f:P:")) != -1) {
		if (opt == 'P')
			precopy = atoi(optarg);
		else if (opt == 'x')
			between = optarg;
		else if (opt == 'f')
			must_fail = optarg;
		else if (opt == 'l')
			leave = true;
		else if (opt == 'r')
			refuse = leave = true;
		else if (opt == 'n')
			cycles = atoi(optarg);
		else
			return 2;
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: ckpt-harness [-l] [-n N] DIR PROG [ARGS...]\n");
		return 2;
	}
	dir = argv[optind];
	char **prog = argv + optind + 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/freezer/vslice-ckpt-test-%d", getpid());
	if (mkdir(cg, 0755) < 0)
		die("mkdir freezer cgroup");
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	alarm(60);
	char path[4096];
	snprintf(path, sizeof(path), "%s/out", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/status", dir);
	unlink(path);

	pid_t p1 = spawn(prog, 0, 0, false);
	for (int i = 0; i < 1000 && !out_has("READY"); i++)
		msleep(10);
	if (!out_has("READY")) {
		fprintf(stderr, "ckpt-harness: %s never said READY\n", prog[0]);
		return 1;
	}
	struct vs_error err;
	pid_t w;
	if (ckpt_find_child_nspid(p1, 2, 2000, &w, &err) < 0) {
		fprintf(stderr, "ckpt-harness: %s\n", err.msg);
		return 1;
	}
	struct ckpt_stats st;
	for (int c = 0; c < cycles; c++) {
		snprintf(path, sizeof(path), "%s/img", dir);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			die("create image");
		struct ckpt_dump_opts o = {.root_pid = w,
					   .init_pid = p1,
					   .freeze = freeze_cg,
					   .out_fd = fd,
					   .leave_running = leave,
					   .name = "harness"};
		struct ckpt_precopy *pc = NULL;
		int r = 0;
		char rounds[512] = "";
		if (precopy > 0)
			r = ckpt_precopy_start(
			    p1, fd, &(struct ckpt_precopy_opts){.freeze = freeze_cg}, &pc, &err);
		for (int k = 0; r >= 0 && k < precopy; k++) {
			struct ckpt_round_stats rs;
			r = ckpt_precopy_round(pc, &rs, &err);
			if (r < 0)
				break;
			size_t n = strlen(rounds);
			snprintf(rounds + n, sizeof(rounds) - n, "%sround %d %llu pages",
				 k ? ", " : "", k, (unsigned long long)rs.pages);
			if (k + 1 == precopy)
				break;
			char want[32];
			snprintf(want, sizeof(want), "STEP %d", k + 1);
			kill(w, SIGUSR2);
			for (int i = 0; i < 500 && !out_has(want); i++)
				msleep(10);
			if (!out_has(want)) {
				printf("PRECOPY: no \"%s\" from the program\n", want);
				return 1;
			}
		}
		o.precopy = pc;
		if (r >= 0)
			r = ckpt_dump(&o, &st, &err);
		ckpt_precopy_free(pc);
		if (precopy > 0 && r >= 0)
			printf("precopy: %s; frozen round %llu pages\n", rounds,
			       (unsigned long long)st.pages_written);
		close(fd);
		if (r < 0 && refuse) {
			printf("cycle 1: refused as expected: %s\n", err.msg);
			break;
		}
		if (r < 0) {
			printf("DUMP FAILED: %s\n", err.msg);
			return 1;
		}
		if (refuse) {
			printf("DUMP NOT REFUSED\n");
			return 1;
		}
		if (leave)
			break;
		waitpid(p1, NULL, 0);
		if (between && system(between) != 0) {
			printf("-x %s failed\n", between);
			return 1;
		}
		fd = open(path, O_RDONLY | O_CLOEXEC);
		struct ckpt_image *img;
		if (ckpt_image_read_fd(fd, &img, &err) < 0) {
			printf("IMAGE FAILED: %s\n", err.msg);
			return 1;
		}
		/* fd stays open: the restore reads the page rounds from it */
		g_img = img;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t mono =
		    ckpt_image_monotonic_ns(img) - (now.tv_sec * 1000000000ll + now.tv_nsec);
		clock_gettime(CLOCK_BOOTTIME, &now);
		int64_t boot =
		    ckpt_image_boottime_ns(img) - (now.tv_sec * 1000000000ll + now.tv_nsec);
		p1 = spawn(prog, mono, boot, true);
		struct ckpt_stats rst = {0};
		if (ckpt_find_child_nspid(p1, ckpt_image_root_pid(img), 5000, &w, &err) < 0 ||
		    ckpt_restore_finish(img, w, 10000, &rst, &err) < 0) {
			const char *why = ckpt_image_restore_error(img);
			printf("RESTORE FAILED: %s\n", why ? why : err.msg);
			if (must_fail && strstr(why ? why : err.msg, must_fail)) {
				printf("cycle 1: restore failed as expected: %s\n",
				       why ? why : err.msg);
				ckpt_image_free(img);
				return 0;
			}
			ckpt_image_free(img);
			return 1;
		}
		ckpt_image_free(img);
		close(fd);
		g_img = NULL;
		if (must_fail) {
			printf("RESTORE DID NOT FAIL\n");
			return 1;
		}
		st.restore_ns = rst.restore_ns;
		st.forking_ns = rst.forking_ns;
		st.injected_syscalls = rst.injected_syscalls;
		st.memrestore_ns = rst.memrestore_ns;
		snprintf(path, sizeof(path), "%s/restore-stats.json", dir);
		ckpt_stats_write_json(path, &rst, NULL);
		char line[1024];
		ckpt_stats_format(&st, line, sizeof(line));
		printf("cycle %d: %s\n", c + 1, line);
		const char *ms = getenv("CKPT_RUN_MS");
		msleep(ms ? atoi(ms) : 300);
	}
	snprintf(path, sizeof(path), "%s/stats.json", dir);
	ckpt_stats_write_json(path, &st, NULL);
	kill(w, SIGTERM);
	for (int i = 0; i < 500; i++) {
		snprintf(path, sizeof(path), "%s/status", dir);
		if (access(path, F_OK) == 0)
			break;
		msleep(10);
	}
	waitpid(p1, NULL, 0);
	if (!out_has("PASS")) {
		snprintf(path, sizeof(path), "%s/out", dir);
		char *buf = NULL;
		vs_read_file(path, 0, &buf, NULL, NULL);
		printf("FAIL: output:\n%s\n", buf ? buf : "(none)");
		free(buf);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
