/*
 * dump.c - checkpoint a process tree into a stream.
 *
 * Order (checkpoint.md §5): enumerate the tree and refuse unsupported state
 * while it still runs; stop it (v1 freezer if given, then PTRACE_SEIZE +
 * PTRACE_INTERRUPT every thread, repeated until the task set is stable);
 * per process read /proc, regsets and a few injected read-only syscalls
 * (sigactions, itimers, sigaltstack, tid address, brk, timers); fds through
 * pidfd_getfd; memory through pagemap + process_vm_readv; then kill the tree
 * (or detach). Any failure detaches and thaws: the tree runs on untouched.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/elf.h>
#include <linux/kcmp.h>
#include <linux/ptrace.h>

#include "ckpt_int.h"
#include "files.h"
#include "vslice/util.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

struct rseq_conf {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

struct d_thread {
	pid_t hpid, vtid;
	bool seized;
};

struct d_proc {
	pid_t hpid, vpid, hppid;
	bool zombie;
	struct d_thread *thr;
	size_t nthr;
};

struct dumper {
	const struct ckpt_dump_opts *o;
	struct ckpt_stats *st;
	struct d_proc *procs;
	size_t nprocs;
	bool frozen;   /* freezer cgroup FROZEN by us */
	bool tolerant; /* tree still running: processes may vanish */
	struct ck_writer w;
	struct ck_files files;
	struct ck_memset mem; /* ranges whose pages go in the page round */
};

static bool d_has(struct dumper *d, pid_t hpid)
{
	for (size_t i = 0; i < d->nprocs; i++)
		if (d->procs[i].hpid == hpid)
			return true;
	return false;
}

static struct d_proc *d_proc_by_hpid(struct dumper *d, pid_t hpid)
{
	for (size_t i = 0; i < d->nprocs; i++)
		if (d->procs[i].hpid == hpid)
			return &d->procs[i];
	return NULL;
}

/* Field `key` of /proc/<pid>/status as a string (into out). */
static int status_field(pid_t pid, const char *key, char *out, size_t len)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	int n = ck_read_small(path, buf, sizeof(buf));
	if (n < 0)
		return n;
	size_t kl = strlen(key);
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, kl) == 0 && l[kl] == ':') {
			char *v = l + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t i = 0;
			while (v[i] && v[i] != '\n' && i + 1 < len) {
				out[i] = v[i];
				i++;
			}
			out[i] = 0;
			return 0;
		}
	}
	return -ENOENT;
}

static int list_tids(pid_t pid, pid_t **out, size_t *n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	cleanup_closedir DIR *dir = opendir(path);
	if (!dir)
		return -errno;
	pid_t *v = NULL;
	size_t cnt = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		v = ck_xrealloc(v, (cnt + 1) * sizeof(*v));
		v[cnt++] = atoi(de->d_name);
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* Add every child of the slice's PID 1 (init_pid) not known yet: the
 * workload's siblings, i.e. processes reparented to PID 1 (double-forked
 * daemons). Zombies there are about to be reaped by PID 1: left out. */
static void d_add_init_children(struct dumper *d)
{
	pid_t *tids = NULL;
	size_t nt = 0;
	if (d->o->init_pid <= 0 || list_tids(d->o->init_pid, &tids, &nt) < 0)
		return;
	for (size_t t = 0; t < nt; t++) {
		char path[96], buf[4096], st[64];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", d->o->init_pid, tids[t]);
		if (ck_read_small(path, buf, sizeof(buf)) < 0)
			continue;
		for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
			pid_t c = atoi(tok);
			if (c <= 0 || d_has(d, c))
				continue;
			if (status_field(c, "State", st, sizeof(st)) < 0 || st[0] == 'Z' ||
			    st[0] == 'X')
				continue;
			d->procs = ck_xrealloc(d->procs, (d->nprocs + 1) * sizeof(*d->procs));
			d->procs[d->nprocs++] = (struct d_proc){.hpid = c, .hppid = d->o->init_pid};
		}
	}
	free(tids);
}

/* Breadth-first walk from the root (then the root's siblings under PID 1);
 * parents always precede children. */
static int d_enumerate(struct dumper *d, struct vs_error *err)
{
	if (!d->nprocs) {
		d->procs = vs_xcalloc(1, sizeof(*d->procs));
		d->procs[0].hpid = d->o->root_pid;
		d->procs[0].hppid = d->o->init_pid;
		d->nprocs = 1;
	}
	d_add_init_children(d);
	for (size_t i = 0; i < d->nprocs; i++) {
		struct d_proc *p = &d->procs[i];
		char st[64];
		pid_t *tids = NULL;
		size_t nt = 0;
		if (status_field(p->hpid, "State", st, sizeof(st)) < 0 ||
		    list_tids(p->hpid, &tids, &nt) < 0) {
			free(tids);
			if (d->tolerant && i > 0) {
				/* a short-lived process exited and was reaped meanwhile */
				free(p->thr);
				memmove(p, p + 1, (d->nprocs - i - 1) * sizeof(*p));
				d->nprocs--;
				i--;
				continue;
			}
			return vs_error_set(err, ESRCH, "process %d: vanished during checkpoint",
					    p->hpid);
		}
		p->zombie = st[0] == 'Z' || st[0] == 'X';
		if (p->zombie && i > 0 && d->o->init_pid > 0 && p->hppid == d->o->init_pid) {
			/* PID 1 reaps it any moment: not part of the slice any more */
			free(tids);
			free(p->thr);
			memmove(p, p + 1, (d->nprocs - i - 1) * sizeof(*p));
			d->nprocs--;
			i--;
			continue;
		}
		for (size_t t = 0; t < nt; t++) {
			bool known = false;
			for (size_t k = 0; k < p->nthr; k++)
				known |= p->thr[k].hpid == tids[t];
			if (!known && !p->zombie) {
				p->thr = ck_xrealloc(p->thr, (p->nthr + 1) * sizeof(*p->thr));
				p->thr[p->nthr++] = (struct d_thread){.hpid = tids[t]};
			}
			char path[96], buf[4096];
			snprintf(path, sizeof(path), "/proc/%d/task/%d/children", p->hpid, tids[t]);
			if (ck_read_small(path, buf, sizeof(buf)) < 0)
				continue;
			for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
				pid_t c = atoi(tok);
				if (c <= 0 || d_has(d, c))
					continue;
				d->procs =
				    ck_xrealloc(d->procs, (d->nprocs + 1) * sizeof(*d->procs));
				p = &d->procs[i];
				d->procs[d->nprocs++] =
				    (struct d_proc){.hpid = c, .hppid = p->hpid};
			}
		}
		free(tids);
	}
	/* Zombies stay in their parent's children list until reaped. */
	for (size_t i = 0; i < d->nprocs; i++) {
		struct d_proc *p = &d->procs[i];
		if (ck_nspid(p->hpid, &p->vpid) < 0) {
			if (d->tolerant && i > 0) {
				free(p->thr);
				memmove(p, p + 1, (d->nprocs - i - 1) * sizeof(*p));
				d->nprocs--;
				i--;
				continue;
			}
			return vs_error_set(err, ESRCH, "process %d: no NSpid", p->hpid);
		}
		for (size_t t = 0; t < p->nthr; t++) {
			char path[64];
			snprintf(path, sizeof(path), "%d/task/%d", p->hpid, p->thr[t].hpid);
			(void)path;
			if (p->thr[t].vtid == 0 && ck_nspid(p->thr[t].hpid, &p->thr[t].vtid) < 0)
				p->thr[t].vtid = 0;
		}
	}
	return 0;
}

/* --- refusal checks ---------------------------------------------------- */

/* Innermost value of an NS* line of /proc/<pid>/status (NSsid, NSpgid). */
static int32_t ns_field(pid_t hpid, const char *key)
{
	char v[128];
	if (status_field(hpid, key, v, sizeof(v)) < 0)
		return -1;
	char *last = strrchr(v, '\t') ? strrchr(v, '\t') + 1 : v;
	return atoi(last);
}

/* Every process of PID 1's pid namespace is part of the slice: one that is
 * not below PID 1 (entered from outside, e.g. slicectl exec, or one of its
 * descendants) has no parent we could restore. */
static int d_check_ns_complete(struct dumper *d, struct vs_error *err)
{
	if (d->o->init_pid <= 0)
		return 0;
	char path[64], want[64], got[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", d->o->init_pid);
	ssize_t l = readlink(path, want, sizeof(want) - 1);
	if (l < 0)
		return vs_error_sys(err, errno, "PID 1 (%d): pid namespace", d->o->init_pid);
	want[l] = 0;
	cleanup_closedir DIR *dir = opendir("/proc");
	if (!dir)
		return vs_error_sys(err, errno, "/proc");
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid_t h = atoi(de->d_name);
		if (h == d->o->init_pid || d_has(d, h))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/pid", h);
		l = readlink(path, got, sizeof(got) - 1);
		if (l < 0)
			continue;
		got[l] = 0;
		char st[64];
		if (strcmp(got, want) != 0 || status_field(h, "State", st, sizeof(st)) < 0 ||
		    st[0] == 'Z' || st[0] == 'X')
			continue;
		/* forked by one of ours since we listed them: frozen and seen next time */
		pid_t up = h;
		bool ours = false;
		for (int depth = 0; depth < 4096 && up > 0 && !ours; depth++) {
			char ppid[32];
			if (status_field(up, "PPid", ppid, sizeof(ppid)) < 0)
				break;
			up = atoi(ppid);
			ours = up == d->o->init_pid || d_has(d, up);
		}
		if (ours)
			continue;
		/* An exiting task (past exit_mm: the freezer lets it run to its
		 * end) loses its /proc entries as we read them: a pid we cannot
		 * name any more is gone, not a stranger. */
		pid_t ns = 0;
		if (ck_nspid(h, &ns) < 0 || ns <= 0 || kill(h, 0) < 0)
			continue;
		vs_error_set(err, ENOTSUP,
			     "pid %d: refused: in the slice but not below its PID 1 (entered "
			     "from outside, e.g. slicectl exec): it has no parent to restore",
			     ns);
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	return 0;
}

/* Sessions and process groups must be rebuildable (pstree.c). */
static int d_check_pstree(struct dumper *d, struct vs_error *err)
{
	struct ck_pnode *n = vs_xcalloc(d->nprocs ? d->nprocs : 1, sizeof(*n));
	size_t nn = 0;
	for (size_t i = 0; i < d->nprocs; i++) {
		struct d_proc *p = &d->procs[i];
		int32_t sid = ns_field(p->hpid, "NSsid"), pgid = ns_field(p->hpid, "NSpgid");
		if (sid < 0 || pgid < 0)
			continue; /* gone meanwhile */
		struct d_proc *par = d_proc_by_hpid(d, p->hppid);
		n[nn++] = (struct ck_pnode){.pid = p->vpid,
					    .ppid = i == 0 || !par ? 0 : par->vpid,
					    .sid = sid,
					    .pgid = pgid,
					    .zombie = p->zombie};
	}
	int32_t top_sid = 0, top_pgid = 0;
	if (d->o->init_pid > 0) {
		top_sid = ns_field(d->o->init_pid, "NSsid");
		top_pgid = ns_field(d->o->init_pid, "NSpgid");
	}
	struct ck_pstep *plan = NULL;
	size_t np = 0;
	int32_t bad = 0;
	int r =
	    nn ? ck_pstree_plan(n, nn, d->procs[0].vpid, top_sid, top_pgid, &plan, &np, &bad, err)
	       : 0;
	free(plan);
	free(n);
	if (r < 0) {
		char msg[VS_ERROR_MAX];
		const char *why = strchr(err->msg, ':') ? strchr(err->msg, ':') + 2 : err->msg;
		snprintf(msg, sizeof(msg), "%s", why);
		vs_error_set(err, ENOTSUP, "pid %d: refused: %s", bad, msg);
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	return 0;
}

/* cwd, root and exe must be there again on restore: a deleted working
 * directory cannot be entered, a deleted executable cannot become
 * /proc/self/exe, and a chroot is not restored. */
static int d_check_paths(struct dumper *d, struct d_proc *p, struct vs_error *err)
{
	char path[64], link[CK_PATH];
	static const struct {
		const char *name, *what;
	} links[] = {{"cwd", "working directory"}, {"exe", "executable"}};
	for (size_t i = 0; i < VS_ARRAY_SIZE(links); i++) {
		snprintf(path, sizeof(path), "/proc/%d/%s", p->hpid, links[i].name);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		if (l < 0)
			continue; /* exiting; caught later */
		link[l] = 0;
		if (l > 10 && strcmp(link + l - 10, " (deleted)") == 0) {
			link[l - 10] = 0;
			vs_error_set(err, ENOTSUP, "pid %d: refused: its %s %s was deleted",
				     p->vpid, links[i].what, link);
			return vs_error_kind(err, VS_EK_REFUSED);
		}
	}
	struct stat mine, top;
	snprintf(path, sizeof(path), "/proc/%d/root", p->hpid);
	char top_path[64];
	snprintf(top_path, sizeof(top_path), "/proc/%d/root",
		 d->o->init_pid > 0 ? d->o->init_pid : d->o->root_pid);
	if (stat(path, &mine) == 0 && stat(top_path, &top) == 0 &&
	    (mine.st_dev != top.st_dev || mine.st_ino != top.st_ino)) {
		vs_error_set(err, ENOTSUP,
			     "pid %d: refused: chroot()ed (its root directory is not restored)",
			     p->vpid);
		return vs_error_kind(err, VS_EK_REFUSED);
	}
	return 0;
}

static int d_check_proc(struct dumper *d, struct d_proc *p, struct vs_error *err)
{
	char v[64];
	if (p->zombie)
		return 0;
	char creds0[1024] = "";
	for (size_t t = 0; t < p->nthr; t++) {
		char path[64], buf[8192];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", p->hpid, p->thr[t].hpid);
		if (ck_read_small(path, buf, sizeof(buf)) < 0)
			continue;
		/* TracerPid is the tracing thread's id: ours (a dump may run in
		 * any thread of its process, e.g. a node manager's job thread). */
		char *tp = strstr(buf, "TracerPid:");
		if (tp && atoi(tp + 10) != 0 && atoi(tp + 10) != gettid())
			return vs_error_set(err, EBUSY,
					    "pid %d (tid %d): refused: task is ptraced by %d",
					    p->vpid, p->thr[t].vtid, atoi(tp + 10));
		/* Credentials are dumped per process: a thread that changed its
		 * own with a raw syscall (glibc's setuid() changes every thread)
		 * would come back with its process's. */
		char creds[1024];
		size_t n = 0;
		static const char *const keys[] = {
		    "\nUid:",	 "\nGid:",    "\nGroups:", "\nCapInh:",
		    "\nCapPrm:", "\nCapEff:", "\nCapBnd:", "\nCapAmb:"};
		for (size_t k = 0; k < VS_ARRAY_SIZE(keys); k++) {
			const char *l = strstr(buf, keys[k]);
			size_t len = l ? strcspn(l + 1, "\n") + 1 : 0;
			if (l && n + len < sizeof(creds)) {
				memcpy(creds + n, l, len);
				n += len;
			}
		}
		creds[n] = 0;
		if (t == 0)
			memcpy(creds0, creds, n + 1);
		else if (strcmp(creds, creds0) != 0)
			return vs_error_set(
			    err, ENOTSUP,
			    "pid %d (tid %d): refused: the thread's credentials differ "
			    "from its process's (changed by a raw syscall)",
			    p->vpid, p->thr[t].vtid);
	}
	/* PTRACE_SEIZE of a job-stopped task waits for it to re-trap, which a
	 * frozen task never does: refuse (SIGCONT it first). */
	if (status_field(p->hpid, "State", v, sizeof(v)) == 0 && v[0] == 'T')
		return vs_error_set(err, ENOTSUP,
				    "pid %d: refused: stopped by job control (SIGCONT it first)",
				    p->vpid);
	if (status_field(p->hpid, "Seccomp", v, sizeof(v)) == 0 && atoi(v) == 1)
		return vs_error_set(err, ENOTSUP, "pid %d: refused: strict-mode seccomp", p->vpid);
	int r = d_check_paths(d, p, err);
	if (r < 0)
		return r;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", p->hpid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f)
		return vs_error_sys(err, errno, "pid %d: open maps", p->vpid);
	char line[4096 + 128];
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "[uprobes]") || strstr(line, "anon_hugepage") ||
		    strstr(line, "[io_uring]") || strstr(line, "/dev/hugepages") ||
		    strstr(line, "[aio]") || strstr(line, "/aio ("))
			return vs_error_set(err, ENOTSUP,
					    "pid %d: refused: unsupported mapping: %s", p->vpid,
					    strtok(line, "\n"));
	}
	return ck_files_check(p->hpid, p->vpid, err);
}

/* Processes (not threads) that share an address space (vfork, CLONE_VM),
 * an fd table, fs info or signal handlers cannot be restored as separate
 * processes; neither can a thread group whose leader is gone. */
static int d_check_sharing(struct dumper *d, struct vs_error *err)
{
	static const struct {
		int type;
		const char *what;
	} kinds[] = {
	    {KCMP_VM, "its address space (vfork/CLONE_VM)"},
	    {KCMP_FILES, "its fd table (CLONE_FILES)"},
	    {KCMP_FS, "its cwd/umask (CLONE_FS)"},
	    {KCMP_SIGHAND, "its signal handlers (CLONE_SIGHAND)"},
	};
	for (size_t i = 0; i < d->nprocs; i++) {
		struct d_proc *a = &d->procs[i];
		if (a->zombie) {
			pid_t *tids = NULL;
			size_t nt = 0;
			if (list_tids(a->hpid, &tids, &nt) == 0 && nt > 1) {
				free(tids);
				return vs_error_set(err, ENOTSUP,
						    "pid %d: refused: thread group leader exited, "
						    "%zu threads live on",
						    a->vpid, nt - 1);
			}
			free(tids);
			continue;
		}
		for (size_t j = i + 1; j < d->nprocs; j++) {
			struct d_proc *b = &d->procs[j];
			if (b->zombie)
				continue;
			for (size_t k = 0; k < VS_ARRAY_SIZE(kinds); k++)
				if (syscall(SYS_kcmp, a->hpid, b->hpid, kinds[k].type, 0, 0) == 0)
					return vs_error_set(
					    err, kinds[k].type == KCMP_VM ? EAGAIN : ENOTSUP,
					    "pid %d: refused: shares %s with pid %d", b->vpid,
					    kinds[k].what, a->vpid);
		}
	}
	return 0;
}

/* --- stopping ----------------------------------------------------------- */

/* The tree's freezer (ckpt_dump_opts.freeze), if it has one. */
static int d_freeze(const struct ckpt_dump_opts *o, bool frozen, struct vs_error *err)
{
	struct vs_error scratch;
	return o->freeze ? o->freeze(o->freeze_arg, frozen, err ? err : &scratch) : 0;
}

static int d_seize_all(struct dumper *d, struct vs_error *err)
{
	for (int round = 0; round < 50; round++) {
		bool added = false;
		for (size_t i = 0; i < d->nprocs; i++) {
			struct d_proc *p = &d->procs[i];
			for (size_t t = 0; t < p->nthr; t++) {
				if (p->thr[t].seized)
					continue;
				int r = ck_seize(p->thr[t].hpid, false, err);
				if (r < 0)
					return r;
				p->thr[t].seized = true;
				added = true;
			}
		}
		if (!added)
			return 0;
		if (d->frozen) {
			/* frozen tasks take the interrupt once thawed */
		} else {
			size_t before = d->nprocs;
			size_t nthr_before = 0;
			for (size_t i = 0; i < d->nprocs; i++)
				nthr_before += d->procs[i].nthr;
			int r = d_enumerate(d, err);
			if (r < 0)
				return r;
			size_t nthr_after = 0;
			for (size_t i = 0; i < d->nprocs; i++)
				nthr_after += d->procs[i].nthr;
			if (d->nprocs == before && nthr_after == nthr_before)
				return 0;
		}
	}
	return vs_error_set(err, EAGAIN, "process tree %d keeps changing; cannot stop it",
			    d->o->root_pid);
}

/*
 * A thread stopped inside the vDSO may hold clock values read before the
 * stop in its registers (a base from the host's vvar, or the old time
 * namespace's offset) and combine them with the restored namespace's offset
 * when it resumes: CLOCK_MONOTONIC then goes backwards by the time between
 * dump and restore (seen: 2 s, 1 run in 8 of a clock_gettime loop). Such a
 * thread is single-stepped until it has left the vDSO (a clock read is ~100
 * instructions; bounded). A signal arriving meanwhile would put a handler
 * frame over the vDSO one: EAGAIN, and ckpt_dump stops the tree again.
 */
static int d_leave_vdso(pid_t tgid, pid_t tid, pid_t vpid, uint64_t lo, uint64_t hi,
			struct vs_error *err)
{
	for (int step = 0; step < 100000; step++) {
		uint64_t regs[27];
		if (ck_getregs(tid, regs, err) < 0)
			return vs_error_wrap(err, "checkpoint pid %d", vpid);
		if (regs[16] < lo || regs[16] >= hi) /* rip */
			return 0;
		if (ptrace(PTRACE_SINGLESTEP, tid, 0, 0) < 0)
			return vs_error_sys(err, errno, "pid %d thread %d: PTRACE_SINGLESTEP", vpid,
					    tid);
		int st;
		if (waitpid(tid, &st, __WALL) != tid || !WIFSTOPPED(st))
			return vs_error_set(err, ESRCH,
					    "pid %d thread %d died while stepped out of "
					    "the vDSO",
					    vpid, tid);
		if (WSTOPSIG(st) != SIGTRAP) {
			/* Queue the signal again (with its siginfo where the kernel
			 * lets us), so it is delivered once the tree runs. */
			siginfo_t si;
			if (ptrace(PTRACE_GETSIGINFO, tid, 0, &si) < 0 ||
			    syscall(SYS_rt_tgsigqueueinfo, tgid, tid, WSTOPSIG(st), &si) < 0)
				syscall(SYS_tgkill, tgid, tid, WSTOPSIG(st));
			return vs_error_set(err, EAGAIN,
					    "pid %d thread %d got a signal inside the "
					    "vDSO",
					    vpid, tid);
		}
	}
	return vs_error_set(err, EAGAIN, "pid %d thread %d does not leave the vDSO", vpid, tid);
}

static int d_check_vdso(struct dumper *d, struct vs_error *err)
{
	for (size_t i = 0; i < d->nprocs; i++) {
		struct d_proc *p = &d->procs[i];
		if (p->zombie || !p->nthr)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/maps", p->hpid);
		cleanup_fclose FILE *f = fopen(path, "re");
		if (!f)
			continue; /* gone: the re-check after the stop names it */
		unsigned long long lo = 0, hi = 0;
		char line[512];
		while (fgets(line, sizeof(line), f))
			if (strstr(line, "[vdso]") && sscanf(line, "%llx-%llx", &lo, &hi) == 2)
				break;
		if (hi <= lo)
			continue;
		for (size_t t = 0; t < p->nthr; t++) {
			int r = d_leave_vdso(p->hpid, p->thr[t].hpid, p->vpid, lo, hi, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int d_wait_all(struct dumper *d, struct vs_error *err)
{
	for (size_t i = 0; i < d->nprocs; i++)
		for (size_t t = 0; t < d->procs[i].nthr; t++) {
			int r = ck_wait_stop(d->procs[i].thr[t].hpid, err);
			if (r < 0)
				return r;
		}
	return 0;
}

static void d_release(struct dumper *d, bool kill_tree)
{
	if (kill_tree) {
		/* Killed while still traced: the tracer must collect each death
		 * so that the real parent can reap it. */
		for (size_t i = 0; i < d->nprocs; i++)
			kill(d->procs[i].hpid, SIGKILL);
		/* non-leader threads first: a leader's death is reported only
		 * after all its threads are reaped */
		uint64_t until = vs_now_ns() + 2000000000ull;
		for (int leader = 0; leader < 2; leader++)
			for (size_t i = 0; i < d->nprocs; i++)
				for (size_t t = 0; t < d->procs[i].nthr; t++) {
					struct d_thread *th = &d->procs[i].thr[t];
					if ((th->hpid == d->procs[i].hpid) != leader)
						continue;
					while (th->seized) {
						pid_t w = waitpid(th->hpid, NULL, __WALL | WNOHANG);
						if (w < 0 && errno == EINTR)
							continue;
						if (w != 0 || vs_now_ns() > until) {
							th->seized = false;
							break;
						}
						struct timespec ts = {0, 500000};
						nanosleep(&ts, NULL);
					}
				}
	}
	for (size_t i = 0; i < d->nprocs; i++)
		for (size_t t = 0; t < d->procs[i].nthr; t++)
			if (d->procs[i].thr[t].seized) {
				ptrace(PTRACE_DETACH, d->procs[i].thr[t].hpid, 0, 0);
				d->procs[i].thr[t].seized = false;
			}
	if (d->frozen) {
		d_freeze(d->o, false, NULL);
		d->frozen = false;
	}
}

/* --- per process -------------------------------------------------------- */

static int parse_stat(pid_t pid, struct ck_proc *pr, struct vs_error *err)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return vs_error_sys(err, errno, "pid %d: read stat", pr->pid);
	char *s = strrchr(buf, ')');
	if (!s)
		return vs_error_set(err, EINVAL, "pid %d: bad stat", pr->pid);
	s += 2;
	/* field 3 is s[0]; collect all fields */
	uint64_t f[64] = {0};
	int n = 3;
	for (char *tok = strtok(s, " "); tok && n < 64; tok = strtok(NULL, " "))
		f[n++] = strtoull(tok, NULL, 10);
	pr->start_code = f[26];
	pr->end_code = f[27];
	pr->start_stack = f[28];
	pr->start_data = f[45];
	pr->end_data = f[46];
	pr->start_brk = f[47];
	pr->arg_start = f[48];
	pr->arg_end = f[49];
	pr->env_start = f[50];
	pr->env_end = f[51];
	pr->exit_status = (int32_t)f[52];
	return 0;
}

static uint64_t hexfield(pid_t pid, const char *key)
{
	char v[64];
	if (status_field(pid, key, v, sizeof(v)) < 0)
		return 0;
	return strtoull(v, NULL, 16);
}

/* Host id -> id inside pid's user namespace (what setresuid there takes). */
static uint32_t id_to_ns(pid_t pid, const char *map, uint32_t id)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, map);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return id;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		unsigned long inside, outside, count;
		if (sscanf(l, "%lu %lu %lu", &inside, &outside, &count) == 3 && id >= outside &&
		    id - outside < count)
			return (uint32_t)(id - outside + inside);
	}
	return 65534; /* overflow id: unmapped */
}

static void idfield(pid_t pid, const char *key, uint32_t out[4])
{
	char v[128];
	if (status_field(pid, key, v, sizeof(v)) < 0)
		return;
	sscanf(v, "%u %u %u %u", &out[0], &out[1], &out[2], &out[3]);
}

static pid_t vpid_of(struct dumper *d, pid_t hpid)
{
	struct d_proc *p = d_proc_by_hpid(d, hpid);
	return p ? p->vpid : 0;
}

/* Find a place to write "syscall; int3": start of the first executable
 * private file mapping (compel does the same). */
static int find_exec_area(pid_t pid, uint64_t *addr)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[4096 + 128];
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
			continue;
		if (perms[2] == 'x' && perms[3] == 'p' && !strstr(line, "[vdso]") &&
		    !strstr(line, "[vsyscall]")) {
			*addr = s;
			return 0;
		}
	}
	return -ENOENT;
}

struct d_inj {
	pid_t pid;     /* host pid of the process */
	uint64_t area; /* where the gadget was poked */
	long saved_word;
	bool poked;
};

static int inj_begin(struct d_inj *ij, pid_t hpid, struct vs_error *err)
{
	ij->pid = hpid;
	if (find_exec_area(hpid, &ij->area) < 0)
		return vs_error_set(err, ENOEXEC,
				    "process %d: no executable mapping to inject into", hpid);
	errno = 0;
	ij->saved_word = ptrace(PTRACE_PEEKTEXT, hpid, ij->area, 0);
	if (errno)
		return vs_error_sys(err, errno, "process %d: PEEKTEXT", hpid);
	long w = ij->saved_word;
	unsigned char *b = (unsigned char *)&w;
	b[0] = 0x0f;
	b[1] = 0x05;
	b[2] = 0xcc;
	if (ptrace(PTRACE_POKETEXT, hpid, ij->area, w) < 0)
		return vs_error_sys(err, errno, "process %d: POKETEXT", hpid);
	ij->poked = true;
	return 0;
}

static void inj_end(struct d_inj *ij)
{
	if (ij->poked)
		ptrace(PTRACE_POKETEXT, ij->pid, ij->area, ij->saved_word);
	ij->poked = false;
}

/* Run one syscall in thread tid (of the process of ij); restores its regs
 * after. Returns the raw result or CK_EINJECT. */
static long d_sys(struct dumper *d, struct d_inj *ij, pid_t tid, long nr, uint64_t a1, uint64_t a2,
		  uint64_t a3, uint64_t a4, struct vs_error *err)
{
	struct ck_inject in = {.tid = tid, .gadget = ij->area, .counter = NULL};
	long r = ck_syscall(&in, nr, a1, a2, a3, a4, 0, 0, err);
	if (in.have_saved && ck_setregs(tid, in.saved, err) < 0)
		return CK_EINJECT;
	return r;
}

static int rd_remote(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec l = {buf, len}, rm = {(void *)addr, len};
	ssize_t n = process_vm_readv(pid, &l, 1, &rm, 1, 0);
	return n == (ssize_t)len ? 0 : -EFAULT;
}

struct k_sigaction {
	uint64_t handler, flags, restorer, mask;
};

static int d_injected(struct dumper *d, struct d_proc *p, struct ck_proc *pr, struct ck_thread *thr,
		      size_t nthr, struct vs_error *err)
{
	struct d_inj ij = {0};
	int r = inj_begin(&ij, p->hpid, err);
	if (r < 0)
		return r;
	pid_t main = p->thr[0].hpid;
	/* a scratch page for results, unmapped again before memory is read
	 * (a thread's stack may not reach below its rsp) */
	long v = d_sys(d, &ij, main, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, err);
	if (v == CK_EINJECT || (v < 0 && v > -4096)) {
		inj_end(&ij);
		return v == CK_EINJECT
			   ? -err->code
			   : vs_error_sys(err, (int)-v, "pid %d: mmap scratch page", pr->pid);
	}
	uint64_t sc = (uint64_t)v;
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		v = d_sys(d, &ij, main, SYS_rt_sigaction, sig, 0, sc, 8, err);
		if (v == CK_EINJECT) {
			r = -err->code;
			goto out;
		}
		if (v < 0)
			continue;
		struct k_sigaction ka;
		rd_remote(p->hpid, sc, &ka, sizeof(ka));
		pr->sigact[sig - 1] =
		    (struct ck_sigact){ka.handler, ka.flags, ka.restorer, ka.mask};
	}
	for (int which = 0; which < 3; which++) {
		int64_t it[4] = {0};
		v = d_sys(d, &ij, main, SYS_getitimer, which, sc, 0, 0, err);
		if (v == 0)
			rd_remote(p->hpid, sc, it, sizeof(it));
		memcpy(pr->itimer[which], it, sizeof(it));
	}
	v = d_sys(d, &ij, main, SYS_brk, 0, 0, 0, 0, err);
	if (v == CK_EINJECT) {
		r = -err->code;
		goto out;
	}
	pr->brk = (uint64_t)v;
	v = d_sys(d, &ij, main, SYS_prctl, PR_GET_PDEATHSIG, sc, 0, 0, err);
	if (v == 0) {
		int32_t sig;
		rd_remote(p->hpid, sc, &sig, 4);
		pr->pdeathsig = sig;
	}
	pr->dumpable = (int32_t)d_sys(d, &ij, main, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, err);
	v = d_sys(d, &ij, main, SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, err);
	pr->securebits = v >= 0 ? (uint32_t)v : 0;
	v = d_sys(d, &ij, main, SYS_prctl, PR_GET_CHILD_SUBREAPER, sc, 0, 0, err);
	if (v == 0) {
		int32_t s;
		rd_remote(p->hpid, sc, &s, 4);
		pr->subreaper = s;
	}
	for (size_t t = 0; t < nthr; t++) {
		pid_t tid = p->thr[t].hpid;
		uint64_t tsc = sc + 2048;
		v = d_sys(d, &ij, tid, SYS_prctl, PR_GET_TID_ADDRESS, tsc, 0, 0, err);
		if (v == 0)
			rd_remote(p->hpid, tsc, &thr[t].tid_address, 8);
		v = d_sys(d, &ij, tid, SYS_sigaltstack, 0, tsc, 0, 0, err);
		if (v == 0) {
			stack_t ss;
			rd_remote(p->hpid, tsc, &ss, sizeof(ss));
			thr[t].ss_sp = (uint64_t)ss.ss_sp;
			thr[t].ss_size = ss.ss_size;
			thr[t].ss_flags = ss.ss_flags;
		}
	}
	/* POSIX timers: ids from /proc, values from timer_gettime. */
	{
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/timers", p->hpid);
		cleanup_fclose FILE *f = fopen(path, "re");
		char line[256];
		struct ck_timer tm = {0};
		bool have = false;
		while (f) {
			char *l = fgets(line, sizeof(line), f);
			if (!l || strncmp(line, "ID:", 3) == 0) {
				if (have) {
					int64_t its[4] = {0};
					v = d_sys(d, &ij, main, SYS_timer_gettime, tm.id, sc, 0, 0,
						  err);
					if (v == 0)
						rd_remote(p->hpid, sc, its, sizeof(its));
					tm.int_sec = its[0];
					tm.int_nsec = its[1];
					tm.val_sec = its[2];
					tm.val_nsec = its[3];
					tm.pid = pr->pid;
					r = ck_write_section(&d->w, CK_SEC_TIMER, &tm, sizeof(tm),
							     NULL, 0, err);
					if (r < 0)
						goto out;
				}
				if (!l)
					break;
				memset(&tm, 0, sizeof(tm));
				tm.id = atoi(line + 3);
				have = true;
			} else if (strncmp(line, "signal:", 7) == 0) {
				unsigned long long val = 0;
				sscanf(line + 7, " %d/%llx", &tm.signo, &val);
				tm.sigval = val;
			} else if (strncmp(line, "notify:", 7) == 0) {
				char kind[32] = "", who[32] = "";
				sscanf(line + 7, " %31[^/]/%31[^.].%d", kind, who, &tm.tid);
				if (strcmp(kind, "thread") == 0)
					tm.notify = SIGEV_THREAD_ID;
				else if (strcmp(kind, "signal") == 0)
					tm.notify = SIGEV_SIGNAL;
				else
					tm.notify = SIGEV_NONE;
				/* The notify tid is printed in the reader's pid namespace. */
				tm.tid = tm.tid ? (int32_t)vpid_of(d, tm.tid) : 0;
				if (tm.notify == SIGEV_THREAD_ID && !tm.tid) {
					for (size_t t = 0; t < p->nthr; t++)
						if (p->thr[t].hpid == atoi(strrchr(line, '.') + 1))
							tm.tid = p->thr[t].vtid;
				}
			} else if (strncmp(line, "ClockID:", 8) == 0) {
				tm.clockid = atoi(line + 8);
			}
		}
	}
	r = 0;
out : {
	struct vs_error e2;
	long u = d_sys(d, &ij, main, SYS_munmap, sc, 4096, 0, 0, r < 0 ? &e2 : err);
	if (r >= 0 && u != 0)
		r = u == CK_EINJECT ? -err->code
				    : vs_error_sys(err, (int)-u, "pid %d: munmap scratch", pr->pid);
}
	inj_end(&ij);
	return r;
}

/* Syscall restart fix-up (compel_get_task_regs): a thread stopped inside an
 * interrupted syscall re-executes it on resume. */
static void fix_restart(uint64_t *regs)
{
	int64_t ax = (int64_t)regs[R_RAX];
	if ((int64_t)regs[R_ORIG_RAX] < 0)
		return;
	switch (ax) {
	case -512: /* ERESTARTSYS */
	case -513: /* ERESTARTNOINTR */
	case -514: /* ERESTARTNOHAND */
	case -516: /* ERESTART_RESTARTBLOCK: re-run with the original arguments */
		regs[R_RAX] = regs[R_ORIG_RAX];
		regs[R_RIP] -= 2;
		break;
	}
	regs[R_ORIG_RAX] = (uint64_t)-1;
}

static int d_thread(struct dumper *d, struct d_proc *p, size_t t, struct ck_thread *th,
		    uint8_t **xs, struct vs_error *err)
{
	pid_t tid = p->thr[t].hpid;
	th->pid = p->vpid;
	th->tid = p->thr[t].vtid;
	int r = ck_getregs(tid, th->regs, err);
	if (r < 0)
		return r;
	fix_restart(th->regs);
	static uint8_t xbuf[1 << 16];
	struct iovec iov = {xbuf, sizeof(xbuf)};
	if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) < 0)
		return vs_error_sys(err, errno, "pid %d tid %d: GETREGSET xstate", p->vpid,
				    th->tid);
	th->xstate_len = (uint32_t)iov.iov_len;
	*xs = vs_xmalloc(iov.iov_len);
	memcpy(*xs, xbuf, iov.iov_len);
	if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(uint64_t), &th->sigmask) < 0)
		return vs_error_sys(err, errno, "pid %d tid %d: GETSIGMASK", p->vpid, th->tid);
	struct rseq_conf rc = {0};
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof(rc), &rc) > 0 &&
	    rc.rseq_abi_pointer) {
		th->rseq_addr = rc.rseq_abi_pointer;
		th->rseq_len = rc.rseq_abi_size;
		th->rseq_sig = rc.signature;
		th->rseq_flags = rc.flags;
	}
	uint64_t head = 0;
	size_t len = 0;
	if (syscall(SYS_get_robust_list, tid, &head, &len) == 0) {
		th->robust_list = head;
		th->robust_len = len;
	}
	char path[64], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", p->hpid, tid);
	ck_read_small(path, comm, sizeof(comm));
	comm[strcspn(comm, "\n")] = 0;
	comm[sizeof(th->comm) - 1] = 0;
	memcpy(th->comm, comm, sizeof(th->comm));
	return 0;
}

static int d_siginfo(struct dumper *d, struct d_proc *p, pid_t tid, pid_t vtid, bool shared,
		     struct vs_error *err)
{
	for (uint64_t off = 0;; off++) {
		struct ptrace_peeksiginfo_args a = {
		    .off = off, .flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0, .nr = 1};
		uint8_t info[128];
		long n = ptrace(PTRACE_PEEKSIGINFO, tid, &a, info);
		if (n < 0)
			return vs_error_sys(err, errno, "pid %d: PEEKSIGINFO", p->vpid);
		if (n == 0)
			return 0;
		struct ck_siginfo si = {.pid = p->vpid, .tid = vtid, .shared = shared};
		memcpy(si.info, info, 128);
		int sig;
		memcpy(&sig, info, 4);
		if (sig == SIGTRAP)
			return vs_error_set(err, ENOTSUP, "pid %d: refused: SIGTRAP pending",
					    p->vpid);
		int r = ck_write_section(&d->w, CK_SEC_SIGINFO, &si, sizeof(si), NULL, 0, err);
		if (r < 0)
			return r;
	}
}

static int d_seccomp(struct dumper *d, struct d_proc *p, struct ck_proc *pr, struct vs_error *err)
{
	if (pr->seccomp_mode != 2)
		return 0;
	/* index 0 is the most recently installed filter; store oldest first. */
	long count = 0;
	while (ptrace(PTRACE_SECCOMP_GET_FILTER, p->thr[0].hpid, count, NULL) > 0)
		count++;
	if (count == 0)
		return vs_error_sys(err, errno, "pid %d: PTRACE_SECCOMP_GET_FILTER", pr->pid);
	for (long i = count - 1; i >= 0; i--) {
		long n = ptrace(PTRACE_SECCOMP_GET_FILTER, p->thr[0].hpid, i, NULL);
		if (n <= 0)
			return vs_error_sys(err, errno, "pid %d: seccomp filter %ld", pr->pid, i);
		uint8_t *buf = vs_xmalloc(n * 8);
		if (ptrace(PTRACE_SECCOMP_GET_FILTER, p->thr[0].hpid, i, buf) != n) {
			free(buf);
			return vs_error_sys(err, errno, "pid %d: seccomp filter %ld", pr->pid, i);
		}
		struct ck_seccomp sr = {
		    .pid = pr->pid, .index = (uint32_t)(count - 1 - i), .nr_insns = (uint32_t)n};
		int r = ck_write_section(&d->w, CK_SEC_SECCOMP, &sr, sizeof(sr), buf, n * 8, err);
		free(buf);
		if (r < 0)
			return r;
	}
	pr->nr_seccomp = (uint32_t)count;
	return 0;
}

/* --- memory ------------------------------------------------------------- */

#define RUN_MAX (8u << 20)

static int map_file_stat(pid_t hpid, unsigned long s, unsigned long e, struct stat *st)
{
	char path[96];
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", hpid, s, e);
	return stat(path, st) < 0 ? -errno : 0;
}

/* madvise() state of every vma, from the VmFlags lines of smaps. */
struct madv {
	uint64_t start;
	uint32_t flags;
};

static int d_madvise_flags(pid_t hpid, struct madv **out, size_t *n)
{
	static const struct {
		char code[3];
		uint32_t flag;
	} codes[] = {
	    {"dc", CK_VMA_F_DONTFORK}, {"dd", CK_VMA_F_DONTDUMP}, {"wf", CK_VMA_F_WIPEONFRK},
	    {"hg", CK_VMA_F_HUGEPAGE}, {"nh", CK_VMA_F_NOHUGE},	  {"mg", CK_VMA_F_MERGEABLE},
	    {"sr", CK_VMA_F_SEQ},      {"rr", CK_VMA_F_RANDOM},
	};
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", hpid);
	cleanup_fclose FILE *f = fopen(path, "re");
	*out = NULL;
	*n = 0;
	if (!f)
		return -errno;
	char line[4096 + 256];
	uint64_t start = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (strncmp(line, "VmFlags:", 8) != 0) {
			if (sscanf(line, "%lx-%lx ", &s, &e) == 2)
				start = s;
			continue;
		}
		uint32_t fl = 0;
		for (char *tok = strtok(line + 8, " \n"); tok; tok = strtok(NULL, " \n"))
			for (size_t i = 0; i < VS_ARRAY_SIZE(codes); i++)
				if (strcmp(tok, codes[i].code) == 0)
					fl |= codes[i].flag;
		*out = ck_xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = (struct madv){start, fl};
	}
	return 0;
}

static int d_memory_body(struct dumper *d, struct d_proc *p, struct ck_proc *pr,
			 struct ck_header *hdr, uint8_t *bufs, struct vs_error *err)
{
	cleanup_free struct madv *madv = NULL;
	size_t nmadv = 0;
	if (d_madvise_flags(p->hpid, &madv, &nmadv) < 0)
		return vs_error_sys(err, errno, "pid %d: read smaps", pr->pid);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", p->hpid);
	cleanup_fclose FILE *f = fopen(path, "re");
	if (!f)
		return vs_error_sys(err, errno, "pid %d: open maps", pr->pid);
	snprintf(path, sizeof(path), "/proc/%d/mem", p->hpid);
	cleanup_close int memfd = open(path, O_RDONLY | O_CLOEXEC);
	if (memfd < 0)
		return vs_error_sys(err, errno, "pid %d: open mem", pr->pid);
	uint8_t *buf = bufs;
	char line[4096 + 256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, ino;
		char perms[8], dev[16];
		int pathpos = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &s, &e, perms, &off, dev, &ino,
			   &pathpos) < 6)
			continue;
		char *name = line + pathpos;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, "[vsyscall]") == 0)
			continue;
		struct ck_vma v = {.pid = pr->pid, .start = s, .end = e, .pgoff = off};
		v.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
			 (perms[2] == 'x' ? PROT_EXEC : 0);
		bool shared = perms[3] == 's';
		bool dump_pages = false, all_pages = false;
		if (strcmp(name, "[vvar]") == 0) {
			v.kind = CK_VMA_VVAR;
			hdr->vvar_size = e - s;
		} else if (strcmp(name, "[vvar_vclock]") == 0) {
			v.kind = CK_VMA_VCLOCK;
			hdr->vclock_size = e - s;
		} else if (strcmp(name, "[vdso]") == 0) {
			v.kind = CK_VMA_VDSO;
			hdr->vdso_size = e - s;
		} else if (shared && strncmp(name, "/SYSV", 5) == 0) {
			/* SysV attach: the segment is dumped by sysvipc.c */
			ck_sysv_map(&d->files, &v, ino);
			snprintf(v.path, sizeof(v.path), "%s", name);
		} else if (shared) {
			struct stat stt;
			bool deleted = strstr(name, " (deleted)") != NULL;
			if (!name[0] || strncmp(name, "/dev/zero", 9) == 0 ||
			    strncmp(name, "/memfd:", 7) == 0 || deleted ||
			    strncmp(name, "[anon_shmem", 11) == 0) {
				v.kind = CK_VMA_SHARED;
				unsigned maj = 0, min = 0;
				sscanf(dev, "%x:%x", &maj, &min);
				v.shm_id = ((uint64_t)min << 48) ^ ino;
				bool seen = false;
				for (size_t i = 0; i < d->files.shm_n; i++)
					if (d->files.shm[i].id == v.shm_id &&
					    d->files.shm[i].off == off &&
					    d->files.shm[i].len >= e - s)
						seen = true;
				if (!seen) {
					int rs = ck_writer_sync(&d->w, err);
					if (rs < 0)
						return rs;
					/* Content once per object range (fault it in: it is
					 * shared). */
					d->files.shm =
					    ck_xrealloc(d->files.shm, (d->files.shm_n + 1) *
									  sizeof(*d->files.shm));
					d->files.shm[d->files.shm_n++] =
					    (struct ck_shm){v.shm_id, off, e - s};
					for (uint64_t a = s; a < e; a += RUN_MAX) {
						uint64_t l = e - a < RUN_MAX ? e - a : RUN_MAX;
						ssize_t n = pread(memfd, buf, l, (off_t)a);
						if (n != (ssize_t)l)
							return vs_error_sys(
							    err, n < 0 ? errno : EIO,
							    "pid %d: read shared memory at %#lx",
							    pr->pid, s);
						struct ck_data dh = {.kind = CK_D_SHM,
								     .id = v.shm_id,
								     .off = off + (a - s),
								     .len = l};
						int r = ck_write_section(&d->w, CK_SEC_DATA, &dh,
									 sizeof(dh), buf, l, err);
						if (r < 0)
							return r;
					}
				}
			} else if (name[0] == '/' && map_file_stat(p->hpid, s, e, &stt) == 0 &&
				   S_ISREG(stt.st_mode)) {
				/* the path is the task's (its mount namespace): the
				 * mapped inode itself is in map_files */
				v.kind = CK_VMA_FILE_SHARED;
			} else {
				return vs_error_set(err, ENOTSUP,
						    "pid %d: refused: shared mapping %s", pr->pid,
						    name);
			}
			snprintf(v.path, sizeof(v.path), "%s", name);
		} else if (name[0] == '/' && !strstr(name, " (deleted)")) {
			v.kind = CK_VMA_FILE;
			snprintf(v.path, sizeof(v.path), "%s", name);
			dump_pages = true;
		} else if (name[0] == '/' || !name[0] || strcmp(name, "[heap]") == 0 ||
			   strcmp(name, "[stack]") == 0 || strncmp(name, "[anon:", 6) == 0) {
			/* private anon, or a private mapping of a deleted file: keep all
			 * its pages as anonymous memory */
			v.kind = CK_VMA_ANON;
			dump_pages = true;
			all_pages = name[0] == '/';
			if (strcmp(name, "[heap]") == 0)
				v.flags |= CK_VMA_F_HEAP;
			if (strcmp(name, "[stack]") == 0)
				v.flags |= CK_VMA_F_STACK | CK_VMA_F_GROWSDOWN;
		} else {
			return vs_error_set(err, ENOTSUP, "pid %d: refused: mapping %s", pr->pid,
					    name);
		}
		if (v.kind != CK_VMA_VVAR && v.kind != CK_VMA_VCLOCK && v.kind != CK_VMA_VDSO)
			for (size_t i = 0; i < nmadv; i++)
				if (madv[i].start == s)
					v.flags |= madv[i].flags;
		int r = ck_write_section(&d->w, CK_SEC_VMA, &v, sizeof(v), NULL, 0, err);
		if (r < 0)
			return r;
		d->st->nr_vmas++;
		if (!dump_pages)
			continue;
		/* its pages go in the page round, once every record is written */
		struct ck_memrange mr = {.hpid = p->hpid,
					 .vpid = pr->pid,
					 .start = s,
					 .end = e,
					 .kind = v.kind,
					 .all_pages = all_pages,
					 .readable = (v.prot & PROT_READ) != 0};
		ck_memset_add(&d->mem, &mr);
	}
	return 0;
}

static int d_memory(struct dumper *d, struct d_proc *p, struct ck_proc *pr, struct ck_header *hdr,
		    struct vs_error *err)
{
	uint8_t *bufs = vs_xmalloc(RUN_MAX);
	int r = d_memory_body(d, p, pr, hdr, bufs, err);
	free(bufs);
	return r;
}

static uint64_t limit_value(const char *s)
{
	return strncmp(s, "unlimited", 9) == 0 ? (uint64_t)RLIM_INFINITY : strtoull(s, NULL, 10);
}

static int d_proc_limits(pid_t hpid, struct ck_proc *pr, struct vs_error *err)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/limits", hpid);
	if (ck_read_small(path, buf, sizeof(buf)) < 0)
		return vs_error_sys(err, errno, "pid %d: read limits", pr->pid);
	char *save = NULL, *l = strtok_r(buf, "\n", &save); /* header line */
	for (int i = 0; i < 16 && (l = strtok_r(NULL, "\n", &save)); i++) {
		/* "Max open files            123                  456                  files" */
		if (strlen(l) < 47)
			return vs_error_set(err, EINVAL, "pid %d: limits line '%s'", pr->pid, l);
		pr->rlim[i][0] = limit_value(l + 26);
		pr->rlim[i][1] = limit_value(l + 47);
	}
	return 0;
}

static int d_proc(struct dumper *d, struct d_proc *p, struct ck_header *hdr, struct vs_error *err)
{
	struct ck_proc *pr = vs_xcalloc(1, sizeof(*pr));
	int r = 0;
	pr->pid = p->vpid;
	/* 0: a child of PID 1 (PID 1 is not in the image) */
	pr->ppid = p->hpid == d->o->root_pid ? 0 : vpid_of(d, p->hppid);
	char v[128];
	if (status_field(p->hpid, "NSpgid", v, sizeof(v)) == 0) {
		char *last = strrchr(v, '\t') ? strrchr(v, '\t') + 1 : v;
		pr->pgid = atoi(last);
	}
	if (status_field(p->hpid, "NSsid", v, sizeof(v)) == 0) {
		char *last = strrchr(v, '\t') ? strrchr(v, '\t') + 1 : v;
		pr->sid = atoi(last);
	}
	r = parse_stat(p->hpid, pr, err);
	if (r < 0)
		goto out;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", p->hpid);
	ck_read_small(path, pr->comm, sizeof(pr->comm));
	pr->comm[strcspn(pr->comm, "\n")] = 0;
	if (p->zombie) {
		pr->state = CK_ZOMBIE;
		r = ck_write_section(&d->w, CK_SEC_PROC, pr, sizeof(*pr), NULL, 0, err);
		goto out;
	}
	pr->nr_threads = (int32_t)p->nthr;
	if (status_field(p->hpid, "Umask", v, sizeof(v)) == 0)
		pr->umask = (uint32_t)strtoul(v, NULL, 8);
	snprintf(path, sizeof(path), "/proc/%d/personality", p->hpid);
	if (ck_read_small(path, v, sizeof(v)) > 0)
		pr->personality = (uint32_t)strtoul(v, NULL, 16);
	pr->cap_inh = hexfield(p->hpid, "CapInh");
	pr->cap_prm = hexfield(p->hpid, "CapPrm");
	pr->cap_eff = hexfield(p->hpid, "CapEff");
	pr->cap_bnd = hexfield(p->hpid, "CapBnd");
	pr->cap_amb = hexfield(p->hpid, "CapAmb");
	idfield(p->hpid, "Uid", pr->uid);
	idfield(p->hpid, "Gid", pr->gid);
	for (int i = 0; i < 4; i++) {
		pr->uid[i] = id_to_ns(p->hpid, "uid_map", pr->uid[i]);
		pr->gid[i] = id_to_ns(p->hpid, "gid_map", pr->gid[i]);
	}
	if (status_field(p->hpid, "NoNewPrivs", v, sizeof(v)) == 0)
		pr->no_new_privs = atoi(v);
	if (status_field(p->hpid, "Seccomp", v, sizeof(v)) == 0)
		pr->seccomp_mode = atoi(v);
	if (status_field(p->hpid, "Groups", v, sizeof(v)) == 0) {
		for (char *tok = strtok(v, " "); tok && pr->ngroups < 32; tok = strtok(NULL, " "))
			pr->groups[pr->ngroups++] = (uint32_t)atoi(tok);
		for (uint32_t i = 0; i < pr->ngroups; i++)
			pr->groups[i] = id_to_ns(p->hpid, "gid_map", pr->groups[i]);
	}
	/* prlimit() of another uid's process wants CAP_SYS_RESOURCE over it,
	 * which a dumper in a container may lack: /proc/<pid>/limits has the
	 * same numbers (one line per resource, in RLIMIT_* order). */
	bool limits_ok = true;
	for (int i = 0; i < 16; i++) {
		struct rlimit rl;
		if (prlimit(p->hpid, i, NULL, &rl) < 0) {
			limits_ok = false;
			break;
		}
		pr->rlim[i][0] = rl.rlim_cur;
		pr->rlim[i][1] = rl.rlim_max;
	}
	if (!limits_ok && (r = d_proc_limits(p->hpid, pr, err)) < 0)
		goto out;
	snprintf(path, sizeof(path), "/proc/%d/auxv", p->hpid);
	int n = ck_read_small(path, (char *)pr->auxv, sizeof(pr->auxv));
	pr->auxv_len = n > 0 ? (uint32_t)n : 0;
	/* ck_read_small NUL-terminates inside the buffer: keep auxv_len below */
	if (pr->auxv_len > sizeof(pr->auxv) - 16)
		pr->auxv_len = sizeof(pr->auxv) - 16;
	snprintf(path, sizeof(path), "/proc/%d/cwd", p->hpid);
	ssize_t l = readlink(path, pr->cwd, sizeof(pr->cwd) - 1);
	if (l < 0) {
		r = vs_error_sys(err, errno, "pid %d: readlink cwd", pr->pid);
		goto out;
	}
	pr->cwd[l] = 0;
	snprintf(path, sizeof(path), "/proc/%d/exe", p->hpid);
	l = readlink(path, pr->exe, sizeof(pr->exe) - 1);
	pr->exe[l > 0 ? l : 0] = 0;

	struct ck_thread *thr = vs_xcalloc(p->nthr, sizeof(*thr));
	uint8_t **xs = vs_xcalloc(p->nthr, sizeof(*xs));
	for (size_t t = 0; t < p->nthr && r >= 0; t++)
		r = d_thread(d, p, t, &thr[t], &xs[t], err);
	if (r >= 0)
		r = d_injected(d, p, pr, thr, p->nthr, err);
	if (r >= 0)
		r = d_seccomp(d, p, pr, err);
	if (r >= 0)
		r = ck_write_section(&d->w, CK_SEC_PROC, pr, sizeof(*pr), NULL, 0, err);
	for (size_t t = 0; t < p->nthr && r >= 0; t++) {
		r = ck_write_section(&d->w, CK_SEC_THREAD, &thr[t], sizeof(thr[t]), xs[t],
				     thr[t].xstate_len, err);
		d->st->nr_threads++;
	}
	for (size_t t = 0; t < p->nthr && r >= 0; t++)
		r = d_siginfo(d, p, p->thr[t].hpid, p->thr[t].vtid, false, err);
	if (r >= 0)
		r = d_siginfo(d, p, p->thr[0].hpid, p->thr[0].vtid, true, err);
	for (size_t t = 0; t < p->nthr; t++)
		free(xs[t]);
	free(xs);
	free(thr);
	if (r < 0)
		goto out;
	r = d_memory(d, p, pr, hdr, err);
	if (r < 0)
		goto out;
	r = ck_files_dump(&d->files, &d->w, p->hpid, pr->pid, err);
	if (r >= 0)
		d->st->nr_fds = d->files.nr_fds;
out:
	free(pr);
	return r;
}

/* Checks on the running tree, freeze, seize, checks again. -EAGAIN: a
 * passing state (vfork); the caller releases and retries. */
static int d_stop_tree(struct dumper *d, uint64_t *t_check, uint64_t *t_frozen,
		       struct vs_error *err)
{
	const struct ckpt_dump_opts *o = d->o;
	d->tolerant = true;
	int r = d_enumerate(d, err);
	/* Refuse what we cannot restore while the tree still runs (processes
	 * that exit meanwhile are no reason to refuse). */
	for (size_t i = 0; r >= 0 && i < d->nprocs; i++) {
		r = d_check_proc(d, &d->procs[i], err);
		if (r < 0 && i > 0 && kill(d->procs[i].hpid, 0) < 0 && errno == ESRCH)
			r = 0;
	}
	if (r >= 0 && d->nprocs)
		r = ck_files_check_ns(d->procs[0].hpid, err);
	if (r >= 0)
		r = d_check_sharing(d, err);
	if (r >= 0)
		r = d_check_ns_complete(d, err);
	if (r >= 0)
		r = d_check_pstree(d, err);
	if (r < 0 || o->check_only)
		return r;
	*t_check = vs_now_ns();
	if (o->freeze) {
		r = d_freeze(o, true, err);
		if (r < 0)
			return r;
		d->frozen = true;
		/* the frozen tree is the one we dump: enumerate it afresh */
		for (size_t i = 0; i < d->nprocs; i++)
			free(d->procs[i].thr);
		free(d->procs);
		d->procs = NULL;
		d->nprocs = 0;
		d->tolerant = false;
		r = d_enumerate(d, err);
		if (r >= 0)
			r = d_check_sharing(d, err);
		if (r >= 0)
			r = d_seize_all(d, err);
		if (r >= 0) {
			r = d_freeze(o, false, err);
			d->frozen = false;
		}
	} else {
		d->tolerant = false;
		r = d_seize_all(d, err);
		if (r >= 0)
			r = d_check_sharing(d, err);
	}
	if (r >= 0)
		r = d_wait_all(d, err);
	if (r >= 0)
		r = d_check_vdso(d, err);
	if (r < 0)
		return r;
	*t_frozen = vs_now_ns();
	/* State may have changed between the check and the stop: check again. */
	for (size_t i = 0; r >= 0 && i < d->nprocs; i++)
		r = d_check_proc(d, &d->procs[i], err);
	if (r >= 0)
		r = d_check_ns_complete(d, err);
	if (r >= 0)
		r = d_check_pstree(d, err);
	return r;
}

int ckpt_dump(const struct ckpt_dump_opts *o, struct ckpt_stats *st, struct vs_error *err)
{
	struct ckpt_stats dummy;
	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	uint64_t t_start = vs_now_ns(), t_check = 0, t_frozen = 0;
	struct dumper d = {.o = o, .st = st};
	int r;
	/* A vfork child shares its parent's memory until it execs, a thread
	 * may be inside the vDSO: passing states, so let the tree run a moment
	 * and try again (~0.5 s) before refusing. */
	for (int attempt = 0;; attempt++) {
		r = d_stop_tree(&d, &t_check, &t_frozen, err);
		if (r != -EAGAIN || attempt >= 50)
			break;
		d_release(&d, false);
		for (size_t i = 0; i < d.nprocs; i++)
			free(d.procs[i].thr);
		free(d.procs);
		d.procs = NULL;
		d.nprocs = 0;
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	if (r == -EAGAIN) {
		err->code = ENOTSUP;
		r = -ENOTSUP;
	}
	if (r < 0 || o->check_only)
		goto fail; /* check_only: nothing was stopped; r = 0 */
	st->freeze_ns = t_frozen - t_check;
	st->check_ns = t_check - t_start;

	struct ck_header hdr = {.root_pid = (uint32_t)d.procs[0].vpid,
				.nr_procs = (uint32_t)d.nprocs};
	snprintf(hdr.name, sizeof(hdr.name), "%s", o->name ? o->name : "");
	struct utsname un;
	if (uname(&un) == 0)
		snprintf(hdr.kernel, sizeof(hdr.kernel), "%s", un.release);
	/* Clocks as the tree sees them: host clock + its time namespace offsets. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	hdr.mono_ns = ts.tv_sec * 1000000000ll + ts.tv_nsec;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	hdr.boot_ns = ts.tv_sec * 1000000000ll + ts.tv_nsec;
	clock_gettime(CLOCK_REALTIME, &ts);
	hdr.real_ns = ts.tv_sec * 1000000000ll + ts.tv_nsec;
	{
		char path[64], buf[256];
		snprintf(path, sizeof(path), "/proc/%d/timens_offsets", d.procs[0].hpid);
		if (ck_read_small(path, buf, sizeof(buf)) > 0) {
			for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
				char clk[32];
				long long sec = 0, nsec = 0;
				if (sscanf(l, "%31s %lld %lld", clk, &sec, &nsec) != 3)
					continue;
				long long off = sec * 1000000000ll + nsec;
				if (strcmp(clk, "monotonic") == 0)
					hdr.mono_ns += off;
				else if (strcmp(clk, "boottime") == 0)
					hdr.boot_ns += off;
			}
		}
	}
	/* Header sizes of vdso are filled while dumping memory; the header is
	 * written first, so the restore re-checks the vdso from the vma records. */
	r = o->precopy ? ck_precopy_writer(o->precopy, &d.w, err)
		       : ck_writer_open(&d.w, o->out_fd, err);
	if (r >= 0)
		r = ck_write_section(&d.w, CK_SEC_HEADER, &hdr, sizeof(hdr), NULL, 0, err);
	if (r >= 0 && o->extra && o->extra_len)
		r = ck_write_section(&d.w, CK_SEC_EXTRA, o->extra, o->extra_len, NULL, 0, err);
	ck_files_init(&d.files);
	for (size_t i = 0; r >= 0 && i < d.nprocs; i++) {
		r = d_proc(&d, &d.procs[i], &hdr, err);
		if (r < 0)
			vs_error_wrap(err, "checkpoint pid %d", d.procs[i].vpid);
	}
	if (r >= 0)
		r = ck_files_finish(&d.files, &d.w, err);
	if (r >= 0 && o->fs_root)
		r = ck_fs_dump(&d.w, o->fs_root, err);
	/* version 3: the pages last, so a restore applies them as they come */
	if (r >= 0 && o->precopy)
		r = ck_precopy_final_round(o->precopy, &d.w, &d.mem, st, err);
	else if (r >= 0)
		r = ck_mem_write_round(&d.w, &d.mem, 0, ck_pred_present, NULL, st, err);
	if (r >= 0)
		r = ck_writer_close(&d.w, err);
	if (r >= 0 && o->while_stopped)
		r = o->while_stopped(o->while_stopped_arg, err);
	st->bytes_written = d.w.total;
	ck_writer_free(&d.w);
	ck_files_free(&d.files);
	ck_memset_free(&d.mem);
	if (r < 0)
		goto fail;
	st->nr_procs = (unsigned)d.nprocs;
	st->frozen_ns = vs_now_ns() - t_frozen;
	if (o->leave_running && o->keep_frozen && o->freeze) {
		/* still stopped under ptrace: frozen before the detach, the tree
		 * stays frozen through it (a frozen task ignores the wake-up) */
		r = d_freeze(o, true, err);
		if (r < 0) {
			d_freeze(o, false, NULL);
			goto fail;
		}
	}
	d_release(&d, !o->leave_running);
	st->dump_ns = vs_now_ns() - t_start;
	for (size_t i = 0; i < d.nprocs; i++)
		free(d.procs[i].thr);
	free(d.procs);
	return 0;
fail:
	d_release(&d, false);
	for (size_t i = 0; i < d.nprocs; i++)
		free(d.procs[i].thr);
	free(d.procs);
	return r;
}
