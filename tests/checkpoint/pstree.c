/* pstree: children and grandchildren keep their pids and parents; a child
 * still running after restore is waited for with its exit code. */
#include <sys/wait.h>
#include "zdtm.h"

static int pipefd[2];

static void leaf(int code)
{
	pid_t par = getppid();
	test_waitsig();
	_exit(getppid() == par ? code : 97);
}

static void child(int depth, int code)
{
	while (depth > 0) {
		pid_t g = fork();
		if (g == 0) {
			depth--;
			code++;
			continue;
		}
		pid_t me = getpid(), par = getppid();
		test_waitsig();
		kill(g, SIGTERM);
		int st;
		if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != code + 1)
			_exit(99);
		if (getpid() != me || getppid() != par)
			_exit(98);
		_exit(code);
	}
	leaf(code);
}

int main(void)
{
	test_init();
	if (pipe(pipefd) < 0)
		fail("pipe");
	pid_t kids[3];
	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			child(i, 10 * (i + 1));
	}
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	test_daemon();
	test_waitsig();
	for (int i = 0; i < 3; i++)
		kill(kids[i], SIGTERM);
	for (int i = 0; i < 3; i++) {
		int st;
		CHECK(waitpid(kids[i], &st, 0) == kids[i], "waitpid child %d", i);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10 * (i + 1), "child %d status %#x", i, st);
	}
	pass();
}
