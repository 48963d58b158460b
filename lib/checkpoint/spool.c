/*
 * spool.c - the restore side of a pre-copy: where the page rounds written
 * while the tree ran wait until the records say which processes and vmas
 * there will be.
 *
 * A pre-copy stream (CK_FLAG_PRECOPY) opens with those rounds, before any
 * record, so nothing exists yet to write them into. They go into anonymous
 * memory of the restorer, in 2 MiB chunks: one chunk per (slot, 2 MiB of
 * address) that received a page, slot = the order in which a pid first
 * appeared, found through a hash table, with a bitmap of the pages written
 * into it. The stream's payload is read straight into the chunk (one copy);
 * a later round's page overwrites the earlier one in place, so the spool
 * holds at most one copy of each page sent (about the slice's memory), not
 * every round's. Once the processes are re-mapped, ck_spool_apply copies
 * the written pages that lie inside each process's final private vmas
 * (ck_mem_fill: UFFDIO_COPY into the process's userfaultfd, which restore.c
 * registered over its private memory - process_vm_writev cannot fault a
 * missing page in there, EFAULT) and drops the rest: pages of processes
 * that exited, of vmas unmapped since. A page never sent stays missing in
 * the target (zero on first touch; the file's bytes in a private file
 * mapping), which the bitmap, not the content, decides. From a stream, the
 * frozen round after the records is read into the spool as well, up to the
 * verified END, before anything is applied.
 *
 * The apply runs inside a migration's downtime (the source is frozen from
 * the records on), so it copies each page once, by two workers taking the
 * chunks' runs from one list, and its source is already present: the
 * chunks were faulted in while the rounds arrived, before the downtime.
 * (Until 2026-12-05 the spool was a sparse memfd at offset (slot << 47) |
 * address, and each 16 MiB piece had to be mapped with MAP_POPULATE inside
 * the downtime first: ~0.15 ms per MiB of a ~0.45 ms per MiB apply; the
 * numbers are in docs/benchmarks.md section 10d.) It stays eager - every
 * page is in before any process runs: a lazy (post-copy) apply would need
 * a userfaultfd that also handles the kernel's own accesses, and the one a
 * slice's process can make (UFFD_USER_MODE_ONLY) fails those with EFAULT;
 * docs/checkpoint.md, "Applying the spool".
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#define SLOT_MAX	      32767 /* key = slot << 26 | chunk number */
#define CHUNK_SHIFT	      21    /* 2 MiB of address per chunk */
#define CHUNK		      (1ul << CHUNK_SHIFT)
#define CHUNK_PAGES	      (CHUNK / 4096)
#define ARENA		      (256ul << 20) /* chunks are carved from mappings this big */
#define CK_SPOOL_WORKERS      2
#define CK_SPOOL_ASYNC_CHUNKS 32 /* 64 MiB and more: freed by a thread of its own */

struct spool_chunk {
	uint64_t key; /* slot << 26 | addr >> 21 */
	uint8_t *mem;
	uint64_t bits[CHUNK_PAGES / 64]; /* pages written */
};

struct ck_spool {
	CK_VEC(int32_t) pids; /* index = slot */
	CK_VEC(struct spool_chunk) chunks;
	uint32_t *table; /* open addressing: chunk index + 1, 0 = free */
	size_t cap;	 /* a power of two, at least twice the chunks */
	CK_VEC(uint8_t *) arenas;
	size_t arena_used; /* bytes of the last arena handed out */
};

int ck_spool_new(struct ck_spool **out, struct vs_error *err)
{
	(void)err;
	struct ck_spool *sp = vs_xcalloc(1, sizeof(*sp));
	sp->cap = 1024;
	sp->table = vs_xcalloc(sp->cap, sizeof(*sp->table));
	*out = sp;
	return 0;
}

static void spool_unmap(struct ck_spool *sp)
{
	for (size_t i = 0; i < sp->arenas.n; i++)
		munmap(sp->arenas.v[i], ARENA);
	free(sp->arenas.v);
	free(sp->chunks.v);
	free(sp->table);
	free(sp->pids.v);
	free(sp);
}

static void *spool_unmap_run(void *arg)
{
	spool_unmap(arg);
	return NULL;
}

/* Freeing 512 MiB of pages takes ~30 ms of CPU, and a node manager frees
 * the image (so the spool) before it commits and thaws the restored slice:
 * inside the downtime. A large spool is unmapped by a detached thread that
 * blocks every signal (the caller's signal handling stays its own); a
 * small one, or if no thread can be made, here. */
void ck_spool_free(struct ck_spool *sp)
{
	if (!sp)
		return;
	if (sp->chunks.n >= CK_SPOOL_ASYNC_CHUNKS) {
		pthread_attr_t a;
		pthread_t t;
		sigset_t all, old;
		sigfillset(&all);
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int r = pthread_create(&t, &a, spool_unmap_run, sp);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&a);
		if (r == 0)
			return;
	}
	spool_unmap(sp);
}

static int64_t slot_of(const struct ck_spool *sp, int32_t pid)
{
	for (size_t i = 0; i < sp->pids.n; i++)
		if (sp->pids.v[i] == pid)
			return (int64_t)i;
	return -1;
}

static size_t key_hash(uint64_t key, size_t cap)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static void table_insert(struct ck_spool *sp, size_t idx)
{
	size_t h = key_hash(sp->chunks.v[idx].key, sp->cap);
	while (sp->table[h])
		h = (h + 1) & (sp->cap - 1);
	sp->table[h] = (uint32_t)idx + 1;
}

static struct spool_chunk *chunk_find(const struct ck_spool *sp, uint64_t key)
{
	for (size_t h = key_hash(key, sp->cap); sp->table[h]; h = (h + 1) & (sp->cap - 1))
		if (sp->chunks.v[sp->table[h] - 1].key == key)
			return &sp->chunks.v[sp->table[h] - 1];
	return NULL;
}

/* 2 MiB of fresh memory for a chunk. MAP_NORESERVE: a sparse chunk (one
 * page of a thread's stack) costs its pages, not 2 MiB; no huge pages for
 * the same reason (an "always" THP setting would fill each chunk).
 * MADV_DONTFORK: the restore forks the slice (slice_start) inside the
 * downtime, and a fork copies the page tables of every populated private
 * mapping - ~13 ms per fork for 512 MiB here; no child reads the spool. */
static int chunk_mem(struct ck_spool *sp, uint8_t **out, struct vs_error *err)
{
	if (!sp->arenas.n || sp->arena_used == ARENA) {
		void *m = mmap(NULL, ARENA, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return vs_error_sys(err, errno, "restore: pre-copy spool: map %lu MiB",
					    ARENA >> 20);
		madvise(m, ARENA, MADV_NOHUGEPAGE);
		if (madvise(m, ARENA, MADV_DONTFORK) < 0) {
			int e = errno;
			munmap(m, ARENA);
			return vs_error_sys(err, e, "restore: pre-copy spool: MADV_DONTFORK");
		}
		ck_vec_push(&sp->arenas, (uint8_t *)m);
		sp->arena_used = 0;
	}
	*out = sp->arenas.v[sp->arenas.n - 1] + sp->arena_used;
	sp->arena_used += CHUNK;
	return 0;
}

static int chunk_get(struct ck_spool *sp, uint64_t key, struct spool_chunk **out,
		     struct vs_error *err)
{
	struct spool_chunk *c = chunk_find(sp, key);
	if (c) {
		*out = c;
		return 0;
	}
	if (sp->chunks.n == UINT32_MAX - 1)
		return vs_error_set(err, EBADMSG, "checkpoint: pre-copy rounds too large");
	uint8_t *mem = NULL;
	int r = chunk_mem(sp, &mem, err);
	if (r < 0)
		return r;
	ck_vec_push(&sp->chunks, ((struct spool_chunk){.key = key, .mem = mem}));
	if (sp->chunks.n * 2 > sp->cap) {
		free(sp->table);
		sp->cap *= 2;
		sp->table = vs_xcalloc(sp->cap, sizeof(*sp->table));
		for (size_t i = 0; i < sp->chunks.n; i++)
			table_insert(sp, i);
	} else {
		table_insert(sp, sp->chunks.n - 1);
	}
	*out = &sp->chunks.v[sp->chunks.n - 1];
	return 0;
}

int ck_spool_at(struct ck_spool *sp, int32_t pid, uint64_t addr, size_t want, uint8_t **dst,
		size_t *n, struct vs_error *err)
{
	if ((addr & 4095) || (want & 4095) || !want || addr >= CK_SPOOL_ADDR_MAX ||
	    want > CK_SPOOL_ADDR_MAX - addr)
		return vs_error_set(err, EBADMSG,
				    "checkpoint: pre-copy pages of pid %d at %#" PRIx64
				    ": not whole pages below 2^47",
				    pid, addr);
	int64_t slot = slot_of(sp, pid);
	if (slot < 0) {
		if (sp->pids.n >= SLOT_MAX)
			return vs_error_set(
			    err, EBADMSG, "checkpoint: pre-copy rounds name more than %d processes",
			    SLOT_MAX);
		slot = (int64_t)sp->pids.n;
		ck_vec_push(&sp->pids, pid);
	}
	struct spool_chunk *c = NULL;
	int r = chunk_get(sp, ((uint64_t)slot << 26) | (addr >> CHUNK_SHIFT), &c, err);
	if (r < 0)
		return r;
	size_t off = (size_t)(addr & (CHUNK - 1));
	*n = want < CHUNK - off ? want : CHUNK - off;
	for (size_t p = off / 4096; p < (off + *n) / 4096; p++)
		c->bits[p / 64] |= 1ull << (p % 64);
	*dst = c->mem + off;
	return 0;
}

int ck_spool_put(struct ck_spool *sp, int32_t pid, uint64_t addr, const void *buf, size_t len,
		 struct vs_error *err)
{
	for (size_t done = 0; done < len;) {
		uint8_t *dst;
		size_t n;
		int r = ck_spool_at(sp, pid, addr + done, len - done, &dst, &n, err);
		if (r < 0)
			return r;
		memcpy(dst, (const uint8_t *)buf + done, n);
		done += n;
	}
	return 0;
}

/* One run of written pages of one chunk, for one process. */
struct apply_job {
	int uffd;
	pid_t hpid;
	int32_t vpid;
	uint64_t addr;
	const uint8_t *src;
	size_t len;
};

struct apply_work {
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

static void *apply_worker_run(void *arg)
{
	struct apply_worker *wk = arg;
	struct apply_work *w = wk->w;
	while (!atomic_load(&w->failed)) {
		size_t i = atomic_fetch_add(&w->next, 1);
		if (i >= w->jobs.n)
			break;
		const struct apply_job *j = &w->jobs.v[i];
		uint64_t t0 = vs_now_ns();
		wk->r = ck_mem_fill(j->uffd, j->hpid, j->vpid, j->addr, j->src, j->len, &wk->err);
		wk->write_ns += vs_now_ns() - t0;
		if (wk->r < 0) {
			atomic_store(&w->failed, true);
			break;
		}
		wk->pages += j->len / 4096;
	}
	return NULL;
}

static bool page_set(const struct spool_chunk *c, size_t p)
{
	return c->bits[p / 64] >> (p % 64) & 1;
}

/* The jobs for the written pages of chunk c inside [start, end). */
static void collect_chunk(struct apply_work *w, const struct spool_chunk *c, int uffd, pid_t hpid,
			  int32_t vpid, uint64_t start, uint64_t end)
{
	uint64_t base = (c->key & ((1ull << 26) - 1)) << CHUNK_SHIFT;
	size_t lo = (size_t)((start > base ? start : base) - base) / 4096;
	size_t hi = (size_t)((end < base + CHUNK ? end : base + CHUNK) - base) / 4096;
	for (size_t p = lo; p < hi;) {
		if (!page_set(c, p)) {
			p++;
			continue;
		}
		size_t q = p;
		while (q < hi && page_set(c, q))
			q++;
		ck_vec_push(&w->jobs, ((struct apply_job){.uffd = uffd,
							  .hpid = hpid,
							  .vpid = vpid,
							  .addr = base + p * 4096,
							  .src = c->mem + p * 4096,
							  .len = (q - p) * 4096}));
		p = q;
	}
}

static int by_key(const void *a, const void *b)
{
	uint64_t x = (*(struct spool_chunk *const *)a)->key;
	uint64_t y = (*(struct spool_chunk *const *)b)->key;
	return x < y ? -1 : x > y;
}

/* The first of the n sorted chunks whose key is >= key. */
static size_t lower_bound(struct spool_chunk **s, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s[mid]->key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The rest of a streamed image - the frozen round - into the spool too,
 * up to its verified END: the source, blocked on the pipe until it is
 * drained, is not kept frozen while the spool is written out, and nothing
 * is written into a process before END matched. Later rounds overwrite
 * earlier ones in place, as on the way in. */
static int drain(struct ckpt_image *img, struct vs_error *err)
{
	for (;;) {
		struct ck_pages pg;
		uint32_t round;
		int r = ck_stream_next_pages(img, &pg, &round, err);
		if (r <= 0)
			return r;
		for (uint64_t done = 0; done < pg.len;) {
			uint8_t *dst;
			size_t n;
			if ((r = ck_spool_at(img->spool, pg.pid, pg.addr + done, pg.len - done,
					     &dst, &n, err)) < 0 ||
			    (r = ck_stream_payload(img, dst, n, err)) < 0)
				return r;
			done += n;
		}
		if ((r = ck_stream_section_end(img, err)) < 0)
			return r;
	}
}

/* The jobs for every final private vma of a process the spool has pages
 * of: its chunks found by binary search in the sorted list, so a huge
 * reservation costs nothing. */
static void collect(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct apply_work *w)
{
	struct ck_spool *sp = img->spool;
	cleanup_free struct spool_chunk **sorted =
	    vs_xcalloc(sp->chunks.n ? sp->chunks.n : 1, sizeof(*sorted));
	for (size_t i = 0; i < sp->chunks.n; i++)
		sorted[i] = &sp->chunks.v[i];
	qsort(sorted, sp->chunks.n, sizeof(*sorted), by_key);
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *v = &img->vmas.v[i];
		if (v->kind != CK_VMA_ANON && v->kind != CK_VMA_FILE)
			continue;
		int64_t slot = slot_of(sp, v->pid);
		int uffd = -1;
		pid_t hpid = slot < 0 ? 0 : hpid_of(arg, v->pid, &uffd);
		if (!hpid || v->end > CK_SPOOL_ADDR_MAX || v->start >= v->end)
			continue;
		uint64_t k0 = ((uint64_t)slot << 26) | (v->start >> CHUNK_SHIFT);
		uint64_t k1 = ((uint64_t)slot << 26) | ((v->end - 1) >> CHUNK_SHIFT);
		for (size_t j = lower_bound(sorted, sp->chunks.n, k0);
		     j < sp->chunks.n && sorted[j]->key <= k1; j++)
			collect_chunk(w, sorted[j], uffd, hpid, v->pid, v->start, v->end);
	}
}

int ck_spool_apply(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err)
{
	if (img->rd.fd >= 0) {
		int r = drain(img, err);
		if (r < 0)
			return r;
	}
	struct apply_work w = {0};
	collect(img, hpid_of, arg, &w);
	/* Two workers: UFFDIO_COPY scales over the CPUs (it takes the
	 * target's mmap lock shared). The runs are disjoint (the frozen round
	 * is in the spool already, in place): the order does not matter.
	 * mem_write_ns adds both workers' time. */
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
