/*
 * seccomp_policy.h - seccomp policies in OCI/Docker JSON, compiled with
 * libseccomp, cached as BPF by content hash.
 *
 * Format: defaultAction, defaultErrnoRet, architectures / archMap,
 * syscalls[].names / name / action / errnoRet / args[{index,value,valueTwo,op}],
 * includes/excludes (caps, arches, minKernel) as Docker's profile uses them,
 * comment (top level and per rule), flags (accepted, see install). Unknown
 * syscall names are skipped (as crun does); unknown keys, actions, ops,
 * architectures, capabilities, wrong JSON types, duplicate keys and
 * out-of-range numbers are errors (EINVAL) naming the JSON path, e.g.
 * ".syscalls[3].actoin: unknown key". SCMP_ACT_NOTIFY / listenerPath are
 * refused (ENOTSUP). Numbers must fit in 0..INT64_MAX (jansson), errnoRet in
 * 0..4095. A rule whose action equals the default action is skipped (libseccomp
 * refuses it), so a deny inside an allowed syscall must be written as an allow
 * of the complement (see policies/README.md, the ioctl rule).
 *
 * Named policies "default", "strict", "unconfined" are compiled into the
 * binary (build/gen/policies.c, from policies/seccomp/NAME.json); anything
 * else is a path to a JSON file (at most 1 MiB).
 *
 * Changes to the original contract (all additive):
 *  - seccomp_bpf.hash is the CACHE KEY, not the hash of the text alone:
 *    sha256(text, "\0", caps_mask, libseccomp version, native arch, kernel
 *    major.minor, BPF layout), because all of these change the compiled output.
 *  - seccomp_bpf_load_cached(): load a filter by that hash (checkpoint
 *    restore re-installs "the policy by id").
 *  - flags[] in the JSON is validated and otherwise ignored.
 */
#ifndef VSLICE_SECCOMP_POLICY_H
#define VSLICE_SECCOMP_POLICY_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"

struct seccomp_bpf {
	struct sock_filter *insns; /* NULL when unconfined; owned, free with seccomp_bpf_free */
	size_t len;		   /* number of instructions (1..BPF_MAXINSNS) */
	char hash[65];		   /* sha256 hex cache key (see above); set even when unconfined */
	bool unconfined;	   /* defaultAction ALLOW and no rule left: install nothing */
};

/* Embedded policy text by name, or NULL. */
const char *seccomp_policy_builtin(const char *name);
/* True if name is a builtin name; else it is treated as a file path. */
bool seccomp_policy_is_builtin(const char *name);

/* Parse + compile policy text (no cache). caps_mask: capabilities the
 * process will keep (for Docker's includes/excludes.caps); pass the same mask
 * given to caps_apply(). On failure *out is empty (nothing to free). */
int seccomp_policy_compile(const char *json, size_t len, uint64_t caps_mask,
			   struct seccomp_bpf *out, struct vs_error *err);

/*
 * The BPF layout. AUTO, what seccomp_policy_compile and _load use: more than
 * SECCOMP_TREE_MIN_RULES rules become libseccomp's balanced binary tree over
 * syscall numbers (SCMP_FLTATR_CTL_OPTIMIZE=2), fewer the linear chain. The
 * decisions are the same; the tree is ~2.7x cheaper to attach (the kernel
 * emulates the filter for every syscall number at attach). LINEAR: always the
 * chain, for tests and tests/bench to compare against. The layout is part of
 * seccomp_bpf.hash (the cache key).
 */
#define SECCOMP_TREE_MIN_RULES 32
enum seccomp_layout {
	SECCOMP_LAYOUT_AUTO,
	SECCOMP_LAYOUT_LINEAR,
};
int seccomp_policy_compile_layout(const char *json, size_t len, uint64_t caps_mask,
				  enum seccomp_layout layout, struct seccomp_bpf *out,
				  struct vs_error *err);

/* Resolve name (builtin or file), then load BPF from cache_dir/<hash>.bpf or
 * compile and store it there (atomically, mode 0600; cache_dir is created
 * 0700). cache_dir NULL = no cache. A cache file that is not a regular file
 * owned by the caller, is group/world-writable, or is not a plausible filter
 * (length, first/last instruction) is ignored, recompiled and replaced. A
 * failure to WRITE the cache is not an error. Unconfined policies are never
 * cached (they compile in microseconds). */
int seccomp_policy_load(const char *name, const char *cache_dir, uint64_t caps_mask,
			struct seccomp_bpf *out, struct vs_error *err);

/* Load <cache_dir>/<hash>.bpf only (no policy text needed), with the same
 * checks as seccomp_policy_load. ENOENT if absent or untrustworthy. */
int seccomp_bpf_load_cached(const char *cache_dir, const char *hash, struct seccomp_bpf *out,
			    struct vs_error *err);

/* Validate a policy (name or file) without loading: for create-time checks.
 * Compiles it for caps_default_mask(). */
int seccomp_policy_check(const char *name, struct vs_error *err);

/* Install in the calling thread (after PR_SET_NO_NEW_PRIVS, or with
 * CAP_SYS_ADMIN). Flags SECCOMP_FILTER_FLAG_SPEC_ALLOW, retried with 0 on
 * EINVAL (kernel < 4.17). No allocation; safe after fork (and after vfork /
 * CLONE_VM). Returns 0 or -errno (-EACCES: no NNP and no CAP_SYS_ADMIN).
 * Unconfined: no-op. Other threads are not filtered (no TSYNC): call it in
 * the single-threaded workload right before execve. */
int seccomp_bpf_install(const struct seccomp_bpf *bpf);

/* Free insns and reset; safe on a zeroed or already freed struct. */
void seccomp_bpf_free(struct seccomp_bpf *bpf);

#endif
