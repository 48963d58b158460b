/*
 * experiment.h - a manifest turned into a slice on this node, and its result
 * files read back out. Shared by `slicectl submit` (local mode) and
 * vslice-nodemgr (cluster mode: one sliver per assigned node).
 *
 * The host touches the slice's file system only through its overlay upper
 * dir and always relative to a directory fd: files are placed before the
 * slice first runs, component by component with O_NOFOLLOW and O_EXCL;
 * results are opened with openat2(RESOLVE_IN_ROOT), so a symlink the slice
 * planted resolves inside the upper dir, never on the host. A slice with a
 * disk limit has its upper dir inside its image: the same walk runs there,
 * with the image mounted for the while (slice_with_upper, slice.h).
 */
#ifndef VSLICE_EXPERIMENT_H
#define VSLICE_EXPERIMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "vslice/error.h"
#include "vslice/manifest.h"

#define EXPERIMENT_FILE	  "experiment.json" /* in the slice dir */
#define RESULTS_DEPTH_MAX 64

struct slice_spec; /* slice.h */

/*
 * Fill spec (zeroed first) from m: name, image, hostname (= slice name with
 * '_' as '-'), policy (and an inline policy's JSON as policy_text), workdir,
 * limits, lifetime (from expires: seconds left), net, env, argv, timeout,
 * restart_max. The one manifest -> spec conversion. The caller frees spec
 * with slice_spec_free(). Fails (spec left zeroed) when expires has passed
 * since parsing. Files, results and nodes stay in m.
 */
int experiment_spec(const struct manifest *m, struct slice_spec *spec, struct vs_error *err);

/*
 * Create the slice m describes (experiment_spec + slice_create; an inline
 * policy is kept in the slice dir), place m's files and record
 * experiment.json (origin: the manifest's path, or "registry URL"; node: the
 * sliver's node name) - last, so a slice with experiment.json is complete.
 * Does not start it. On failure nothing is left behind (a crash of the
 * caller can leave a slice without experiment.json: see nodemgr.h).
 */
int experiment_create(const char *root, const struct manifest *m, const char *origin,
		      const char *node, struct vs_error *err);

/* The steps of experiment_create, in order. */
enum experiment_step {
	EXPERIMENT_SLICE_CREATED = 1, /* slice_create done: dir, id range, cgroup, spec */
	EXPERIMENT_FILES_PLACED,      /* m's files are in the upper dir */
	EXPERIMENT_RECORDED,	      /* experiment.json written: the create is complete */
};

/*
 * Where am I: every slice made from a manifest gets, in its environment,
 * VSLICE_SLICE (the slice), VSLICE_NODE (this node: its name in cluster
 * mode, "local" in local mode), VSLICE_PEERS (the other nodes of the
 * slice, space-separated, "" when none), in cluster mode VSLICE_REGISTRY
 * (the registry's URL, as the node manager reaches it), and the file
 * EXPERIMENT_PEERS_FILE
 * in its upper layer: one line "NODE ADDRESS" per sliver of the slice, this
 * one included, "-" where no address is known (docs/manifest.md). A
 * manifest may not set these (manifest.c refuses them).
 */
#define EXPERIMENT_PEERS_FILE MANIFEST_PEERS_FILE

struct experiment_create_opts {
	/* Called after each step that succeeded (the node manager's crash
	 * test hook); NULL: none. */
	void (*step)(void *arg, enum experiment_step step);
	/* The nodes holding a sliver of this slice, this one included,
	 * NULL-terminated (the registry's slice object, "nodes"); NULL: this
	 * node alone. Names that are not node names are skipped. */
	char *const *nodes;
	/* The overlay's addresses: addresses[i] is nodes[i]'s sliver's ("":
	 * unknown), NULL: none known; address: this sliver's (NULL or "":
	 * none). EXPERIMENT_PEERS_FILE shows them ("-" where none). */
	char *const *addresses;
	const char *address;
	/* The registry's URL, for VSLICE_REGISTRY; NULL: not set (local). */
	const char *registry;
	void *arg;
};

/* experiment_create with o (may be NULL). */
int experiment_create_with(const char *root, const struct manifest *m, const char *origin,
			   const char *node, const struct experiment_create_opts *o,
			   struct vs_error *err);

/* The origin and node recorded at create (caller frees; NULL if absent). */
int experiment_origin(const char *root, const char *name, char **origin, char **node,
		      struct vs_error *err);

/* The result paths recorded at create: NULL-terminated, absolute slice
 * paths; free with vs_strv_free(). -ENOENT when the slice was not created
 * from a manifest. */
int experiment_result_paths(const char *root, const char *name, char ***out, size_t *n,
			    struct vs_error *err);

/* What experiment_walk_results reports. rel is the path inside the slice
 * without its leading '/'. */
struct experiment_walk {
	/* A regular file: fd is open read-only at offset 0 (closed after). */
	int (*file)(void *arg, const char *rel, int fd, const struct stat *st,
		    struct vs_error *err);
	/* A directory, before its entries (NULL: not reported). */
	int (*dir)(void *arg, const char *rel, struct vs_error *err);
	/* Something not copied: missing (a result path the run did not write),
	 * skipped (symlink inside a directory, device, too deep, control
	 * characters in a name) or failed (an I/O error, or file/dir returned
	 * an error: then why is that error's message). */
	void (*problem)(void *arg, const char *rel, const char *why, bool missing, bool failed);
	void *arg;
};

/* Walk the result paths (n of them) of slice name, in its upper dir
 * (read-only; the callbacks run in the caller's process). */
int experiment_walk_results(const char *root, const char *name, char *const *paths, size_t n,
			    const struct experiment_walk *w, struct vs_error *err);

#endif
