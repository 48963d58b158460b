/* cow: private memory shared copy-on-write between parent and child keeps
 * each side's view (written by one after the fork, untouched by the other). */
#include <sys/mman.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	size_t len = 1 << 20;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(m, 'a', len);
	pid_t c = fork();
	if (c == 0) {
		memset(m, 'c', len / 2);
		test_waitsig();
		for (size_t i = 0; i < len; i++)
			if (m[i] != (i < len / 2 ? 'c' : 'a'))
				_exit(1);
		_exit(0);
	}
	usleep(50000);
	memset(m + len / 2, 'p', len / 2);
	test_daemon();
	test_waitsig();
	for (size_t i = 0; i < len; i++)
		CHECK(m[i] == (i < len / 2 ? 'a' : 'p'), "parent byte %zu = %c", i, m[i]);
	kill(c, SIGTERM);
	int st;
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child view %#x", st);
	pass();
}
