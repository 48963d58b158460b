/* refuse_tcp: an established TCP connection is refused (its peer and
 * sequence numbers do not move with the slice); the process runs on
 * untouched (driver uses -r). Listening sockets are restored: f_inet. */
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "zdtm.h"

int main(void)
{
	test_init();
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 4) == 0, "listen");
	CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0, "getsockname");
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&a, al) == 0, "connect");
	int acc = accept(l, NULL, NULL);
	CHECK(acc >= 0, "accept");
	test_daemon();
	test_waitsig();
	CHECK(write(c, "x", 1) == 1, "connection still works");
	char b;
	CHECK(read(acc, &b, 1) == 1, "read");
	pass();
}
