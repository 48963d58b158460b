/* f_pipe_flags: every open file of a pipe keeps its exact status flags:
 * ends with different O_NONBLOCK, a second open of the read end (its own
 * open file, own flags), a packet-mode (O_DIRECT) pipe. */
#include <fcntl.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int p[2], q[2];
	CHECK(pipe(p) == 0, "pipe");
	CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0, "nonblock");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
	int r2 = open(path, O_RDONLY | O_NONBLOCK); /* own open file, nonblocking */
	CHECK(r2 >= 0, "reopen");
	CHECK(pipe2(q, O_DIRECT) == 0, "pipe2 O_DIRECT");
	CHECK(write(q[1], "ab", 2) == 2 && write(q[1], "cde", 3) == 3, "packets");
	int fds[] = { p[0], p[1], r2, q[0], q[1] };
	int want[5];
	for (int i = 0; i < 5; i++)
		want[i] = fcntl(fds[i], F_GETFL);
	test_daemon();
	test_waitsig();
	for (int i = 0; i < 5; i++) {
		int got = fcntl(fds[i], F_GETFL);
		CHECK(got == want[i], "fd %d flags %#o, want %#o", fds[i], got, want[i]);
	}
	char b[8];
	CHECK(read(q[0], b, sizeof(b)) == 2 && read(q[0], b, sizeof(b)) == 3, "packets split");
	CHECK(read(r2, b, 1) < 0 && errno == EAGAIN, "reopened end blocks");
	pass();
}
