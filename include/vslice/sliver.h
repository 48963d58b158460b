/*
 * sliver.h - the sliver runtime: one slice's container on this node.
 *
 * sliver_spawn() builds it in this order (see docs/architecture.md):
 *  caller (host root)
 *   '- launcher L: joins the slice cgroup, makes the user namespace (the
 *      slice's own id range), unshares a private mount ns, mounts the image
 *      id-mapped into that userns (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)
 *      + move_mount) and the overlay over it; setns(userns), becomes slice
 *      root, unshares mnt/uts/ipc/net/cgroup/pid/time, forks P1 and exits.
 *       '- P1 (pid 1 of the slice): /proc, read-only /sys, minimal /dev,
 *          masked paths, pivot_root; then a reaper that never execs: forwards
 *          signals, enforces timeout/lifetime, restarts on failure, writes the
 *          workload's exit record, exits with it (which ends the slice).
 *           '- W (the workload): new session, stdio, workdir, only fds 0-2,
 *              capability drop, no_new_privs, seccomp last, execve.
 * No process stays on the host: L exits once P1 runs, P1 is reparented.
 */
#ifndef VSLICE_SLIVER_H
#define VSLICE_SLIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "vslice/cgroup.h"
#include "vslice/error.h"
#include "vslice/pool.h"
#include "vslice/seccomp_policy.h"

/* The workload process: what it runs, its stdio and what it may do. The
 * same for a new slice (sliver_spawn) and a process exec'd into a running
 * one (sliver_exec_start). */
struct sliver_workload {
	char **argv;	     /* NULL-terminated */
	char **env;	     /* NULL-terminated K=V added to the defaults */
	const char *workdir; /* NULL = / */
	int stdin_fd, stdout_fd, stderr_fd;
	uint64_t caps;
	const struct seccomp_bpf *bpf;
	bool tty; /* stdio is a pty slave: make it the controlling tty */
};

/* The namespaces of a sandbox taken from the pool (pool_open_ns), indexed
 * by enum pool_ns; the launcher joins them instead of making new ones. */
struct sliver_pooled {
	int fds[POOL_NS_COUNT];
};

struct sliver_config {
	const char *name;		    /* for messages */
	const struct sliver_pooled *pooled; /* NULL: a cold start */
	const char *hostname;
	const char *image_rootfs; /* shared read-only lower layer */
	const char *lower_mnt;	  /* <slice>/lower: where the id-mapped image is attached */
	const char *upper, *work; /* overlay upper/work (owned by id_base) */
	const char *disk_image;	  /* NULL, or the slice's ext4 image: upper and work are in
				   * it, mounted at disk_mnt (sliver_disk_create) */
	const char *disk_mnt;
	const char *rootfs;	/* <slice>/rootfs: overlay mount point */
	const char *lower_copy; /* <slice>/lower-copy: chowned copy if idmap is refused */
	uint32_t id_base, id_count;
	struct cgroup *cg;
	bool host_net;
	struct sliver_workload workload; /* tty unused: P1 gives no terminal */
	/* Detached: stdout/stderr are the write end of a pipe whose read end
	 * is log_pipe; PID 1 copies it into log_fd (O_APPEND) keeping the
	 * last log_max bytes on disk (reaper.h). log_pipe -1: no log. */
	int log_pipe, log_fd;
	uint64_t log_max;
	bool detach; /* setsid the launcher: not tied to our terminal */
	int exit_fd; /* P1 writes "code reason restarts finished\n" here */
	int init_fd; /* vslice-init (sliver_init_open), -1: P1 stays a fork */
	uint64_t timeout_secs;
	unsigned restart_max;
	time_t expires;	     /* 0 = never */
	bool volatile_upper; /* overlay "volatile": no sync of upper at exit */
	/* Restore hook, see slice.h */
	int (*workload_fn)(void *arg);
	void *workload_arg;
	pid_t workload_pid;
	int64_t monotonic_offset_ns, boottime_offset_ns;
	/* Network set-up from the host (--net bridge), in the caller's
	 * process, each < 0 failing the start: net_begin right after the
	 * launcher is forked (the host's half that needs no namespace, while
	 * the launcher builds the sandbox); net_setup once the launcher has
	 * made the slice's network namespace (netns_fd: an fd of it; nl_fd: a
	 * NETLINK_ROUTE socket in it, or -1; both the caller's, closed after
	 * the call; lo is down: net_setup brings it up); net_files once the slice's root is mounted
	 * (rootfs_fd: an O_PATH fd of it, for its /etc files); net_commit once both are done
	 * (cannot fail), right after the launcher was told to go on (PID 1 is forked only then).
	 * net_abort undoes what net_begin and net_setup made when net_commit is never reached. */
	int (*net_begin)(void *arg, struct vs_error *err);
	int (*net_setup)(void *arg, int netns_fd, int nl_fd, struct vs_error *err);
	int (*net_files)(void *arg, int rootfs_fd, struct vs_error *err);
	void (*net_commit)(void *arg);
	void (*net_abort)(void *arg);
	void *net_arg;
};

struct sliver_result {
	pid_t pid1;    /* host pid of the slice's PID 1 */
	bool idmapped; /* false: the chowned-copy fallback was used */
	int exec_code; /* 126/127 when the workload could not exec, else 0 */
};

int sliver_spawn(const struct sliver_config *c, struct sliver_result *res, struct vs_error *err);

struct sliver_exec_config {
	const char *name;
	pid_t pid1;
	struct cgroup *cg;
	bool host_net;
	struct sliver_workload workload;
	/* The caller has other threads (a daemon): the helper is made with a
	 * plain fork() (glibc's fork handlers keep malloc usable in it, which
	 * clone3 does not), and its caller must leave signal dispositions,
	 * the whole process's, alone. */
	bool threaded;
};
/* Run argv inside the running sliver, in steps: start, signal, wait (the
 * caller relays the command's stdio: slice_exec, the node manager's
 * remote exec). */
struct sliver_exec_proc {
	pid_t pid;     /* the exec helper (host pid), our child until waited for */
	int pidfd;     /* its pidfd (-1 if none): readable once it has exited */
	int status_fd; /* its messages (an exec failure) */
};
int sliver_exec_start(const struct sliver_exec_config *c, struct sliver_exec_proc *p,
		      struct vs_error *err);
/* Reap the helper (blocks until it exits) and close p's fds. *code: the
 * command's exit code (128+N when killed by signal N; 126/127 when it could
 * not be exec'd, with err set and its kind VS_EK_EXEC_*). */
int sliver_exec_wait(struct sliver_exec_proc *p, int *code, struct vs_error *err);
/* Does the helper pass sig on to the command (SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT, SIGWINCH)? Another signal would be the helper's, not the
 * command's. */
bool sliver_exec_forwards(int sig);
/* Send sig (one sliver_exec_forwards takes; else -EINVAL) to the command
 * through the helper. -errno on failure. */
int sliver_exec_signal(const struct sliver_exec_proc *p, int sig);
/* SIGKILL the command and the helper (the caller still waits). */
void sliver_exec_kill(const struct sliver_exec_proc *p);

/* Exit record written by P1: parse "code reason restarts finished". */
int sliver_read_exit(int fd, int *code, char *reason, size_t reason_len, unsigned *restarts,
		     time_t *finished);

/*
 * The small static PID 1 (cmd/init), embedded in this library: make sure
 * <cache_dir>/init-<hash>/vslice-init exists (root-owned, 0111, written
 * atomically; the file name is what PID 1's comm shows from its exec on)
 * and open it O_RDONLY|O_CLOEXEC. Returns the fd.
 */
int sliver_init_open(const char *cache_dir, struct vs_error *err);

/*
 * A slice's disk limit (disk.c): a sparse ext4 image of `bytes` bytes made
 * with mkfs.ext4 at path (created O_EXCL, 0600). durable: with a journal,
 * fsync'd (not for run --rm slices). The launcher loop-mounts it in the
 * slice's mount namespace only (sliver_config.disk_image).
 */
#define SLIVER_DISK_MIN (16ull << 20)
#define SLIVER_DISK_MAX (16ull << 40)
int sliver_disk_create(const char *path, uint64_t bytes, bool durable, struct vs_error *err);
/* The number N of the /dev/loopN backed by the image at path, -1 if none. */
int sliver_disk_loop(const char *path);

/*
 * Give fn the top of the slice's overlay upper layer inside its image
 * (upper_fd: O_PATH directory, valid during the call only; fn closes every
 * fd it opens) and return what fn returns. The image is mounted (nodev,
 * nosuid, noexec) only for the call, as a detached mount in no mount
 * namespace; write false: read-only. If the image is attached (the slice
 * runs), a read goes through that loop device and the slice's own file
 * system, a write is refused (EBUSY, kind VS_EK_BUSY). Otherwise the image
 * is attached for the call, upper/ made for a slice that never ran (owned
 * by id_base), and no loop device or mount is left when this returns,
 * whatever fn did. Host root only; the caller holds the slice's lock (no
 * start, no second access meanwhile).
 */
typedef int (*sliver_upper_fn)(void *arg, int upper_fd, struct vs_error *err);
int sliver_disk_with_upper(const char *image, const char *name, uint32_t id_base, bool write,
			   sliver_upper_fn fn, void *arg, struct vs_error *err);

/* /proc/<pid>/stat start time (clock ticks since boot), 0 if gone. */
uint64_t sliver_proc_starttime(pid_t pid);

#endif
