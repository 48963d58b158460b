/*
 * error.c - vs_error: an errno plus a one-line message that grows context
 * as it travels up ("create web1: cgroup vslice/web1: mkdir: ...").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vslice/error.h"

/* dst = a + ": " + b, truncated to VS_ERROR_MAX (messages may be cut, never overrun). */
static void join(char *dst, const char *a, const char *b)
{
	size_t n = 0;
	for (const char *parts[3] = {a, ": ", b}, **p = parts; p < parts + 3; p++)
		for (const char *c = *p; *c && n < VS_ERROR_MAX - 1; c++)
			dst[n++] = *c;
	dst[n] = '\0';
}

static int code_or_einval(int code)
{
	if (code < 0)
		code = -code;
	return code ? code : EINVAL;
}

int vs_error_set(struct vs_error *err, int code, const char *fmt, ...)
{
	code = code_or_einval(code);
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
		err->kind = VS_EK_NONE;
	}
	return -code;
}

int vs_error_sys(struct vs_error *err, int code, const char *fmt, ...)
{
	code = code_or_einval(code);
	if (err) {
		char buf[VS_ERROR_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		join(err->msg, buf, strerror(code));
		err->code = code;
		err->kind = VS_EK_NONE;
	}
	return -code;
}

int vs_error_wrap(struct vs_error *err, const char *fmt, ...)
{
	if (!err)
		return -EINVAL;
	char ctx[VS_ERROR_MAX];
	char old[VS_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	join(err->msg, ctx, old);
	err->code = code_or_einval(err->code);
	return -err->code;
}

int vs_error_kind(struct vs_error *err, enum vs_error_kind k)
{
	if (!err)
		return -EINVAL;
	err->kind = k;
	err->code = code_or_einval(err->code);
	return -err->code;
}

void vs_error_clear(struct vs_error *err)
{
	if (err) {
		err->code = 0;
		err->kind = VS_EK_NONE;
		err->msg[0] = '\0';
	}
}
