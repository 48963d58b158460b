/*
 * test_caps.c - capability masks: the Docker default, parsing and printing
 * lists of names (round trip), and, as root in a forked child, that
 * caps_apply leaves exactly the kept set in /proc/self/status.
 */
#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vslice/caps.h"
#include "vslice/util.h"

#define BIT(c) (UINT64_C(1) << (c))

static uint64_t parse_ok(const char *s)
{
	struct vs_error err = {0};
	uint64_t m = 0xdead;
	if (caps_parse(s, &m, &err) < 0)
		fail_msg("caps_parse(\"%s\"): %s", s, err.msg);
	return m;
}

static void parse_fails(const char *s, const char *want)
{
	struct vs_error err = {0};
	uint64_t m = 0xdead;
	assert_int_equal(caps_parse(s, &m, &err), -EINVAL);
	assert_int_equal(m, 0xdead); /* untouched on error */
	if (!strstr(err.msg, want))
		fail_msg("caps_parse(\"%s\"): \"%s\" lacks \"%s\"", s, err.msg, want);
}

static void test_default_mask(void **state)
{
	uint64_t m = caps_default_mask();
	assert_int_equal(__builtin_popcountll(m), 14);
	uint64_t want = BIT(CAP_CHOWN) | BIT(CAP_DAC_OVERRIDE) | BIT(CAP_FSETID) | BIT(CAP_FOWNER) |
			BIT(CAP_MKNOD) | BIT(CAP_NET_RAW) | BIT(CAP_SETGID) | BIT(CAP_SETUID) |
			BIT(CAP_SETFCAP) | BIT(CAP_SETPCAP) | BIT(CAP_NET_BIND_SERVICE) |
			BIT(CAP_SYS_CHROOT) | BIT(CAP_KILL) | BIT(CAP_AUDIT_WRITE);
	assert_int_equal(m, want);
	assert_false(m & BIT(CAP_SYS_ADMIN));
	assert_false(m & BIT(CAP_SYS_PTRACE));
	assert_false(m & BIT(CAP_NET_ADMIN));
}

static void test_parse(void **state)
{
	assert_int_equal(parse_ok("CHOWN,KILL"), BIT(CAP_CHOWN) | BIT(CAP_KILL));
	assert_int_equal(parse_ok("cap_chown,cap_kill"), BIT(CAP_CHOWN) | BIT(CAP_KILL));
	assert_int_equal(parse_ok(" Cap_Chown , kill "), BIT(CAP_CHOWN) | BIT(CAP_KILL));
	assert_int_equal(parse_ok("CAP_SYS_ADMIN"), BIT(CAP_SYS_ADMIN));
	assert_int_equal(parse_ok("checkpoint_restore"), BIT(CAP_CHECKPOINT_RESTORE));
	assert_int_equal(parse_ok("ALL"), BIT(CAP_LAST_CAP + 1) - 1);
	assert_int_equal(parse_ok("all"), BIT(CAP_LAST_CAP + 1) - 1);
	assert_int_equal(parse_ok("NONE"), 0);
	assert_int_equal(parse_ok(""), 0);
	assert_int_equal(parse_ok("  "), 0);
	assert_int_equal(parse_ok("NONE,KILL"), BIT(CAP_KILL));
	assert_int_equal(parse_ok("50,KILL"), BIT(50) | BIT(CAP_KILL));
	assert_int_equal(caps_from_name("cap_net_raw"), CAP_NET_RAW);
	assert_int_equal(caps_from_name("NET_RAW"), CAP_NET_RAW);
	assert_int_equal(caps_from_name("CAP_"), -1);
	assert_int_equal(caps_from_name(NULL), -1);

	parse_fails("CHOWN,BOGUS", "\"BOGUS\": unknown name");
	parse_fails("CHOWN,,KILL", "empty element");
	parse_fails("CHOWN,", "empty element");
	parse_fails("64", "unknown name");
	parse_fails("-1", "unknown name");
	parse_fails("CAP_CAP_CHOWN", "unknown name");
	struct vs_error err;
	uint64_t m;
	assert_int_equal(caps_parse(NULL, &m, &err), -EINVAL);
}

static void test_format_roundtrip(void **state)
{
	cleanup_free char *d = caps_format(caps_default_mask());
	assert_string_equal(d, "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,"
			       "NET_BIND_SERVICE,NET_RAW,SYS_CHROOT,MKNOD,AUDIT_WRITE,SETFCAP");
	assert_int_equal(parse_ok(d), caps_default_mask());
	cleanup_free char *none = caps_format(0);
	assert_string_equal(none, "NONE");
	assert_int_equal(parse_ok(none), 0);
	uint64_t odd[] = {BIT(50) | BIT(0), ~UINT64_C(0), BIT(CAP_LAST_CAP), BIT(63)};
	for (size_t i = 0; i < VS_ARRAY_SIZE(odd); i++) {
		cleanup_free char *s = caps_format(odd[i]);
		assert_int_equal(parse_ok(s), odd[i]);
	}
	cleanup_free char *n = caps_format(BIT(50));
	assert_string_equal(n, "50");
}

/* CapXxx: hex line of /proc/self/status. */
static uint64_t status_caps(const char *field)
{
	char line[256];
	uint64_t v = UINT64_MAX;
	size_t n = strlen(field);
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return v;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 16);
	fclose(f);
	return v;
}

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int v = CAP_LAST_CAP;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = CAP_LAST_CAP;
		fclose(f);
	}
	return v;
}

/* Child exit codes say which field was wrong. */
static int apply_in_child(uint64_t keep, uid_t uid)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vs_error err = {0};
		/* A non-root workload: keep permitted across the uid change (effective empties). */
		if (uid != 0 && (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 ||
				 setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
			_exit(9);
		if (uid != 0 && status_caps("CapEff") != 0)
			_exit(9);
		/* Whatever we run under (a container may have fewer caps): only loses. */
		uint64_t valid = last_cap() >= 63 ? UINT64_MAX : BIT(last_cap() + 1) - 1;
		uint64_t bnd = status_caps("CapBnd") & valid, prm = status_caps("CapPrm") & valid;
		if (caps_apply(keep, &err) < 0) {
			fprintf(stderr, "caps_apply: %s\n", err.msg);
			_exit(10);
		}
		if (status_caps("CapBnd") != (keep & bnd))
			_exit(11);
		if (status_caps("CapEff") != (keep & prm))
			_exit(12);
		if (status_caps("CapPrm") != (keep & prm))
			_exit(13);
		if (status_caps("CapInh") != 0)
			_exit(14);
		if (status_caps("CapAmb") != 0)
			_exit(15);
		/* CAP_SYS_ADMIN is gone (harmless if it were not: child's own mount ns). */
		if (!(keep & BIT(CAP_SYS_ADMIN)) && unshare(CLONE_NEWNS) == 0)
			_exit(16);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_apply(void **state)
{
	if (geteuid() != 0) {
		print_message("not root: skipping caps_apply\n");
		skip();
	}
	assert_int_equal(apply_in_child(caps_default_mask(), 0), 0);
	assert_int_equal(apply_in_child(BIT(CAP_KILL), 0), 0);
	assert_int_equal(apply_in_child(0, 0), 0);
	assert_int_equal(apply_in_child(caps_default_mask(), 65534), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_mask),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_format_roundtrip),
	    cmocka_unit_test(test_apply),
	};
	return cmocka_run_group_tests_name("caps", tests, NULL, NULL);
}
