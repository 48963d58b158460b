/* unix_dgram: dgram socketpair with queued datagrams (boundaries kept) and
 * a bound dgram socket with a connected client. */
#include <sys/socket.h>
#include <sys/un.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int s[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, s) == 0, "socketpair");
	CHECK(send(s[0], "one", 3, 0) == 3 && send(s[0], "two22", 5, 0) == 5, "send");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	test_tmp_name(sa.sun_path, sizeof(sa.sun_path), "ckpt-dgram");
	unlink(sa.sun_path);
	int srv = socket(AF_UNIX, SOCK_DGRAM, 0), cli = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(bind(srv, (void *)&sa, sizeof(sa)) == 0, "bind");
	CHECK(connect(cli, (void *)&sa, sizeof(sa)) == 0, "connect");
	CHECK(send(cli, "queued", 6, 0) == 6, "send to server");
	test_daemon();
	test_waitsig();
	char b[16] = "";
	CHECK(recv(s[1], b, 16, 0) == 3 && !memcmp(b, "one", 3), "dgram 1");
	CHECK(recv(s[1], b, 16, 0) == 5 && !memcmp(b, "two22", 5), "dgram 2");
	CHECK(recv(srv, b, 16, MSG_DONTWAIT) == 6 && !memcmp(b, "queued", 6), "queued to server");
	CHECK(send(cli, "again", 5, 0) == 5, "client still connected");
	CHECK(recv(srv, b, 16, 0) == 5, "server receives");
	unlink(sa.sun_path);
	pass();
}
