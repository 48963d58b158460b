/*
 * e05_privops: host-wide privileged operations. Each call is made so that
 * were it to pass the permission check, the kernel rejects it right after
 * (EINVAL) or it is a no-op: EPERM/EACCES/ENOSYS = blocked.
 * load a module, reboot, swapon/off, kexec, settimeofday/clock_settime,
 * adjtimex, acct, iopl/ioperm, real-time scheduling, nice below 0,
 * raising the hard RLIMIT_NOFILE, oom_score_adj -1000.
 */
#include "escape.h"
#include <linux/kexec.h>
#include <linux/reboot.h>
#include <sched.h>
#include <sys/io.h>
#include <sys/resource.h>
#include <sys/swap.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

int main(void)
{
	esc_init();
	/* Modules: garbage image / bogus name, rejected after the cap check. */
	static const char junk[64] = "not an ELF module";
	expect_denied("init_module(garbage)", syscall(SYS_init_module, junk, sizeof(junk), ""));
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	expect_denied("finit_module(our own binary)", syscall(SYS_finit_module, fd, "", 0));
	close(fd);
	expect_denied("delete_module(vslice_nonexistent)",
		      syscall(SYS_delete_module, "vslice_nonexistent", O_NONBLOCK));
	/* reboot: a bad magic2 -> EINVAL after the CAP_SYS_BOOT check. */
	expect_denied("reboot(bad magic)",
		      syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0x12345, LINUX_REBOOT_CMD_CAD_OFF, NULL));
	/* swapon a non-swap file -> EINVAL after CAP_SYS_ADMIN. */
	fd = open("/tmp/esc-swap", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	expect_denied("swapon(/tmp/esc-swap)", swapon("/tmp/esc-swap", 0));
	expect_denied("swapoff(/tmp/esc-swap)", swapoff("/tmp/esc-swap"));
	/* kexec: too many segments -> EINVAL after the cap check. */
	expect_denied("kexec_load(1000 segments)",
		      syscall(SYS_kexec_load, 0UL, 1000UL, NULL, KEXEC_ARCH_DEFAULT));
	expect_denied("kexec_file_load(bad flags)",
		      syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0xffff0000UL));
	/* Time: set the clock to what it is (a no-op of microseconds if it got through). */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	expect_denied("clock_settime(CLOCK_REALTIME, now)", clock_settime(CLOCK_REALTIME, &ts));
	struct timeval tv;
	gettimeofday(&tv, NULL);
	expect_denied("settimeofday(now)", settimeofday(&tv, NULL));
	struct timex tx = { .modes = 0 };
	if (adjtimex(&tx) >= 0) {
		long tick = tx.tick;
		memset(&tx, 0, sizeof(tx));
		tx.modes = ADJ_TICK;
		tx.tick = tick;
		expect_denied("adjtimex(ADJ_TICK, unchanged)", adjtimex(&tx));
		memset(&tx, 0, sizeof(tx));
		tx.modes = ADJ_TICK;
		tx.tick = tick;
		expect_denied("clock_adjtime(CLOCK_REALTIME, ADJ_TICK)",
			      syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx));
	} else
		blocked("adjtimex(read): %s", strerror(errno));
	/* Process accounting to a file inside the slice. */
	expect_denied("acct(/tmp/esc-acct)", acct("/tmp/esc-acct"));
	if (acct(NULL) == 0)
		info("acct(NULL) returned 0");
	/* Port I/O. */
	expect_denied("iopl(3)", iopl(3));
	expect_denied("ioperm(0x80, 1, 1)", ioperm(0x80, 1, 1));
	/* Real-time scheduling would starve the host. */
	struct sched_param sp = { .sched_priority = 1 };
	expect_denied("sched_setscheduler(SCHED_FIFO)", sched_setscheduler(0, SCHED_FIFO, &sp));
	errno = 0;
	expect_denied("setpriority(-20)", setpriority(PRIO_PROCESS, 0, -20));
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	info("RLIMIT_NOFILE soft %llu hard %llu", (unsigned long long)rl.rlim_cur,
	     (unsigned long long)rl.rlim_max);
	if (rl.rlim_max != RLIM_INFINITY) {
		rl.rlim_max++;
		expect_denied("raise the hard RLIMIT_NOFILE", setrlimit(RLIMIT_NOFILE, &rl));
	}
	fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = write(fd, "-1000", 5);
		expect_denied("oom_score_adj = -1000 (unkillable by the OOM killer)", n < 0 ? -1 : n);
		close(fd);
	} else
		blocked("open oom_score_adj: %s", strerror(errno));
	expect_denied("vhangup()", syscall(SYS_vhangup));
	expect_denied("sethostname (CAP_SYS_ADMIN)", sethostname("x", 1));
	return esc_finish();
}
