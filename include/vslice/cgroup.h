/*
 * cgroup.h - a slice's control group, whatever the host runs.
 *
 * Detection follows systemd/crun: statfs("/sys/fs/cgroup") is cgroup2 ->
 * unified (v2); tmpfs with cgroup2 at unified/ -> hybrid (v1 controllers,
 * the v2 tree carries no controllers and is not used for limits); tmpfs
 * without -> legacy (v1). Hybrid and legacy use the v1 backend
 * (cgroup_v1.c), unified the v2 backend (cgroup_v2.c), behind one ops table.
 *
 * A slice's cgroup is <root>/<parent>/<name> (v2), or
 * <root>/<controller>/<parent>/<name> for each v1 controller we use
 * (cpu, cpuacct, memory, pids, freezer). parent comes from
 * $VSLICE_CGROUP_PARENT (default "vslice"); root from $VSLICE_CGROUP_ROOT
 * (default /sys/fs/cgroup) so unit tests can point it at a fake tree.
 *
 * Nothing here touches a cgroup outside <parent>.
 */
#ifndef VSLICE_CGROUP_H
#define VSLICE_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/error.h"

enum cgroup_mode { CGROUP_UNIFIED, CGROUP_HYBRID, CGROUP_LEGACY };

struct cgroup_limits {
	uint64_t cpu_millis;	/* 0 = no quota; else quota = millis/1000 * period */
	uint64_t cpu_weight;	/* 0 = default; v2 weight 1..10000 (v1: shares = weight*1024/100) */
	uint64_t memory_bytes;	/* 0 = no limit; an OOM kills inside the slice only */
	uint64_t pids_max;	/* 0 = no limit */
};

struct cgroup_stats {
	uint64_t cpu_usage_ns;
	uint64_t memory_current;
	uint64_t memory_max;	/* 0 = unlimited */
	uint64_t pids_current;
	uint64_t pids_max;	/* 0 = unlimited */
	uint64_t oom_kills;
	bool frozen;
};

struct cgroup;

/* Detect the mode under root (NULL: $VSLICE_CGROUP_ROOT or /sys/fs/cgroup).
 * On a fake tree (not a cgroupfs) the mode is read from the layout:
 * a cgroup.controllers file at root -> unified, else hybrid/legacy. */
int cgroup_detect(const char *root, enum cgroup_mode *mode, struct vs_error *err);
const char *cgroup_mode_name(enum cgroup_mode mode);

/* Handle for slice `name` (no file system change). root/parent NULL = defaults. */
int cgroup_open(const char *root, const char *parent, const char *name, struct cgroup **out,
		struct vs_error *err);
void cgroup_free(struct cgroup *cg);
enum cgroup_mode cgroup_get_mode(const struct cgroup *cg);

/* Create the slice's cgroup(s) and write the limits. On failure nothing it
 * created is left. EEXIST if it is already there. */
int cgroup_create(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err);
/* Move pid into the slice's cgroup(s). */
int cgroup_enter(struct cgroup *cg, pid_t pid, struct vs_error *err);
/* v2: an O_PATH|O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP); v1: -1. Caller closes. */
int cgroup_dirfd(struct cgroup *cg, struct vs_error *err);
/* Freeze / thaw; return once the kernel reports the state reached. */
int cgroup_freeze(struct cgroup *cg, struct vs_error *err);
int cgroup_thaw(struct cgroup *cg, struct vs_error *err);
/* Pids in the cgroup (caller frees *pids). */
int cgroup_pids(struct cgroup *cg, pid_t **pids, size_t *n, struct vs_error *err);
/* Signal every process in the cgroup (repeat until empty when sig is SIGKILL). */
int cgroup_kill(struct cgroup *cg, int sig, struct vs_error *err);
int cgroup_stats(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err);
bool cgroup_exists(struct cgroup *cg);
/* Kill what is left, then remove the cgroup(s). Missing cgroups are fine. */
int cgroup_destroy(struct cgroup *cg, struct vs_error *err);
/* Path of the slice's cgroup for a controller ("memory", "pids"...; v2: any). */
const char *cgroup_path(struct cgroup *cg, const char *controller);

#endif
