/*
 * e12_net: the host's network from a --net none slice.
 *   e12_net HOST_TCP_PORT HOST_ABSTRACT_NAME
 *  - only "lo" exists (if_nameindex, /proc/net/dev, /sys/class/net)
 *  - the host's 127.0.0.1:PORT listener and its abstract unix socket are
 *    unreachable (a different network namespace)
 *  - no route anywhere else (UDP connect only: no packet is sent)
 *  - raw AF_PACKET / ICMP sockets, if allowed, see only lo traffic
 *  - no CAP_NET_ADMIN (lo cannot be reconfigured)
 */
#include "escape.h"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
	esc_init();
	int port = argc > 1 ? atoi(argv[1]) : 0;
	const char *abs = argc > 2 ? argv[2] : NULL;

	struct if_nameindex *ifs = if_nameindex();
	int n = 0, other = 0, lo_index = 0;
	char names[512] = "";
	for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
		n++;
		size_t l = strlen(names);
		snprintf(names + l, sizeof(names) - l, " %s", i->if_name);
		if (strcmp(i->if_name, "lo") != 0)
			other++;
		else
			lo_index = (int)i->if_index;
	}
	if (ifs)
		if_freenameindex(ifs);
	if (other)
		escaped("interfaces besides lo:%s", names);
	else
		blocked("only lo exists (%d interface:%s)", n, names);
	char buf[8192];
	if (read_file("/proc/net/dev", buf, sizeof(buf)) > 0) {
		int lines = 0;
		for (char *p = buf; (p = strchr(p, '\n')); p++)
			lines++;
		if (lines > 3)
			escaped("/proc/net/dev lists %d interfaces", lines - 2);
		else
			blocked("/proc/net/dev lists lo only");
	}
	DIR *d = opendir("/sys/class/net");
	if (d) {
		struct dirent *e;
		int extra = 0;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.' && strcmp(e->d_name, "lo"))
				extra++;
		closedir(d);
		if (extra)
			escaped("/sys/class/net has %d interfaces besides lo", extra);
		else
			blocked("/sys/class/net has lo only");
	}

	if (port > 0) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			char r[64] = "";
			ssize_t k = read(s, r, sizeof(r) - 1);
			if (k > 0)
				r[k] = '\0';
			escaped("connected to the host's 127.0.0.1:%d (%s)", port, r);
		} else
			blocked("connect to the host's 127.0.0.1:%d: %s", port, strerror(errno));
		close(s);
	}
	if (abs) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un u = { .sun_family = AF_UNIX };
		int len = snprintf(u.sun_path + 1, sizeof(u.sun_path) - 1, "%s", abs);
		if (connect(s, (struct sockaddr *)&u,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)) == 0)
			escaped("connected to the host's abstract unix socket @%s", abs);
		else
			blocked("connect to the host's abstract socket @%s: %s", abs, strerror(errno));
		close(s);
	}
	static const char *dests[] = { "10.0.2.2", "192.168.1.1", "172.17.0.1", "8.8.8.8" };
	for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++) {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(53) };
		inet_pton(AF_INET, dests[i], &a.sin_addr);
		/* connect() on UDP only looks the route up; nothing is sent. */
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			escaped("a route to %s exists", dests[i]);
		else
			blocked("no route to %s: %s", dests[i], strerror(errno));
		close(s);
	}

	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (ps < 0)
		blocked("socket(AF_PACKET, SOCK_RAW): %s", strerror(errno));
	else {
		struct timeval tv = { 0, 300000 };
		setsockopt(ps, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		int pkts = 0, foreign = 0;
		for (int i = 0; i < 50; i++) {
			struct sockaddr_ll ll;
			socklen_t sl = sizeof(ll);
			char pk[2048];
			if (recvfrom(ps, pk, sizeof(pk), 0, (struct sockaddr *)&ll, &sl) < 0)
				break;
			pkts++;
			if (ll.sll_ifindex != lo_index)
				foreign++;
		}
		if (foreign)
			escaped("AF_PACKET socket captured %d packets from non-lo interfaces", foreign);
		else
			blocked("AF_PACKET socket allowed but confined: %d packets, all on lo", pkts);
		close(ps);
	}
	int is = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (is < 0)
		blocked("socket(AF_INET, SOCK_RAW, ICMP): %s", strerror(errno));
	else {
		info("raw ICMP socket allowed (confined to this network namespace)");
		close(is);
	}
	int cs = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(cs, SIOCGIFMTU, &ifr) == 0) {
		int mtu = ifr.ifr_mtu;
		ifr.ifr_mtu = mtu;
		expect_fail("SIOCSIFMTU on lo (CAP_NET_ADMIN)", ioctl(cs, SIOCSIFMTU, &ifr));
	}
	close(cs);
	return esc_finish();
}
