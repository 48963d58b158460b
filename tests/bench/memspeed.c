/* memspeed: what this machine copies right now - memcpy and
 * process_vm_readv of 256 MiB of our own memory, in 4 MiB pieces -
 * printed as JSON. tests/bench/ckpt.sh runs it before and after its
 * measurements: on a shared VM the same code runs several times slower
 * when the host is busy, and a checkpoint's GiB/s means little without
 * the machine's own figure beside it. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LEN   (256ul << 20)
#define PIECE (4ul << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
	uint8_t *src = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint8_t *buf = malloc(PIECE);
	if (src == MAP_FAILED || !buf)
		return 1;
	for (size_t i = 0; i < LEN; i += 8)
		*(uint64_t *)(src + i) = i * 0x9e3779b97f4a7c15ull;
	memset(buf, 1, PIECE);
	double best_cp = 1e9, best_pvr = 1e9;
	for (int rep = 0; rep < 3; rep++) {
		double t = now();
		for (size_t o = 0; o < LEN; o += PIECE)
			memcpy(buf, src + o, PIECE);
		t = now() - t;
		best_cp = t < best_cp ? t : best_cp;
		t = now();
		for (size_t o = 0; o < LEN; o += PIECE) {
			struct iovec l = {buf, PIECE}, r = {src + o, PIECE};
			if (process_vm_readv(getpid(), &l, 1, &r, 1, 0) != (ssize_t)PIECE)
				return 1;
		}
		t = now() - t;
		best_pvr = t < best_pvr ? t : best_pvr;
	}
	printf("{\"memcpy_gib_s\": %.2f, \"process_vm_readv_gib_s\": %.2f}\n",
	       LEN / best_cp / (1 << 30), LEN / best_pvr / (1 << 30));
	return 0;
}
