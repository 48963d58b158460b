/*
 * slice.h - local slices: the spec a user asks for, the state the node keeps,
 * and the verbs (create, start, exec, stop, kill, freeze, thaw, destroy).
 *
 * State lives in <root>/slices/<name>/: spec.json (what was asked, plus the
 * allocated id range), state.json (pid of the slice's PID 1 as seen from the
 * host, its start time from /proc to detect pid reuse, status), upper/ and
 * work/ (overlay), log (workload stdout/stderr when detached), exit (exit
 * code written by PID 1), lock (flock per slice). Writes are atomic (temp +
 * fsync + rename).
 *
 * A slice outlives the process that started it: its PID 1 is a reaper forked
 * by the runtime, no monitor stays on the host.
 */
#ifndef VSLICE_SLICE_H
#define VSLICE_SLICE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "vslice/error.h"
#include "vslice/netcfg.h"

#define SLICE_NAME_MAX 64

enum slice_net { SLICE_NET_NONE = 0, SLICE_NET_HOST, SLICE_NET_BRIDGE };

struct slice_spec {
	char name[SLICE_NAME_MAX];
	char image[SLICE_NAME_MAX];
	char hostname[SLICE_NAME_MAX];
	char *policy;		/* "default" | "strict" | "unconfined" | absolute path */
	char *policy_text;	/* create only: an inline policy (JSON); slice_create keeps it
				 * as <slice dir>/policy.json and points policy there */
	char *workdir;		/* NULL = "/" */
	uint64_t cpu_millis;	/* 0 = no quota */
	uint64_t memory_bytes;	/* 0 = no limit */
	uint64_t pids_max;	/* 0 = no limit */
	uint64_t disk_bytes;	/* 0 = no limit (upper on the host fs); else the size of
				 * the slice's own ext4 image holding its upper layer */
	uint64_t log_max_bytes; /* log bytes kept on disk; 0 = REAPER_LOG_DEFAULT (16M) */
	uint64_t lifetime_secs; /* 0 = no expiry */
	enum slice_net net;
	char **env;	       /* NULL-terminated "K=V" */
	char **argv;	       /* NULL-terminated; NULL = /bin/sh */
	uint64_t timeout_secs; /* 0 = none: PID 1 kills the workload after this long */
	unsigned restart_max;  /* restart on failure (exit != 0) up to this many times */
	bool ephemeral;	       /* run --rm: destroyed when it ends, so no fsyncs and a
				* volatile overlay (no sync of the upper layer at exit) */
	/* --net bridge only: no-egress, --publish, --net-rate */
	struct netcfg_slice netopts;
	/* Filled by slice_create: */
	uint32_t id_base; /* host uid/gid of the slice's root; range of 65536 */
	time_t created;
	time_t expires; /* 0 = never */
};

enum slice_status {
	SLICE_CREATED, /* never started, or start failed */
	SLICE_RUNNING,
	SLICE_FROZEN,
	SLICE_EXITED, /* workload exited; exit_code valid */
	SLICE_UNKNOWN,
};

struct slice_state {
	enum slice_status status;
	pid_t pid;		/* host pid of the slice's PID 1, 0 if none */
	uint64_t pid_starttime; /* /proc/<pid>/stat field 22, guards against reuse */
	int exit_code;		/* -1 unknown */
	char exit_reason[32];	/* "exited", "signal", "timeout", "lifetime", "oom", "pids",
				 * "killed", "" (slice_exit_cause) */
	unsigned restarts;
	time_t started;
	time_t finished;
	bool idmapped; /* image id-mapped (true) or chowned copy (false) */
	/* The cgroup's cumulative counters when this run started, so an
	 * exit is blamed on what happened in this run only. */
	uint64_t oom_kills_base;
	uint64_t pids_refused_base;
};

/*
 * Why a run ended, from PID 1's exit record (reason, code) and how many OOM
 * kills and refused forks (pids.max) the slice's cgroup counted during the
 * run. A timeout or the lifetime are the cause of their own kill; else an OOM
 * kill in the run makes a failed exit "oom", a refused fork "pids". Returns a
 * static string ("exited", "signal", "timeout", "lifetime", "oom", "pids",
 * "killed").
 */
const char *slice_exit_cause(const char *reason, int code, uint64_t oom_kills,
			     uint64_t pids_refused);
/* One line for a person: "killed by the OOM killer at its memory limit",
 * ...; NULL for an ordinary exit ("exited", "signal", ""). */
const char *slice_exit_reason_text(const char *reason);

const char *slice_status_name(enum slice_status s);
void slice_spec_free(struct slice_spec *spec);

/* Default root: $VSLICE_ROOT or /var/lib/vslice. */
const char *slice_default_root(void);

/* Create: validate spec, allocate an id range, make the state dir and
 * cgroups. On any failure nothing is left behind. */
int slice_create(const char *root, struct slice_spec *spec, struct vs_error *err);

struct slice_start_opts {
	bool foreground; /* workload stdio = stdin_fd/stdout_fd/stderr_fd */
	int stdin_fd, stdout_fd, stderr_fd;
	bool tty; /* allocate a pty for the workload */
	/*
	 * Checkpoint restore hook: when set, the slice's workload process is
	 * created with pid workload_pid (clone3 set_tid; 0 = any) and runs
	 * workload_fn(workload_arg) inside the fully set-up slice (root fs,
	 * mounts, namespaces) as uid 0 of the slice with its capabilities still
	 * held, before the capability drop, no_new_privs and seccomp. If it
	 * returns, the process exits with that value. The time namespace of the
	 * slice gets the given offsets (ns) before any process enters it.
	 */
	int (*workload_fn)(void *arg);
	void *workload_arg;
	pid_t workload_pid;
	int64_t monotonic_offset_ns;
	int64_t boottime_offset_ns;
};
/* Start the slice's workload. Returns once PID 1 is running and the
 * workload was exec'd (or failed, reported in err). */
int slice_start(const char *root, const char *name, const struct slice_start_opts *o,
		struct vs_error *err);
/* Wait for the workload to exit; *code = its exit code (128+sig if killed),
 * *out (unless NULL) the slice's state then (the exit record). */
int slice_wait(const char *root, const char *name, int *code, struct slice_state *out,
	       struct vs_error *err);

struct slice_exec_opts {
	char **argv;
	char **env; /* extra env, NULL-terminated, may be NULL */
	const char *workdir;
	bool tty;	  /* stdio is a pty slave: it becomes the controlling terminal */
	const int *stdio; /* the command's fds 0, 1, 2; NULL: ours */
	bool threaded;	  /* the caller is a daemon with threads (sliver.h) */
};
/* Run argv inside the running slice with its isolation and policy; waits and
 * returns the exit code in *code (126 cannot execute, 127 not found). */
int slice_exec(const char *root, const char *name, const struct slice_exec_opts *o, int *code,
	       struct vs_error *err);
/* The same, started only: the caller signals (sliver_exec_signal) and
 * waits (sliver_exec_wait) itself. */
struct sliver_exec_proc;
int slice_exec_start(const char *root, const char *name, const struct slice_exec_opts *o,
		     struct sliver_exec_proc *p, struct vs_error *err);

int slice_stop(const char *root, const char *name, unsigned timeout_secs, struct vs_error *err);
int slice_kill(const char *root, const char *name, int sig, struct vs_error *err);
int slice_freeze(const char *root, const char *name, struct vs_error *err);
int slice_thaw(const char *root, const char *name, struct vs_error *err);
/* Move the end of the slice's lifetime to expires (in the future): kept in
 * spec.json, and a running slice's PID 1 is told at once (reaper.h). */
int slice_renew(const char *root, const char *name, time_t expires, struct vs_error *err);
/* Remove everything (cgroups, state dir, id range). A running slice needs force. */
int slice_destroy(const char *root, const char *name, bool force, struct vs_error *err);

/* Load spec and current state (state refreshed against /proc). */
int slice_load(const char *root, const char *name, struct slice_spec *spec, struct slice_state *st,
	       struct vs_error *err);
/* Names of all slices, sorted (caller frees each and the array). */
int slice_list(const char *root, char ***names, size_t *n, struct vs_error *err);
/* Does any slice use this image? */
bool slice_image_in_use(const char *root, const char *image);

/* <root>/slices/<name> (caller frees). */
char *slice_dir(const char *root, const char *name);

/* Parse spec.json text (as written by slice_create) for the slice `name`;
 * every field type- and range-checked. For checkpoint images. */
int slice_spec_parse(const char *text, const char *name, struct slice_spec *spec,
		     struct vs_error *err);

/* Validate a spec as given by the user (name, image present, policy, net...). */
int slice_spec_check(const char *root, const struct slice_spec *spec, struct vs_error *err);

struct slice_stats {
	uint64_t cpu_usage_ns;
	uint64_t memory_current, memory_max;
	uint64_t pids_current, pids_max;
	uint64_t oom_kills;
	bool frozen;
	/* Thread-level parallelism over the sampling window: c[i] is the
	 * fraction of samples with exactly i threads running; TLP =
	 * sum(i * c[i]) / (1 - c[0]), 0 when never running. */
	unsigned samples;
	unsigned max_running;
	double c[65];
	double tlp;
	double cpu_percent; /* cpu time / wall time over the window */
};
/* Sample the slice for window_ms (every 10 ms) and fill st. */
int slice_stats(const char *root, const char *name, unsigned window_ms, struct slice_stats *st,
		struct vs_error *err);
/* st as `slicectl stats --json` prints it (and the node manager's GET
 * /v1/slivers/NAME/stats answers), with the slice's network counters when
 * it has a bridge network; a new object (NULL only when out of memory). */
json_t *slice_stats_json(const char *root, const char *name, unsigned window_ms,
			 const struct slice_stats *st);

/*
 * The host path of the slice's overlay upper layer (its file system delta),
 * for a checkpoint to read or a restore to fill (caller frees *path). A
 * slice with a disk limit keeps its upper layer inside its image, mounted
 * only in the slice's own mount namespace: refused (ENOTSUP, kind
 * VS_EK_REFUSED) with a message that says so, before anything is stopped.
 */
int slice_upper_dir(const char *root, const struct slice_spec *spec, char **path,
		    struct vs_error *err);

/*
 * Call fn with an fd on the slice's overlay upper dir (O_PATH directory,
 * valid during the call; fn closes what it opens from it) whatever the
 * slice's storage, and return what fn returns. Plain slice: <slice>/upper
 * on the host. Disk limit: the upper dir inside the slice's image, mounted
 * for the call only (in no mount namespace, never on the host) under the
 * slice's lock, and no loop device or mount left after, also when fn
 * fails (sliver_disk_with_upper). write false: read-only; a running slice
 * with a disk limit can be read, not written (EBUSY, kind VS_EK_BUSY).
 * Files created from upper_fd keep the owner the caller gives them.
 */
typedef int (*slice_upper_fn)(void *arg, int upper_fd, struct vs_error *err);
int slice_with_upper(const char *root, const struct slice_spec *spec, bool write, slice_upper_fn fn,
		     void *arg, struct vs_error *err);

/* Open the slice's log (stdout/stderr of a detached workload) for reading,
 * at the first byte still kept (older output is a hole: reaper.h). A reader
 * that follows it and finds zeroes (SEEK_DATA past its offset) lagged more
 * than the cap behind. */
int slice_log_open(const char *root, const char *name, struct vs_error *err);
/* Host pid of PID 1 if the slice runs (validated against its cgroup), else 0. */
pid_t slice_pid1(const char *root, const char *name);

#endif
