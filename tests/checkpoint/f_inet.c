/* f_inet: TCP/UDP sockets of the slice's own network namespace come back
 * with their addresses, state and options: a TCP listener (IPv4, options),
 * an IPv6 v6only listener, a bound TCP socket that does not listen, and a
 * bound, connected UDP socket; new connections and datagrams work after. */
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include "zdtm.h"

static void lo_up(void)
{
	/* a new network namespace (the standalone harness) starts with lo down */
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

static int opt(int s, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(s, level, name, &v, &l);
	return v;
}

static int sockname(int s, struct sockaddr_storage *ss)
{
	socklen_t l = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	return getsockname(s, (struct sockaddr *)ss, &l) == 0 ? (int)l : -1;
}

int main(void)
{
	test_init();
	lo_up();
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, five = 5;
	int l4 = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(setsockopt(l4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	      setsockopt(l4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
	      setsockopt(l4, IPPROTO_TCP, TCP_DEFER_ACCEPT, &five, sizeof(five)) == 0, "options");
	int rcv = 65536;
	CHECK(setsockopt(l4, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) == 0, "rcvbuf");
	CHECK(bind(l4, (struct sockaddr *)&lo, sizeof(lo)) == 0 && listen(l4, 7) == 0, "listen v4");
	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 any6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	CHECK(setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0, "v6only");
	CHECK(bind(l6, (struct sockaddr *)&any6, sizeof(any6)) == 0 && listen(l6, 3) == 0, "listen v6");
	int b = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(b, (struct sockaddr *)&lo, sizeof(lo)) == 0, "bind only");
	int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(bind(u1, (struct sockaddr *)&lo, sizeof(lo)) == 0 && bind(u2, (struct sockaddr *)&lo, sizeof(lo)) == 0, "bind udp");
	struct sockaddr_storage n4, n6, nb, nu1, nu2;
	int len4 = sockname(l4, &n4), len6 = sockname(l6, &n6), lenb = sockname(b, &nb);
	int lenu1 = sockname(u1, &nu1), lenu2 = sockname(u2, &nu2);
	CHECK(connect(u1, (struct sockaddr *)&nu2, (socklen_t)lenu2) == 0, "connect udp");
	int want_rcv = opt(l4, SOL_SOCKET, SO_RCVBUF), want_defer = opt(l4, IPPROTO_TCP, TCP_DEFER_ACCEPT);
	test_daemon();
	test_waitsig();
	lo_up();
	struct sockaddr_storage g;
	CHECK(sockname(l4, &g) == len4 && !memcmp(&g, &n4, (size_t)len4), "v4 listener address");
	CHECK(sockname(l6, &g) == len6 && !memcmp(&g, &n6, (size_t)len6), "v6 listener address");
	CHECK(sockname(b, &g) == lenb && !memcmp(&g, &nb, (size_t)lenb), "bound socket address");
	CHECK(sockname(u1, &g) == lenu1 && !memcmp(&g, &nu1, (size_t)lenu1), "udp address");
	CHECK(opt(l4, SOL_SOCKET, SO_ACCEPTCONN) == 1 && opt(l6, SOL_SOCKET, SO_ACCEPTCONN) == 1, "listening");
	CHECK(opt(b, SOL_SOCKET, SO_ACCEPTCONN) == 0, "bound socket listens");
	CHECK(opt(l4, SOL_SOCKET, SO_REUSEADDR) == 1 && opt(l4, IPPROTO_TCP, TCP_NODELAY) == 1, "options lost");
	CHECK(opt(l4, IPPROTO_TCP, TCP_DEFER_ACCEPT) == want_defer, "defer_accept %d want %d", opt(l4, IPPROTO_TCP, TCP_DEFER_ACCEPT), want_defer);
	CHECK(opt(l4, SOL_SOCKET, SO_RCVBUF) == want_rcv, "rcvbuf %d want %d", opt(l4, SOL_SOCKET, SO_RCVBUF), want_rcv);
	CHECK(opt(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "v6only lost");
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	CHECK(getpeername(u1, (struct sockaddr *)&peer, &pl) == 0 && pl == (socklen_t)lenu2 && !memcmp(&peer, &nu2, pl), "udp peer");
	/* traffic: a new connection to the v4 listener, a datagram u1 -> u2 */
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&n4, (socklen_t)len4) == 0, "connect to listener");
	CHECK(write(c, "hi", 2) == 2, "write"); /* TCP_DEFER_ACCEPT waits for data */
	int a = accept(l4, NULL, NULL);
	char buf[8];
	CHECK(a >= 0 && read(a, buf, 2) == 2 && !memcmp(buf, "hi", 2), "accepted data");
	CHECK(send(u1, "dg", 2, 0) == 2, "udp send");
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	CHECK(recvfrom(u2, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl) == 2 && fl == (socklen_t)lenu1 && !memcmp(&from, &nu1, fl), "udp datagram from u1");
	pass();
}
