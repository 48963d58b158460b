/*
 * slice_xfer_int.h - what the two halves of the migration stream share
 * (slice_xfer_send.c, slice_xfer_recv.c; the format is described in
 * slice_xfer.c). Internal to lib/node.
 */
#ifndef VSLICE_SLICE_XFER_INT_H
#define VSLICE_SLICE_XFER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "vslice/error.h"
#include "vslice/slice.h"
#include "vslice/slice_xfer.h"

#define XFER_MAGIC	 "VSXFER\0\1"
#define XFER_MAGIC_LEN	 8
#define FRAME_MAX	 (256u << 10) /* payload bytes per frame */
#define FRAME_DIRECT	 (64u << 10)  /* writes this big skip the frame buffer */
#define HEADER_INPUT_MAX (2u << 20)   /* stream bytes libarchive may read for one header */
#define AFTER_END_MAX	 (64u << 10)  /* bytes allowed after the archive's end marker */
#define IO_BUF		 (1u << 20)   /* file data read per call */
#define ZERO_BUF	 (16u << 20)  /* holes are fed to libarchive from this (never touched) */
#define SPARSE_MAX	 1024	      /* data regions sent per file; the rest is sent as data */
#define XLIST_MAX	 (64u << 10)
#define XATTR_VAL_MAX	 (64u << 10)
#define PROGRESS_STEP	 (1u << 20)
#define REL_NOBODY	 65534u /* what an id outside the range looks like inside the slice */
#define STAGING		 "upper.xfer"
#define LOG_STAGING	 "log.xfer"

/* A refusal of the stream's content: EINVAL, kind VS_EK_REFUSED. */
int xfer_refuse(struct vs_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t xfer_now_us(void);
/* o->progress(bytes) if bytes reached *next (then *next moves a step on), or last. */
void xfer_progress(const struct slice_xfer_opts *o, uint64_t bytes, uint64_t *next, bool last);
/* The slice's flock (as slicectl's verbs take it); returns the fd. */
int xfer_lock_slice(const char *root, const char *name, struct vs_error *err);
/* EBUSY (kind VS_EK_BUSY) if the slice runs or is frozen. */
int xfer_require_stopped(const char *root, const char *name, struct vs_error *err);
/* What both directions share: name's spec loaded (*id_base, *disk set),
 * its lock held and its being stopped checked (a --disk slice: the image's
 * mount serialises), libarchive loaded, then fn run over its upper dir
 * (writable for a receive). */
int xfer_with_upper(const char *root, const char *name, bool writable, uint32_t *id_base,
		    bool *disk, slice_upper_fn fn, void *arg, struct vs_error *err);

#endif
