/*
 * cgroup_v1.c - the legacy/hybrid backend: one directory per controller
 * hierarchy (cpu, cpuacct, memory, pids, freezer), each under
 * <root>/<controller dir>/<parent>/<name>.
 *
 * Controller directories are found by name: <root>/<controller> (a directory
 * or a symlink such as cpu -> cpu,cpuacct), else an entry of <root> whose
 * comma-separated name lists the controller. Two names that lead to the same
 * directory are one hierarchy, created and entered once. A controller that
 * is not mounted is simply not used; asking for a limit it would enforce is
 * an error (cgroup.c).
 *
 * Limits: cpu.cfs_period_us = 100000 and cpu.cfs_quota_us = millis * 100
 * (below 10 millicpus: period 1 s, quota millis * 1000; cg_cpu_quota);
 * cpu.shares = weight * 1024 / 100 (linear: weight 100 = the default 1024);
 * memory.limit_in_bytes, then memory.memsw.limit_in_bytes to the same value
 * when swap accounting exists (memsw must stay >= the memory limit, hence the
 * order), so the slice cannot escape into swap; the OOM killer stays enabled
 * (oom_kill_disable is inherited from the parent, so it is reset if set) and
 * picks its victim inside the slice only; pids.max.
 *
 * Freezing a v1 cgroup is asynchronous: FREEZING until every task parks.
 * Frozen tasks do not act on SIGKILL until thawed, so killing thaws first.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "cgroup_internal.h"
#include "vslice/util.h"

/* page_counter max * page size and friends: anything this large is "no limit". */
#define V1_UNLIMITED_MIN (UINT64_C(1) << 62)

static bool usable_dir(const struct cgroup *cg, const char *path, struct stat *st)
{
	if (stat(path, st) < 0 || !S_ISDIR(st->st_mode))
		return false;
	if (cg->fake)
		return true;
	struct statfs fs;
	return statfs(path, &fs) == 0 && (unsigned long)fs.f_type == CGROUP_SUPER_MAGIC;
}

static bool lists_controller(const char *dirname, const char *ctrl)
{
	size_t n = strlen(ctrl);
	for (const char *s = dirname; s;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		if (len == n && !strncmp(s, ctrl, n))
			return true;
		s = comma ? comma + 1 : NULL;
	}
	return false;
}

/* The mount directory serving ctrl, or NULL. */
static char *find_mount(const struct cgroup *cg, const char *ctrl, struct stat *st)
{
	char *p = cg_join(cg->root, ctrl);
	if (usable_dir(cg, p, st))
		return p;
	free(p);
	cleanup_closedir DIR *d = opendir(cg->root);
	if (!d)
		return NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strchr(de->d_name, ',') || !lists_controller(de->d_name, ctrl))
			continue;
		p = cg_join(cg->root, de->d_name);
		if (usable_dir(cg, p, st))
			return p;
		free(p);
	}
	return NULL;
}

static int v1_init(struct cgroup *cg, struct vs_error *err)
{
	dev_t devs[CG_MAX_HIER];
	ino_t inos[CG_MAX_HIER];
	for (unsigned i = 0; i < CG_NCTRL; i++) {
		struct stat st;
		char *mount = find_mount(cg, cg_ctrl_names[i], &st);
		if (!mount)
			continue;
		size_t j;
		for (j = 0; j < cg->nhier; j++)
			if (devs[j] == st.st_dev && inos[j] == st.st_ino)
				break;
		if (j < cg->nhier) {
			cg->hier[j].ctrls |= 1u << i;
			free(mount);
			continue;
		}
		devs[j] = st.st_dev;
		inos[j] = st.st_ino;
		cg->hier[j].mount = mount;
		cg->hier[j].parent = vs_xasprintf("%s/%s", mount, cg->parent);
		cg->hier[j].path = vs_xasprintf("%s/%s/%s", mount, cg->parent, cg->name);
		cg->hier[j].ctrls = 1u << i;
		cg->nhier++;
	}
	if (cg->nhier == 0)
		return vs_error_set(
		    err, ENOENT,
		    "cgroup root %s: none of the v1 controllers cpu, cpuacct, memory, "
		    "pids, freezer is mounted there",
		    cg->root);
	for (size_t j = 0; j < cg->nhier; j++) {
		char names[64] = "";
		for (unsigned i = 0; i < CG_NCTRL; i++)
			if (cg->hier[j].ctrls & (1u << i))
				snprintf(names + strlen(names), sizeof(names) - strlen(names),
					 "%s%s", names[0] ? "," : "", cg_ctrl_names[i]);
		cg->hier[j].label = vs_xasprintf("%s:%s", names, cg->label);
	}
	return 0;
}

static int write_limits(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	struct cg_hier *h;
	int r;
	if ((h = cg_hier_for(cg, CG_MEMORY))) {
		if (lim->memory_bytes) {
			if ((r = cg_write_u64(cg, h, "memory.limit_in_bytes", lim->memory_bytes,
					      err)) < 0)
				return r;
			if (cg_file_exists(h->path, "memory.memsw.limit_in_bytes") &&
			    (r = cg_write_u64(cg, h, "memory.memsw.limit_in_bytes",
					      lim->memory_bytes, err)) < 0)
				return r;
		}
		cleanup_free char *oom = NULL;
		uint64_t disabled = 0;
		if (cg_read(h->path, h->label, "memory.oom_control", &oom, err) == 0 &&
		    cg_keyed_u64(oom, "oom_kill_disable", &disabled) == 0 && disabled &&
		    (r = cg_write(cg, h->path, h->label, "memory.oom_control", "0", err)) < 0)
			return r;
		vs_error_clear(err);
	}
	if ((h = cg_hier_for(cg, CG_PIDS)) && lim->pids_max &&
	    (r = cg_write_u64(cg, h, "pids.max", lim->pids_max, err)) < 0)
		return r;
	if ((h = cg_hier_for(cg, CG_CPU))) {
		if (lim->cpu_millis) {
			uint64_t quota, period;
			cg_cpu_quota(lim->cpu_millis, &quota, &period);
			/* Period first: the quota is checked against it. */
			if ((r = cg_write_u64(cg, h, "cpu.cfs_period_us", period, err)) < 0 ||
			    (r = cg_write_u64(cg, h, "cpu.cfs_quota_us", quota, err)) < 0)
				return r;
		}
		if (lim->cpu_weight) {
			uint64_t shares = lim->cpu_weight * 1024 / 100;
			if (shares < 2)
				shares = 2;
			if ((r = cg_write_u64(cg, h, "cpu.shares", shares, err)) < 0)
				return r;
		}
	}
	return 0;
}

static int v1_create(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err)
{
	bool made[CG_MAX_HIER] = {false};
	int r = 0;
	for (size_t i = 0; i < cg->nhier && r >= 0; i++) {
		struct cg_hier *h = &cg->hier[i];
		if ((r = cg_mkdir_parent(cg, h, err)) < 0)
			break;
		r = cg_mkdir(h->path, h->label, err);
		if (r == 1)
			r = vs_error_set(err, EEXIST, "cgroup %s: create: already exists",
					 h->label);
		else if (r == 0) {
			made[i] = true;
			cg_fake_populate(cg, h);
		}
	}
	if (r >= 0)
		r = write_limits(cg, lim, err);
	if (r >= 0)
		return 0;
	struct vs_error scratch;
	for (size_t i = cg->nhier; i-- > 0;)
		if (made[i])
			(void)cg_remove_dir(cg, &cg->hier[i], &scratch);
	return r;
}

static int read_state(struct cgroup *cg, struct cg_hier *h, char *state, size_t len,
		      struct vs_error *err)
{
	cleanup_free char *buf = NULL;
	int r = cg_read(h->path, h->label, "freezer.state", &buf, err);
	if (r < 0)
		return r;
	size_t n = strcspn(buf, " \t\n");
	buf[n] = '\0';
	snprintf(state, len, "%s", buf);
	return 0;
}

struct freeze_wait {
	struct cg_hier *h;
	const char *want;
	char seen[32];
	uint64_t last_write;
};

static int state_reached(struct cgroup *cg, void *arg, struct vs_error *err)
{
	struct freeze_wait *w = arg;
	int r = read_state(cg, w->h, w->seen, sizeof(w->seen), err);
	if (r < 0)
		return r;
	if (!strcmp(w->seen, w->want))
		return 1;
	/* Writing FROZEN again retries the tasks that did not park yet. */
	uint64_t now = vs_now_ns();
	if (!strcmp(w->want, "FROZEN") && now - w->last_write > 100000000ull) {
		w->last_write = now;
		if ((r = cg_write(cg, w->h->path, w->h->label, "freezer.state", "FROZEN", err)) < 0)
			return r;
	}
	return 0;
}

static int v1_set_frozen(struct cgroup *cg, bool frozen, struct vs_error *err)
{
	struct cg_hier *h = cg_hier_for(cg, CG_FREEZER);
	const char *want = frozen ? "FROZEN" : "THAWED";
	int r = cg_write(cg, h->path, h->label, "freezer.state", want, err);
	if (r < 0)
		return r;
	struct freeze_wait w = {.h = h, .want = want, .last_write = vs_now_ns()};
	r = cg_wait(cg, state_reached, &w, err);
	if (r == -ETIMEDOUT) {
		/* Half-frozen is the worst state to leave a slice in. */
		struct vs_error scratch;
		if (frozen)
			(void)cg_write(cg, h->path, h->label, "freezer.state", "THAWED", &scratch);
		return vs_error_set(
		    err, ETIMEDOUT,
		    "cgroup %s: freezer.state still \"%s\" after %u ms, wanted %s%s", h->label,
		    w.seen, cg->timeout_ms, want, frozen ? " (thawed again)" : "");
	}
	return r;
}

/* Frozen tasks keep a pending SIGKILL until thawed. */
static int thaw_before_kill(struct cgroup *cg, struct vs_error *err)
{
	struct cg_hier *h = cg_hier_for(cg, CG_FREEZER);
	if (!h || access(h->path, F_OK) < 0)
		return 0;
	char state[32];
	if (read_state(cg, h, state, sizeof(state), err) < 0) {
		vs_error_clear(err);
		return 0;
	}
	if (!strcmp(state, "THAWED"))
		return 0;
	return cg_write(cg, h->path, h->label, "freezer.state", "THAWED", err);
}

static int v1_kill(struct cgroup *cg, int sig, struct vs_error *err)
{
	if (sig == SIGKILL)
		return cg_kill_until_empty(cg, thaw_before_kill, err);
	return cg_signal_pass(cg, sig, NULL, err);
}

static int v1_stats(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err)
{
	struct cg_hier *h;
	int r;
	bool is_max;
	if ((h = cg_hier_for(cg, CG_CPUACCT)) &&
	    (r = cg_read_u64_opt(h->path, h->label, "cpuacct.usage", &st->cpu_usage_ns, NULL,
				 err)) < 0)
		return r;
	if ((h = cg_hier_for(cg, CG_MEMORY))) {
		if ((r = cg_read_u64_opt(h->path, h->label, "memory.usage_in_bytes",
					 &st->memory_current, NULL, err)) < 0)
			return r;
		if ((r = cg_read_u64_opt(h->path, h->label, "memory.limit_in_bytes",
					 &st->memory_max, NULL, err)) < 0)
			return r;
		if (st->memory_max >= V1_UNLIMITED_MIN)
			st->memory_max = 0;
		cleanup_free char *oom = NULL;
		r = cg_read(h->path, h->label, "memory.oom_control", &oom, err);
		if (r == 0)
			(void)cg_keyed_u64(oom, "oom_kill", &st->oom_kills);
		else if (r != -ENOENT)
			return r;
		vs_error_clear(err);
	}
	if ((h = cg_hier_for(cg, CG_PIDS))) {
		if ((r = cg_read_u64_opt(h->path, h->label, "pids.current", &st->pids_current, NULL,
					 err)) < 0)
			return r;
		if ((r = cg_read_u64_opt(h->path, h->label, "pids.max", &st->pids_max, &is_max,
					 err)) < 0)
			return r;
		cleanup_free char *pev = NULL;
		r = cg_read(h->path, h->label, "pids.events", &pev, err);
		if (r == 0)
			(void)cg_keyed_u64(pev, "max", &st->pids_refused);
		else if (r != -ENOENT)
			return r;
		vs_error_clear(err);
	}
	if ((h = cg_hier_for(cg, CG_FREEZER))) {
		char state[32];
		r = read_state(cg, h, state, sizeof(state), err);
		if (r == 0)
			st->frozen = !strcmp(state, "FROZEN");
		else if (r != -ENOENT)
			return r;
		vs_error_clear(err);
	}
	return 0;
}

static int v1_dirfd(struct cgroup *cg, struct vs_error *err)
{
	return vs_error_set(
	    err, ENOTSUP, "cgroup %s: no single cgroup directory on a %s host; use cgroup_enter()",
	    cg->label, cgroup_mode_name(cg->mode));
}

const struct cgroup_ops cgroup_v1_ops = {
    .name = "v1",
    .init = v1_init,
    .create = v1_create,
    .set_frozen = v1_set_frozen,
    .kill = v1_kill,
    .stats = v1_stats,
    .dirfd = v1_dirfd,
    .limits = write_limits,
};
