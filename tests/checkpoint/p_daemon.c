/* p_daemon: daemons that double-forked (reparented to PID 1) are part of the
 * slice and come back with their pid, ppid 1, session and process group:
 *   d1: classic daemon - its session (and group) leader exited;
 *   d2: stayed in our session, own process group;
 *   d3: stayed in our session, its group leader exited.
 * Each keeps a value in memory and answers over a pipe after the restore. */
#include <sys/wait.h>
#include "zdtm.h"

static int req[2], ans[2];

static void daemon_body(int id, pid_t want_sid, pid_t want_pgid)
{
	volatile long secret = 4242 + id;
	for (;;) {
		char c;
		if (read(req[0], &c, 1) != 1)
			_exit(1);
		if (c != '0' + id) { /* not for us: put it back for the others */
			if (write(req[1], &c, 1) != 1)
				_exit(1);
			usleep(1000);
			continue;
		}
		char buf[128];
		int n = snprintf(buf, sizeof(buf), "%d %d %d %d %ld\n", id, getppid(), getsid(0),
				 getpgid(0), secret);
		(void)want_sid;
		(void)want_pgid;
		if (write(ans[1], buf, (size_t)n) != n)
			_exit(1);
	}
}

/* fork twice; the middle process does `mid` first and exits. Returns the
 * daemon's pid (through the answer pipe). */
static pid_t spawn(int id, int mid)
{
	int pp[2];
	CHECK(pipe(pp) == 0, "pipe");
	pid_t m = fork();
	if (m == 0) {
		if (mid == 1)
			setsid();
		if (mid == 3)
			setpgid(0, 0);
		pid_t d = fork();
		if (d == 0) {
			if (mid == 2)
				setpgid(0, 0);
			close(pp[0]);
			pid_t me = getpid();
			if (write(pp[1], &me, sizeof(me)) != sizeof(me))
				_exit(1);
			close(pp[1]);
			daemon_body(id, 0, 0);
		}
		_exit(0);
	}
	close(pp[1]);
	pid_t d = 0;
	CHECK(read(pp[0], &d, sizeof(d)) == sizeof(d), "daemon pid");
	close(pp[0]);
	int st;
	waitpid(m, &st, 0);
	return d;
}

int main(void)
{
	test_init();
	setsid();
	CHECK(pipe(req) == 0 && pipe(ans) == 0, "pipes");
	pid_t d1 = spawn(1, 1), d2 = spawn(2, 2), d3 = spawn(3, 3);
	/* wait until all three are reparented to PID 1 */
	for (int i = 0; i < 500; i++) {
		char path[64], buf[512];
		int ok = 0;
		pid_t ds[3] = {d1, d2, d3};
		for (int k = 0; k < 3; k++) {
			snprintf(path, sizeof(path), "/proc/%d/stat", ds[k]);
			FILE *f = fopen(path, "r");
			if (f && fgets(buf, sizeof(buf), f) && strstr(strrchr(buf, ')'), " 1 "))
				ok++;
			if (f)
				fclose(f);
		}
		if (ok == 3)
			break;
		usleep(10000);
	}
	pid_t sid1 = getsid(d1), pg1 = getpgid(d1), pg3 = getpgid(d3);
	CHECK(sid1 != getsid(0) && pg1 == sid1 && pg3 != d3 && pg3 != getpgid(0), "setup");
	test_daemon();
	test_waitsig();
	pid_t want[4][2] = {{0, 0}, {sid1, pg1}, {getsid(0), d2}, {getsid(0), pg3}};
	CHECK(kill(d1, 0) == 0 && kill(d2, 0) == 0 && kill(d3, 0) == 0, "a daemon is gone");
	for (int id = 1; id <= 3; id++) {
		char c = '0' + id;
		CHECK(write(req[1], &c, 1) == 1, "ask %d", id);
		char buf[128] = {0};
		size_t n = 0;
		while (n < sizeof(buf) - 1 && read(ans[0], buf + n, 1) == 1 && buf[n] != '\n')
			n++;
		int rid, ppid, sid, pgid;
		long secret;
		CHECK(sscanf(buf, "%d %d %d %d %ld", &rid, &ppid, &sid, &pgid, &secret) == 5,
		      "daemon %d answer '%s'", id, buf);
		CHECK(rid == id && ppid == 1 && sid == want[id][0] && pgid == want[id][1] &&
			  secret == 4242 + id,
		      "daemon %d: ppid %d sid %d (want %d) pgid %d (want %d) secret %ld", id,
		      ppid, sid, want[id][0], pgid, want[id][1], secret);
	}
	kill(d1, SIGKILL);
	kill(d2, SIGKILL);
	kill(d3, SIGKILL);
	pass();
}
