/* reqecho PORT: the service of tests/bench/migrate_watch.sh, run in the
 * migrating slice: a UDP echo on 0.0.0.0:PORT (each datagram sent back to
 * its sender as it came). Prints "READY PORT" once bound. Built static (the
 * busybox image has no libc): make bench-bins. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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
		if (n >= 0)
			sendto(fd, buf, n, 0, (struct sockaddr *)&from, fl);
	}
}
