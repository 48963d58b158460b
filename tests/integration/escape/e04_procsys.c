/*
 * e04_procsys: write /proc/sys, /proc/sysrq-trigger, /sys, the slice's own
 * cgroup limits; read /proc/kcore, kernel addresses in /proc/kallsyms,
 * /sys/firmware and other masked /proc files.
 *   e04_procsys NEW_HOSTNAME
 * Writes that could hurt are only opened for writing, never written, except
 * /proc/sys/kernel/hostname (gets NEW_HOSTNAME; the driver checks the host's
 * hostname is unchanged) and /proc/sysrq-trigger (gets 'h', which only
 * prints help to the kernel log were it to get through).
 */
#include "escape.h"
#include <sys/klog.h>
#include <sys/statvfs.h>

static void try_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		blocked("open %s for writing: %s", path, strerror(errno));
		return;
	}
	if (!val) {
		escaped("open %s for writing: succeeded (not written)", path);
		close(fd);
		return;
	}
	ssize_t n = write(fd, val, strlen(val));
	if (n < 0)
		blocked("write %s: %s", path, strerror(errno));
	else
		escaped("write %s: wrote %zd bytes", path, n);
	close(fd);
}

static void try_read_empty(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		blocked("open %s: %s", path, strerror(errno));
		return;
	}
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n > 0)
		escaped("read %s: %zd bytes of host data", path, n);
	else
		blocked("read %s: %s", path, n < 0 ? strerror(errno) : "empty (masked)");
}

static void dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		blocked("opendir %s: %s", path, strerror(errno));
		return;
	}
	int n = 0;
	struct dirent *e;
	char first[256] = "";
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			if (!n++)
				snprintf(first, sizeof(first), "%s", e->d_name);
		}
	closedir(d);
	if (n)
		escaped("%s lists %d entries (e.g. %s)", path, n, first);
	else
		blocked("%s is empty (masked)", path);
}

static void kallsyms(void)
{
	FILE *f = fopen("/proc/kallsyms", "re");
	if (!f) {
		blocked("open /proc/kallsyms: %s", strerror(errno));
		return;
	}
	char line[512];
	unsigned long nonzero = 0, lines = 0;
	while (fgets(line, sizeof(line), f)) {
		lines++;
		unsigned long long a = strtoull(line, NULL, 16);
		if (a)
			nonzero++;
		if (lines > 200000)
			break;
	}
	fclose(f);
	if (nonzero)
		escaped("/proc/kallsyms shows %lu real kernel addresses", nonzero);
	else
		blocked("/proc/kallsyms: %lu symbols, every address zeroed", lines);
}

static void cgroup_writes(void)
{
	static const char *files[] = {
		"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
		"/sys/fs/cgroup/cpu/cpu.cfs_quota_us",	       "/sys/fs/cgroup/freezer/freezer.state",
		"/sys/fs/cgroup/memory.max",		       "/sys/fs/cgroup/pids.max",
		"/sys/fs/cgroup/cgroup.procs",		       "/sys/fs/cgroup/release_agent",
		"/sys/fs/cgroup/memory/release_agent",	       "/sys/fs/cgroup/devices/devices.allow",
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (access(files[i], F_OK) != 0)
			continue;
		try_write(files[i], NULL);
	}
	expect_fail("mkdir /sys/fs/cgroup/pids/escape", mkdir("/sys/fs/cgroup/pids/escape", 0755));
	expect_fail("mkdir /sys/fs/cgroup/escape", mkdir("/sys/fs/cgroup/escape", 0755));
}

int main(int argc, char **argv)
{
	esc_init();
	const char *newname = argc > 1 ? argv[1] : "vslice-escaped";
	try_write("/proc/sys/kernel/hostname", newname);
	try_write("/proc/sys/kernel/domainname", "vslice-escaped");
	try_write("/proc/sysrq-trigger", "h");
	static const char *sysctls[] = {
		"/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
		"/proc/sys/kernel/sysrq",	 "/proc/sys/kernel/panic",
		"/proc/sys/vm/drop_caches",	 "/proc/sys/vm/overcommit_memory",
		"/proc/sys/fs/file-max",	 "/proc/sys/fs/nr_open",
		"/proc/sys/kernel/pid_max",	 "/proc/sys/kernel/randomize_va_space",
		"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/core/bpf_jit_enable",
		"/proc/sys/user/max_user_namespaces",
	};
	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		try_write(sysctls[i], NULL);
	static const char *sysw[] = {
		"/sys/kernel/uevent_helper", "/sys/power/state",    "/sys/kernel/mm/ksm/run",
		"/sys/class/net/lo/mtu",     "/sys/module/printk/parameters/time",
		"/sys/kernel/profiling",
	};
	for (size_t i = 0; i < sizeof(sysw) / sizeof(sysw[0]); i++)
		try_write(sysw[i], NULL);
	expect_fail("create /sys/escape", open("/sys/escape", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	struct statvfs sv;
	if (statvfs("/sys", &sv) == 0) {
		if (sv.f_flag & ST_RDONLY)
			blocked("/sys is mounted read-only");
		else
			escaped("/sys is mounted read-write");
	}
	if (statvfs("/proc/sys", &sv) == 0) {
		if (sv.f_flag & ST_RDONLY)
			blocked("/proc/sys is mounted read-only");
		else
			escaped("/proc/sys is mounted read-write");
	}
	cgroup_writes();
	try_read_empty("/proc/kcore");
	kallsyms();
	dir_empty("/sys/firmware");
	try_read_empty("/proc/timer_list");
	try_read_empty("/proc/sched_debug");
	try_read_empty("/sys/kernel/debug/tracing/trace");
	char buf[256];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof(buf));
	expect_fail("syslog(READ_ALL) (dmesg)", n);
	expect_denied("syslog(CLEAR)", klogctl(5, NULL, 0));
	return esc_finish();
}
