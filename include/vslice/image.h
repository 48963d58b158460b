/*
 * image.h - the image store: read-only root file systems that slices share
 * as the lower layer of their overlay.
 *
 * Layout: <root>/images/<name>/rootfs/ and <root>/images/<name>/image.json
 * ({"name","source","created","size"}). Everything is built in
 * <root>/images/.tmp-<name>-XXXXXX and renamed into place, so a failed build
 * or import leaves nothing behind. Files are owned by host root; the runtime
 * id-maps them into each slice.
 */
#ifndef VSLICE_IMAGE_H
#define VSLICE_IMAGE_H

#include <stdint.h>
#include <time.h>

#include "vslice/error.h"

struct image_info {
	char name[64];
	char source[256];
	uint64_t size;		/* bytes of regular files */
	time_t created;
};

/* Image "name" from the host's static busybox (busybox NULL: search
 * /bin/busybox, /usr/bin/busybox; must be statically linked). */
int image_build_busybox(const char *root, const char *name, const char *busybox,
			struct vs_error *err);
/*
 * Import a rootfs directory, .tar, .tar.gz (libarchive). Refused, naming the
 * entry: absolute paths, ".." components, symlinks with absolute targets or
 * that leave the image, hard links out of the image, device nodes, FIFOs.
 * setuid/setgid bits are cleared. Nothing is left behind on failure.
 */
int image_import(const char *root, const char *name, const char *path, struct vs_error *err);
/* All images, sorted by name (caller frees *out). */
int image_list(const char *root, struct image_info **out, size_t *n, struct vs_error *err);
int image_get(const char *root, const char *name, struct image_info *info, struct vs_error *err);
/* Remove; ENOENT if missing. The caller checks no slice uses it. */
int image_rm(const char *root, const char *name, struct vs_error *err);
/* <root>/images/<name>/rootfs, ENOENT (with a "build it with ..." hint) if missing. */
int image_rootfs(const char *root, const char *name, char **path, struct vs_error *err);

#endif
