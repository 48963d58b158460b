/*
 * restore.c - bring a checkpoint back to life.
 *
 * Stub half (ckpt_restore_stub, inside the target namespaces, as the root
 * pid): build the pool of open file descriptions, then walk the tree
 * top-down - each stub sets its session/process group, forks its children
 * with clone3(set_tid) (zombies exit at once with their status), installs
 * its fds, cwd, umask, rlimits, sigactions (the kernel stores handler
 * addresses unchecked), POSIX timers (PR_TIMER_CREATE_RESTORE_IDS), creates
 * its threads with set_tid, blocks every signal and parks all threads in
 * ck_park: `syscall(pause); int3`. The comm "vs-ckpt-stub" says "ready".
 *
 * Host half (ckpt_restore_finish): seize every stub thread, then per process
 * by syscall injection: scratch page in a hole of the dumped layout,
 * unregister the stub's rseq, munmap everything else, ARCH_MAP_VDSO_64 at
 * the dumped [vvar], mmap + process_vm_writev + mprotect every VMA,
 * PR_SET_MM_MAP (exe_fd), per-thread tid address/robust list/rseq/
 * sigaltstack/comm, pending signals (queued by the task itself), itimers,
 * POSIX timer values, dumpable/pdeathsig/subreaper, creds, no_new_privs,
 * seccomp, caps; munmap the scratch page at a syscall-exit stop; registers,
 * xstate and signal mask; then detach everything at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <asm/prctl.h>
#include <linux/capability.h>
#include <linux/elf.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>

#include "ckpt_int.h"
#include "files.h"
#include "vslice/util.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS	77
#define PR_TIMER_CREATE_RESTORE_IDS_ON	1
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef RSEQ_FLAG_UNREGISTER
#define RSEQ_FLAG_UNREGISTER 1
#endif

#define READY_COMM   "vs-ckpt-stub"
#define SCRATCH_SIZE (64u * 1024)
#define TASK_TOP     0x7ffffffff000ull

/* The park loop. rip-2 at the PTRACE_INTERRUPT stop is the gadget
 * "syscall; int3" the host uses for its first injected syscalls. */
void ck_park(void) __attribute__((noreturn));
long ck_clone3_thread(struct clone_args *args, size_t size);
__asm__(".text\n"
	".globl ck_park\n"
	".type ck_park,@function\n"
	"ck_park:\n"
	"1:	mov $34, %eax\n" /* pause */
	"	syscall\n"
	"	int3\n"
	"	jmp 1b\n"
	".size ck_park, .-ck_park\n"
	".globl ck_clone3_thread\n"
	".type ck_clone3_thread,@function\n"
	"ck_clone3_thread:\n"
	"	mov $435, %eax\n" /* clone3 */
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jz ck_park\n" /* the new thread parks on its tiny stack */
	"	ret\n"
	".size ck_clone3_thread, .-ck_clone3_thread\n");

/* ==================================================================== */
/* stub half                                                             */
/* ==================================================================== */

struct stub_ctx {
	const struct ckpt_image *img;
	struct ck_pool pool;
	int mapbase; /* exe fd at mapbase, file vma k at mapbase + 1 + k */
	struct ck_pstep *plan;
	size_t nplan;
	int sync_fd; /* closed once this process's subtree has its sessions/groups */
};

/* Leave the first failure where the host finds it (ckpt_image_restore_error). */
static void stub_report(const struct stub_ctx *c, const struct vs_error *err)
{
	struct ck_errbox *box = c->img->errbox;
	int zero = 0;
	if (box && __atomic_compare_exchange_n(&box->claimed, &zero, 1, false, __ATOMIC_ACQ_REL,
					       __ATOMIC_ACQUIRE)) {
		snprintf(box->msg, sizeof(box->msg), "%s", err->msg);
		__atomic_store_n(&box->claimed, 2, __ATOMIC_RELEASE);
	}
}

static int stub_map_fds(struct stub_ctx *c, const struct ck_proc *p, struct vs_error *err)
{
	const struct ckpt_image *img = c->img;
	if (p->exe[0]) {
		int fd = open(p->exe, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, c->mapbase);
			close(fd);
		}
	}
	int k = 0;
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *v = &img->vmas.v[i];
		if (v->pid != p->pid)
			continue;
		if (v->kind != CK_VMA_FILE && v->kind != CK_VMA_FILE_SHARED &&
		    v->kind != CK_VMA_SHARED)
			continue;
		int target = c->mapbase + 1 + k++;
		int fd = -1;
		if (v->kind == CK_VMA_FILE)
			fd = open(v->path, O_RDONLY | O_CLOEXEC);
		else if (v->kind == CK_VMA_FILE_SHARED)
			fd =
			    open(v->path, ((v->prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		else if (v->kind == CK_VMA_SHARED) {
			int m = ck_pool_shm_fd(&c->pool, v->shm_id);
			fd = m >= 0 ? dup(m) : -1;
		} else
			continue;
		if (fd < 0)
			return vs_error_sys(err, errno, "pid %d: open mapped file %s", p->pid,
					    v->path);
		if (dup2(fd, target) < 0) {
			close(fd);
			return vs_error_sys(err, errno, "pid %d: dup2 mapped file", p->pid);
		}
		close(fd);
	}
	return 0;
}

static void stub_zombie(const struct ck_proc *p)
{
	int st = p->exit_status;
	if (WIFSIGNALED(st)) {
		struct rlimit rl = {0, 0};
		setrlimit(RLIMIT_CORE, &rl);
		signal(WTERMSIG(st), SIG_DFL);
		sigset_t m;
		sigemptyset(&m);
		sigaddset(&m, WTERMSIG(st));
		sigprocmask(SIG_UNBLOCK, &m, NULL);
		kill(getpid(), WTERMSIG(st));
		_exit(128 + WTERMSIG(st));
	}
	_exit(WEXITSTATUS(st));
}

struct k_sigaction {
	uint64_t handler, flags, restorer, mask;
};

static int stub_action(const struct ck_pstep *st, struct vs_error *err)
{
	switch (st->action) {
	case CK_PA_SETSID:
		if (setsid() < 0)
			return vs_error_sys(err, errno, "pid %d: setsid", st->pid);
		break;
	case CK_PA_PGID_SELF:
		if (setpgid(0, 0) < 0)
			return vs_error_sys(err, errno, "pid %d: setpgid(0, 0)", st->pid);
		break;
	case CK_PA_PGID_JOIN:
		if (setpgid(0, st->pgid) < 0)
			return vs_error_sys(err, errno, "pid %d: join process group %d", st->pid,
					    st->pgid);
		break;
	}
	return 0;
}

static void stub_child(struct stub_ctx *c, const struct ck_pstep *st) __attribute__((noreturn));

/* Carry out the plan's steps whose creator is self, in order: fork each
 * (CLONE_PARENT for siblings), wait until its subtree has its sessions and
 * groups, reap the helpers that are our children; then wait until our
 * zombie children have exited (before SIGCHLD gets blocked). */
static int stub_steps(struct stub_ctx *c, int32_t self, struct vs_error *err)
{
	for (size_t i = 0; i < c->nplan; i++) {
		const struct ck_pstep *st = &c->plan[i];
		if (st->creator != self)
			continue;
		if (st->pid == self) { /* the root's own setsid/setpgid */
			int r = stub_action(st, err);
			if (r < 0)
				return r;
			continue;
		}
		int pp[2];
		if (pipe2(pp, O_CLOEXEC) < 0)
			return vs_error_sys(err, errno, "pid %d: pipe", self);
		/* CLONE_PARENT inherits our exit signal and wants 0 here */
		pid_t want = st->pid;
		struct clone_args a = {.flags = st->clone_parent ? CLONE_PARENT : 0,
				       .exit_signal = st->clone_parent ? 0 : SIGCHLD,
				       .set_tid = (uintptr_t)&want,
				       .set_tid_size = 1};
		pid_t r = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
		if (r < 0) {
			int e = errno;
			close(pp[0]);
			close(pp[1]);
			return vs_error_sys(err, e, "pid %d: clone3 %s with pid %d", self,
					    st->helper ? "session/group helper" : "child", st->pid);
		}
		if (r == 0) {
			close(pp[0]);
			if (c->sync_fd >= 0)
				close(c->sync_fd);
			c->sync_fd = pp[1];
			stub_child(c, st);
		}
		close(pp[1]);
		char b;
		while (read(pp[0], &b, 1) < 0 && errno == EINTR)
			;
		close(pp[0]);
		if (st->helper && st->parent == self) {
			int status;
			while (waitpid(st->pid, &status, 0) < 0 && errno == EINTR)
				;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				return vs_error_set(err, ECHILD, "pid %d: helper %d failed", self,
						    st->pid);
		}
	}
	const struct ckpt_image *img = c->img;
	for (size_t i = 0; i < img->procs.n; i++) {
		const struct ck_proc *ch = &img->procs.v[i];
		if (ch->ppid != self || ch->state != CK_ZOMBIE)
			continue;
		siginfo_t si;
		while (waitid(P_PID, ch->pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
			;
	}
	return 0;
}

static int stub_proc(struct stub_ctx *c, const struct ck_proc *p, struct vs_error *err);

static void stub_child(struct stub_ctx *c, const struct ck_pstep *st)
{
	struct vs_error e2;
	vs_error_clear(&e2);
	int r = stub_action(st, &e2);
	if (r >= 0 && st->helper) {
		r = stub_steps(c, st->pid, &e2);
		if (r >= 0)
			_exit(0);
	}
	if (r >= 0)
		r = stub_proc(c, &c->img->procs.v[st->node], &e2);
	stub_report(c, &e2);
	char buf[VS_ERROR_MAX + 64];
	int n = snprintf(buf, sizeof(buf), "vslice restore: %s\n", e2.msg);
	if (write(2, buf, (size_t)n) < 0) {
	}
	_exit(101);
}

static int stub_proc(struct stub_ctx *c, const struct ck_proc *p, struct vs_error *err)
{
	const struct ckpt_image *img = c->img;
	if (p->state == CK_ZOMBIE)
		stub_zombie(p);
	int r = stub_steps(c, p->pid, err);
	if (r < 0)
		return r;
	if (c->sync_fd >= 0) {
		close(c->sync_fd);
		c->sync_fd = -1;
	}
	r = ck_pool_install(img, &c->pool, p->pid, err);
	if (r < 0)
		return r;
	r = stub_map_fds(c, p, err);
	if (r < 0)
		return r;
	/* the pool is no longer needed in this process */
	for (int fd = c->pool.base; fd < c->pool.base + 4096; fd++)
		close(fd);
	/* POSIX locks only now: closing a pool fd of a locked file drops them */
	r = ck_pool_locks(img, p->pid, err);
	if (r < 0)
		return r;
	if (p->cwd[0] && chdir(p->cwd) < 0)
		return vs_error_sys(err, errno, "pid %d: chdir %s", p->pid, p->cwd);
	umask(p->umask);
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s <= 64; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		const struct ck_sigact *sa = &p->sigact[s - 1];
		struct k_sigaction ka = {sa->handler, sa->flags, sa->restorer, sa->mask};
		syscall(SYS_rt_sigaction, s, &ka, NULL, 8);
	}
	/* POSIX timers with their ids, disarmed; the host arms them last */
	bool restore_ids = false;
	for (size_t i = 0; i < img->timers.n; i++) {
		const struct ck_timer *t = &img->timers.v[i];
		if (t->pid != p->pid)
			continue;
		if (!restore_ids) {
			if (prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0,
				  0) < 0)
				return vs_error_sys(err, errno,
						    "pid %d: PR_TIMER_CREATE_RESTORE_IDS", p->pid);
			restore_ids = true;
		}
		struct sigevent sev;
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = t->notify;
		sev.sigev_signo = t->signo;
		sev.sigev_value.sival_ptr = (void *)(uintptr_t)t->sigval;
		if (t->notify == SIGEV_THREAD_ID)
			sev._sigev_un._tid = t->tid;
		int id = t->id;
		/* SIGEV_THREAD_ID needs the thread: fall back to the process for
		 * non-main threads (created below). */
		if (t->notify == SIGEV_THREAD_ID && t->tid != p->pid) {
			sev.sigev_notify = SIGEV_SIGNAL;
		}
		if (syscall(SYS_timer_create, t->clockid, &sev, &id) < 0)
			return vs_error_sys(err, errno, "pid %d: timer_create(id %d)", p->pid,
					    t->id);
	}
	if (restore_ids)
		prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0);
	for (int i = 0; i < 16; i++) {
		struct rlimit rl = {p->rlim[i][0], p->rlim[i][1]};
		if (i == RLIMIT_NOFILE || (!rl.rlim_cur && !rl.rlim_max))
			continue;
		setrlimit(i, &rl);
	}
	/* threads, each with its own pid and a tiny stack it never uses */
	for (size_t i = 0; i < img->threads.n; i++) {
		const struct ck_thread *t = &img->threads.v[i].t;
		if (t->pid != p->pid || t->tid == p->pid)
			continue;
		static char stacks[64][256] __attribute__((aligned(16)));
		pid_t tid = t->tid;
		struct clone_args a = {.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
						CLONE_THREAD | CLONE_SYSVSEM,
				       .stack = (uintptr_t)stacks[i % 64],
				       .stack_size = 256,
				       .set_tid = (uintptr_t)&tid,
				       .set_tid_size = 1};
		long rr = ck_clone3_thread(&a, sizeof(a));
		if (rr < 0)
			return vs_error_sys(err, (int)-rr, "pid %d: clone3 thread %d", p->pid,
					    t->tid);
	}
	{
		struct rlimit rl = {p->rlim[RLIMIT_NOFILE][0], p->rlim[RLIMIT_NOFILE][1]};
		if (rl.rlim_cur)
			setrlimit(RLIMIT_NOFILE, &rl);
	}
	prctl(PR_SET_NAME, READY_COMM, 0, 0, 0);
	ck_park();
}

int ckpt_restore_stub(const struct ckpt_image *img, struct vs_error *err)
{
	const struct ck_proc *root = ck_image_proc(img, (pid_t)img->hdr.root_pid);
	if (getpid() != root->pid)
		return vs_error_set(err, EINVAL,
				    "restore stub: running as pid %d, checkpoint root is %d",
				    getpid(), root->pid);
	int maxfd = 2;
	for (size_t i = 0; i < img->fds.n; i++)
		if (img->fds.v[i].fd > maxfd)
			maxfd = img->fds.v[i].fd;
	int base = ((maxfd + 64) / 64) * 64 + 64;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)base + 8192) {
		rl.rlim_cur = rl.rlim_max > (rlim_t)base + 8192 ? (rlim_t)base + 8192 : rl.rlim_max;
		if (rl.rlim_max < (rlim_t)base + 8192)
			rl.rlim_max = rl.rlim_cur = (rlim_t)base + 8192;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			getrlimit(RLIMIT_NOFILE, &rl);
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	struct stub_ctx c = {.img = img, .sync_fd = -1};
	struct ck_pnode *nodes = vs_xcalloc(img->procs.n, sizeof(*nodes));
	for (size_t i = 0; i < img->procs.n; i++) {
		const struct ck_proc *p = &img->procs.v[i];
		nodes[i] =
		    (struct ck_pnode){p->pid, p->ppid, p->sid, p->pgid, p->state == CK_ZOMBIE};
	}
	int r = ck_pstree_plan(nodes, img->procs.n, root->pid, getsid(0), getpgid(0), &c.plan,
			       &c.nplan, NULL, err);
	free(nodes);
	if (r < 0) {
		vs_error_wrap(err, "restore sessions and process groups");
		stub_report(&c, err);
		return r;
	}
	/* the pool may not overlap the map fds: keep them apart */
	r = ck_pool_create(img, base + 4096, &c.pool, err);
	if (r < 0) {
		vs_error_wrap(err, "restore files");
		stub_report(&c, err);
		return r;
	}
	c.pool.base = base + 4096;
	c.mapbase = base;
	r = stub_proc(&c, root, err);
	stub_report(&c, err);
	free(c.plan);
	return r;
}

/* ==================================================================== */
/* host half                                                             */
/* ==================================================================== */

struct r_thread {
	pid_t hpid;
	const struct ck_thread_r *img;
	bool seized;
};

struct r_proc {
	const struct ck_proc *img;
	pid_t hpid;
	struct r_thread *thr;
	size_t nthr;
	uint64_t scratch;
	int mapbase;	    /* the stub's map fds: mapbase (exe), mapbase+1.. (vmas) */
	bool pinned;	    /* main thread pinned to our CPU meanwhile */
	cpu_set_t affinity; /* its own mask, back before detach */
	int uffd;	    /* userfaultfd over its anonymous vmas while the
			     * page rounds run (ours alone), or -1 */
};

struct restorer {
	const struct ckpt_image *img;
	struct ckpt_stats *st;
	struct r_proc *procs;
	size_t n;
};

static int children_of(pid_t hpid, pid_t **out, size_t *n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", hpid);
	cleanup_closedir DIR *d = opendir(path);
	*out = NULL;
	*n = 0;
	if (!d)
		return -errno;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p2[96], buf[4096];
		snprintf(p2, sizeof(p2), "/proc/%d/task/%d/children", hpid, atoi(de->d_name));
		if (ck_read_small(p2, buf, sizeof(buf)) < 0)
			continue;
		for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n")) {
			*out = ck_xrealloc(*out, (*n + 1) * sizeof(pid_t));
			(*out)[(*n)++] = atoi(t);
		}
	}
	return 0;
}

int ckpt_find_child_nspid(pid_t parent_hpid, pid_t nspid, unsigned timeout_ms, pid_t *out,
			  struct vs_error *err)
{
	uint64_t until = vs_now_ns() + (uint64_t)timeout_ms * 1000000;
	do {
		pid_t *c;
		size_t n;
		children_of(parent_hpid, &c, &n);
		for (size_t i = 0; i < n; i++) {
			pid_t ns;
			if (ck_nspid(c[i], &ns) == 0 && ns == nspid) {
				*out = c[i];
				free(c);
				return 0;
			}
		}
		free(c);
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	} while (vs_now_ns() < until);
	return vs_error_set(err, ETIMEDOUT, "no child of %d with pid %d in its namespace",
			    parent_hpid, nspid);
}

int ckpt_first_child(pid_t parent_hpid, pid_t *out, struct vs_error *err)
{
	pid_t *c;
	size_t n;
	if (children_of(parent_hpid, &c, &n) < 0)
		return vs_error_sys(err, errno, "pid %d: list children", parent_hpid);
	*out = n ? c[0] : 0;
	free(c);
	if (!*out)
		return vs_error_set(err, ESRCH, "pid %d has no child", parent_hpid);
	return 0;
}

static pid_t host_ppid(pid_t hpid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	char *s = strrchr(buf, ')');
	int ppid = 0;
	if (!s || sscanf(s + 2, "%*c %d", &ppid) != 1)
		return 0;
	return ppid;
}

static pid_t child_by_nspid(pid_t parent_hpid, pid_t nspid)
{
	pid_t *c, found = 0;
	size_t n;
	if (parent_hpid <= 0)
		return 0;
	children_of(parent_hpid, &c, &n);
	for (size_t j = 0; j < n; j++) {
		pid_t ns;
		if (ck_nspid(c[j], &ns) == 0 && ns == nspid)
			found = c[j];
	}
	free(c);
	return found;
}

static bool comm_is(pid_t hpid, const char *want)
{
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	buf[strcspn(buf, "\n")] = 0;
	return strcmp(buf, want) == 0;
}

/* Parked: blocked in ck_park's pause(). The comm is set just before the
 * park, so a stub seen by its comm alone can still be on its way there
 * (then its rip is not at the gadget: "stub not parked"). */
static bool in_pause(pid_t hpid)
{
	char path[64], buf[128];
	snprintf(path, sizeof(path), "/proc/%d/syscall", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	return strtol(buf, NULL, 10) == SYS_pause;
}

static char proc_state(pid_t hpid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return '?';
	char *s = strrchr(buf, ')');
	return s && s[1] ? s[2] : '?';
}

/* Find every stub (host pid by namespace pid) and wait until all are parked. */
static int r_collect(struct restorer *R, pid_t root_hpid, unsigned timeout_ms, struct vs_error *err)
{
	const struct ckpt_image *img = R->img;
	uint64_t until = vs_now_ns() + (uint64_t)timeout_ms * 1000000;
	R->n = img->procs.n;
	R->procs = vs_xcalloc(R->n, sizeof(*R->procs));
	for (size_t i = 0; i < R->n; i++) {
		R->procs[i].img = &img->procs.v[i];
		R->procs[i].uffd = -1;
	}
	for (;;) {
		size_t ready = 0;
		for (size_t i = 0; i < R->n; i++) {
			struct r_proc *p = &R->procs[i];
			if (!p->hpid) {
				if (p->img->pid == (pid_t)img->hdr.root_pid)
					p->hpid = root_hpid;
				else if (p->img->ppid == 0) {
					/* a sibling of the root under PID 1 */
					p->hpid = child_by_nspid(host_ppid(root_hpid), p->img->pid);
				} else {
					/* parent is earlier in the image */
					for (size_t k = 0; k < i; k++)
						if (R->procs[k].img->pid == p->img->ppid &&
						    R->procs[k].hpid) {
							pid_t *c;
							size_t n;
							children_of(R->procs[k].hpid, &c, &n);
							for (size_t j = 0; j < n; j++) {
								pid_t ns;
								if (ck_nspid(c[j], &ns) == 0 &&
								    ns == p->img->pid)
									p->hpid = c[j];
							}
							free(c);
						}
				}
			}
			if (!p->hpid)
				continue;
			char s = proc_state(p->hpid);
			if (p->img->state == CK_ZOMBIE
				? s == 'Z'
				: comm_is(p->hpid, READY_COMM) && in_pause(p->hpid))
				ready++;
			else if (s == 'Z' || s == '?') {
				const char *why = ckpt_image_restore_error(img);
				if (why)
					return vs_error_set(err, ECHILD, "%s", why);
				return vs_error_set(err, ECHILD, "restore: stub for pid %d died",
						    p->img->pid);
			}
		}
		if (ready == R->n)
			return 0;
		if (vs_now_ns() > until) {
			const char *why = ckpt_image_restore_error(img);
			if (why)
				return vs_error_set(err, ECHILD, "%s", why);
			return vs_error_set(err, ETIMEDOUT, "restore: %zu of %zu processes ready",
					    ready, R->n);
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

static int r_seize(struct restorer *R, struct r_proc *p, struct vs_error *err)
{
	const struct ckpt_image *img = R->img;
	for (size_t i = 0; i < img->threads.n; i++)
		if (img->threads.v[i].t.pid == p->img->pid)
			p->nthr++;
	p->thr = vs_xcalloc(p->nthr ? p->nthr : 1, sizeof(*p->thr));
	size_t k = 0;
	/* main thread first */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < img->threads.n; i++) {
			const struct ck_thread_r *t = &img->threads.v[i];
			if (t->t.pid != p->img->pid || (pass == 0) != (t->t.tid == p->img->pid))
				continue;
			p->thr[k++].img = t;
		}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", p->hpid);
	cleanup_closedir DIR *d = opendir(path);
	if (!d)
		return vs_error_sys(err, errno, "restore pid %d: list threads", p->img->pid);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		pid_t h = atoi(de->d_name), ns;
		if (ck_nspid(h, &ns) < 0)
			continue;
		for (size_t j = 0; j < p->nthr; j++)
			if (p->thr[j].img->t.tid == ns)
				p->thr[j].hpid = h;
	}
	for (size_t j = 0; j < p->nthr; j++) {
		if (!p->thr[j].hpid)
			return vs_error_set(err, ESRCH, "restore pid %d: thread %d missing",
					    p->img->pid, p->thr[j].img->t.tid);
		int r = ck_seize(p->thr[j].hpid, true, err);
		if (r < 0)
			return r;
		p->thr[j].seized = true;
	}
	for (size_t j = 0; j < p->nthr; j++) {
		int r = ck_wait_stop(p->thr[j].hpid, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int wr(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec l = {(void *)buf, len}, rm = {(void *)addr, len};
	return process_vm_writev(pid, &l, 1, &rm, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

#define SYS(in, nr, a, b, c_, d_, e_, f_)                                                          \
	({                                                                                         \
		long _ret = ck_syscall((in), (nr), (uint64_t)(a), (uint64_t)(b), (uint64_t)(c_),   \
				       (uint64_t)(d_), (uint64_t)(e_), (uint64_t)(f_), err);       \
		_ret;                                                                              \
	})

/* Check a syscall result; injection failures are already in err. */
#define CHECK(expr, fmt, ...)                                                                      \
	do {                                                                                       \
		long _v = (expr);                                                                  \
		if (_v < 0 && _v >= -4095)                                                         \
			return vs_error_sys(err, (int)-_v, "restore pid %d: " fmt, p->img->pid,    \
					    ##__VA_ARGS__);                                        \
		if (_v == CK_EINJECT)                                                              \
			return -err->code;                                                         \
	} while (0)

static bool overlaps(uint64_t s, uint64_t e, uint64_t s2, uint64_t e2)
{
	return s < e2 && s2 < e;
}

/* A hole for the scratch page: outside every dumped vma of p and every
 * current mapping of the stub. */
static int pick_scratch(struct restorer *R, struct r_proc *p, uint64_t *out, struct vs_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", p->hpid);
	uint64_t cur[512][2];
	size_t nc = 0;
	cleanup_fclose FILE *f = fopen(path, "re");
	char line[4096 + 128];
	while (f && fgets(line, sizeof(line), f) && nc < 512) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2)
			cur[nc][0] = s, cur[nc][1] = e, nc++;
	}
	for (uint64_t cand = 0x10000000ull; cand < 0x7f0000000000ull; cand += 0x10000000ull) {
		uint64_t ce = cand + SCRATCH_SIZE;
		bool bad = false;
		for (size_t i = 0; i < R->img->vmas.n && !bad; i++) {
			const struct ck_vma *v = &R->img->vmas.v[i];
			bad = v->pid == p->img->pid &&
			      overlaps(cand, ce, v->start, v->end + 0x100000);
		}
		for (size_t i = 0; i < nc && !bad; i++)
			bad = overlaps(cand, ce, cur[i][0], cur[i][1]);
		if (!bad) {
			*out = cand;
			return 0;
		}
	}
	return vs_error_set(err, ENOMEM, "restore pid %d: no hole for the scratch page",
			    p->img->pid);
}

/* vdso sizes of this kernel (from our own maps) must match the dumped ones */
static int check_vdso(struct restorer *R, struct r_proc *p, struct vs_error *err)
{
	uint64_t mine[3] = {0}, theirs[3] = {0};
	cleanup_fclose FILE *f = fopen("/proc/self/maps", "re");
	char line[4096 + 128];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) != 2)
			continue;
		if (strstr(line, "[vvar]"))
			mine[0] = e - s;
		else if (strstr(line, "[vvar_vclock]"))
			mine[1] = e - s;
		else if (strstr(line, "[vdso]"))
			mine[2] = e - s;
	}
	for (size_t i = 0; i < R->img->vmas.n; i++) {
		const struct ck_vma *v = &R->img->vmas.v[i];
		if (v->pid != p->img->pid)
			continue;
		if (v->kind == CK_VMA_VVAR)
			theirs[0] = v->end - v->start;
		if (v->kind == CK_VMA_VCLOCK)
			theirs[1] = v->end - v->start;
		if (v->kind == CK_VMA_VDSO)
			theirs[2] = v->end - v->start;
	}
	if (memcmp(mine, theirs, sizeof(mine)) != 0)
		return vs_error_set(err, ENOTSUP,
				    "restore pid %d: vDSO layout differs from this kernel "
				    "(vvar/vclock/vdso %#lx/%#lx/%#lx vs %#lx/%#lx/%#lx)",
				    p->img->pid, (long)theirs[0], (long)theirs[1], (long)theirs[2],
				    (long)mine[0], (long)mine[1], (long)mine[2]);
	return 0;
}

/* The vma's madvise() state (smaps VmFlags at dump time). */
static int r_madvise(struct restorer *R, struct r_proc *p, struct ck_inject *in,
		     const struct ck_vma *vm, struct vs_error *err)
{
	static const struct {
		uint32_t flag;
		int advice;
		const char *name;
	} adv[] = {
	    {CK_VMA_F_DONTFORK, MADV_DONTFORK, "MADV_DONTFORK"},
	    {CK_VMA_F_DONTDUMP, MADV_DONTDUMP, "MADV_DONTDUMP"},
	    {CK_VMA_F_WIPEONFRK, MADV_WIPEONFORK, "MADV_WIPEONFORK"},
	    {CK_VMA_F_HUGEPAGE, MADV_HUGEPAGE, "MADV_HUGEPAGE"},
	    {CK_VMA_F_NOHUGE, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"},
	    {CK_VMA_F_MERGEABLE, MADV_MERGEABLE, "MADV_MERGEABLE"},
	    {CK_VMA_F_SEQ, MADV_SEQUENTIAL, "MADV_SEQUENTIAL"},
	    {CK_VMA_F_RANDOM, MADV_RANDOM, "MADV_RANDOM"},
	};
	(void)R;
	for (size_t i = 0; i < VS_ARRAY_SIZE(adv); i++)
		if (vm->flags & adv[i].flag)
			CHECK(SYS(in, SYS_madvise, vm->start, vm->end - vm->start, adv[i].advice, 0,
				  0, 0),
			      "%s %#" PRIx64 "-%#" PRIx64, adv[i].name, vm->start, vm->end);
	return 0;
}

struct prctl_mm_map_k {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

/* The page rounds fill fresh anonymous memory. process_vm_writev faults
 * each page in - the kernel zeroes it - and then copies over it;
 * UFFDIO_COPY allocates the page with the bytes in it (no zeroing): 3.5
 * GiB/s against 2.3-2.6 here. So: a userfaultfd made by the process itself
 * (injected; UFFD_USER_MODE_ONLY needs no privilege, and the stub runs
 * without the slice's seccomp filter), taken over with pidfd_getfd and
 * closed in the process, its anonymous vmas registered for missing pages.
 * Nothing runs in the process until r_uffd_release() dropped our fd, the
 * last one, which unregisters everything. Any refusal on the way just
 * leaves p->uffd = -1: the pages go by process_vm_writev. */
static int r_uffd_arm(struct restorer *R, struct r_proc *p, struct ck_inject *in,
		      struct vs_error *err)
{
	p->uffd = -1;
	long fd = SYS(in, SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0);
	if (fd == CK_EINJECT)
		return -err->code;
	if (fd < 0)
		return 0;
	int u = -1;
	int pidfd = (int)syscall(SYS_pidfd_open, p->hpid, 0);
	if (pidfd >= 0) {
		u = (int)syscall(SYS_pidfd_getfd, pidfd, (int)fd, 0);
		close(pidfd);
	}
	long c = SYS(in, SYS_close, fd, 0, 0, 0, 0, 0);
	if (c < 0 && u >= 0)
		close(u);
	CHECK(c, "close its userfaultfd");
	struct uffdio_api api = {.api = UFFD_API};
	if (u < 0 || ioctl(u, UFFDIO_API, &api) < 0) {
		if (u >= 0)
			close(u);
		return 0;
	}
	for (size_t i = 0; i < R->img->vmas.n; i++) {
		const struct ck_vma *vm = &R->img->vmas.v[i];
		if (vm->pid != p->img->pid || vm->kind != CK_VMA_ANON)
			continue;
		struct uffdio_register reg = {.range = {vm->start, vm->end - vm->start},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(u, UFFDIO_REGISTER, &reg) < 0 || !(reg.ioctls & (1ull << _UFFDIO_COPY))) {
			close(u); /* the last reference: unregisters what was */
			return 0;
		}
	}
	p->uffd = u;
	return 0;
}

/* Before anything runs in the restored processes. */
static void r_uffd_release(struct restorer *R)
{
	for (size_t i = 0; i < R->n; i++)
		if (R->procs[i].uffd >= 0) {
			close(R->procs[i].uffd);
			R->procs[i].uffd = -1;
		}
}

/* Replace the stub's address space with the dumped layout, pages still
 * empty: every vma that takes pages is mapped writable until the page
 * rounds are in (r_memory_finish). */
static int r_memory_layout(struct restorer *R, struct r_proc *p, struct ck_inject *in,
			   struct vs_error *err)
{
	const struct ckpt_image *img = R->img;
	const struct ck_proc *pi = p->img;
	int r = check_vdso(R, p, err);
	if (r < 0)
		return r;
	/* 1. the stub's rseq area goes away with its memory: unregister */
	struct {
		uint64_t ptr;
		uint32_t size, sig, flags, pad;
	} rc = {0};
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, p->thr[0].hpid, sizeof(rc), &rc) > 0 && rc.ptr)
		CHECK(SYS(in, SYS_rseq, rc.ptr, rc.size, RSEQ_FLAG_UNREGISTER, rc.sig, 0, 0),
		      "unregister stub rseq");
	/* 2. scratch page with our gadget */
	uint64_t S = 0;
	if ((r = pick_scratch(R, p, &S, err)) < 0)
		return r;
	long v = SYS(in, SYS_mmap, S, SCRATCH_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(v, "mmap scratch");
	static const uint8_t gadget[4] = {0x0f, 0x05, 0xcc, 0xcc};
	if (wr(p->hpid, S, gadget, sizeof(gadget)) < 0)
		return vs_error_sys(err, errno, "restore pid %d: write gadget", pi->pid);
	in->gadget = S;
	p->scratch = S;
	/* 3. everything else goes */
	CHECK(SYS(in, SYS_munmap, 0x1000, S - 0x1000, 0, 0, 0, 0), "munmap below scratch");
	CHECK(SYS(in, SYS_munmap, S + SCRATCH_SIZE, TASK_TOP - S - SCRATCH_SIZE, 0, 0, 0, 0),
	      "munmap above scratch");
	/* 4. vdso at its old place */
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *vm = &img->vmas.v[i];
		if (vm->pid == pi->pid && vm->kind == CK_VMA_VVAR)
			CHECK(SYS(in, SYS_arch_prctl, ARCH_MAP_VDSO_64, vm->start, 0, 0, 0, 0),
			      "ARCH_MAP_VDSO_64 at %#" PRIx64, vm->start);
	}
	/* 5. every vma; the stub put its map fds right below the pool */
	int k = 0;
	{
		int maxfd = 2;
		for (size_t i = 0; i < img->fds.n; i++)
			if (img->fds.v[i].fd > maxfd)
				maxfd = img->fds.v[i].fd;
		p->mapbase = ((maxfd + 64) / 64) * 64 + 64;
	}
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *vm = &img->vmas.v[i];
		if (vm->pid != pi->pid)
			continue;
		bool filekind = vm->kind == CK_VMA_FILE || vm->kind == CK_VMA_FILE_SHARED ||
				vm->kind == CK_VMA_SHARED;
		int fd = filekind ? p->mapbase + 1 + k : -1;
		if (filekind)
			k++;
		if (vm->kind == CK_VMA_VVAR || vm->kind == CK_VMA_VCLOCK || vm->kind == CK_VMA_VDSO)
			continue;
		/* private mappings take pages (ck_pages_inside): writable for now */
		bool takes = vm->kind == CK_VMA_ANON || vm->kind == CK_VMA_FILE;
		int prot = vm->prot | (takes ? PROT_READ | PROT_WRITE : 0);
		int flags = MAP_FIXED;
		if (vm->kind == CK_VMA_ANON)
			flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		else if (vm->kind == CK_VMA_FILE)
			flags |= MAP_PRIVATE;
		else
			flags |= MAP_SHARED;
		if (vm->flags & CK_VMA_F_GROWSDOWN)
			flags |= MAP_GROWSDOWN;
		if (vm->kind == CK_VMA_SYSV) /* the segment exists by now (sysvipc.c) */
			v = SYS(in, SYS_shmat, (long)vm->shm_id, vm->start, ck_sysv_shmat_flags(vm),
				0, 0, 0);
		else
			v = SYS(in, SYS_mmap, vm->start, vm->end - vm->start, prot, flags, fd,
				filekind ? vm->pgoff : 0);
		CHECK(v, "mmap %#" PRIx64 "-%#" PRIx64 " %s", vm->start, vm->end, vm->path);
		if ((uint64_t)v != vm->start)
			return vs_error_set(err, EFAULT, "restore pid %d: mmap landed at %#lx",
					    pi->pid, v);
	}
	return r_uffd_arm(R, p, in, err);
}

/* The page rounds are in: real protections, madvise state, mm fields. */
static int r_memory_finish(struct restorer *R, struct r_proc *p, struct ck_inject *in,
			   struct vs_error *err)
{
	const struct ckpt_image *img = R->img;
	const struct ck_proc *pi = p->img;
	uint64_t S = p->scratch;
	int r;
	long v;
	for (size_t i = 0; i < img->vmas.n; i++) {
		const struct ck_vma *vm = &img->vmas.v[i];
		if (vm->pid != pi->pid || vm->kind == CK_VMA_VVAR || vm->kind == CK_VMA_VCLOCK ||
		    vm->kind == CK_VMA_VDSO)
			continue;
		bool takes = vm->kind == CK_VMA_ANON || vm->kind == CK_VMA_FILE;
		if (takes && (vm->prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE))
			CHECK(SYS(in, SYS_mprotect, vm->start, vm->end - vm->start, vm->prot, 0, 0,
				  0),
			      "mprotect %#" PRIx64, vm->start);
		if ((r = r_madvise(R, p, in, vm, err)) < 0)
			return r;
	}
	int mapbase = p->mapbase;
	/* 6. mm fields: heap, stack, args, env, auxv, exe */
	struct prctl_mm_map_k mm = {.start_code = pi->start_code,
				    .end_code = pi->end_code,
				    .start_data = pi->start_data,
				    .end_data = pi->end_data,
				    .start_brk = pi->start_brk,
				    .brk = pi->brk,
				    .start_stack = pi->start_stack,
				    .arg_start = pi->arg_start,
				    .arg_end = pi->arg_end,
				    .env_start = pi->env_start,
				    .env_end = pi->env_end,
				    .auxv = S + 2048,
				    .auxv_size = pi->auxv_len,
				    .exe_fd = pi->exe[0] ? (uint32_t)mapbase : (uint32_t)-1};
	if (wr(p->hpid, S + 1024, &mm, sizeof(mm)) < 0 ||
	    wr(p->hpid, S + 2048, pi->auxv, pi->auxv_len ? pi->auxv_len : 8) < 0)
		return vs_error_sys(err, errno, "restore pid %d: write mm map", pi->pid);
	v = SYS(in, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, S + 1024, sizeof(mm), 0, 0);
	if (v == -EBADF || v == -EACCES || v == -EPERM) {
		/* no usable exe: keep the rest */
		mm.exe_fd = (uint32_t)-1;
		wr(p->hpid, S + 1024, &mm, sizeof(mm));
		v = SYS(in, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, S + 1024, sizeof(mm), 0, 0);
	}
	CHECK(v, "PR_SET_MM_MAP");
	CHECK(SYS(in, SYS_close_range, mapbase, ~0u, 0, 0, 0, 0), "close map fds");
	return 0;
}

static int r_thread_state(struct restorer *R, struct r_proc *p, struct r_thread *t,
			  struct vs_error *err)
{
	struct ck_inject in = {
	    .tid = t->hpid, .gadget = p->scratch, .counter = &R->st->injected_syscalls};
	const struct ck_thread *ti = &t->img->t;
	uint64_t S = p->scratch + 4096;
	CHECK(SYS(&in, SYS_set_tid_address, ti->tid_address, 0, 0, 0, 0, 0), "set_tid_address");
	if (ti->robust_list)
		CHECK(SYS(&in, SYS_set_robust_list, ti->robust_list, ti->robust_len, 0, 0, 0, 0),
		      "set_robust_list");
	if (ti->rseq_addr)
		CHECK(SYS(&in, SYS_rseq, ti->rseq_addr, ti->rseq_len, 0, ti->rseq_sig, 0, 0),
		      "rseq tid %d", ti->tid);
	stack_t ss = {.ss_sp = (void *)(uintptr_t)ti->ss_sp,
		      .ss_size = ti->ss_size,
		      .ss_flags = ti->ss_flags & ~SS_ONSTACK};
	if (ti->ss_size && !(ti->ss_flags & SS_DISABLE)) {
		wr(p->hpid, S, &ss, sizeof(ss));
		CHECK(SYS(&in, SYS_sigaltstack, S, 0, 0, 0, 0, 0), "sigaltstack tid %d", ti->tid);
	}
	char comm[16];
	snprintf(comm, sizeof(comm), "%s", ti->comm);
	wr(p->hpid, S + 512, comm, sizeof(comm));
	CHECK(SYS(&in, SYS_prctl, PR_SET_NAME, S + 512, 0, 0, 0, 0), "PR_SET_NAME");
	/* pending signals: queued by the task itself (si_code >= 0 needs that) */
	for (size_t i = 0; i < R->img->siginfos.n; i++) {
		const struct ck_siginfo *si = &R->img->siginfos.v[i];
		if (si->pid != p->img->pid)
			continue;
		int sig;
		memcpy(&sig, si->info, 4);
		wr(p->hpid, S + 1024, si->info, 128);
		if (si->shared && ti->tid == p->img->pid)
			CHECK(SYS(&in, SYS_rt_sigqueueinfo, p->img->pid, sig, S + 1024, 0, 0, 0),
			      "queue signal %d", sig);
		else if (!si->shared && si->tid == ti->tid)
			CHECK(SYS(&in, SYS_rt_tgsigqueueinfo, p->img->pid, ti->tid, sig, S + 1024,
				  0, 0),
			      "queue signal %d to tid %d", sig, ti->tid);
	}
	return 0;
}

/* Credentials of one thread (creds are per thread), in the only order the
 * kernel allows while we hold the stub's full capabilities:
 *   keep-caps -> bounding set (needs CAP_SETPCAP) -> groups, gids, uids
 *   (needs CAP_SETGID/SETUID; keep-caps keeps the permitted set) ->
 *   every permitted cap effective again -> fsuid/fsgid -> [main thread:
 *   no_new_privs, seccomp (needs CAP_SYS_ADMIN or NNP)] -> securebits
 *   (needs CAP_SETPCAP) -> the dumped capabilities -> ambient set.
 * The filters cannot block any of this: the tracee's seccomp is suspended
 * while we trace it (PTRACE_O_SUSPEND_SECCOMP). */
static int r_creds(struct restorer *R, struct r_proc *p, struct ck_inject *in, bool main,
		   struct vs_error *err)
{
	const struct ck_proc *pi = p->img;
	uint64_t S = p->scratch + 8192;
	CHECK(SYS(in, SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0, 0), "keep caps");
	uint64_t cur_bnd = ~0ull;
	{
		char path[96], buf[4096];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", p->hpid, in->tid);
		char *l;
		if (ck_read_small(path, buf, sizeof(buf)) > 0 && (l = strstr(buf, "CapBnd:")))
			cur_bnd = strtoull(l + 7, NULL, 16);
	}
	for (int cap = 0; cap < 64; cap++)
		if ((cur_bnd & ~pi->cap_bnd) & (1ull << cap)) {
			long v = SYS(in, SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0, 0);
			if (v == -EINVAL)
				break; /* beyond this kernel's last cap */
			CHECK(v, "drop cap %d from the bounding set", cap);
		}
	gid_t g[32];
	for (uint32_t i = 0; i < pi->ngroups; i++)
		g[i] = pi->groups[i];
	if (pi->ngroups)
		wr(p->hpid, S, g, pi->ngroups * sizeof(gid_t));
	long v = SYS(in, SYS_setgroups, pi->ngroups, S, 0, 0, 0, 0);
	if (v < 0 && v >= -4095) {
		/* a user namespace that denies setgroups: fine if nothing changes */
		gid_t have[32];
		long n = SYS(in, SYS_getgroups, 32, S + 256, 0, 0, 0, 0);
		if (n < 0 || (uint32_t)n != pi->ngroups ||
		    (n && (process_vm_readv(p->hpid, &(struct iovec){have, (size_t)n * 4}, 1,
					    &(struct iovec){(void *)(S + 256), (size_t)n * 4}, 1,
					    0) != n * 4 ||
			   memcmp(have, g, (size_t)n * 4) != 0)))
			CHECK(v, "setgroups (%u groups)", pi->ngroups);
	}
	CHECK(SYS(in, SYS_setresgid, pi->gid[0], pi->gid[1], pi->gid[2], 0, 0, 0), "setresgid");
	CHECK(SYS(in, SYS_setresuid, pi->uid[0], pi->uid[1], pi->uid[2], 0, 0, 0), "setresuid");
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	wr(p->hpid, S, &hdr, sizeof(hdr));
	struct __user_cap_data_struct all[2];
	CHECK(SYS(in, SYS_capget, S, S + 64, 0, 0, 0, 0), "capget");
	if (process_vm_readv(p->hpid, &(struct iovec){all, sizeof(all)}, 1,
			     &(struct iovec){(void *)(S + 64), sizeof(all)}, 1, 0) != sizeof(all))
		return vs_error_sys(err, errno, "restore pid %d: read caps", pi->pid);
	all[0].effective = all[0].permitted;
	all[1].effective = all[1].permitted;
	wr(p->hpid, S, &hdr, sizeof(hdr));
	wr(p->hpid, S + 64, all, sizeof(all));
	CHECK(SYS(in, SYS_capset, S, S + 64, 0, 0, 0, 0), "raise effective caps");
	if (pi->gid[3] != pi->gid[1])
		SYS(in, SYS_setfsgid, pi->gid[3], 0, 0, 0, 0, 0);
	if (pi->uid[3] != pi->uid[1])
		SYS(in, SYS_setfsuid, pi->uid[3], 0, 0, 0, 0, 0);
	if (main && pi->no_new_privs)
		CHECK(SYS(in, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0), "no_new_privs");
	for (uint32_t idx = 0; main && idx < pi->nr_seccomp; idx++) {
		for (size_t i = 0; i < R->img->seccomps.n; i++) {
			const struct ck_seccomp_r *sc = &R->img->seccomps.v[i];
			if (sc->h.pid != pi->pid || sc->h.index != idx)
				continue;
			struct {
				uint16_t len;
				uint16_t pad[3];
				uint64_t filter;
			} prog = {(uint16_t)sc->h.nr_insns, {0}, S + 64};
			if (64 + sc->h.nr_insns * 8ull > SCRATCH_SIZE - 8192)
				return vs_error_set(
				    err, E2BIG, "restore pid %d: seccomp filter too big", pi->pid);
			wr(p->hpid, S, &prog, sizeof(prog));
			wr(p->hpid, S + 64, sc->insns, sc->h.nr_insns * 8ull);
			/* TSYNC keeps every thread on the same filter */
			CHECK(SYS(in, SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				  p->nthr > 1 ? SECCOMP_FILTER_FLAG_TSYNC : 0, S, 0, 0, 0),
			      "seccomp filter %u", idx);
		}
	}
	CHECK(SYS(in, SYS_prctl, PR_SET_SECUREBITS, pi->securebits, 0, 0, 0, 0), "securebits %#x",
	      pi->securebits);
	struct __user_cap_data_struct data[2] = {
	    {(uint32_t)pi->cap_eff, (uint32_t)pi->cap_prm, (uint32_t)pi->cap_inh},
	    {(uint32_t)(pi->cap_eff >> 32), (uint32_t)(pi->cap_prm >> 32),
	     (uint32_t)(pi->cap_inh >> 32)},
	};
	wr(p->hpid, S, &hdr, sizeof(hdr));
	wr(p->hpid, S + 64, data, sizeof(data));
	CHECK(SYS(in, SYS_capset, S, S + 64, 0, 0, 0, 0), "capset");
	for (int cap = 0; cap < 64; cap++)
		if (pi->cap_amb & (1ull << cap))
			CHECK(
			    SYS(in, SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0, 0),
			    "raise ambient cap %d", cap);
	return 0;
}

static int r_proc_final(struct restorer *R, struct r_proc *p, struct ck_inject *in,
			struct vs_error *err)
{
	const struct ck_proc *pi = p->img;
	uint64_t S = p->scratch + 8192;
	for (int w = 0; w < 3; w++) {
		if (!pi->itimer[w][2] && !pi->itimer[w][3])
			continue;
		wr(p->hpid, S, pi->itimer[w], sizeof(pi->itimer[w]));
		CHECK(SYS(in, SYS_setitimer, w, S, 0, 0, 0, 0), "setitimer %d", w);
	}
	for (size_t i = 0; i < R->img->timers.n; i++) {
		const struct ck_timer *t = &R->img->timers.v[i];
		if (t->pid != pi->pid || (!t->val_sec && !t->val_nsec))
			continue;
		int64_t its[4] = {t->int_sec, t->int_nsec, t->val_sec, t->val_nsec};
		wr(p->hpid, S, its, sizeof(its));
		CHECK(SYS(in, SYS_timer_settime, t->id, 0, S, 0, 0, 0), "timer_settime %d", t->id);
	}
	for (size_t j = p->nthr; j-- > 0;) {
		/* the main thread last: its seccomp TSYNC meets the others' final creds */
		struct ck_inject tin = {.tid = p->thr[j].hpid,
					.gadget = p->scratch,
					.counter = &R->st->injected_syscalls};
		int r = r_creds(R, p, &tin, j == 0, err);
		if (r < 0)
			return r;
	}
	/* after the creds: changing uids clears pdeathsig and resets dumpable */
	CHECK(SYS(in, SYS_prctl, PR_SET_PDEATHSIG, pi->pdeathsig, 0, 0, 0, 0), "pdeathsig");
	if (pi->subreaper)
		CHECK(SYS(in, SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0), "subreaper");
	/* always: the stub inherited the runtime's non-dumpable launcher state
	 * (an exec would have reset it) */
	if (pi->dumpable >= 0 && pi->dumpable <= 1)
		SYS(in, SYS_prctl, PR_SET_DUMPABLE, pi->dumpable, 0, 0, 0, 0);
	return 0;
}

/* munmap(scratch) from inside it: stop at the syscall exit, never return to it */
static int r_drop_scratch(struct r_proc *p, struct vs_error *err)
{
	pid_t tid = p->thr[0].hpid;
	uint64_t regs[27];
	int r = ck_getregs(tid, regs, err);
	if (r < 0)
		return r;
	regs[R_RAX] = SYS_munmap;
	regs[R_ORIG_RAX] = (uint64_t)-1;
	regs[R_RDI] = p->scratch;
	regs[R_RSI] = SCRATCH_SIZE;
	regs[R_RIP] = p->scratch;
	if ((r = ck_setregs(tid, regs, err)) < 0)
		return r;
	for (int stop = 0; stop < 2; stop++) {
		if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0)
			return vs_error_sys(err, errno, "restore pid %d: PTRACE_SYSCALL",
					    p->img->pid);
		int status;
		for (;;) {
			if (waitpid(tid, &status, __WALL) < 0) {
				if (errno == EINTR)
					continue;
				return vs_error_sys(err, errno, "restore pid %d: waitpid",
						    p->img->pid);
			}
			break;
		}
		if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80))
			return vs_error_set(err, EIO,
					    "restore pid %d: unexpected stop %#x unmapping scratch",
					    p->img->pid, status);
	}
	ck_getregs(tid, regs, NULL);
	if ((long)regs[R_RAX] != 0)
		return vs_error_set(err, EIO, "restore pid %d: munmap scratch: %ld", p->img->pid,
				    (long)regs[R_RAX]);
	return 0;
}

static int r_final_regs(struct r_proc *p, struct vs_error *err)
{
	for (size_t j = 0; j < p->nthr; j++) {
		const struct ck_thread_r *t = p->thr[j].img;
		uint64_t regs[27];
		memcpy(regs, t->t.regs, sizeof(regs));
		regs[R_ORIG_RAX] = (uint64_t)-1;
		int r = ck_setregs(p->thr[j].hpid, regs, err);
		if (r < 0)
			return r;
		if (t->t.xstate_len) {
			struct iovec iov = {(void *)t->xstate, t->t.xstate_len};
			if (ptrace(PTRACE_SETREGSET, p->thr[j].hpid, NT_X86_XSTATE, &iov) < 0)
				return vs_error_sys(err, errno, "restore tid %d: SETREGSET xstate",
						    t->t.tid);
		}
		uint64_t mask = t->t.sigmask;
		if (ptrace(PTRACE_SETSIGMASK, p->thr[j].hpid, sizeof(mask), &mask) < 0)
			return vs_error_sys(err, errno, "restore tid %d: SETSIGMASK", t->t.tid);
	}
	return 0;
}

static void r_release(struct restorer *R, bool kill_all)
{
	r_uffd_release(R);
	for (size_t i = 0; i < R->n; i++) {
		struct r_proc *p = &R->procs[i];
		if (kill_all && p->hpid)
			kill(p->hpid, SIGKILL);
		for (size_t j = 0; j < p->nthr; j++)
			if (p->thr[j].seized) {
				ptrace(PTRACE_DETACH, p->thr[j].hpid, 0, 0);
				p->thr[j].seized = false;
			}
	}
}

static pid_t r_hpid_of(void *arg, int32_t vpid, int *uffd)
{
	const struct restorer *R = arg;
	*uffd = -1;
	for (size_t i = 0; i < R->n; i++)
		if (R->procs[i].img->pid == vpid && R->procs[i].img->state == CK_ALIVE) {
			*uffd = R->procs[i].uffd;
			return R->procs[i].hpid;
		}
	return 0;
}

int ckpt_restore_finish(struct ckpt_image *img, pid_t root_hpid, unsigned timeout_ms,
			struct ckpt_stats *st, struct vs_error *err)
{
	struct ckpt_stats dummy;
	if (!st)
		st = &dummy;
	uint64_t t0 = vs_now_ns();
	struct restorer R = {.img = img, .st = st};
	int r = r_collect(&R, root_hpid, timeout_ms, err);
	st->forking_ns = vs_now_ns() - t0;
	if (r >= 0) /* SysV IPC objects of the tree's ipc namespace (files.c) */
		r = ck_files_restore_host(img, root_hpid, err);
	for (size_t i = 0; r >= 0 && i < R.n; i++)
		if (R.procs[i].img->state == CK_ALIVE)
			r = r_seize(&R, &R.procs[i], err);
	/* One injected syscall is a round trip tracer -> tracee -> tracer:
	 * ~18 us on one CPU, ~100 us across CPUs (checkpoint.md §6). Pin us
	 * and the main threads to our CPU meanwhile; their own masks come back
	 * before detach. */
	cpu_set_t self_mask, one;
	bool pinned = false;
	int cpu = sched_getcpu();
	if (r >= 0 && cpu >= 0 && sched_getaffinity(0, sizeof(self_mask), &self_mask) == 0) {
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
	}
	/* 1. every process gets its dumped layout, pages still empty */
	for (size_t i = 0; r >= 0 && i < R.n; i++) {
		struct r_proc *p = &R.procs[i];
		if (p->img->state != CK_ALIVE)
			continue;
		/* the stub's park gadget, found at the main thread's stop */
		uint64_t regs[27];
		r = ck_getregs(p->thr[0].hpid, regs, err);
		if (r < 0)
			break;
		errno = 0;
		long word = ptrace(PTRACE_PEEKTEXT, p->thr[0].hpid, regs[R_RIP] - 2, 0);
		if (errno || (word & 0xffffff) != 0xcc050f) {
			r = vs_error_set(err, EIO,
					 "restore pid %d: stub not parked at its gadget (rip %#lx)",
					 p->img->pid, (long)regs[R_RIP]);
			break;
		}
		struct ck_inject in = {.tid = p->thr[0].hpid,
				       .gadget = regs[R_RIP] - 2,
				       .counter = &st->injected_syscalls};
		p->pinned =
		    pinned &&
		    sched_getaffinity(p->thr[0].hpid, sizeof(p->affinity), &p->affinity) == 0 &&
		    sched_setaffinity(p->thr[0].hpid, sizeof(one), &one) == 0;
		r = r_memory_layout(&R, p, &in, err);
		if (r < 0)
			vs_error_wrap(err, "restore");
	}
	/* 2. the page rounds, as they arrive; the stream's END is verified
	 * here, before any process may run. No injection meanwhile: unpinned,
	 * so reading the stream and writing the pages (two threads) get two
	 * CPUs. */
	if (pinned)
		sched_setaffinity(0, sizeof(self_mask), &self_mask);
	if (r >= 0 && (r = ck_mem_restore(img, r_hpid_of, &R, st, err)) < 0)
		vs_error_wrap(err, "restore memory");
	r_uffd_release(&R);
	if (pinned)
		sched_setaffinity(0, sizeof(one), &one);
	/* 3. the rest of every process */
	for (size_t i = 0; r >= 0 && i < R.n; i++) {
		struct r_proc *p = &R.procs[i];
		if (p->img->state != CK_ALIVE)
			continue;
		struct ck_inject in = {
		    .tid = p->thr[0].hpid, .gadget = p->scratch, .counter = &st->injected_syscalls};
		r = r_memory_finish(&R, p, &in, err);
		for (size_t j = 0; r >= 0 && j < p->nthr; j++)
			r = r_thread_state(&R, p, &p->thr[j], err);
		if (r >= 0)
			r = r_proc_final(&R, p, &in, err);
		if (r >= 0)
			r = r_drop_scratch(p, err);
		if (r >= 0)
			r = r_final_regs(p, err);
		if (p->pinned)
			sched_setaffinity(p->thr[0].hpid, sizeof(p->affinity), &p->affinity);
		p->pinned = false;
		if (r < 0)
			vs_error_wrap(err, "restore");
	}
	if (pinned)
		sched_setaffinity(0, sizeof(self_mask), &self_mask);
	r_release(&R, r < 0);
	for (size_t i = 0; i < R.n; i++)
		free(R.procs[i].thr);
	free(R.procs);
	st->restore_ns = vs_now_ns() - t0;
	return r;
}
