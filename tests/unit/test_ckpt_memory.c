/*
 * test_ckpt_memory.c - the page rounds of lib/checkpoint/memory.c against
 * a real child process: how runs are batched and split into sections,
 * what a run that is not there any more does to the dump, and page rounds
 * restored through the process's userfaultfd.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/checkpoint/ckpt_int.h"
#include "vslice/ckpt.h"
#include "vslice/util.h"

#define PG 4096ul

/* A child that shares our memory's content (fork), runs prep() on its
 * side and waits to be killed. */
static pid_t child_after(void (*prep)(void *), void *arg)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		if (prep)
			prep(arg);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char x;
	assert_int_equal(read(p[0], &x, 1), 1);
	close(p[0]);
	close(p[1]);
	return c;
}

static void reap(pid_t c)
{
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
}

/* Sections of a stream written by ck_writer (after its 16-byte head). */
struct sec {
	uint32_t type;
	const uint8_t *p;
	uint64_t len;
};

static size_t sections(const uint8_t *buf, size_t len, struct sec *out, size_t max)
{
	size_t n = 0, off = 16;
	while (off < len) {
		assert_true(n < max);
		uint64_t l;
		memcpy(&out[n].type, buf + off, 4);
		memcpy(&l, buf + off + 8, 8);
		assert_true(off + 16 + l + 4 <= len);
		uint32_t crc;
		memcpy(&crc, buf + off + 16 + l, 4);
		assert_int_equal(ck_crc32c(0, buf + off, 16 + l), crc);
		out[n].p = buf + off + 16;
		out[n].len = l;
		n++;
		off += 16 + l + 4;
	}
	return n;
}

static uint8_t *stream_of(int fd, size_t *len)
{
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	*len = (size_t)size;
	return buf;
}

/* 700 one-page runs (more than one process_vm_readv batch) and a 9 MiB
 * run (more than one piece) come out as PAGES sections that cover exactly
 * the present pages, each byte as in memory. */
static void test_batches_and_pieces(void **state)
{
	size_t sparse = 1400, dense = (9ul << 20) / PG;
	uint8_t *sp =
	    mmap(NULL, sparse * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dn =
	    mmap(NULL, dense * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(sp != MAP_FAILED && dn != MAP_FAILED);
	for (size_t p = 0; p < sparse; p += 2)
		memset(sp + p * PG, (int)(p % 251) + 1, PG);
	for (size_t i = 0; i < dense * PG; i++)
		dn[i] = (uint8_t)(i * 13 + i / PG);
	pid_t c = child_after(NULL, NULL);
	struct ck_memset ms = {0};
	struct ck_memrange r1 = {.hpid = c,
				 .vpid = 7,
				 .start = (uintptr_t)sp,
				 .end = (uintptr_t)sp + sparse * PG,
				 .kind = CK_VMA_ANON,
				 .readable = true};
	struct ck_memrange r2 = r1;
	r2.start = (uintptr_t)dn;
	r2.end = (uintptr_t)dn + dense * PG;
	ck_memset_add(&ms, &r1);
	ck_memset_add(&ms, &r2);
	int fd = memfd_create("ckpt-mem", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ckpt_stats st = {0};
	int rc = ck_mem_write_round(&w, &ms, 0, ck_pred_present, NULL, &st, &err);
	if (rc < 0)
		fail_msg("round: %s", err.msg);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	reap(c);
	assert_int_equal(st.pages_written, sparse / 2 + dense);
	size_t len;
	uint8_t *buf = stream_of(fd, &len);
	close(fd);
	struct sec *s = calloc(4096, sizeof(*s));
	size_t n = sections(buf, len, s, 4096);
	assert_int_equal(s[0].type, CK_SEC_ROUND);
	assert_int_equal(s[n - 1].type, CK_SEC_END);
	size_t sparse_seen = 0, dense_bytes = 0, pieces = 0;
	for (size_t i = 1; i + 1 < n; i++) {
		assert_int_equal(s[i].type, CK_SEC_PAGES);
		struct ck_pages pg;
		memcpy(&pg, s[i].p, sizeof(pg));
		assert_int_equal(pg.pid, 7);
		assert_int_equal(s[i].len, sizeof(pg) + pg.len);
		assert_true(pg.len <= (4u << 20));
		assert_memory_equal(s[i].p + sizeof(pg), (void *)(uintptr_t)pg.addr, pg.len);
		if (pg.addr < (uintptr_t)sp + sparse * PG && pg.addr >= (uintptr_t)sp) {
			assert_int_equal(pg.len, PG);
			assert_int_equal((pg.addr - (uintptr_t)sp) / PG % 2, 0);
			sparse_seen++;
		} else {
			dense_bytes += pg.len;
			pieces++;
		}
	}
	assert_int_equal(sparse_seen, sparse / 2);
	assert_int_equal(dense_bytes, dense * PG);
	assert_true(pieces >= 3);
	free(s);
	free(buf);
	ck_memset_free(&ms);
	munmap(sp, sparse * PG);
	munmap(dn, dense * PG);
}

/* The reading end of a pipe, drained into memory by a thread. */
struct drain {
	int fd;
	uint8_t *buf;
	size_t len, cap;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	for (;;) {
		if (d->len == d->cap) {
			d->cap = d->cap ? 2 * d->cap : (1u << 20);
			d->buf = realloc(d->buf, d->cap);
		}
		ssize_t n = read(d->fd, d->buf + d->len, d->cap - d->len);
		if (n <= 0)
			return NULL;
		d->len += (size_t)n;
	}
}

/* A round into a pipe: the pages go in as references (vmsplice, where the
 * kernel has transparent huge pages) while the dump reuses its four
 * buffers for the next pieces, so the pipe holds pieces the dump has
 * moved past - 40 MiB of distinct pages, more than the pipe and the
 * buffers hold together. Every section must still carry the bytes of its
 * pages as they were (a buffer rewritten under the pipe would show here). */
static void test_round_into_pipe(void **state)
{
	size_t npg = (40ul << 20) / PG;
	uint64_t *m =
	    mmap(NULL, npg * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	for (size_t i = 0; i < npg * PG / 8; i++)
		m[i] = i * 0x9e3779b97f4a7c15ull;
	pid_t c = child_after(NULL, NULL);
	struct ck_memset ms = {0};
	struct ck_memrange r = {.hpid = c,
				.vpid = 7,
				.start = (uintptr_t)m,
				.end = (uintptr_t)m + npg * PG,
				.kind = CK_VMA_ANON,
				.readable = true};
	ck_memset_add(&ms, &r);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct drain d = {.fd = p[0]};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, drain_main, &d), 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, p[1], &err), 0);
	struct ckpt_stats st = {0};
	int rc = ck_mem_write_round(&w, &ms, 0, ck_pred_present, NULL, &st, &err);
	if (rc < 0)
		fail_msg("round: %s", err.msg);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	reap(c);
	assert_int_equal(st.pages_written, npg);
	struct sec *s = calloc(4096, sizeof(*s));
	size_t n = sections(d.buf, d.len, s, 4096); /* every CRC checked */
	assert_int_equal(s[0].type, CK_SEC_ROUND);
	assert_int_equal(s[n - 1].type, CK_SEC_END);
	size_t bytes = 0;
	for (size_t i = 1; i + 1 < n; i++) {
		struct ck_pages pg;
		memcpy(&pg, s[i].p, sizeof(pg));
		assert_int_equal(s[i].len, sizeof(pg) + pg.len);
		if (memcmp(s[i].p + sizeof(pg), (void *)(uintptr_t)pg.addr, pg.len) != 0)
			fail_msg("section %zu (pages at +%#" PRIx64 "): bytes differ from memory",
				 i, pg.addr - (uintptr_t)m);
		bytes += pg.len;
	}
	assert_int_equal(bytes, npg * PG);
	free(s);
	free(d.buf);
	ck_memset_free(&ms);
	munmap(m, npg * PG);
}

/* Pages only ever read map the kernel's shared zero page: a round leaves
 * them out (the restored process reads zeros from a page never filled),
 * while a page written - even with zeros - is dumped. Needs the PFNs in
 * pagemap (CAP_SYS_ADMIN): skipped without. */
static void test_zero_pages_left_out(void **state)
{
	size_t npg = 64;
	uint8_t *m =
	    mmap(NULL, npg * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	volatile uint8_t sink = 0;
	for (size_t p = 0; p < npg; p++) {
		if (p % 4 == 0)
			memset(m + p * PG, 0x5a, PG); /* written */
		else if (p % 4 == 1)
			memset(m + p * PG, 0, PG); /* written with zeros */
		else if (p % 4 == 2)
			sink += m[p * PG]; /* read only: the zero page */
					   /* p % 4 == 3: never touched */
	}
	(void)sink;
	int pm = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	assert_int_equal(pread(pm, &e, 8, (off_t)((uintptr_t)(m + 2 * PG) / PG * 8)), 8);
	close(pm);
	if (!(e & ((1ull << 55) - 1))) {
		munmap(m, npg * PG);
		skip(); /* no PFNs in pagemap: not root */
	}
	pid_t c = child_after(NULL, NULL);
	struct ck_memset ms = {0};
	struct ck_memrange r = {.hpid = c,
				.vpid = 7,
				.start = (uintptr_t)m,
				.end = (uintptr_t)m + npg * PG,
				.kind = CK_VMA_ANON,
				.readable = true};
	ck_memset_add(&ms, &r);
	int fd = memfd_create("ckpt-zero", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ckpt_stats st = {0};
	int rc = ck_mem_write_round(&w, &ms, 0, ck_pred_present, NULL, &st, &err);
	if (rc < 0)
		fail_msg("round: %s", err.msg);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	reap(c);
	assert_int_equal(st.pages_written, npg / 2);
	size_t len;
	uint8_t *buf = stream_of(fd, &len);
	close(fd);
	struct sec s[256];
	size_t n = sections(buf, len, s, 256);
	for (size_t i = 1; i + 1 < n; i++) {
		struct ck_pages pg;
		memcpy(&pg, s[i].p, sizeof(pg));
		for (uint64_t a = pg.addr; a < pg.addr + pg.len; a += PG)
			assert_true((a - (uintptr_t)m) / PG % 4 < 2);
	}
	free(buf);
	ck_memset_free(&ms);
	munmap(m, npg * PG);
}

static void unmap_middle(void *arg)
{
	munmap((uint8_t *)arg + PG, PG);
}

/* A range whose middle page went away between the vma pass and the page
 * round (the dump's /proc view is stale): process_vm_readv stops short;
 * the round fails naming the process and the address that is missing. */
static void test_range_gone_names_address(void **state)
{
	uint8_t *m = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	memset(m, 'a', 3 * PG);
	pid_t c = child_after(unmap_middle, m);
	struct ck_memset ms = {0};
	struct ck_memrange r = {.hpid = c,
				.vpid = 7,
				.start = (uintptr_t)m,
				.end = (uintptr_t)m + 3 * PG,
				.kind = CK_VMA_ANON,
				.all_pages = true,
				.readable = true};
	ck_memset_add(&ms, &r);
	int fd = memfd_create("ckpt-mem", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ckpt_stats st = {0};
	int rc = ck_mem_write_round(&w, &ms, 0, ck_pred_present, NULL, &st, &err);
	ck_writer_free(&w);
	close(fd);
	reap(c);
	assert_true(rc < 0);
	char want[96];
	snprintf(want, sizeof(want), "pid 7: read memory at %#lx", (unsigned long)(m + PG));
	if (!strstr(err.msg, want))
		fail_msg("error \"%s\" does not name %s", err.msg, want);
	ck_memset_free(&ms);
	munmap(m, 3 * PG);
}

/* --- restore: rounds through a userfaultfd ------------------------------ */

struct uffd_child {
	uint8_t *mem; /* NPG pages, never touched by the child */
	int fd;	      /* its userfaultfd */
};
#define NPG 8

static void make_uffd(void *arg)
{
	struct uffd_child *c = arg;
	c->fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (c->fd < 0)
		_exit(3);
}

struct target {
	pid_t hpid;
	int uffd;
};

static pid_t hpid_of_target(void *arg, int32_t vpid, int *uffd)
{
	struct target *t = arg;
	*uffd = t->uffd;
	return vpid == 2 ? t->hpid : 0;
}

/* A stream: records of one process with one anonymous vma (NPG pages at
 * addr), round 0 = pages 0..5 'A', round 1 = pages 2..7 'B'. */
static int rounds_stream(uint64_t addr)
{
	int fd = memfd_create("ckpt-rounds", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ck_header h = {.root_pid = 2, .nr_procs = 1};
	assert_int_equal(ck_write_section(&w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err), 0);
	struct ck_proc *p = calloc(1, sizeof(*p));
	p->pid = 2;
	p->nr_threads = 1;
	assert_int_equal(ck_write_section(&w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err), 0);
	free(p);
	struct ck_vma v = {
	    .pid = 2, .kind = CK_VMA_ANON, .start = addr, .end = addr + NPG * PG, .prot = 3};
	assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
	uint8_t *data = malloc(6 * PG);
	for (uint32_t round = 0; round < 2; round++) {
		struct ck_round rd = {.round = round};
		assert_int_equal(ck_write_section(&w, CK_SEC_ROUND, &rd, sizeof(rd), NULL, 0, &err),
				 0);
		memset(data, round ? 'B' : 'A', 6 * PG);
		struct ck_pages pg = {.pid = 2, .addr = addr + (round ? 2 : 0) * PG, .len = 6 * PG};
		assert_int_equal(
		    ck_write_section(&w, CK_SEC_PAGES, &pg, sizeof(pg), data, 6 * PG, &err), 0);
	}
	free(data);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* Page rounds restored into a process whose memory is registered with its
 * userfaultfd (as restore.c arms it): round 0 fills missing pages with
 * UFFDIO_COPY, round 1 overrides pages round 0 filled (EEXIST: written
 * with process_vm_writev) and fills the rest; the parsed restore and the
 * streamed one (two threads) from a file and from a pipe. */
static void test_rounds_through_uffd(void **state)
{
	static const char *how[] = {"parsed", "file", "pipe"};
	for (int streamed = 0; streamed < 3; streamed++) {
		struct uffd_child c = {0};
		c.mem = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
		assert_true(c.mem != MAP_FAILED);
		int fdp[2];
		assert_int_equal(pipe(fdp), 0);
		pid_t k = fork();
		if (k == 0) {
			make_uffd(&c);
			if (write(fdp[1], &c.fd, sizeof(c.fd)) != sizeof(c.fd))
				_exit(1);
			for (;;)
				pause();
		}
		assert_int_equal(read(fdp[0], &c.fd, sizeof(c.fd)), sizeof(c.fd));
		close(fdp[0]);
		close(fdp[1]);
		int pidfd = (int)syscall(SYS_pidfd_open, k, 0);
		int u = (int)syscall(SYS_pidfd_getfd, pidfd, c.fd, 0);
		close(pidfd);
		assert_true(u >= 0);
		struct uffdio_api api = {.api = UFFD_API};
		assert_int_equal(ioctl(u, UFFDIO_API, &api), 0);
		struct uffdio_register reg = {.range = {(uintptr_t)c.mem, NPG * PG},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};
		assert_int_equal(ioctl(u, UFFDIO_REGISTER, &reg), 0);
		int sfd = rounds_stream((uintptr_t)c.mem);
		struct vs_error err;
		struct ckpt_image *img = NULL;
		uint8_t *buf = NULL;
		pid_t feeder = -1;
		if (streamed == 2) { /* the same bytes through a pipe */
			size_t len;
			buf = stream_of(sfd, &len);
			close(sfd);
			int pp[2];
			assert_int_equal(pipe(pp), 0);
			feeder = fork();
			if (feeder == 0) {
				close(pp[0]);
				_exit(vs_write_all(pp[1], buf, len) < 0);
			}
			close(pp[1]);
			sfd = pp[0];
		}
		if (streamed) {
			assert_int_equal(ckpt_image_read_fd(sfd, &img, &err), 0);
		} else {
			size_t len;
			buf = stream_of(sfd, &len);
			assert_int_equal(ckpt_image_parse(buf, len, &img, &err), 0);
		}
		struct target t = {.hpid = k, .uffd = u};
		struct ckpt_stats st = {0};
		int r = ck_mem_restore(img, hpid_of_target, &t, &st, &err);
		if (r < 0)
			fail_msg("restore (%s): %s", how[streamed], err.msg);
		ckpt_image_free(img);
		free(buf);
		close(sfd);
		uint8_t got[NPG * PG];
		struct iovec l = {got, sizeof(got)}, rm = {c.mem, sizeof(got)};
		assert_int_equal(process_vm_readv(k, &l, 1, &rm, 1, 0), (ssize_t)sizeof(got));
		for (size_t i = 0; i < NPG * PG; i++)
			if (got[i] != (i < 2 * PG ? 'A' : 'B'))
				fail_msg("%s: byte %zu = %c", how[streamed], i, got[i]);
		close(u);
		reap(k);
		if (feeder > 0)
			waitpid(feeder, NULL, 0);
		munmap(c.mem, NPG * PG);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batches_and_pieces),
	    cmocka_unit_test(test_round_into_pipe),
	    cmocka_unit_test(test_zero_pages_left_out),
	    cmocka_unit_test(test_range_gone_names_address),
	    cmocka_unit_test(test_rounds_through_uffd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
