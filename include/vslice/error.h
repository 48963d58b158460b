/*
 * error.h - how failures travel in vslice.
 *
 * Every fallible library call has the shape
 *     int f(..., struct vs_error *err);
 * and returns a negative errno-style value on failure, with err filled with the
 * errno and a one-line message that names the object ("cgroup vslice/web1:
 * write memory.limit_in_bytes: Device or resource busy"). Callers that add
 * context wrap the message with vs_error_wrap() on the way up; cmd/ prints it
 * once. Nothing below cmd/ calls exit().
 */
#ifndef VSLICE_ERROR_H
#define VSLICE_ERROR_H

#include <stddef.h>

#define VS_ERROR_MAX 1024

/*
 * What a caller may need to tell apart without reading the message. Set by
 * the layer that knows (vs_error_kind()), kept by vs_error_wrap(), reset by
 * vs_error_set()/vs_error_sys(). Never branch on msg text: add a kind here.
 */
enum vs_error_kind {
	VS_EK_NONE = 0,
	VS_EK_EXEC_NOT_FOUND, /* the workload's program does not exist (exit 127) */
	VS_EK_EXEC_DENIED,    /* the workload's program cannot be executed (exit 126) */
	VS_EK_TIMENS,	      /* the kernel refused time-namespace offsets */
	VS_EK_REFUSED,	      /* a checkpoint refused up front: nothing was stopped */
	VS_EK_BUSY,	      /* the object is held by another process (a lock, a port) */
	VS_EK_LIMIT,	      /* a configured limit was reached */
};

struct vs_error {
	int code; /* positive errno (or EINVAL for bad input) */
	enum vs_error_kind kind;
	char msg[VS_ERROR_MAX];
};

/* Set err to code + formatted message. Returns -code (never 0). */
int vs_error_set(struct vs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As vs_error_set, but appends ": strerror(code)". */
int vs_error_sys(struct vs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in err with "context: ". Returns -err->code. */
int vs_error_wrap(struct vs_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Mark err as being of kind k; returns -err->code (so: return vs_error_kind(err, K);). */
int vs_error_kind(struct vs_error *err, enum vs_error_kind k);

/* Reset err to "no error". */
void vs_error_clear(struct vs_error *err);

#endif
