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

struct vs_error {
	int code; /* positive errno (or EINVAL for bad input) */
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

/* Reset err to "no error". */
void vs_error_clear(struct vs_error *err);

#endif
