/*
 * cgroup.h - a slice's control group, whatever the host runs.
 *
 * Detection follows systemd/crun: statfs("/sys/fs/cgroup") is cgroup2 ->
 * unified (v2); tmpfs with cgroup2 at unified/ -> hybrid (v1 controllers,
 * the v2 tree carries no controllers and is not used for limits); tmpfs
 * without -> legacy (v1). Hybrid and legacy use the v1 backend
 * (cgroup_v1.c), unified the v2 backend (cgroup_v2.c), behind one ops table.
 * In hybrid mode the v1 controllers are used even if some controller was
 * moved to unified/; nothing is ever created in unified/.
 *
 * A slice's cgroup is <root>/<parent>/<name> (v2), or
 * <root>/<controller>/<parent>/<name> for each v1 controller we use
 * (cpu, cpuacct, memory, pids, freezer). parent comes from
 * $VSLICE_CGROUP_PARENT (default "vslice"); root from $VSLICE_CGROUP_ROOT
 * (default /sys/fs/cgroup) so unit tests can point it at a fake tree.
 *
 * v1 controller directories: <root>/<controller> (a directory or a symlink
 * such as cpu -> cpu,cpuacct), else a comma-named mount ("cpu,cpuacct");
 * one mount serving two controllers is one directory. A controller that is
 * not mounted (v1) or not offered in <root>/cgroup.controllers (v2) is not
 * used: stats for it read 0, and asking for a limit it would enforce fails
 * with ENOTSUP; freeze/thaw without a freezer fail with ENOTSUP.
 *
 * Nothing here creates or removes a cgroup outside <parent>. <parent>
 * directories are made when missing and never removed (they are shared by
 * every slice). The one write outside <parent>/<name>: on v2, cpu, memory
 * and pids are enabled in cgroup.subtree_control of <root> and of each
 * <parent> level (never undone).
 *
 * name and each '/'-separated component of parent: letters, digits, '-',
 * '_', '.', '@', not starting with '.', at most 128 bytes (else EINVAL).
 *
 * Waits (freeze, kill, rmdir EBUSY) are bounded at 5 s; ETIMEDOUT after.
 */
#ifndef VSLICE_CGROUP_H
#define VSLICE_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/error.h"

enum cgroup_mode { CGROUP_UNIFIED, CGROUP_HYBRID, CGROUP_LEGACY };

struct cgroup_limits {
	uint64_t cpu_millis;   /* 0 = no quota; else quota = millis/1000 * period, period
				* 100 ms (1 s below 10 millis: the kernel's minimum
				* quota is 1 ms) */
	uint64_t cpu_weight;   /* 0 = default; v2 weight 1..10000 (v1: shares = weight*1024/100) */
	uint64_t memory_bytes; /* 0 = no limit; swap is limited to the same (v1 memsw) or
				* 0 (v2 swap.max) when the knob exists; an OOM kills one
				* process inside the slice only */
	uint64_t pids_max;     /* 0 = no limit */
};

struct cgroup_stats {
	uint64_t cpu_usage_ns;
	uint64_t memory_current;
	uint64_t memory_max; /* 0 = unlimited */
	uint64_t pids_current;
	uint64_t pids_max;     /* 0 = unlimited */
	uint64_t oom_kills;    /* memory.events / memory.oom_control oom_kill (cumulative) */
	uint64_t pids_refused; /* pids.events "max": forks refused at pids.max (cumulative) */
	bool frozen;
};

struct cgroup;

/* Detect the mode under root (NULL: $VSLICE_CGROUP_ROOT or /sys/fs/cgroup).
 * On a fake tree (no cgroup file system at or under root) the mode is read
 * from the layout: a cgroup.controllers file at root -> unified, a unified/
 * directory -> hybrid, else legacy. A fake tree is never accepted at
 * /sys/fs/cgroup itself (ENOTSUP: cgroups not mounted). */
int cgroup_detect(const char *root, enum cgroup_mode *mode, struct vs_error *err);
const char *cgroup_mode_name(enum cgroup_mode mode);

/* Handle for slice `name` (no file system change). root/parent NULL or ""
 * = defaults. EINVAL for a bad name/parent, detection errors, ENOENT when
 * no usable v1 controller is mounted. Free with cgroup_free. */
int cgroup_open(const char *root, const char *parent, const char *name, struct cgroup **out,
		struct vs_error *err);
void cgroup_free(struct cgroup *cg);
enum cgroup_mode cgroup_get_mode(const struct cgroup *cg);

/* Create the slice's cgroup(s) and write the limits (lim NULL = none). On
 * failure none of the slice directories it made is left (<parent>
 * directories stay). EEXIST if it is already there (in any controller; a
 * half-left cgroup from a crash: cgroup_destroy, then create again).
 * EINVAL for limits out of range, ENOTSUP for a limit without its controller. */
int cgroup_create(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err);
/* Move pid into the slice's cgroup(s) (v1: memory, pids, cpu, cpuacct,
 * freezer in that order). A failure part way leaves pid in the controllers
 * already written; the caller should kill it or destroy the cgroup. */
int cgroup_enter(struct cgroup *cg, pid_t pid, struct vs_error *err);
/* Rename the existing cgroup `from` to `to` (same parent: a pooled cgroup
 * becomes a slice's) and write lim (NULL = none) into it. On a rename
 * failure the directories already renamed go back; a limit failure leaves
 * `to` in place for the caller to destroy. */
int cgroup_rename(struct cgroup *from, struct cgroup *to, const struct cgroup_limits *lim,
		  struct vs_error *err);
/* Move the calling thread into the slice's cgroup(s): for a single-threaded
 * caller, the whole process. On v1 this avoids the RCU grace period of a
 * process move (cgroup.c); call it only with one thread. */
int cgroup_enter_self(struct cgroup *cg, struct vs_error *err);
/* v2: an O_PATH|O_DIRECTORY|O_CLOEXEC fd for clone3(CLONE_INTO_CGROUP);
 * caller closes. v1: -ENOTSUP with err set (use cgroup_enter instead). */
int cgroup_dirfd(struct cgroup *cg, struct vs_error *err);
/* Freeze / thaw; return once the kernel reports the state reached (v1
 * freezer.state FROZEN/THAWED, v2 cgroup.events "frozen 1/0"). A freeze that
 * does not complete in time is undone (thawed) and fails with ETIMEDOUT. */
int cgroup_freeze(struct cgroup *cg, struct vs_error *err);
int cgroup_thaw(struct cgroup *cg, struct vs_error *err);
/* Pids in the cgroup and its sub-cgroups, all controllers merged, sorted,
 * no duplicates (caller frees *pids; NULL when *n is 0). */
int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, struct vs_error *err);
/* Signal every process in the cgroup and its sub-cgroups, except the
 * caller itself (repeat until empty when sig is SIGKILL; v1 thaws first
 * since frozen tasks cannot die, v2 uses cgroup.kill when present). Signals
 * go through pidfds checked against cgroup.procs: a recycled pid is never
 * signalled. ETIMEDOUT if SIGKILL does not empty it in time. */
int cgroup_kill(struct cgroup *cg, int sig, struct vs_error *err);
/* ENOENT if the cgroup does not exist; fields of missing controllers read 0. */
int cgroup_stats(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err);
/* True if the slice's directory exists in any controller. */
bool cgroup_exists(struct cgroup *cg);
/* Kill what is left (SIGKILL until empty), then remove the cgroup(s) and any
 * sub-cgroups. Missing cgroups are fine; <parent> stays. Must not be called
 * from a process inside the cgroup (it is skipped by the kill, so the rmdir
 * fails with EBUSY). */
int cgroup_destroy(struct cgroup *cg, struct vs_error *err);
/* Path of the slice's cgroup for a controller ("memory", "pids", "cpu",
 * "cpuacct", "freezer"; v2: any, NULL too). v1: NULL for an unknown or
 * unmounted controller; NULL controller = the first hierarchy. Owned by cg. */
const char *cgroup_path(struct cgroup *cg, const char *controller);

#endif
