/*
 * cgroup_internal.h - what cgroup.c shares with its two backends
 * (cgroup_v1.c, cgroup_v2.c). Not part of the public contract; unit tests
 * include it only to shorten the wait timeouts.
 *
 * A handle holds one or more "hierarchies": on v1 one per mounted controller
 * directory we use (cpu, cpuacct, memory, pids, freezer; a combined
 * "cpu,cpuacct" mount is a single hierarchy carrying both), on v2 exactly one
 * (the unified tree). Everything that is the same on both - entering a pid,
 * listing and signalling pids, removing directories - walks that list in
 * cgroup.c; the ops table carries what differs.
 */
#ifndef VSLICE_CGROUP_INTERNAL_H
#define VSLICE_CGROUP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/cgroup.h"

/* Controllers we use, as bits. Order of the table is the v1 order of
 * creation and of entering: memory and pids first, so a process is accounted
 * and bounded before it gets cpu time in its new group. */
enum {
	CG_MEMORY = 1u << 0,
	CG_PIDS = 1u << 1,
	CG_CPU = 1u << 2,
	CG_CPUACCT = 1u << 3,
	CG_FREEZER = 1u << 4,
};
#define CG_NCTRL 5
extern const char *const cg_ctrl_names[CG_NCTRL]; /* index i <-> bit 1u<<i */

#define CG_MAX_HIER CG_NCTRL

struct cg_hier {
	char *mount;	/* v1: <root>/<controller dir>; v2: <root> */
	char *parent;	/* <mount>/<parent> */
	char *path;	/* <mount>/<parent>/<name> */
	char *label;	/* "memory:vslice/web1" (v1) or "vslice/web1" (v2) */
	unsigned ctrls; /* CG_* bits served by this hierarchy */
};

struct cgroup;

struct cgroup_ops {
	const char *name;
	/* Fill hier[] for cg (no file system change). */
	int (*init)(struct cgroup *cg, struct vs_error *err);
	/* Make the directories and write the limits; on failure remove what it made. */
	int (*create)(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err);
	/* Set and wait for the frozen state. */
	int (*set_frozen)(struct cgroup *cg, bool frozen, struct vs_error *err);
	/* Signal everything; for SIGKILL wait until empty. */
	int (*kill)(struct cgroup *cg, int sig, struct vs_error *err);
	/* Fill st (zeroed by the caller); the cgroup is known to exist. */
	int (*stats)(struct cgroup *cg, struct cgroup_stats *st, struct vs_error *err);
	int (*dirfd)(struct cgroup *cg, struct vs_error *err);
	/* Write the limits of an existing cgroup (one taken from the pool). */
	int (*limits)(struct cgroup *cg, const struct cgroup_limits *lim, struct vs_error *err);
};

extern const struct cgroup_ops cgroup_v1_ops;
extern const struct cgroup_ops cgroup_v2_ops;

struct cgroup {
	enum cgroup_mode mode;
	/* root is not a cgroup file system (unit tests): new slice dirs get
	 * the mount dir's files as templates (cg_fake_populate), control files
	 * are created on write, directories are removed with their files, and
	 * state files read back what was written. */
	bool fake;
	char *root, *parent, *name;
	char *label; /* "<parent>/<name>" */
	const struct cgroup_ops *ops;
	struct cg_hier hier[CG_MAX_HIER];
	size_t nhier;
	unsigned ctrls;	     /* union of hier[].ctrls: controllers we can use */
	unsigned timeout_ms; /* freeze / kill / rmdir waits; default 5000 */
};

/* The hierarchy serving controller bit c, or NULL. */
struct cg_hier *cg_hier_for(struct cgroup *cg, unsigned c);

/* CFS quota and period for millis (> 0) millicpus: period 100 ms, or 1 s
 * below 10 millicpus, where 100 ms would need a quota under the kernel's
 * 1 ms minimum. */
void cg_cpu_quota(uint64_t millis, uint64_t *quota_us, uint64_t *period_us);

/* The controllers (CG_* bits) that the limits set in lim need. */
unsigned cg_limits_ctrls(const struct cgroup_limits *lim);

/* "<dir>/<file>"; caller frees. */
char *cg_join(const char *dir, const char *file);

/*
 * Write val to <dir>/<file>. On a fake tree the file is created. The error
 * names the object: "cgroup <label>: write <file> \"<val>\": <strerror>".
 */
int cg_write(const struct cgroup *cg, const char *dir, const char *label, const char *file,
	     const char *val, struct vs_error *err);
/* cg_write of a decimal v to hierarchy h's slice directory. */
int cg_write_u64(const struct cgroup *cg, const struct cg_hier *h, const char *file, uint64_t v,
		 struct vs_error *err);
/* As cg_write, only if the file exists (on a fake tree too); 0 if it does not. */
int cg_write_if_exists(const struct cgroup *cg, const char *dir, const char *label,
		       const char *file, const char *val, struct vs_error *err);
bool cg_file_exists(const char *dir, const char *file);
/* Read <dir>/<file> (caller frees *out). -ENOENT (err set) when missing. */
int cg_read(const char *dir, const char *label, const char *file, char **out, struct vs_error *err);

/* Parse a decimal u64 surrounded by optional white space; "max" sets *is_max
 * (if non-NULL) and *v = 0. -EINVAL on anything else. */
int cg_parse_u64(const char *s, uint64_t *v, bool *is_max);
/* Find "key value" in a flat-keyed file body; -ENOENT when the key is absent. */
int cg_keyed_u64(const char *buf, const char *key, uint64_t *v);
/* Read a single-value file into *v. A missing file leaves *v untouched and
 * returns 0 (stats from an optional knob); other failures set err. */
int cg_read_u64_opt(const char *dir, const char *label, const char *file, uint64_t *v, bool *is_max,
		    struct vs_error *err);

/* Wait until pred(cg, arg) returns 1 (<0 is an error, err set) or timeout_ms passes
 * (then -ETIMEDOUT, err not set). */
int cg_wait(struct cgroup *cg, int (*pred)(struct cgroup *, void *, struct vs_error *), void *arg,
	    struct vs_error *err);
void cg_sleep_ms(unsigned ms);

/*
 * One signalling pass over every process in every hierarchy (sub-cgroups
 * included), skipping the caller. A pid is signalled through a pidfd taken
 * before a second read of cgroup.procs still lists it, so a recycled pid
 * never gets the signal. *remaining (optional) gets the number of live,
 * non-zombie processes seen.
 */
int cg_signal_pass(struct cgroup *cg, int sig, size_t *remaining, struct vs_error *err);
/* Repeat SIGKILL passes until nothing is left or the timeout passes. before
 * (may be NULL) runs ahead of each pass (v1: thaw; v2: cgroup.kill). */
int cg_kill_until_empty(struct cgroup *cg, int (*before)(struct cgroup *, struct vs_error *),
			struct vs_error *err);

/* Remove hierarchy h's slice directory and any sub-cgroups under it.
 * Missing is fine; EBUSY is retried until the timeout. */
int cg_remove_dir(struct cgroup *cg, const struct cg_hier *h, struct vs_error *err);
/* mkdir one directory: 0 made, 1 already there, <0 error (err names label). */
int cg_mkdir(const char *path, const char *label, struct vs_error *err);
/*
 * Fake tree only (no-op otherwise): give a freshly made slice directory the
 * knobs a kernel would, i.e. an empty copy of every regular file in the
 * hierarchy's mount directory, so "write X if the kernel has it" logic
 * (memsw, memory.swap.max, cgroup.kill) can be tested. A directory there
 * with a knob-like name ("pids.max") is copied as a directory: a knob whose
 * write fails, for testing failure paths.
 */
void cg_fake_populate(const struct cgroup *cg, const struct cg_hier *h);
/* mkdir -p <mount>/<parent> component by component. */
int cg_mkdir_parent(const struct cgroup *cg, const struct cg_hier *h, struct vs_error *err);

#endif
