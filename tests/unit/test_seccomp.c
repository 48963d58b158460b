/*
 * test_seccomp.c - seccomp policies: the builtin policies and a Docker
 * profile compile; bad policies fail with the JSON path in the message;
 * Docker's includes/excludes change the output; the BPF cache round-trips
 * and never trusts a bad file; and, in forked children (no root needed:
 * NO_NEW_PRIVS), the default and strict policies really deny what they
 * promise while ordinary programs (files, fork, threads, sockets) still work.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <nettle/sha2.h>
#include <seccomp.h>

#include "vslice/caps.h"
#include "vslice/seccomp_policy.h"
#include "vslice/util.h"

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

static char *data_path(const char *name)
{
	const char *dir = getenv("VS_TEST_DATA");
	return vs_xasprintf("%s/%s", dir ? dir : "tests/unit/data", name);
}

static void compile_ok(const char *text, uint64_t caps, struct seccomp_bpf *b)
{
	struct vs_error err = {0};
	int r = seccomp_policy_compile(text, strlen(text), caps, b, &err);
	if (r < 0)
		fail_msg("compile failed: %s", err.msg);
}

static void compile_fails(const char *text, int code, const char *want)
{
	struct vs_error err = {0};
	struct seccomp_bpf b;
	int r = seccomp_policy_compile(text, strlen(text), caps_default_mask(), &b, &err);
	if (r >= 0)
		fail_msg("expected failure (%s) for %s", want, text);
	assert_int_equal(r, -err.code);
	if (code)
		assert_int_equal(err.code, code);
	if (!strstr(err.msg, want))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
	assert_null(b.insns);
	assert_int_equal(b.len, 0);
}

static bool has_k(const struct seccomp_bpf *b, uint32_t k)
{
	for (size_t i = 0; i < b->len; i++)
		if (b->insns[i].k == k)
			return true;
	return false;
}

/* ---- compile ----------------------------------------------------------- */

static void test_builtin_names(void **state)
{
	assert_true(seccomp_policy_is_builtin("default"));
	assert_true(seccomp_policy_is_builtin("strict"));
	assert_true(seccomp_policy_is_builtin("unconfined"));
	assert_false(seccomp_policy_is_builtin("nope"));
	assert_false(seccomp_policy_is_builtin("/etc/default.json"));
	assert_non_null(seccomp_policy_builtin("default"));
	assert_null(seccomp_policy_builtin(NULL));
}

static void test_compile_default(void **state)
{
	struct seccomp_bpf b;
	compile_ok(seccomp_policy_builtin("default"), caps_default_mask(), &b);
	assert_false(b.unconfined);
	assert_non_null(b.insns);
	assert_true(b.len > 100 && b.len <= BPF_MAXINSNS);
	assert_int_equal(strlen(b.hash), 64);
	/* x86_64 only: the i386 entry point is a bad arch (SIGSYS). Through
	 * it, socketcall(SYS_SOCKET) carries the address family in memory,
	 * where no filter can look, so the family rule (no AF_VSOCK, whose
	 * sockets bypass the network namespace) could not hold (escape-16). */
	assert_true(has_k(&b, AUDIT_ARCH_X86_64));
	assert_false(has_k(&b, AUDIT_ARCH_I386));
	seccomp_bpf_free(&b);
	assert_null(b.insns);
	seccomp_bpf_free(&b); /* idempotent */
}

static void test_compile_strict(void **state)
{
	struct seccomp_bpf b;
	compile_ok(seccomp_policy_builtin("strict"), caps_default_mask(), &b);
	assert_false(b.unconfined);
	assert_true(b.len > 100);
	assert_false(has_k(&b, AUDIT_ARCH_I386)); /* as default: see above */
	seccomp_bpf_free(&b);
}

static void test_compile_unconfined(void **state)
{
	struct seccomp_bpf b;
	compile_ok(seccomp_policy_builtin("unconfined"), caps_default_mask(), &b);
	assert_true(b.unconfined);
	assert_null(b.insns);
	assert_int_equal(b.len, 0);
	assert_int_equal(seccomp_bpf_install(&b), 0);
	/* ALLOW default with only ALLOW rules is unconfined too. */
	compile_ok("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],"
		   "\"action\":\"SCMP_ACT_ALLOW\"}]}",
		   0, &b);
	assert_true(b.unconfined);
	/* ALLOW default with a deny rule is a denylist: a real filter. */
	compile_ok(
	    "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"kexec_load\"],"
	    "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":1}]}",
	    0, &b);
	assert_false(b.unconfined);
	assert_non_null(b.insns);
	seccomp_bpf_free(&b);
}

static void test_compile_docker_default(void **state)
{
	cleanup_free char *path = data_path("docker-default.json");
	cleanup_free char *text = NULL;
	size_t len;
	struct vs_error err = {0};
	struct seccomp_bpf b, admin;
	if (vs_read_file(path, 0, &text, &len, &err) < 0)
		fail_msg("%s", err.msg);
	uint64_t t0 = vs_now_ns();
	if (seccomp_policy_compile(text, len, caps_default_mask(), &b, &err) < 0)
		fail_msg("%s", err.msg);
	uint64_t t1 = vs_now_ns();
	print_message("docker-default.json: %zu instructions, compiled in %.2f ms\n", b.len,
		      (double)(t1 - t0) / 1e6);
	assert_false(b.unconfined);
	assert_true(has_k(&b, AUDIT_ARCH_I386)); /* archMap: x86_64 + subArchitectures */
	/* With CAP_SYS_ADMIN the includes.caps groups come in: a different filter. */
	if (seccomp_policy_compile(text, len, caps_default_mask() | (1ULL << 21), &admin, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_not_equal(b.hash, admin.hash);
	assert_true(b.len != admin.len ||
		    memcmp(b.insns, admin.insns, b.len * sizeof(struct sock_filter)) != 0);
	seccomp_bpf_free(&b);
	seccomp_bpf_free(&admin);
}

#define P_HEAD "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":["
#define P_TAIL "]}"

static void test_compile_errors(void **state)
{
	compile_fails("{", EINVAL, "line 1");
	compile_fails("", EINVAL, "seccomp policy");
	compile_fails("[]", EINVAL, "expected an object");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
		      EINVAL, "duplicate");
	compile_fails("{\"syscalls\":[]}", EINVAL, ".defaultAction: missing");
	compile_fails("{\"defaultAction\":1}", EINVAL, ".defaultAction: expected a string");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_NOPE\"}", EINVAL,
		      ".defaultAction: unknown action");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultActoin\":1}", EINVAL,
		      ".defaultActoin: unknown key");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"defaultErrnoRet\":1}", EINVAL,
		      ".defaultErrnoRet: only valid with SCMP_ACT_ERRNO");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":-1}", EINVAL,
		      ".defaultErrnoRet: -1 out of range");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":\"1\"}", EINVAL,
		      ".defaultErrnoRet: expected an integer");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"syscalls\":{}}", EINVAL,
		      ".syscalls: expected an array");
	compile_fails(
	    "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":[\"SCMP_ARCH_VAX\"]}", EINVAL,
	    ".architectures[0]: unknown architecture \"SCMP_ARCH_VAX\"");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"architectures\":[\"SCMP_ARCH_X86\"],"
		      "\"archMap\":[]}",
		      EINVAL, "either");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"archMap\":[{\"architecture\":"
		      "\"SCMP_ARCH_X86_64\",\"subArchitectures\":[\"SCMP_ARCH_X86\"],\"sub\":1}]}",
		      EINVAL, ".archMap[0].sub: unknown key");
	compile_fails("{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"listenerPath\":\"/run/x.sock\"}",
		      ENOTSUP, "notify");
	compile_fails(
	    "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"flags\":[\"SECCOMP_FILTER_FLAG_BOGUS\"]}",
	    EINVAL, ".flags[0]: unknown flag");
	compile_fails(P_HEAD "1" P_TAIL, EINVAL, ".syscalls[0]: expected an object");
	compile_fails(P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"},"
			     "{\"names\":[\"write\"],\"action\":\"SCMP_ACT_ALLOW\"},"
			     "{\"names\":[\"close\"],\"action\":\"SCMP_ACT_ALLOW\"},"
			     "{\"names\":[\"openat\"],\"actoin\":\"SCMP_ACT_ALLOW\"}" P_TAIL,
		      EINVAL, ".syscalls[3].actoin: unknown key");
	compile_fails(P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_FOO\"}" P_TAIL, EINVAL,
		      ".syscalls[0].action: unknown action \"SCMP_ACT_FOO\"");
	compile_fails(P_HEAD "{\"names\":[\"read\"]}" P_TAIL, EINVAL,
		      ".syscalls[0].action: missing");
	compile_fails(P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_NOTIFY\"}" P_TAIL,
		      ENOTSUP, ".syscalls[0].action: SCMP_ACT_NOTIFY");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"errnoRet\":1}" P_TAIL,
		      EINVAL, ".syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO");
	compile_fails(
	    P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":5000}" P_TAIL,
	    EINVAL, ".syscalls[0].errnoRet: 5000 out of range");
	compile_fails(P_HEAD "{\"names\":\"read\",\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL, EINVAL,
		      ".syscalls[0].names: expected an array");
	compile_fails(P_HEAD "{\"names\":[\"read\",7],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL,
		      EINVAL, ".syscalls[0].names[1]: expected a string");
	compile_fails(P_HEAD "{\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL, EINVAL,
		      ".syscalls[0].names: missing");
	compile_fails(
	    P_HEAD "{\"name\":\"read\",\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL,
	    EINVAL, "not both");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,"
		      "\"value\":1,\"op\":\"SCMP_CMP_EQUAL\"}]}" P_TAIL,
		      EINVAL, ".syscalls[0].args[0].op: unknown operator \"SCMP_CMP_EQUAL\"");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,"
		      "\"value\":1}]}" P_TAIL,
		      EINVAL, ".syscalls[0].args[0].op: missing");
	compile_fails(
	    P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":\"0\","
		   "\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}" P_TAIL,
	    EINVAL, ".syscalls[0].args[0].index: expected an integer");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":6,"
		      "\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}" P_TAIL,
		      EINVAL, ".syscalls[0].args[0].index: 6 out of range 0..5");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,"
		      "\"value\":1.5,\"op\":\"SCMP_CMP_EQ\"}]}" P_TAIL,
		      EINVAL, ".syscalls[0].args[0].value: expected an integer");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,"
		      "\"value\":1,\"op\":\"SCMP_CMP_EQ\",\"mask\":1}]}" P_TAIL,
		      EINVAL, ".syscalls[0].args[0].mask: unknown key");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":{}}" P_TAIL,
		      EINVAL, ".syscalls[0].args: expected an array");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"caps\":"
		      "[\"CAP_FLY\"]}}" P_TAIL,
		      EINVAL, ".syscalls[0].includes.caps[0]: unknown capability \"CAP_FLY\"");
	compile_fails(
	    P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"excludes\":{\"kernel\":"
		   "\"4.8\"}}" P_TAIL,
	    EINVAL, ".syscalls[0].excludes.kernel: unknown key");
	compile_fails(
	    P_HEAD
	    "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"minKernel\":"
	    "\"four\"}}" P_TAIL,
	    EINVAL, ".syscalls[0].includes.minKernel: \"four\" is not <major>.<minor>");
	compile_fails(P_HEAD
		      "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\",\"comment\":3}" P_TAIL,
		      EINVAL, ".syscalls[0].comment: expected a string");
}

static void test_compile_unknown_syscall_skipped(void **state)
{
	struct seccomp_bpf a, b;
	compile_ok(P_HEAD "{\"names\":[\"read\",\"no_such_syscall_vslice\"],\"action\":\"SCMP_ACT_"
			  "ALLOW\"}" P_TAIL,
		   0, &a);
	compile_ok(P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL, 0, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.insns, b.insns, a.len * sizeof(struct sock_filter));
	seccomp_bpf_free(&a);
	seccomp_bpf_free(&b);
}

/* Rule kept -> filter differs from the base; dropped -> identical. */
static void assert_rule_kept(const char *extra_rule, uint64_t caps, bool kept)
{
	const char *base = P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL;
	cleanup_free char *with = vs_xasprintf(
	    P_HEAD "{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"},%s" P_TAIL, extra_rule);
	struct seccomp_bpf a, b;
	compile_ok(base, caps, &a);
	compile_ok(with, caps, &b);
	bool same =
	    a.len == b.len && memcmp(a.insns, b.insns, a.len * sizeof(struct sock_filter)) == 0;
	if (same == kept)
		fail_msg("rule %s with caps %#llx: expected %s", extra_rule,
			 (unsigned long long)caps, kept ? "kept" : "dropped");
	seccomp_bpf_free(&a);
	seccomp_bpf_free(&b);
}

static void test_includes_excludes(void **state)
{
	uint64_t chroot_cap = 1ULL << 18, admin = 1ULL << 21;
	const char *inc_caps = "{\"names\":[\"chroot\"],\"action\":\"SCMP_ACT_ALLOW\","
			       "\"includes\":{\"caps\":[\"CAP_SYS_CHROOT\",\"CAP_SYS_ADMIN\"]}}";
	assert_rule_kept(inc_caps, chroot_cap | admin, true);
	assert_rule_kept(inc_caps, chroot_cap, false); /* all listed caps are needed */
	const char *exc_caps =
	    "{\"names\":[\"clone3\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":38,"
	    "\"excludes\":{\"caps\":[\"CAP_SYS_ADMIN\",\"CAP_BPF\"]}}";
	assert_rule_kept(exc_caps, chroot_cap, true);
	assert_rule_kept(exc_caps, admin, false); /* any listed cap excludes */
	assert_rule_kept(
	    "{\"names\":[\"arch_prctl\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"arches\":"
	    "[\"amd64\",\"x32\"]}}",
	    0, true);
	assert_rule_kept(
	    "{\"names\":[\"arch_prctl\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"arches\":"
	    "[\"s390x\"]}}",
	    0, false);
	assert_rule_kept(
	    "{\"names\":[\"arch_prctl\"],\"action\":\"SCMP_ACT_ALLOW\",\"excludes\":{\"arches\":"
	    "[\"amd64\"]}}",
	    0, false);
	assert_rule_kept(
	    "{\"names\":[\"ptrace\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"minKernel\":"
	    "\"4.8\"}}",
	    0, true);
	assert_rule_kept(
	    "{\"names\":[\"ptrace\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"minKernel\":"
	    "\"999.0\"}}",
	    0, false);
	assert_rule_kept(
	    "{\"names\":[\"ptrace\"],\"action\":\"SCMP_ACT_ALLOW\",\"excludes\":{\"minKernel\":"
	    "\"3.10\"}}",
	    0, false);
	/* A rule equal to the default action is skipped (libseccomp refuses it). */
	assert_rule_kept("{\"names\":[\"mount\"],\"action\":\"SCMP_ACT_ERRNO\"}", 0, false);
	/* Same-index conditions are ORed as separate rules; legacy "name" works. */
	assert_rule_kept("{\"name\":\"personality\",\"action\":\"SCMP_ACT_ALLOW\",\"args\":["
			 "{\"index\":0,\"value\":0,\"op\":\"SCMP_CMP_EQ\"},"
			 "{\"index\":0,\"value\":8,\"op\":\"SCMP_CMP_EQ\"}]}",
			 0, true);
}

/* ---- enforcement in a forked child --------------------------------------- */

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			char _m[256];                                                              \
			int _n = snprintf(_m, sizeof(_m), "line %d: ", __LINE__);                  \
			_n += snprintf(_m + _n, sizeof(_m) - (size_t)_n, __VA_ARGS__);             \
			_m[sizeof(_m) - 2] = '\n';                                                 \
			if (_n < (int)sizeof(_m) - 1) {                                            \
				_m[_n++] = '\n';                                                   \
				_m[_n] = '\0';                                                     \
			}                                                                          \
			(void)!write(2, _m, strlen(_m));                                           \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

#define DENIED(call, e) ((call) == -1 && errno == (e))

static void *thread_fn(void *arg)
{
	return arg;
}

/* What every confined program needs, under either policy. */
static void check_common(void)
{
	CHECK(syscall(SYS_getpid) == getpid(), "getpid");
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/null: %s", strerror(errno));
	CHECK(write(fd, "x", 1) == 1, "write");
	close(fd);

	pid_t pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(7);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7, "fork/wait");

	/* glibc >= 2.34 tries clone3 first: ENOSYS must make it fall back to clone. */
	pthread_t t;
	void *ret = NULL;
	CHECK(pthread_create(&t, NULL, thread_fn, (void *)0x5) == 0, "pthread_create");
	CHECK(pthread_join(t, &ret) == 0 && ret == (void *)0x5, "pthread_join");

	struct clone_args ca = {.exit_signal = SIGCHLD};
	long c3 = syscall(SYS_clone3, &ca, sizeof(ca));
	if (c3 == 0)
		_exit(0);
	CHECK(c3 == -1 && errno == ENOSYS, "clone3 not ENOSYS: %s", strerror(errno));

	long cr = syscall(SYS_clone, (unsigned long)(CLONE_NEWNS | SIGCHLD), 0, 0, 0, 0);
	if (cr == 0)
		_exit(0);
	CHECK(cr == -1 && errno == EPERM, "clone(CLONE_NEWNS) not EPERM");
	CHECK(DENIED(mount("none", "/nonexistent-vslice", "tmpfs", 0, NULL), EPERM), "mount: %s",
	      strerror(errno));
	CHECK(DENIED(umount2("/nonexistent-vslice", 0), EPERM), "umount2");
	CHECK(DENIED(unshare(CLONE_NEWUSER), EPERM), "unshare(CLONE_NEWUSER): %s", strerror(errno));
	CHECK(DENIED(unshare(CLONE_NEWNS), EPERM), "unshare(CLONE_NEWNS)");
	CHECK(DENIED(setns(0, 0), EPERM), "setns");
	CHECK(DENIED(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0), EPERM), "keyctl");
	CHECK(DENIED(syscall(SYS_add_key, "user", "x", "y", 1, -3), EPERM), "add_key");
	CHECK(DENIED(syscall(SYS_bpf, 0, NULL, 0), EPERM), "bpf");
	CHECK(DENIED(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM), "perf_event_open");
	CHECK(DENIED(syscall(SYS_userfaultfd, 0), EPERM), "userfaultfd");
	CHECK(DENIED(syscall(SYS_io_uring_setup, 1, NULL), EPERM), "io_uring_setup");
	CHECK(DENIED(syscall(SYS_init_module, NULL, 0, ""), EPERM), "init_module");
	CHECK(DENIED(syscall(SYS_kexec_load, 0, 0, NULL, 0), EPERM), "kexec_load");
	CHECK(DENIED(syscall(SYS_open_by_handle_at, -1, NULL, 0), EPERM), "open_by_handle_at");
	CHECK(DENIED(syscall(SYS_name_to_handle_at, -1, "", NULL, NULL, 0), EPERM),
	      "name_to_handle_at");
	CHECK(DENIED(syscall(SYS_pivot_root, "/", "/"), EPERM), "pivot_root");
	CHECK(DENIED(syscall(SYS_fsopen, "tmpfs", 0), EPERM), "fsopen");
	CHECK(DENIED(syscall(SYS_open_tree, -1, "/", 0), EPERM), "open_tree");
	CHECK(DENIED(syscall(SYS_clock_settime, 0, NULL), EPERM), "clock_settime");
	CHECK(DENIED(syscall(SYS_adjtimex, NULL), EPERM), "adjtimex");
	CHECK(DENIED(syscall(SYS_syslog, 3, NULL, 0), EPERM), "syslog");
	CHECK(DENIED(syscall(SYS_iopl, 3), EPERM), "iopl");
	CHECK(DENIED(syscall(SYS_acct, NULL), EPERM), "acct");
	CHECK(DENIED(syscall(SYS_swapoff, "/nonexistent-vslice"), EPERM), "swapoff");
	CHECK(DENIED(personality(PER_BSD), EPERM), "personality(PER_BSD)");

	/* Terminal injection: TIOCSTI/TIOCLINUX, also with junk in the upper 32 bits. */
	char c = 'x';
	CHECK(DENIED(ioctl(0, TIOCSTI, &c), EPERM), "TIOCSTI: %s", strerror(errno));
	CHECK(DENIED(syscall(SYS_ioctl, 0, 0xffffffff00005412UL, &c), EPERM),
	      "TIOCSTI | high bits");
	CHECK(DENIED(ioctl(0, TIOCLINUX, &c), EPERM), "TIOCLINUX");
	int p[2];
	CHECK(pipe(p) == 0, "pipe");
	int avail = -1;
	CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 0, "FIONREAD: %s", strerror(errno));
	CHECK(DENIED(ioctl(p[0], TIOCGWINSZ, &avail), ENOTTY), "TIOCGWINSZ reaches the kernel");

	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0, "socket(AF_UNIX): %s", strerror(errno));
	close(s);
	s = socket(AF_INET6, SOCK_DGRAM, 0);
	CHECK(s >= 0 || errno == EAFNOSUPPORT, "socket(AF_INET6): %s", strerror(errno));
	if (s >= 0)
		close(s);
	CHECK(DENIED(socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0), EPERM), "socket(AF_ALG)");
}

static int run_child(const char *policy, void (*checks)(void))
{
	struct vs_error err = {0};
	struct seccomp_bpf b;
	if (seccomp_policy_load(policy, NULL, caps_default_mask(), &b, &err) < 0)
		fail_msg("%s", err.msg);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "NNP");
		int r = seccomp_bpf_install(&b);
		CHECK(r == 0, "install: %s", strerror(-r));
		checks();
		_exit(0);
	}
	seccomp_bpf_free(&b);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("%s child killed by signal %d", policy, WTERMSIG(st));
	return WEXITSTATUS(st);
}

static void default_checks(void)
{
	check_common();
	/* Allowed in default, not in strict. */
	int x = 42, y = 0;
	struct iovec l = {&y, sizeof(y)}, r = {&x, sizeof(x)};
	CHECK(process_vm_readv(getpid(), &l, 1, &r, 1, 0) == sizeof(x) && y == 42,
	      "process_vm_readv: %s", strerror(errno));
	CHECK(personality(0xffffffff) >= 0, "personality query");
	int s = socket(AF_NETLINK, SOCK_RAW, 0);
	CHECK(s >= 0, "socket(AF_NETLINK): %s", strerror(errno));
	close(s);
	int fd = memfd_create("t", MFD_CLOEXEC);
	CHECK(fd >= 0, "memfd_create");
	close(fd);
}

static void strict_checks(void)
{
	check_common();
	int x = 42, y = 0;
	struct iovec l = {&y, sizeof(y)}, r = {&x, sizeof(x)};
	CHECK(DENIED(process_vm_readv(getpid(), &l, 1, &r, 1, 0), EPERM), "process_vm_readv");
	CHECK(DENIED(syscall(SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, getppid(), 0, 0), EPERM),
	      "ptrace");
	CHECK(DENIED(socket(AF_NETLINK, SOCK_RAW, 0), EPERM), "socket(AF_NETLINK)");
	CHECK(DENIED(socket(AF_INET, SOCK_RAW, 1), EPERM), "socket(AF_INET, SOCK_RAW)");
	CHECK(DENIED(socket(AF_PACKET, SOCK_DGRAM, 0), EPERM), "socket(AF_PACKET)");
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(s >= 0, "socket(AF_INET, SOCK_STREAM|flags): %s", strerror(errno));
	close(s);
	CHECK(DENIED(syscall(SYS_chroot, "/"), EPERM), "chroot");
	CHECK(DENIED(syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-vslice/x", 0600, 0), EPERM),
	      "mknodat");
}

static void test_enforce_default(void **state)
{
	assert_int_equal(run_child("default", default_checks), 0);
}

static void test_enforce_strict(void **state)
{
	assert_int_equal(run_child("strict", strict_checks), 0);
}

static void test_install_bad(void **state)
{
	struct seccomp_bpf b = {0};
	assert_int_equal(seccomp_bpf_install(NULL), -EINVAL);
	assert_int_equal(seccomp_bpf_install(&b), -EINVAL); /* neither insns nor unconfined */
}

/* ---- cache ---------------------------------------------------------------- */

struct tmp {
	char dir[64];
};

static int tmp_setup(void **state)
{
	struct tmp *t = vs_xcalloc(1, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/vs-test-seccomp-XXXXXX");
	if (!mkdtemp(t->dir))
		return -1;
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;
	struct vs_error err;
	vs_rm_rf(t->dir, &err);
	free(t);
	return 0;
}

static void test_cache_roundtrip(void **state)
{
	struct tmp *t = *state;
	struct vs_error err = {0};
	struct seccomp_bpf a, b, c;
	cleanup_free char *cache = vs_xasprintf("%s/cache/seccomp", t->dir);
	cleanup_free char *docker = data_path("docker-default.json");

	uint64_t t0 = vs_now_ns();
	if (seccomp_policy_load(docker, cache, caps_default_mask(), &a, &err) < 0)
		fail_msg("%s", err.msg);
	uint64_t t1 = vs_now_ns();
	struct stat st;
	assert_int_equal(stat(cache, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	cleanup_free char *file = vs_xasprintf("%s/%s.bpf", cache, a.hash);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, a.len * sizeof(struct sock_filter));
	assert_int_equal(st.st_mode & 0777, 0600);
	ino_t ino = st.st_ino;

	uint64_t t2 = vs_now_ns();
	if (seccomp_policy_load(docker, cache, caps_default_mask(), &b, &err) < 0)
		fail_msg("%s", err.msg);
	uint64_t t3 = vs_now_ns();
	print_message("docker-default.json: compile+store %.3f ms, load from cache %.3f ms\n",
		      (double)(t1 - t0) / 1e6, (double)(t3 - t2) / 1e6);
	assert_string_equal(a.hash, b.hash);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.insns, b.insns, a.len * sizeof(struct sock_filter));
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_ino, ino); /* read, not rewritten */

	/* By id (checkpoint restore). */
	if (seccomp_bpf_load_cached(cache, a.hash, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_memory_equal(a.insns, c.insns, a.len * sizeof(struct sock_filter));
	seccomp_bpf_free(&c);
	assert_int_equal(seccomp_bpf_load_cached(cache, "../../etc/passwd", &c, &err), -EINVAL);
	assert_int_equal(seccomp_bpf_load_cached(
			     cache,
			     "00000000000000000000000000000000000000000000000000000000000000ff", &c,
			     &err),
			 -ENOENT);

	/* Other caps -> other key -> another file. */
	if (seccomp_policy_load(docker, cache, caps_default_mask() | (1ULL << 21), &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_not_equal(a.hash, c.hash);
	seccomp_bpf_free(&c);
	seccomp_bpf_free(&b);

	/* Corrupt files are recompiled, never trusted. */
	static const struct {
		const char *what;
		size_t len;
		mode_t mode;
		bool garbage;
	} bad[] = {
	    {"odd length", 13, 0600, true},
	    {"empty", 0, 0600, true},
	    {"whole insns of garbage", 64, 0600, true},
	    {"group/world writable", 0, 0666, false},
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
		if (bad[i].garbage) {
			char junk[64];
			memset(junk, 0x5a, sizeof(junk));
			if (vs_write_file_atomic(file, junk, bad[i].len, 0600, &err) < 0)
				fail_msg("%s", err.msg);
		} else {
			assert_int_equal(chmod(file, bad[i].mode), 0);
		}
		if (seccomp_policy_load(docker, cache, caps_default_mask(), &b, &err) < 0)
			fail_msg("%s: %s", bad[i].what, err.msg);
		if (b.len != a.len ||
		    memcmp(a.insns, b.insns, a.len * sizeof(struct sock_filter)) != 0)
			fail_msg("%s: cache file trusted", bad[i].what);
		assert_int_equal(stat(file, &st), 0);
		assert_int_equal(st.st_size, a.len * sizeof(struct sock_filter)); /* repaired */
		assert_int_equal(st.st_mode & 0777, 0600);
		seccomp_bpf_free(&b);
	}
	/* A symlink is not followed. */
	assert_int_equal(unlink(file), 0);
	assert_int_equal(symlink("/dev/zero", file), 0);
	if (seccomp_policy_load(docker, cache, caps_default_mask(), &b, &err) < 0)
		fail_msg("symlink: %s", err.msg);
	assert_memory_equal(a.insns, b.insns, a.len * sizeof(struct sock_filter));
	seccomp_bpf_free(&b);
	seccomp_bpf_free(&a);

	/* Unconfined: nothing to cache. */
	if (seccomp_policy_load("unconfined", cache, caps_default_mask(), &a, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(a.unconfined);
	cleanup_free char *ufile = vs_xasprintf("%s/%s.bpf", cache, a.hash);
	assert_int_equal(access(ufile, F_OK), -1);
	seccomp_bpf_free(&a);
}

static void test_load_files(void **state)
{
	struct tmp *t = *state;
	struct vs_error err = {0};
	struct seccomp_bpf b;
	cleanup_free char *good = vs_xasprintf("%s/p.json", t->dir);
	cleanup_free char *bad = vs_xasprintf("%s/bad.json", t->dir);
	cleanup_free char *big = vs_xasprintf("%s/big.json", t->dir);
	const char *text = P_HEAD
	    "{\"names\":[\"read\",\"write\",\"exit_group\"],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL;
	assert_int_equal(vs_write_file_atomic(good, text, strlen(text), 0644, &err), 0);
	assert_int_equal(vs_write_file_atomic(bad, "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"x\":1}",
					      40, 0644, &err),
			 0);
	if (seccomp_policy_load(good, NULL, 0, &b, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(b.len > 0);
	seccomp_bpf_free(&b);
	assert_int_equal(seccomp_policy_check(good, &err), 0);
	assert_int_equal(seccomp_policy_check("default", &err), 0);
	assert_int_equal(seccomp_policy_check("strict", &err), 0);
	assert_int_equal(seccomp_policy_check("unconfined", &err), 0);

	assert_true(seccomp_policy_check(bad, &err) < 0);
	assert_non_null(strstr(err.msg, bad));
	assert_non_null(strstr(err.msg, ".x: unknown key"));

	assert_int_equal(seccomp_policy_load("/nonexistent/vslice.json", NULL, 0, &b, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/vslice.json"));
	assert_int_equal(seccomp_policy_load("", NULL, 0, &b, &err), -EINVAL);

	size_t n = (1u << 20) + 1;
	cleanup_free char *huge = vs_xmalloc(n);
	memset(huge, ' ', n);
	assert_int_equal(vs_write_file_atomic(big, huge, n, 0644, &err), 0);
	assert_int_equal(seccomp_policy_load(big, NULL, 0, &b, &err), -EFBIG);
	assert_int_equal(seccomp_policy_compile(huge, n, 0, &b, &err), -EFBIG);
}

/* ---- layout: the binary tree against the linear chain -------------------- */

/*
 * A classic-BPF interpreter over struct seccomp_data (every opcode the
 * kernel's seccomp checker accepts), to compare filters without installing
 * them. read_args is set when the path loaded anything past arch
 * (instruction_pointer or args); nr_steps counts the instructions before
 * that load or the RET: the walk the kernel's action-cache preparation does
 * for a syscall number (it gives up at such a load).
 */
struct bpf_run {
	uint32_t action;
	unsigned steps;	   /* instructions executed, the RET included */
	unsigned nr_steps; /* of which before the first argument load */
	bool read_args;
};

static struct bpf_run bpf_run(const struct seccomp_bpf *b, const struct seccomp_data *d)
{
	struct bpf_run r = {0};
	uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {0};
	for (size_t pc = 0; pc < b->len; pc++) {
		const struct sock_filter *in = &b->insns[pc];
		uint32_t k = in->k;
		bool taken = false;
		r.steps++;
		switch (in->code) {
		case BPF_LD | BPF_W | BPF_ABS:
		case BPF_LDX | BPF_W | BPF_ABS:
			if (k >= sizeof(*d) || (k & 3))
				fail_msg("pc %zu: load at offset %u", pc, k);
			if (k >= offsetof(struct seccomp_data, instruction_pointer) &&
			    !r.read_args) {
				r.read_args = true;
				r.nr_steps = r.steps;
			}
			memcpy(BPF_CLASS(in->code) == BPF_LD ? &A : &X, (const char *)d + k, 4);
			continue;
		case BPF_LD | BPF_W | BPF_LEN:
			A = sizeof(*d);
			continue;
		case BPF_LDX | BPF_W | BPF_LEN:
			X = sizeof(*d);
			continue;
		case BPF_LD | BPF_IMM:
			A = k;
			continue;
		case BPF_LDX | BPF_IMM:
			X = k;
			continue;
		case BPF_LD | BPF_MEM:
			A = M[k % BPF_MEMWORDS];
			continue;
		case BPF_LDX | BPF_MEM:
			X = M[k % BPF_MEMWORDS];
			continue;
		case BPF_ST:
			M[k % BPF_MEMWORDS] = A;
			continue;
		case BPF_STX:
			M[k % BPF_MEMWORDS] = X;
			continue;
		case BPF_MISC | BPF_TAX:
			X = A;
			continue;
		case BPF_MISC | BPF_TXA:
			A = X;
			continue;
		case BPF_RET | BPF_K:
		case BPF_RET | BPF_A:
			r.action = BPF_RVAL(in->code) == BPF_K ? k : A;
			if (!r.read_args)
				r.nr_steps = r.steps;
			return r;
		case BPF_JMP | BPF_JA:
			pc += k;
			continue;
		case BPF_ALU | BPF_NEG:
			A = -A;
			continue;
		default:
			break;
		}
		uint32_t v = BPF_SRC(in->code) == BPF_X ? X : k;
		if (BPF_CLASS(in->code) == BPF_ALU) {
			switch (BPF_OP(in->code)) {
			case BPF_ADD:
				A += v;
				continue;
			case BPF_SUB:
				A -= v;
				continue;
			case BPF_MUL:
				A *= v;
				continue;
			case BPF_AND:
				A &= v;
				continue;
			case BPF_OR:
				A |= v;
				continue;
			case BPF_XOR:
				A ^= v;
				continue;
			case BPF_LSH:
				A = v < 32 ? A << v : 0;
				continue;
			case BPF_RSH:
				A = v < 32 ? A >> v : 0;
				continue;
			case BPF_DIV:
				if (!v)
					fail_msg("pc %zu: division by zero", pc);
				A /= v;
				continue;
			}
		} else if (BPF_CLASS(in->code) == BPF_JMP) {
			switch (BPF_OP(in->code)) {
			case BPF_JEQ:
				taken = A == v;
				break;
			case BPF_JGT:
				taken = A > v;
				break;
			case BPF_JGE:
				taken = A >= v;
				break;
			case BPF_JSET:
				taken = (A & v) != 0;
				break;
			default:
				fail_msg("pc %zu: opcode 0x%x", pc, in->code);
			}
			pc += taken ? in->jt : in->jf;
			continue;
		}
		fail_msg("pc %zu: opcode 0x%x", pc, in->code);
	}
	fail_msg("ran off the end of a %zu-instruction filter", b->len);
	return r;
}

#define NR_SCAN 560 /* x86_64 has ~465 syscalls in 6.x; a margin above */

static void compile_layout(const char *text, size_t len, enum seccomp_layout layout,
			   struct seccomp_bpf *b)
{
	struct vs_error err = {0};
	if (seccomp_policy_compile_layout(text, len, caps_default_mask(), layout, b, &err) < 0)
		fail_msg("compile failed: %s", err.msg);
	assert_false(b->unconfined);
}

/* The longest walk the kernel's cache preparation does for an x86_64
 * syscall number: to its RET, or to its first argument load. */
static unsigned longest_path(const struct seccomp_bpf *b)
{
	unsigned worst = 0;
	for (int nr = 0; nr < NR_SCAN; nr++) {
		struct seccomp_data d = {.nr = nr, .arch = AUDIT_ARCH_X86_64};
		struct bpf_run r = bpf_run(b, &d);
		worst = r.nr_steps > worst ? r.nr_steps : worst;
	}
	return worst;
}

/*
 * The kernel runs the filter for every syscall number at attach, with IRQs
 * off (seccomp_cache_prepare): the cost is numbers x path length. The
 * builtins must be a tree (~17 steps), not the linear chain (~300).
 */
static void test_tree_shallow(void **state)
{
	static const char *const names[] = {"default", "strict"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
		const char *text = seccomp_policy_builtin(names[i]);
		struct seccomp_bpf tree, linear;
		compile_layout(text, strlen(text), SECCOMP_LAYOUT_AUTO, &tree);
		compile_layout(text, strlen(text), SECCOMP_LAYOUT_LINEAR, &linear);
		unsigned t = longest_path(&tree), l = longest_path(&linear);
		print_message(
		    "%s: longest x86_64 nr walk %u instructions (%zu insns); linear %u (%zu)\n",
		    names[i], t, tree.len, l, linear.len);
		if (t > 64)
			fail_msg("%s: a syscall number walks %u instructions (> 64): not a tree",
				 names[i], t);
		assert_true(l > 64); /* the measure sees the linear chain */
		seccomp_bpf_free(&tree);
		seccomp_bpf_free(&linear);
	}
}

/* Argument values worth trying: every constant the filters compare with or
 * mask by, its neighbours and complement. */
struct kset {
	uint32_t v[384];
	size_t n;
};

static void kset_add(struct kset *s, uint32_t k)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == k)
			return;
	if (s->n < VS_ARRAY_SIZE(s->v))
		s->v[s->n++] = k;
}

static void kset_from(struct kset *s, const struct seccomp_bpf *b)
{
	for (size_t i = 0; i < b->len; i++) {
		const struct sock_filter *in = &b->insns[i];
		uint16_t cls = BPF_CLASS(in->code);
		if ((cls != BPF_JMP && cls != BPF_ALU) || BPF_SRC(in->code) != BPF_K ||
		    BPF_OP(in->code) == BPF_JA)
			continue;
		kset_add(s, in->k);
		kset_add(s, in->k + 1);
		kset_add(s, in->k - 1);
		kset_add(s, ~in->k);
	}
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct cmp_state {
	const struct seccomp_bpf *a, *b;
	const char *what;
	bool quiet;
	unsigned long vectors, diffs;
};

static void cmp_one(struct cmp_state *c, const struct seccomp_data *d)
{
	struct bpf_run ra = bpf_run(c->a, d), rb = bpf_run(c->b, d);
	c->vectors++;
	if (ra.action == rb.action)
		return;
	if (!c->quiet && c->diffs < 5)
		print_error("%s: arch 0x%x nr %d args %#llx %#llx %#llx: 0x%x vs 0x%x\n", c->what,
			    d->arch, d->nr, (unsigned long long)d->args[0],
			    (unsigned long long)d->args[1], (unsigned long long)d->args[2],
			    ra.action, rb.action);
	c->diffs++;
}

/*
 * Same action word (action + errno) from a and b for: arches x86_64, i386,
 * aarch64 and 0, every nr -2..NR_SCAN, x32 numbers (nr | 0x40000000) on
 * x86_64; and where either filter's path reads an argument for that
 * (arch, nr), single-argument vectors over the constants (hi words 0, 1,
 * 0x80000000, ~0), pairwise ORs of constants (flag sets) and random
 * six-argument vectors. Where neither path reads an argument, the action
 * cannot depend on them, so args 0 stand for all.
 */
static unsigned long compare_filters(struct cmp_state *c)
{
	static const uint32_t arches[] = {AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64,
					  0};
	static const uint32_t his[] = {0, 1, 0x80000000u, 0xffffffffu};
	struct kset ks = {.n = 0};
	kset_add(&ks, 0);
	kset_from(&ks, c->a);
	kset_from(&ks, c->b);
	uint64_t seed = 88172645463325252ull;

	for (size_t ai = 0; ai < VS_ARRAY_SIZE(arches) + 1; ai++) {
		bool x32 = ai == VS_ARRAY_SIZE(arches);
		uint32_t arch = x32 ? AUDIT_ARCH_X86_64 : arches[ai];
		for (int n = -2; n < NR_SCAN; n++) {
			int nr = x32 ? (int)((unsigned)n | 0x40000000u) : n;
			struct seccomp_data d = {.nr = nr, .arch = arch};
			struct bpf_run ra = bpf_run(c->a, &d), rb = bpf_run(c->b, &d);
			cmp_one(c, &d);
			if (!ra.read_args && !rb.read_args)
				continue;
			for (int i = 0; i < 6; i++) {
				struct seccomp_data e = d;
				for (size_t v = 0; v < ks.n; v++)
					for (size_t h = 0; h < VS_ARRAY_SIZE(his); h++) {
						e.args[i] = (uint64_t)his[h] << 32 | ks.v[v];
						cmp_one(c, &e);
					}
				size_t np = ks.n < 64 ? ks.n : 64;
				for (size_t v = 0; v < np; v++)
					for (size_t w = v + 1; w < np; w++) {
						e.args[i] = ks.v[v] | ks.v[w];
						cmp_one(c, &e);
					}
			}
			for (int k = 0; k < 5000; k++) {
				struct seccomp_data e = d;
				for (int i = 0; i < 6; i++) {
					uint64_t x = xorshift(&seed);
					e.args[i] = (uint64_t)his[(x >> 8) % VS_ARRAY_SIZE(his)]
							<< 32 |
						    ks.v[(x >> 16) % ks.n];
				}
				cmp_one(c, &e);
			}
		}
	}
	return c->diffs;
}

static void equivalent(const char *what, const char *text, size_t len)
{
	struct seccomp_bpf tree, linear;
	compile_layout(text, len, SECCOMP_LAYOUT_AUTO, &tree);
	compile_layout(text, len, SECCOMP_LAYOUT_LINEAR, &linear);
	/* Not the same program (else this compares nothing), not the same key. */
	assert_true(tree.len != linear.len ||
		    memcmp(tree.insns, linear.insns, tree.len * sizeof(struct sock_filter)) != 0);
	assert_string_not_equal(tree.hash, linear.hash);
	struct cmp_state c = {.a = &tree, .b = &linear, .what = what};
	compare_filters(&c);
	print_message("%s: tree (%zu insns) vs linear (%zu insns): %lu vectors, %lu differ\n", what,
		      tree.len, linear.len, c.vectors, c.diffs);
	assert_int_equal(c.diffs, 0);
	seccomp_bpf_free(&tree);
	seccomp_bpf_free(&linear);
}

static void test_tree_equivalent(void **state)
{
	equivalent("default", seccomp_policy_builtin("default"),
		   strlen(seccomp_policy_builtin("default")));
	equivalent("strict", seccomp_policy_builtin("strict"),
		   strlen(seccomp_policy_builtin("strict")));
	cleanup_free char *path = data_path("docker-default.json");
	cleanup_free char *text = NULL;
	size_t len;
	struct vs_error err = {0};
	if (vs_read_file(path, 0, &text, &len, &err) < 0)
		fail_msg("%s", err.msg);
	equivalent("docker-default.json (3 arches)", text, len);

	/* The comparison can fail: default against strict differs. */
	struct seccomp_bpf def, strict;
	compile_layout(seccomp_policy_builtin("default"), strlen(seccomp_policy_builtin("default")),
		       SECCOMP_LAYOUT_AUTO, &def);
	compile_layout(seccomp_policy_builtin("strict"), strlen(seccomp_policy_builtin("strict")),
		       SECCOMP_LAYOUT_LINEAR, &strict);
	struct cmp_state c = {.a = &def, .b = &strict, .what = "control", .quiet = true};
	assert_true(compare_filters(&c) > 0);
	seccomp_bpf_free(&def);
	seccomp_bpf_free(&strict);
}

/* At most SECCOMP_TREE_MIN_RULES rules (and zero rules: libseccomp #370)
 * stay on the linear chain: the same bytes as LINEAR. */
static void test_tree_threshold(void **state)
{
	static const char *const small[] = {
	    P_HEAD "{\"names\":[\"read\",\"write\",\"exit\"],\"action\":\"SCMP_ACT_ALLOW\"}" P_TAIL,
	    "{\"defaultAction\":\"SCMP_ACT_ERRNO\"}",
	    "{\"defaultAction\":\"SCMP_ACT_KILL\",\"syscalls\":[]}",
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(small); i++) {
		struct seccomp_bpf a, l;
		compile_layout(small[i], strlen(small[i]), SECCOMP_LAYOUT_AUTO, &a);
		compile_layout(small[i], strlen(small[i]), SECCOMP_LAYOUT_LINEAR, &l);
		assert_int_equal(a.len, l.len);
		assert_memory_equal(a.insns, l.insns, a.len * sizeof(struct sock_filter));
		seccomp_bpf_free(&a);
		seccomp_bpf_free(&l);
	}
}

/*
 * The layout is part of the cache key: a cache file written under the key
 * the linear-only compiler used (abe8be5: text, caps mask, libseccomp
 * version, native arch, kernel major.minor; no layout) is not served. The
 * test plants the linear chain under that old name; the load must compile
 * and return the tree.
 */
static void test_tree_cache_key(void **state)
{
	struct tmp *t = *state;
	struct vs_error err = {0};
	const char *text = seccomp_policy_builtin("default");
	size_t len = strlen(text);
	uint64_t caps = caps_default_mask();
	cleanup_free char *cache = vs_xasprintf("%s/cache/seccomp", t->dir);
	assert_int_equal(vs_mkdir_p(cache, 0700, &err), 0);

	const struct scmp_version *v = seccomp_version();
	struct utsname u;
	int kmaj = 0, kmin = 0;
	if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &kmaj, &kmin) != 2)
		kmaj = kmin = 0;
	char extra[160];
	int elen =
	    snprintf(extra, sizeof(extra), "%c%016llx%clibseccomp %u.%u.%u%carch %u%ckernel %d.%d",
		     0, (unsigned long long)caps, 0, v->major, v->minor, v->micro, 0,
		     seccomp_arch_native(), 0, kmaj, kmin);
	struct sha256_ctx sc;
	uint8_t d[SHA256_DIGEST_SIZE];
	char old_key[65];
	sha256_init(&sc);
	sha256_update(&sc, len, (const uint8_t *)text);
	sha256_update(&sc, (size_t)elen, (const uint8_t *)extra);
	sha256_digest(&sc, sizeof(d), d);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(old_key + 2 * i, 3, "%02x", d[i]);

	struct seccomp_bpf linear, tree, got;
	compile_layout(text, len, SECCOMP_LAYOUT_LINEAR, &linear);
	compile_layout(text, len, SECCOMP_LAYOUT_AUTO, &tree);
	cleanup_free char *old = vs_xasprintf("%s/%s.bpf", cache, old_key);
	assert_int_equal(vs_write_file_atomic(old, linear.insns,
					      linear.len * sizeof(struct sock_filter), 0600, &err),
			 0);
	/* The old name really is what the old code served: it loads by that hash. */
	assert_int_equal(seccomp_bpf_load_cached(cache, old_key, &got, &err), 0);
	assert_int_equal(got.len, linear.len);
	seccomp_bpf_free(&got);

	if (seccomp_policy_load("default", cache, caps, &got, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_not_equal(got.hash, old_key);
	assert_string_equal(got.hash, tree.hash);
	assert_int_equal(got.len, tree.len);
	assert_memory_equal(got.insns, tree.insns, tree.len * sizeof(struct sock_filter));
	seccomp_bpf_free(&got);
	seccomp_bpf_free(&linear);
	seccomp_bpf_free(&tree);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_builtin_names),
	    cmocka_unit_test(test_compile_default),
	    cmocka_unit_test(test_compile_strict),
	    cmocka_unit_test(test_compile_unconfined),
	    cmocka_unit_test(test_compile_docker_default),
	    cmocka_unit_test(test_compile_errors),
	    cmocka_unit_test(test_compile_unknown_syscall_skipped),
	    cmocka_unit_test(test_includes_excludes),
	    cmocka_unit_test(test_enforce_default),
	    cmocka_unit_test(test_enforce_strict),
	    cmocka_unit_test(test_install_bad),
	    cmocka_unit_test_setup_teardown(test_cache_roundtrip, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_load_files, tmp_setup, tmp_teardown),
	    cmocka_unit_test(test_tree_shallow),
	    cmocka_unit_test(test_tree_equivalent),
	    cmocka_unit_test(test_tree_threshold),
	    cmocka_unit_test_setup_teardown(test_tree_cache_key, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests_name("seccomp", tests, NULL, NULL);
}
