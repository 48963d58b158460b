/*
 * slice_xfer.c - a stopped slice's log and overlay upper dir as one
 * verified stream, for cold migration (slice_xfer.h, docs/migration.md).
 * The sender is slice_xfer_send.c, the receiver slice_xfer_recv.c; this
 * file holds what they share (slice_xfer_int.h).
 *
 * Wire format:
 *
 *     "VSXFER\0\1"                      magic + version (8 bytes)
 *     { u32 len (big endian, 1..FRAME_MAX); len bytes }...   a pax archive
 *     u32 0                             end of the archive
 *     32 bytes                          sha256 of every byte before them
 *
 * The archive (libarchive, pax, unblocked) holds "log" (the slice's log, a
 * regular file: sparse, as PID 1 punches out old output), then "upper"
 * and everything below it in a pre-order walk: a directory comes before
 * what it holds and everything in it before its next sibling. Owners are
 * relative to the slice's id range; hard links are written once (the
 * first name with the data, the others as links to it); sparse files as
 * GNU sparse 1.0 (data regions only); xattrs as pax records.
 *
 * Receiving trusts nothing. Every entry must sit in the directory the
 * walk is in, or in one of its parents: the receiver keeps only the fd of
 * the directory it made last and creates each name in it with *at()
 * calls that never follow a symlink, so an entry cannot reach through a
 * symlink or outside the staging dir, and memory does not grow with the
 * tree (a directory's mtime is set when the walk leaves it). A hard
 * link's target is opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS). libarchive itself keeps one pax header (at most
 * 1 MiB) and one sparse map; the frames it may read for one header are
 * capped (HEADER_INPUT_MAX), which bounds the map. Everything lands in a
 * staging dir beside the upper dir (upper.xfer/upper, on the same file
 * system: in a --disk slice's image) and a staging log beside the log;
 * after the trailer matched and one syncfs(), renameat2(RENAME_EXCHANGE)
 * swaps the upper dirs and the logs, and the old ones go with the staging
 * dir and file. Any failure before that removes the staging dir and
 * file: the slice is as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "../image/archive_dl.h"
#include "slice_xfer_int.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* A refusal of the stream's content: EINVAL, kind VS_EK_REFUSED. */
int xfer_refuse(struct vs_error *err, const char *fmt, ...)
{
	char msg[VS_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vs_error_set(err, EINVAL, "%s", msg);
	return vs_error_kind(err, VS_EK_REFUSED);
}

uint64_t xfer_now_us(void)
{
	return vs_now_ns() / 1000;
}

void xfer_progress(const struct slice_xfer_opts *o, uint64_t bytes, uint64_t *next, bool last)
{
	if (!o || !o->progress)
		return;
	if (last || bytes >= *next) {
		o->progress(o->arg, bytes);
		*next = bytes + PROGRESS_STEP;
	}
}

/* ---- the slice: its lock, its state, its upper dir --------------------- */

/* The slice's flock, as every slicectl verb takes it (slice.c). A --disk
 * slice's is taken by slice_with_upper() instead: a second flock on the
 * same file from this process would wait for ourselves. */
int xfer_lock_slice(const char *root, const char *name, struct vs_error *err)
{
	cleanup_free char *p = vs_xasprintf("%s/slices/%s/lock", root, name);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "lock %s", p);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return vs_error_sys(err, e, "lock %s", p);
		}
	}
	return fd;
}

int xfer_require_stopped(const char *root, const char *name, struct vs_error *err)
{
	struct slice_state st;
	int r = slice_load(root, name, NULL, &st, err);
	if (r < 0)
		return r;
	if (st.status == SLICE_RUNNING || st.status == SLICE_FROZEN) {
		vs_error_set(err, EBUSY, "is %s (stop it first)", slice_status_name(st.status));
		return vs_error_kind(err, VS_EK_BUSY);
	}
	return 0;
}

int xfer_with_upper(const char *root, const char *name, bool writable, uint32_t *id_base,
		    bool *disk, slice_upper_fn fn, void *arg, struct vs_error *err)
{
	struct slice_spec spec;
	int r = slice_load(root, name, &spec, NULL, err);
	if (r < 0)
		return r;
	*id_base = spec.id_base;
	*disk = spec.disk_bytes > 0;
	cleanup_close int lk = -1;
	if (!*disk && ((r = lk = xfer_lock_slice(root, name, err)) < 0 ||
		       (r = xfer_require_stopped(root, name, err)) < 0)) {
		slice_spec_free(&spec);
		return r;
	}
	if ((r = archive_dl_load(err)) == 0)
		r = slice_with_upper(root, &spec, writable, fn, arg, err);
	slice_spec_free(&spec);
	return r;
}
