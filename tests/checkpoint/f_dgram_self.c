/* f_dgram_self: a datagram socket connected to its own address (bound to a
 * path, and one to an abstract name) keeps its name, its peer and its
 * queued datagrams. */
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "zdtm.h"

static int self_connected(struct sockaddr_un *sa, socklen_t len)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(s >= 0 && bind(s, (void *)sa, len) == 0, "bind");
	CHECK(connect(s, (void *)sa, len) == 0, "connect to self");
	CHECK(send(s, "one", 3, 0) == 3, "send to self");
	return s;
}

static void verify(int s, struct sockaddr_un *sa, socklen_t len)
{
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	CHECK(getsockname(s, (void *)&got, &gl) == 0 && gl == len && !memcmp(&got, sa, len), "name lost");
	gl = sizeof(got);
	CHECK(getpeername(s, (void *)&got, &gl) == 0 && gl == len && !memcmp(&got, sa, len), "peer lost");
	CHECK(send(s, "two", 3, MSG_DONTWAIT) == 3, "send to self after restore");
	char b[8];
	CHECK(recv(s, b, sizeof(b), MSG_DONTWAIT) == 3 && !memcmp(b, "one", 3), "queued datagram");
	CHECK(recv(s, b, sizeof(b), MSG_DONTWAIT) == 3 && !memcmp(b, "two", 3), "new datagram");
}

int main(void)
{
	test_init();
	struct sockaddr_un p = { .sun_family = AF_UNIX }, a = { .sun_family = AF_UNIX };
	test_tmp_name(p.sun_path, sizeof(p.sun_path), "ckpt-dgself");
	unlink(p.sun_path);
	socklen_t pl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p.sun_path) + 1);
	int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "ckpt-dgself-%d", getpid());
	socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	int s1 = self_connected(&p, pl);
	int s2 = self_connected(&a, al);
	test_daemon();
	test_waitsig();
	verify(s1, &p, pl);
	verify(s2, &a, al);
	unlink(p.sun_path);
	pass();
}
