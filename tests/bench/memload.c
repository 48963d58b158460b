/* memload MIB RATE: the workload of tests/bench/migrate_live.sh. Allocates
 * MIB MiB, fills every page with random data (xorshift, so nothing in the
 * stream is zero or alike), prints "READY MIB RATE" and then dirties RATE
 * MiB/s: every 10 ms it writes one word into each of RATE * 1 MiB / 100 /
 * 4 KiB pages chosen at random (page writes per second; a page hit twice
 * in one pre-copy round counts once in that round). RATE 0: it sleeps.
 * Every second it prints "tick N", so the log shows that it runs on. Built
 * static (the busybox image has no libc): make bench-bins. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PG	    4096ul
#define TICK_NS	    10000000l /* 10 ms */
#define TICKS_PER_S 100

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: memload MIB RATE_MIB_PER_S\n");
		return 2;
	}
	size_t mib = strtoul(argv[1], NULL, 10), rate = strtoul(argv[2], NULL, 10);
	size_t len = mib << 20, npages = len / PG;
	if (!npages) {
		fprintf(stderr, "memload: MIB must be at least 1\n");
		return 2;
	}
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("memload: mmap");
		return 1;
	}
	rng ^= (uint64_t)time(NULL);
	for (size_t i = 0; i < len / 8; i++)
		mem[i] = next();
	/* pages per 10 ms tick, the remainder spread over the ticks of a second */
	size_t per_s = (rate << 20) / PG, base = per_s / TICKS_PER_S, extra = per_s % TICKS_PER_S;
	printf("READY %zu %zu\n", mib, rate);
	fflush(stdout);
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	for (unsigned long tick = 1;; tick++) {
		size_t n = base + (tick % TICKS_PER_S < extra ? 1 : 0);
		for (size_t k = 0; k < n; k++)
			mem[(next() % npages) * (PG / 8) + (next() % (PG / 8))] = next();
		if (tick % TICKS_PER_S == 0) {
			printf("tick %lu\n", tick / TICKS_PER_S);
			fflush(stdout);
		}
		t.tv_nsec += TICK_NS;
		if (t.tv_nsec >= 1000000000l) {
			t.tv_nsec -= 1000000000l;
			t.tv_sec++;
		}
		/* behind (a freeze, a loaded box): skip ahead, do not catch up in a burst */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > t.tv_sec + 1)
			t = now;
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
	}
}
