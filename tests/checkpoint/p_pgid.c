/* p_pgid: process groups that do not follow the fork order come back:
 *   b joins the group of its younger sibling a (b is forked first);
 *   z, a zombie, joined a's group before it exited;
 *   m is in the group of l, which exited (and was reaped) - a gone leader
 *   whose member is not a daemon: rebuilt with a placeholder for l. */
#include <sys/wait.h>
#include "zdtm.h"

static void wait_pgid(pid_t pid, pid_t want)
{
	for (int i = 0; i < 1000 && getpgid(pid) != want; i++)
		usleep(2000);
}

int main(void)
{
	test_init();
	setsid();
	int go[2];
	CHECK(pipe(go) == 0, "pipe");
	pid_t b = fork();
	if (b == 0) { /* waits for a's group, joins it */
		pid_t a = 0; /* one read of one write: atomic on a pipe */
		if (read(go[0], &a, sizeof(a)) != sizeof(a) || setpgid(0, a) < 0)
			_exit(8);
		test_waitsig();
		_exit(getpgid(0) == a ? 0 : 1);
	}
	pid_t z = fork();
	if (z == 0) { /* joins a's group, then exits: a zombie in a's group */
		pid_t a = 0; /* one read of one write: atomic on a pipe */
		if (read(go[0], &a, sizeof(a)) != sizeof(a) || setpgid(0, a) < 0)
			_exit(8);
		_exit(7);
	}
	pid_t a = fork();
	if (a == 0) {
		setpgid(0, 0);
		test_waitsig();
		_exit(getpgid(0) == getpid() ? 0 : 2);
	}
	setpgid(a, a);
	for (int i = 0; i < 2; i++)
		CHECK(write(go[1], &a, sizeof(a)) == sizeof(a), "go");
	wait_pgid(b, a);
	siginfo_t si;
	CHECK(waitid(P_PID, z, &si, WEXITED | WNOWAIT) == 0, "z exits");
	/* l leads a group, m joins it, l exits and is reaped */
	pid_t l = fork();
	if (l == 0) {
		setpgid(0, 0);
		pause();
		_exit(0);
	}
	setpgid(l, l);
	pid_t m = fork();
	if (m == 0) {
		setpgid(0, l);
		test_waitsig();
		_exit(getpgid(0) == l && getppid() != 1 ? 0 : 3);
	}
	setpgid(m, l);
	wait_pgid(m, l);
	kill(l, SIGKILL);
	CHECK(waitpid(l, NULL, 0) == l, "reap l");
	CHECK(getpgid(b) == a && getpgid(z) == a && getpgid(m) == l, "setup");
	test_daemon();
	test_waitsig();
	CHECK(getpgid(a) == a, "a's group: %d", getpgid(a));
	CHECK(getpgid(b) == a, "b's group: %d, want %d", getpgid(b), a);
	CHECK(getpgid(z) == a, "zombie's group: %d, want %d", getpgid(z), a);
	CHECK(getpgid(m) == l, "m's group: %d, want the gone leader %d", getpgid(m), l);
	CHECK(getsid(b) == getsid(0) && getsid(z) == getsid(0) && getsid(m) == getsid(0),
	      "sessions");
	kill(a, SIGTERM);
	kill(b, SIGTERM);
	kill(m, SIGTERM);
	int st;
	CHECK(waitpid(z, &st, 0) == z && WIFEXITED(st) && WEXITSTATUS(st) == 7, "zombie z: %#x",
	      st);
	CHECK(waitpid(a, &st, 0) == a && WIFEXITED(st) && WEXITSTATUS(st) == 0, "a: %#x", st);
	CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "b: %#x", st);
	CHECK(waitpid(m, &st, 0) == m && WIFEXITED(st) && WEXITSTATUS(st) == 0, "m: %#x", st);
	CHECK(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "a stray child (a helper?)");
	pass();
}
