/*
 * e09_caps: raise capabilities or gain privilege.
 *  - the id maps put slice root on a non-zero host id, at most 65536 ids
 *  - CapEff/CapPrm/CapBnd within the Docker-like default set, CapAmb and
 *    CapInh empty, NoNewPrivs 1, Seccomp 2
 *  - capset all bits, ambient raise, bounding-set read, clearing NNP
 *  - a setuid-root copy of this binary exec'd as uid 1000 must not run as
 *    euid 0; a copy carrying file capabilities (security.capability with
 *    SYS_ADMIN, SYS_MODULE, SYS_PTRACE) must not grant them (no_new_privs).
 *  e09_caps [report]   (report: internal, prints euid and CapEff)
 */
#include "escape.h"
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/xattr.h>

/* CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
 * NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP */
#define DOCKER_CAPS 0xa80425fbULL

static unsigned long long status_hex(const char *key)
{
	char buf[4096];
	if (read_file("/proc/self/status", buf, sizeof(buf)) < 0)
		return ~0ULL;
	char *p = strstr(buf, key);
	if (!p)
		return ~0ULL;
	return strtoull(p + strlen(key), NULL, 16);
}

static long status_dec(const char *key)
{
	char buf[4096];
	if (read_file("/proc/self/status", buf, sizeof(buf)) < 0)
		return -1;
	char *p = strstr(buf, key);
	if (!p)
		return -1;
	return strtol(p + strlen(key), NULL, 10);
}

static void check_map(const char *path)
{
	char buf[512];
	if (read_file(path, buf, sizeof(buf)) < 0) {
		escaped("cannot read %s", path);
		return;
	}
	unsigned long long in, out, count, total = 0;
	int bad = 0, lines = 0;
	char *p = buf;
	while (sscanf(p, "%llu %llu %llu", &in, &out, &count) == 3) {
		lines++;
		total += count;
		if (out == 0 || (in == 0 && out == 0))
			bad = 1;
		if (out <= 0 && out + count > 0)
			bad = 1;
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	if (!lines)
		escaped("%s is empty", path);
	else if (bad)
		escaped("%s maps host id 0 into the slice: %s", path, buf);
	else if (total > 65536)
		escaped("%s maps %llu ids (more than the slice's 65536)", path, total);
	else
		blocked("%s: host root is not mapped, %llu ids", path, total);
}

static int copy_self(const char *dst)
{
	int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	int out = open(dst, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0755);
	if (in < 0 || out < 0)
		return -1;
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return -1;
	close(in);
	close(out);
	return 0;
}

/* Run path as uid (after dropping to it), read "EUID CAPEFF". */
static int run_as(const char *path, uid_t uid, long *euid, unsigned long long *capeff)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		if (uid != 0) {
			if (setgroups(0, NULL) != 0)
				_exit(3);
			if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
				_exit(3);
		}
		execl(path, path, "report", (char *)NULL);
		_exit(4);
	}
	close(pfd[1]);
	char buf[128] = "";
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return sscanf(buf, "%ld %llx", euid, capeff) == 2 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "report") == 0) {
		printf("%ld %llx\n", (long)geteuid(), status_hex("CapEff:"));
		return 0;
	}
	esc_init();
	check_map("/proc/self/uid_map");
	check_map("/proc/self/gid_map");
	static const char *sets[] = { "CapEff:", "CapPrm:", "CapBnd:" };
	for (int i = 0; i < 3; i++) {
		unsigned long long v = status_hex(sets[i]);
		if (v & ~DOCKER_CAPS)
			escaped("%s %016llx has capabilities beyond the default set (%016llx)", sets[i],
				v, v & ~DOCKER_CAPS);
		else
			blocked("%s %016llx within the default set", sets[i], v);
	}
	if (status_hex("CapAmb:") || status_hex("CapInh:"))
		escaped("ambient or inheritable capabilities are set");
	else
		blocked("no ambient or inheritable capabilities");
	if (status_dec("NoNewPrivs:") == 1)
		blocked("NoNewPrivs: 1");
	else
		escaped("NoNewPrivs is not set");
	if (status_dec("Seccomp:") == 2)
		blocked("Seccomp: 2 (filter)");
	else
		escaped("no seccomp filter (Seccomp: %ld)", status_dec("Seccomp:"));

	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0xff, sizeof(d));
	expect_fail("capset(every capability)", syscall(SYS_capset, &h, d));
	expect_fail("PR_CAP_AMBIENT_RAISE CAP_SYS_ADMIN",
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0));
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 1)
		escaped("CAP_SYS_ADMIN is in the bounding set");
	else
		blocked("CAP_SYS_ADMIN not in the bounding set");
	expect_fail("PR_SET_NO_NEW_PRIVS 0", prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0));

	/* setuid root binary. */
	const char *suid = "/tmp/esc-suid";
	long euid = -1;
	unsigned long long ce = 0;
	if (copy_self(suid) == 0 && chown(suid, 0, 0) == 0 && chmod(suid, 04755) == 0) {
		if (run_as(suid, 1000, &euid, &ce) == 0) {
			if (euid == 0)
				escaped("setuid-root binary run by uid 1000 got euid 0 (caps %llx)", ce);
			else
				blocked("setuid-root binary run by uid 1000 kept euid %ld", euid);
		} else
			info("setuid test: child did not report");
	} else
		info("could not make a setuid copy: %s", strerror(errno));

	/* File capabilities. */
	const char *fcap = "/tmp/esc-fcap";
	if (copy_self(fcap) == 0) {
		struct vfs_cap_data cd;
		memset(&cd, 0, sizeof(cd));
		cd.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
		cd.data[0].permitted = (1u << CAP_SYS_ADMIN) | (1u << CAP_SYS_MODULE) |
				       (1u << CAP_SYS_PTRACE) | (1u << CAP_DAC_READ_SEARCH);
		if (setxattr(fcap, "security.capability", &cd, XATTR_CAPS_SZ_2, 0) == 0) {
			for (uid_t u = 0; u <= 1000; u += 1000) {
				if (run_as(fcap, u, &euid, &ce) != 0) {
					info("file-caps test as uid %u: child did not report", u);
					continue;
				}
				if (ce & ~DOCKER_CAPS)
					escaped("file capabilities granted %llx to uid %u", ce, u);
				else
					blocked("file capabilities ignored for uid %u (CapEff %llx)", u,
						ce);
			}
		} else
			info("setxattr security.capability: %s", strerror(errno));
	}
	unlink(suid);
	unlink(fcap);
	return esc_finish();
}
