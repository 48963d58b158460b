/*
 * spool.c - the restore side of a pre-copy: where the page rounds written
 * while the tree ran wait until the records say which processes and vmas
 * there will be.
 *
 * A pre-copy stream (CK_FLAG_PRECOPY) opens with those rounds, before any
 * record, so nothing exists yet to write them into. They go into one
 * sparse memfd at offset (slot << 47) | address, slot = the order in which
 * a pid first appeared: a later round's page simply overwrites the earlier
 * one in place, so the spool holds at most one copy of each page sent
 * (about the slice's memory), not every round's. Once the processes are
 * re-mapped, ck_spool_apply copies what lies inside each process's final
 * private vmas (SEEK_DATA / SEEK_HOLE walk the written parts; ck_mem_fill:
 * UFFDIO_COPY into the process's userfaultfd, which restore.c registered
 * over its private memory - process_vm_writev cannot fault a missing
 * page in there, EFAULT) and drops
 * the rest: pages of processes that exited, of vmas unmapped since. From
 * a stream, the frozen round after the records is read into the spool
 * as well, up to the verified END, before anything is applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#define SLOT_MAX 32767 /* (slot << 47) stays below 2^62 */

struct ck_spool {
	int fd;
	CK_VEC(int32_t) pids; /* index = slot */
};

int ck_spool_new(struct ck_spool **out, struct vs_error *err)
{
	int fd = memfd_create("vslice-precopy-spool", MFD_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "checkpoint: pre-copy spool: memfd_create");
	struct ck_spool *sp = vs_xcalloc(1, sizeof(*sp));
	sp->fd = fd;
	*out = sp;
	return 0;
}

void ck_spool_free(struct ck_spool *sp)
{
	if (!sp)
		return;
	close(sp->fd);
	free(sp->pids.v);
	free(sp);
}

static int64_t slot_of(const struct ck_spool *sp, int32_t pid)
{
	for (size_t i = 0; i < sp->pids.n; i++)
		if (sp->pids.v[i] == pid)
			return (int64_t)i;
	return -1;
}

int ck_spool_put(struct ck_spool *sp, int32_t pid, uint64_t addr, const void *buf, size_t len,
		 struct vs_error *err)
{
	int64_t slot = slot_of(sp, pid);
	if (slot < 0) {
		if (sp->pids.n >= SLOT_MAX)
			return vs_error_set(
			    err, EBADMSG, "checkpoint: pre-copy rounds name more than %d processes",
			    SLOT_MAX);
		slot = (int64_t)sp->pids.n;
		ck_vec_push(&sp->pids, pid);
	}
	off_t off = (off_t)(((uint64_t)slot << 47) | addr);
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(sp->fd, (const uint8_t *)buf + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return vs_error_sys(err, n < 0 ? errno : EIO,
					    "checkpoint: pre-copy spool: write pid %d at %#" PRIx64,
					    pid, addr);
		done += (size_t)n;
	}
	return 0;
}

/* The spooled pages of [base+start, base+end) into hpid. */
static int apply_range(struct ck_spool *sp, int uffd, pid_t hpid, int32_t vpid, uint64_t base,
		       uint64_t start, uint64_t end, uint8_t *piece, struct ckpt_stats *st,
		       struct vs_error *err)
{
	off_t pos = (off_t)(base | start), lim = (off_t)(base | end);
	while (pos < lim) {
		off_t d = lseek(sp->fd, pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return 0;
		if (d < 0)
			return vs_error_sys(err, errno, "restore: pre-copy spool: SEEK_DATA");
		if (d >= lim)
			return 0;
		off_t h = lseek(sp->fd, d, SEEK_HOLE);
		if (h < 0)
			return vs_error_sys(err, errno, "restore: pre-copy spool: SEEK_HOLE");
		if (h > lim)
			h = lim;
		for (off_t a = d; a < h;) {
			size_t n =
			    (size_t)(h - a) < CK_SPOOL_PIECE ? (size_t)(h - a) : CK_SPOOL_PIECE;
			ssize_t k = pread(sp->fd, piece, n, a);
			if (k != (ssize_t)n)
				return vs_error_sys(err, k < 0 ? errno : EIO,
						    "restore: pre-copy spool: read");
			uint64_t t0 = vs_now_ns();
			int r = ck_mem_fill(uffd, hpid, vpid, (uint64_t)a & (CK_SPOOL_ADDR_MAX - 1),
					    piece, n, err);
			st->mem_write_ns += vs_now_ns() - t0;
			if (r < 0)
				return r;
			st->pages_written += n / 4096;
			a += (off_t)n;
		}
		pos = h;
	}
	return 0;
}

/* The rest of a streamed image - the frozen round - into the spool too,
 * up to its verified END: the source, blocked on the pipe until it is
 * drained, is not kept frozen while the spool is written out, and nothing
 * is written into a process before END matched. Later rounds overwrite
 * earlier ones in place, as on the way in. */
static int drain(struct ckpt_image *img, uint8_t *piece, struct vs_error *err)
{
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		int r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			return r;
		for (uint64_t done = 0; done < pg.len;) {
			size_t n = pg.len - done < CK_SPOOL_PIECE ? (size_t)(pg.len - done)
								  : CK_SPOOL_PIECE;
			if ((r = ck_stream_payload(img, piece, n, err)) < 0 ||
			    (r = ck_spool_put(img->spool, pg.pid, pg.addr + done, piece, n, err)) <
				0)
				return r;
			done += n;
		}
		if ((r = ck_stream_section_end(img, err)) < 0)
			return r;
	}
}

int ck_spool_apply(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err)
{
	struct ck_spool *sp = img->spool;
	cleanup_free uint8_t *piece = vs_xmalloc(CK_SPOOL_PIECE);
	if (img->rd.fd >= 0) {
		int r = drain(img, piece, err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *v = &img->vmas.v[i];
		if (v->kind != CK_VMA_ANON && v->kind != CK_VMA_FILE)
			continue;
		int64_t slot = slot_of(sp, v->pid);
		int uffd = -1;
		pid_t hpid = slot < 0 ? 0 : hpid_of(arg, v->pid, &uffd);
		if (!hpid || v->end > CK_SPOOL_ADDR_MAX)
			continue;
		int r = apply_range(sp, uffd, hpid, v->pid, (uint64_t)slot << 47, v->start, v->end,
				    piece, st, err);
		if (r < 0)
			return r;
	}
	return 0;
}
