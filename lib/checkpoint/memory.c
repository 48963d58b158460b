/*
 * memory.c - the pages of a checkpoint, dump and restore in one place.
 *
 * Dump: the vma pass (dump.c) records each range that may carry pages in
 * a ck_memset; ck_mem_write_round() then walks /proc/PID/pagemap of every
 * range and writes the pages a predicate picks as one page round: a
 * CK_SEC_ROUND marker, then CK_SEC_PAGES runs of up to RUN_MAX bytes, read
 * with process_vm_readv (or /proc/PID/mem for unreadable vmas) into one of
 * two buffers while the writer's thread sends the other. Rounds are the
 * unit a pre-copy repeats: round 0 = everything present, round N = what a
 * tracker says was written since round N-1 (the predicate; the tracking
 * itself - soft-dirty, uffd-wp, PAGEMAP_SCAN - is not here).
 *
 * Restore: ck_mem_restore() applies the rounds in stream order - a later
 * round's page simply overwrites an earlier one's - into the processes
 * ckpt_restore_finish() re-mapped (every vma that takes pages is mapped
 * writable until the rounds are done). From a stream the runs are applied
 * as they arrive, in pieces of at most PIECE bytes: nothing but one piece
 * is held. Nothing is trusted until the END record is verified; a failure
 * before it leaves the caller to kill what it restored.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#define PM_PRESENT (1ull << 63)
#define PM_SWAP	   (1ull << 62)
#define PM_FILE	   (1ull << 61)

#define RUN_MAX (8u << 20) /* bytes of one PAGES section */
#define PIECE	(4u << 20) /* bytes of a streamed run held at once on restore */

bool ck_pred_present(void *arg, const struct ck_memrange *r, uint64_t addr, uint64_t pm)
{
	(void)arg;
	(void)addr;
	if (r->all_pages)
		return true;
	if (r->kind == CK_VMA_FILE)
		return (pm & PM_SWAP) || ((pm & PM_PRESENT) && !(pm & PM_FILE));
	return (pm & (PM_PRESENT | PM_SWAP)) != 0;
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

/* --- dump ------------------------------------------------------------------ */

static int read_run(const struct ck_memrange *r, int memfd, uint64_t addr, uint64_t len,
		    uint8_t *buf, struct vs_error *err)
{
	ssize_t n;
	if (r->readable) {
		struct iovec l = {buf, len}, rm = {(void *)addr, len};
		n = process_vm_readv(r->hpid, &l, 1, &rm, 1, 0);
	} else {
		n = pread(memfd, buf, len, (off_t)addr);
	}
	if (n != (ssize_t)len)
		return vs_error_sys(err, n < 0 ? errno : EIO,
				    "pid %d: read memory %#" PRIx64 "+%" PRIu64, r->vpid, addr,
				    len);
	return 0;
}

/* The runs of one range; bufs = two RUN_MAX buffers, *cur the free one. */
static int round_range(struct ck_writer *w, const struct ck_memrange *r, ck_page_pred pred,
		       void *arg, uint8_t *bufs, int *cur, uint64_t **pmv, size_t *pmcap,
		       struct ckpt_stats *st, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", r->hpid);
	cleanup_close int pm = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/mem", r->hpid);
	cleanup_close int memfd = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0 || memfd < 0)
		return vs_error_sys(err, errno, "pid %d: open pagemap/mem", r->vpid);
	size_t np = (r->end - r->start) / 4096;
	st->pages_scanned += np;
	if (np > *pmcap) {
		*pmcap = np;
		free(*pmv);
		*pmv = vs_xmalloc(np * 8);
	}
	uint64_t *v = *pmv;
	if (pread(pm, v, np * 8, (off_t)(r->start / 4096 * 8)) != (ssize_t)(np * 8))
		return vs_error_sys(err, errno, "pid %d: read pagemap", r->vpid);
	for (size_t i = 0; i < np;) {
		if (!pred(arg, r, r->start + i * 4096, v[i])) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < np && (j - i) * 4096 < RUN_MAX &&
		       pred(arg, r, r->start + j * 4096, v[j]))
			j++;
		uint64_t addr = r->start + i * 4096, len = (j - i) * 4096;
		/* the buffer about to be filled was handed to the writer two
		 * runs ago: ck_write_section_async waited for it since */
		uint8_t *buf = bufs + (size_t)*cur * RUN_MAX;
		*cur ^= 1;
		int rr = read_run(r, memfd, addr, len, buf, err);
		if (rr < 0)
			return rr;
		struct ck_pages pg = {.pid = r->vpid, .addr = addr, .len = len};
		st->pages_written += len / 4096;
		rr = ck_write_section_async(w, CK_SEC_PAGES, &pg, sizeof(pg), buf, len, err);
		if (rr < 0)
			return rr;
		i = j;
	}
	return 0;
}

int ck_mem_write_round(struct ck_writer *w, const struct ck_memset *ms, uint32_t round,
		       ck_page_pred pred, void *arg, struct ckpt_stats *st, struct vs_error *err)
{
	struct ck_round rec = {.round = round};
	int r = ck_write_section(w, CK_SEC_ROUND, &rec, sizeof(rec), NULL, 0, err);
	if (r < 0)
		return r;
	uint64_t t0 = vs_now_ns();
	uint8_t *bufs = vs_xmalloc(2 * (size_t)RUN_MAX);
	cleanup_free uint64_t *pmv = NULL;
	size_t pmcap = 0;
	int cur = 0;
	for (size_t i = 0; r >= 0 && i < ms->r.n; i++)
		r = round_range(w, &ms->r.v[i], pred, arg, bufs, &cur, &pmv, &pmcap, st, err);
	/* the last run may still be in flight from bufs */
	struct vs_error e2;
	int r2 = ck_writer_sync(w, r < 0 ? &e2 : err);
	free(bufs);
	st->memdump_ns += vs_now_ns() - t0;
	return r < 0 ? r : r2;
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

static int restore_parsed(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg,
			  struct ckpt_stats *st, struct vs_error *err)
{
	for (size_t i = 0; i < img->pages.n; i++) {
		const struct ck_pages_r *pg = &img->pages.v[i];
		pid_t hpid = hpid_of(arg, pg->h.pid);
		if (!hpid)
			return vs_error_set(err, EBADMSG,
					    "restore: pages of pid %d: no such process", pg->h.pid);
		int r = write_target(hpid, pg->h.pid, pg->h.addr, pg->data, pg->h.len, err);
		if (r < 0)
			return r;
		st->pages_written += pg->h.len / 4096;
	}
	return 0;
}

static int restore_streamed(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg,
			    struct ckpt_stats *st, struct vs_error *err)
{
	cleanup_free uint8_t *piece = vs_xmalloc(PIECE);
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		int r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			return r;
		pid_t hpid = hpid_of(arg, pg.pid);
		if (!hpid)
			return vs_error_set(err, EBADMSG,
					    "restore: pages of pid %d: no such process", pg.pid);
		for (uint64_t done = 0; done < pg.len;) {
			size_t n = pg.len - done < PIECE ? (size_t)(pg.len - done) : PIECE;
			if ((r = ck_stream_payload(img, piece, n, err)) < 0 ||
			    (r = write_target(hpid, pg.pid, pg.addr + done, piece, n, err)) < 0)
				return r;
			done += n;
		}
		if ((r = ck_stream_section_end(img, err)) < 0)
			return r;
		st->pages_written += pg.len / 4096;
	}
}

int ck_mem_restore(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err)
{
	/* a pre-copy's running rounds first: the later rounds override them */
	if (img->spool) {
		int r = ck_spool_apply(img, hpid_of, arg, st, err);
		if (r < 0)
			return r;
	}
	if (img->rd.fd < 0)
		return restore_parsed(img, hpid_of, arg, st, err);
	return restore_streamed(img, hpid_of, arg, st, err);
}

int ck_mem_poke(pid_t hpid, int32_t vpid, uint64_t addr, const void *buf, size_t len,
		struct vs_error *err)
{
	return write_target(hpid, vpid, addr, buf, len, err);
}
