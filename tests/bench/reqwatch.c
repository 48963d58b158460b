/* reqwatch ADDR PORT SECONDS [INTERVAL_MS [TIMEOUT_MS]]: the client of
 * tests/bench/migrate_watch.sh. Sends a UDP request (sequence number and
 * send time) to ADDR:PORT every INTERVAL_MS (10) on a fixed schedule, for
 * SECONDS, and matches the echoes by sequence number. Prints one line per
 * request: the send time (Unix ms, the clock of the migration record's
 * stopped_ms/started_ms), the latency in ms or -1 when no echo came within
 * TIMEOUT_MS (500): a gap, and the tag of the copy that answered
 * (reqecho: its network namespace's inode; 0 for none). Built static:
 * make bench-bins. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct req {
	uint32_t seq;
	uint32_t pad;
	int64_t sent_ns; /* CLOCK_MONOTONIC */
	uint64_t tag;	 /* filled by the echo: which copy answered */
};

static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t real_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Read every echo that is there; lat[seq] = its latency (first one wins). */
static void drain(int fd, int64_t *lat, uint64_t *tag, uint32_t n)
{
	struct req r;
	for (;;) {
		ssize_t k = recv(fd, &r, sizeof(r), MSG_DONTWAIT);
		if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			continue; /* ECONNREFUSED from an ICMP error: the request is lost, go on */
		if (k < 0)
			return;
		if (k == sizeof(r) && r.seq < n && lat[r.seq] < 0) {
			lat[r.seq] = mono_ns() - r.sent_ns;
			tag[r.seq] = r.tag;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 6) {
		fprintf(stderr, "usage: reqwatch ADDR PORT SECONDS [INTERVAL_MS [TIMEOUT_MS]]\n");
		return 2;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "reqwatch: address %s: not an IPv4 address\n", argv[1]);
		return 2;
	}
	int64_t ival = (argc > 4 ? atoll(argv[4]) : 10) * 1000000;
	int64_t tmo = (argc > 5 ? atoll(argv[5]) : 500) * 1000000;
	if (ival <= 0 || tmo <= 0) {
		fprintf(stderr, "reqwatch: INTERVAL_MS and TIMEOUT_MS must be positive\n");
		return 2;
	}
	uint32_t n = (uint32_t)(atoll(argv[3]) * 1000000000 / ival);
	int64_t *lat = malloc(n * sizeof(*lat)), *sent_real = malloc(n * sizeof(*sent_real));
	uint64_t *tag = calloc(n, sizeof(*tag));
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (!lat || !sent_real || !tag || fd < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("reqwatch");
		return 1;
	}
	int64_t t0 = mono_ns();
	for (uint32_t i = 0; i < n; i++) {
		lat[i] = -1;
		int64_t due = t0 + (int64_t)i * ival;
		for (int64_t now = mono_ns(); now < due; now = mono_ns()) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int ms = (int)((due - now + 999999) / 1000000);
			if (poll(&p, 1, ms) > 0)
				drain(fd, lat, tag, n);
		}
		struct req r = {.seq = i, .sent_ns = mono_ns()};
		sent_real[i] = real_ns();
		send(fd, &r, sizeof(r), 0); /* an error (no route, refused) is a gap */
		drain(fd, lat, tag, n);
	}
	for (int64_t end = mono_ns() + tmo; mono_ns() < end;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) > 0)
			drain(fd, lat, tag, n);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (lat[i] >= 0 && lat[i] <= tmo)
			printf("%lld %.3f %llu\n", (long long)(sent_real[i] / 1000000),
			       lat[i] / 1e6, (unsigned long long)tag[i]);
		else
			printf("%lld -1 0\n", (long long)(sent_real[i] / 1000000));
	}
	return 0;
}
