/*
 * test_ckpt_precopy.c - the pre-copy stream (CK_FLAG_PRECOPY: page rounds
 * before the records) and its restore-side spool (lib/checkpoint/spool.c,
 * image.c): early rounds are kept, a later round overrides an earlier one,
 * the frozen round (after the records) overrides both, and what lies
 * outside the final vmas or belongs to a pid that is gone is dropped; bad
 * early pages and unknown stream flags are refused; the stats JSON with
 * rounds is valid JSON; the spool is applied into a process whose memory
 * is registered with its userfaultfd, as restore.c arms it. CKPT_WRITE_SEED_PRECOPY=path writes the
 * stream as a fuzz seed (tests/fuzz/seeds/ckpt/precopy.bin).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../lib/checkpoint/ckpt_int.h"
#include "vslice/ckpt.h"
#include "vslice/util.h"

#define PG   4096
#define BASE 0x3f0000000000ull /* our own memory, where the "restore" writes */

static void pages(struct ck_writer *w, int32_t pid, uint64_t addr, size_t n, uint8_t byte)
{
	struct vs_error err;
	uint8_t *buf = malloc(n * PG);
	memset(buf, byte, n * PG);
	struct ck_pages pg = {.pid = pid, .addr = addr, .len = n * PG};
	assert_int_equal(ck_write_section(w, CK_SEC_PAGES, &pg, sizeof(pg), buf, n * PG, &err), 0);
	free(buf);
}

/* The header, process and thread records of a one-process, one-thread tree. */
static void one_process(struct ck_writer *w, int pid)
{
	struct vs_error err;
	struct ck_header h = {.root_pid = pid, .nr_procs = 1};
	assert_int_equal(ck_write_section(w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err), 0);
	struct ck_proc *p = calloc(1, sizeof(*p));
	p->pid = pid;
	p->nr_threads = 1;
	assert_int_equal(ck_write_section(w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err), 0);
	free(p);
	struct ck_thread t = {.pid = pid, .tid = pid};
	assert_int_equal(ck_write_section(w, CK_SEC_THREAD, &t, sizeof(t), NULL, 0, &err), 0);
}

static void round_mark(struct ck_writer *w, uint32_t n)
{
	struct vs_error err;
	struct ck_round r = {.round = n};
	assert_int_equal(ck_write_section(w, CK_SEC_ROUND, &r, sizeof(r), NULL, 0, &err), 0);
}

/* A pre-copy stream in a memfd (offset 0): two early rounds, the records
 * (one process, pid 2, one vma [BASE, BASE + 4 pages)), the frozen round. */
static int build(uint32_t flags, uint64_t bad_addr)
{
	int fd = memfd_create("precopy-test", 0);
	assert_true(fd >= 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open_flags(&w, fd, flags, &err), 0);
	round_mark(&w, 0);
	pages(&w, 2, BASE, 4, 0xaa);
	pages(&w, 9, BASE, 1, 0x99);	      /* a pid that is gone by the freeze */
	pages(&w, 2, BASE + 8 * PG, 1, 0x77); /* a vma unmapped since */
	if (bad_addr)
		pages(&w, 2, bad_addr, 1, 0x11);
	round_mark(&w, 1);
	pages(&w, 2, BASE + PG, 1, 0xbb);
	one_process(&w, 2);
	struct ck_vma v = {
	    .pid = 2, .kind = CK_VMA_ANON, .start = BASE, .end = BASE + 4 * PG, .prot = 3};
	assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
	round_mark(&w, 2);
	pages(&w, 2, BASE + 2 * PG, 1, 0xcc);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static pid_t self_of(void *arg, int32_t vpid, int *uffd)
{
	(void)arg;
	*uffd = -1;
	return vpid == 2 ? getpid() : 0;
}

static void test_spool_round_trip(void **state)
{
	(void)state;
	/* "restored" memory: the vma, and the page after the unmapped one */
	uint8_t *m = mmap((void *)BASE, 9 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_true(m == (void *)BASE);
	int fd = build(CK_FLAG_PRECOPY, 0);
	struct vs_error err;
	struct ckpt_image *img = NULL;
	assert_int_equal(ckpt_image_read_fd(fd, &img, &err), 0);
	assert_non_null(img->spool);
	struct ckpt_stats st = {0};
	int r = ck_mem_restore(img, self_of, NULL, &st, &err);
	if (r < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(m[0], 0xaa);	   /* round 0 */
	assert_int_equal(m[PG], 0xbb);	   /* round 1 over round 0 */
	assert_int_equal(m[2 * PG], 0xcc); /* the frozen round over both */
	assert_int_equal(m[4 * PG - 1], 0xaa);
	assert_int_equal(m[8 * PG], 0);	       /* outside every final vma: dropped */
	assert_int_equal(st.pages_written, 4); /* each page once: the frozen round is spooled too */
	ckpt_image_free(img);
	close(fd);
	/* the whole stream verifies, the early rounds checked, not kept */
	fd = build(CK_FLAG_PRECOPY, 0);
	assert_int_equal(ckpt_image_verify_fd(fd, &err), 0);
	/* CKPT_WRITE_SEED_PRECOPY=path: this stream as a fuzz seed */
	const char *seed = getenv("CKPT_WRITE_SEED_PRECOPY");
	if (seed) {
		char *buf = NULL;
		size_t len = 0;
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		assert_int_equal(vs_read_file(path, 0, &buf, &len, &err), 0);
		assert_int_equal(vs_write_file_atomic(seed, buf, len, 0644, &err), 0);
		free(buf);
	}
	close(fd);
	munmap(m, 9 * PG);
}

struct target {
	pid_t hpid;
	int uffd;
};

static pid_t target_of(void *arg, int32_t vpid, int *uffd)
{
	struct target *t = arg;
	*uffd = t->uffd;
	return vpid == 2 ? t->hpid : 0;
}

/* The spool applied into another process whose vma is registered (MISSING)
 * with its userfaultfd, as restore.c arms every restored process: there
 * process_vm_writev (and /proc/PID/mem) cannot fault a missing page in
 * (EFAULT), the spool must fill it through the uffd (ck_mem_fill). */
static void test_spool_through_uffd(void **state)
{
	(void)state;
	uint8_t *m = mmap((void *)BASE, 9 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_true(m == (void *)BASE);
	int fdp[2];
	assert_int_equal(pipe(fdp), 0);
	pid_t k = fork();
	if (k == 0) { /* its own copy of m, never touched: every page missing */
		int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
		if (u < 0 || write(fdp[1], &u, sizeof(u)) != sizeof(u))
			_exit(3);
		for (;;)
			pause();
	}
	int cu = -1;
	assert_int_equal(read(fdp[0], &cu, sizeof(cu)), sizeof(cu));
	close(fdp[0]);
	close(fdp[1]);
	int pidfd = (int)syscall(SYS_pidfd_open, k, 0);
	int u = (int)syscall(SYS_pidfd_getfd, pidfd, cu, 0);
	close(pidfd);
	assert_true(u >= 0);
	struct uffdio_api api = {.api = UFFD_API};
	assert_int_equal(ioctl(u, UFFDIO_API, &api), 0);
	struct uffdio_register reg = {.range = {BASE, 9 * PG},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	assert_int_equal(ioctl(u, UFFDIO_REGISTER, &reg), 0);
	int fd = build(CK_FLAG_PRECOPY, 0);
	struct vs_error err;
	struct ckpt_image *img = NULL;
	assert_int_equal(ckpt_image_read_fd(fd, &img, &err), 0);
	struct target t = {.hpid = k, .uffd = u};
	struct ckpt_stats st = {0};
	int r = ck_mem_restore(img, target_of, &t, &st, &err);
	ckpt_image_free(img);
	close(fd);
	uint8_t got[4 * PG];
	struct iovec l = {got, sizeof(got)}, rm = {m, sizeof(got)};
	ssize_t n = r < 0 ? -1 : process_vm_readv(k, &l, 1, &rm, 1, 0);
	close(u);
	kill(k, SIGKILL);
	waitpid(k, NULL, 0);
	munmap(m, 9 * PG);
	if (r < 0)
		fail_msg("restore through a userfaultfd: %s", err.msg);
	assert_int_equal(n, (ssize_t)sizeof(got));
	assert_int_equal(got[0], 0xaa);
	assert_int_equal(got[PG], 0xbb);
	assert_int_equal(got[2 * PG], 0xcc);
	assert_int_equal(got[4 * PG - 1], 0xaa);
	assert_int_equal(st.pages_written, 4);
	/* the spool's writes count in the restore's phase timers */
	assert_true(st.mem_write_ns > 0);
	assert_true(st.mem_read_ns > 0);
}

#define CHUNK (2ull << 20) /* the spool's unit of address (spool.c) */
#define HUGE  (1ull << 40) /* a reservation far larger than what it holds */

/* The spool's own layout (2 MiB chunks per pid and address, a bitmap of
 * the pages written): a run across a chunk boundary, a page never sent
 * between two sent ones (stays missing, not a present page of zeros),
 * another pid's page at the same address (not leaked), a later round over
 * part of an earlier run, and a 1 TiB vma holding two pages at its ends. */
static void test_spool_chunks(void **state)
{
	(void)state;
	uint64_t a = BASE + CHUNK - 4 * PG, h = BASE + 4 * CHUNK;
	uint8_t *m = mmap((void *)BASE, 4 * CHUNK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	uint8_t *hm =
	    mmap((void *)h, HUGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	assert_true(m == (void *)BASE && hm == (void *)h);
	int fd = memfd_create("precopy-chunks", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open_flags(&w, fd, CK_FLAG_PRECOPY, &err), 0);
	round_mark(&w, 0);
	pages(&w, 2, a, 1, 0x22);
	pages(&w, 2, a + 2 * PG, 4, 0x11); /* [a + 2, a + 6): across the chunk boundary */
	pages(&w, 3, a + PG, 1, 0x33);	   /* pid 3 at the page pid 2 never sent */
	pages(&w, 2, h, 1, 0x45);
	pages(&w, 2, h + HUGE - PG, 1, 0x44);
	round_mark(&w, 1);
	pages(&w, 2, BASE + CHUNK, 1, 0x55);
	one_process(&w, 2);
	struct ck_vma v = {.pid = 2, .kind = CK_VMA_ANON, .start = a, .end = a + 8 * PG, .prot = 3};
	assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
	v.start = h;
	v.end = h + HUGE;
	assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
	round_mark(&w, 2);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	lseek(fd, 0, SEEK_SET);
	struct ckpt_image *img = NULL;
	assert_int_equal(ckpt_image_read_fd(fd, &img, &err), 0);
	struct ckpt_stats st = {0};
	int r = ck_mem_restore(img, self_of, NULL, &st, &err);
	ckpt_image_free(img);
	close(fd);
	if (r < 0)
		fail_msg("%s", err.msg);
	unsigned char res = 1;
	assert_int_equal(mincore(m + (a - BASE) + PG, PG, &res), 0);
	assert_int_equal(res & 1, 0); /* never sent by pid 2: not written at all */
	const uint8_t *x = m + (a - BASE);
	assert_int_equal(x[0], 0x22);
	assert_int_equal(x[PG], 0);
	assert_int_equal(x[2 * PG], 0x11);
	assert_int_equal(x[4 * PG - 1], 0x11);
	assert_int_equal(x[4 * PG], 0x55); /* round 1 over round 0, first page of the next chunk */
	assert_int_equal(x[5 * PG], 0x11);
	assert_int_equal(x[6 * PG], 0);
	assert_int_equal(hm[0], 0x45);
	assert_int_equal(hm[HUGE - 1], 0x44);
	assert_int_equal(st.pages_written, 7);
	munmap(m, 4 * CHUNK);
	munmap(hm, HUGE);
}

static long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* The restore forks the slice (slice_start) while it holds the spool, in
 * the downtime: a fork must not copy the spool's page tables (MADV_DONTFORK;
 * ~13 ms per fork of 512 MiB). A child sees none of the 16 MiB spooled. */
static void test_spool_not_inherited(void **state)
{
	(void)state;
	int fd = memfd_create("precopy-fork", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open_flags(&w, fd, CK_FLAG_PRECOPY, &err), 0);
	round_mark(&w, 0);
	pages(&w, 2, BASE, 4096, 0x5a);
	one_process(&w, 2);
	round_mark(&w, 1);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	lseek(fd, 0, SEEK_SET);
	struct ckpt_image *img = NULL;
	long before = rss_anon_kib();
	assert_int_equal(ckpt_image_read_fd(fd, &img, &err), 0);
	long parent = rss_anon_kib();
	assert_true(parent - before >= 15 * 1024); /* the spool is resident here */
	int fdp[2];
	assert_int_equal(pipe(fdp), 0);
	pid_t k = fork();
	if (k == 0) {
		long c = rss_anon_kib();
		_exit(write(fdp[1], &c, sizeof(c)) == sizeof(c) ? 0 : 1);
	}
	long child = -1;
	assert_int_equal(read(fdp[0], &child, sizeof(child)), sizeof(child));
	waitpid(k, NULL, 0);
	close(fdp[0]);
	close(fdp[1]);
	ckpt_image_free(img);
	close(fd);
	assert_true(child >= 0);
	assert_true(child < parent - 12 * 1024);
}

/* A large spool is freed beside the rest of the restore (a detached
 * thread, ck_spool_free): its memory does go back. 96 MiB spooled, the
 * spool freed, RssAnon back within 10 s. */
static void test_spool_freed(void **state)
{
	(void)state;
	struct vs_error err;
	struct ck_spool *sp = NULL;
	long before = rss_anon_kib();
	assert_int_equal(ck_spool_new(&sp, &err), 0);
	uint8_t *buf = malloc(CHUNK);
	memset(buf, 0x6b, CHUNK);
	for (uint64_t i = 0; i < 48; i++)
		assert_int_equal(ck_spool_put(sp, 2, BASE + i * CHUNK, buf, CHUNK, &err), 0);
	free(buf);
	assert_true(rss_anon_kib() - before >= 90 * 1024);
	ck_spool_free(sp);
	long now = rss_anon_kib();
	for (int i = 0; i < 1000 && now - before >= 32 * 1024; i++) {
		usleep(10000);
		now = rss_anon_kib();
	}
	assert_true(now - before < 32 * 1024);
}

static void test_refused(void **state)
{
	(void)state;
	struct vs_error err;
	struct ckpt_image *img = NULL;
	/* a flag this reader does not know */
	int fd = build(CK_FLAG_PRECOPY | 2, 0);
	assert_true(ckpt_image_read_fd(fd, &img, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown stream flags"));
	close(fd);
	/* early pages must be page-aligned and below 2^47 */
	fd = build(CK_FLAG_PRECOPY, BASE + 12);
	assert_true(ckpt_image_read_fd(fd, &img, &err) < 0);
	assert_non_null(strstr(err.msg, "bad pre-copy pages record"));
	close(fd);
	fd = build(CK_FLAG_PRECOPY, 1ull << 47);
	assert_true(ckpt_image_read_fd(fd, &img, &err) < 0);
	close(fd);
	/* rounds before the records without the flag: not a version-3 stream */
	fd = build(0, 0);
	assert_true(ckpt_image_read_fd(fd, &img, &err) < 0);
	assert_non_null(strstr(err.msg, "first section is not the header"));
	close(fd);
}

static void test_stats_json_rounds(void **state)
{
	(void)state;
	struct ckpt_stats st = {.frozen_ns = 5000000, .pages_written = 12, .nr_rounds = 2};
	st.rounds[0] = (struct ckpt_round_stats){.pages = 100, .bytes = 409600, .ns = 1000};
	st.rounds[1] = (struct ckpt_round_stats){.pages = 7, .bytes = 28672, .dirty_bps = 99};
	char path[] = "/tmp/vslice-unit-precopy-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct vs_error err;
	assert_int_equal(ckpt_stats_write_json(path, &st, &err), 0);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	unlink(path);
	if (!j)
		fail_msg("not JSON: %s", je.text);
	assert_int_equal(json_integer_value(json_object_get(j, "precopy_rounds")), 2);
	json_t *rounds = json_object_get(j, "rounds");
	assert_int_equal(json_array_size(rounds), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rounds, 1), "pages")),
			 7);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(rounds, 1), "dirty_bytes_per_s")),
	    99);
	json_t *fin = json_object_get(j, "final_round");
	assert_int_equal(json_integer_value(json_object_get(fin, "pages")), 12);
	assert_int_equal(json_integer_value(json_object_get(j, "pages_written")), 12);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spool_round_trip),  cmocka_unit_test(test_spool_through_uffd),
	    cmocka_unit_test(test_spool_chunks),      cmocka_unit_test(test_spool_not_inherited),
	    cmocka_unit_test(test_spool_freed),	      cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_stats_json_rounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
