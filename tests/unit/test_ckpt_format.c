/*
 * test_ckpt_format.c - the checkpoint stream (lib/checkpoint/image.c):
 * CRC32C test vector, a written stream parses back to the same records,
 * and every corruption a transfer can cause is caught: any flipped byte,
 * any truncation, a dropped or repeated section, bad magic/version, and
 * records that point at nothing.
 * CKPT_WRITE_SEED=path writes the small valid stream used as a fuzz seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/checkpoint/ckpt_int.h"
#include "vslice/ckpt.h"
#include "vslice/util.h"

/* Build a small but complete stream in memory; *len gets its size. */
static uint8_t *build(size_t *len, bool bad_fd_ref, bool pages_outside)
{
	int fd = memfd_create("ckpt-test", 0);
	assert_true(fd >= 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ck_header h = {.root_pid = 2, .nr_procs = 1, .mono_ns = 123456789};
	snprintf(h.name, sizeof(h.name), "c1");
	assert_int_equal(ck_write_section(&w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err), 0);
	const char spec[] = "{\"name\":\"c1\"}";
	assert_int_equal(ck_write_section(&w, CK_SEC_EXTRA, spec, sizeof(spec), NULL, 0, &err), 0);
	struct ck_proc *p = calloc(1, sizeof(*p));
	p->pid = 2;
	p->ppid = 0; /* a child of PID 1 */
	p->nr_threads = 1;
	p->umask = 022;
	snprintf(p->cwd, sizeof(p->cwd), "/tmp");
	assert_int_equal(ck_write_section(&w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err), 0);
	free(p);
	struct ck_thread t = {.pid = 2, .tid = 2, .xstate_len = 16};
	t.regs[R_RIP] = 0x401000;
	uint8_t xs[16] = {1, 2, 3};
	assert_int_equal(ck_write_section(&w, CK_SEC_THREAD, &t, sizeof(t), xs, sizeof(xs), &err),
			 0);
	struct ck_vma v = {
	    .pid = 2, .kind = CK_VMA_ANON, .start = 0x10000, .end = 0x14000, .prot = 3};
	assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
	struct ck_file f = {.id = 1, .kind = CK_F_REG, .pos = 7};
	snprintf(f.path, sizeof(f.path), "/tmp/x");
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &f, sizeof(f), NULL, 0, &err), 0);
	struct ck_fd fr = {.pid = 2, .fd = 3, .file_id = bad_fd_ref ? 9 : 1};
	assert_int_equal(ck_write_section(&w, CK_SEC_FD, &fr, sizeof(fr), NULL, 0, &err), 0);
	struct ck_data d = {.kind = CK_D_PIPE, .id = 1, .len = 5};
	assert_int_equal(ck_write_section(&w, CK_SEC_DATA, &d, sizeof(d), "hello", 5, &err), 0);
	/* version 3: the pages come last, in a page round */
	struct ck_round rd = {.round = 0};
	assert_int_equal(ck_write_section(&w, CK_SEC_ROUND, &rd, sizeof(rd), NULL, 0, &err), 0);
	struct ck_pages pg = {.pid = 2, .addr = pages_outside ? 0x20000 : 0x11000, .len = 4096};
	uint8_t page[4096];
	memset(page, 0xab, sizeof(page));
	assert_int_equal(
	    ck_write_section(&w, CK_SEC_PAGES, &pg, sizeof(pg), page, sizeof(page), &err), 0);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	*len = (size_t)size;
	return buf;
}

static void test_crc32c_vector(void **state)
{
	assert_int_equal(ck_crc32c(0, "123456789", 9), 0xE3069283u);
	/* chaining equals one pass */
	uint32_t c = ck_crc32c(0, "1234", 4);
	assert_int_equal(ck_crc32c(c, "56789", 5), 0xE3069283u);
}

/* The interleaved (three-lane) CRC of big buffers equals the byte-table
 * CRC for every length and alignment around its block size, and chains. */
static void test_crc32c_lanes(void **state)
{
	size_t n = 5 * 12288 + 64;
	uint8_t *buf = malloc(n + 8);
	uint64_t x = 0x243f6a8885a308d3ull;
	for (size_t i = 0; i < n + 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	static const size_t lens[] = {0,     1,	    7,	   8,	  4095,	 4096,	12287,
				      12288, 12289, 24576, 36871, 49152, 61440, 61503};
	for (size_t a = 0; a < 8; a++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			uint32_t want = ck_crc32c_sw(0x1234u, buf + a, lens[i]);
			assert_int_equal(ck_crc32c(0x1234u, buf + a, lens[i]), want);
			size_t h = lens[i] / 3;
			uint32_t c = ck_crc32c(0x1234u, buf + a, h);
			assert_int_equal(ck_crc32c(c, buf + a + h, lens[i] - h), want);
		}
	assert_int_equal(ck_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	free(buf);
}

/* A payload too big for the writer's buffer goes out directly: after
 * the small sections still buffered, never before them. */
static void test_big_section_order(void **state)
{
	int fd = memfd_create("ckpt-big", 0);
	assert_true(fd >= 0);
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
	struct ck_file f = {.id = 1, .kind = CK_F_PIPE};
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &f, sizeof(f), NULL, 0, &err), 0);
	size_t big = 3u << 20;
	uint8_t *data = malloc(big);
	for (size_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	struct ck_data d = {.kind = CK_D_PIPE, .id = 1, .len = big};
	assert_int_equal(ck_write_section(&w, CK_SEC_DATA, &d, sizeof(d), data, big, &err), 0);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	size_t len;
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	len = (size_t)size;
	struct ckpt_image *img = NULL;
	int r = ckpt_image_parse(buf, len, &img, &err);
	if (r < 0)
		fail_msg("parse: %s", err.msg);
	assert_int_equal(img->data.n, 1);
	assert_int_equal(img->data.v[0].h.len, big);
	assert_memory_equal(img->data.v[0].data, data, big);
	ckpt_image_free(img);
	free(buf);
	free(data);
}

static void test_round_trip(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	const char *seed = getenv("CKPT_WRITE_SEED");
	if (seed) {
		FILE *f = fopen(seed, "wb");
		if (f) {
			fwrite(buf, 1, len, f);
			fclose(f);
		}
	}
	struct ckpt_image *img = NULL;
	struct vs_error err;
	int r = ckpt_image_parse(buf, len, &img, &err);
	if (r < 0)
		fail_msg("parse: %s", err.msg);
	assert_int_equal(ckpt_image_root_pid(img), 2);
	assert_int_equal(ckpt_image_monotonic_ns(img), 123456789);
	assert_string_equal(ckpt_image_name(img), "c1");
	size_t elen;
	assert_string_equal(ckpt_image_extra(img, &elen), "{\"name\":\"c1\"}");
	assert_int_equal(img->procs.n, 1);
	assert_int_equal(img->procs.v[0].umask, 022);
	assert_string_equal(img->procs.v[0].cwd, "/tmp");
	assert_int_equal(img->threads.n, 1);
	assert_int_equal(img->threads.v[0].t.regs[R_RIP], 0x401000);
	assert_int_equal(img->threads.v[0].xstate[2], 3);
	assert_int_equal(img->vmas.n, 1);
	assert_int_equal(img->pages.n, 1);
	assert_int_equal(img->pages.v[0].data[4095], 0xab);
	assert_int_equal(img->files.v[0].pos, 7);
	assert_int_equal(img->fds.v[0].fd, 3);
	assert_memory_equal(img->data.v[0].data, "hello", 5);
	assert_int_equal(img->nr_sections, 11);
	ckpt_image_free(img);
	free(buf);
}

static void test_every_flipped_byte(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	struct vs_error err;
	for (size_t i = 0; i < len; i++) {
		/* page payload: sample every 61st byte to keep this fast */
		if (i > 2000 && i < len - 3000 && i % 61)
			continue;
		buf[i] ^= 0x40;
		struct ckpt_image *img = NULL;
		if (ckpt_image_parse(buf, len, &img, &err) == 0)
			fail_msg("flipped byte %zu of %zu accepted", i, len);
		buf[i] ^= 0x40;
	}
	free(buf);
}

static void test_every_truncation(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	struct vs_error err;
	for (size_t n = 0; n < len; n += (n < 64 || n > len - 64) ? 1 : 7) {
		struct ckpt_image *img = NULL;
		if (ckpt_image_parse(buf, n, &img, &err) == 0)
			fail_msg("stream cut at %zu of %zu accepted", n, len);
	}
	free(buf);
}

/* Offsets of the sections (after the 16-byte preamble). */
static size_t section_at(const uint8_t *buf, size_t len, int k)
{
	size_t off = 16;
	for (int i = 0; i < k && off < len; i++) {
		uint64_t slen;
		memcpy(&slen, buf + off + 8, 8);
		off += 20 + slen;
	}
	return off;
}

static void test_dropped_and_repeated_section(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	struct vs_error err;
	struct ckpt_image *img = NULL;
	/* drop section 6 (FD): every CRC is still right, END must object */
	size_t a = section_at(buf, len, 6), b = section_at(buf, len, 7);
	uint8_t *cut = malloc(len);
	memcpy(cut, buf, a);
	memcpy(cut + a, buf + b, len - b);
	assert_true(ckpt_image_parse(cut, len - (b - a), &img, &err) < 0);
	assert_non_null(strstr(err.msg, "end record"));
	/* repeat it */
	uint8_t *dup = malloc(len + (b - a));
	memcpy(dup, buf, b);
	memcpy(dup + b, buf + a, len - a);
	assert_true(ckpt_image_parse(dup, len + (b - a), &img, &err) < 0);
	free(cut);
	free(dup);
	free(buf);
}

static void test_magic_and_version(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	struct vs_error err;
	struct ckpt_image *img = NULL;
	buf[0] = 'X';
	assert_int_equal(ckpt_image_parse(buf, len, &img, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "magic"));
	buf[0] = 'V';
	buf[8] = CK_VERSION + 1;
	assert_int_equal(ckpt_image_parse(buf, len, &img, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "version 4"));
	buf[8] = 1; /* version 1 records are shorter: refused, not misread */
	assert_int_equal(ckpt_image_parse(buf, len, &img, &err), -EPROTONOSUPPORT);
	free(buf);
}

static void test_dangling_references(void **state)
{
	size_t len;
	struct vs_error err;
	struct ckpt_image *img = NULL;
	uint8_t *buf = build(&len, true, false);
	assert_true(ckpt_image_parse(buf, len, &img, &err) < 0);
	assert_non_null(strstr(err.msg, "fd 3"));
	free(buf);
	buf = build(&len, false, true);
	assert_true(ckpt_image_parse(buf, len, &img, &err) < 0);
	assert_non_null(strstr(err.msg, "outside its vmas"));
	free(buf);
}

/* A checkpoint is a stream: it parses from a pipe as from a file. */
static void test_read_from_pipe(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t c = fork();
	if (c == 0) {
		close(p[0]);
		_exit(vs_write_all(p[1], buf, len) < 0);
	}
	close(p[1]);
	struct ckpt_image *img = NULL;
	struct vs_error err;
	int r = ckpt_image_read_fd(p[0], &img, &err);
	if (r < 0)
		fail_msg("read from pipe: %s", err.msg);
	assert_int_equal(ckpt_image_root_pid(img), 2);
	ckpt_image_free(img);
	close(p[0]);
	waitpid(c, NULL, 0);
	free(buf);
}

/* Feed buf through a pipe from a child; returns the read end. */
static int pipe_from(const uint8_t *buf, size_t len, pid_t *child)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	*child = fork();
	if (*child == 0) {
		close(p[0]);
		_exit(vs_write_all(p[1], buf, len) < 0);
	}
	close(p[1]);
	return p[0];
}

/* Consume the page rounds of a streamed image; 0 at a verified END. */
static int drain_pages(struct ckpt_image *img, uint8_t *last_byte, struct vs_error *err)
{
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		int r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			return r;
		uint8_t page[4096];
		for (uint64_t done = 0; done < pg.len; done += sizeof(page))
			if ((r = ck_stream_payload(img, page, sizeof(page), err)) < 0)
				return r;
		if ((r = ck_stream_section_end(img, err)) < 0)
			return r;
		*last_byte = page[4095];
	}
}

/* Version 3 read from a pipe: the records first, then the page round run
 * by run, then the END record; nothing of the pages is held by the image. */
static void test_stream_page_rounds(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	pid_t c;
	int fd = pipe_from(buf, len, &c);
	struct ckpt_image *img = NULL;
	struct vs_error err;
	if (ckpt_image_read_fd(fd, &img, &err) < 0)
		fail_msg("read from pipe: %s", err.msg);
	assert_int_equal(img->pages.n, 0);
	assert_int_equal(img->fds.n, 1);
	uint8_t last = 0;
	if (drain_pages(img, &last, &err) < 0)
		fail_msg("page rounds: %s", err.msg);
	assert_int_equal(last, 0xab);
	assert_int_equal(img->nr_sections, 11);
	ckpt_image_free(img);
	close(fd);
	waitpid(c, NULL, 0);
	free(buf);
}

/* A flipped byte inside a streamed page run, or a stream cut inside the
 * rounds: the records before still read, the pages do not verify. */
static void test_stream_bad_pages(void **state)
{
	size_t len;
	uint8_t *buf = build(&len, false, false);
	struct vs_error err;
	size_t pages_at = section_at(buf, len, 9);
	for (int cut = 0; cut < 2; cut++) {
		if (!cut)
			buf[pages_at + 20 + sizeof(struct ck_pages) + 100] ^= 1;
		pid_t c;
		int fd = pipe_from(buf, cut ? len - 30 : len, &c);
		struct ckpt_image *img = NULL;
		if (ckpt_image_read_fd(fd, &img, &err) < 0)
			fail_msg("records: %s", err.msg);
		uint8_t last = 0;
		assert_true(drain_pages(img, &last, &err) < 0);
		assert_non_null(strstr(err.msg, cut ? "truncated" : "checksum mismatch"));
		ckpt_image_free(img);
		close(fd);
		waitpid(c, NULL, 0);
		if (!cut)
			buf[pages_at + 20 + sizeof(struct ck_pages) + 100] ^= 1;
	}
	/* ckpt_image_verify_fd says the same of the whole stream */
	pid_t c;
	int fd = pipe_from(buf, len, &c);
	assert_int_equal(ckpt_image_verify_fd(fd, &err), 0);
	close(fd);
	waitpid(c, NULL, 0);
	buf[len - 40] ^= 1;
	fd = pipe_from(buf, len, &c);
	assert_true(ckpt_image_verify_fd(fd, &err) < 0);
	close(fd);
	waitpid(c, NULL, 0);
	buf[len - 40] ^= 1;
	/* a regular file gives the same answers (a flipped
	 * page byte, a cut) */
	for (int kase = 0; kase < 3; kase++) {
		fd = memfd_create("ckpt-verify", 0);
		if (kase == 1)
			buf[pages_at + 20 + sizeof(struct ck_pages) + 100] ^= 1;
		size_t n = kase == 2 ? len - 30 : len;
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		lseek(fd, 0, SEEK_SET);
		int r = ckpt_image_verify_fd(fd, &err);
		if (kase == 0)
			assert_int_equal(r, 0);
		else
			assert_non_null(
			    strstr(err.msg, kase == 1 ? "checksum mismatch" : "truncated"));
		assert_true(kase == 0 || r < 0);
		if (kase == 1)
			buf[pages_at + 20 + sizeof(struct ck_pages) + 100] ^= 1;
		close(fd);
	}
	free(buf);
}

/* Round order: pages outside a round, a record after the rounds, a round
 * that does not increase are refused (a restore applies pages as they come:
 * every record must be there before). */
static void test_round_order(void **state)
{
	for (int kase = 0; kase < 4; kase++) {
		int fd = memfd_create("ckpt-round", 0);
		struct vs_error err;
		struct ck_writer w;
		assert_int_equal(ck_writer_open(&w, fd, &err), 0);
		struct ck_header h = {.root_pid = 2, .nr_procs = 1};
		assert_int_equal(ck_write_section(&w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err),
				 0);
		struct ck_proc *p = calloc(1, sizeof(*p));
		p->pid = 2;
		p->nr_threads = 1;
		assert_int_equal(ck_write_section(&w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err),
				 0);
		free(p);
		struct ck_vma v = {
		    .pid = 2, .kind = CK_VMA_ANON, .start = 0x10000, .end = 0x14000, .prot = 3};
		assert_int_equal(ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
		struct ck_round r0 = {.round = 1}, r1 = {.round = kase == 2 ? 1 : 2};
		struct ck_pages pg = {.pid = 2, .addr = 0x11000, .len = 4096};
		uint8_t page[4096] = {0};
		if (kase != 1)
			assert_int_equal(
			    ck_write_section(&w, CK_SEC_ROUND, &r0, sizeof(r0), NULL, 0, &err), 0);
		assert_int_equal(
		    ck_write_section(&w, CK_SEC_PAGES, &pg, sizeof(pg), page, sizeof(page), &err),
		    0);
		assert_int_equal(ck_write_section(&w, CK_SEC_ROUND, &r1, sizeof(r1), NULL, 0, &err),
				 0);
		page[0] = 7; /* round 2 overrides */
		assert_int_equal(
		    ck_write_section(&w, CK_SEC_PAGES, &pg, sizeof(pg), page, sizeof(page), &err),
		    0);
		if (kase == 3)
			assert_int_equal(
			    ck_write_section(&w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, &err), 0);
		assert_int_equal(ck_writer_close(&w, &err), 0);
		ck_writer_free(&w);
		size_t len = (size_t)lseek(fd, 0, SEEK_END);
		uint8_t *buf = malloc(len);
		assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
		close(fd);
		struct ckpt_image *img = NULL;
		int r = ckpt_image_parse(buf, len, &img, &err);
		if (kase == 0) {
			if (r < 0)
				fail_msg("two rounds: %s", err.msg);
			assert_int_equal(img->pages.n, 2);
			assert_int_equal(img->pages.v[1].data[0], 7);
			ckpt_image_free(img);
		} else {
			assert_true(r < 0);
			const char *want[] = {"", "outside a page round", "after round",
					      "after the page rounds"};
			if (!strstr(err.msg, want[kase]))
				fail_msg("case %d: %s", kase, err.msg);
		}
		free(buf);
	}
}

/* fs delta: a stream with a directory, a file and a symlink extracts to
 * the same tree; paths leaving the target are refused by the parser. */
static uint8_t *build_fs(size_t *len, const char *evil)
{
	int fd = memfd_create("ckpt-fs", 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ck_header h = {.root_pid = 2, .nr_procs = 1};
	assert_int_equal(ck_write_section(&w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err), 0);
	struct ck_proc *p = calloc(1, sizeof(*p));
	p->pid = 2;
	assert_int_equal(ck_write_section(&w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err), 0);
	free(p);
	struct {
		const char *path, *link;
		mode_t mode;
		const char *data;
	} ents[] = {
	    {evil ? evil : "a", "", S_IFDIR | 0750, NULL},
	    {"a/f", "", S_IFREG | 0640, "hello"},
	    {"a/l", "f", S_IFLNK | 0777, NULL},
	};
	for (size_t i = 0; i < 3; i++) {
		struct ck_fsentry e = {.mode = ents[i].mode,
				       .uid = 100000 + 5,
				       .gid = 100000 + 6,
				       .path_len = (uint32_t)strlen(ents[i].path) + 1,
				       .link_len = (uint32_t)strlen(ents[i].link) + 1,
				       .size = ents[i].data ? strlen(ents[i].data) : 0};
		char tail[256];
		memcpy(tail, ents[i].path, e.path_len);
		memcpy(tail + e.path_len, ents[i].link, e.link_len);
		assert_int_equal(ck_write_section(&w, CK_SEC_FSENTRY, &e, sizeof(e), tail,
						  e.path_len + e.link_len, &err),
				 0);
		if (ents[i].data) {
			struct ck_fsdata d = {.entry = i, .off = 0};
			assert_int_equal(ck_write_section(&w, CK_SEC_FSDATA, &d, sizeof(d),
							  ents[i].data, e.size, &err),
					 0);
		}
	}
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	*len = (size_t)size;
	return buf;
}

static void test_fs_delta(void **state)
{
	size_t len;
	uint8_t *buf = build_fs(&len, NULL);
	struct ckpt_image *img = NULL;
	struct vs_error err;
	if (ckpt_image_parse(buf, len, &img, &err) < 0)
		fail_msg("parse: %s", err.msg);
	char dir[] = "/tmp/ckpt-fs-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char dst[64];
	snprintf(dst, sizeof(dst), "%s/upper", dir);
	if (ckpt_image_extract_fs(img, dst, 100000, 200000, &err) < 0)
		fail_msg("extract: %s", err.msg);
	char path[128], *text = NULL;
	snprintf(path, sizeof(path), "%s/a/f", dst);
	assert_int_equal(vs_read_file(path, 0, &text, NULL, &err), 0);
	assert_string_equal(text, "hello");
	free(text);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	if (geteuid() == 0)
		assert_int_equal(st.st_uid, 200005);
	snprintf(path, sizeof(path), "%s/a/l", dst);
	char link[16] = "";
	assert_int_equal(readlink(path, link, sizeof(link)), 1);
	assert_string_equal(link, "f");
	assert_int_equal(vs_rm_rf(dir, &err), 0);
	ckpt_image_free(img);
	free(buf);
	const char *evil[] = {"../x", "/abs", "a/../../b", "a//b", "."};
	for (size_t i = 0; i < VS_ARRAY_SIZE(evil); i++) {
		buf = build_fs(&len, evil[i]);
		if (ckpt_image_parse(buf, len, &img, &err) == 0)
			fail_msg("fs path \"%s\" accepted", evil[i]);
		free(buf);
	}
}

/* seals of the memfd record build_fd_state writes (F_SEAL_SEAL | F_SEAL_SHRINK) */
static uint64_t memfd_seals = 3;

/* fd-level records (files.c): a stream with an unlinked file, a unix socket
 * whose name is gone, an epoll target by file id, an inotify watch, a TCP
 * listener, a memfd with its content and one lock; ino/inet replace the
 * good records when given. */
static uint8_t *build_fd_state(size_t *len, const struct ck_lock *lk, const struct ck_inotify *ino,
			       const struct ck_inet *inet)
{
	int fd = memfd_create("ckpt-test", 0);
	assert_true(fd >= 0);
	struct vs_error err;
	struct ck_writer w;
	assert_int_equal(ck_writer_open(&w, fd, &err), 0);
	struct ck_header h = {.root_pid = 2, .nr_procs = 1};
	assert_int_equal(ck_write_section(&w, CK_SEC_HEADER, &h, sizeof(h), NULL, 0, &err), 0);
	struct ck_proc *p = calloc(1, sizeof(*p));
	p->pid = 2;
	p->ppid = 0; /* a child of PID 1 */
	p->nr_threads = 1;
	assert_int_equal(ck_write_section(&w, CK_SEC_PROC, p, sizeof(*p), NULL, 0, &err), 0);
	free(p);
	struct ck_thread t = {.pid = 2, .tid = 2};
	assert_int_equal(ck_write_section(&w, CK_SEC_THREAD, &t, sizeof(t), NULL, 0, &err), 0);
	struct ck_file f = {.id = 1,
			    .kind = CK_F_REG,
			    .ghost = 1,
			    .mode = 0100640,
			    .u = {1234, 2345, 0x803, CK_FILE_F_OWNER},
			    .tv = {1000000000, 500, 1100000000, 250000}};
	snprintf(f.path, sizeof(f.path), "/tmp/x");
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &f, sizeof(f), NULL, 0, &err), 0);
	struct ck_file u = {.id = 2, .kind = CK_F_UNIX, .sk_type = 2, .u = {CK_UX_F_NAME_GONE}};
	u.sk_name_len = (uint32_t)snprintf(u.sk_name, sizeof(u.sk_name), "/tmp/s") + 1;
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &u, sizeof(u), NULL, 0, &err), 0);
	struct ck_file e = {.id = 3, .kind = CK_F_EPOLL, .owner_pid = 2};
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &e, sizeof(e), NULL, 0, &err), 0);
	struct ck_file in = {.id = 4, .kind = CK_F_INOTIFY};
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &in, sizeof(in), NULL, 0, &err), 0);
	struct ck_file tcp = {.id = 5, .kind = CK_F_INET};
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &tcp, sizeof(tcp), NULL, 0, &err), 0);
	/* a memfd: name, size, owner, seals, its shared memory object's id */
	struct ck_file mfd = {.id = 6,
			      .kind = CK_F_MEMFD,
			      .mode = 0100640,
			      .size = 5,
			      .u = {1234, 2345, memfd_seals, 0x1000000000042ull}};
	snprintf(mfd.path, sizeof(mfd.path), "a memfd");
	assert_int_equal(ck_write_section(&w, CK_SEC_FILE, &mfd, sizeof(mfd), NULL, 0, &err), 0);
	struct ck_data md = {.kind = CK_D_SHM, .id = mfd.u[3], .len = 5};
	assert_int_equal(ck_write_section(&w, CK_SEC_DATA, &md, sizeof(md), "hello", 5, &err), 0);
	for (uint32_t id = 1; id <= 6; id++) {
		struct ck_fd fr = {.pid = 2, .fd = (int32_t)(2 + id), .file_id = id};
		assert_int_equal(ck_write_section(&w, CK_SEC_FD, &fr, sizeof(fr), NULL, 0, &err),
				 0);
	}
	struct ck_epoll ep = {.file_id = 3, .tfd = 9, .events = 1, .target_id = 2, .data = 7};
	assert_int_equal(ck_write_section(&w, CK_SEC_EPOLL, &ep, sizeof(ep), NULL, 0, &err), 0);
	assert_int_equal(ck_write_section(&w, CK_SEC_LOCK, lk, sizeof(*lk), NULL, 0, &err), 0);
	struct ck_inotify wgood = {.file_id = 4, .wd = 3, .mask = 0x100};
	snprintf(wgood.path, sizeof(wgood.path), "/etc");
	if (!ino)
		ino = &wgood;
	assert_int_equal(ck_write_section(&w, CK_SEC_INOTIFY, ino, sizeof(*ino), NULL, 0, &err), 0);
	struct ck_inet igood = {.file_id = 5,
				.family = 2 /* AF_INET */,
				.type = 1 /* SOCK_STREAM */,
				.protocol = 6,
				.state = 10,
				.backlog = 7,
				.local_len = 16,
				.nopts = 1,
				.opt = {{1, 2, 1, 0}}};
	if (!inet)
		inet = &igood;
	assert_int_equal(ck_write_section(&w, CK_SEC_INET, inet, sizeof(*inet), NULL, 0, &err), 0);
	struct ck_sysv sv = {.kind = CK_SYSV_SEM, .id = 3, .key = 42, .mode = 0600, .size = 2};
	assert_int_equal(ck_write_section(&w, CK_SEC_SYSV, &sv, sizeof(sv), NULL, 0, &err), 0);
	struct ck_data sd = {.kind = CK_D_SYSV_SEM, .id = 3, .len = 4};
	uint16_t vals[2] = {1, 5};
	assert_int_equal(ck_write_section(&w, CK_SEC_DATA, &sd, sizeof(sd), vals, 4, &err), 0);
	assert_int_equal(ck_writer_close(&w, &err), 0);
	ck_writer_free(&w);
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc((size_t)size);
	assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	*len = (size_t)size;
	return buf;
}

static void test_fd_state_records(void **state)
{
	struct ck_lock good = {.pid = 2,
			       .fd = 3,
			       .file_id = 1,
			       .kind = CK_LOCK_POSIX,
			       .type = F_WRLCK,
			       .start = 10,
			       .len = 20};
	size_t len;
	uint8_t *buf = build_fd_state(&len, &good, NULL, NULL);
	const char *seed = getenv("CKPT_WRITE_SEED_FD");
	if (seed) {
		FILE *f = fopen(seed, "wb");
		if (f) {
			fwrite(buf, 1, len, f);
			fclose(f);
		}
	}
	struct ckpt_image *img = NULL;
	struct vs_error err;
	if (ckpt_image_parse(buf, len, &img, &err) < 0)
		fail_msg("parse: %s", err.msg);
	assert_int_equal(img->locks.n, 1);
	assert_int_equal(img->locks.v[0].start, 10);
	assert_int_equal(img->locks.v[0].len, 20);
	assert_int_equal(img->epolls.v[0].target_id, 2);
	assert_int_equal(img->files.v[0].u[0], 1234);
	assert_int_equal(img->files.v[0].tv[3], 250000);
	assert_int_equal(img->files.v[1].u[0], CK_UX_F_NAME_GONE);
	assert_int_equal(img->inotify.n, 1);
	assert_string_equal(img->inotify.v[0].path, "/etc");
	assert_int_equal(img->inets.n, 1);
	assert_int_equal(img->inets.v[0].backlog, 7);
	assert_int_equal(img->sysv.n, 1);
	assert_int_equal(img->sysv.v[0].key, 42);
	assert_int_equal(img->files.v[5].kind, CK_F_MEMFD);
	assert_string_equal(img->files.v[5].path, "a memfd");
	assert_int_equal(img->files.v[5].u[2], 3);
	ckpt_image_free(img);
	free(buf);
	/* a memfd with seals this format does not know */
	memfd_seals = 0x40;
	buf = build_fd_state(&len, &good, NULL, NULL);
	memfd_seals = 3;
	img = NULL;
	if (ckpt_image_parse(buf, len, &img, &err) == 0)
		fail_msg("memfd record with unknown seals accepted");
	assert_non_null(strstr(err.msg, "file"));
	free(buf);
	/* bad locks: unknown kind, type, negative range, missing file or owner */
	struct ck_lock bad[] = {
	    {.pid = 2, .fd = 3, .file_id = 1, .kind = 9, .type = F_WRLCK},
	    {.pid = 2, .fd = 3, .file_id = 1, .kind = CK_LOCK_OFD, .type = F_UNLCK},
	    {.pid = 2, .fd = 3, .file_id = 1, .kind = CK_LOCK_FLOCK, .type = F_RDLCK, .start = -1},
	    {.pid = 2, .fd = 3, .file_id = 1, .kind = CK_LOCK_OFD, .type = F_RDLCK, .len = -5},
	    {.pid = 2, .fd = 3, .file_id = 8, .kind = CK_LOCK_OFD, .type = F_RDLCK},
	    {.pid = 7, .fd = 3, .file_id = 1, .kind = CK_LOCK_POSIX, .type = F_RDLCK},
	    {.pid = 2, .fd = -1, .file_id = 1, .kind = CK_LOCK_POSIX, .type = F_RDLCK},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf = build_fd_state(&len, &bad[i], NULL, NULL);
		img = NULL;
		if (ckpt_image_parse(buf, len, &img, &err) == 0)
			fail_msg("bad lock record %zu accepted", i);
		assert_non_null(strstr(err.msg, "lock"));
		free(buf);
	}
	/* bad watches: wd 0, relative path, no NUL, a file that is no inotify */
	struct ck_inotify bw[4] = {{.file_id = 4, .wd = 0},
				   {.file_id = 4, .wd = 1},
				   {.file_id = 4, .wd = 1},
				   {.file_id = 5, .wd = 1}};
	snprintf(bw[0].path, sizeof(bw[0].path), "/etc");
	snprintf(bw[1].path, sizeof(bw[1].path), "etc");
	memset(bw[2].path, 'a', sizeof(bw[2].path));
	bw[2].path[0] = '/';
	snprintf(bw[3].path, sizeof(bw[3].path), "/etc");
	for (size_t i = 0; i < 4; i++) {
		buf = build_fd_state(&len, &good, &bw[i], NULL);
		img = NULL;
		if (ckpt_image_parse(buf, len, &img, &err) == 0)
			fail_msg("bad inotify record %zu accepted", i);
		assert_non_null(strstr(err.msg, "inotify"));
		free(buf);
	}
	/* bad sockets: family, type, address length, option count, file kind,
	 * more unsent bytes than queued */
	struct ck_inet bi[6];
	for (size_t i = 0; i < 6; i++)
		bi[i] = (struct ck_inet){.file_id = 5, .family = 2, .type = 1};
	bi[0].family = 1;
	bi[1].type = 3;
	bi[2].local_len = 29;
	bi[3].nopts = CK_INET_OPTS + 1;
	bi[4].file_id = 4;
	bi[5].outq_len = 10;
	bi[5].unsent_len = 11;
	for (size_t i = 0; i < 6; i++) {
		buf = build_fd_state(&len, &good, NULL, &bi[i]);
		img = NULL;
		if (ckpt_image_parse(buf, len, &img, &err) == 0)
			fail_msg("bad inet record %zu accepted", i);
		assert_non_null(strstr(err.msg, "inet"));
		free(buf);
	}
}

static void test_stats_json(void **state)
{
	char path[] = "/tmp/ckpt-stats-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct ckpt_stats st = {.freeze_ns = 1,
				.pages_written = 42,
				.nr_procs = 3,
				.memrestore_ns = 5,
				.mem_read_ns = 6,
				.mem_crc_ns = 7,
				.mem_write_ns = 8};
	struct vs_error err;
	assert_int_equal(ckpt_stats_write_json(path, &st, &err), 0);
	char *text = NULL;
	assert_int_equal(vs_read_file(path, 0, &text, NULL, &err), 0);
	assert_non_null(strstr(text, "\"pages_written\": 42"));
	assert_non_null(strstr(text, "\"processes\": 3"));
	/* the page rounds by phase */
	assert_non_null(strstr(text, "\"memrestore_time_ns\": 5"));
	assert_non_null(strstr(text, "\"mem_read_time_ns\": 6"));
	assert_non_null(strstr(text, "\"mem_crc_time_ns\": 7"));
	assert_non_null(strstr(text, "\"mem_write_time_ns\": 8"));
	assert_non_null(strstr(text, "\"fds\": 0\n}"));
	free(text);
	unlink(path);
}

/* --- sessions and process groups (pstree.c) --- */

static struct ck_pstep *plan_of(const struct ck_pnode *n, size_t nn, int32_t top_sid, size_t *np,
				int *rc, int32_t *bad)
{
	struct ck_pstep *plan = NULL;
	struct vs_error err;
	*rc = ck_pstree_plan(n, nn, n[0].pid, top_sid, top_sid, &plan, np, bad, &err);
	return plan;
}

static const struct ck_pstep *step_for(const struct ck_pstep *s, size_t n, int32_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (s[i].pid == pid)
			return &s[i];
	return NULL;
}

static void test_pstree_simple(void **state)
{
	/* root 2 leads its session; 3 leads a group; 4 joins 3's group */
	const struct ck_pnode n[] = {{2, 0, 2, 2, false}, {4, 2, 2, 3, false}, {3, 2, 2, 3, false}};
	size_t np;
	int rc;
	int32_t bad = 0;
	struct ck_pstep *s = plan_of(n, 3, 0, &np, &rc, &bad);
	assert_int_equal(rc, 0);
	assert_int_equal(np, 3);
	assert_int_equal(s[0].pid, 2);
	assert_int_equal(s[0].creator, 2);
	assert_int_equal(s[0].action, CK_PA_SETSID);
	/* 3 must exist before 4 joins its group, whatever the image order */
	assert_int_equal(s[1].pid, 3);
	assert_int_equal(s[1].action, CK_PA_PGID_SELF);
	assert_int_equal(s[2].pid, 4);
	assert_int_equal(s[2].action, CK_PA_PGID_JOIN);
	assert_int_equal(s[2].pgid, 3);
	assert_false(s[2].clone_parent);
	free(s);
}

static void test_pstree_daemon(void **state)
{
	/* 7 double-forked: its session/group leader 6 is gone, parent is PID 1 */
	const struct ck_pnode n[] = {{2, 0, 2, 2, false}, {7, 0, 6, 6, false}, {8, 7, 6, 6, false}};
	size_t np;
	int rc;
	int32_t bad = 0;
	struct ck_pstep *s = plan_of(n, 3, 0, &np, &rc, &bad);
	assert_int_equal(rc, 0);
	const struct ck_pstep *h = step_for(s, np, 6), *d = step_for(s, np, 7),
			      *c = step_for(s, np, 8);
	assert_non_null(h);
	assert_true(h->helper);
	assert_int_equal(h->action, CK_PA_SETSID);
	assert_true(h->clone_parent);
	assert_int_equal(h->parent, 0); /* PID 1 reaps it */
	assert_int_equal(d->creator, 6);
	assert_true(d->clone_parent);
	assert_int_equal(d->action, CK_PA_NONE);
	assert_int_equal(c->creator, 7);
	assert_false(c->clone_parent);
	assert_true(h < d && d < c);
	free(s);
}

static void test_pstree_gone_group_leader(void **state)
{
	/* 5 is 2's child in group 4, whose leader exited: a helper under 2 */
	const struct ck_pnode n[] = {{2, 0, 2, 2, false}, {5, 2, 2, 4, false}, {6, 2, 2, 4, true}};
	size_t np;
	int rc;
	int32_t bad = 0;
	struct ck_pstep *s = plan_of(n, 3, 0, &np, &rc, &bad);
	assert_int_equal(rc, 0);
	const struct ck_pstep *h = step_for(s, np, 4);
	assert_non_null(h);
	assert_true(h->helper);
	assert_int_equal(h->creator, 2);
	assert_int_equal(h->parent, 2); /* 2's stub reaps it */
	assert_false(h->clone_parent);
	assert_int_equal(step_for(s, np, 5)->creator, 4);
	assert_true(step_for(s, np, 5)->clone_parent);
	assert_int_equal(step_for(s, np, 6)->creator, 4); /* the zombie too */
	free(s);
}

static void test_pstree_refusals(void **state)
{
	size_t np;
	int rc;
	int32_t bad = 0;
	/* 5 is in session 3, whose leader is alive but not its ancestor */
	const struct ck_pnode a[] = {{2, 0, 2, 2, false}, {3, 2, 3, 3, false}, {5, 0, 3, 3, false}};
	assert_null(plan_of(a, 3, 0, &np, &rc, &bad));
	assert_int_equal(rc, -ENOTSUP);
	assert_int_equal(bad, 5);
	/* a session leader outside its own group cannot exist */
	const struct ck_pnode b[] = {{2, 0, 2, 3, false}};
	assert_null(plan_of(b, 1, 0, &np, &rc, &bad));
	assert_int_equal(rc, -ENOTSUP);
	/* a parent that is not in the table */
	const struct ck_pnode c[] = {{2, 0, 2, 2, false}, {9, 8, 2, 2, false}};
	assert_null(plan_of(c, 2, 0, &np, &rc, &bad));
	assert_int_equal(bad, 9);
	/* a group whose leader is alive in another session */
	const struct ck_pnode d[] = {{2, 0, 2, 2, false}, {3, 2, 3, 3, false}, {4, 2, 2, 3, false}};
	assert_null(plan_of(d, 3, 0, &np, &rc, &bad));
	assert_int_equal(bad, 4);
	/* 3 (the root's child) joins the group of 5, a child of PID 1 in the
	 * root's session: 5 can only be forked after the root's setsid, which
	 * is followed by the root's own children. A failed try must not leave
	 * the root's session behind for the next one: refused, not mis-planned. */
	const struct ck_pnode e[] = {{2, 0, 2, 2, false}, {3, 2, 2, 5, false}, {5, 0, 2, 5, false}};
	assert_null(plan_of(e, 3, 0, &np, &rc, &bad));
	assert_int_equal(rc, -ENOTSUP);
}

static void test_pstree_bounded(void **state)
{
	/* a chain 2000 deep plans; 3000 deep is refused (the planner recurses:
	 * a slice must not be able to overflow the host's stack); a tangled
	 * wide tree ends, planned or refused */
	enum { N = 3000 };
	struct ck_pnode *n = calloc(N, sizeof(*n));
	for (int i = 0; i < N; i++)
		n[i] = (struct ck_pnode){2 + i, i ? 1 + i : 0, 2, 2, false};
	size_t np;
	int rc;
	int32_t bad = 0;
	struct ck_pstep *s = plan_of(n, 2000, 0, &np, &rc, &bad);
	assert_int_equal(rc, 0);
	assert_int_equal(np, 2000);
	free(s);
	assert_null(plan_of(n, N, 0, &np, &rc, &bad));
	assert_int_equal(rc, -ENOTSUP);
	for (int i = 0; i < N; i++)
		n[i] = (struct ck_pnode){2 + i, i == 0 ? 0 : 2 + (i - 1) / 2, 2,
					 i == 0 ? 2 : 2 + (i * 7919) % N, false};
	s = plan_of(n, N, 0, &np, &rc, &bad);
	assert_true(rc == 0 || rc == -ENOTSUP);
	free(s);
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c_vector),
	    cmocka_unit_test(test_crc32c_lanes),
	    cmocka_unit_test(test_big_section_order),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_every_flipped_byte),
	    cmocka_unit_test(test_every_truncation),
	    cmocka_unit_test(test_dropped_and_repeated_section),
	    cmocka_unit_test(test_magic_and_version),
	    cmocka_unit_test(test_stream_page_rounds),
	    cmocka_unit_test(test_stream_bad_pages),
	    cmocka_unit_test(test_round_order),
	    cmocka_unit_test(test_dangling_references),
	    cmocka_unit_test(test_read_from_pipe),
	    cmocka_unit_test(test_fs_delta),
	    cmocka_unit_test(test_stats_json),
	    cmocka_unit_test(test_pstree_simple),
	    cmocka_unit_test(test_pstree_daemon),
	    cmocka_unit_test(test_pstree_gone_group_leader),
	    cmocka_unit_test(test_pstree_refusals),
	    cmocka_unit_test(test_pstree_bounded),
	    cmocka_unit_test(test_fd_state_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
