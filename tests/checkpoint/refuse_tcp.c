/* refuse_tcp: a TCP connection whose other end is not a socket of the tree
 * (here: still in the listener's accept queue) is refused, and so is the
 * listener with a connection not accepted yet; the process runs on
 * untouched (driver uses -r). Connections inside the tree: f_tcp_conn. */
#include <netinet/in.h>
#include <sys/socket.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 4) == 0, "listen");
	CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0, "getsockname");
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&a, al) == 0, "connect");
	test_daemon();
	test_waitsig();
	int acc = accept(l, NULL, NULL);
	CHECK(acc >= 0, "accept");
	CHECK(write(c, "x", 1) == 1, "connection still works");
	char b;
	CHECK(read(acc, &b, 1) == 1, "read");
	pass();
}
