/*
 * memory.c - the pages of a checkpoint, dump and restore in one place.
 *
 * Dump: the vma pass (dump.c) records each range that may carry pages in
 * a ck_memset; ck_mem_write_round() then walks /proc/PID/pagemap of every
 * range and writes the pages a predicate picks as one page round: a
 * CK_SEC_ROUND marker, then CK_SEC_PAGES runs. Rounds are the unit a
 * pre-copy repeats: round 0 = everything present, round N = what a tracker
 * says was written since round N-1 (the predicate; the tracking itself is
 * not here).
 *
 * Restore: ck_mem_restore() applies the rounds in stream order - a later
 * round's page simply overwrites an earlier one's - into the processes
 * ckpt_restore_finish() re-mapped (every vma that takes pages is mapped
 * writable until the rounds are done). Nothing is trusted until the END
 * record is verified; a failure before it leaves the caller to kill what
 * it restored.
 *
 * Both directions are a two-stage pipeline over NPIECE buffers of PIECE
 * bytes (a bounded queue: memory held is NPIECE * PIECE whatever the
 * slice's size):
 *
 *   dump:     caller's thread: pagemap -> runs -> one process_vm_readv per
 *             batch of up to BATCH_IOV runs (remote iovec array) into a
 *             piece, CRCs  ==>  writer thread: one writev per PAGES section
 *   restore:  caller's thread: read + CRC the stream into a piece
 *             ==>  writer thread: UFFDIO_COPY into the process's missing
 *             pages (restore.c arms a userfaultfd), process_vm_writev
 *             where that does not apply
 *
 * so reading and writing overlap (two CPUs) and neither side copies more
 * than the kernel makes it. The caller's thread keeps every error path it
 * had: the writer thread only reports into its own vs_error and stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <linux/userfaultfd.h>
#include <unistd.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#define PM_PRESENT (1ull << 63)
#define PM_SWAP	   (1ull << 62)
#define PM_FILE	   (1ull << 61)

#define PIECE	  (4u << 20) /* bytes of one buffer: the most a PAGES section holds */
#define NPIECE	  4	     /* buffers in flight between the two threads */
#define BATCH_IOV 256	     /* runs read by one process_vm_readv */
#define HUGE	  (2u << 20) /* a transparent huge page */

#define PM_PFN ((1ull << 55) - 1)

/* The PFN of the kernel's shared zero page, where a private anonymous
 * page that was only ever read is mapped: found by reading a fresh page
 * of our own and looking it up in our pagemap. 0 = unknown (pagemap
 * shows PFNs to CAP_SYS_ADMIN only): every present page is dumped. */
static uint64_t zero_pfn;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_pfn_init(void)
{
	volatile uint8_t *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	(void)m[0];
	cleanup_close int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;
	if (fd >= 0 && pread(fd, &e, 8, (off_t)((uintptr_t)m / 4096 * 8)) == 8 && (e & PM_PRESENT))
		zero_pfn = e & PM_PFN;
	munmap((void *)m, 4096);
}

bool ck_pred_present(void *arg, const struct ck_memrange *r, uint64_t addr, uint64_t pm)
{
	(void)arg;
	(void)addr;
	if (r->all_pages)
		return true;
	if (r->kind == CK_VMA_FILE)
		return (pm & PM_SWAP) || ((pm & PM_PRESENT) && !(pm & PM_FILE));
	if (!(pm & (PM_PRESENT | PM_SWAP)))
		return false;
	/* a page that reads as zeros and was never written: left out, the
	 * restored process reads zeros from a page never filled the same way */
	pthread_once(&zero_once, zero_pfn_init);
	return !(zero_pfn && (pm & PM_PRESENT) && (pm & PM_PFN) == zero_pfn);
}

void ck_memset_add(struct ck_memset *ms, const struct ck_memrange *r)
{
	ck_vec_push(&ms->r, *r);
}

void ck_memset_free(struct ck_memset *ms)
{
	free(ms->r.v);
	ms->r.v = NULL;
	ms->r.n = ms->r.cap = 0;
}

/* --- the bounded queue between the two threads ------------------------------ */

struct piece {
	uint8_t *buf;
	size_t len; /* bytes filled */
	/* the PAGES sections in buf, in order (restore: exactly one) */
	size_t nsec;
	struct ck_pages sec[BATCH_IOV];
	uint32_t crc[BATCH_IOV]; /* dump: each section's CRC */
};

struct pipeline {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *map; /* the pieces' buffers, one mapping (NULL: malloc'd) */
	size_t map_len;
	/* dump into a pipe: each piece's pages are vmspliced into it and then
	 * dropped (MADV_DONTNEED); the next read faults in fresh ones */
	bool gift;
	struct piece pieces[NPIECE];
	struct piece *ring[NPIECE]; /* full pieces, FIFO */
	size_t head, nfull;
	struct piece *free[NPIECE];
	size_t nfree;
	bool done;   /* the producer has nothing more */
	bool failed; /* the consumer stopped on an error (in cerr) */
	struct vs_error cerr;
	/* consumer's work */
	int (*consume)(struct pipeline *q, struct piece *p, struct vs_error *err);
	struct ck_writer *w; /* dump */
	ck_hpid_of hpid_of;  /* restore */
	void *hpid_arg;
	uint64_t io_ns, crc_ns, pages;
	pthread_t thr;
	bool started;
};

static struct piece *pq_get_free(struct pipeline *q)
{
	pthread_mutex_lock(&q->mu);
	while (!q->nfree && !q->failed)
		pthread_cond_wait(&q->cv, &q->mu);
	struct piece *p = q->failed ? NULL : q->free[--q->nfree];
	pthread_mutex_unlock(&q->mu);
	return p;
}

static void pq_put_full(struct pipeline *q, struct piece *p)
{
	pthread_mutex_lock(&q->mu);
	q->ring[(q->head + q->nfull++) % NPIECE] = p;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static void *pq_consumer(void *arg)
{
	struct pipeline *q = arg;
	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (!q->nfull && !q->done)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->nfull) { /* done and drained */
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		struct piece *p = q->ring[q->head];
		q->head = (q->head + 1) % NPIECE;
		q->nfull--;
		pthread_mutex_unlock(&q->mu);
		int r = q->consume(q, p, &q->cerr);
		pthread_mutex_lock(&q->mu);
		q->free[q->nfree++] = p;
		if (r < 0)
			q->failed = true;
		pthread_cond_broadcast(&q->cv);
		pthread_mutex_unlock(&q->mu);
		if (r < 0)
			return NULL;
	}
}

/* Transparent huge pages on request (MADV_HUGEPAGE): "always" or
 * "madvise" in /sys/kernel/mm/transparent_hugepage/enabled. */
static bool thp_usable(void)
{
	char buf[128] = "";
	cleanup_close int fd =
	    open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
		return false;
	return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

/* The buffers: one anonymous mapping aligned to a huge page and backed
 * by huge pages where the kernel has them: fewer TLB misses in every copy
 * into and out of them (in this VM a TLB miss walks two page tables), a
 * piece faulted in by two faults, not 1024, and a gifted piece refaulted
 * the same way. Only what a round uses is faulted in (a small pre-copy
 * round stays cheap). */
static void pq_buffers(struct pipeline *q)
{
	q->map_len = NPIECE * PIECE + HUGE;
	void *m =
	    mmap(NULL, q->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		q->map = NULL;
		q->gift = false;
		for (size_t i = 0; i < NPIECE; i++)
			q->pieces[i].buf = vs_xmalloc(PIECE);
		return;
	}
	q->map = m;
	uint8_t *base = (uint8_t *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	(void)madvise(base, NPIECE * PIECE, MADV_HUGEPAGE);
	for (size_t i = 0; i < NPIECE; i++)
		q->pieces[i].buf = base + i * PIECE;
}

static void pq_init(struct pipeline *q)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	pq_buffers(q);
	for (size_t i = 0; i < NPIECE; i++)
		q->free[q->nfree++] = &q->pieces[i];
	vs_error_clear(&q->cerr);
	/* without a thread the producer runs each piece itself (pq_push) */
	q->started = pthread_create(&q->thr, NULL, pq_consumer, q) == 0;
}

/* Hand a filled piece on (or, without a thread, consume it here). */
static int pq_push(struct pipeline *q, struct piece *p, struct vs_error *err)
{
	if (q->started) {
		pq_put_full(q, p);
		return 0;
	}
	int r = q->consume(q, p, err);
	q->free[q->nfree++] = p;
	return r;
}

/* The producer is done (r = its result): wait for the consumer to drain
 * the queue - or, if the producer failed, to stop at its next piece -
 * and return the first error. */
static int pq_finish(struct pipeline *q, int r, struct vs_error *err)
{
	if (q->started) {
		pthread_mutex_lock(&q->mu);
		if (r < 0)
			q->nfull = 0; /* nothing more gets written */
		q->done = true;
		pthread_cond_broadcast(&q->cv);
		pthread_mutex_unlock(&q->mu);
		pthread_join(q->thr, NULL);
	}
	if (r >= 0 && q->failed) {
		*err = q->cerr;
		r = -err->code;
	}
	if (q->map)
		munmap(q->map, q->map_len);
	else
		for (size_t i = 0; i < NPIECE; i++)
			free(q->pieces[i].buf);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	return r;
}

/* A piece for the producer to fill; NULL = the consumer failed (its error
 * is copied into err). */
static struct piece *pq_next(struct pipeline *q, struct vs_error *err)
{
	struct piece *p = q->started ? pq_get_free(q) : q->free[--q->nfree];
	if (!p) {
		*err = q->cerr;
		return NULL;
	}
	p->len = 0;
	p->nsec = 0;
	return p;
}

/* --- dump ------------------------------------------------------------------ */

/* Each section's CRC into p->crc; the time it took. */
static uint64_t piece_crc(struct piece *p)
{
	uint64_t t0 = vs_now_ns();
	size_t off = 0;
	for (size_t i = 0; i < p->nsec; i++) {
		p->crc[i] = ck_section_crc(CK_SEC_PAGES, &p->sec[i], sizeof(p->sec[i]),
					   p->buf + off, p->sec[i].len);
		off += p->sec[i].len;
	}
	return vs_now_ns() - t0;
}

/* The writer thread: every section of the piece, written. A gifted
 * piece is checksummed here (the reader's copy out of the slice is the
 * slower stage then); otherwise the reader did it. */
static int consume_dump(struct pipeline *q, struct piece *p, struct vs_error *err)
{
	if (q->gift)
		q->crc_ns += piece_crc(p);
	uint64_t t0 = vs_now_ns();
	size_t off = 0;
	for (size_t i = 0; i < p->nsec; i++) {
		int r =
		    q->gift
			? ck_write_section_gift(q->w, CK_SEC_PAGES, &p->sec[i], sizeof(p->sec[i]),
						p->buf + off, p->sec[i].len, p->crc[i], err)
			: ck_write_section_direct(q->w, CK_SEC_PAGES, &p->sec[i], sizeof(p->sec[i]),
						  p->buf + off, p->sec[i].len, p->crc[i], err);
		if (r < 0)
			return r;
		off += p->sec[i].len;
	}
	/* the pipe owns those pages now: never write them again. A full
	 * piece likely has another behind it: fault in fresh (zeroed) pages
	 * here, in parallel, rather than in the reader's next copy. */
	if (q->gift && madvise(p->buf, PIECE, MADV_DONTNEED) < 0)
		return vs_error_sys(err, errno, "checkpoint stream: drop a gifted piece");
	if (q->gift && p->len == PIECE)
		(void)madvise(p->buf, PIECE, MADV_POPULATE_WRITE);
	q->io_ns += vs_now_ns() - t0;
	return 0;
}

/* What the producer collects for one piece: remote iovecs of one range. */
struct batch {
	struct piece *p;
	const struct ck_memrange *r;
	int memfd; /* /proc/PID/mem for unreadable ranges */
	struct iovec rem[BATCH_IOV];
	size_t n;
};

/* Read the batch's runs into its piece: process_vm_readv of every run at
 * once, /proc/PID/mem for a range without PROT_READ. A short read means a
 * run is not there any more (unmapped, or past the end of a mapped file):
 * retried from where it stopped, a failure names the address. */
static int batch_read(struct batch *b, uint64_t *read_ns, struct vs_error *err)
{
	uint64_t t0 = vs_now_ns();
	uint8_t *dst = b->p->buf;
	size_t i = 0, skip = 0; /* next remote iovec, bytes of it done */
	while (i < b->n) {
		struct iovec first = b->rem[i];
		size_t want = first.iov_len - skip;
		ssize_t n;
		if (b->r->readable) {
			struct iovec save = b->rem[i];
			b->rem[i].iov_base = (uint8_t *)first.iov_base + skip;
			b->rem[i].iov_len = want;
			size_t total = 0;
			for (size_t k = i; k < b->n; k++)
				total += b->rem[k].iov_len;
			struct iovec loc = {dst, total};
			n = process_vm_readv(b->r->hpid, &loc, 1, &b->rem[i], b->n - i, 0);
			b->rem[i] = save;
		} else {
			n = pread(b->memfd, dst, want, (off_t)((uintptr_t)first.iov_base + skip));
		}
		if (n <= 0) {
			uint64_t at = (uintptr_t)first.iov_base + skip;
			return vs_error_sys(err, n < 0 ? errno : EIO,
					    "pid %d: read memory at %#" PRIx64 " (run %#" PRIx64
					    "+%zu): the range went away "
					    "while the tree was stopped",
					    b->r->vpid, at, (uint64_t)(uintptr_t)first.iov_base,
					    first.iov_len);
		}
		dst += n;
		/* advance over what was read */
		size_t got = (size_t)n;
		while (got && i < b->n) {
			size_t left = b->rem[i].iov_len - skip;
			if (got >= left) {
				got -= left;
				i++;
				skip = 0;
			} else {
				skip += got;
				got = 0;
			}
		}
	}
	*read_ns += vs_now_ns() - t0;
	return 0;
}

struct dump_round {
	struct pipeline q;
	struct batch b;
	uint64_t read_ns, crc_ns;
	struct ckpt_stats *st;
};

/* Read the batch, checksum its sections (here, while the pages are still
 * in the cache, and so that the two threads share the work about evenly -
 * unless the writer only gifts the pages: consume_dump), send the piece
 * on; the next run starts a new one. */
static int batch_flush(struct dump_round *d, struct vs_error *err)
{
	struct batch *b = &d->b;
	if (!b->p || !b->n)
		return 0;
	int r = batch_read(b, &d->read_ns, err);
	if (r < 0)
		return r;
	if (!d->q.gift)
		d->crc_ns += piece_crc(b->p);
	r = pq_push(&d->q, b->p, err);
	b->p = NULL;
	b->n = 0;
	return r;
}

/* Add one run (page aligned) of range r, split over pieces as needed. */
static int batch_add(struct dump_round *d, const struct ck_memrange *r, uint64_t addr, uint64_t len,
		     struct vs_error *err)
{
	struct batch *b = &d->b;
	while (len) {
		/* one process_vm_readv reads runs of one process */
		bool same = b->p && b->r->hpid == r->hpid && b->r->readable && r->readable;
		if (b->p && (!same || b->n == BATCH_IOV || b->p->len == PIECE)) {
			int rr = batch_flush(d, err);
			if (rr < 0)
				return rr;
		}
		if (!b->p) {
			if (!(b->p = pq_next(&d->q, err)))
				return -err->code;
			b->r = r;
		}
		uint64_t n = PIECE - b->p->len;
		if (n > len)
			n = len;
		/* unreadable ranges are read one run at a time (pread) */
		if (!r->readable && b->n)
			n = 0;
		if (n == 0) {
			int rr = batch_flush(d, err);
			if (rr < 0)
				return rr;
			continue;
		}
		b->rem[b->n++] = (struct iovec){(void *)(uintptr_t)addr, n};
		b->p->sec[b->p->nsec++] = (struct ck_pages){.pid = r->vpid, .addr = addr, .len = n};
		b->p->len += n;
		d->st->pages_written += n / 4096;
		addr += n;
		len -= n;
	}
	return 0;
}

/* The runs of one range the predicate picks. */
static int round_range(struct dump_round *d, const struct ck_memrange *r, ck_page_pred pred,
		       void *arg, uint64_t **pmv, size_t *pmcap, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", r->hpid);
	cleanup_close int pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return vs_error_sys(err, errno, "pid %d: open pagemap", r->vpid);
	cleanup_close int memfd = -1;
	if (!r->readable) {
		snprintf(path, sizeof(path), "/proc/%d/mem", r->hpid);
		if ((memfd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return vs_error_sys(err, errno, "pid %d: open mem", r->vpid);
	}
	size_t np = (r->end - r->start) / 4096;
	d->st->pages_scanned += np;
	if (np > *pmcap) {
		*pmcap = np;
		free(*pmv);
		*pmv = vs_xmalloc(np * 8);
	}
	uint64_t *v = *pmv;
	if (pread(pm, v, np * 8, (off_t)(r->start / 4096 * 8)) != (ssize_t)(np * 8))
		return vs_error_sys(err, errno, "pid %d: read pagemap", r->vpid);
	d->b.memfd = memfd;
	int rr = 0;
	for (size_t i = 0; rr >= 0 && i < np;) {
		if (!pred(arg, r, r->start + i * 4096, v[i])) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < np && pred(arg, r, r->start + j * 4096, v[j]))
			j++;
		rr = batch_add(d, r, r->start + i * 4096, (j - i) * 4096, err);
		i = j;
	}
	/* the batch must not outlive memfd */
	if (rr >= 0 && !r->readable)
		rr = batch_flush(d, err);
	return rr;
}

int ck_mem_write_round(struct ck_writer *w, const struct ck_memset *ms, uint32_t round,
		       ck_page_pred pred, void *arg, struct ckpt_stats *st, struct vs_error *err)
{
	struct ck_round rec = {.round = round};
	int r = ck_write_section(w, CK_SEC_ROUND, &rec, sizeof(rec), NULL, 0, err);
	if (r >= 0) /* the writer thread owns w from here: nothing buffered */
		r = ck_writer_sync(w, err);
	if (r < 0)
		return r;
	uint64_t t0 = vs_now_ns();
	struct dump_round d = {.st = st};
	d.q.consume = consume_dump;
	d.q.w = w;
	/* vmsplice only pays with huge pages: refaulting a gifted piece as
	 * 1024 small pages costs more than the copy it saves */
	d.q.gift = ck_writer_is_pipe(w) && thp_usable();
	pq_init(&d.q);
	cleanup_free uint64_t *pmv = NULL;
	size_t pmcap = 0;
	for (size_t i = 0; r >= 0 && i < ms->r.n; i++)
		r = round_range(&d, &ms->r.v[i], pred, arg, &pmv, &pmcap, err);
	if (r >= 0)
		r = batch_flush(&d, err);
	r = pq_finish(&d.q, r, err);
	st->mem_read_ns += d.read_ns;
	st->mem_crc_ns += d.crc_ns + d.q.crc_ns;
	st->mem_write_ns += d.q.io_ns;
	st->memdump_ns += vs_now_ns() - t0;
	return r;
}

/* --- restore ----------------------------------------------------------------- */

/* Write len bytes at addr of hpid: process_vm_writev, /proc/PID/mem if it
 * stops short. */
static int write_target(pid_t hpid, int32_t vpid, uint64_t addr, const void *buf, size_t len,
			struct vs_error *err)
{
	struct iovec l = {(void *)buf, len}, rm = {(void *)addr, len};
	if (process_vm_writev(hpid, &l, 1, &rm, 1, 0) == (ssize_t)len)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", hpid);
	cleanup_close int mfd = open(path, O_WRONLY | O_CLOEXEC);
	if (mfd < 0 || pwrite(mfd, buf, len, (off_t)addr) != (ssize_t)len)
		return vs_error_sys(err, errno ? errno : EIO,
				    "restore pid %d: write pages at %#" PRIx64, vpid, addr);
	return 0;
}

/* The same through the process's userfaultfd (uffd >= 0): a missing page
 * is allocated with its bytes (no zeroing, no fault). Pages already there
 * (an earlier round's: EEXIST) go by process_vm_writev, which stops at the
 * next missing one (it cannot fault a page in where the uffd is
 * registered); the uffd takes over from there. Without a uffd, or where it
 * does not apply (a private file mapping), process_vm_writev for all. */
int ck_mem_fill(int uffd, pid_t hpid, int32_t vpid, uint64_t addr, const void *data, size_t len,
		struct vs_error *err)
{
	const uint8_t *buf = data;
	while (len) {
		size_t step = 0;
		if (uffd >= 0) {
			struct uffdio_copy c = {.dst = addr,
						.src = (uint64_t)(uintptr_t)buf,
						.len = len,
						.mode = UFFDIO_COPY_MODE_DONTWAKE};
			if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
				return 0;
			if (c.copy > 0)
				step = (size_t)c.copy; /* partial: on from there */
			else if (c.copy != -EEXIST)
				uffd = -1; /* not covered: the rest without */
		}
		if (!step) {
			struct iovec l = {(void *)buf, len}, rm = {(void *)(uintptr_t)addr, len};
			ssize_t n = process_vm_writev(hpid, &l, 1, &rm, 1, 0);
			if (n <= 0) /* /proc/PID/mem, or the error */
				return write_target(hpid, vpid, addr, buf, len, err);
			step = (size_t)n;
		}
		addr += step;
		buf += step;
		len -= step;
	}
	return 0;
}

static int restore_parsed(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg,
			  struct ckpt_stats *st, struct vs_error *err)
{
	for (size_t i = 0; i < img->pages.n; i++) {
		const struct ck_pages_r *pg = &img->pages.v[i];
		int uffd;
		pid_t hpid = hpid_of(arg, pg->h.pid, &uffd);
		if (!hpid)
			return vs_error_set(err, EBADMSG,
					    "restore: pages of pid %d: no such process", pg->h.pid);
		int r = ck_mem_fill(uffd, hpid, pg->h.pid, pg->h.addr, pg->data, pg->h.len, err);
		if (r < 0)
			return r;
		st->pages_written += pg->h.len / 4096;
	}
	return 0;
}

/* The writer thread: one piece of a page run into its process. */
static int consume_restore(struct pipeline *q, struct piece *p, struct vs_error *err)
{
	uint64_t t0 = vs_now_ns();
	const struct ck_pages *pg = &p->sec[0];
	int uffd;
	pid_t hpid = q->hpid_of(q->hpid_arg, pg->pid, &uffd);
	if (!hpid)
		return vs_error_set(err, EBADMSG, "restore: pages of pid %d: no such process",
				    pg->pid);
	int r = ck_mem_fill(uffd, hpid, pg->pid, pg->addr, p->buf, pg->len, err);
	q->io_ns += vs_now_ns() - t0;
	q->pages += pg->len / 4096;
	return r;
}

/* The caller's thread: the stream, piece by piece, up to a verified END. */
static int read_rounds(struct pipeline *q, struct ckpt_image *img, struct vs_error *err)
{
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		int r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			return r;
		for (uint64_t done = 0; done < pg.len;) {
			size_t n = pg.len - done < PIECE ? (size_t)(pg.len - done) : PIECE;
			struct piece *p = pq_next(q, err);
			if (!p)
				return -err->code;
			if ((r = ck_stream_payload(img, p->buf, n, err)) < 0)
				return r; /* p is dropped: pq_finish frees every buffer */
			p->len = n;
			p->nsec = 1;
			p->sec[0] =
			    (struct ck_pages){.pid = pg.pid, .addr = pg.addr + done, .len = n};
			if ((r = pq_push(q, p, err)) < 0)
				return r;
			done += n;
		}
		if ((r = ck_stream_section_end(img, err)) < 0)
			return r;
	}
}

static int restore_streamed(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg,
			    struct ckpt_stats *st, struct vs_error *err)
{
	struct pipeline q = {.consume = consume_restore, .hpid_of = hpid_of, .hpid_arg = arg};
	pq_init(&q);
	uint64_t rd0 = img->rd.read_ns, crc0 = img->rd.crc_ns;
	int r = read_rounds(&q, img, err);
	r = pq_finish(&q, r, err);
	st->pages_written += q.pages;
	st->mem_read_ns += img->rd.read_ns - rd0;
	st->mem_crc_ns += img->rd.crc_ns - crc0;
	st->mem_write_ns += q.io_ns;
	return r;
}

int ck_mem_restore(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err)
{
	uint64_t t0 = vs_now_ns();
	int r = 0;
	/* a pre-copy's running rounds first: the later rounds override them */
	if (img->spool) {
		uint64_t rd0 = img->rd.read_ns, crc0 = img->rd.crc_ns;
		r = ck_spool_apply(img, hpid_of, arg, st, err);
		st->mem_read_ns += img->rd.read_ns - rd0;
		st->mem_crc_ns += img->rd.crc_ns - crc0;
		/* applied or failed: no longer needed; a large one is freed
		 * beside the rest of the restore (ck_spool_free) */
		ck_spool_free(img->spool);
		img->spool = NULL;
	}
	if (r >= 0)
		r = img->rd.fd < 0 ? restore_parsed(img, hpid_of, arg, st, err)
				   : restore_streamed(img, hpid_of, arg, st, err);
	st->memrestore_ns += vs_now_ns() - t0;
	return r;
}
