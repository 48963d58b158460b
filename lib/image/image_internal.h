/*
 * image_internal.h - what image.c, busybox.c and import.c share: the staging
 * transaction (tmp dir under <root>/images, commit by rename, abort by rm -rf)
 * and the no-follow path walking every writer of a rootfs goes through.
 */
#ifndef VSLICE_IMAGE_INTERNAL_H
#define VSLICE_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/error.h"
#include "vslice/image.h"
#include "vslice/units.h"

/* A build in progress: <root>/images/.tmp-<name>-XXXXXX with rootfs/ inside. */
struct image_stage {
	char *images; /* <root>/images */
	char *tmp;    /* <root>/images/.tmp-<name>-XXXXXX, NULL once committed */
	char *rootfs; /* tmp + "/rootfs" */
	int rootfd;   /* O_PATH-free O_DIRECTORY fd on rootfs, -1 when closed */
	const char *name;
};

/*
 * Validate name, refuse an existing image (EEXIST with the rm hint), create
 * <root>/images and the staging dir. On failure nothing is left behind.
 */
int image_stage_begin(struct image_stage *st, const char *root, const char *name,
		      struct vs_error *err);
/* Compute the size, write image.json, rename into place (no replace). */
int image_stage_commit(struct image_stage *st, const char *source, struct vs_error *err);
/* Remove the staging dir if still there and free st's strings. Idempotent. */
void image_stage_end(struct image_stage *st);

static inline void image_stage_endp(struct image_stage *st)
{
	image_stage_end(st);
}
#define cleanup_stage __attribute__((cleanup(image_stage_endp)))

/* Sum of st_size of regular files below dirfd (hard-linked inodes once). */
int image_tree_size(int dfd, uint64_t *out, struct vs_error *err);

/* Owner every image file gets; chown only happens when running as root. */
bool image_can_chown(void);

/*
 * Open the directory that will hold the last component of rel (relative to
 * rootfd, already split into clean components: no "", ".", ".." and no '/'
 * at either end), creating missing intermediate directories 0755 (mode
 * mkdir_mode) and never following a symlink: a symlink or non-directory in
 * the middle is ENOTDIR. *leaf points into rel at the last component.
 */
int image_open_parent(int rootfd, const char *rel, bool create, const char **leaf,
		      struct vs_error *err);

/*
 * Normalise an entry path: drop leading "./" and "/"-repeats, refuse absolute
 * paths and ".." components. Returns a malloc'd clean path ("" for the root
 * itself) or NULL with err set (message without the entry name; the caller
 * wraps it).
 */
char *image_clean_path(const char *path, struct vs_error *err);

/*
 * May a symlink at rel (clean) point to target? Only relative targets whose
 * ".." components all come first and climb no higher than the image root.
 * Since every directory an entry is created in is a real directory (never
 * reached through a symlink), such a link stays inside the image however it
 * is resolved - inside the slice or by host code following it from the
 * host's root - even when several links chain ("d/l -> ..", "x -> d/l/.."
 * would escape on the host and is why mid-path ".." is refused).
 */
enum image_link {
	IMAGE_LINK_OK,
	IMAGE_LINK_ABSOLUTE,	  /* "/etc/passwd" (or empty) */
	IMAGE_LINK_LEAVES,	  /* "../../.." from a shallow link */
	IMAGE_LINK_DOTDOT_INSIDE, /* "a/../b": ".." after a name */
};
enum image_link image_symlink_check(const char *rel, const char *target);

/* Per-entry and total byte limits ($VSLICE_IMAGE_MAX_ENTRY, $VSLICE_IMAGE_MAX_TOTAL). */
struct image_limits {
	uint64_t max_entry;
	uint64_t max_total;
	uint64_t total;
};
int image_limits_init(struct image_limits *l, struct vs_error *err);
/* Account one regular file of size bytes; EFBIG with a message naming the limit. */
int image_limits_add(struct image_limits *l, uint64_t size, struct vs_error *err);

#endif
