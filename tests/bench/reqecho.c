/* reqecho PORT: the service of tests/bench/migrate_watch.sh, run in the
 * migrating slice: a UDP echo on 0.0.0.0:PORT (each datagram sent back to
 * its sender). A datagram of 24 bytes or more gets bytes 16-23 replaced by
 * the inode of the network namespace the echo runs in, read at each
 * request: the source's copy and the target's (the same memory) answer
 * with different tags, so the client sees which copy answered. Prints
 * "READY PORT" once bound. Built static (the busybox image has no libc):
 * make bench-bins. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* the inode of our network namespace ("net:[4026532000]"), 0 if unknown */
static uint64_t netns_tag(void)
{
	char l[64];
	ssize_t n = readlink("/proc/self/ns/net", l, sizeof(l) - 1);
	if (n <= 0)
		return 0;
	l[n] = 0;
	char *b = strchr(l, '[');
	return b ? strtoull(b + 1, NULL, 10) : 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: reqecho PORT\n");
		return 2;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("reqecho: bind");
		return 1;
	}
	printf("READY %s\n", argv[1]);
	fflush(stdout);
	for (;;) {
		char buf[512];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n >= 24) {
			uint64_t tag = netns_tag();
			memcpy(buf + 16, &tag, sizeof(tag));
		}
		if (n >= 0)
			sendto(fd, buf, n, 0, (struct sockaddr *)&from, fl);
	}
}
