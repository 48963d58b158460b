/*
 * e16_abi: seccomp bypass through other syscall ABIs of the same kernel.
 * A filter written for x86_64 numbers must not let the same operations in
 * through the i386 entry (int 0x80, different numbers: i386 socketcall-era
 * numbering) or the x32 ABI (the x86_64 number | __X32_SYSCALL_BIT).
 * Each attempt runs in a child: killed by SIGSYS, or EPERM/EACCES/ENOSYS =
 * blocked; success, or any other errno (EFAULT/EINVAL for the harmless
 * arguments used: the call reached the kernel past the filter) = escaped. No i386/x32 support in the kernel (SIGSEGV /
 * ENOSYS) is reported as such and counts as blocked.
 */
#include "escape.h"
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>

#define X32_BIT 0x40000000L

static long int80(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	register long rsi asm("rsi") = d;
	register long rdi asm("rdi") = e;
	asm volatile("int $0x80"
		     : "=a"(ret)
		     : "a"(nr), "b"(a), "c"(b), "d"(c), "r"(rsi), "r"(rdi)
		     : "memory", "r8", "r9", "r10", "r11");
	return (long)(int)ret;
}

static long x32(long nr, long a, long b, long c, long d, long e)
{
	return syscall(X32_BIT | nr, a, b, c, d, e);
}

enum abi { I386, X32 };

/* Run one call in a child; returns the verdict. */
static void attempt(const char *what, enum abi abi, long nr, long a, long b, long c, long d, long e)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		long r = abi == I386 ? int80(nr, a, b, c, d, e) : x32(nr, a, b, c, d, e);
		int err = abi == I386 ? (r < 0 && r > -4096 ? (int)-r : 0) : (r == -1 ? errno : 0);
		int ok = abi == I386 ? !(r < 0 && r > -4096) : r != -1;
		dprintf(pfd[1], "%d %d %ld\n", ok, err, r);
		_exit(0);
	}
	close(pfd[1]);
	char buf[64] = "";
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	const char *tag = abi == I386 ? "i386 int 0x80" : "x32";
	if (WIFSIGNALED(st)) {
		int s = WTERMSIG(st);
		if (s == SIGSYS)
			blocked("%s %s: killed by seccomp (SIGSYS)", tag, what);
		else
			blocked("%s %s: child died of signal %d (%s; ABI not available)", tag, what, s,
				strsignal(s));
		return;
	}
	int ok = 0, err = 0;
	long r = 0;
	if (n <= 0 || sscanf(buf, "%d %d %ld", &ok, &err, &r) != 3) {
		info("%s %s: no report", tag, what);
		return;
	}
	if (ok)
		escaped("%s %s: succeeded (returned %ld)", tag, what, r);
	else if (err == EPERM || err == EACCES || err == ENOSYS)
		blocked("%s %s: %s", tag, what, strerror(err));
	else
		escaped("%s %s: got past the filter into the kernel (%s)", tag, what, strerror(err));
}

int main(void)
{
	esc_init();
	char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
			 -1, 0);
	if (low == MAP_FAILED) {
		info("mmap MAP_32BIT: %s", strerror(errno));
		return 2;
	}
	strcpy(low, "none");
	strcpy(low + 16, "/tmp");
	strcpy(low + 32, "tmpfs");
	strcpy(low + 64, "user");
	strcpy(low + 80, "vslice-esc");
	long s_none = (long)low, s_tmp = (long)(low + 16), s_tmpfs = (long)(low + 32);
	long s_user = (long)(low + 64), s_desc = (long)(low + 80);
	int nsfd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);

	/* i386 numbers. */
	attempt("unshare(CLONE_NEWUSER)", I386, 310, CLONE_NEWUSER, 0, 0, 0, 0);
	attempt("unshare(CLONE_NEWNS)", I386, 310, CLONE_NEWNS, 0, 0, 0, 0);
	attempt("setns(own user ns)", I386, 346, nsfd, 0, 0, 0, 0);
	attempt("mount(tmpfs on /tmp)", I386, 21, s_none, s_tmp, s_tmpfs, 0, 0);
	attempt("umount2(/proc/sys)", I386, 52, s_tmp, 2, 0, 0, 0);
	attempt("keyctl(GET_KEYRING_ID)", I386, 288, 0, -3, 1, 0, 0);
	attempt("add_key(user)", I386, 286, s_user, s_desc, s_desc, 3, -2);
	attempt("clone(CLONE_NEWUSER|SIGCHLD)", I386, 120, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	attempt("userfaultfd()", I386, 374, 0, 0, 0, 0, 0);
	attempt("io_uring_setup(NULL params)", I386, 425, 4, 0, 0, 0, 0);
	attempt("perf_event_open(NULL attr)", I386, 336, 0, 0, -1, -1, 0);
	attempt("bpf(BPF_MAP_CREATE, NULL)", I386, 357, 0, 0, 0, 0, 0);
	attempt("pivot_root(/tmp, /tmp)", I386, 217, s_tmp, s_tmp, 0, 0, 0);
	attempt("open_by_handle_at(bad)", I386, 342, -1, 0, 0, 0, 0);

	/* Socket families the policy denies (AF_ALG 38, AF_VSOCK 40: vsock
	 * reaches the hypervisor's host side, around --net none). Only sockets
	 * are created, nothing connects. Native first, then i386 socket(359),
	 * then i386 socketcall(102), which passes the family through memory
	 * where a seccomp filter cannot see it. */
	static const struct {
		const char *name;
		int fam, type;
	} fams[] = { { "AF_ALG", 38, 5 /* SOCK_SEQPACKET */ }, { "AF_VSOCK", 40, 1 /* SOCK_STREAM */ } };
	uint32_t *sargs = (uint32_t *)(low + 256);
	for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
		char what[96];
		int fd = (int)syscall(SYS_socket, fams[i].fam, fams[i].type, 0);
		int e = errno;
		if (fd >= 0) {
			escaped("socket(%s): created (fd %d)", fams[i].name, fd);
			close(fd);
		} else if (e == EPERM || e == EACCES || e == ENOSYS)
			blocked("socket(%s): %s", fams[i].name, strerror(e));
		else
			info("socket(%s): %s (the policy let it through; the kernel refused)",
			     fams[i].name, strerror(e));
		snprintf(what, sizeof(what), "socket(%s)", fams[i].name);
		attempt(what, I386, 359, fams[i].fam, fams[i].type, 0, 0, 0);
		sargs[0] = (uint32_t)fams[i].fam;
		sargs[1] = (uint32_t)fams[i].type;
		sargs[2] = 0;
		snprintf(what, sizeof(what), "socketcall(SYS_SOCKET, %s)", fams[i].name);
		attempt(what, I386, 102, 1 /* SYS_SOCKET */, (long)sargs, 0, 0, 0);
	}

	/* x32 numbers (x86_64 numbering with the x32 bit). */
	attempt("unshare(CLONE_NEWUSER)", X32, 272, CLONE_NEWUSER, 0, 0, 0, 0);
	attempt("setns(own user ns)", X32, 308, nsfd, 0, 0, 0, 0);
	attempt("mount(tmpfs on /tmp)", X32, 165, s_none, s_tmp, s_tmpfs, 0, 0);
	attempt("keyctl(GET_KEYRING_ID)", X32, 250, 0, -3, 1, 0, 0);
	attempt("userfaultfd()", X32, 323, 0, 0, 0, 0, 0);
	attempt("io_uring_setup(NULL params)", X32, 425, 4, 0, 0, 0, 0);
	attempt("pivot_root(/tmp, /tmp)", X32, 155, s_tmp, s_tmp, 0, 0, 0);
	return esc_finish();
}
