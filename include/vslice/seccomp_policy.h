/*
 * seccomp_policy.h - seccomp policies in OCI/Docker JSON, compiled with
 * libseccomp, cached as BPF by content hash.
 *
 * Format: defaultAction, defaultErrnoRet, architectures / archMap,
 * syscalls[].names / name / action / errnoRet / args[{index,value,valueTwo,op}],
 * includes/excludes (caps, arch) as Docker's profile uses them. Unknown
 * syscall names are skipped (as crun does); unknown keys, actions and ops are
 * errors naming the JSON path.
 *
 * Named policies "default", "strict", "unconfined" are compiled into the
 * binary (build/gen/policies.c, from policies/seccomp/NAME.json); anything
 * else is a path to a JSON file.
 */
#ifndef VSLICE_SECCOMP_POLICY_H
#define VSLICE_SECCOMP_POLICY_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"

struct seccomp_bpf {
	struct sock_filter *insns;	/* NULL when unconfined */
	size_t len;			/* number of instructions */
	char hash[65];			/* sha256 hex of the policy text */
	bool unconfined;
};

/* Embedded policy text by name, or NULL. */
const char *seccomp_policy_builtin(const char *name);
/* True if name is a builtin name; else it is treated as a file path. */
bool seccomp_policy_is_builtin(const char *name);

/* Parse + compile policy text (no cache). caps_mask: capabilities the
 * process will keep (for Docker's includes.caps). */
int seccomp_policy_compile(const char *json, size_t len, uint64_t caps_mask,
			   struct seccomp_bpf *out, struct vs_error *err);

/* Resolve name (builtin or file), then load BPF from cache_dir/<hash>.bpf or
 * compile and store it there (atomically). cache_dir NULL = no cache. */
int seccomp_policy_load(const char *name, const char *cache_dir, uint64_t caps_mask,
			struct seccomp_bpf *out, struct vs_error *err);

/* Validate a policy (name or file) without loading: for create-time checks. */
int seccomp_policy_check(const char *name, struct vs_error *err);

/* Install in the calling thread (after PR_SET_NO_NEW_PRIVS). No allocation;
 * safe after fork. Returns -errno. Unconfined: no-op. */
int seccomp_bpf_install(const struct seccomp_bpf *bpf);

void seccomp_bpf_free(struct seccomp_bpf *bpf);

#endif
