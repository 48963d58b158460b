/*
 * uffd.c - the kernel half of pre-copy write tracking (dirty.c drives it):
 * a userfaultfd made inside a running process, ranges registered and
 * write-protected with it, and the PAGEMAP_SCAN ioctl that returns - and
 * protects again - the pages written since. docs/checkpoint.md, "Pre-copy:
 * write tracking without soft-dirty".
 *
 * A userfaultfd belongs to the mm of the process that made it, so one is
 * made inside the process: its main thread alone is seized (PTRACE_SEIZE +
 * INTERRUPT; the others run on; PTRACE_O_SUSPEND_SECCOMP, since slices'
 * default seccomp policy denies userfaultfd), its signals blocked with
 * PTRACE_SETSIGMASK, and it single-steps over a `syscall` instruction of
 * its own vDSO with userfaultfd(O_CLOEXEC | O_NONBLOCK |
 * UFFD_USER_MODE_ONLY) loaded - nothing is written into its code.
 * pidfd_getfd takes the fd, a second step closes the process's copy, and
 * UFFDIO_API (UFFD_FEATURE_WP_ASYNC), REGISTER, WRITEPROTECT and the scans
 * are done from here.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
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
#include <linux/userfaultfd.h>

#include "ckpt_int.h"
#include "vslice/util.h"

/* uapi of Linux 6.7 (fs.h, userfaultfd.h) for older installed headers;
 * the running kernel decides (ckpt_precopy_start probes it). */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN	      _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN	      (1 << 1)
#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#define PTRACE_SETSIGMASK 0x420b
#endif

#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#define PTRACE_SETSIGMASK 0x420b
#endif

#define PG	 4096ull
#define NREGIONS 1024

bool ck_task_zombie(pid_t hpid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return true;
	char *p = strrchr(buf, ')');
	return !p || p[2] == 'Z' || p[2] == 'X';
}

int ck_uffd_probe(struct vs_error *err)
{
	/* PAGEMAP_SCAN (6.7): an empty range on our own pagemap answers 0 */
	cleanup_close int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct pm_scan_arg a = {.size = sizeof(a), .start = 0, .end = 0};
	if (pm < 0 || ioctl(pm, PAGEMAP_SCAN, &a) < 0)
		return vs_error_sys(err, errno,
				    "pre-copy: this kernel has no PAGEMAP_SCAN (Linux >= 6.7)");
	return 0;
}

/*
 * Write-protecting a range leaves a uffd-wp pte marker in every page not
 * populated yet (seen on 6.18 even without UFFD_FEATURE_WP_UNPOPULATED).
 * pagemap shows a marker as a swap entry (PM_SWAP) of type SWP_PTE_MARKER
 * - the last of the 5-bit swap types - with PM_UFFD_WP: it is no page,
 * and must not be sent as one (it would read as zeros, and make an
 * untouched 8 MiB thread stack 8 MiB of stream and of restored memory).
 */
#define PM_PRESENT_BIT (1ull << 63)
#define PM_SWAP_BIT    (1ull << 62)
#define PM_UFFD_WP_BIT (1ull << 57)
bool ck_pm_uffd_marker(uint64_t pm)
{
	return (pm & (PM_PRESENT_BIT | PM_SWAP_BIT | PM_UFFD_WP_BIT)) ==
		   (PM_SWAP_BIT | PM_UFFD_WP_BIT) &&
	       (pm & 0x1f) == 0x1f;
}

/* A `syscall` instruction (0f 05) in the process's vDSO, else in its
 * first executable mapping: jumped to and single-stepped, never written. */
static int find_syscall_insn(pid_t hpid, uint64_t *out)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", hpid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[4096 + 128];
	uint64_t lo[2] = {0, 0}, hi[2] = {0, 0};
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3 || perms[0] != 'r' ||
		    perms[2] != 'x')
			continue;
		int k = strstr(line, "[vdso]") ? 0 : 1;
		if (!hi[k] && !strstr(line, "[vsyscall]")) {
			lo[k] = s;
			hi[k] = e - s > (1u << 20) ? s + (1u << 20) : e;
		}
	}
	cleanup_free uint8_t *buf = vs_xmalloc(1u << 20);
	for (int k = 0; k < 2; k++) {
		if (!hi[k])
			continue;
		size_t len = hi[k] - lo[k];
		struct iovec l = {buf, len}, rm = {(void *)lo[k], len};
		ssize_t n = process_vm_readv(hpid, &l, 1, &rm, 1, 0);
		for (ssize_t i = 0; i + 1 < n; i++)
			if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
				*out = lo[k] + (uint64_t)i;
				return 0;
			}
	}
	return -ENOENT;
}

/* One syscall by the stopped thread tid: registers from saved, rip at the
 * gadget, one single-step. Returns the raw result or CK_EINJECT. */
static long step_syscall(pid_t tid, const uint64_t saved[27], uint64_t gadget, long nr, uint64_t a1,
			 uint64_t a2, struct vs_error *err)
{
	uint64_t regs[27];
	memcpy(regs, saved, sizeof(regs));
	regs[R_RAX] = (uint64_t)nr;
	regs[R_ORIG_RAX] = (uint64_t)-1; /* no syscall restart on the way out */
	regs[R_RDI] = a1;
	regs[R_RSI] = a2;
	regs[R_RIP] = gadget;
	if (ck_setregs(tid, regs, err) < 0)
		return CK_EINJECT;
	if (ptrace(PTRACE_SINGLESTEP, tid, 0, 0) < 0) {
		vs_error_sys(err, errno, "task %d: PTRACE_SINGLESTEP", tid);
		return CK_EINJECT;
	}
	int st;
	pid_t w;
	do
		w = waitpid(tid, &st, __WALL);
	while (w < 0 && errno == EINTR);
	if (w != tid || !WIFSTOPPED(st)) {
		vs_error_set(err, ESRCH, "task %d: gone during an injected syscall", tid);
		return CK_EINJECT;
	}
	uint64_t out[27];
	if (ck_getregs(tid, out, err) < 0)
		return CK_EINJECT;
	if (WSTOPSIG(st) != SIGTRAP || (st >> 16) != 0 || out[R_RIP] != gadget + 2) {
		vs_error_set(err, EAGAIN,
			     "task %d: injected syscall %ld: stopped by signal %d (event %d, rip "
			     "%#" PRIx64 ", the gadget at %#" PRIx64 ")",
			     tid, nr, WSTOPSIG(st), st >> 16, out[R_RIP], gadget);
		return CK_EINJECT;
	}
	return (long)out[R_RAX];
}

/* A live thread of hpid to inject into (the leader may have exited). */
static pid_t pick_thread(pid_t hpid)
{
	if (!ck_task_zombie(hpid))
		return hpid;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", hpid);
	DIR *d = opendir(path);
	pid_t t = 0;
	if (!d)
		return 0;
	struct dirent *de;
	while (!t && (de = readdir(d))) {
		pid_t c = (pid_t)atoi(de->d_name);
		char sp[96], buf[512];
		snprintf(sp, sizeof(sp), "/proc/%d/task/%d/stat", hpid, c);
		if (c > 0 && ck_read_small(sp, buf, sizeof(buf)) > 0) {
			char *p = strrchr(buf, ')');
			if (p && p[2] != 'Z' && p[2] != 'X')
				t = c;
		}
	}
	closedir(d);
	return t;
}

int ck_uffd_make(pid_t hpid, int32_t vpid, int *out, struct vs_error *err)
{
	uint64_t gadget = 0;
	pid_t tid = pick_thread(hpid);
	if (!tid)
		return vs_error_set(err, ESRCH, "pid %d: no live thread", vpid);
	cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, hpid, 0);
	if (pidfd < 0)
		return vs_error_sys(err, errno, "pid %d: pidfd_open", vpid);
	int r = ck_seize(tid, false, err);
	if (r < 0)
		return r;
	r = ck_wait_stop(tid, err);
	/* The gadget is looked up only now that the thread is stopped: a
	 * process of a running slice may exec between a look at its maps and
	 * the seize (a shell's child becoming `sleep`), and the old image's
	 * address then faults (SIGSEGV in the injected syscall). */
	if (r >= 0 && find_syscall_insn(hpid, &gadget) < 0)
		r = vs_error_set(err, ENOEXEC, "pid %d: no syscall instruction to step over", vpid);
	if (r < 0) {
		ptrace(PTRACE_DETACH, tid, 0, 0);
		return r;
	}
	uint64_t saved[27], mask = 0, all = ~0ull;
	int ours = -1;
	long tfd_taken = -1;
	r = ck_getregs(tid, saved, err);
	if (r >= 0 && (ptrace(PTRACE_GETSIGMASK, tid, sizeof(mask), &mask) < 0 ||
		       ptrace(PTRACE_SETSIGMASK, tid, sizeof(all), &all) < 0))
		r = vs_error_sys(err, errno, "pid %d: PTRACE_SETSIGMASK", vpid);
	if (r >= 0) {
		long tfd = step_syscall(tid, saved, gadget, SYS_userfaultfd,
					O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, err);
		if (tfd == CK_EINJECT) {
			r = -err->code;
		} else if (tfd < 0) {
			r = vs_error_sys(err, (int)-tfd, "pid %d: userfaultfd", vpid);
		} else {
			tfd_taken = tfd;
			ours = (int)syscall(SYS_pidfd_getfd, pidfd, (int)tfd, 0);
			if (ours < 0)
				r = vs_error_sys(err, errno, "pid %d: pidfd_getfd", vpid);
			struct vs_error e2;
			long c = step_syscall(tid, saved, gadget, SYS_close, (uint64_t)tfd, 0,
					      r < 0 ? &e2 : err);
			if (c == CK_EINJECT && r >= 0)
				r = -err->code;
		}
		ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask);
		ck_setregs(tid, saved, NULL);
	}
	ptrace(PTRACE_DETACH, tid, 0, 0);
	if (r < 0) {
		if (ours >= 0)
			close(ours);
		return r;
	}
	/* The number came back in a register of a process we do not trust
	 * (another of its threads may have rewritten the instruction we
	 * stepped over): before any ioctl - which runs as host root - make
	 * sure the fd we took is a userfaultfd, not one of its devices. */
	char lp[64], target[64];
	snprintf(lp, sizeof(lp), "/proc/self/fd/%d", ours);
	ssize_t tl = readlink(lp, target, sizeof(target) - 1);
	if (tl <= 0 || (target[tl] = 0, strcmp(target, "anon_inode:[userfaultfd]") != 0)) {
		close(ours);
		return vs_error_set(err, EPERM, "pid %d: fd %ld it returned is not a userfaultfd",
				    vpid, tfd_taken);
	}
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
	if (ioctl(ours, UFFDIO_API, &api) < 0 || !(api.features & UFFD_FEATURE_WP_ASYNC)) {
		int e = errno ? errno : ENOTSUP;
		close(ours);
		vs_error_sys(err, e, "pid %d: userfaultfd without WP_ASYNC", vpid);
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	*out = ours;
	return 0;
}

int ck_uffd_arm(int uffd, uint64_t s, uint64_t e)
{
	struct uffdio_register reg = {.range = {s, e - s}, .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	struct uffdio_writeprotect wp = {.range = {s, e - s}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		return -errno;
	return 0;
}

int ck_uffd_scan(int pagemap_fd, uint64_t s, uint64_t e, uint8_t *bits, uint64_t *count)
{
	struct page_region reg[NREGIONS];
	struct pm_scan_arg a = {
	    .size = sizeof(a),
	    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
	    .start = s,
	    .end = e,
	    .vec = (uintptr_t)reg,
	    .vec_len = NREGIONS,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};
	for (;;) {
		long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++)
			for (uint64_t x = reg[i].start; x < reg[i].end; x += PG) {
				uint64_t k = (x - s) / PG;
				bits[k / 8] |= (uint8_t)(1u << (k % 8));
				(*count)++;
			}
		if (a.walk_end >= e || n < NREGIONS)
			break;
		a.start = a.walk_end;
	}
	return 0;
}
