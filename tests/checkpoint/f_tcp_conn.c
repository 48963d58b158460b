/* f_tcp_conn: an established TCP connection between two sockets of the
 * tree (loopback) survives with its queued bytes both ways - received and
 * unread, sent and unacknowledged, not sent yet - and carries on. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "zdtm.h"

#define BIG (4 << 20)

static unsigned char pat(size_t i)
{
	return (unsigned char)(i * 7 + i / 251);
}

static int addrs(int s, struct sockaddr_storage *l, struct sockaddr_storage *p)
{
	socklen_t a = sizeof(*l), b = sizeof(*p);
	memset(l, 0, sizeof(*l));
	memset(p, 0, sizeof(*p));
	return getsockname(s, (struct sockaddr *)l, &a) == 0 && getpeername(s, (struct sockaddr *)p, &b) == 0 ? 0 : -1;
}

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
	int s = accept(l, NULL, NULL);
	CHECK(s >= 0, "accept");
	int one = 1;
	CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "nodelay");
	/* server -> client: a few bytes the client has not read */
	CHECK(write(s, "world", 5) == 5, "write world");
	/* client -> server: more than the server's receive buffer holds, so
	 * some bytes wait in the client's send queue */
	unsigned char *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = pat(i);
	fcntl(c, F_SETFL, O_NONBLOCK);
	size_t sent = 0;
	for (int tries = 0; sent < BIG && tries < 200; tries++) {
		ssize_t n = write(c, big + sent, BIG - sent);
		if (n > 0)
			sent += (size_t)n;
		else
			usleep(10000);
	}
	fcntl(c, F_SETFL, 0);
	int outq = 0;
	ioctl(c, TIOCOUTQ, &outq);
	CHECK(sent > 0, "nothing sent");
	struct sockaddr_storage cl, cp, sl, sp;
	CHECK(addrs(c, &cl, &cp) == 0 && addrs(s, &sl, &sp) == 0, "addresses");
	printf("queued %zu bytes, %d in the client's send queue\n", sent, outq);
	test_daemon();
	test_waitsig();
	struct sockaddr_storage x, y;
	CHECK(addrs(c, &x, &y) == 0 && !memcmp(&x, &cl, sizeof(x)) && !memcmp(&y, &cp, sizeof(y)), "client addresses");
	CHECK(addrs(s, &x, &y) == 0 && !memcmp(&x, &sl, sizeof(x)) && !memcmp(&y, &sp, sizeof(y)), "server addresses");
	char w[8];
	CHECK(read(c, w, 5) == 5 && !memcmp(w, "world", 5), "server's bytes");
	unsigned char *got = malloc(BIG);
	size_t have = 0;
	while (have < sent) {
		ssize_t n = read(s, got + have, sent - have);
		CHECK(n > 0, "read %zu of %zu", have, sent);
		have += (size_t)n;
	}
	for (size_t i = 0; i < sent; i++)
		CHECK(got[i] == pat(i), "byte %zu of %zu differs", i, sent);
	CHECK(write(c, "more", 4) == 4 && read(s, w, 4) == 4 && !memcmp(w, "more", 4), "new bytes client -> server");
	CHECK(write(s, "back", 4) == 4 && read(c, w, 4) == 4 && !memcmp(w, "back", 4), "new bytes server -> client");
	int c2 = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c2, (struct sockaddr *)&a, al) == 0 && accept(l, NULL, NULL) >= 0, "listener still accepts");
	pass();
}
