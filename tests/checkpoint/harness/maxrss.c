/*
 * maxrss OUT -- PROG ARGS...: run PROG (stdin/stdout/stderr inherited),
 * write its peak resident set (wait4 ru_maxrss, KiB) to OUT, exit with its
 * status. run.sh uses it to bound the memory of a streaming restore.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: maxrss OUT -- PROG ARGS...\n");
		return 2;
	}
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		execvp(argv[3], argv + 3);
		perror(argv[3]);
		_exit(127);
	}
	int status;
	struct rusage ru;
	while (wait4(c, &status, 0, &ru) < 0)
		;
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 2;
	fprintf(f, "%ld\n", ru.ru_maxrss);
	fclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
