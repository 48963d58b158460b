/*
 * image.h - the image store: read-only root file systems that slices share
 * as the lower layer of their overlay.
 *
 * Layout: <root>/images/<name>/rootfs/ and <root>/images/<name>/image.json
 * ({"name","source","created","size"}; created is Unix seconds, size the
 * bytes of regular files, hard-linked inodes counted once). Everything is
 * built in <root>/images/.tmp-<name>-XXXXXX (mode 0700) and renamed into
 * place (RENAME_NOREPLACE), so a failed build or import leaves nothing
 * behind and a concurrent build of the same name loses with EEXIST. Files are
 * owned by host root (0:0) when the caller is root - the runtime id-maps
 * them into each slice; as non-root they keep the caller's ids.
 *
 * Every image in the store, whatever its source, holds only directories,
 * regular files (no setuid/setgid bits) and symlinks whose target is
 * relative, has ".." only as leading components and climbs no higher than
 * the image root. No device nodes, FIFOs or sockets (the runtime provides
 * /dev). So following symlinks inside an image never leads out of it, even
 * from the host; still, host code should resolve paths in an image with
 * openat2(RESOLVE_IN_ROOT) or O_NOFOLLOW walks.
 *
 * Errors: < 0 (negative errno) with err naming the image, e.g.
 *   EEXIST "image busybox: already exists (remove it with: slicectl image rm busybox)"
 *   ENOENT "image web: no such image (see: slicectl image list)"
 *   EPERM  "image web: import ./x.tar: entry \"../etc/passwd\": path leaves the image"
 *   EINVAL invalid name (vs_check_name), unreadable archive
 *   EFBIG  size limit hit
 *
 * Changes from the first draft of this contract: name NULL in
 * image_build_busybox means "busybox"; the size limits and their
 * environment overrides; directories follow the same rules as archives;
 * hard links only to regular files; symlinks take ".." only as leading
 * components; OCI and docker-save archives are flattened; image_import_ex with
 * IMAGE_IMPORT_RELATIVIZE_SYMLINKS.
 */
#ifndef VSLICE_IMAGE_H
#define VSLICE_IMAGE_H

#include <stdint.h>
#include <time.h>

#include "vslice/error.h"

struct image_info {
	char name[64];
	char source[256]; /* "busybox:/bin/busybox", "archive:/abs/x.tar", "dir:/abs/rootfs" */
	uint64_t size;	  /* bytes of regular files */
	time_t created;	  /* Unix seconds */
};

/*
 * Image "name" (NULL: "busybox") from the host's static busybox (busybox
 * NULL: the first of /bin/busybox, /usr/bin/busybox, /sbin/busybox,
 * /usr/sbin/busybox). ENOEXEC, with the hint "apt-get install
 * busybox-static", if it is dynamically linked (has PT_INTERP); ENOENT with
 * the same hint if none is found. The rootfs: bin/busybox (0755), one
 * relative symlink per applet of `busybox --list-full` at its listed path
 * (usr/bin/env -> ../../bin/busybox, bin/sh -> busybox), dev proc sys run
 * mnt home etc var usr/bin usr/sbin sbin, tmp and var/tmp 1777, root 0700,
 * etc/{passwd,group,shadow,hostname,hosts,nsswitch.conf,resolv.conf}
 * (root and nobody/nogroup 65534; hosts: 127.0.0.1 localhost).
 */
int image_build_busybox(const char *root, const char *name, const char *busybox,
			struct vs_error *err);

/*
 * Import path as image name. path is a rootfs directory (copied without
 * following symlinks; hard links become separate files) or a tar archive -
 * ustar, pax or GNU, plain or gzip/xz/bzip2/zstd/lz4/lzma-compressed,
 * recognised by content, never by file name. Entries are created one by one
 * with openat() below the staging rootfs, never through a symlink.
 *
 * Refused, naming the entry, with the whole import aborted and nothing left:
 *   - absolute paths ("/etc/x") and any ".." component ("a/../../x");
 *   - symlinks with an absolute target ("/etc/passwd"), whose leading ".."
 *     climb above the image root ("a -> ../../.."), or with a ".." after a
 *     name ("x -> d/l/..": harmless alone, an escape if d/l -> ..);
 *   - entries whose parent path goes through a symlink (even one inside);
 *   - hard links with an absolute or ".." target, or to anything but a
 *     regular file already extracted;
 *   - character and block devices, FIFOs, sockets;
 *   - a file over the per-entry limit (default 8 GiB, $VSLICE_IMAGE_MAX_ENTRY,
 *     e.g. "512M") or an image over the total (default 32 GiB,
 *     $VSLICE_IMAGE_MAX_TOTAL); for archives the declared size counts, so
 *     sparse bombs are refused before a byte is written;
 *   - truncated or garbage archives, and an archive with no entries.
 * An OCI image layout archive (oci-layout + index.json at its top, e.g.
 * `skopeo copy docker://alpine oci-archive:a.tar`, `docker save` >= 25) is
 * unpacked inside the staging dir, then flattened: index -> (nested index,
 * the linux/<this arch> entry, or the only one) -> manifest -> layers in
 * order, each under the same rules, with whiteouts (".wh.NAME" removes NAME
 * below, ".wh..wh..opq" empties the directory below) applied to the layers
 * underneath and an upper non-directory replacing a whole lower tree. The
 * layout is removed before commit. Digests are used as blob names only, not
 * verified. Source becomes "oci-archive:/abs/path". The pre-OCI
 * `docker save` format (manifest.json [{"Config","Layers":[...]}] at the
 * top, one image) is flattened the same way ("docker-archive:/abs/path").
 * During a flatten the unpacked archive sits in the staging dir too, so
 * the disk needs room for both.
 * Silently normalised: setuid/setgid bits are cleared (mode & 01777), owners
 * become 0:0 (as root), a leading "./" is dropped, later duplicate entries
 * replace earlier ones (as tar does). Modes and mtimes are kept.
 */
int image_import(const char *root, const char *name, const char *path, struct vs_error *err);

/*
 * image_import with flags. IMAGE_IMPORT_RELATIVIZE_SYMLINKS: instead of
 * refusing an absolute symlink, rewrite it to the relative path that means
 * the same inside the slice ("/usr/share/zoneinfo/UTC" at etc/localtime ->
 * "../usr/share/zoneinfo/UTC"; ".." in it resolved lexically, clamped at
 * "/"). Real distribution trees (Debian's /etc, Alpine's busybox links) are
 * full of absolute symlinks and cannot be imported without it.
 */
#define IMAGE_IMPORT_RELATIVIZE_SYMLINKS 0x1u
int image_import_ex(const char *root, const char *name, const char *path, unsigned flags,
		    struct vs_error *err);

/* All images, sorted by name (caller frees *out; *out NULL when *n is 0).
 * Skips .tmp-* staging dirs and dirs without a readable image.json. A missing
 * <root>/images is an empty list. */
int image_list(const char *root, struct image_info **out, size_t *n, struct vs_error *err);

/* One image's metadata; ENOENT "image X: no such image (see: slicectl image list)". */
int image_get(const char *root, const char *name, struct image_info *info, struct vs_error *err);

/* Remove (renamed out of sight first, then rm -rf); ENOENT as image_get.
 * The caller checks no slice uses it. */
int image_rm(const char *root, const char *name, struct vs_error *err);

/* *path = malloc'd "<root>/images/<name>/rootfs" (caller frees); ENOENT
 * "image X: no such image (build it with: slicectl image build busybox)" if
 * it is missing (for names other than busybox the hint also names
 * "slicectl image import X PATH"). */
int image_rootfs(const char *root, const char *name, char **path, struct vs_error *err);

#endif
