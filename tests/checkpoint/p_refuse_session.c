/* p_refuse_session: q is in the session of x, which is alive but not q's
 * ancestor (q's parent y exited; q went to PID 1). No fork order rebuilds
 * that: the checkpoint must be refused up front and the tree run on. */
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	setsid();
	int pp[2];
	CHECK(pipe(pp) == 0, "pipe");
	pid_t x = fork();
	if (x == 0) {
		setsid();
		pid_t y = fork();
		if (y == 0) {
			pid_t q = fork();
			if (q == 0) {
				close(pp[0]);
				pid_t me = getpid();
				if (write(pp[1], &me, sizeof(me)) != sizeof(me))
					_exit(1);
				close(pp[1]);
				for (;;)
					pause();
			}
			_exit(0);
		}
		waitpid(y, NULL, 0);
		for (;;)
			pause();
	}
	close(pp[1]);
	pid_t q = 0;
	CHECK(read(pp[0], &q, sizeof(q)) == sizeof(q), "q's pid");
	for (int i = 0; i < 1000 && getsid(q) != x; i++)
		usleep(2000);
	usleep(100000); /* y exits, q goes to PID 1 */
	test_daemon();
	test_waitsig();
	CHECK(getsid(x) == x, "x's session");
	kill(x, SIGKILL);
	kill(q, SIGKILL);
	pass();
}
