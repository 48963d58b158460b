/*
 * image.c - the checkpoint stream: writer, verifying parser, stats JSON.
 *
 * The parser is the part that sees untrusted bytes (a checkpoint can arrive
 * over the network), so it checks every length against what is left, every
 * CRC, the END record's section count/CRC chain/length, every fixed-size
 * record's size and every string's NUL, and only then hands out records.
 * tests/fuzz/fuzz_ckpt.c drives ckpt_image_parse().
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "ckpt_int.h"
#include "vslice/util.h"

void *ck_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		abort();
	return q;
}

/* --- CRC32C (Castagnoli): SSE4.2 instruction when present, table otherwise.
 *
 * The instruction has a latency of 3 cycles and a throughput of 1, so one
 * dependent chain runs at a third of what the unit can do (~7 GiB/s here).
 * Big buffers are cut into blocks of three lanes of CRC_LANE bytes each,
 * computed as three independent chains in one loop and joined by the CRC's
 * linearity: crc(A || B) = crc(A) * x^(8|B|) mod P  ^  crc_0(B), where crc_0
 * starts from 0 (zlib's crc32_combine, on the raw register here). Same
 * result as the plain loop, ~3x the speed on page runs. */

#define CRC_POLY 0x82F63B78u
#define CRC_LANE 4096u

static uint32_t crc_table[256];
static uint32_t crc_lane_shift; /* x^(8 * CRC_LANE) mod P */
static int crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a * b modulo P, bit-reflected (zlib's multmodp) */
static uint32_t crc_mulmod(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;
	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ CRC_POLY : b >> 1;
	}
	return p;
}

/* x^(8 * n) modulo P */
static uint32_t crc_x8n(uint64_t n)
{
	uint32_t sq = 1u << 30; /* x^1, squared on: x^2, x^4, ... */
	uint32_t p = 1u << 31;	/* x^0 */
	for (n *= 8; n; n >>= 1) {
		if (n & 1)
			p = crc_mulmod(sq, p);
		sq = crc_mulmod(sq, sq);
	}
	return p;
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC_POLY : c >> 1;
		crc_table[i] = c;
	}
	crc_lane_shift = crc_x8n(CRC_LANE);
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw_run(uint32_t c, const uint8_t *p,
							     size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi(c, *p++);
		len--;
	}
	uint64_t c64 = c;
	while (len >= 3 * CRC_LANE) {
		uint64_t c1 = 0, c2 = 0;
		for (size_t i = 0; i < CRC_LANE; i += 8) {
			c64 = __builtin_ia32_crc32di(c64, load64(p + i));
			c1 = __builtin_ia32_crc32di(c1, load64(p + CRC_LANE + i));
			c2 = __builtin_ia32_crc32di(c2, load64(p + 2 * CRC_LANE + i));
		}
		c64 = crc_mulmod(crc_lane_shift, (uint32_t)c64) ^ (uint32_t)c1;
		c64 = crc_mulmod(crc_lane_shift, (uint32_t)c64) ^ (uint32_t)c2;
		p += 3 * CRC_LANE;
		len -= 3 * CRC_LANE;
	}
	while (len >= 8) {
		c64 = __builtin_ia32_crc32di(c64, load64(p));
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

uint32_t ck_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	pthread_once(&crc_once, crc_init);
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

uint32_t ck_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	pthread_once(&crc_once, crc_init);
	if (!crc_hw)
		return ck_crc32c_sw(crc, buf, len);
	return ~crc_hw_run(~crc, p, len);
}

/* --- writer ------------------------------------------------------------ */

#define WBUF (4u << 20)

/* A pipe between dump and restore carries the page rounds: the default
 * 64 KiB makes the two sides take turns every 16 pages. Ask for PIPE_BIG
 * (beyond fs.pipe-max-size only with CAP_SYS_RESOURCE), settle for 1 MiB;
 * a refusal only costs speed. */
#define PIPE_BIG (16u << 20)

void ck_pipe_grow(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
		return;
	if (fcntl(fd, F_SETPIPE_SZ, PIPE_BIG) < 0)
		(void)fcntl(fd, F_SETPIPE_SZ, 1u << 20);
}

static int w_flush(struct ck_writer *w, struct vs_error *err)
{
	if (!w->used)
		return 0;
	int r = vs_write_all(w->fd, w->buf, w->used);
	if (r < 0)
		return vs_error_sys(err, -r, "checkpoint stream: write");
	w->used = 0;
	return 0;
}

static int w_put(struct ck_writer *w, const void *p, size_t len, struct vs_error *err)
{
	int r;
	/* a big payload goes out directly, after what is buffered */
	bool direct = len >= w->cap / 2;
	if ((direct || w->used + len > w->cap) && (r = w_flush(w, err)) < 0)
		return r;
	if (direct) {
		r = vs_write_all(w->fd, p, len);
		if (r < 0)
			return vs_error_sys(err, -r, "checkpoint stream: write");
	} else {
		memcpy(w->buf + w->used, p, len);
		w->used += len;
	}
	w->total += len;
	return 0;
}

int ck_writer_open(struct ck_writer *w, int fd, struct vs_error *err)
{
	return ck_writer_open_flags(w, fd, 0, err);
}

static void w_init(struct ck_writer *w, int fd)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cap = WBUF;
	w->buf = vs_xmalloc(WBUF);
	ck_pipe_grow(fd);
}

int ck_writer_open_flags(struct ck_writer *w, int fd, uint32_t flags, struct vs_error *err)
{
	w_init(w, fd);
	uint8_t head[16];
	memcpy(head, CK_MAGIC, 8);
	uint32_t v = CK_VERSION, fl = flags;
	memcpy(head + 8, &v, 4);
	memcpy(head + 12, &fl, 4);
	return w_put(w, head, sizeof(head), err);
}

static void section_head(uint8_t h[16], uint32_t type, uint64_t len)
{
	uint32_t zero = 0;
	memcpy(h, &type, 4);
	memcpy(h + 4, &zero, 4);
	memcpy(h + 8, &len, 8);
}

int ck_write_section(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
		     const void *data, size_t dlen, struct vs_error *err)
{
	uint8_t h[16];
	section_head(h, type, rlen + dlen);
	uint32_t crc = ck_crc32c(0, h, sizeof(h));
	crc = ck_crc32c(crc, rec, rlen);
	if (dlen)
		crc = ck_crc32c(crc, data, dlen);
	int r;
	if ((r = w_put(w, h, sizeof(h), err)) < 0 || (r = w_put(w, rec, rlen, err)) < 0 ||
	    (dlen && (r = w_put(w, data, dlen, err)) < 0) || (r = w_put(w, &crc, 4, err)) < 0)
		return r;
	w->nr_sections++;
	w->chain = ck_crc32c(w->chain, &crc, 4);
	return 0;
}

uint32_t ck_section_crc(uint32_t type, const void *rec, size_t rlen, const void *data, size_t dlen)
{
	uint8_t h[16];
	section_head(h, type, rlen + dlen);
	uint32_t crc = ck_crc32c(0, h, sizeof(h));
	crc = ck_crc32c(crc, rec, rlen);
	return ck_crc32c(crc, data, dlen);
}

/* write(2) all of v[0..nv), however the pipe takes it */
static int writev_all(int fd, struct iovec *v, int nv, struct vs_error *err)
{
	while (nv) {
		ssize_t n = writev(fd, v, nv);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vs_error_sys(err, errno, "checkpoint stream: write");
		while (nv && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			nv--;
		}
		if (nv) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int ck_write_section_direct(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
			    const void *data, size_t dlen, uint32_t crc, struct vs_error *err)
{
	if (w->used)
		return ck_write_section(w, type, rec, rlen, data, dlen, err);
	uint8_t h[16];
	section_head(h, type, rlen + dlen);
	struct iovec iov[4] = {
	    {h, sizeof(h)}, {(void *)rec, rlen}, {(void *)data, dlen}, {&crc, 4}};
	size_t total = sizeof(h) + rlen + dlen + 4;
	int r = writev_all(w->fd, iov, 4, err);
	if (r < 0)
		return r;
	w->total += total;
	w->nr_sections++;
	w->chain = ck_crc32c(w->chain, &crc, 4);
	return 0;
}

bool ck_writer_is_pipe(const struct ck_writer *w)
{
	struct stat st;
	return fstat(w->fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

int ck_write_section_gift(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
			  void *data, size_t dlen, uint32_t crc, struct vs_error *err)
{
	if (w->used)
		return ck_write_section(w, type, rec, rlen, data, dlen, err);
	uint8_t h[16];
	section_head(h, type, rlen + dlen);
	struct iovec hv[2] = {{h, sizeof(h)}, {(void *)rec, rlen}};
	int r = writev_all(w->fd, hv, 2, err);
	/* the pages themselves: references in the pipe, no copy */
	struct iovec dv = {data, dlen};
	while (r >= 0 && dv.iov_len) {
		ssize_t n = vmsplice(w->fd, &dv, 1, SPLICE_F_GIFT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = vs_error_sys(err, n < 0 ? errno : EIO, "checkpoint stream: vmsplice");
			break;
		}
		dv.iov_base = (uint8_t *)dv.iov_base + n;
		dv.iov_len -= (size_t)n;
	}
	struct iovec cv = {&crc, 4};
	if (r < 0 || (r = writev_all(w->fd, &cv, 1, err)) < 0)
		return r;
	w->total += sizeof(h) + rlen + dlen + 4;
	w->nr_sections++;
	w->chain = ck_crc32c(w->chain, &crc, 4);
	return 0;
}

int ck_writer_sync(struct ck_writer *w, struct vs_error *err)
{
	return w_flush(w, err);
}

int ck_writer_continue(struct ck_writer *w, int fd, uint64_t total, uint32_t nr_sections,
		       uint32_t chain, struct vs_error *err)
{
	(void)err;
	w_init(w, fd);
	w->total = total;
	w->nr_sections = nr_sections;
	w->chain = chain;
	return 0;
}

int ck_writer_close(struct ck_writer *w, struct vs_error *err)
{
	struct ck_end e = {
	    .nr_sections = w->nr_sections, .chain_crc = w->chain, .total_len = w->total};
	int r = ck_write_section(w, CK_SEC_END, &e, sizeof(e), NULL, 0, err);
	if (r < 0)
		return r;
	return w_flush(w, err);
}

void ck_writer_free(struct ck_writer *w)
{
	free(w->buf);
	w->buf = NULL;
}

/* --- parser ------------------------------------------------------------ */

static bool has_nul(const char *s, size_t n)
{
	return memchr(s, 0, n) != NULL;
}

/* Copy a fixed record out of an unaligned payload; the payload must hold at
 * least the record. Returns the tail after it. */
#define TAKE(rec, p, len, what)                                                                    \
	do {                                                                                       \
		if ((len) < sizeof(rec))                                                           \
			return vs_error_set(err, EBADMSG,                                          \
					    "checkpoint: %s record truncated (%zu < %zu bytes)",   \
					    what, (size_t)(len), sizeof(rec));                     \
		memcpy(&(rec), (p), sizeof(rec));                                                  \
	} while (0)

static int parse_section(struct ckpt_image *img, uint32_t type, const uint8_t *p, uint64_t len,
			 bool *saw_header, struct vs_error *err)
{
	switch (type) {
	case CK_SEC_HEADER: {
		if (*saw_header)
			return vs_error_set(err, EBADMSG, "checkpoint: second header");
		TAKE(img->hdr, p, len, "header");
		if (len != sizeof(img->hdr) || !has_nul(img->hdr.name, sizeof(img->hdr.name)) ||
		    !has_nul(img->hdr.kernel, sizeof(img->hdr.kernel)))
			return vs_error_set(err, EBADMSG, "checkpoint: bad header record");
		*saw_header = true;
		return 0;
	}
	case CK_SEC_PROC: {
		struct ck_proc r;
		TAKE(r, p, len, "process");
		if (len != sizeof(r) || !has_nul(r.comm, sizeof(r.comm)) ||
		    !has_nul(r.cwd, sizeof(r.cwd)) || !has_nul(r.exe, sizeof(r.exe)) ||
		    r.pid <= 0 || r.ppid < 0 || r.auxv_len > sizeof(r.auxv) || r.ngroups > 32 ||
		    r.nr_threads < 0 || r.nr_threads > 100000 ||
		    (r.state != CK_ALIVE && r.state != CK_ZOMBIE))
			return vs_error_set(err, EBADMSG, "checkpoint: bad process record");
		for (size_t i = 0; i < img->procs.n; i++)
			if (img->procs.v[i].pid == r.pid)
				return vs_error_set(err, EBADMSG, "checkpoint: pid %d twice",
						    r.pid);
		ck_vec_push(&img->procs, r);
		return 0;
	}
	case CK_SEC_THREAD: {
		struct ck_thread_r r;
		TAKE(r.t, p, len, "thread");
		if (len - sizeof(r.t) != r.t.xstate_len || r.t.xstate_len > (1u << 20) ||
		    !has_nul(r.t.comm, sizeof(r.t.comm)) || r.t.tid <= 0)
			return vs_error_set(err, EBADMSG, "checkpoint: bad thread record");
		r.xstate = p + sizeof(r.t);
		ck_vec_push(&img->threads, r);
		return 0;
	}
	case CK_SEC_VMA: {
		struct ck_vma r;
		TAKE(r, p, len, "vma");
		if (len != sizeof(r) || !has_nul(r.path, sizeof(r.path)) || r.end <= r.start ||
		    (r.start | r.end) & 4095 || r.kind < CK_VMA_ANON || r.kind > CK_VMA_SYSV ||
		    (r.flags & ~CK_VMA_F_KNOWN))
			return vs_error_set(err, EBADMSG, "checkpoint: bad vma record");
		ck_vec_push(&img->vmas, r);
		return 0;
	}
	case CK_SEC_PAGES: {
		struct ck_pages_r r;
		TAKE(r.h, p, len, "pages");
		if (len - sizeof(r.h) != r.h.len || (r.h.addr & 4095) ||
		    r.h.addr + r.h.len < r.h.addr)
			return vs_error_set(err, EBADMSG, "checkpoint: bad pages record");
		r.data = p + sizeof(r.h);
		ck_vec_push(&img->pages, r);
		return 0;
	}
	case CK_SEC_FILE: {
		struct ck_file r;
		TAKE(r, p, len, "file");
		if (len != sizeof(r) || !has_nul(r.path, sizeof(r.path)) ||
		    r.sk_name_len > sizeof(r.sk_name) || r.kind < CK_F_REG || r.kind > CK_F_MEMFD ||
		    (r.kind == CK_F_MEMFD && (r.u[2] & ~0x3full)))
			return vs_error_set(err, EBADMSG, "checkpoint: bad file record");
		for (size_t i = 0; i < img->files.n; i++)
			if (img->files.v[i].id == r.id)
				return vs_error_set(err, EBADMSG, "checkpoint: file id %u twice",
						    r.id);
		ck_vec_push(&img->files, r);
		return 0;
	}
	case CK_SEC_FD: {
		struct ck_fd r;
		TAKE(r, p, len, "fd");
		if (len != sizeof(r) || r.fd < 0 || r.fd > (1 << 20))
			return vs_error_set(err, EBADMSG, "checkpoint: bad fd record");
		ck_vec_push(&img->fds, r);
		return 0;
	}
	case CK_SEC_DATA: {
		struct ck_data_r r;
		TAKE(r.h, p, len, "data");
		if (len - sizeof(r.h) != r.h.len || r.h.kind < CK_D_GHOST ||
		    r.h.kind > CK_D_UDP_DGRAM)
			return vs_error_set(err, EBADMSG, "checkpoint: bad data record");
		r.data = p + sizeof(r.h);
		ck_vec_push(&img->data, r);
		return 0;
	}
	case CK_SEC_EPOLL: {
		struct ck_epoll r;
		TAKE(r, p, len, "epoll");
		if (len != sizeof(r) || r.tfd < 0)
			return vs_error_set(err, EBADMSG, "checkpoint: bad epoll record");
		ck_vec_push(&img->epolls, r);
		return 0;
	}
	case CK_SEC_SIGINFO: {
		struct ck_siginfo r;
		TAKE(r, p, len, "siginfo");
		if (len != sizeof(r))
			return vs_error_set(err, EBADMSG, "checkpoint: bad siginfo record");
		ck_vec_push(&img->siginfos, r);
		return 0;
	}
	case CK_SEC_TIMER: {
		struct ck_timer r;
		TAKE(r, p, len, "timer");
		if (len != sizeof(r))
			return vs_error_set(err, EBADMSG, "checkpoint: bad timer record");
		ck_vec_push(&img->timers, r);
		return 0;
	}
	case CK_SEC_SECCOMP: {
		struct ck_seccomp_r r;
		TAKE(r.h, p, len, "seccomp");
		if (len - sizeof(r.h) != (uint64_t)r.h.nr_insns * 8 || r.h.nr_insns == 0 ||
		    r.h.nr_insns > 4096)
			return vs_error_set(err, EBADMSG, "checkpoint: bad seccomp record");
		r.insns = p + sizeof(r.h);
		ck_vec_push(&img->seccomps, r);
		return 0;
	}
	case CK_SEC_FSENTRY: {
		struct ck_fsentry_r r;
		TAKE(r.h, p, len, "fs entry");
		uint64_t tail = (uint64_t)r.h.path_len + r.h.link_len + r.h.xattr_len;
		if (len - sizeof(r.h) != tail || r.h.path_len < 2 || r.h.link_len < 1)
			return vs_error_set(err, EBADMSG, "checkpoint: bad fs entry record");
		r.path = (const char *)p + sizeof(r.h);
		r.link = r.path + r.h.path_len;
		r.xattrs = (const uint8_t *)r.link + r.h.link_len;
		if (r.path[r.h.path_len - 1] || strlen(r.path) != r.h.path_len - 1 ||
		    r.link[r.h.link_len - 1] || strlen(r.link) != r.h.link_len - 1)
			return vs_error_set(err, EBADMSG, "checkpoint: fs entry: bad strings");
		/* only overlay whiteouts as devices: a stream must not plant nodes */
		if (S_ISBLK(r.h.mode) || (S_ISCHR(r.h.mode) && r.h.rdev != 0) ||
		    (!S_ISREG(r.h.mode) && !S_ISDIR(r.h.mode) && !S_ISLNK(r.h.mode) &&
		     !S_ISCHR(r.h.mode) && !S_ISFIFO(r.h.mode) && !S_ISSOCK(r.h.mode)))
			return vs_error_set(err, EBADMSG,
					    "checkpoint: fs entry: refused file type %#o",
					    r.h.mode & S_IFMT);
		/* relative, no "..", no empty components: extraction stays inside */
		if (r.path[0] == '/' || strstr(r.path, "//"))
			return vs_error_set(err, EBADMSG, "checkpoint: fs entry: bad path");
		for (const char *c = r.path; *c;) {
			size_t n = strcspn(c, "/");
			if ((n == 2 && c[0] == '.' && c[1] == '.') || (n == 1 && c[0] == '.'))
				return vs_error_set(err, EBADMSG, "checkpoint: fs entry: bad path");
			c += n;
			if (*c == '/')
				c++;
		}
		if (img->fs_n == img->fs_cap) {
			img->fs_cap = img->fs_cap ? img->fs_cap * 2 : 64;
			img->fs = ck_xrealloc(img->fs, img->fs_cap * sizeof(*img->fs));
		}
		img->fs[img->fs_n++] = r;
		return 0;
	}
	case CK_SEC_FSDATA: {
		struct ck_fsdata_r r;
		TAKE(r.h, p, len, "fs data");
		r.data = p + sizeof(r.h);
		r.len = len - sizeof(r.h);
		if (!img->fs_n || r.h.entry != img->fs_n - 1 ||
		    !S_ISREG(img->fs[r.h.entry].h.mode) || r.h.off > img->fs[r.h.entry].h.size ||
		    r.len > img->fs[r.h.entry].h.size - r.h.off)
			return vs_error_set(err, EBADMSG, "checkpoint: bad fs data record");
		if (img->fsd_n == img->fsd_cap) {
			img->fsd_cap = img->fsd_cap ? img->fsd_cap * 2 : 64;
			img->fsd = ck_xrealloc(img->fsd, img->fsd_cap * sizeof(*img->fsd));
		}
		img->fsd[img->fsd_n++] = r;
		return 0;
	}
	case CK_SEC_INOTIFY: { /* fd-level (files.c) */
		struct ck_inotify r;
		TAKE(r, p, len, "inotify");
		if (len != sizeof(r) || r.wd <= 0 || !has_nul(r.path, sizeof(r.path)) ||
		    r.path[0] != '/')
			return vs_error_set(err, EBADMSG, "checkpoint: bad inotify record");
		ck_vec_push(&img->inotify, r);
		return 0;
	}
	case CK_SEC_INET: { /* fd-level (files.c) */
		struct ck_inet r;
		TAKE(r, p, len, "inet");
		if (len != sizeof(r) || (r.family != AF_INET && r.family != AF_INET6) ||
		    (r.type != SOCK_STREAM && r.type != SOCK_DGRAM) ||
		    r.local_len > sizeof(r.local) || r.peer_len > sizeof(r.peer) ||
		    r.nopts > CK_INET_OPTS || r.unsent_len > r.outq_len)
			return vs_error_set(err, EBADMSG, "checkpoint: bad inet socket record");
		ck_vec_push(&img->inets, r);
		return 0;
	}
	case CK_SEC_SYSV: { /* fd-level (files.c) */
		struct ck_sysv r;
		TAKE(r, p, len, "sysv");
		if (len != sizeof(r) || r.kind < CK_SYSV_SHM || r.kind > CK_SYSV_SEM || r.id < 0 ||
		    (r.mode & ~0777u) || (r.kind == CK_SYSV_SEM && (r.size == 0 || r.size > 65536)))
			return vs_error_set(err, EBADMSG, "checkpoint: bad SysV IPC record");
		for (size_t i = 0; i < img->sysv.n; i++)
			if (img->sysv.v[i].kind == r.kind && img->sysv.v[i].id == r.id)
				return vs_error_set(err, EBADMSG,
						    "checkpoint: SysV IPC id %d twice", r.id);
		ck_vec_push(&img->sysv, r);
		return 0;
	}
	case CK_SEC_LOCK: { /* fd-level (files.c) */
		struct ck_lock r;
		TAKE(r, p, len, "lock");
		if (len != sizeof(r) || r.kind < CK_LOCK_POSIX || r.kind > CK_LOCK_FLOCK ||
		    (r.type != F_RDLCK && r.type != F_WRLCK) || r.start < 0 || r.len < 0 ||
		    (r.kind == CK_LOCK_POSIX && (r.fd < 0 || r.fd > (1 << 20))))
			return vs_error_set(err, EBADMSG, "checkpoint: bad lock record");
		ck_vec_push(&img->locks, r);
		return 0;
	}
	case CK_SEC_EXTRA:
		if (img->extra.p)
			return vs_error_set(err, EBADMSG, "checkpoint: second extra section");
		img->extra.p = p;
		img->extra.len = len;
		return 0;
	default:
		/* Unknown sections are an error: a newer writer needs a newer version. */
		return vs_error_set(err, EBADMSG, "checkpoint: unknown section type %u", type);
	}
}

bool ck_pages_inside(const struct ckpt_image *img, const struct ck_pages *pg)
{
	for (size_t j = 0; j < img->vmas.n; j++) {
		const struct ck_vma *v = &img->vmas.v[j];
		if (v->pid == pg->pid && (v->kind == CK_VMA_ANON || v->kind == CK_VMA_FILE) &&
		    pg->addr >= v->start && pg->addr + pg->len <= v->end)
			return true;
	}
	return false;
}

/* Cross-record checks: every reference points at something that exists. */
static int validate(struct ckpt_image *img, struct vs_error *err)
{
	if (!img->procs.n)
		return vs_error_set(err, EBADMSG, "checkpoint: no processes");
	if (!ck_image_proc(img, (pid_t)img->hdr.root_pid))
		return vs_error_set(err, EBADMSG, "checkpoint: root pid %u has no record",
				    img->hdr.root_pid);
	if (img->hdr.nr_procs != img->procs.n)
		return vs_error_set(err, EBADMSG, "checkpoint: header says %u processes, found %zu",
				    img->hdr.nr_procs, img->procs.n);
	/* The root comes first; parents come before children; ppid 0 = a
	 * child of the slice's PID 1, which never keeps zombies. */
	if (img->procs.v[0].pid != (pid_t)img->hdr.root_pid || img->procs.v[0].ppid != 0)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: root pid %u is not the first process",
				    img->hdr.root_pid);
	for (size_t i = 0; i < img->procs.n; i++) {
		const struct ck_proc *pr = &img->procs.v[i];
		if (pr->ppid == 0 && pr->state != CK_ALIVE)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: pid %d: a zombie child of PID 1", pr->pid);
		if (pr->ppid == 0)
			continue;
		bool found = false;
		for (size_t j = 0; j < i; j++)
			if (img->procs.v[j].pid == pr->ppid)
				found = true;
		if (!found)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: pid %d: parent %d not before it", pr->pid,
					    pr->ppid);
	}
	for (size_t i = 0; i < img->threads.n; i++) {
		const struct ck_proc *pr = ck_image_proc(img, img->threads.v[i].t.pid);
		if (!pr || pr->state != CK_ALIVE)
			return vs_error_set(err, EBADMSG, "checkpoint: thread %d of unknown pid %d",
					    img->threads.v[i].t.tid, img->threads.v[i].t.pid);
	}
	for (size_t i = 0; i < img->vmas.n; i++)
		if (!ck_image_proc(img, img->vmas.v[i].pid))
			return vs_error_set(err, EBADMSG, "checkpoint: vma of unknown pid %d",
					    img->vmas.v[i].pid);
	for (size_t i = 0; i < img->pages.n; i++) {
		const struct ck_pages *pg = &img->pages.v[i].h;
		if (!ck_pages_inside(img, pg))
			return vs_error_set(err, EBADMSG,
					    "checkpoint: pages %#" PRIx64 "+%" PRIu64
					    " of pid %d outside its vmas",
					    pg->addr, pg->len, pg->pid);
	}
	for (size_t i = 0; i < img->inotify.n; i++) {
		const struct ck_inotify *n = &img->inotify.v[i];
		bool ok = false;
		for (size_t j = 0; j < img->files.n && !ok; j++)
			ok = img->files.v[j].id == n->file_id &&
			     img->files.v[j].kind == CK_F_INOTIFY;
		if (!ok)
			return vs_error_set(
			    err, EBADMSG, "checkpoint: inotify watch %d of file %u: bad reference",
			    n->wd, n->file_id);
	}
	for (size_t i = 0; i < img->inets.n; i++) {
		const struct ck_inet *n = &img->inets.v[i];
		bool ok = false;
		for (size_t j = 0; j < img->files.n && !ok; j++)
			ok = img->files.v[j].id == n->file_id && img->files.v[j].kind == CK_F_INET;
		for (size_t j = 0; j < i && ok; j++)
			ok = img->inets.v[j].file_id != n->file_id;
		if (!ok)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: inet socket of file %u: bad reference",
					    n->file_id);
	}
	for (size_t i = 0; i < img->locks.n; i++) {
		const struct ck_lock *l = &img->locks.v[i];
		bool ok = false;
		for (size_t j = 0; j < img->files.n && !ok; j++)
			ok = img->files.v[j].id == l->file_id;
		if (!ok || (l->kind == CK_LOCK_POSIX && !ck_image_proc(img, l->pid)))
			return vs_error_set(
			    err, EBADMSG, "checkpoint: lock on file %u: bad reference", l->file_id);
	}
	for (size_t i = 0; i < img->fds.n; i++) {
		const struct ck_fd *f = &img->fds.v[i];
		bool ok = false;
		for (size_t j = 0; j < img->files.n && !ok; j++)
			ok = img->files.v[j].id == f->file_id;
		if (!ok || !ck_image_proc(img, f->pid))
			return vs_error_set(err, EBADMSG,
					    "checkpoint: fd %d of pid %d: bad reference", f->fd,
					    f->pid);
	}
	return 0;
}

/* --- reading sections: a buffer or an fd ---------------------------------- */

/* A metadata section read from an fd is held whole: bound it (page runs
 * are not held, they stream). */
#define CK_META_MAX (64ull << 20)

/* n bytes of the stream; in buffer mode *ptr points into it, from an fd
 * into dst (n bytes). Truncation is EBADMSG. */
static int rd_read(struct ck_reader *r, void *dst, const uint8_t **ptr, size_t n,
		   struct vs_error *err)
{
	if (r->fd < 0) {
		if (n > r->buf_len - r->off)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: stream ends at %zu inside a section "
					    "(truncated)",
					    r->buf_len);
		if (ptr)
			*ptr = r->buf + r->off;
		if (dst)
			memcpy(dst, r->buf + r->off, n);
		r->off += n;
		return 0;
	}
	size_t got = 0;
	uint64_t t0 = vs_now_ns();
	while (got < n) {
		ssize_t k = read(r->fd, (uint8_t *)dst + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return vs_error_sys(err, errno, "checkpoint: read stream");
		if (k == 0)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: stream ends at %" PRIu64
					    " inside a section (truncated)",
					    r->off + got);
		got += (size_t)k;
	}
	r->read_ns += vs_now_ns() - t0;
	if (ptr)
		*ptr = dst;
	r->off += n;
	return 0;
}

static int rd_stream_head(struct ck_reader *r, struct vs_error *err)
{
	uint8_t h[16];
	if (r->fd < 0 && r->buf_len < 16)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: not a vslice checkpoint (bad magic)");
	int rr = rd_read(r, h, NULL, 16, err);
	if (rr < 0)
		return rr;
	if (memcmp(h, CK_MAGIC, 8) != 0)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: not a vslice checkpoint (bad magic)");
	uint32_t version, flags;
	memcpy(&version, h + 8, 4);
	memcpy(&flags, h + 12, 4);
	if (version != CK_VERSION)
		return vs_error_set(err, EPROTONOSUPPORT,
				    "checkpoint: format version %u, expected %u", version,
				    CK_VERSION);
	if (flags & ~CK_FLAG_PRECOPY)
		return vs_error_set(err, EPROTONOSUPPORT, "checkpoint: unknown stream flags %#x",
				    flags);
	r->flags = flags;
	r->round = -1;
	return 0;
}

/* The next section's head (type, length); its payload is still unread. */
static int rd_head(struct ck_reader *r, struct vs_error *err)
{
	uint64_t at = r->off;
	if (r->fd < 0 && at == r->buf_len)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: stream ends without an end record (truncated)");
	if (r->fd < 0 && r->buf_len - at < 20)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: truncated section header at %" PRIu64, at);
	uint8_t h[16];
	int rr = rd_read(r, h, NULL, 16, err);
	if (rr < 0)
		return rr;
	memcpy(&r->type, h, 4);
	memcpy(&r->left, h + 8, 8);
	if (r->fd < 0 && r->left > r->buf_len - r->off - 4)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: section %u at %" PRIu64 ": length %" PRIu64
				    " past the end",
				    r->type, at, r->left);
	r->crc = ck_crc32c(0, h, 16);
	r->have_head = true;
	return 0;
}

/* n payload bytes of the current section (CRC'ed as they pass). */
static int rd_payload(struct ck_reader *r, void *dst, const uint8_t **ptr, size_t n,
		      struct vs_error *err)
{
	if (n > r->left)
		return vs_error_set(err, EBADMSG, "checkpoint: section %u: record past its end",
				    r->type);
	const uint8_t *p = NULL;
	int rr = rd_read(r, dst, &p, n, err);
	if (rr < 0)
		return rr;
	uint64_t t0 = vs_now_ns();
	r->crc = ck_crc32c(r->crc, p, n);
	r->crc_ns += vs_now_ns() - t0;
	r->left -= n;
	if (ptr)
		*ptr = p;
	return 0;
}

/* The section's CRC trailer: the section counts only once it matches. */
static int rd_trailer(struct ck_reader *r, struct vs_error *err)
{
	uint32_t want;
	int rr = rd_read(r, &want, NULL, 4, err);
	if (rr < 0)
		return rr;
	if (want != r->crc)
		return vs_error_set(
		    err, EBADMSG, "checkpoint: section %u ending at %" PRIu64 ": checksum mismatch",
		    r->type, r->off);
	r->nsec++;
	r->chain = ck_crc32c(r->chain, &r->crc, 4);
	r->have_head = false;
	return 0;
}

/* The END record (head read): it must count and chain every section. */
static int rd_end(struct ck_reader *r, struct vs_error *err)
{
	uint64_t at = r->off - 16;
	uint32_t nsec = r->nsec, chain = r->chain;
	struct ck_end e;
	if (r->left != sizeof(e))
		return vs_error_set(err, EBADMSG, "checkpoint: bad end record");
	int rr = rd_payload(r, &e, NULL, sizeof(e), err);
	if (rr < 0 || (rr = rd_trailer(r, err)) < 0)
		return rr;
	if (e.nr_sections != nsec || e.chain_crc != chain || e.total_len != at)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: end record does not match the stream "
				    "(%u sections, %u read)",
				    e.nr_sections, nsec);
	r->done = true;
	return 0;
}

/* A ROUND marker (head read): rounds come in increasing order. */
static int rd_round(struct ck_reader *r, struct vs_error *err)
{
	struct ck_round rec;
	if (r->left != sizeof(rec))
		return vs_error_set(err, EBADMSG, "checkpoint: bad page round record");
	int rr = rd_payload(r, &rec, NULL, sizeof(rec), err);
	if (rr < 0 || (rr = rd_trailer(r, err)) < 0)
		return rr;
	if ((int64_t)rec.round <= r->round)
		return vs_error_set(err, EBADMSG, "checkpoint: page round %u after round %" PRId64,
				    rec.round, r->round);
	r->round = rec.round;
	r->in_rounds = true;
	return 0;
}

/* A PAGES record (head read, payload not): checked, payload left unread. */
static int rd_pages_head(struct ckpt_image *img, struct ck_pages *pg, struct vs_error *err)
{
	struct ck_reader *r = &img->rd;
	if (!r->in_rounds)
		return vs_error_set(err, EBADMSG, "checkpoint: pages outside a page round");
	if (r->left < sizeof(*pg))
		return vs_error_set(err, EBADMSG, "checkpoint: pages record truncated");
	int rr = rd_payload(r, pg, NULL, sizeof(*pg), err);
	if (rr < 0)
		return rr;
	if (r->left != pg->len || (pg->addr & 4095) || pg->addr + pg->len < pg->addr)
		return vs_error_set(err, EBADMSG, "checkpoint: bad pages record");
	if (!ck_pages_inside(img, pg))
		return vs_error_set(err, EBADMSG,
				    "checkpoint: pages %#" PRIx64 "+%" PRIu64
				    " of pid %d outside its vmas",
				    pg->addr, pg->len, pg->pid);
	return 0;
}

/* Sections up to the first page round (fd) or the END (buffer). */
static int rd_sections(struct ckpt_image *img, struct vs_error *err)
{
	struct ck_reader *r = &img->rd;
	bool saw_header = false;
	for (;;) {
		int rr = r->have_head ? 0 : rd_head(r, err);
		if (rr < 0)
			return rr;
		uint64_t at = r->off - 16;
		if (r->type == CK_SEC_END || r->type == CK_SEC_ROUND) {
			if (!saw_header)
				return vs_error_set(err, EBADMSG,
						    "checkpoint: first section is not the header");
			if (r->fd >= 0)
				return 0; /* the restore reads on (memory.c) */
			rr = r->type == CK_SEC_END ? rd_end(r, err) : rd_round(r, err);
			if (rr < 0)
				return rr;
			if (r->done)
				return 0;
			continue;
		}
		if (!saw_header && r->type != CK_SEC_HEADER)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: first section is not the header");
		if (r->type == CK_SEC_PAGES) {
			if (r->fd >= 0)
				return vs_error_set(err, EBADMSG,
						    "checkpoint: pages outside a page round");
			struct ck_pages_r pg;
			if ((rr = rd_pages_head(img, &pg.h, err)) < 0)
				return rr;
			if ((rr = rd_payload(r, NULL, &pg.data, pg.h.len, err)) < 0 ||
			    (rr = rd_trailer(r, err)) < 0)
				return rr;
			ck_vec_push(&img->pages, pg);
			continue;
		}
		if (r->in_rounds)
			return vs_error_set(err, EBADMSG,
					    "checkpoint: section %u at %" PRIu64
					    " after the page rounds",
					    r->type, at);
		uint64_t len = r->left;
		void *chunk = NULL;
		if (r->fd >= 0) {
			if (len > CK_META_MAX)
				return vs_error_set(err, EBADMSG,
						    "checkpoint: section %u at %" PRIu64
						    ": length %" PRIu64 " too big",
						    r->type, at, len);
			chunk = vs_xmalloc(len ? len : 1);
			ck_vec_push(&img->chunks, chunk);
		}
		const uint8_t *payload;
		if ((rr = rd_payload(r, chunk, &payload, len, err)) < 0 ||
		    (rr = rd_trailer(r, err)) < 0)
			return rr;
		if ((rr = parse_section(img, r->type, payload, len, &saw_header, err)) < 0)
			return rr;
	}
}

static struct ckpt_image *image_new(int fd, const void *buf, size_t len)
{
	struct ckpt_image *img = vs_xcalloc(1, sizeof(*img));
	img->rd.fd = fd;
	img->rd.buf = buf;
	img->rd.buf_len = len;
	void *box = mmap(NULL, sizeof(*img->errbox), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	img->errbox = box == MAP_FAILED ? NULL : box;
	return img;
}

/*
 * A pre-copy stream (CK_FLAG_PRECOPY) opens with the page rounds written
 * while the tree ran, before any record: there are no vmas yet to check
 * them against, so their pages go to the spool (spool.c), which the
 * restore applies - clipped to the final vmas - before the rounds that
 * follow the records. Stops with the first other section's head read.
 */
static int rd_pre_rounds(struct ckpt_image *img, struct vs_error *err)
{
	struct ck_reader *r = &img->rd;
	cleanup_free uint8_t *piece = NULL;
	for (;;) {
		int rr = rd_head(r, err);
		if (rr < 0)
			return rr;
		if (r->type == CK_SEC_ROUND) {
			struct ck_round rec;
			if (r->left != sizeof(rec))
				return vs_error_set(err, EBADMSG,
						    "checkpoint: bad page round record");
			if ((rr = rd_payload(r, &rec, NULL, sizeof(rec), err)) < 0 ||
			    (rr = rd_trailer(r, err)) < 0)
				return rr;
			if ((int64_t)rec.round <= r->round)
				return vs_error_set(
				    err, EBADMSG, "checkpoint: page round %u after round %" PRId64,
				    rec.round, r->round);
			r->round = rec.round;
			continue;
		}
		if (r->type != CK_SEC_PAGES)
			return 0;
		struct ck_pages pg;
		if (r->round < 0)
			return vs_error_set(err, EBADMSG, "checkpoint: pages outside a page round");
		if (r->left < sizeof(pg) || (rr = rd_payload(r, &pg, NULL, sizeof(pg), err)) < 0)
			return r->left < sizeof(pg)
				   ? vs_error_set(err, EBADMSG,
						  "checkpoint: pages record truncated")
				   : rr;
		if (r->left != pg.len || (pg.addr & 4095) || (pg.len & 4095) ||
		    pg.addr + pg.len < pg.addr || pg.addr + pg.len > CK_SPOOL_ADDR_MAX)
			return vs_error_set(err, EBADMSG, "checkpoint: bad pre-copy pages record");
		if (!img->spool && !img->spool_discard && (rr = ck_spool_new(&img->spool, err)) < 0)
			return rr;
		if (!img->spool && !piece)
			piece = vs_xmalloc(CK_SPOOL_PIECE);
		/* kept: read straight into the spool's memory; only checked:
		 * through a buffer */
		for (uint64_t done = 0; done < pg.len;) {
			uint8_t *dst = piece;
			size_t n = pg.len - done < CK_SPOOL_PIECE ? (size_t)(pg.len - done)
								  : CK_SPOOL_PIECE;
			if ((img->spool && (rr = ck_spool_at(img->spool, pg.pid, pg.addr + done,
							     pg.len - done, &dst, &n, err)) < 0) ||
			    (rr = rd_payload(r, dst, NULL, n, err)) < 0)
				return rr;
			done += n;
		}
		if ((rr = rd_trailer(r, err)) < 0)
			return rr;
	}
}

/* Header, records and their cross-checks of a new image; frees it on failure. */
static int image_read_records(struct ckpt_image *img, struct vs_error *err)
{
	int r = rd_stream_head(&img->rd, err);
	if (r >= 0 && (img->rd.flags & CK_FLAG_PRECOPY))
		r = rd_pre_rounds(img, err);
	if (r >= 0)
		r = rd_sections(img, err);
	if (r >= 0)
		r = validate(img, err);
	if (r < 0)
		ckpt_image_free(img);
	return r;
}

int ckpt_image_parse(const void *buf, size_t len, struct ckpt_image **out, struct vs_error *err)
{
	*out = NULL;
	struct ckpt_image *img = image_new(-1, buf, len);
	int r = image_read_records(img, err);
	if (r < 0)
		return r;
	img->nr_sections = img->rd.nsec;
	*out = img;
	return 0;
}

int ckpt_image_read_fd(int fd, struct ckpt_image **out, struct vs_error *err)
{
	*out = NULL;
	ck_pipe_grow(fd);
	struct ckpt_image *img = image_new(fd, NULL, 0);
	int r = image_read_records(img, err);
	if (r < 0)
		return r;
	*out = img;
	return 0;
}

int ck_stream_next_pages(struct ckpt_image *img, struct ck_pages *pg, uint32_t *round,
			 struct vs_error *err)
{
	struct ck_reader *r = &img->rd;
	for (;;) {
		if (r->done)
			return 0;
		int rr = r->have_head ? 0 : rd_head(r, err);
		if (rr < 0)
			return rr;
		if (r->type == CK_SEC_END) {
			if ((rr = rd_end(r, err)) < 0)
				return rr;
			img->nr_sections = r->nsec;
			return 0;
		}
		if (r->type == CK_SEC_ROUND) {
			if ((rr = rd_round(r, err)) < 0)
				return rr;
			continue;
		}
		if (r->type != CK_SEC_PAGES)
			return vs_error_set(
			    err, EBADMSG, "checkpoint: section %u inside the page rounds", r->type);
		if ((rr = rd_pages_head(img, pg, err)) < 0)
			return rr;
		*round = (uint32_t)r->round;
		return 1;
	}
}

int ck_stream_payload(struct ckpt_image *img, void *buf, size_t n, struct vs_error *err)
{
	return rd_payload(&img->rd, buf, NULL, n, err);
}

int ck_stream_section_end(struct ckpt_image *img, struct vs_error *err)
{
	if (img->rd.left)
		return vs_error_set(err, EBADMSG, "checkpoint: section %u: payload left unread",
				    img->rd.type);
	return rd_trailer(&img->rd, err);
}

int ckpt_image_verify_fd(int fd, struct vs_error *err)
{
	struct ckpt_image *img = image_new(fd, NULL, 0);
	img->spool_discard = true; /* checked, not kept */
	int r = image_read_records(img, err);
	if (r < 0)
		return r;
	uint8_t *piece = vs_xmalloc(1u << 20);
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			break;
		for (uint64_t done = 0; r >= 0 && done < pg.len;) {
			size_t n =
			    pg.len - done < (1u << 20) ? (size_t)(pg.len - done) : (1u << 20);
			r = ck_stream_payload(img, piece, n, err);
			done += n;
		}
		if (r >= 0)
			r = ck_stream_section_end(img, err);
		if (r < 0)
			break;
	}
	free(piece);
	ckpt_image_free(img);
	return r;
}

void ckpt_image_free(struct ckpt_image *img)
{
	if (!img)
		return;
	free(img->procs.v);
	free(img->threads.v);
	free(img->vmas.v);
	free(img->pages.v);
	free(img->files.v);
	free(img->fds.v);
	free(img->data.v);
	free(img->epolls.v);
	free(img->locks.v);
	free(img->inotify.v);
	free(img->inets.v);
	free(img->sysv.v);
	free(img->siginfos.v);
	free(img->timers.v);
	free(img->seccomps.v);
	free(img->fs);
	free(img->fsd);
	ck_spool_free(img->spool);
	if (img->errbox)
		munmap(img->errbox, sizeof(*img->errbox));
	for (size_t i = 0; i < img->chunks.n; i++)
		free(img->chunks.v[i]);
	free(img->chunks.v);
	free(img);
}

const struct ck_proc *ck_image_proc(const struct ckpt_image *img, pid_t pid)
{
	for (size_t i = 0; i < img->procs.n; i++)
		if (img->procs.v[i].pid == pid)
			return &img->procs.v[i];
	return NULL;
}

const char *ckpt_image_restore_error(const struct ckpt_image *img)
{
	/* 1: a stub is still writing it; 2: complete */
	if (!img->errbox || __atomic_load_n(&img->errbox->claimed, __ATOMIC_ACQUIRE) != 2)
		return NULL;
	return img->errbox->msg;
}

pid_t ckpt_image_root_pid(const struct ckpt_image *img)
{
	return (pid_t)img->hdr.root_pid;
}
int64_t ckpt_image_monotonic_ns(const struct ckpt_image *img)
{
	return img->hdr.mono_ns;
}
int64_t ckpt_image_boottime_ns(const struct ckpt_image *img)
{
	return img->hdr.boot_ns;
}
const char *ckpt_image_name(const struct ckpt_image *img)
{
	return img->hdr.name;
}

const void *ckpt_image_extra(const struct ckpt_image *img, size_t *len)
{
	if (len)
		*len = img->extra.len;
	return img->extra.p;
}

/* --- stats ------------------------------------------------------------- */

void ckpt_stats_format(const struct ckpt_stats *s, char *buf, size_t len)
{
	double gib = s->pages_written * 4096.0 / (1u << 30);
	if (!s->dump_ns && s->restore_ns) {
		double secs = s->memrestore_ns / 1e9;
		snprintf(buf, len,
			 "restore %.2f ms (stubs ready after %.2f ms, %" PRIu64
			 " injected syscalls, %" PRIu64
			 " pages written; memory %.2f ms, %.2f GiB/s: "
			 "read %.2f ms, crc %.2f ms, write %.2f ms)",
			 s->restore_ns / 1e6, s->forking_ns / 1e6, s->injected_syscalls,
			 s->pages_written, s->memrestore_ns / 1e6, secs > 0 ? gib / secs : 0.0,
			 s->mem_read_ns / 1e6, s->mem_crc_ns / 1e6, s->mem_write_ns / 1e6);
		return;
	}
	double mib = s->bytes_written / 1048576.0;
	double secs = s->memdump_ns / 1e9;
	snprintf(buf, len,
		 "procs %u threads %u vmas %u fds %u | check %.2f ms freeze %.2f ms frozen %.2f ms "
		 "dump %.2f ms "
		 "(memory %.2f ms, %.2f GiB/s: read %.2f ms, crc %.2f ms, write %.2f ms) | pages "
		 "scanned %" PRIu64 " written %" PRIu64 " | %.2f MiB",
		 s->nr_procs, s->nr_threads, s->nr_vmas, s->nr_fds, s->check_ns / 1e6,
		 s->freeze_ns / 1e6, s->frozen_ns / 1e6, s->dump_ns / 1e6, s->memdump_ns / 1e6,
		 secs > 0 ? gib / secs : 0.0, s->mem_read_ns / 1e6, s->mem_crc_ns / 1e6,
		 s->mem_write_ns / 1e6, s->pages_scanned, s->pages_written, mib);
	if (s->restore_ns) {
		size_t n = strlen(buf);
		snprintf(buf + n, len - n,
			 " | restore %.2f ms (forking %.2f ms, %" PRIu64
			 " injected syscalls, memory %.2f ms)",
			 s->restore_ns / 1e6, s->forking_ns / 1e6, s->injected_syscalls,
			 s->memrestore_ns / 1e6);
	}
}

int ckpt_stats_write_json(const char *path, const struct ckpt_stats *s, struct vs_error *err)
{
	char buf[1536];
	int n = snprintf(
	    buf, sizeof(buf),
	    "{\n  \"check_time_ns\": %" PRIu64 ",\n  \"freezing_time_ns\": %" PRIu64
	    ",\n  \"frozen_time_ns\": %" PRIu64 ",\n  \"dump_time_ns\": %" PRIu64
	    ",\n  \"memdump_time_ns\": %" PRIu64 ",\n  \"pages_scanned\": %" PRIu64
	    ",\n  \"pages_written\": %" PRIu64 ",\n  \"bytes_written\": %" PRIu64
	    ",\n  \"restore_time_ns\": %" PRIu64 ",\n  \"forking_time_ns\": %" PRIu64
	    ",\n  \"injected_syscalls\": %" PRIu64 ",\n  \"memrestore_time_ns\": %" PRIu64
	    ",\n  \"mem_read_time_ns\": %" PRIu64 ",\n  \"mem_crc_time_ns\": %" PRIu64
	    ",\n  \"mem_write_time_ns\": %" PRIu64
	    ",\n  \"processes\": %u,\n  \"threads\": %u,\n  \"vmas\": %u,\n  \"fds\": %u\n}\n",
	    s->check_ns, s->freeze_ns, s->frozen_ns, s->dump_ns, s->memdump_ns, s->pages_scanned,
	    s->pages_written, s->bytes_written, s->restore_ns, s->forking_ns, s->injected_syscalls,
	    s->memrestore_ns, s->mem_read_ns, s->mem_crc_ns, s->mem_write_ns, s->nr_procs,
	    s->nr_threads, s->nr_vmas, s->nr_fds);
	if (s->nr_rounds) {
		/* pre-copy (dirty.c): the rounds go in before the closing brace */
		cleanup_free char *big = ckpt_stats_json_rounds(s, buf, (size_t)n);
		return vs_write_file_atomic(path, big, strlen(big), 0644, err);
	}
	return vs_write_file_atomic(path, buf, (size_t)n, 0644, err);
}
