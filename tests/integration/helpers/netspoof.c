/*
 * netspoof: forged packets from inside a --net bridge slice (it has
 * CAP_NET_RAW in its own network namespace), for tests/integration/test_net.sh.
 *   netspoof arp IFACE CLAIMED_IP TARGET_IP   3 ARP replies "CLAIMED_IP is at
 *                                             my MAC", broadcast
 *   netspoof udp SRC_IP DST_IP PORT TEXT      one UDP datagram with a forged
 *                                             source (raw socket, IP_HDRINCL)
 *   netspoof eth IFACE SRC_MAC SRC_IP DST_MAC DST_IP PORT TEXT
 *                                             the same as a whole Ethernet
 *                                             frame (AF_PACKET): source MAC
 *                                             forged too, the destination
 *                                             MAC chosen (no ARP)
 * Exit 0 when the packets were handed to the kernel: whether they arrive is
 * what the test checks from outside.
 */
#include <arpa/inet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ether.h>
#include <netinet/if_ether.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <linux/if_packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int arp(const char *ifname, const char *claimed, const char *target)
{
	int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	unsigned char mac[6];
	if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
		perror("netspoof arp");
		return 1;
	}
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6); /* before SIOCGIFINDEX: a union */
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
		perror("netspoof arp");
		return 1;
	}
	struct {
		struct ether_header eh;
		struct ether_arp a;
	} __attribute__((packed)) f = {0};
	memset(f.eh.ether_dhost, 0xff, 6);
	memcpy(f.eh.ether_shost, mac, 6);
	f.eh.ether_type = htons(ETHERTYPE_ARP);
	f.a.arp_hrd = htons(ARPHRD_ETHER);
	f.a.arp_pro = htons(ETHERTYPE_IP);
	f.a.arp_hln = 6;
	f.a.arp_pln = 4;
	f.a.arp_op = htons(ARPOP_REPLY);
	memcpy(f.a.arp_sha, mac, 6);
	inet_pton(AF_INET, claimed, f.a.arp_spa);
	inet_pton(AF_INET, target, f.a.arp_tpa);
	struct sockaddr_ll to = {
	    .sll_family = AF_PACKET, .sll_ifindex = ifr.ifr_ifindex, .sll_halen = 6};
	memset(to.sll_addr, 0xff, 6);
	for (int i = 0; i < 3; i++) {
		if (sendto(s, &f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("netspoof arp: sendto");
			return 1;
		}
		usleep(200000);
	}
	return 0;
}

static int udp(const char *src, const char *dst, int port, const char *text)
{
	int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (s < 0) {
		perror("netspoof udp");
		return 1;
	}
	size_t n = strlen(text);
	struct {
		struct iphdr ip;
		struct udphdr u;
		char data[256];
	} __attribute__((packed)) p = {0};
	if (n > sizeof(p.data))
		n = sizeof(p.data);
	memcpy(p.data, text, n);
	size_t len = sizeof(p.ip) + sizeof(p.u) + n;
	p.ip.version = 4;
	p.ip.ihl = 5;
	p.ip.ttl = 64;
	p.ip.protocol = IPPROTO_UDP;
	p.ip.tot_len = htons((uint16_t)len);
	inet_pton(AF_INET, src, &p.ip.saddr);
	inet_pton(AF_INET, dst, &p.ip.daddr);
	p.u.source = htons(40000);
	p.u.dest = htons((uint16_t)port);
	p.u.len = htons((uint16_t)(sizeof(p.u) + n));
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = p.ip.daddr};
	for (int i = 0; i < 3; i++) {
		if (sendto(s, &p, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("netspoof udp: sendto");
			return 1;
		}
		usleep(200000);
	}
	return 0;
}

static uint16_t ip_csum(const void *h, size_t len)
{
	const uint16_t *w = h;
	uint32_t sum = 0;
	for (size_t i = 0; i < len / 2; i++)
		sum += w[i];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static int eth(const char *ifname, const char *smac, const char *src, const char *dmac,
	       const char *dst, int port, const char *text)
{
	int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (s < 0 || ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
		perror("netspoof eth");
		return 1;
	}
	struct {
		struct ether_header eh;
		struct iphdr ip;
		struct udphdr u;
		char data[256];
	} __attribute__((packed)) f = {0};
	struct ether_addr *m;
	if (!(m = ether_aton(smac))) {
		fprintf(stderr, "netspoof eth: bad source MAC %s\n", smac);
		return 2;
	}
	memcpy(f.eh.ether_shost, m, 6);
	if (!(m = ether_aton(dmac))) {
		fprintf(stderr, "netspoof eth: bad destination MAC %s\n", dmac);
		return 2;
	}
	memcpy(f.eh.ether_dhost, m, 6);
	f.eh.ether_type = htons(ETHERTYPE_IP);
	size_t n = strlen(text);
	if (n > sizeof(f.data))
		n = sizeof(f.data);
	memcpy(f.data, text, n);
	size_t iplen = sizeof(f.ip) + sizeof(f.u) + n;
	f.ip.version = 4;
	f.ip.ihl = 5;
	f.ip.ttl = 64;
	f.ip.protocol = IPPROTO_UDP;
	f.ip.tot_len = htons((uint16_t)iplen);
	inet_pton(AF_INET, src, &f.ip.saddr);
	inet_pton(AF_INET, dst, &f.ip.daddr);
	f.ip.check = ip_csum(&f.ip, sizeof(f.ip));
	f.u.source = htons(40000);
	f.u.dest = htons((uint16_t)port);
	f.u.len = htons((uint16_t)(sizeof(f.u) + n));
	struct sockaddr_ll to = {
	    .sll_family = AF_PACKET, .sll_ifindex = ifr.ifr_ifindex, .sll_halen = 6};
	memcpy(to.sll_addr, f.eh.ether_dhost, 6);
	for (int i = 0; i < 3; i++) {
		if (sendto(s, &f, sizeof(f.eh) + iplen, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("netspoof eth: sendto");
			return 1;
		}
		usleep(200000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "arp"))
		return arp(argv[2], argv[3], argv[4]);
	if (argc == 6 && !strcmp(argv[1], "udp"))
		return udp(argv[2], argv[3], atoi(argv[4]), argv[5]);
	if (argc == 9 && !strcmp(argv[1], "eth"))
		return eth(argv[2], argv[3], argv[4], argv[5], argv[6], atoi(argv[7]), argv[8]);
	fprintf(stderr, "usage: netspoof arp IFACE CLAIMED_IP TARGET_IP | udp SRC DST PORT TEXT | "
			"eth IFACE SRC_MAC SRC_IP DST_MAC DST_IP PORT TEXT\n");
	return 2;
}
