/* pc_steps: what a pre-copy must get right between its rounds, step by
 * step (the harness's -P sends SIGUSR2 after each running round and waits
 * for "STEP n"; without it nothing changes and the first state is
 * checked):
 *   step 1: MADV_DONTNEED of pages sent in round 0 (not reported as
 *           written on 6.18), pages rewritten, a region unmapped and
 *           mapped again at the same address but only partly filled, a
 *           region grown with mremap, a new mapping, brk grown, and a
 *           second thread rewriting pages;
 *   step 2: MADV_DONTNEED of pages sent in round 1.
 * After SIGTERM every byte must be what the last step left. */
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include "zdtm.h"

#define PG 4096

static uint8_t *A, *B, *C, *D, *brk0;
static size_t c_len = 16 * PG, b_filled = 32 * PG;
static uint32_t a_gen[64];
static int step;

static uint8_t pat(uint32_t seed, size_t i)
{
	return (uint8_t)((seed * 2654435761u + i * 40503u) >> 7) | 1;
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(seed, i);
}

static void a_write(size_t pg, uint32_t g)
{
	fill(A + pg * PG, PG, (uint32_t)pg * 1000 + g);
	a_gen[pg] = g;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int thread_go, thread_done;

static void *helper(void *arg)
{
	pthread_mutex_lock(&mu);
	while (!thread_go)
		pthread_cond_wait(&cv, &mu);
	for (size_t pg = 56; pg < 64; pg++)
		a_write(pg, 3);
	thread_done = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void do_step1(void)
{
	madvise(A, 16 * PG, MADV_DONTNEED);
	for (size_t pg = 0; pg < 16; pg++)
		a_gen[pg] = 0;
	for (size_t pg = 32; pg < 48; pg++)
		a_write(pg, 2);
	munmap(B, 32 * PG);
	uint8_t *b = mmap(B, 32 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(b == B, "map B again at %p", (void *)B);
	fill(B, 8 * PG, 77);
	b_filled = 8 * PG;
	uint8_t *c = mremap(C, c_len, 48 * PG, MREMAP_MAYMOVE);
	CHECK(c != MAP_FAILED, "mremap C");
	C = c;
	fill(C + c_len, 48 * PG - c_len, 99);
	c_len = 48 * PG;
	D = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(D != MAP_FAILED, "mmap D");
	fill(D, 8 * PG, 55);
	brk0 = sbrk(4 * PG);
	CHECK(brk0 != (void *)-1, "sbrk");
	fill(brk0, 4 * PG, 44);
	pthread_mutex_lock(&mu);
	thread_go = 1;
	pthread_cond_broadcast(&cv);
	while (!thread_done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void do_step2(void)
{
	madvise(A + 40 * PG, 4 * PG, MADV_DONTNEED);
	for (size_t pg = 40; pg < 44; pg++)
		a_gen[pg] = 0;
	madvise(B, 4 * PG, MADV_DONTNEED);
}

static void check_zero(const uint8_t *p, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++)
		CHECK(p[i] == 0, "%s byte %zu: %#x, want 0", what, i, p[i]);
}

static void check_fill(const uint8_t *p, size_t len, uint32_t seed, const char *what)
{
	for (size_t i = 0; i < len; i++)
		CHECK(p[i] == pat(seed, i), "%s byte %zu: %#x, want %#x", what, i, p[i],
		      pat(seed, i));
}

static volatile sig_atomic_t usr2;
static void on_usr2(int s)
{
	(void)s;
	usr2++;
}

int main(void)
{
	test_init();
	A = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	B = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	C = mmap(NULL, c_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(A != MAP_FAILED && B != MAP_FAILED && C != MAP_FAILED, "mmap");
	for (size_t pg = 0; pg < 64; pg++)
		a_write(pg, 1);
	fill(B, 32 * PG, 66);
	fill(C, c_len, 88);
	pthread_t th;
	pthread_create(&th, NULL, helper, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	test_daemon();
	while (test_go()) {
		if (usr2 > step) {
			step++;
			if (step == 1)
				do_step1();
			else if (step == 2)
				do_step2();
			printf("STEP %d\n", step);
		}
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	for (size_t pg = 0; pg < 64; pg++) {
		char what[32];
		snprintf(what, sizeof(what), "A page %zu", pg);
		if (a_gen[pg])
			check_fill(A + pg * PG, PG, (uint32_t)pg * 1000 + a_gen[pg], what);
		else
			check_zero(A + pg * PG, PG, what);
	}
	if (step >= 1) {
		if (step >= 2)
			check_zero(B, 4 * PG, "B dropped");
		for (size_t i = step >= 2 ? 4 * PG : 0; i < b_filled; i++)
			CHECK(B[i] == pat(77, i), "B new byte %zu", i);
		check_zero(B + b_filled, 32 * PG - b_filled, "B after re-map");
		check_fill(C, 16 * PG, 88, "C old part");
		check_fill(C + 16 * PG, 32 * PG, 99, "C grown part");
		check_fill(D, 8 * PG, 55, "D");
		check_fill(brk0, 4 * PG, 44, "brk");
	} else {
		check_fill(B, 32 * PG, 66, "B");
		check_fill(C, c_len, 88, "C");
	}
	printf("steps %d\n", step);
	pass();
}
