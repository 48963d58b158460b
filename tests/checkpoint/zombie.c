/* zombie: zombies with exit codes and signals survive as zombies and are
 * reaped after restore with the same status. */
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int codes[4] = { 0, 3, -SIGKILL, -SIGSEGV };
	pid_t z[4];
	for (int i = 0; i < 4; i++) {
		z[i] = fork();
		if (z[i] == 0) {
			if (codes[i] >= 0)
				_exit(codes[i]);
			signal(-codes[i], SIG_DFL);
			raise(-codes[i]);
			_exit(100);
		}
	}
	for (int i = 0; i < 4; i++) {
		siginfo_t si;
		waitid(P_PID, z[i], &si, WEXITED | WNOWAIT);
	}
	test_daemon();
	test_waitsig();
	for (int i = 0; i < 4; i++) {
		int st;
		CHECK(waitpid(z[i], &st, WNOHANG) == z[i], "zombie %d not there", i);
		if (codes[i] >= 0)
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == codes[i], "zombie %d status %#x", i, st);
		else
			CHECK(WIFSIGNALED(st) && WTERMSIG(st) == -codes[i], "zombie %d status %#x", i, st);
	}
	pass();
}
