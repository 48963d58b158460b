/* pc_heap [MiB [pages/s [plain|storm]]]: memory that keeps changing while a
 * pre-copy runs. Writer threads rewrite random pages of a heap at a steady
 * rate (each page: its number, a generation and a pattern of both; the
 * generations live in a table of their own) and drop some with
 * MADV_DONTNEED (generation 0 = must read as zeros); a churn thread
 * unmaps and re-maps regions (often at the same address, half filled),
 * grows one with mremap and the heap with sbrk. SIGUSR2 is answered with
 * "STEP n" (the harness's -P). After SIGTERM every page must match its
 * table: a write a pre-copy round missed shows as a stale page.
 * Defaults: 32 MiB, 1000 pages/s (4 MiB/s); "plain": no drops, no churn
 * (tests/bench/precopy.sh); "storm": drops and churn, and the heap read
 * back by NSTORM threads at once (test_precopy.sh). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include "zdtm.h"

#define PG	 4096
#define NTHREADS 3
#define NCHURN	 6
#define NSTORM	 16

static uint8_t *heap;
static uint32_t *gen; /* per page; 0 = zeros */
static size_t npages;
static long rate; /* pages per second, all threads */
static bool plain, storm;
static atomic_int stop;
static volatile int inflight[NTHREADS]; /* page being changed, -1 none */

struct churn {
	uint8_t *addr;
	size_t len, filled; /* bytes; [filled, len) must be zero */
	uint32_t seed;
};
static struct churn ch[NCHURN];
static volatile int churn_busy = -1; /* region being changed */
#define barrier() __asm__ volatile("" ::: "memory")
static uint8_t *brk0;
static size_t brk_len;

static uint64_t word(size_t p, uint32_t g, size_t i)
{
	uint64_t x = ((uint64_t)p << 32 | g) * 0x9e3779b97f4a7c15ull + i;
	return x ^ (x >> 29);
}

static void fill_page(size_t p, uint32_t g)
{
	uint64_t *w = (uint64_t *)(heap + p * PG);
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = word(p, g, i);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	uint64_t x = 0x1234567 + (uint64_t)t * 7919, start = now_ns(), done = 0;
	size_t mine = (npages - (size_t)t + NTHREADS - 1) / NTHREADS;
	while (!atomic_load(&stop)) {
		uint64_t want = (now_ns() - start) / 1000 * (uint64_t)rate / NTHREADS / 1000000;
		if (done >= want) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
			continue;
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t p = (size_t)t + (x % mine) * NTHREADS;
		if (p >= npages)
			continue;
		inflight[t] = (int)p;
		barrier();
		if (!plain && x % 8 == 0) {
			madvise(heap + p * PG, PG, MADV_DONTNEED);
			gen[p] = 0;
		} else {
			uint32_t g = gen[p] + 1;
			fill_page(p, g);
			gen[p] = g;
		}
		barrier();
		inflight[t] = -1;
		done++;
	}
	return NULL;
}

static uint8_t pat(uint32_t seed, size_t i)
{
	return (uint8_t)((seed * 2654435761u + i * 40503u) >> 7);
}

static void churn_fill(struct churn *c, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		c->addr[i] = pat(c->seed, i);
}

static void churn_step(unsigned k)
{
	struct churn *c = &ch[k % NCHURN];
	size_t len = (size_t)(1 + k % 5) * 16 * PG;
	if (k % 3 == 0) {
		/* a new mapping over the same range, half filled */
		munmap(c->addr, c->len);
		uint8_t *a = mmap(c->addr, c->len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (a == MAP_FAILED)
			a = mmap(NULL, c->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
		CHECK(a != MAP_FAILED, "mmap again");
		c->addr = a;
		len = c->len;
	} else if (k % 3 == 1) {
		/* grow (may move) */
		uint8_t *a = mremap(c->addr, c->len, c->len + len, MREMAP_MAYMOVE);
		CHECK(a != MAP_FAILED, "mremap");
		c->addr = a;
		c->len += len;
		if (c->len > (2u << 20)) {
			munmap(c->addr + (1u << 20), c->len - (1u << 20));
			c->len = 1u << 20;
			if (c->filled > c->len)
				c->filled = c->len;
		}
		churn_fill(c, c->filled, c->len / 2 > c->filled ? c->len / 2 : c->filled);
		if (c->len / 2 > c->filled)
			c->filled = c->len / 2;
		return;
	} else {
		/* elsewhere */
		uint8_t *a =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(a != MAP_FAILED, "mmap");
		munmap(c->addr, c->len);
		c->addr = a;
		c->len = len;
	}
	c->seed = k * 2654435761u + 1;
	c->filled = len / 2;
	churn_fill(c, 0, c->filled);
}

static void *churner(void *arg)
{
	for (unsigned k = NCHURN; !atomic_load(&stop); k++) {
		churn_busy = (int)(k % NCHURN);
		barrier();
		churn_step(k);
		barrier();
		churn_busy = -1;
		if (brk_len < (1u << 20) && k % 4 == 0) {
			uint8_t *b = sbrk(PG);
			if (b != (void *)-1) {
				if (!brk0)
					brk0 = b;
				/* sbrk grows one contiguous area */
				if (b == brk0 + brk_len) {
					memset(b, (int)(brk_len / PG % 251 + 1), PG);
					brk_len += PG;
				}
			}
		}
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static volatile sig_atomic_t steps;
static void on_usr2(int s)
{
	(void)s;
	steps++;
}

static void verify_pages(size_t first, size_t step)
{
	for (size_t p = first; p < npages; p += step) {
		bool busy = false;
		for (int t = 0; t < NTHREADS; t++)
			busy |= inflight[t] == (int)p;
		if (busy)
			continue; /* frozen mid-change: either is right */
		const uint64_t *w = (const uint64_t *)(heap + p * PG);
		for (size_t i = 0; i < PG / 8; i++) {
			uint64_t want = gen[p] ? word(p, gen[p], i) : 0;
			CHECK(w[i] == want, "page %zu (generation %u) word %zu: %#llx, want %#llx",
			      p, gen[p], i, (unsigned long long)w[i], (unsigned long long)want);
		}
	}
}

static pthread_barrier_t storm_go;
static void *storm_thread(void *arg)
{
	pthread_barrier_wait(&storm_go);
	verify_pages((size_t)(intptr_t)arg, NSTORM);
	return NULL;
}

/* "storm": NSTORM threads read the heap back at once, interleaved page by
 * page, so that a restore still filling memory meets many faults at once */
static void verify(void)
{
	if (storm) {
		pthread_t th[NSTORM];
		pthread_barrier_init(&storm_go, NULL, NSTORM);
		for (int t = 0; t < NSTORM; t++)
			CHECK(pthread_create(&th[t], NULL, storm_thread, (void *)(intptr_t)t) == 0,
			      "pthread_create");
		for (int t = 0; t < NSTORM; t++)
			pthread_join(th[t], NULL);
	} else {
		verify_pages(0, 1);
	}
	for (int k = 0; k < NCHURN; k++)
		for (size_t i = 0; k != churn_busy && i < ch[k].len; i++)
			CHECK(ch[k].addr[i] == (i < ch[k].filled ? pat(ch[k].seed, i) : 0),
			      "region %d byte %zu of %zu (filled %zu)", k, i, ch[k].len,
			      ch[k].filled);
	for (size_t i = 0; i < brk_len; i++)
		CHECK(brk0[i] == (uint8_t)(i / PG % 251 + 1), "brk byte %zu", i);
}

int main(int argc, char **argv)
{
	test_init();
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 32;
	rate = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
	plain = argc > 3 && strcmp(argv[3], "plain") == 0;
	storm = argc > 3 && strcmp(argv[3], "storm") == 0;
	npages = (mib << 20) / PG;
	heap = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = mmap(NULL, npages * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(heap != MAP_FAILED && gen != MAP_FAILED, "mmap %zu MiB", mib);
	for (size_t p = 0; p < npages; p++) {
		gen[p] = 1;
		fill_page(p, 1);
	}
	for (int k = 0; k < NCHURN; k++) {
		ch[k].len = 16 * PG;
		ch[k].addr = mmap(NULL, ch[k].len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(ch[k].addr != MAP_FAILED, "mmap churn");
		ch[k].seed = (uint32_t)k + 1;
		ch[k].filled = ch[k].len;
		churn_fill(&ch[k], 0, ch[k].len);
	}
	for (int t = 0; t < NTHREADS; t++)
		inflight[t] = -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
	/* only the main thread takes the signals */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_t th[NTHREADS + 1];
	int nth = 0;
	if (rate > 0)
		for (int t = 0; t < NTHREADS; t++)
			pthread_create(&th[nth++], NULL, writer, (void *)(intptr_t)t);
	if (!plain)
		pthread_create(&th[nth++], NULL, churner, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	test_daemon();
	int acked = 0;
	while (test_go()) {
		if (steps > acked) {
			acked = steps;
			printf("STEP %d\n", acked);
		}
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < nth; t++)
		pthread_join(th[t], NULL);
	verify();
	pass();
}
