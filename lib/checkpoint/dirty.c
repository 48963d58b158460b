/*
 * dirty.c - pre-copy: which pages a running process tree wrote, without
 * soft-dirty, and the page rounds that carry them.
 *
 * This kernel has no CONFIG_MEM_SOFT_DIRTY. Linux >= 6.7 offers a more
 * exact replacement (research/checkpoint.md §4.2): a userfaultfd with
 * UFFD_FEATURE_WP_ASYNC, registered in write-protect mode over a vma and
 * write-protected, lets the process write on (the kernel resolves the
 * fault itself and clears the pte's uffd-wp bit), and the PAGEMAP_SCAN
 * ioctl on /proc/PID/pagemap with PM_SCAN_WP_MATCHING returns the pages
 * whose bit is clear (PAGE_IS_WRITTEN) and protects them again in the
 * same walk.
 *
 * A userfaultfd belongs to the mm of the process that made it, so one is
 * made inside each tracked process by a single-stepped syscall (uffd.c,
 * with the ioctls); everything else is done from here.
 *
 * A round, while the tree runs (ckpt_precopy_round):
 *   1. enumerate the tree (processes come and go; a pid whose start time
 *      changed is a new process; one sharing its mm with a tracked one -
 *      a vfork child - is skipped until it execs);
 *   2. per process, re-read /proc/PID/smaps: a private vma whose VmFlags
 *      show "uw" is armed - scan it; any other (new, moved by mremap,
 *      re-mapped after munmap, a process after exec) is registered and
 *      protected now and sent whole - with the tree frozen meanwhile
 *      (ckpt_precopy_opts.freeze): a registration over part of a vma
 *      that changed under it would split it;
 *   3. write the round: per vma the pages the predicate picks (written or
 *      new, and present), read after the scan/arm so a write after it is
 *      seen next round.
 * The frozen round (ck_precopy_final_round, called by ckpt_dump on the
 * stopped tree with the dump's own vma list) scans once more and sends a
 * page if it was written since, or was never tracked and is present, or
 * was sent once but is no longer present: on the 6.18 build the research
 * probed, a 4 KiB page dropped with MADV_DONTNEED after arming is not
 * reported as written (research §6), so the sent set (per pid, kept across rounds) is compared with
 * the present set; such a page is sent with its current content (zeros,
 * or the file's for a private file mapping).
 *
 * The rounds go into the stream before its records (CK_FLAG_PRECOPY):
 * the restorer spools them (spool.c) and applies them before the frozen
 * round. UFFD_FEATURE_WP_UNPOPULATED is not used: it would fill page
 * tables for every untouched page of a large reservation; a page first
 * touched after arming has no uffd-wp bit and so counts as written.
 * Shared memory (shared anonymous, memfd, SysV) is not tracked: the dump
 * copies it whole while frozen.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/kcmp.h>
#include <linux/userfaultfd.h>

#include "ckpt_int.h"
#include "vslice/ckpt_dirty.h"
#include "vslice/util.h"

#define PG	 4096ull
#define RUN	 (8u << 20) /* bytes of one PAGES section */
#define NREGIONS 1024

struct span {
	uint64_t s, e;
};

struct pidvec {
	pid_t *v;
	size_t n, cap;
};

struct vma_info {
	uint64_t s, e;
	char perms[8];
	char name[512];
	bool uffd_wp, uffd_any;
	bool armed_now; /* registered in this round */
};

struct vmavec {
	struct vma_info *v;
	size_t n, cap;
};

/* Pages of one pid sent in some round: sorted, merged spans. Kept per
 * pid, not per process: the restorer's spool is keyed by pid. */
struct pc_sent {
	int32_t vpid;
	CK_VEC(struct span) v;
};

struct pc_proc {
	pid_t hpid;
	int32_t vpid;
	uint64_t start_time;
	int uffd;	/* ours, -1 before arming */
	bool seen;	/* in this round's enumeration */
	bool shares_mm; /* with another tracked process: skipped */
	/* pages whose written state a scan took but whose read then failed (a
	 * vma shrank or moved meanwhile): counted as written next time */
	CK_VEC(struct span) pending;
	unsigned armed;	  /* vmas armed or scanned in the last round */
	struct vmavec vv; /* its vmas in this round */
	int32_t pm_fd;	  /* /proc/PID/pagemap for PAGEMAP_SCAN */
};

struct ckpt_precopy {
	pid_t init_hpid;
	int fd;
	bool verbose;
	/* stops / restarts the whole tree while vmas are registered (a vma
	 * that changes under UFFDIO_REGISTER would be split), or NULL */
	int (*freeze)(void *arg, bool frozen, struct vs_error *err);
	void *freeze_arg;
	struct ck_writer w;
	bool w_open;
	struct pc_proc **procs;
	size_t nprocs;
	struct pc_sent *sent;
	size_t nsent;
	uint32_t rounds;
	uint64_t last_scan_ns;
	/* the round being planned: a range per vma, its written bitmap (NULL:
	 * every page counts as written) */
	struct ck_memset ms;
	CK_VEC(uint8_t *) bits;
	bool final;
	uint64_t reported; /* pages the scans reported written this round */
};

/* --- small helpers ----------------------------------------------------- */

static uint64_t start_time_of(pid_t hpid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* fields after comm: state is 3rd, starttime the 22nd */
	unsigned long long v = 0;
	int field = 2;
	for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " "))
		if (++field == 22) {
			v = strtoull(t, NULL, 10);
			break;
		}
	return v;
}

static struct pc_sent *sent_of(struct ckpt_precopy *pc, int32_t vpid)
{
	for (size_t i = 0; i < pc->nsent; i++)
		if (pc->sent[i].vpid == vpid)
			return &pc->sent[i];
	pc->sent = ck_xrealloc(pc->sent, (pc->nsent + 1) * sizeof(*pc->sent));
	pc->sent[pc->nsent] = (struct pc_sent){.vpid = vpid};
	return &pc->sent[pc->nsent++];
}

/* Index of the first span ending after a. */
static size_t span_find(const struct pc_sent *s, uint64_t a)
{
	size_t lo = 0, hi = s->v.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->v.v[mid].e <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool sent_has(const struct pc_sent *s, uint64_t a)
{
	size_t i = span_find(s, a);
	return i < s->v.n && s->v.v[i].s <= a;
}

static void sent_add(struct pc_sent *s, uint64_t a, uint64_t e)
{
	size_t i = span_find(s, a > 0 ? a - 1 : 0);
	/* merge with every span touching [a, e) */
	size_t j = i;
	while (j < s->v.n && s->v.v[j].s <= e) {
		if (s->v.v[j].s < a)
			a = s->v.v[j].s;
		if (s->v.v[j].e > e)
			e = s->v.v[j].e;
		j++;
	}
	if (j == i) {
		ck_vec_push(&s->v, ((struct span){0, 0}));
		memmove(&s->v.v[i + 1], &s->v.v[i], (s->v.n - 1 - i) * sizeof(struct span));
	} else if (j > i + 1) {
		memmove(&s->v.v[i + 1], &s->v.v[j], (s->v.n - j) * sizeof(struct span));
		s->v.n -= j - i - 1;
	}
	s->v.v[i] = (struct span){a, e};
}

static void proc_disarm(struct pc_proc *p)
{
	if (p->uffd >= 0)
		close(p->uffd);
	if (p->pm_fd >= 0)
		close(p->pm_fd);
	p->uffd = p->pm_fd = -1;
}

static void proc_free(struct pc_proc *p)
{
	proc_disarm(p);
	free(p->pending.v);
	free(p->vv.v);
	free(p);
}

/* Pages of p in [s, e) left pending: into bits, and forgotten. */
static void take_pending(struct pc_proc *p, uint64_t s, uint64_t e, uint8_t *bits)
{
	for (size_t i = 0; bits && i < p->pending.n; i++) {
		uint64_t a = p->pending.v[i].s > s ? p->pending.v[i].s : s;
		uint64_t b = p->pending.v[i].e < e ? p->pending.v[i].e : e;
		for (; a < b; a += PG) {
			uint64_t k = (a - s) / PG;
			bits[k / 8] |= (uint8_t)(1u << (k % 8));
		}
	}
}

static void plan_reset(struct ckpt_precopy *pc)
{
	for (size_t i = 0; i < pc->bits.n; i++)
		free(pc->bits.v[i]);
	pc->bits.n = 0;
	ck_memset_free(&pc->ms);
	pc->reported = 0;
}

/* --- the tree ---------------------------------------------------------- */

/* Every process below init (children of every thread, breadth-first). */
static void list_tree(pid_t init, struct pidvec *out)
{
	ck_vec_push(out, init);
	for (size_t k = 0; k < out->n; k++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/task", out->v[k]);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char cpath[320], buf[4096];
			snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", out->v[k],
				 de->d_name);
			if (ck_read_small(cpath, buf, sizeof(buf)) <= 0)
				continue;
			for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n"))
				ck_vec_push(out, (pid_t)atoi(t));
		}
		closedir(d);
	}
}

/* A process that uses userfaultfd itself cannot be tracked with one more
 * (its vmas may be registered already, and its own fd would be dumped). */
static int check_untracked(pid_t hpid, int32_t vpid, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", hpid);
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			char lp[320], target[64];
			snprintf(lp, sizeof(lp), "/proc/%d/fd/%s", hpid, de->d_name);
			ssize_t n = readlink(lp, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = 0;
			if (strcmp(target, "anon_inode:[userfaultfd]") == 0) {
				closedir(d);
				vs_error_set(
				    err, ENOTSUP,
				    "pid %d: refused: uses userfaultfd itself (fd %s); "
				    "pre-copy cannot track it (checkpoint without --precopy)",
				    vpid, de->d_name);
				return vs_error_kind(err, VS_EK_REFUSED);
			}
		}
		closedir(d);
	}
	return 0;
}

/* --- planning a round ---------------------------------------------------- */

/* The vmas of hpid from smaps, with their uffd VmFlags. */
static int read_smaps(pid_t hpid, struct vmavec *out)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", hpid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[4096 + 256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, ino;
		char perms[8], dev[16];
		int pos = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &s, &e, perms, &off, dev, &ino,
			   &pos) >= 6) {
			struct vma_info v = {.s = s, .e = e};
			memcpy(v.perms, perms, sizeof(v.perms));
			char *name = line + pos;
			name[strcspn(name, "\n")] = 0;
			snprintf(v.name, sizeof(v.name), "%s", name);
			ck_vec_push(out, v);
		} else if (strncmp(line, "VmFlags:", 8) == 0 && out->n) {
			struct vma_info *v = &out->v[out->n - 1];
			v->uffd_wp = strstr(line, " uw") != NULL;
			v->uffd_any = v->uffd_wp || strstr(line, " um") || strstr(line, " ui");
		}
	}
	return 0;
}

/* Does the dump send pages of this vma (dump.c's rule), and how. */
static bool takes_pages(const struct vma_info *v, struct ck_memrange *mr)
{
	const char *n = v->name;
	if (v->perms[3] != 'p' || strcmp(n, "[vvar]") == 0 || strcmp(n, "[vvar_vclock]") == 0 ||
	    strcmp(n, "[vdso]") == 0 || strcmp(n, "[vsyscall]") == 0)
		return false;
	mr->start = v->s;
	mr->end = v->e;
	mr->readable = v->perms[0] == 'r';
	mr->all_pages = false;
	if (n[0] == '/' && !strstr(n, " (deleted)")) {
		mr->kind = CK_VMA_FILE;
		return true;
	}
	if (n[0] == '/' || !n[0] || strcmp(n, "[heap]") == 0 || strcmp(n, "[stack]") == 0 ||
	    strncmp(n, "[anon:", 6) == 0) {
		mr->kind = CK_VMA_ANON;
		mr->all_pages = n[0] == '/';
		return true;
	}
	return false;
}

static void plan_add(struct ckpt_precopy *pc, const struct ck_memrange *mr, uint8_t *bits)
{
	ck_memset_add(&pc->ms, mr);
	ck_vec_push(&pc->bits, bits);
}

/* The written bitmap of one armed vma; NULL (send whole) if the scan
 * fails - e.g. a vma mapped over part of it since. */
static uint8_t *scan_vma(struct ckpt_precopy *pc, struct pc_proc *p, uint64_t s, uint64_t e)
{
	size_t nbits = (e - s) / PG;
	uint8_t *bits = vs_xcalloc(1, nbits / 8 + 1);
	uint64_t count = 0;
	int r = ck_uffd_scan(p->pm_fd, s, e, bits, &count);
	if (r < 0) {
		free(bits);
		return NULL;
	}
	pc->reported += count;
	return bits;
}

/* A userfaultfd in p's mm (uffd.c) and p's pagemap for the scans. */
static int make_uffd(struct pc_proc *p, struct vs_error *err)
{
	int ours = -1;
	int r = ck_uffd_make(p->hpid, p->vpid, &ours, err);
	if (r < 0)
		return r;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", p->hpid);
	int pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		close(ours);
		return vs_error_sys(err, errno, "pid %d: open pagemap", p->vpid);
	}
	p->uffd = ours;
	p->pm_fd = pm;
	return 0;
}

/* Phase A of a round, the process running: a userfaultfd for a process
 * that has none (new, or after exec); refused if it has one of its own. */
static int ensure_uffd(struct pc_proc *p, struct vs_error *err)
{
	if (p->uffd >= 0)
		return 0;
	struct vmavec vv = {0};
	if (read_smaps(p->hpid, &vv) < 0) {
		free(vv.v);
		return 0; /* gone: the next enumeration drops it */
	}
	for (size_t i = 0; i < vv.n; i++)
		if (vv.v[i].uffd_any) {
			vs_error_set(err, ENOTSUP,
				     "pid %d: refused: memory at %#" PRIx64
				     " is registered with a userfaultfd of its own",
				     p->vpid, vv.v[i].s);
			free(vv.v);
			return vs_error_kind(err, VS_EK_REFUSED);
		}
	free(vv.v);
	int r = make_uffd(p, err);
	if (r < 0 && err->kind != VS_EK_REFUSED &&
	    (err->code == ESRCH || kill(p->hpid, 0) < 0 || ck_task_zombie(p->hpid) ||
	     start_time_of(p->hpid) != p->start_time))
		return 0; /* it exited meanwhile (a zombie now, gone, or past exit_mm:
			     its pagemap answers ESRCH): not an error */
	if (r < 0 && err->code == EAGAIN)
		return 0; /* the injected syscall met a stop of its own (a busy
			     shell's fork or signal): not armed this round, so its
			     memory goes whole; armed again next round */
	if (r < 0 && err->kind != VS_EK_REFUSED)
		vs_error_wrap(err, "pre-copy: arm pid %d", p->vpid);
	return r;
}

/* Phase B: p's vmas (p->vv); does one of them need registering? A process
 * none of whose armed vmas is registered any more has a new mm (exec): it
 * is disarmed, sent whole this round and gets a new userfaultfd next. */
static bool read_layout(struct pc_proc *p)
{
	p->vv.n = 0;
	if (read_smaps(p->hpid, &p->vv) < 0) {
		p->vv.n = 0;
		return false;
	}
	bool any_wp = false, need = false;
	for (size_t i = 0; i < p->vv.n; i++) {
		struct ck_memrange mr;
		any_wp |= p->vv.v[i].uffd_wp;
		need |= !p->vv.v[i].uffd_wp && takes_pages(&p->vv.v[i], &mr);
	}
	if (p->uffd >= 0 && p->armed && !any_wp)
		proc_disarm(p);
	return need && p->uffd >= 0;
}

/* Register and protect every vma of p's layout that is not yet. A vma
 * the kernel refuses (EINVAL: VM_PFNMAP...) is sent whole every round. */
static void arm_layout(struct pc_proc *p)
{
	for (size_t i = 0; i < p->vv.n; i++) {
		struct vma_info *v = &p->vv.v[i];
		struct ck_memrange mr;
		if (!v->uffd_wp && takes_pages(v, &mr) && ck_uffd_arm(p->uffd, v->s, v->e) == 0)
			v->armed_now = true;
	}
}

/* Phase C, the process running again: scan what was armed before this
 * round; plan every range. */
static void plan_proc(struct ckpt_precopy *pc, struct pc_proc *p)
{
	p->armed = 0;
	for (size_t i = 0; i < p->vv.n; i++) {
		struct ck_memrange mr = {.hpid = p->hpid, .vpid = p->vpid};
		if (!takes_pages(&p->vv.v[i], &mr))
			continue;
		uint8_t *bits = NULL;
		if (p->vv.v[i].uffd_wp && p->uffd >= 0) {
			bits = scan_vma(pc, p, mr.start, mr.end);
			take_pending(p, mr.start, mr.end, bits);
			p->armed++;
		} else if (p->vv.v[i].armed_now) {
			p->armed++;
		}
		plan_add(pc, &mr, bits);
	}
	p->pending.n = 0;
}

static struct pc_proc *proc_find(struct ckpt_precopy *pc, pid_t hpid)
{
	for (size_t i = 0; i < pc->nprocs; i++)
		if (pc->procs[i]->hpid == hpid)
			return pc->procs[i];
	return NULL;
}

/* Enumerate: new processes are added (refused if untrackable), gone ones
 * dropped, mm-sharing ones marked. */
static int refresh_procs(struct ckpt_precopy *pc, struct vs_error *err)
{
	struct pidvec pids = {0};
	list_tree(pc->init_hpid, &pids);
	for (size_t i = 0; i < pc->nprocs; i++)
		pc->procs[i]->seen = false;
	int r = 0;
	for (size_t k = 1; r >= 0 && k < pids.n; k++) {
		pid_t h = pids.v[k];
		if (ck_task_zombie(h))
			continue;
		uint64_t stt = start_time_of(h);
		struct pc_proc *p = proc_find(pc, h);
		if (p && p->start_time != stt) {
			proc_disarm(p);
			p->start_time = stt;
			pid_t vp = 0;
			if (ck_nspid(h, &vp) < 0)
				continue;
			p->vpid = vp;
		}
		if (!p) {
			pid_t vp = 0;
			if (ck_nspid(h, &vp) < 0)
				continue;
			if ((r = check_untracked(h, vp, err)) < 0)
				break;
			p = vs_xcalloc(1, sizeof(*p));
			*p = (struct pc_proc){
			    .hpid = h, .vpid = vp, .start_time = stt, .uffd = -1, .pm_fd = -1};
			pc->procs = ck_xrealloc(pc->procs, (pc->nprocs + 1) * sizeof(*pc->procs));
			pc->procs[pc->nprocs++] = p;
		}
		p->seen = true;
	}
	free(pids.v);
	/* drop the gone ones */
	size_t n = 0;
	for (size_t i = 0; i < pc->nprocs; i++) {
		if (pc->procs[i]->seen) {
			pc->procs[n++] = pc->procs[i];
		} else {
			proc_free(pc->procs[i]);
		}
	}
	pc->nprocs = n;
	/* one mm, one tracker: a vfork child shares its parent's until exec */
	for (size_t i = 0; i < pc->nprocs; i++) {
		struct pc_proc *p = pc->procs[i];
		p->shares_mm = false;
		for (size_t j = 0; j < i; j++)
			if (!pc->procs[j]->shares_mm &&
			    syscall(SYS_kcmp, p->hpid, pc->procs[j]->hpid, KCMP_VM, 0, 0) == 0) {
				p->shares_mm = true;
				break;
			}
		if (p->shares_mm)
			proc_disarm(p);
	}
	return r;
}

/* --- writing a running round ------------------------------------------------ */

static bool bit(const uint8_t *bits, uint64_t k)
{
	return !bits || ((bits[k / 8] >> (k % 8)) & 1);
}

/*
 * The page rule of every round. Armed and not written since the last
 * scan: the restorer has its content already, unless it was sent and is
 * gone now (only looked at in the frozen round: MADV_DONTNEED is not
 * reported). Written, or not tracked: sent if present, or if an earlier
 * copy must be overridden.
 */
static bool pick(struct ckpt_precopy *pc, const struct ck_memrange *r, const uint8_t *bits,
		 uint64_t addr, uint64_t pm, const struct pc_sent *sent)
{
	bool present = ck_pred_present(NULL, r, addr, pm) && !ck_pm_uffd_marker(pm);
	if (bit(bits, (addr - r->start) / PG))
		return present || sent_has(sent, addr);
	if (present)
		return false;
	return pc->final && sent_has(sent, addr);
}

static int read_pages(const struct ck_memrange *r, int memfd, uint64_t addr, uint64_t len,
		      uint8_t *buf)
{
	ssize_t n;
	if (r->readable) {
		struct iovec l = {buf, len}, rm = {(void *)addr, len};
		n = process_vm_readv(r->hpid, &l, 1, &rm, 1, 0);
	} else {
		n = pread(memfd, buf, len, (off_t)addr);
	}
	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* The pages of one planned range. A process that exited, or a vma that
 * went away or shrank meanwhile, is skipped: what is left of the range
 * counts as written next round (pending), the frozen round decides the
 * rest. */
static int write_range(struct ckpt_precopy *pc, size_t ri, uint8_t *buf, uint64_t **pmv,
		       size_t *pmcap, uint64_t *pages, struct vs_error *err)
{
	const struct ck_memrange *r = &pc->ms.r.v[ri];
	const uint8_t *bits = pc->bits.v[ri];
	struct pc_proc *p = proc_find(pc, r->hpid);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", r->hpid);
	cleanup_close int pm = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/mem", r->hpid);
	cleanup_close int memfd = open(path, O_RDONLY | O_CLOEXEC);
	struct span rest = {r->start, r->end};
	if (!p)
		return 0;
	if (pm < 0 || memfd < 0) {
		ck_vec_push(&p->pending, rest);
		return 0;
	}
	size_t np = (r->end - r->start) / PG;
	if (np > *pmcap) {
		*pmcap = np;
		free(*pmv);
		*pmv = vs_xmalloc(np * 8);
	}
	uint64_t *v = *pmv;
	if (pread(pm, v, np * 8, (off_t)(r->start / PG * 8)) != (ssize_t)(np * 8)) {
		ck_vec_push(&p->pending, rest);
		return 0;
	}
	struct pc_sent *sent = sent_of(pc, r->vpid);
	for (size_t i = 0; i < np;) {
		if (!pick(pc, r, bits, r->start + i * PG, v[i], sent)) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < np && (j - i) * PG < RUN &&
		       pick(pc, r, bits, r->start + j * PG, v[j], sent))
			j++;
		uint64_t addr = r->start + i * PG, len = (j - i) * PG;
		int rr = read_pages(r, memfd, addr, len, buf);
		if (rr < 0) {
			rest.s = addr;
			ck_vec_push(&p->pending, rest);
			return 0;
		}
		/* one writev from buf, no copy into the writer's buffer
		 * (ck_write_section_direct) */
		struct ck_pages pg = {.pid = r->vpid, .addr = addr, .len = len};
		uint32_t crc = ck_section_crc(CK_SEC_PAGES, &pg, sizeof(pg), buf, len);
		rr = ck_write_section_direct(&pc->w, CK_SEC_PAGES, &pg, sizeof(pg), buf, len, crc,
					     err);
		if (rr < 0)
			return rr;
		sent_add(sent, addr, addr + len);
		*pages += len / PG;
		i = j;
	}
	return 0;
}

int ckpt_precopy_round(struct ckpt_precopy *pc, struct ckpt_round_stats *rs, struct vs_error *err)
{
	memset(rs, 0, sizeof(*rs));
	if (pc->rounds >= CKPT_MAX_ROUNDS - 1)
		return vs_error_set(err, E2BIG, "pre-copy: more than %d rounds",
				    CKPT_MAX_ROUNDS - 1);
	uint64_t t0 = vs_now_ns(), bytes0 = pc->w.total;
	plan_reset(pc);
	pc->final = false;
	int r = refresh_procs(pc, err);
	for (size_t i = 0; r >= 0 && i < pc->nprocs; i++)
		if (!pc->procs[i]->shares_mm)
			r = ensure_uffd(pc->procs[i], err);
	if (r < 0)
		return r;
	/* Registration splits a vma it covers only in part: if the process
	 * grew or moved one between our reading its layout and the
	 * registration, its own mremap of it would then fail (EFAULT). So the
	 * tree is stopped (freezer) while the layout is read again and the
	 * new vmas registered; rounds with nothing new do not stop it. */
	bool need = false;
	for (size_t i = 0; i < pc->nprocs; i++)
		if (!pc->procs[i]->shares_mm)
			need |= read_layout(pc->procs[i]);
	if (need && pc->freeze) {
		if ((r = pc->freeze(pc->freeze_arg, true, err)) < 0)
			return vs_error_wrap(err, "pre-copy: freeze to register memory");
		for (size_t i = 0; i < pc->nprocs; i++)
			if (!pc->procs[i]->shares_mm && read_layout(pc->procs[i]))
				arm_layout(pc->procs[i]);
		if ((r = pc->freeze(pc->freeze_arg, false, err)) < 0)
			return vs_error_wrap(err, "pre-copy: thaw after registering memory");
	} else if (need) {
		for (size_t i = 0; i < pc->nprocs; i++)
			if (!pc->procs[i]->shares_mm)
				arm_layout(pc->procs[i]);
	}
	for (size_t i = 0; i < pc->nprocs; i++)
		if (!pc->procs[i]->shares_mm)
			plan_proc(pc, pc->procs[i]);
	uint64_t t_scan = vs_now_ns();
	struct ck_round rec = {.round = pc->rounds};
	r = ck_write_section(&pc->w, CK_SEC_ROUND, &rec, sizeof(rec), NULL, 0, err);
	uint8_t *buf = vs_xmalloc(RUN);
	cleanup_free uint64_t *pmv = NULL;
	size_t pmcap = 0;
	for (size_t i = 0; r >= 0 && i < pc->ms.r.n; i++)
		r = write_range(pc, i, buf, &pmv, &pmcap, &rs->pages, err);
	free(buf);
	/* the round is on the fd before it counts as done */
	if (r >= 0)
		r = ck_writer_sync(&pc->w, err);
	if (r < 0)
		return vs_error_wrap(err, "pre-copy round %u", pc->rounds);
	if (pc->rounds > 0 && t_scan > pc->last_scan_ns)
		rs->dirty_bps = pc->reported * PG * 1000000000ull / (t_scan - pc->last_scan_ns);
	pc->last_scan_ns = t_scan;
	rs->bytes = pc->w.total - bytes0;
	rs->ns = vs_now_ns() - t0;
	pc->rounds++;
	plan_reset(pc);
	return 0;
}

/* --- the frozen round ---------------------------------------------------- */

struct final_ctx {
	struct ckpt_precopy *pc;
	const struct ck_memset *ms;
};

static bool final_pred(void *arg, const struct ck_memrange *r, uint64_t addr, uint64_t pm)
{
	struct final_ctx *c = arg;
	size_t ri = (size_t)(r - c->ms->r.v);
	return pick(c->pc, r, c->pc->bits.v[ri], addr, pm, sent_of(c->pc, r->vpid));
}

int ck_precopy_final_round(struct ckpt_precopy *pc, struct ck_writer *w, const struct ck_memset *ms,
			   struct ckpt_stats *st, struct vs_error *err)
{
	plan_reset(pc);
	pc->final = true;
	/* The dump's own vma list, of the stopped tree. A range counts as
	 * tracked if its process is one we armed (same start time) and its
	 * scan works: PM_SCAN_CHECK_WPASYNC fails (EPERM) on a vma that is not
	 * registered - mapped since the last round -, which is then sent
	 * whole. (No smaps here: it would walk every page table again while
	 * the tree is stopped.) */
	for (size_t i = 0; i < ms->r.n; i++) {
		const struct ck_memrange *r = &ms->r.v[i];
		struct pc_proc *p = proc_find(pc, r->hpid);
		uint8_t *bits = NULL;
		if (p && p->uffd >= 0 && !p->shares_mm && start_time_of(p->hpid) == p->start_time) {
			bits = scan_vma(pc, p, r->start, r->end);
			take_pending(p, r->start, r->end, bits);
		}
		ck_vec_push(&pc->bits, bits);
	}
	struct final_ctx c = {pc, ms};
	int r = ck_mem_write_round(w, ms, pc->rounds, final_pred, &c, st, err);
	plan_reset(pc);
	return r;
}

/* --- lifecycle --------------------------------------------------------------- */

int ckpt_precopy_start(pid_t init_hpid, int out_fd, const struct ckpt_precopy_opts *o,
		       struct ckpt_precopy **out, struct vs_error *err)
{
	*out = NULL;
	if (ck_uffd_probe(err) < 0)
		return vs_error_kind(err, VS_EK_REFUSED);
	struct ckpt_precopy *pc = vs_xcalloc(1, sizeof(*pc));
	pc->init_hpid = init_hpid;
	pc->fd = out_fd;
	pc->verbose = o && o->verbose;
	pc->freeze = o ? o->freeze : NULL;
	pc->freeze_arg = o ? o->freeze_arg : NULL;
	int r = refresh_procs(pc, err);
	if (r >= 0)
		r = ck_writer_open_flags(&pc->w, out_fd, CK_FLAG_PRECOPY, err);
	if (r >= 0)
		pc->w_open = true;
	if (r < 0) {
		ckpt_precopy_free(pc);
		return r;
	}
	*out = pc;
	return 0;
}

unsigned ckpt_precopy_rounds(const struct ckpt_precopy *pc)
{
	return pc->rounds;
}

int ck_precopy_writer(struct ckpt_precopy *pc, struct ck_writer *w, struct vs_error *err)
{
	if (!pc->w_open)
		return vs_error_set(err, EINVAL, "pre-copy: stream already handed on");
	int r = ck_writer_sync(&pc->w, err);
	uint64_t total = pc->w.total;
	uint32_t nsec = pc->w.nr_sections, chain = pc->w.chain;
	ck_writer_free(&pc->w);
	pc->w_open = false;
	if (r < 0)
		return r;
	return ck_writer_continue(w, pc->fd, total, nsec, chain, err);
}

void ckpt_precopy_free(struct ckpt_precopy *pc)
{
	if (!pc)
		return;
	for (size_t i = 0; i < pc->nprocs; i++)
		proc_free(pc->procs[i]);
	free(pc->procs);
	for (size_t i = 0; i < pc->nsent; i++)
		free(pc->sent[i].v.v);
	free(pc->sent);
	plan_reset(pc);
	free(pc->bits.v);
	if (pc->w_open)
		ck_writer_free(&pc->w);
	free(pc);
}

/* --- statistics -------------------------------------------------------------- */

char *ckpt_stats_json_rounds(const struct ckpt_stats *st, const char *json, size_t len)
{
	/* json ends with "\n}\n": cut there and append */
	size_t cut = len;
	while (cut > 0 && json[cut - 1] != '}')
		cut--;
	if (cut > 0)
		cut--;
	while (cut > 0 && (json[cut - 1] == '\n' || json[cut - 1] == ' '))
		cut--;
	size_t cap = cut + 256 + (size_t)st->nr_rounds * 160;
	char *out = vs_xmalloc(cap);
	size_t n =
	    (size_t)snprintf(out, cap,
			     "%.*s,\n  \"precopy_rounds\": %u,\n  \"precopy_time_ns\": %" PRIu64
			     ",\n  \"rounds\": [",
			     (int)cut, json, st->nr_rounds, st->precopy_ns);
	for (unsigned i = 0; i < st->nr_rounds && n < cap; i++) {
		const struct ckpt_round_stats *rs = &st->rounds[i];
		n += (size_t)snprintf(out + n, cap - n,
				      "%s\n    {\"round\": %u, \"pages\": %" PRIu64
				      ", \"bytes\": %" PRIu64 ", \"time_ns\": %" PRIu64
				      ", \"dirty_bytes_per_s\": %" PRIu64 "}",
				      i ? "," : "", i, rs->pages, rs->bytes, rs->ns, rs->dirty_bps);
	}
	if (n < cap)
		snprintf(out + n, cap - n,
			 "\n  ],\n  \"final_round\": {\"round\": %u, \"pages\": %" PRIu64
			 ", \"frozen_time_ns\": %" PRIu64 "}\n}\n",
			 st->nr_rounds, st->pages_written, st->frozen_ns);
	return out;
}
