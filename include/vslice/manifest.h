/*
 * manifest.h - experiment manifests: the JSON file a researcher keeps in git
 * and `slicectl submit` turns into a slice (format: docs/manifest.md, schema:
 * docs/manifest.schema.json).
 *
 * Parsing validates everything it can check without a node: types, units,
 * names, paths, conflicts, and that `files[].source` / `policy` files exist
 * below the manifest's directory (they are read at parse time, so a parsed
 * manifest holds every byte it will place in the slice). It collects EVERY
 * error, each with the JSON path of the value it is about:
 *     .resources.memory: "lots" is not a size (use e.g. 256M)
 *     .run.comand: unknown key (did you mean "command"?)
 * JSON syntax errors carry a line and column instead of a path.
 *
 * Ownership: on success *out is a manifest the caller frees with
 * manifest_free(); on failure *out is NULL and nothing is left allocated
 * except the error list, which the caller frees with manifest_errors_free().
 *
 * This module knows the manifest format only, not slices: the one conversion
 * to a slice spec is experiment_spec() in lib/node (experiment.h), the side
 * that knows both.
 */
#ifndef VSLICE_MANIFEST_H
#define VSLICE_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "vslice/error.h"
#include "vslice/netcfg.h"

#define MANIFEST_API_VERSION	   "vslice/v1"
#define MANIFEST_NAME_MAX	   64 /* .slice and .image, NUL included (= SLICE_NAME_MAX) */
#define MANIFEST_MAX_SIZE	   (4u << 20)  /* manifest text */
#define MANIFEST_RESOLVED_MAX_SIZE (24u << 20) /* resolved form: files inline, base64 */
#define MANIFEST_FILE_MAX	   (1u << 20)  /* one files[] entry */
#define MANIFEST_FILES_TOTAL_MAX   (16u << 20) /* all files[] together */
#define MANIFEST_FILES_MAX	   1024	       /* files[] entries */
/* Written by vslice into every slice made from a manifest (experiment.h:
 * where am I): a manifest may not set them. */
#define MANIFEST_PEERS_FILE "/etc/vslice/peers"
#define MANIFEST_ENV_RESERVED                                                                      \
	{                                                                                          \
		"VSLICE_SLICE", "VSLICE_NODE", "VSLICE_PEERS", "VSLICE_REGISTRY", NULL             \
	}
#define MANIFEST_RESULTS_MAX	  256	       /* results[] entries */
#define MANIFEST_ERRORS_MAX	  100	       /* errors kept; the rest are counted */
#define MANIFEST_DEFAULT_LIFETIME (14 * 86400) /* when neither lifetime nor expires */

struct manifest_error {
	char *path;	  /* JSON path (".run.command[0]", "." for the whole document);
			   * "" for errors not about a value (syntax, I/O) */
	char *message;	  /* what is wrong and what was expected */
	int line, column; /* > 0 for JSON syntax errors */
};

struct manifest_errors {
	struct manifest_error *v;
	size_t n, cap;
	size_t dropped; /* errors past MANIFEST_ERRORS_MAX, not stored */
};

struct manifest_file {
	char *path;	     /* absolute, normalized path inside the slice */
	unsigned char *data; /* content (inline or read from source); NUL-terminated */
	size_t len;
	mode_t mode;  /* permission bits, <= 0777 (default 0644) */
	char *source; /* source path relative to the manifest, NULL if inline */
};

struct manifest_label {
	char *key, *value;
};

/*
 * A validated manifest. Every field holds its default when the manifest left
 * it out; strings the manifest did not give are NULL where noted.
 */
struct manifest {
	char name[MANIFEST_NAME_MAX]; /* .slice */
	char *description;	      /* NULL if absent */
	char *base_dir;		      /* absolute directory of the manifest */

	uint64_t lifetime_secs; /* .lifetime, or MANIFEST_DEFAULT_LIFETIME; 0 if expires */
	time_t expires;		/* .expires (UTC), 0 if not given */

	bool nodes_given;	       /* false: the local node in local mode */
	unsigned node_count;	       /* .nodes.count, 0 when names are given */
	struct manifest_label *labels; /* .nodes.labels, in document order */
	size_t nlabels;
	char **node_names; /* .nodes.names, NULL-terminated, or NULL */
	size_t nnode_names;

	char image[MANIFEST_NAME_MAX]; /* default "busybox" */
	uint64_t cpu_millis;	       /* 0 = no quota */
	uint64_t memory_bytes;	       /* 0 = no limit */
	uint64_t pids_max;	       /* 0 = no limit */
	uint64_t disk_bytes;	       /* .resources.disk, 0 = no limit (slice_spec.disk_bytes) */
	char *policy;	   /* builtin name, or absolute path of a file; NULL = default */
	char *policy_json; /* an inline policy ("policy": {...}), compact JSON; NULL if none */
	char network[8];   /* "none" (default), "bridge" or "host" */
	char **env;	   /* NULL-terminated "K=V", document order; never NULL */
	size_t nenv;

	struct manifest_file *files;
	size_t nfiles;

	char **argv; /* .run.command; string form -> {"/bin/sh","-c",cmd} */
	size_t argc;
	bool shell_command;    /* command was given as a string */
	char *workdir;	       /* NULL = "/" */
	uint64_t timeout_secs; /* 0 = none */
	bool restart_on_failure;
	unsigned restart_limit; /* restarts allowed, 0 unless on-failure (default 3) */

	/* .network object (bridge): publish, rate; no-egress from the mode */
	struct netcfg_slice netopts;

	char **results; /* absolute paths inside the slice, NULL-terminated */
	size_t nresults;

	char *text; /* the JSON text as parsed */
	size_t text_len;
};

/*
 * Parse and validate len bytes of JSON. base_dir is the directory the
 * manifest lives in (files[].source and a policy path are resolved below it).
 * base_dir NULL parses a resolved manifest (as the registry and node
 * managers get it): nothing is read from disk, so files[].source and policy
 * files are errors, and the text may be up to MANIFEST_RESOLVED_MAX_SIZE. Returns 0 and *out, or a
 * negative errno
 * (-EINVAL for an invalid manifest) with every problem appended to errs
 * (errs must be zero-initialized or hold earlier errors).
 */
int manifest_parse(const char *json, size_t len, const char *base_dir, struct manifest **out,
		   struct manifest_errors *errs);

/* Read path (at most MANIFEST_MAX_SIZE bytes) and parse it with its
 * directory as base_dir. I/O errors land in errs with an empty path. */
int manifest_load_file(const char *path, struct manifest **out, struct manifest_errors *errs);

/* Free m and everything it holds (NULL is fine). */
void manifest_free(struct manifest *m);
static inline void vs_manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}
/* cleanup_manifest struct manifest *m = NULL;  freed at scope end. */
#define cleanup_manifest __attribute__((cleanup(vs_manifest_freep)))

/*
 * The resolved form of m, for cluster mode (docs/cluster-api.md): m's JSON
 * with every file inline ("content" base64, "encoding": "base64") and a
 * policy file replaced by its JSON object. Parses with base_dir NULL. The
 * caller owns the result (json_decref); NULL with err set on failure.
 */
json_t *manifest_resolve(const struct manifest *m, struct vs_error *err);

/* Free the error list's entries and zero it (NULL is fine). */
void manifest_errors_free(struct manifest_errors *errs);
static inline void vs_manifest_errors_freep(struct manifest_errors *errs)
{
	manifest_errors_free(errs);
}
/* cleanup_manifest_errors struct manifest_errors errs = {0};  freed at scope end. */
#define cleanup_manifest_errors __attribute__((cleanup(vs_manifest_errors_freep)))

/* Print each error on its own line: "<prefix>:<line>:<col>: <message>" for
 * syntax errors, "<prefix>: <path>: <message>" otherwise, and a count of
 * dropped errors. prefix may be NULL. */
void manifest_errors_print(const struct manifest_errors *errs, FILE *f, const char *prefix);

/* Check a path given inside the slice (absolute, normalized, not "/"...).
 * Returns NULL if fine, else a static description of the problem. */
const char *manifest_check_slice_path(const char *p);

#endif
