/*
 * slice_xfer.h - a stopped slice's file system as one stream: what cold
 * migration sends from the source node to the target node
 * (docs/migration.md, "The file system stream").
 *
 * The stream is the slice's log and its overlay upper dir (the file system
 * delta: owners relative to the slice's id range, modes with set-id and
 * sticky bits, mtimes, trusted.overlay.* / user.* xattrs and file
 * capabilities, sparse files as data + holes, hard links once, symlinks,
 * fifos, overlay whiteouts) as a pax archive (libarchive) cut into
 * length-prefixed frames, followed by a sha256 trailer over every byte
 * before it. It works on plain and on --disk slices (their upper dir is
 * in their ext4 image: slice_with_upper()).
 *
 * The receiver trusts nothing in it: every entry is checked (a path inside
 * the staging dir, reached without a symlink, in walk order; owners within
 * the relative range 0..65535; no device but 0:0 whiteouts; known xattrs
 * only), memory stays bounded whatever the input, and nothing of the slice
 * changes unless the whole stream arrived and verified.
 */
#ifndef VSLICE_SLICE_XFER_H
#define VSLICE_SLICE_XFER_H

#include <stdint.h>

#include "vslice/error.h"

struct slice_xfer_stats {
	uint64_t bytes; /* stream bytes written / read, trailer included */
	uint64_t files; /* archive entries (the log, directories, files, links...) */
	uint64_t usecs; /* wall time of the call */
};

/* progress: called every >= 1 MiB of stream and once at the end (bytes so
 * far); may be NULL. */
typedef void (*slice_xfer_progress)(void *arg, uint64_t bytes);

struct slice_xfer_opts {
	slice_xfer_progress progress;
	void *arg;
};

/*
 * Write the stopped (not running) slice `name`'s log and file system delta
 * to out_fd (a blocking pipe, socket or file), then the sha256 trailer. o
 * and st may be NULL. SIGPIPE is not touched: a caller writing to a socket
 * or pipe whose reader may die should ignore or block it; the call then
 * fails with EPIPE. Thread-safe (several slices may be sent at once).
 * Errors: a running or frozen slice: EBUSY, kind VS_EK_BUSY, nothing sent.
 * A file the stream cannot carry (a device node other than a whiteout):
 * kind VS_EK_REFUSED. I/O errors name the file.
 */
int slice_fs_send(const char *root, const char *name, int out_fd, const struct slice_xfer_opts *o,
		  struct slice_xfer_stats *st, struct vs_error *err);

/*
 * Read such a stream from in_fd into the existing, not running slice `name`
 * (created from the same manifest, never started or stopped): its upper dir
 * and its log are replaced by the stream's, owners shifted into this
 * slice's id range. Everything is written into a staging dir beside the
 * upper dir (and a staging file beside the log) and swapped in (rename)
 * only after the trailer verified; on any error the slice is unchanged and
 * nothing staged is left. Reads exactly up to the trailer: in_fd (blocking)
 * may carry more after it. Memory stays under ~40 MiB whatever the input
 * (~7 MiB for a normal stream).
 * Errors: a running slice: EBUSY, kind VS_EK_BUSY. A stream that is not one,
 * is truncated, fails its checksum or holds an entry the receiver refuses
 * (absolute path, "..", a path through a symlink, an owner outside the
 * range, a device node, an unknown xattr): kind VS_EK_REFUSED, the message
 * naming the entry. A full file system: ENOSPC (kind VS_EK_LIMIT).
 */
int slice_fs_receive(const char *root, const char *name, int in_fd, const struct slice_xfer_opts *o,
		     struct slice_xfer_stats *st, struct vs_error *err);

#endif
