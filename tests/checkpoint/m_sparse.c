/* m_sparse: the page rounds' batching and their restore paths.
 *  - a 64 MiB mapping with every third page written (~5500 one-page runs:
 *    many process_vm_readv batches of runs, each page restored alone),
 *    the pages in between never touched (must read back as zeros);
 *  - a dense 9 MiB run (more than one 4 MiB piece);
 *  - 5 MiB made PROT_NONE after writing it (read through /proc/PID/mem,
 *    in pieces; must come back PROT_NONE);
 *  - a private file mapping with some pages written (copied-on-write:
 *    process_vm_writev, not the userfaultfd of anonymous memory). */
#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#include "zdtm.h"

#define SPARSE (64ul << 20)
#define DENSE  (9ul << 20)
#define HIDDEN (5ul << 20)
#define PG     4096ul

static uint64_t word(uint64_t tag, size_t i)
{
	return (tag << 48) ^ (i * 0x9e3779b97f4a7c15ull);
}

static sigjmp_buf jb;
static void on_segv(int s)
{
	(void)s;
	siglongjmp(jb, 1);
}

int main(void)
{
	test_init();
	uint64_t *sp = mmap(NULL, SPARSE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t *dn =
	    mmap(NULL, DENSE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *hd =
	    mmap(NULL, HIDDEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(sp != MAP_FAILED && dn != MAP_FAILED && hd != MAP_FAILED, "mmap");
	for (size_t p = 0; p < SPARSE / PG; p += 3)
		for (size_t k = 0; k < PG / 8; k += 64)
			sp[p * PG / 8 + k] = word(1, p * PG / 8 + k);
	for (size_t i = 0; i < DENSE / 8; i++)
		dn[i] = word(2, i);
	for (size_t i = 0; i < HIDDEN / 8; i++)
		hd[i] = word(3, i);
	CHECK(mprotect(hd, HIDDEN, PROT_NONE) == 0, "mprotect none");
	char path[128];
	test_tmp_name(path, sizeof(path), "ckpt-m-sparse");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0, "create %s", path);
	static char fill[8 * PG];
	memset(fill, 'f', sizeof(fill));
	CHECK(write(fd, fill, sizeof(fill)) == (ssize_t)sizeof(fill), "write file");
	char *fm = mmap(NULL, sizeof(fill), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(fm != MAP_FAILED, "mmap file");
	volatile char sink = 0;
	for (size_t p = 0; p < 8; p++)
		sink += fm[p * PG]; /* present, not copied */
	fm[1 * PG] = 'x';
	fm[5 * PG + 7] = 'y';
	(void)sink;
	test_daemon();
	test_waitsig();
	for (size_t p = 0; p < SPARSE / PG; p++)
		for (size_t k = 0; k < PG / 8; k += 64) {
			size_t i = p * PG / 8 + k;
			uint64_t want = p % 3 == 0 ? word(1, i) : 0;
			CHECK(sp[i] == want, "sparse page %zu word %zu: %#llx", p, k,
			      (unsigned long long)sp[i]);
		}
	for (size_t i = 0; i < DENSE / 8; i++)
		CHECK(dn[i] == word(2, i), "dense word %zu", i);
	/* still PROT_NONE: a read faults */
	struct sigaction sa = {.sa_handler = on_segv};
	sigaction(SIGSEGV, &sa, NULL);
	volatile uint64_t v = 0;
	if (sigsetjmp(jb, 1) == 0) {
		v = hd[0];
		fail("PROT_NONE region readable after restore (%#llx)", (unsigned long long)v);
	}
	CHECK(mprotect(hd, HIDDEN, PROT_READ) == 0, "mprotect read");
	for (size_t i = 0; i < HIDDEN / 8; i++)
		CHECK(hd[i] == word(3, i), "hidden word %zu", i);
	for (size_t p = 0; p < 8; p++)
		for (size_t k = 0; k < PG; k += 7) {
			char want = p == 1 && k == 0 ? 'x' : p == 5 && k == 7 ? 'y' : 'f';
			CHECK(fm[p * PG + k] == want, "file page %zu byte %zu: %c", p, k,
			      fm[p * PG + k]);
		}
	unlink(path);
	pass();
}
