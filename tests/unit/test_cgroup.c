/*
 * test_cgroup.c - the cgroup module against fake v1/v2 trees (plain
 * directories in a temp dir, no root needed), and, when run as root on a
 * hybrid/legacy host, against the real v1 hierarchies under a throw-away
 * parent "vslice-unittest-<pid>" that is removed at the end even on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/runtime/cgroup_internal.h"
#include "vslice/cgroup.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* ---- fake tree helpers -------------------------------------------------- */

static char tmproot[64];

static void mkdirs(const char *rel)
{
	char *p = vs_xasprintf("%s/%s", tmproot, rel);
	struct vs_error err;
	assert_int_equal(vs_mkdir_p(p, 0755, &err), 0);
	free(p);
}

static void put(const char *rel, const char *content)
{
	char *p = vs_xasprintf("%s/%s", tmproot, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	free(p);
}

/* Content of a file under tmproot ("" if missing: compare with MISSING). */
#define MISSING "<missing>"
static char *get(const char *rel)
{
	static char buf[4096];
	char *p = vs_xasprintf("%s/%s", tmproot, rel);
	FILE *f = fopen(p, "r");
	free(p);
	if (!f)
		return strcpy(buf, MISSING);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static bool there(const char *rel)
{
	char *p = vs_xasprintf("%s/%s", tmproot, rel);
	bool r = access(p, F_OK) == 0;
	free(p);
	return r;
}

static const char *v1_ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};

static void fake_v1(bool hybrid)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++)
		mkdirs(v1_ctrls[i]);
	if (hybrid)
		mkdirs("unified");
}

static void fake_v2(const char *controllers)
{
	put("cgroup.controllers", controllers);
	put("cgroup.subtree_control", "");
}

static int setup(void **state)
{
	snprintf(tmproot, sizeof(tmproot), "/tmp/test_cgroup.XXXXXX");
	assert_non_null(mkdtemp(tmproot));
	setenv("VSLICE_CGROUP_ROOT", tmproot, 1);
	unsetenv("VSLICE_CGROUP_PARENT");
	return 0;
}

static int teardown(void **state)
{
	struct vs_error err;
	assert_int_equal(vs_rm_rf(tmproot, &err), 0);
	unsetenv("VSLICE_CGROUP_ROOT");
	return 0;
}

static struct cgroup *open_cg(const char *name)
{
	struct cgroup *cg = NULL;
	struct vs_error err;
	int r = cgroup_open(NULL, NULL, name, &cg, &err);
	if (r < 0)
		fail_msg("cgroup_open: %s", err.msg);
	return cg;
}

static pid_t spawn_sleeper(void)
{
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		for (;;)
			pause();
	}
	return p;
}

/* ---- detection and names ------------------------------------------------ */

static void test_detect_fake_layouts(void **state)
{
	struct vs_error err;
	enum cgroup_mode mode;

	fake_v1(false);
	assert_int_equal(cgroup_detect(NULL, &mode, &err), 0);
	assert_int_equal(mode, CGROUP_LEGACY);

	mkdirs("unified");
	assert_int_equal(cgroup_detect(tmproot, &mode, &err), 0);
	assert_int_equal(mode, CGROUP_HYBRID);
	assert_string_equal(cgroup_mode_name(mode), "hybrid");

	put("cgroup.controllers", "cpu memory pids\n");
	assert_int_equal(cgroup_detect(NULL, &mode, &err), 0);
	assert_int_equal(mode, CGROUP_UNIFIED);

	char *missing = vs_xasprintf("%s/nope", tmproot);
	assert_int_equal(cgroup_detect(missing, &mode, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nope"));
	free(missing);
}

static void test_open_names_and_paths(void **state)
{
	struct vs_error err;
	struct cgroup *cg = NULL;
	fake_v1(true);

	const char *bad[] = {"", ".", "..", ".hidden", "a/b", "a b", "x\n", "semi;colon"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++)
		assert_int_equal(cgroup_open(NULL, NULL, bad[i], &cg, &err), -EINVAL);
	assert_int_equal(cgroup_open(NULL, NULL, NULL, &cg, &err), -EINVAL);
	assert_int_equal(cgroup_open(NULL, "../etc", "web1", &cg, &err), -EINVAL);
	assert_int_equal(cgroup_open(NULL, "a//b", "web1", &cg, &err), -EINVAL);
	assert_null(cg);

	/* Default parent, then $VSLICE_CGROUP_PARENT, then an explicit one. */
	cg = open_cg("web1");
	assert_int_equal(cgroup_get_mode(cg), CGROUP_HYBRID);
	char *want = vs_xasprintf("%s/memory/vslice/web1", tmproot);
	assert_string_equal(cgroup_path(cg, "memory"), want);
	free(want);
	want = vs_xasprintf("%s/freezer/vslice/web1", tmproot);
	assert_string_equal(cgroup_path(cg, "freezer"), want);
	free(want);
	assert_null(cgroup_path(cg, "devices"));
	assert_false(cgroup_exists(cg));
	cgroup_free(cg);

	setenv("VSLICE_CGROUP_PARENT", "nm-test", 1);
	cg = open_cg("web1");
	want = vs_xasprintf("%s/pids/nm-test/web1", tmproot);
	assert_string_equal(cgroup_path(cg, "pids"), want);
	free(want);
	cgroup_free(cg);
	unsetenv("VSLICE_CGROUP_PARENT");

	assert_int_equal(cgroup_open(tmproot, "/outer/inner", "web1", &cg, &err), 0);
	want = vs_xasprintf("%s/cpu/outer/inner/web1", tmproot);
	assert_string_equal(cgroup_path(cg, "cpu"), want);
	free(want);
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	assert_true(there("cpu/outer/inner/web1"));
	assert_true(there("freezer/outer/inner/web1"));
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(there("cpu/outer/inner/web1"));
	assert_true(there("cpu/outer/inner")); /* the parent stays */
	cgroup_free(cg);
}

/* ---- v1 ----------------------------------------------------------------- */

static void test_v1_create_writes_limits(void **state)
{
	struct vs_error err;
	fake_v1(true);
	put("memory/memory.memsw.limit_in_bytes", ""); /* swap accounting on */
	struct cgroup *cg = open_cg("web1");
	struct cgroup_limits lim = {
	    .cpu_millis = 500, .cpu_weight = 200, .memory_bytes = 32 << 20, .pids_max = 64};
	int r = cgroup_create(cg, &lim, &err);
	if (r < 0)
		fail_msg("create: %s", err.msg);
	assert_true(cgroup_exists(cg));
	assert_string_equal(get("cpu/vslice/web1/cpu.cfs_period_us"), "100000");
	assert_string_equal(get("cpu/vslice/web1/cpu.cfs_quota_us"), "50000");
	assert_string_equal(get("cpu/vslice/web1/cpu.shares"), "2048");
	assert_string_equal(get("memory/vslice/web1/memory.limit_in_bytes"), "33554432");
	assert_string_equal(get("memory/vslice/web1/memory.memsw.limit_in_bytes"), "33554432");
	assert_string_equal(get("pids/vslice/web1/pids.max"), "64");
	assert_true(there("cpuacct/vslice/web1"));
	assert_true(there("freezer/vslice/web1"));
	assert_false(there("unified/vslice")); /* hybrid: nothing in unified/ */

	/* Already there. */
	assert_int_equal(cgroup_create(cg, &lim, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "vslice/web1"));
	assert_true(there("memory/vslice/web1"));
	cgroup_free(cg);

	/* No swap accounting: no memsw written; no limits: no knobs written. */
	cg = open_cg("web2");
	lim = (struct cgroup_limits){.memory_bytes = 4096};
	put("memory/memory.memsw.limit_in_bytes", "");
	char *p = vs_xasprintf("%s/memory/memory.memsw.limit_in_bytes", tmproot);
	unlink(p);
	free(p);
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	assert_string_equal(get("memory/vslice/web2/memory.limit_in_bytes"), "4096");
	assert_string_equal(get("memory/vslice/web2/memory.memsw.limit_in_bytes"), MISSING);
	assert_string_equal(get("cpu/vslice/web2/cpu.cfs_quota_us"), MISSING);
	assert_string_equal(get("pids/vslice/web2/pids.max"), MISSING);
	cgroup_free(cg);
}

static void test_v1_limit_validation(void **state)
{
	struct vs_error err;
	fake_v1(false);
	struct cgroup *cg = open_cg("web1");
	struct cgroup_limits lim = {.cpu_weight = 20000};
	assert_int_equal(cgroup_create(cg, &lim, &err), -EINVAL);
	lim = (struct cgroup_limits){.cpu_millis = UINT64_MAX / 100};
	assert_int_equal(cgroup_create(cg, &lim, &err), -EINVAL);
	assert_false(there("memory/vslice/web1"));
	/* Lowest weight still maps to a share the kernel takes. */
	lim = (struct cgroup_limits){.cpu_weight = 1, .cpu_millis = 10};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	assert_string_equal(get("cpu/vslice/web1/cpu.shares"), "10");
	assert_string_equal(get("cpu/vslice/web1/cpu.cfs_quota_us"), "1000");
	assert_string_equal(get("cpu/vslice/web1/cpu.cfs_period_us"), "100000");
	cgroup_free(cg);
	/* Under 10 millicpus the period grows so the quota stays >= 1 ms. */
	cg = open_cg("web2");
	lim = (struct cgroup_limits){.cpu_millis = 3};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	assert_string_equal(get("cpu/vslice/web2/cpu.cfs_quota_us"), "3000");
	assert_string_equal(get("cpu/vslice/web2/cpu.cfs_period_us"), "1000000");
	cgroup_free(cg);
}

static void test_v1_missing_controller(void **state)
{
	struct vs_error err;
	mkdirs("cpu");
	mkdirs("memory");
	mkdirs("freezer");
	struct cgroup *cg = open_cg("web1");
	assert_null(cgroup_path(cg, "pids"));
	struct cgroup_limits lim = {.pids_max = 10};
	assert_int_equal(cgroup_create(cg, &lim, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "pids"));
	assert_false(there("memory/vslice/web1"));
	lim.pids_max = 0;
	lim.memory_bytes = 1 << 20;
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.pids_current, 0);
	cgroup_free(cg);

	/* Nothing mounted at all is an error at open time. */
	teardown(state);
	setup(state);
	mkdirs("devices");
	struct cgroup *none = NULL;
	assert_int_equal(cgroup_open(NULL, NULL, "web1", &none, &err), -ENOENT);
	assert_null(none);
}

static void test_v1_combined_cpu_cpuacct(void **state)
{
	struct vs_error err;
	mkdirs("cpu,cpuacct");
	mkdirs("memory");
	char *a = vs_xasprintf("%s/cpu", tmproot), *b = vs_xasprintf("%s/cpuacct", tmproot);
	assert_int_equal(symlink("cpu,cpuacct", a), 0);
	assert_int_equal(symlink("cpu,cpuacct", b), 0);
	free(a);
	free(b);
	struct cgroup *cg = open_cg("web1");
	assert_string_equal(cgroup_path(cg, "cpu"), cgroup_path(cg, "cpuacct"));
	struct cgroup_limits lim = {.cpu_millis = 250};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	assert_string_equal(get("cpu,cpuacct/vslice/web1/cpu.cfs_quota_us"), "25000");
	/* No freezer mounted: freeze says so. */
	assert_int_equal(cgroup_freeze(cg, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "freezer"));
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(there("cpu,cpuacct/vslice/web1"));
	cgroup_free(cg);

	/* Without the symlinks: found by the comma-separated name. */
	a = vs_xasprintf("%s/cpu", tmproot);
	b = vs_xasprintf("%s/cpuacct", tmproot);
	unlink(a);
	unlink(b);
	free(a);
	free(b);
	cg = open_cg("web2");
	char *want = vs_xasprintf("%s/cpu,cpuacct/vslice/web2", tmproot);
	assert_string_equal(cgroup_path(cg, "cpuacct"), want);
	assert_string_equal(cgroup_path(cg, "cpu"), want);
	free(want);
	cgroup_free(cg);
}

static void test_v1_failure_cleanup(void **state)
{
	struct vs_error err;
	fake_v1(true);
	/* The freezer parent is a file: mkdir fails after memory, pids, cpu and
	 * cpuacct were made; all of them must go again. */
	put("freezer/vslice", "not a dir");
	struct cgroup *cg = open_cg("web1");
	struct cgroup_limits lim = {.memory_bytes = 1 << 20};
	assert_true(cgroup_create(cg, &lim, &err) < 0);
	assert_non_null(strstr(err.msg, "freezer:vslice/web1"));
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		char *rel = vs_xasprintf("%s/vslice/web1", v1_ctrls[i]);
		assert_false(there(rel));
		free(rel);
	}
	cgroup_free(cg);

	/* A knob whose write fails (a directory in its place). */
	char *p = vs_xasprintf("%s/freezer/vslice", tmproot);
	unlink(p);
	free(p);
	mkdirs("pids/pids.max");
	cg = open_cg("web1");
	lim.pids_max = 5;
	assert_int_equal(cgroup_create(cg, &lim, &err), -EISDIR);
	assert_non_null(strstr(err.msg, "cgroup pids:vslice/web1: write pids.max \"5\""));
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		char *rel = vs_xasprintf("%s/vslice/web1", v1_ctrls[i]);
		assert_false(there(rel));
		free(rel);
	}

	/* Half-left from a crash: EEXIST, and the one that was there stays. */
	p = vs_xasprintf("%s/pids/pids.max", tmproot);
	rmdir(p);
	free(p);
	mkdirs("pids/vslice/web1");
	put("pids/vslice/web1/marker", "x");
	assert_int_equal(cgroup_create(cg, &lim, &err), -EEXIST);
	assert_false(there("memory/vslice/web1"));
	assert_string_equal(get("pids/vslice/web1/marker"), "x");
	/* destroy cleans it up, then create works. */
	assert_true(cgroup_exists(cg));
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(cgroup_exists(cg));
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	cgroup_free(cg);
}

static void test_v1_freeze_thaw_stats(void **state)
{
	struct vs_error err;
	fake_v1(false);
	struct cgroup *cg = open_cg("web1");
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), -ENOENT);
	assert_int_equal(cgroup_freeze(cg, &err), -ENOENT);
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	assert_string_equal(get("freezer/vslice/web1/freezer.state"), "FROZEN");
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.frozen);
	assert_int_equal(cgroup_thaw(cg, &err), 0);
	assert_string_equal(get("freezer/vslice/web1/freezer.state"), "THAWED");

	put("cpuacct/vslice/web1/cpuacct.usage", "123456789\n");
	put("memory/vslice/web1/memory.usage_in_bytes", "1048576\n");
	put("memory/vslice/web1/memory.limit_in_bytes", "9223372036854771712\n");
	put("memory/vslice/web1/memory.oom_control",
	    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
	put("pids/vslice/web1/pids.current", "7\n");
	put("pids/vslice/web1/pids.max", "max\n");
	put("pids/vslice/web1/pids.events", "max 5\n");
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.pids_refused, 5);
	assert_int_equal(st.cpu_usage_ns, 123456789);
	assert_int_equal(st.memory_current, 1048576);
	assert_int_equal(st.memory_max, 0);
	assert_int_equal(st.oom_kills, 3);
	assert_int_equal(st.pids_current, 7);
	assert_int_equal(st.pids_max, 0);
	assert_false(st.frozen);
	put("memory/vslice/web1/memory.limit_in_bytes", "33554432\n");
	put("pids/vslice/web1/pids.max", "64\n");
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.memory_max, 33554432);
	assert_int_equal(st.pids_max, 64);
	put("pids/vslice/web1/pids.max", "lots\n");
	assert_int_equal(cgroup_stats(cg, &st, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "pids.max"));

	cgroup_free(cg);
}

static void test_v1_enter_kill_destroy(void **state)
{
	struct vs_error err;
	fake_v1(false);
	struct cgroup *cg = open_cg("web1");
	pid_t child = spawn_sleeper();
	assert_int_equal(cgroup_enter(cg, child, &err), -ENOENT); /* not created yet */
	assert_non_null(strstr(err.msg, "memory:vslice/web1: write cgroup.procs"));
	assert_int_equal(cgroup_enter(cg, 0, &err), -EINVAL);
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	assert_int_equal(cgroup_enter(cg, child, &err), 0);
	char want[16];
	snprintf(want, sizeof(want), "%d", (int)child);
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		char *rel = vs_xasprintf("%s/vslice/web1/cgroup.procs", v1_ctrls[i]);
		assert_string_equal(get(rel), want);
		free(rel);
	}
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 1); /* merged across controllers */
	assert_int_equal(pids[0], child);
	free(pids);

	/* A signal reaches it; a frozen (fake) freezer is thawed before SIGKILL. */
	assert_int_equal(cgroup_kill(cg, SIGSTOP, &err), 0);
	int ws;
	assert_int_equal(waitpid(child, &ws, WUNTRACED), child);
	assert_true(WIFSTOPPED(ws));
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_int_equal(waitpid(child, &ws, 0), child);
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	assert_false(cgroup_exists(cg));
	assert_true(there("memory/vslice"));
	/* Destroying what is not there is fine. */
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	/* v1 has no cgroup dir fd. */
	assert_int_equal(cgroup_dirfd(cg, &err), -ENOTSUP);
	cgroup_free(cg);
}

static void test_v1_stale_pid_not_signalled(void **state)
{
	struct vs_error err;
	fake_v1(false);
	struct cgroup *cg = open_cg("web1");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	/* A pid that is not ours and a dead one: listed, but destroy must not
	 * hang on them or signal our own process. */
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	assert_int_equal(waitpid(dead, NULL, 0), dead);
	char buf[64];
	snprintf(buf, sizeof(buf), "%d\n%d\n", (int)getpid(), (int)dead);
	put("memory/vslice/web1/cgroup.procs", buf);
	assert_int_equal(cgroup_kill(cg, SIGTERM, &err), 0); /* skips self */
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(cgroup_exists(cg));
	cgroup_free(cg);
}

/* ---- v2 ----------------------------------------------------------------- */

static void test_v2_create_writes_limits(void **state)
{
	struct vs_error err;
	fake_v2("cpuset cpu io memory hugetlb pids rdma misc\n");
	put("memory.swap.max", "");
	put("memory.oom.group", "");
	struct cgroup *cg = open_cg("web1");
	assert_int_equal(cgroup_get_mode(cg), CGROUP_UNIFIED);
	char *want = vs_xasprintf("%s/vslice/web1", tmproot);
	assert_string_equal(cgroup_path(cg, "memory"), want);
	assert_string_equal(cgroup_path(cg, NULL), want);
	free(want);
	struct cgroup_limits lim = {
	    .cpu_millis = 1500, .cpu_weight = 300, .memory_bytes = 64 << 20, .pids_max = 100};
	int r = cgroup_create(cg, &lim, &err);
	if (r < 0)
		fail_msg("create: %s", err.msg);
	assert_string_equal(get("cgroup.subtree_control"), "+cpu +memory +pids");
	assert_string_equal(get("vslice/cgroup.subtree_control"), "+cpu +memory +pids");
	assert_string_equal(get("vslice/web1/cpu.max"), "150000 100000");
	assert_string_equal(get("vslice/web1/cpu.weight"), "300");
	assert_string_equal(get("vslice/web1/memory.max"), "67108864");
	assert_string_equal(get("vslice/web1/memory.swap.max"), "0");
	assert_string_equal(get("vslice/web1/memory.oom.group"), "0");
	assert_string_equal(get("vslice/web1/pids.max"), "100");
	assert_int_equal(cgroup_create(cg, &lim, &err), -EEXIST);

	int fd = cgroup_dirfd(cg, &err);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFL) & O_PATH);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);

	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(there("vslice/web1"));
	assert_true(there("vslice"));
	assert_int_equal(cgroup_dirfd(cg, &err), -ENOENT);
	cgroup_free(cg);

	/* Already-enabled controllers are not written again. */
	put("cgroup.subtree_control", "cpu memory pids\n");
	put("vslice/cgroup.subtree_control", "cpu memory pids\n");
	cg = open_cg("web2");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	assert_string_equal(get("cgroup.subtree_control"), "cpu memory pids\n");
	assert_string_equal(get("vslice/web2/cpu.max"), MISSING);
	cgroup_free(cg);
	cg = open_cg("web3");
	struct cgroup_limits tiny = {.cpu_millis = 1};
	assert_int_equal(cgroup_create(cg, &tiny, &err), 0);
	assert_string_equal(get("vslice/web3/cpu.max"), "1000 1000000");
	assert_string_equal(get("vslice/web2/memory.swap.max"), "");
	cgroup_free(cg);
}

static void test_v2_missing_controller(void **state)
{
	struct vs_error err;
	fake_v2("memory pids\n");
	struct cgroup *cg = open_cg("web1");
	struct cgroup_limits lim = {.cpu_millis = 100};
	assert_int_equal(cgroup_create(cg, &lim, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "cpu controller"));
	assert_false(there("vslice"));
	lim = (struct cgroup_limits){.memory_bytes = 1 << 20};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	assert_string_equal(get("cgroup.subtree_control"), "+memory +pids");
	assert_string_equal(get("vslice/web1/memory.swap.max"), MISSING);
	cgroup_free(cg);
}

static void test_v2_failure_cleanup_and_nested_parent(void **state)
{
	struct vs_error err;
	fake_v2("cpu memory pids\n");
	mkdirs("memory.max"); /* the slice's memory.max knob will be a directory */
	struct cgroup *cg = NULL;
	assert_int_equal(cgroup_open(NULL, "a/b", "web1", &cg, &err), 0);
	struct cgroup_limits lim = {.pids_max = 9, .memory_bytes = 1 << 20};
	assert_int_equal(cgroup_create(cg, &lim, &err), -EISDIR);
	assert_non_null(strstr(err.msg, "cgroup a/b/web1: write memory.max \"1048576\""));
	assert_false(there("a/b/web1"));
	/* Controllers delegated down each parent level. */
	assert_string_equal(get("a/cgroup.subtree_control"), "+cpu +memory +pids");
	assert_string_equal(get("a/b/cgroup.subtree_control"), "+cpu +memory +pids");
	cgroup_free(cg);
}

/*
 * Why a run ended, on a v2 tree (this machine's real cgroups are v1:
 * tests/integration/test_exit_reasons.sh covers those): the counters a
 * run's cgroup reports during the run make a SIGKILL "oom" and a failed
 * exit "pids"; a timeout or the lifetime stay what they are; counters from
 * before the run (the base) blame nothing.
 */
static void test_v2_exit_cause(void **state)
{
	struct vs_error err;
	fake_v2("cpu memory pids\n");
	struct cgroup *cg = open_cg("web1");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	put("vslice/web1/memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n");
	put("vslice/web1/pids.events", "max 0\n");
	struct cgroup_stats base = {0}, st = {0};
	assert_int_equal(cgroup_stats(cg, &base, &err), 0);
	assert_int_equal(base.oom_kills, 1);
	/* During the run: one more OOM kill, three refused forks. */
	put("vslice/web1/memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n");
	put("vslice/web1/pids.events", "max 3\n");
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.oom_kills, 2);
	assert_int_equal(st.pids_refused, 3);
	uint64_t oom = st.oom_kills - base.oom_kills, pids = st.pids_refused - base.pids_refused;
	assert_string_equal(slice_exit_cause("signal", 137, oom, pids), "oom");
	assert_string_equal(slice_exit_cause("killed", 137, oom, 0), "oom");
	assert_string_equal(slice_exit_cause("exited", 1, 0, pids), "pids");
	assert_string_equal(slice_exit_cause("timeout", 124, oom, pids), "timeout");
	assert_string_equal(slice_exit_cause("lifetime", 137, oom, pids), "lifetime");
	/* A run that succeeded despite a killed child is no failure. */
	assert_string_equal(slice_exit_cause("exited", 0, oom, pids), "exited");
	/* Nothing counted in this run: the earlier OOM is not this one's. */
	assert_string_equal(slice_exit_cause("signal", 137, 0, 0), "signal");
	assert_string_equal(slice_exit_cause("killed", 137, 0, 0), "killed");
	assert_non_null(strstr(slice_exit_reason_text("oom"), "OOM killer"));
	assert_non_null(strstr(slice_exit_reason_text("pids"), "--pids"));
	assert_null(slice_exit_reason_text("exited"));
	cgroup_free(cg);
}

static void test_v2_freeze_thaw_kill_stats(void **state)
{
	struct vs_error err;
	fake_v2("cpu memory pids\n");
	put("cgroup.kill", "");
	struct cgroup *cg = open_cg("web1");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);

	/* No "frozen" line on the fake tree: cgroup.freeze is the state. */
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	assert_string_equal(get("vslice/web1/cgroup.freeze"), "1");
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.frozen);
	assert_int_equal(cgroup_thaw(cg, &err), 0);
	assert_string_equal(get("vslice/web1/cgroup.freeze"), "0");

	/* cgroup.events is what the kernel reports: wait for it, give up, undo. */
	put("vslice/web1/cgroup.events", "populated 1\nfrozen 0\n");
	cg->timeout_ms = 50;
	assert_int_equal(cgroup_freeze(cg, &err), -ETIMEDOUT);
	assert_non_null(strstr(err.msg, "vslice/web1"));
	assert_string_equal(get("vslice/web1/cgroup.freeze"), "0");
	put("vslice/web1/cgroup.events", "populated 1\nfrozen 1\n");
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.frozen);
	/* 50 ms was for the give-up above; the kill and destroy below get a
	 * margin that holds on a loaded machine. */
	cg->timeout_ms = 10000;

	put("vslice/web1/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
	put("vslice/web1/memory.current", "4096\n");
	put("vslice/web1/memory.max", "max\n");
	put("vslice/web1/memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n");
	put("vslice/web1/pids.current", "3\n");
	put("vslice/web1/pids.max", "50\n");
	put("vslice/web1/pids.events", "max 7\n");
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.pids_refused, 7);
	assert_int_equal(st.cpu_usage_ns, 1500000);
	assert_int_equal(st.memory_current, 4096);
	assert_int_equal(st.memory_max, 0);
	assert_int_equal(st.oom_kills, 2);
	assert_int_equal(st.pids_current, 3);
	assert_int_equal(st.pids_max, 50);

	/* Kill: cgroup.kill is used when the kernel has it; the child dies
	 * through the pidfd pass on the fake tree. */
	pid_t child = spawn_sleeper();
	assert_int_equal(cgroup_enter(cg, child, &err), 0);
	assert_int_equal(cgroup_kill(cg, SIGKILL, &err), 0);
	assert_string_equal(get("vslice/web1/cgroup.kill"), "1");
	int ws;
	assert_int_equal(waitpid(child, &ws, 0), child);
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(there("vslice/web1"));
	cgroup_free(cg);
}

/* cgroup.procs read from another pid namespace lists its processes as 0:
 * a signal cannot reach them, and that is said at once; v2's SIGKILL goes
 * through cgroup.kill, which does reach them. */
static void test_v2_hidden_pids(void **state)
{
	struct vs_error err;
	fake_v2("cpu memory pids\n");
	put("cgroup.kill", "");
	struct cgroup *cg = open_cg("web3");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	put("vslice/web3/cgroup.procs", "0\n0\n");
	assert_int_equal(cgroup_kill(cg, SIGTERM, &err), -EPERM);
	assert_non_null(strstr(err.msg, "2 process(es) outside this pid namespace"));
	assert_non_null(strstr(err.msg, "vslice/web3"));
	assert_int_equal(cgroup_kill(cg, SIGKILL, &err), 0);
	assert_string_equal(get("vslice/web3/cgroup.kill"), "1");
	put("vslice/web3/cgroup.procs", "");
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	cgroup_free(cg);
}

static void test_v2_sub_cgroups(void **state)
{
	struct vs_error err;
	fake_v2("cpu memory pids\n");
	struct cgroup *cg = open_cg("web1");
	assert_int_equal(cgroup_create(cg, NULL, &err), 0);
	/* The slice made its own sub-cgroups (delegation): their processes
	 * count and are killed, and destroy removes them. */
	mkdirs("vslice/web1/inner/deeper");
	pid_t child = spawn_sleeper();
	char buf[16];
	snprintf(buf, sizeof(buf), "%d\n", (int)child);
	put("vslice/web1/inner/deeper/cgroup.procs", buf);
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pids[0], child);
	free(pids);
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	int ws;
	assert_int_equal(waitpid(child, &ws, 0), child);
	assert_true(WIFSIGNALED(ws));
	assert_false(there("vslice/web1"));
	cgroup_free(cg);
}

/* ---- real v1 (root, hybrid/legacy host) ------------------------------- */

static char real_parent[64];
static pid_t real_child = -1;
static bool real_ok;	/* root on a hybrid/legacy host: real v1 tests */
static bool real_v2_ok; /* ... with cgroup2 at unified/: real v2 tests, no controllers */

static int real_setup(void **state)
{
	struct vs_error err;
	enum cgroup_mode mode;
	real_ok = geteuid() == 0 && cgroup_detect("/sys/fs/cgroup", &mode, &err) == 0 &&
		  mode != CGROUP_UNIFIED;
	snprintf(real_parent, sizeof(real_parent), "vslice-unittest-%d", (int)getpid());
	real_v2_ok = real_ok && cgroup_detect("/sys/fs/cgroup/unified", &mode, &err) == 0 &&
		     mode == CGROUP_UNIFIED;
	return 0;
}

static int real_teardown(void **state)
{
	if (!real_ok)
		return 0;
	if (real_child > 0) {
		kill(real_child, SIGKILL);
		waitpid(real_child, NULL, 0);
	}
	/* Whatever a failed test left: destroy the slices, then the parents. */
	const char *names[] = {"real1", "real2", "real3", "real4"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
		struct cgroup *cg = NULL;
		struct vs_error err;
		if (cgroup_open("/sys/fs/cgroup", real_parent, names[i], &cg, &err) == 0) {
			if (cgroup_destroy(cg, &err) < 0)
				fprintf(stderr, "teardown: %s\n", err.msg);
			cgroup_free(cg);
		}
	}
	struct cgroup *cg2 = NULL;
	struct vs_error err2;
	if (real_v2_ok &&
	    cgroup_open("/sys/fs/cgroup/unified", real_parent, "real5", &cg2, &err2) == 0) {
		if (cgroup_destroy(cg2, &err2) < 0)
			fprintf(stderr, "teardown: %s\n", err2.msg);
		cgroup_free(cg2);
	}
	const char *mounts[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "unified"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(mounts); i++) {
		char *p = vs_xasprintf("/sys/fs/cgroup/%s/%s", mounts[i], real_parent);
		if (rmdir(p) < 0 && errno != ENOENT)
			fprintf(stderr, "teardown: rmdir %s: %s\n", p, strerror(errno));
		free(p);
	}
	return 0;
}

/* After each real test: a child a failed test left is killed (thawed by its
 * cgroup's destroy in the group teardown if it was frozen) and reaped. */
static int real_child_reap(void **state)
{
	if (real_child > 0) {
		kill(real_child, SIGKILL);
		struct cgroup *cg = NULL;
		struct vs_error err;
		const char *names[] = {"real1", "real2", "real3", "real4"};
		for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++)
			if (cgroup_open("/sys/fs/cgroup", real_parent, names[i], &cg, &err) == 0) {
				(void)cgroup_thaw(cg, &err);
				cgroup_free(cg);
			}
		waitpid(real_child, NULL, 0);
		real_child = -1;
	}
	return 0;
}

static char *proc_field(pid_t pid, const char *file, const char *key)
{
	static char line[512];
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *found = NULL;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, key)) {
			found = line;
			break;
		}
	fclose(f);
	return found;
}

static char *real_get(struct cgroup *cg, const char *ctrl, const char *file)
{
	static char buf[256];
	char *p = vs_xasprintf("%s/%s", cgroup_path(cg, ctrl), file);
	FILE *f = fopen(p, "r");
	free(p);
	if (!f)
		return strcpy(buf, MISSING);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
	return buf;
}

static void test_real_v1_lifecycle(void **state)
{
	if (!real_ok)
		skip();
	struct vs_error err;
	struct cgroup *cg = NULL;
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real1", &cg, &err), 0);
	assert_false(cg->fake);
	struct cgroup_limits lim = {
	    .cpu_millis = 200, .cpu_weight = 50, .memory_bytes = 64 << 20, .pids_max = 32};
	int r = cgroup_create(cg, &lim, &err);
	if (r < 0)
		fail_msg("create: %s", err.msg);
	assert_string_equal(real_get(cg, "cpu", "cpu.cfs_period_us"), "100000");
	assert_string_equal(real_get(cg, "cpu", "cpu.cfs_quota_us"), "20000");
	assert_string_equal(real_get(cg, "cpu", "cpu.shares"), "512");
	assert_string_equal(real_get(cg, "memory", "memory.limit_in_bytes"), "67108864");
	if (strcmp(real_get(cg, "memory", "memory.memsw.limit_in_bytes"), MISSING))
		assert_string_equal(real_get(cg, "memory", "memory.memsw.limit_in_bytes"),
				    "67108864");
	assert_string_equal(real_get(cg, "memory", "memory.oom_control"), "oom_kill_disable 0");
	assert_string_equal(real_get(cg, "pids", "pids.max"), "32");
	assert_int_equal(cgroup_create(cg, &lim, &err), -EEXIST);

	real_child = spawn_sleeper();
	r = cgroup_enter(cg, real_child, &err);
	if (r < 0)
		fail_msg("enter: %s", err.msg);
	char want[128];
	snprintf(want, sizeof(want), ":/%s/real1\n", real_parent);
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		char key[160];
		snprintf(key, sizeof(key), ":%s%s", v1_ctrls[i], want);
		if (!proc_field(real_child, "cgroup", key))
			fail_msg("child not in %s", key);
	}
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(cgroup_pids(cg, &pids, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(pids[0], real_child);
	free(pids);

	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.memory_max, 64 << 20);
	assert_int_equal(st.pids_max, 32);
	assert_int_equal(st.pids_current, 1);
	assert_int_equal(st.oom_kills, 0);
	assert_false(st.frozen);

	r = cgroup_freeze(cg, &err);
	if (r < 0)
		fail_msg("freeze: %s", err.msg);
	assert_non_null(proc_field(real_child, "status", "State:\tD"));
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.frozen);
	assert_int_equal(cgroup_thaw(cg, &err), 0);
	/* Thawed tasks wake up asynchronously: give it a moment to sleep again. */
	bool sleeping = false;
	for (int i = 0; i < 200 && !sleeping; i++, usleep(5000))
		sleeping = proc_field(real_child, "status", "State:\tS") != NULL;
	assert_true(sleeping);

	/* Destroy a frozen slice: thawed, killed, removed. */
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	r = cgroup_destroy(cg, &err);
	if (r < 0)
		fail_msg("destroy: %s", err.msg);
	int ws;
	assert_int_equal(waitpid(real_child, &ws, 0), real_child);
	real_child = -1;
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	assert_false(cgroup_exists(cg));
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		char *p = vs_xasprintf("/sys/fs/cgroup/%s/%s/real1", v1_ctrls[i], real_parent);
		assert_int_equal(access(p, F_OK), -1);
		free(p);
	}
	cgroup_free(cg);
}

/*
 * cgroup_enter_self (the launcher's move: "0" to each hierarchy's tasks,
 * no grace period) puts the calling process in every hierarchy, and
 * cgroup_rename (a pooled sandbox's cgroups becoming a slice's) moves the
 * directories with the process in them and writes the new limits.
 */
static void test_real_v1_enter_self_and_rename(void **state)
{
	if (!real_ok)
		skip();
	struct vs_error err;
	struct cgroup *from = NULL, *to = NULL;
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real3", &from, &err), 0);
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real4", &to, &err), 0);
	if (cgroup_create(from, NULL, &err) < 0)
		fail_msg("create: %s", err.msg);
	int sync[2];
	assert_int_equal(pipe(sync), 0);
	real_child = fork();
	assert_true(real_child >= 0);
	if (real_child == 0) {
		struct vs_error e2;
		char ok = cgroup_enter_self(from, &e2) == 0 ? '1' : '0';
		(void)!write(sync[1], &ok, 1);
		for (;;)
			pause();
	}
	close(sync[1]);
	char ok = 0;
	assert_int_equal(read(sync[0], &ok, 1), 1);
	close(sync[0]);
	assert_int_equal(ok, '1');
	char key[160];
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		snprintf(key, sizeof(key), ":%s:/%s/real3\n", v1_ctrls[i], real_parent);
		if (!proc_field(real_child, "cgroup", key))
			fail_msg("child not in %s", key);
	}
	struct cgroup_limits lim = {.pids_max = 16, .memory_bytes = 32 << 20};
	if (cgroup_rename(from, to, &lim, &err) < 0)
		fail_msg("rename: %s", err.msg);
	assert_false(cgroup_exists(from));
	for (size_t i = 0; i < VS_ARRAY_SIZE(v1_ctrls); i++) {
		snprintf(key, sizeof(key), ":%s:/%s/real4\n", v1_ctrls[i], real_parent);
		if (!proc_field(real_child, "cgroup", key))
			fail_msg("child not in %s after the rename", key);
	}
	assert_string_equal(real_get(to, "pids", "pids.max"), "16");
	assert_string_equal(real_get(to, "memory", "memory.limit_in_bytes"), "33554432");
	/* Renaming onto an existing cgroup is refused, nothing moved. */
	assert_int_equal(cgroup_create(from, NULL, &err), 0);
	assert_true(cgroup_rename(to, from, NULL, &err) < 0);
	assert_true(cgroup_exists(to));
	if (cgroup_destroy(to, &err) < 0)
		fail_msg("destroy: %s", err.msg);
	waitpid(real_child, NULL, 0);
	real_child = -1;
	assert_int_equal(cgroup_destroy(from, &err), 0);
	cgroup_free(from);
	cgroup_free(to);
}

static void test_real_v1_write_failure_rolls_back(void **state)
{
	if (!real_ok)
		skip();
	struct vs_error err;
	int r;
	struct cgroup *cg = NULL;
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real2", &cg, &err), 0);
	/* The kernel refuses pids.max beyond PID_MAX_LIMIT, after the memory
	 * and pids directories exist. */
	struct cgroup_limits lim = {.memory_bytes = 16 << 20, .pids_max = UINT64_C(1) << 40};
	assert_int_equal(cgroup_create(cg, &lim, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "cgroup pids:"));
	assert_non_null(strstr(err.msg, "/real2: write pids.max \"1099511627776\""));
	assert_false(cgroup_exists(cg));

	/* SIGTERM through cgroup_kill; SIGKILL loop empties it. */
	lim.pids_max = 8;
	lim.cpu_millis = 5; /* the kernel takes the 1 s period */
	r = cgroup_create(cg, &lim, &err);
	if (r < 0)
		fail_msg("create: %s", err.msg);
	assert_string_equal(real_get(cg, "cpu", "cpu.cfs_period_us"), "1000000");
	assert_string_equal(real_get(cg, "cpu", "cpu.cfs_quota_us"), "5000");
	real_child = spawn_sleeper();
	assert_int_equal(cgroup_enter(cg, real_child, &err), 0);
	assert_int_equal(cgroup_kill(cg, SIGTERM, &err), 0);
	int ws;
	assert_int_equal(waitpid(real_child, &ws, 0), real_child);
	real_child = -1;
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM);
	assert_int_equal(cgroup_kill(cg, SIGKILL, &err), 0); /* already empty */
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	assert_false(cgroup_exists(cg));
	cgroup_free(cg);
}

/* A child that waits until it is in the cgroup, then runs fn. */
static pid_t spawn_in(struct cgroup *cg, int (*fn)(int wfd), int *rfd)
{
	int go[2], back[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(back), 0);
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		char c;
		close(go[1]);
		close(back[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		_exit(fn(back[1]));
	}
	close(go[0]);
	close(back[1]);
	struct vs_error err;
	int r = cgroup_enter(cg, p, &err);
	if (r < 0)
		fail_msg("enter: %s", err.msg);
	assert_int_equal(write(go[1], "x", 1), 1);
	close(go[1]);
	*rfd = back[0];
	return p;
}

static int fork_many(int wfd)
{
	int made = 0;
	for (int i = 0; i < 30; i++) {
		pid_t p = fork();
		if (p < 0)
			break;
		if (p == 0) {
			for (;;)
				pause();
		}
		made++;
	}
	if (write(wfd, &made, sizeof(made)) != sizeof(made))
		return 1;
	for (;;)
		pause();
}

static void test_real_v1_pids_limit_and_kill_all(void **state)
{
	if (!real_ok)
		skip();
	struct vs_error err;
	struct cgroup *cg = NULL;
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real3", &cg, &err), 0);
	struct cgroup_limits lim = {.pids_max = 16};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	int rfd;
	real_child = spawn_in(cg, fork_many, &rfd);
	int made = -1;
	assert_int_equal(read(rfd, &made, sizeof(made)), sizeof(made));
	close(rfd);
	assert_int_equal(made, 15); /* pids.max counts the child itself */
	pid_t *pids = NULL;
	size_t n = 0;
	assert_int_equal(cgroup_pids(cg, &pids, &n, &err), 0);
	free(pids);
	assert_int_equal(n, 16);
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_int_equal(st.pids_current, 16);
	/* Frozen first: destroy must still get every one of them. */
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	int r = cgroup_destroy(cg, &err);
	if (r < 0)
		fail_msg("destroy: %s", err.msg);
	assert_int_equal(waitpid(real_child, NULL, 0), real_child);
	real_child = -1;
	assert_false(cgroup_exists(cg));
	cgroup_free(cg);
}

static int eat_memory(int wfd)
{
	size_t sz = 256u << 20;
	/* volatile: the stores must happen, or -O2 drops the allocation. */
	volatile char *p = malloc(sz);
	if (!p)
		return 2;
	for (size_t i = 0; i < sz; i += 4096)
		p[i] = 1;
	return 0;
}

static void test_real_v1_oom_stays_inside(void **state)
{
	if (!real_ok)
		skip();
	struct vs_error err;
	struct cgroup *cg = NULL;
	assert_int_equal(cgroup_open("/sys/fs/cgroup", real_parent, "real4", &cg, &err), 0);
	struct cgroup_limits lim = {.memory_bytes = 32 << 20};
	assert_int_equal(cgroup_create(cg, &lim, &err), 0);
	int rfd;
	real_child = spawn_in(cg, eat_memory, &rfd);
	close(rfd);
	int ws;
	assert_int_equal(waitpid(real_child, &ws, 0), real_child);
	real_child = -1;
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.oom_kills >= 1);
	assert_int_equal(st.memory_max, 32 << 20);
	assert_int_equal(cgroup_destroy(cg, &err), 0);
	cgroup_free(cg);
}

/* The hybrid host's cgroup2 tree carries no controllers, but everything
 * the v2 backend does besides limits is real there: directories, entering by
 * clone3(CLONE_INTO_CGROUP), cgroup.freeze/cgroup.events, cgroup.kill. */
static void test_real_v2_without_controllers(void **state)
{
	if (!real_v2_ok)
		skip();
	struct vs_error err;
	struct cgroup *cg = NULL;
	int r = cgroup_open("/sys/fs/cgroup/unified", real_parent, "real5", &cg, &err);
	if (r < 0)
		fail_msg("open: %s", err.msg);
	assert_int_equal(cgroup_get_mode(cg), CGROUP_UNIFIED);
	assert_false(cg->fake);
	struct cgroup_limits lim = {.memory_bytes = 1 << 20};
	assert_int_equal(cgroup_create(cg, &lim, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "memory controller"));
	assert_false(cgroup_exists(cg));
	r = cgroup_create(cg, NULL, &err);
	if (r < 0)
		fail_msg("create: %s", err.msg);

	int fd = cgroup_dirfd(cg, &err);
	assert_true(fd >= 0);
	struct clone_args ca = {
	    .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)fd};
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	assert_true(pid >= 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	close(fd);
	real_child = (pid_t)pid;
	char key[128];
	snprintf(key, sizeof(key), "0::/%s/real5\n", real_parent);
	assert_non_null(proc_field(real_child, "cgroup", key));

	r = cgroup_freeze(cg, &err);
	if (r < 0)
		fail_msg("freeze: %s", err.msg);
	struct cgroup_stats st;
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_true(st.frozen);
	assert_int_equal(st.memory_max, 0);
	assert_int_equal(cgroup_thaw(cg, &err), 0);
	assert_int_equal(cgroup_stats(cg, &st, &err), 0);
	assert_false(st.frozen);

	/* Frozen again: cgroup.kill still gets it on v2. */
	assert_int_equal(cgroup_freeze(cg, &err), 0);
	r = cgroup_destroy(cg, &err);
	if (r < 0)
		fail_msg("destroy: %s", err.msg);
	int ws;
	assert_int_equal(waitpid(real_child, &ws, 0), real_child);
	real_child = -1;
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	assert_false(cgroup_exists(cg));
	cgroup_free(cg);
}

int main(void)
{
	const struct CMUnitTest fake[] = {
	    cmocka_unit_test_setup_teardown(test_detect_fake_layouts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_names_and_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_create_writes_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_limit_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_missing_controller, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_combined_cpu_cpuacct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_failure_cleanup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_freeze_thaw_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_enter_kill_destroy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v1_stale_pid_not_signalled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_create_writes_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_missing_controller, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_failure_cleanup_and_nested_parent, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_v2_freeze_thaw_kill_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_exit_cause, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_hidden_pids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_sub_cgroups, setup, teardown),
	};
	const struct CMUnitTest real[] = {
	    cmocka_unit_test_teardown(test_real_v1_lifecycle, real_child_reap),
	    cmocka_unit_test_teardown(test_real_v1_write_failure_rolls_back, real_child_reap),
	    cmocka_unit_test_teardown(test_real_v1_enter_self_and_rename, real_child_reap),
	    cmocka_unit_test_teardown(test_real_v1_pids_limit_and_kill_all, real_child_reap),
	    cmocka_unit_test_teardown(test_real_v1_oom_stays_inside, real_child_reap),
	    cmocka_unit_test_teardown(test_real_v2_without_controllers, real_child_reap),
	};
	int failed = cmocka_run_group_tests_name("cgroup (fake trees)", fake, NULL, NULL);
	failed +=
	    cmocka_run_group_tests_name("cgroup (real, root)", real, real_setup, real_teardown);
	return failed ? 1 : 0;
}
