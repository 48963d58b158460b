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
 *
 * The apply runs inside a migration's downtime (the source is frozen from
 * the records on), so it copies each page once: UFFDIO_COPY straight from
 * a read-only mapping of the memfd (no pread into a buffer first), by two
 * workers taking 16 MiB pieces from one list. It stays eager - every page
 * is in before any process runs: a lazy (post-copy) apply would need a
 * userfaultfd that also handles the kernel's own accesses, and the one a
 * slice's process can make (UFFD_USER_MODE_ONLY) fails those with EFAULT;
 * docs/checkpoint.md, "Applying the spool".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#define SLOT_MAX	 32767	     /* (slot << 47) stays below 2^62 */
#define CK_SPOOL_MAP	 (16u << 20) /* the spool mapped this much at a time */
#define CK_SPOOL_WORKERS 2

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

/* One piece of the spool for one process: [off, off+len), off = (slot <<
 * 47) | address. */
struct apply_job {
	int uffd;
	pid_t hpid;
	int32_t vpid;
	off_t off;
	size_t len;
};

struct apply_work {
	struct ck_spool *sp;
	CK_VEC(struct apply_job) jobs;
	atomic_size_t next;
	atomic_bool failed;
};

struct apply_worker {
	struct apply_work *w;
	pthread_t thr;
	uint64_t write_ns, pages;
	int r;
	struct vs_error err;
};

/* One job: UFFDIO_COPY straight from a populated read-only mapping of the
 * memfd - one copy of each page, where pread into a buffer first made two.
 * An unpopulated source would be slower than the buffer (UFFDIO_COPY copies
 * with page faults disabled and retries each page that faults), hence
 * MAP_POPULATE. */
static int apply_job(struct apply_worker *wk, const struct apply_job *j)
{
	void *m = mmap(NULL, j->len, PROT_READ, MAP_SHARED | MAP_POPULATE, wk->w->sp->fd, j->off);
	if (m == MAP_FAILED)
		return vs_error_sys(&wk->err, errno, "restore: pre-copy spool: map %zu bytes",
				    j->len);
	uint64_t t0 = vs_now_ns();
	int r = ck_mem_fill(j->uffd, j->hpid, j->vpid, (uint64_t)j->off & (CK_SPOOL_ADDR_MAX - 1),
			    m, j->len, &wk->err);
	wk->write_ns += vs_now_ns() - t0;
	munmap(m, j->len);
	if (r >= 0)
		wk->pages += j->len / 4096;
	return r;
}

static void *apply_worker_run(void *arg)
{
	struct apply_worker *wk = arg;
	struct apply_work *w = wk->w;
	while (!atomic_load(&w->failed)) {
		size_t i = atomic_fetch_add(&w->next, 1);
		if (i >= w->jobs.n)
			break;
		if ((wk->r = apply_job(wk, &w->jobs.v[i])) < 0) {
			atomic_store(&w->failed, true);
			break;
		}
	}
	return NULL;
}

/* The jobs for the spooled pages of [base+start, base+end): the written
 * extents (SEEK_DATA / SEEK_HOLE), cut at CK_SPOOL_MAP. */
static int collect_range(struct apply_work *w, int uffd, pid_t hpid, int32_t vpid, uint64_t base,
			 uint64_t start, uint64_t end, struct vs_error *err)
{
	int fd = w->sp->fd;
	off_t pos = (off_t)(base | start), lim = (off_t)(base | end);
	while (pos < lim) {
		off_t d = lseek(fd, pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return 0;
		if (d < 0)
			return vs_error_sys(err, errno, "restore: pre-copy spool: SEEK_DATA");
		if (d >= lim)
			return 0;
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return vs_error_sys(err, errno, "restore: pre-copy spool: SEEK_HOLE");
		if (h > lim)
			h = lim;
		for (off_t a = d; a < h;) {
			size_t n = (size_t)(h - a) < CK_SPOOL_MAP ? (size_t)(h - a) : CK_SPOOL_MAP;
			ck_vec_push(
			    &w->jobs,
			    ((struct apply_job){
				.uffd = uffd, .hpid = hpid, .vpid = vpid, .off = a, .len = n}));
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
	struct apply_work w = {.sp = sp};
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *v = &img->vmas.v[i];
		if (v->kind != CK_VMA_ANON && v->kind != CK_VMA_FILE)
			continue;
		int64_t slot = slot_of(sp, v->pid);
		int uffd = -1;
		pid_t hpid = slot < 0 ? 0 : hpid_of(arg, v->pid, &uffd);
		if (!hpid || v->end > CK_SPOOL_ADDR_MAX)
			continue;
		int r = collect_range(&w, uffd, hpid, v->pid, (uint64_t)slot << 47, v->start,
				      v->end, err);
		if (r < 0) {
			free(w.jobs.v);
			return r;
		}
	}
	/* Two workers: the mapping (populate) of one piece runs while the
	 * other's pages are copied, and UFFDIO_COPY scales over the CPUs (it
	 * takes the target's mmap lock shared). Pieces are disjoint (the
	 * frozen round is in the spool already, in place): the order does
	 * not matter. mem_write_ns adds both workers' time. */
	struct apply_worker wk[CK_SPOOL_WORKERS];
	size_t nwk = 0;
	for (size_t i = 0; i < CK_SPOOL_WORKERS; i++) {
		wk[i] = (struct apply_worker){.w = &w};
		vs_error_clear(&wk[i].err);
		if (i == 0 || w.jobs.n < 2)
			continue;
		if (pthread_create(&wk[i].thr, NULL, apply_worker_run, &wk[i]) != 0)
			break;
		nwk = i;
	}
	apply_worker_run(&wk[0]);
	for (size_t i = 1; i <= nwk; i++)
		pthread_join(wk[i].thr, NULL);
	free(w.jobs.v);
	int r = 0;
	for (size_t i = 0; i <= nwk; i++) {
		st->mem_write_ns += wk[i].write_ns;
		st->pages_written += wk[i].pages;
		if (wk[i].r < 0 && r >= 0) {
			r = wk[i].r;
			*err = wk[i].err;
		}
	}
	return r;
}
