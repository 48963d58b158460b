/* unix_listen: a listening unix socket accepts new connections after
 * restore; an accepted connection keeps its data. */
#include <sys/socket.h>
#include <sys/un.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	test_tmp_name(sa.sun_path, sizeof(sa.sun_path), "ckpt-listen");
	unlink(sa.sun_path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(l, (void *)&sa, sizeof(sa)) == 0 && listen(l, 8) == 0, "listen");
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c, (void *)&sa, sizeof(sa)) == 0, "connect");
	int a = accept(l, NULL, NULL);
	CHECK(a >= 0, "accept");
	CHECK(write(c, "ping", 4) == 4, "write");
	test_daemon();
	test_waitsig();
	char b[8] = "";
	CHECK(read(a, b, 4) == 4 && !memcmp(b, "ping", 4), "accepted data");
	CHECK(write(a, "pong", 4) == 4 && read(c, b, 4) == 4 && !memcmp(b, "pong", 4), "reply");
	int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c2, (void *)&sa, sizeof(sa)) == 0, "connect after restore");
	int a2 = accept(l, NULL, NULL);
	CHECK(a2 >= 0 && write(c2, "n", 1) == 1 && read(a2, b, 1) == 1, "new connection");
	unlink(sa.sun_path);
	pass();
}
