/*
 * cgroup_v2.c - the unified backend: one directory, <root>/<parent>/<name>.
 *
 * Controllers: cpu, memory and pids are wanted whenever <root> offers them
 * (cgroup.controllers), so stats work even without limits; each level from
 * <root> down to <parent> gets them in cgroup.subtree_control. A controller
 * that cannot be enabled is dropped quietly unless a limit needs it; then the
 * error says why (EBUSY there is the "no internal processes" rule: a
 * non-root cgroup with processes of its own cannot delegate controllers).
 * Enabled controllers stay enabled on the parent levels; like the parent
 * directories they are shared by every slice and never undone.
 *
 * Limits: cpu.max "<millis*100> 100000" (below 10 millicpus
 * "<millis*1000> 1000000", see cg_cpu_quota), cpu.weight, memory.max,
 * memory.swap.max = 0 with a memory limit (no escape into swap),
 * memory.oom.group = 0 (an OOM kills one process inside the slice, not the
 * whole slice - the v1 behaviour, so both backends agree), pids.max.
 *
 * Freezing writes cgroup.freeze and waits for "frozen 1" in cgroup.events.
 * Frozen tasks still die on SIGKILL on v2, and cgroup.kill (5.14+) kills
 * the whole subtree without racing forks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cgroup_internal.h"
#include "vslice/util.h"

static const struct {
	const char *name;
	unsigned bit;
} v2_ctrls[] = {{"cpu", CG_CPU}, {"memory", CG_MEMORY}, {"pids", CG_PIDS}};

/* Is tok one of the white-space separated words of list (a leading '+' on
 * a word is ignored: that is how a fake tree remembers our writes)? */
static bool has_word(const char *list, const char *tok)
{
	size_t n = strlen(tok);
	for (const char *s = list; *s;) {
		s += strspn(s, " \t\n");
		if (*s == '+')
			s++;
		size_t len = strcspn(s, " \t\n");
		if (len == n && !strncmp(s, tok, n))
			return true;
		s += len;
	}
	return false;
}

static int v2_init(struct cgroup *cg, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	h->mount = vs_xstrdup(cg->root);
	h->parent = vs_xasprintf("%s/%s", cg->root, cg->parent);
	h->path = vs_xasprintf("%s/%s/%s", cg->root, cg->parent, cg->name);
	h->label = vs_xstrdup(cg->label);
	/* cgroup.freeze and cpu.stat are core files of every non-root cgroup. */
	h->ctrls = CG_FREEZER | CG_CPUACCT;
	cg->nhier = 1;
	cleanup_free char *avail = NULL;
	int r = cg_read(cg->root, cg->root, "cgroup.controllers", &avail, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < VS_ARRAY_SIZE(v2_ctrls); i++)
		if (has_word(avail, v2_ctrls[i].name))
			h->ctrls |= v2_ctrls[i].bit;
	return 0;
}

/* Enable *wanted in dir's cgroup.subtree_control; drop from *wanted what
 * cannot be enabled unless it is in required (then fail). */
static int enable_controllers(struct cgroup *cg, const char *dir, const char *label,
			      unsigned *wanted, unsigned required, struct vs_error *err)
{
	cleanup_free char *cur = NULL;
	int r = cg_read(dir, label, "cgroup.subtree_control", &cur, err);
	if (r == -ENOENT && cg->fake) {
		vs_error_clear(err);
		cur = vs_xstrdup("");
	} else if (r < 0) {
		return r;
	}
	char all[64] = "";
	unsigned missing = 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(v2_ctrls); i++) {
		if (!(*wanted & v2_ctrls[i].bit) || has_word(cur, v2_ctrls[i].name))
			continue;
		missing |= v2_ctrls[i].bit;
		snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s+%s", all[0] ? " " : "",
			 v2_ctrls[i].name);
	}
	if (!missing)
		return 0;
	if (cg_write(cg, dir, label, "cgroup.subtree_control", all, err) == 0)
		return 0;
	/* All-or-nothing failed: one at a time, to keep what works and name
	 * what does not. */
	for (size_t i = 0; i < VS_ARRAY_SIZE(v2_ctrls); i++) {
		if (!(missing & v2_ctrls[i].bit))
			continue;
		char one[16];
		snprintf(one, sizeof(one), "+%s", v2_ctrls[i].name);
		if (cg_write(cg, dir, label, "cgroup.subtree_control", one, err) == 0)
			continue;
		if (required & v2_ctrls[i].bit) {
			if (err->code == EBUSY)
				return vs_error_wrap(err,
						     "cgroup %s has processes of its own "
						     "(no internal processes rule)",
						     label);
			return -err->code;
		}
		*wanted &= ~v2_ctrls[i].bit;
	}
	vs_error_clear(err);
	return 0;
}

static int write_limits(struct cgroup *cg, struct cg_hier *h, const struct cgroup_limits *lim,
			struct vs_error *err)
{
	int r;
	if (lim->cpu_millis) {
		char buf[48];
		uint64_t quota, period;
		cg_cpu_quota(lim->cpu_millis, &quota, &period);
		snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64, quota, period);
		if ((r = cg_write(cg, h->path, h->label, "cpu.max", buf, err)) < 0)
			return r;
	}
	if (lim->cpu_weight && (r = cg_write_u64(cg, h, "cpu.weight", lim->cpu_weight, err)) < 0)
		return r;
	if (lim->memory_bytes) {
		if ((r = cg_write_u64(cg, h, "memory.max", lim->memory_bytes, err)) < 0)
			return r;
		if ((r = cg_write_if_exists(cg, h->path, h->label, "memory.swap.max", "0", err)) <
		    0)
			return r;
	}
	if ((h->ctrls & CG_MEMORY) &&
	    (r = cg_write_if_exists(cg, h->path, h->label, "memory.oom.group", "0", err)) < 0)
		return r;
	if (lim->pids_max && (r = cg_write_u64(cg, h, "pids.max", lim->pids_max, err)) < 0)
		return r;
	return 0;
}

static int v2_create(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	unsigned wanted = h->ctrls & (CG_CPU | CG_MEMORY | CG_PIDS);
	unsigned required = cg_limits_ctrls(lim);

	int r = enable_controllers(cg, cg->root, cg->root, &wanted, required, err);
	if (r < 0)
		return r;
	/* Each parent level: make it, then delegate to the level below. */
	cleanup_free char *dir = vs_xstrdup(h->parent);
	size_t base = strlen(cg->root) + 1;
	for (char *p = dir + base;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if ((r = cg_mkdir(dir, dir + base, err)) < 0)
			return r;
		if ((r = enable_controllers(cg, dir, dir + base, &wanted, required, err)) < 0)
			return r;
		*p = c;
		if (!c)
			break;
	}
	h->ctrls = (h->ctrls & ~(CG_CPU | CG_MEMORY | CG_PIDS)) | wanted;
	cg->ctrls = h->ctrls;

	r = cg_mkdir(h->path, h->label, err);
	if (r == 1)
		return vs_error_set(err, EEXIST, "cgroup %s: create: already exists", h->label);
	if (r < 0)
		return r;
	cg_fake_populate(cg, h);
	if ((r = write_limits(cg, h, lim, err)) < 0) {
		struct vs_error scratch;
		(void)cg_remove_dir(cg, h, &scratch);
		return r;
	}
	return 0;
}

/* 1 frozen, 0 not; a fake tree whose cgroup.events has no "frozen" line
 * reports what was written to cgroup.freeze. */
static int read_frozen(struct cgroup *cg, struct cg_hier *h, struct vs_error *err)
{
	cleanup_free char *buf = NULL;
	uint64_t v = 0;
	int r = cg_read(h->path, h->label, "cgroup.events", &buf, err);
	if (cg->fake && (r == -ENOENT || (r == 0 && cg_keyed_u64(buf, "frozen", &v) < 0))) {
		vs_error_clear(err);
		if ((r = cg_read_u64_opt(h->path, h->label, "cgroup.freeze", &v, NULL, err)) < 0)
			return r;
		return v != 0;
	}
	if (r < 0)
		return r;
	if (cg_keyed_u64(buf, "frozen", &v) < 0)
		return vs_error_set(err, EINVAL, "cgroup %s: cgroup.events has no \"frozen\" key",
				    h->label);
	return v != 0;
}

static int frozen_reached(struct cgroup *cg, void *arg, struct vs_error *err)
{
	bool want = *(bool *)arg;
	int r = read_frozen(cg, &cg->hier[0], err);
	if (r < 0)
		return r;
	return (r == 1) == want;
}

static int v2_set_frozen(struct cgroup *cg, bool frozen, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	int r = cg_write(cg, h->path, h->label, "cgroup.freeze", frozen ? "1" : "0", err);
	if (r < 0)
		return r;
	r = cg_wait(cg, frozen_reached, &frozen, err);
	if (r == -ETIMEDOUT) {
		struct vs_error scratch;
		if (frozen)
			(void)cg_write(cg, h->path, h->label, "cgroup.freeze", "0", &scratch);
		return vs_error_set(
		    err, ETIMEDOUT, "cgroup %s: cgroup.events not \"frozen %d\" after %u ms%s",
		    h->label, frozen, cg->timeout_ms, frozen ? " (thawed again)" : "");
	}
	return r;
}

static int kill_file(struct cgroup *cg, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	int r = cg_write_if_exists(cg, h->path, h->label, "cgroup.kill", "1", err);
	/* Gone between the check and the write: nothing left to kill. */
	if (r == -ENOENT) {
		vs_error_clear(err);
		return 0;
	}
	return r;
}

static int v2_kill(struct cgroup *cg, int sig, struct vs_error *err)
{
	if (sig == SIGKILL)
		return cg_kill_until_empty(cg, kill_file, err);
	return cg_signal_pass(cg, sig, NULL, err);
}

static int v2_stats(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	cleanup_free char *cpu = NULL, *events = NULL;
	uint64_t usec = 0;
	bool is_max;
	int r = cg_read(h->path, h->label, "cpu.stat", &cpu, err);
	if (r == 0 && cg_keyed_u64(cpu, "usage_usec", &usec) == 0)
		st->cpu_usage_ns = usec * 1000;
	else if (r < 0 && r != -ENOENT)
		return r;
	if ((r = cg_read_u64_opt(h->path, h->label, "memory.current", &st->memory_current, NULL,
				 err)) < 0)
		return r;
	if ((r = cg_read_u64_opt(h->path, h->label, "memory.max", &st->memory_max, &is_max, err)) <
	    0)
		return r;
	r = cg_read(h->path, h->label, "memory.events", &events, err);
	if (r == 0)
		(void)cg_keyed_u64(events, "oom_kill", &st->oom_kills);
	else if (r != -ENOENT)
		return r;
	if ((r = cg_read_u64_opt(h->path, h->label, "pids.current", &st->pids_current, NULL, err)) <
	    0)
		return r;
	if ((r = cg_read_u64_opt(h->path, h->label, "pids.max", &st->pids_max, &is_max, err)) < 0)
		return r;
	cleanup_free char *pev = NULL;
	r = cg_read(h->path, h->label, "pids.events", &pev, err);
	if (r == 0)
		(void)cg_keyed_u64(pev, "max", &st->pids_refused);
	else if (r != -ENOENT)
		return r;
	r = read_frozen(cg, h, err);
	if (r == -ENOENT) {
		r = 0;
	} else if (r < 0) {
		return r;
	}
	st->frozen = r == 1;
	vs_error_clear(err);
	return 0;
}

static int v2_dirfd(struct cgroup *cg, struct vs_error *err)
{
	struct cg_hier *h = &cg->hier[0];
	int fd = open(h->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "cgroup %s: open", h->label);
	return fd;
}

static int v2_limits(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	return write_limits(cg, &cg->hier[0], lim, err);
}

const struct cgroup_ops cgroup_v2_ops = {
    .limits = v2_limits,
    .name = "v2",
    .init = v2_init,
    .create = v2_create,
    .set_frozen = v2_set_frozen,
    .kill = v2_kill,
    .stats = v2_stats,
    .dirfd = v2_dirfd,
};
