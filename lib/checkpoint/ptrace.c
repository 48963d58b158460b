/*
 * ptrace.c - seizing threads and running syscalls inside them.
 *
 * Injection (checkpoint.md §3.2): with the thread in a ptrace stop, load the
 * syscall number/args, point rip at a "syscall; int3" gadget, set
 * orig_rax = -1 so the kernel's restart logic leaves rax/rip alone, CONT,
 * and wait for the int3's SIGTRAP. Signals that arrive meanwhile are
 * swallowed (the caller blocks them with PTRACE_SETSIGMASK first).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <linux/elf.h>

#include "ckpt_int.h"
#include "vslice/util.h"

#ifndef PTRACE_O_SUSPEND_SECCOMP
#define PTRACE_O_SUSPEND_SECCOMP (1 << 21)
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

int ck_seize(pid_t tid, bool exitkill, struct vs_error *err)
{
	/* SUSPEND_SECCOMP: injected syscalls must not meet the slice's filter. */
	long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP;
	if (exitkill)
		opts |= PTRACE_O_EXITKILL;
	if (ptrace(PTRACE_SEIZE, tid, 0, opts) < 0)
		return vs_error_sys(err, errno, "task %d: PTRACE_SEIZE", tid);
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
		return vs_error_sys(err, errno, "task %d: PTRACE_INTERRUPT", tid);
	return 0;
}

int ck_wait_stop(pid_t tid, struct vs_error *err)
{
	for (;;) {
		int status;
		pid_t r = waitpid(tid, &status, __WALL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return vs_error_sys(err, errno, "task %d: waitpid", tid);
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return vs_error_set(err, ESRCH, "task %d: exited while being stopped", tid);
		if (!WIFSTOPPED(status))
			continue;
		int sig = WSTOPSIG(status);
		int event = status >> 16;
		if (event == PTRACE_EVENT_STOP)
			return 0;
		/* A signal-delivery stop before our interrupt was seen: the signal
		 * stays pending for the task (re-inject it), then wait again. */
		if (ptrace(PTRACE_CONT, tid, 0, sig == SIGTRAP ? 0 : sig) < 0)
			return vs_error_sys(err, errno, "task %d: PTRACE_CONT", tid);
		if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
			return vs_error_sys(err, errno, "task %d: PTRACE_INTERRUPT", tid);
	}
}

int ck_getregs(pid_t tid, uint64_t regs[27], struct vs_error *err)
{
	struct iovec iov = {regs, 27 * 8};
	if (ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &iov) < 0)
		return vs_error_sys(err, errno, "task %d: PTRACE_GETREGSET", tid);
	return 0;
}

int ck_setregs(pid_t tid, const uint64_t regs[27], struct vs_error *err)
{
	struct iovec iov = {(void *)regs, 27 * 8};
	if (ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, &iov) < 0)
		return vs_error_sys(err, errno, "task %d: PTRACE_SETREGSET", tid);
	return 0;
}

long ck_syscall(struct ck_inject *in, long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
		uint64_t a5, uint64_t a6, struct vs_error *err)
{
	int r;
	if (!in->have_saved) {
		if ((r = ck_getregs(in->tid, in->saved, err)) < 0)
			return CK_EINJECT;
		in->have_saved = true;
	}
	uint64_t regs[27];
	memcpy(regs, in->saved, sizeof(regs));
	regs[R_RAX] = nr;
	regs[R_ORIG_RAX] = (uint64_t)-1;
	regs[R_RDI] = a1;
	regs[R_RSI] = a2;
	regs[R_RDX] = a3;
	regs[R_R10] = a4;
	regs[R_R8] = a5;
	regs[R_R9] = a6;
	regs[R_RIP] = in->gadget;
	if ((r = ck_setregs(in->tid, regs, err)) < 0)
		return CK_EINJECT;
	if (in->counter)
		(*in->counter)++;
	int sig = 0;
	for (;;) {
		if (ptrace(PTRACE_CONT, in->tid, 0, sig) < 0) {
			vs_error_sys(err, errno, "task %d: inject syscall %ld: PTRACE_CONT",
				     in->tid, nr);
			return CK_EINJECT;
		}
		int status;
		pid_t w;
		do
			w = waitpid(in->tid, &status, __WALL);
		while (w < 0 && errno == EINTR);
		if (w < 0) {
			vs_error_sys(err, errno, "task %d: inject syscall %ld: waitpid", in->tid,
				     nr);
			return CK_EINJECT;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			vs_error_set(err, ESRCH, "task %d: died in injected syscall %ld (%s %d)",
				     in->tid, nr, WIFEXITED(status) ? "exit" : "signal",
				     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			return CK_EINJECT;
		}
		if (!WIFSTOPPED(status))
			continue;
		int s = WSTOPSIG(status);
		if (s == SIGTRAP && (status >> 16) == 0)
			break;
		if ((status >> 16) == PTRACE_EVENT_STOP) {
			sig = 0;
			continue;
		}
		if (s == SIGSEGV || s == SIGBUS || s == SIGILL) {
			uint64_t cur[27];
			ck_getregs(in->tid, cur, NULL);
			{
				vs_error_set(
				    err, EFAULT,
				    "task %d: injected syscall %ld faulted (signal %d at rip %#lx)",
				    in->tid, nr, s, (unsigned long)cur[R_RIP]);
				return CK_EINJECT;
			}
		}
		/* Some other signal: drop it (the task blocks everything meanwhile). */
		sig = 0;
	}
	uint64_t out[27];
	if ((r = ck_getregs(in->tid, out, err)) < 0)
		return CK_EINJECT;
	return (long)out[R_RAX];
}

int ck_read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = vs_read_all(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	return (int)n;
}

int ck_nspid(pid_t hpid, pid_t *nspid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", hpid);
	int n = ck_read_small(path, buf, sizeof(buf));
	if (n < 0)
		return n;
	char *l = strstr(buf, "\nNSpid:");
	if (!l)
		return -ENOENT;
	l += 7;
	char *end = strchr(l, '\n');
	if (end)
		*end = 0;
	char *last = NULL;
	for (char *t = strtok(l, " \t"); t; t = strtok(NULL, " \t"))
		last = t;
	if (!last)
		return -ENOENT;
	*nspid = (pid_t)atoi(last);
	return 0;
}
