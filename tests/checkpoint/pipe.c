/* pipe: buffered data in pipes (incl. a non-default size, a pipe shared
 * with a child) is all there after restore. */
#include <fcntl.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int p[2], q[2];
	CHECK(pipe(p) == 0 && pipe2(q, O_NONBLOCK) == 0, "pipe");
	CHECK(fcntl(q[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20), "F_SETPIPE_SZ");
	char buf[200000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 13);
	CHECK(write(q[1], buf, sizeof(buf)) == sizeof(buf), "fill big pipe");
	CHECK(write(p[1], "hello", 5) == 5, "write");
	pid_t c = fork();
	if (c == 0) {
		close(p[1]);
		test_waitsig();
		char b[16] = "";
		_exit(read(p[0], b, 5) == 5 && !memcmp(b, "hello", 5) ? 0 : 1);
	}
	close(p[0]);
	test_daemon();
	test_waitsig();
	CHECK(fcntl(q[0], F_GETPIPE_SZ) >= (1 << 20), "pipe size");
	CHECK(fcntl(q[0], F_GETFL) & O_NONBLOCK, "nonblock");
	char back[sizeof(buf)];
	size_t got = 0;
	while (got < sizeof(back)) {
		ssize_t n = read(q[0], back + got, sizeof(back) - got);
		CHECK(n > 0, "read big pipe after %zu", got);
		got += n;
	}
	CHECK(!memcmp(back, buf, sizeof(buf)), "pipe data differs");
	CHECK(read(q[0], back, 1) < 0 && errno == EAGAIN, "extra data");
	kill(c, SIGTERM);
	int st;
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child read %#x", st);
	pass();
}
