/* p_refuse_cwd: a child whose working directory was removed cannot be
 * restored (chdir has nowhere to go): the checkpoint is refused up front,
 * naming the process, and the tree runs on. */
#include <sys/stat.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	char dir[] = "/tmp/ckpt-gone-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	int pp[2];
	CHECK(pipe(pp) == 0, "pipe");
	pid_t c = fork();
	if (c == 0) {
		if (chdir(dir) < 0 || rmdir(dir) < 0)
			_exit(1);
		close(pp[1]);
		test_waitsig();
		_exit(0);
	}
	close(pp[1]);
	char b;
	CHECK(read(pp[0], &b, 1) == 0, "child ready");
	test_daemon();
	test_waitsig();
	kill(c, SIGTERM);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	pass();
}
