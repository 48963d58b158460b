/* socketpair: unix stream and seqpacket pairs with queued data both ways,
 * one end in a child. */
#include <sys/socket.h>
#include <sys/wait.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int s[2], sp[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair");
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0, "socketpair seqpacket");
	CHECK(write(s[0], "to-one", 6) == 6 && write(s[1], "to-zero!", 8) == 8, "write");
	CHECK(send(sp[0], "pkt1", 4, 0) == 4 && send(sp[0], "packet2", 7, 0) == 7, "send");
	pid_t c = fork();
	if (c == 0) {
		close(s[0]);
		test_waitsig();
		char b[16] = "";
		if (read(s[1], b, 6) != 6 || memcmp(b, "to-one", 6))
			_exit(1);
		if (write(s[1], "reply", 5) != 5)
			_exit(2);
		_exit(0);
	}
	close(s[1]);
	test_daemon();
	test_waitsig();
	char b[16] = "";
	CHECK(read(s[0], b, 8) == 8 && !memcmp(b, "to-zero!", 8), "stream data '%s'", b);
	kill(c, SIGTERM);
	CHECK(read(s[0], b, 5) == 5 && !memcmp(b, "reply", 5), "child reply");
	CHECK(recv(sp[1], b, 16, 0) == 4 && recv(sp[1], b, 16, 0) == 7 && !memcmp(b, "packet2", 7), "seqpacket boundaries");
	int st;
	waitpid(c, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	pass();
}
