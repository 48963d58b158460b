/* f_udp_queue: datagrams queued to UDP sockets come back in order, each
 * from its own sender: an IPv4 socket bound to the wildcard (two senders),
 * a dual-stack IPv6 socket (one datagram over IPv6, one over IPv4, seen as
 * v4-mapped), and an empty datagram; the sockets' own options (IP_PKTINFO
 * off, no peek offset) are as they were. */
#include <arpa/inet.h>
#include <net/if.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "zdtm.h"

static void lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
}

static int udp(int family, const char *addr)
{
	int s = socket(family, SOCK_DGRAM, 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t l;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &a->sin_addr);
		l = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		l = sizeof(*a);
	}
	CHECK(s >= 0 && bind(s, (struct sockaddr *)&ss, l) == 0, "bind %s", addr);
	return s;
}

static socklen_t name(int s, struct sockaddr_storage *ss)
{
	socklen_t l = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	CHECK(getsockname(s, (struct sockaddr *)ss, &l) == 0, "getsockname");
	return l;
}

static void to(int from, const char *msg, size_t len, int family, const char *addr, int port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t l;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = (in_port_t)port;
		inet_pton(AF_INET, addr, &a->sin_addr);
		l = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = (in_port_t)port;
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		l = sizeof(*a);
	}
	CHECK(sendto(from, msg, len, 0, (struct sockaddr *)&ss, l) == (ssize_t)len, "send %s", msg);
}

/* The next datagram on s is want (len bytes) from the address and port of
 * sender (as s sees it: v4-mapped on a dual-stack socket). */
static void expect(int s, const char *want, size_t len, int sender, bool mapped)
{
	char buf[64];
	struct sockaddr_storage from, sn;
	socklen_t fl = sizeof(from);
	memset(&from, 0, sizeof(from));
	ssize_t n = recvfrom(s, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	CHECK(n == (ssize_t)len && !memcmp(buf, want, len), "datagram '%s': got %zd bytes", want, n);
	name(sender, &sn);
	if (mapped) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&sn;
		const struct sockaddr_in6 *f = (const struct sockaddr_in6 *)&from;
		CHECK(from.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&f->sin6_addr) &&
		      !memcmp(&f->sin6_addr.s6_addr[12], &a->sin_addr, 4) && f->sin6_port == a->sin_port,
		      "datagram '%s': sender", want);
	} else if (sn.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&sn, *f = (const struct sockaddr_in *)&from;
		CHECK(from.ss_family == AF_INET && f->sin_addr.s_addr == a->sin_addr.s_addr &&
		      f->sin_port == a->sin_port, "datagram '%s': sender", want);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sn, *f = (const struct sockaddr_in6 *)&from;
		CHECK(from.ss_family == AF_INET6 && !memcmp(&f->sin6_addr, &a->sin6_addr, 16) &&
		      f->sin6_port == a->sin6_port, "datagram '%s': sender", want);
	}
}

static int opt(int s, int level, int nm)
{
	int v = -7;
	socklen_t l = sizeof(v);
	getsockopt(s, level, nm, &v, &l);
	return v;
}

int main(void)
{
	test_init();
	lo_up();
	int r4 = udp(AF_INET, "0.0.0.0"), a = udp(AF_INET, "127.0.0.1"), b = udp(AF_INET, "127.0.0.3");
	int r6 = udp(AF_INET6, "::"), c6 = udp(AF_INET6, "::1");
	struct sockaddr_storage n4, n6;
	name(r4, &n4);
	name(r6, &n6);
	int p4 = ((struct sockaddr_in *)&n4)->sin_port, p6 = ((struct sockaddr_in6 *)&n6)->sin6_port;
	to(a, "one", 3, AF_INET, "127.0.0.1", p4);
	to(b, "two", 3, AF_INET, "127.0.0.2", p4);
	to(a, "", 0, AF_INET, "127.0.0.1", p4);
	to(a, "three", 5, AF_INET, "127.0.0.1", p4);
	to(c6, "six", 3, AF_INET6, "::1", p6);
	to(b, "four", 4, AF_INET, "127.0.0.1", p6);
	test_daemon();
	test_waitsig();
	lo_up();
	expect(r4, "one", 3, a, false);
	expect(r4, "two", 3, b, false);
	expect(r4, "", 0, a, false);
	expect(r4, "three", 5, a, false);
	expect(r6, "six", 3, c6, false);
	expect(r6, "four", 4, b, true);
	char x;
	CHECK(recv(r4, &x, 1, MSG_DONTWAIT) < 0 && recv(r6, &x, 1, MSG_DONTWAIT) < 0, "no datagram more");
	CHECK(opt(r4, IPPROTO_IP, IP_PKTINFO) == 0 && opt(r6, IPPROTO_IPV6, IPV6_RECVPKTINFO) == 0, "pktinfo left on");
	CHECK(opt(r4, SOL_SOCKET, SO_PEEK_OFF) == -1, "peek offset left set");
	pass();
}
