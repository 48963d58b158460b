/*
 * slice_files_int.h - what the two halves of slice_files.h share: the tar
 * packer and unpacker (slice_files_tar.c) and the slice side that runs them
 * inside a slice (slice_files.c). Internal to lib/node.
 */
#ifndef VSLICE_SLICE_FILES_INT_H
#define VSLICE_SLICE_FILES_INT_H

#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "../image/archive_dl.h"
#include "vslice/error.h"

/* Every path inside a slice, from its root. */
#define FILES_SLICE_RESOLV (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

/* Where paths are resolved: the host (AT_FDCWD, no restriction) or a
 * slice's root (its fd, FILES_SLICE_RESOLV). */
struct files_where {
	int root_fd;
	uint64_t resolve;
	bool host;
};

/* What files_pack_run sends: the top, opened (a file or a directory). */
struct pack_src {
	int fd;
	struct stat st;
	char name[NAME_MAX + 1];
};

/* One unpack. The caller sets w, in_fd, shown and err (and parent_fd, name
 * when it has the target already); the rest is files_unpack_run's. */
struct unpacker {
	const struct files_where *w;
	struct archive *a;
	int in_fd;
	uint8_t *buf;
	bool in_header;
	uint64_t header_bytes;
	struct vs_error rfail; /* why reading the stream failed (code 0: it did not) */
	/* The target: name in parent_fd (NULL: the top entry's name). */
	int parent_fd;
	const char *name;
	const char *shown; /* the target as the user wrote it */
	char final[NAME_MAX + 1], tmp[NAME_MAX + 1], top[NAME_MAX + 1];
	bool made; /* tmp exists */
	int stage_fd;
	/* The walk below the top: cur ("" = the top) and the mtimes to set on
	 * leaving each level (0 = the top). */
	char cur[PATH_MAX];
	size_t depth;
	struct timespec *mtimes;
	struct vs_error *err;
};

/* Called before the rename into place: < 0 (err filled) aborts. */
typedef int (*files_commit_fn)(void *arg, struct vs_error *err);

/* A slice path ("/a/b", "a/b") relative to its root ("a/b", "."). */
const char *files_slice_rel(const char *path);
/* Resolve and open path where w says (the top of a copy; a final symlink
 * followed where w allows); shown names it in errors. */
int files_pack_open(const struct files_where *w, const char *path, const char *shown,
		    struct pack_src *s, struct vs_error *err);
/* Write s's stream to out_fd. */
int files_pack_run(struct pack_src *s, int out_fd, struct vs_error *err);
/* The target of an unpack: dest a directory (into it), else dest's parent
 * under dest's name (in name). Fills u->parent_fd and u->name. */
int files_unpack_open(struct unpacker *u, const char *dest, char name[NAME_MAX + 1]);
/* Read u->in_fd's stream into the target, commit(arg), rename into place;
 * nothing is left on failure. */
int files_unpack_run(struct unpacker *u, files_commit_fn commit, void *arg);

#endif
