/*
 * slice_files.h - copying files and directory trees into and out of a
 * slice (`slicectl cp`, the node manager's /v1/slivers/NAME/files route).
 *
 * Both directions carry a tar stream (pax, libarchive) whose first entry
 * is the copied file or directory under its own name (one component) and
 * whose other entries are below it, parents first. Regular files,
 * directories and symlinks only; modes, owners and mtimes kept.
 *
 * Slice side (slice_files_start): a child process does the work seen from
 * inside the slice, as the slice's root: a running (or frozen) slice's
 * user and mount namespaces are joined (setns on its PID 1's pidfd); a
 * stopped one's overlay (its upper dir over the id-mapped image, in its
 * disk image with --disk) is mounted as a detached mount under the slice's
 * lock and a user namespace mapped to the slice's id range is joined. So
 * what the copy may touch is what the slice's root may touch, owners are
 * the slice's view (0..65535), bytes written land on the slice's file
 * system (its --disk limit), and every path inside the slice is resolved
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from its root: an
 * absolute symlink or a ".." that would leave the root, at any component,
 * is refused (EXDEV, kind VS_EK_REFUSED).
 *
 * Host side (slice_files_pack / slice_files_unpack): the same stream from
 * or to a host path, as the caller (host root). Set-id bits never reach
 * the host.
 *
 * Unpacking, on either side, trusts nothing in the stream: entry paths are
 * plain relative components under the first entry, each created with *at()
 * calls that never follow a symlink in a directory the stream made itself,
 * libarchive's input per header is capped (2 MiB), and everything is
 * written under a temporary name beside the target and renamed into place
 * only once the whole stream arrived and was accepted: a refusal or a
 * failure leaves nothing behind.
 */
#ifndef VSLICE_SLICE_FILES_H
#define VSLICE_SLICE_FILES_H

#include <stdbool.h>
#include <sys/types.h>

#include "vslice/error.h"

enum slice_files_op {
	SLICE_FILES_GET, /* the slice's path -> a stream on io_fd */
	SLICE_FILES_PUT, /* a stream on io_fd -> the slice's path */
};

/* A copy running in a child process (slice_files_start). */
struct slice_files_job {
	pid_t pid;
	int status_fd; /* the child's two reports: ready, then done */
	int commit_fd; /* PUT: one byte here lets the child rename into place */
};

/*
 * Start the slice side of a copy on the slice `name` (running, frozen or
 * stopped): GET writes path's stream to io_fd, PUT reads one from io_fd and
 * puts it at path (into path if that is a directory, else as path, whose
 * parent must exist). Returns once the child has resolved path (so a bad
 * path, an escape, a missing slice fail here, before any data flows), with
 * *job filled; the caller then feeds or drains io_fd (its own copy of it
 * may be closed at once) and calls slice_files_finish. A PUT renames its
 * result into place only after slice_files_commit: a stream cut short
 * (the feeder failed) leaves nothing. Thread-safe; forks.
 * Errors: no such slice (ENOENT), an escaping path (EXDEV, kind
 * VS_EK_REFUSED), a missing file or parent (ENOENT), naming the path.
 */
int slice_files_start(const char *root, const char *name, enum slice_files_op op, const char *path,
		      int io_fd, struct slice_files_job *job, struct vs_error *err);
/* PUT: the stream was complete; let the child rename its result into place. */
void slice_files_commit(struct slice_files_job *job);
/* Wait for the child; its error if it failed. Always reaps it. */
int slice_files_finish(struct slice_files_job *job, struct vs_error *err);

/*
 * Host side: write the stream of host_path (a file or a directory tree;
 * symlinks inside kept as symlinks; fifos, sockets, devices skipped) to
 * out_fd. Errors name the file.
 */
int slice_files_pack(const char *host_path, int out_fd, struct vs_error *err);

/*
 * Host side: read a stream from in_fd and put it at host_dest (into it if a
 * directory, else as it). Before the rename, commit(arg) is called (may be
 * NULL): < 0 aborts (the caller's error in err) and nothing is left.
 */
int slice_files_unpack(const char *host_dest, int in_fd,
		       int (*commit)(void *arg, struct vs_error *err), void *arg,
		       struct vs_error *err);

/* Local copies: host_src into the slice at path; the slice's path to host_dst. */
int slice_files_copy_in(const char *root, const char *name, const char *host_src, const char *path,
			struct vs_error *err);
int slice_files_copy_out(const char *root, const char *name, const char *path, const char *host_dst,
			 struct vs_error *err);

/*
 * The unpacking engine alone, for the fuzzer: the stream on in_fd into the
 * directory dir_fd (as a new entry named by the stream), as a host-side
 * unpack does. Nothing is left on failure.
 */
int slice_files_unpack_at(int dir_fd, int in_fd, struct vs_error *err);

#endif
