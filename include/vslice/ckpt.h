/*
 * ckpt.h - checkpoint/restore of a process tree (strong mobility).
 *
 * vslice's own ptrace-based checkpointer (Debian's CRIU cannot run on
 * kernels >= 6.13). Format and supported class: docs/checkpoint.md.
 *
 * Dump (host side, as host root):
 *     ckpt_dump() stops every thread of the tree under root_pid (v1 freezer
 *     cgroup if given, then PTRACE_SEIZE + PTRACE_INTERRUPT), refuses
 *     unsupported state before reading anything big, writes a checksummed
 *     stream to out_fd, then kills the tree (or detaches and lets it run on
 *     with leave_running). On any failure the tree is detached/thawed and
 *     runs on untouched.
 *
 * Restore, in two halves:
 *  1. ckpt_restore_stub() runs *inside* the target namespaces as the tree's
 *     root process, already holding the root pid (clone3 set_tid) and the
 *     capabilities of its user namespace. It forks the rest of the tree with
 *     exact pids, restores fds, cwd, umask, rlimits, sigactions, sessions,
 *     process groups, zombies and POSIX timers in plain C, then parks every
 *     thread in a `syscall; int3` loop. It does not return on success.
 *  2. ckpt_restore_finish() (host side) waits until the stubs are parked,
 *     seizes them and swaps each address space by ptrace syscall injection,
 *     sets registers, signals, timers, creds, seccomp, and detaches.
 *
 * All functions return 0 or a negative errno with err filled.
 */
#ifndef VSLICE_CKPT_H
#define VSLICE_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/error.h"

/* One pre-copy round written while the tree ran (dirty.c). */
#define CKPT_MAX_ROUNDS 32
struct ckpt_round_stats {
	uint64_t pages;	    /* pages written in the round */
	uint64_t bytes;	    /* stream bytes of the round */
	uint64_t ns;	    /* scan + arm + read + write */
	uint64_t dirty_bps; /* bytes/s the tree wrote since the previous scan (0 in round 0) */
};

struct ckpt_stats {
	uint64_t check_ns;   /* refusal checks on the running tree */
	uint64_t freeze_ns;  /* from freezing to every thread stopped */
	uint64_t frozen_ns;  /* how long the tree was stopped (dump) */
	uint64_t dump_ns;    /* total ckpt_dump() */
	uint64_t memdump_ns; /* reading + writing pages */
	uint64_t pages_scanned;
	uint64_t pages_written; /* dump: pages in the stream; restore: pages written back */
	uint64_t bytes_written; /* whole stream */
	uint64_t restore_ns;	/* ckpt_restore_finish(): waiting for stubs to detach */
	uint64_t forking_ns;	/* stub readiness wait inside restore_ns */
	uint64_t injected_syscalls;
	unsigned nr_procs, nr_threads, nr_vmas, nr_fds;
	/* pre-copy (0 rounds: none); the frozen round is pages_written and
	 * frozen_ns, its downtime on one node */
	unsigned nr_rounds;
	uint64_t precopy_ns; /* the running rounds, start to the freeze */
	struct ckpt_round_stats rounds[CKPT_MAX_ROUNDS];
	/* The page rounds, by phase. Dump: mem_read_ns = process_vm_readv
	 * (or /proc/PID/mem), mem_crc_ns = checksums, mem_write_ns = writes
	 * to the stream. Restore: memrestore_ns = the whole page-round phase
	 * (stream to END), mem_read_ns = reading the stream, mem_crc_ns =
	 * checking it, mem_write_ns = writing into the processes. Reading and
	 * writing run in two threads, so the parts add up to more than the
	 * whole when they overlap. */
	uint64_t memrestore_ns;
	uint64_t mem_read_ns, mem_crc_ns, mem_write_ns;
};

struct ckpt_precopy; /* include/vslice/ckpt_dirty.h */

struct ckpt_dump_opts {
	pid_t root_pid; /* host pid of the tree root (the workload) */
	pid_t init_pid; /* host pid of the PID 1 it hangs under: every other
			 * child of it (double-forked daemons) is dumped
			 * too, and every process in its pid namespace
			 * must be one of them; 0 = root's subtree only */
	/* The freezer of the cgroup holding the tree (v1 freezer.state, v2
	 * cgroup.freeze: the caller's), waiting until it is so; NULL: none
	 * (the tree is stopped by ptrace alone, one process at a time). */
	int (*freeze)(void *arg, bool frozen, struct vs_error *err);
	void *freeze_arg;
	int out_fd;	    /* the stream is written here */
	bool leave_running; /* detach + thaw after the dump instead of SIGKILL */
	/* With leave_running and a freeze: the tree is frozen again before it
	 * is detached and stays so: it never runs between
	 * the dump and the caller's next step (a migration's source). The
	 * caller thaws it. On a failed dump it is thawed as before. */
	bool keep_frozen;
	const char *name;  /* recorded in the header (slice name), may be NULL */
	const void *extra; /* opaque blob stored as-is (slice spec), may be NULL */
	size_t extra_len;
	bool verbose;	     /* progress on stderr */
	const char *fs_root; /* directory stored in the stream as the file
			      * system delta (the overlay upper dir), or NULL */
	/* Called once the stream is written, while the tree is still stopped
	 * (copy the file system delta here); a failure fails the dump. */
	int (*while_stopped)(void *arg, struct vs_error *err);
	void *while_stopped_arg;
	/* A pre-copy that began the stream on out_fd (ckpt_dirty.h): the dump
	 * continues it and its page round is the pre-copy's frozen round. */
	struct ckpt_precopy *precopy;
	/* Only the refusal checks on the running tree (nothing is stopped or
	 * written): 0 if a dump would not refuse it up front. */
	bool check_only;
};

int ckpt_dump(const struct ckpt_dump_opts *o, struct ckpt_stats *st, struct vs_error *err);

/* A parsed, verified image. */
struct ckpt_image;

/* Parse and verify a stream held in memory; the image copies what it needs
 * except page/data payloads, which point into buf (buf must outlive it). */
int ckpt_image_parse(const void *buf, size_t len, struct ckpt_image **out, struct vs_error *err);
/* Start reading a stream from fd (a file, a pipe, a socket) as it arrives:
 * every section up to the first page round is read, checked (CRC) and
 * parsed; the page rounds and the END record stay in fd, and
 * ckpt_restore_finish() applies them run by run, verifying the END last
 * (until then the restore is not trusted: it fails and kills the tree if
 * verification fails). fd must stay open until then. Memory held: the
 * records, not the pages. */
int ckpt_image_read_fd(int fd, struct ckpt_image **out, struct vs_error *err);
/* Read a whole stream from fd and verify it (every CRC, every record, the
 * END record), holding at most one piece of a page run. */
int ckpt_image_verify_fd(int fd, struct vs_error *err);
void ckpt_image_free(struct ckpt_image *img);

pid_t ckpt_image_root_pid(const struct ckpt_image *img);
/* CLOCK_MONOTONIC / CLOCK_BOOTTIME as the tree saw them at dump time. */
int64_t ckpt_image_monotonic_ns(const struct ckpt_image *img);
int64_t ckpt_image_boottime_ns(const struct ckpt_image *img);
const char *ckpt_image_name(const struct ckpt_image *img);
/* The extra blob given at dump time (NULL if none). */
const void *ckpt_image_extra(const struct ckpt_image *img, size_t *len);

/* Inside the target namespaces, as the root pid: see above. Returns only
 * on failure (err filled); the caller should then exit non-zero. */
int ckpt_restore_stub(const struct ckpt_image *img, struct vs_error *err);

/* The error of the first restore stub that failed (any process of the
 * tree, written through a shared page), or NULL. Use it when the stub's
 * death is all the host saw. */
const char *ckpt_image_restore_error(const struct ckpt_image *img);

/* Host side. root_hpid = host pid of the process running
 * ckpt_restore_stub(). timeout_ms bounds the wait for the stubs. */
int ckpt_restore_finish(struct ckpt_image *img, pid_t root_hpid, unsigned timeout_ms,
			struct ckpt_stats *st, struct vs_error *err);

/* Host pid of the child of parent_hpid whose innermost pid is nspid,
 * waiting up to timeout_ms for it to appear. */
int ckpt_find_child_nspid(pid_t parent_hpid, pid_t nspid, unsigned timeout_ms, pid_t *out,
			  struct vs_error *err);

/* Host pid of the first child of parent_hpid (a slice's workload under its
 * PID 1); ESRCH if it has none. */
int ckpt_first_child(pid_t parent_hpid, pid_t *out, struct vs_error *err);

/* Copy a directory tree (an overlay upper dir) from src into dst (created),
 * mapping owners in [id_from, id_from+65536) to the same offset from id_to.
 * Symlinks are never followed. */
int ckpt_copy_tree(const char *src, const char *dst, uint32_t id_from, uint32_t id_to,
		   struct vs_error *err);

/* Recreate the file system delta of the stream below dst (created),
 * owners shifted as in ckpt_copy_tree. Paths never leave dst. */
int ckpt_image_extract_fs(const struct ckpt_image *img, const char *dst, uint32_t id_from,
			  uint32_t id_to, struct vs_error *err);

/* Write st as JSON to path (atomic). */
int ckpt_stats_write_json(const char *path, const struct ckpt_stats *st, struct vs_error *err);
/* json (len bytes, a whole object) with the pre-copy fields added before
 * its closing brace; malloc'ed (dirty.c). */
char *ckpt_stats_json_rounds(const struct ckpt_stats *st, const char *json, size_t len);
/* One-line human summary into buf. */
void ckpt_stats_format(const struct ckpt_stats *st, char *buf, size_t len);

#endif
