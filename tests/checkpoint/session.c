/* session: sessions and process groups are restored. */
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	setsid();
	pid_t a = fork();
	if (a == 0) {		/* own group in our session */
		setpgid(0, 0);
		pid_t b = fork();
		if (b == 0) {	/* joins a's group */
			test_waitsig();
			_exit(getpgid(0) == getppid() && getsid(0) == getsid(getppid()) ? 0 : 1);
		}
		test_waitsig();
		kill(b, SIGTERM);
		int st;
		waitpid(b, &st, 0);
		_exit(WIFEXITED(st) && WEXITSTATUS(st) == 0 && getpgid(0) == getpid() ? 0 : 2);
	}
	pid_t c = fork();
	if (c == 0) {		/* new session */
		setsid();
		test_waitsig();
		_exit(getsid(0) == getpid() && getpgid(0) == getpid() ? 0 : 3);
	}
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	pid_t sid = getsid(0), pg = getpgid(0);
	test_daemon();
	test_waitsig();
	CHECK(getsid(0) == sid && getpgid(0) == pg, "own sid/pgid changed");
	CHECK(getpgid(a) == a, "a's group changed");
	kill(a, SIGTERM);
	kill(c, SIGTERM);
	int st;
	waitpid(a, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child a: %#x", st);
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child c: %#x", st);
	pass();
}
