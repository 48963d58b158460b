/*
 * error.c - vs_error: an errno plus a one-line message that grows context
 * as it travels up ("create web1: cgroup vslice/web1: mkdir: ...").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vslice/error.h"

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
		snprintf(err->msg, sizeof(err->msg), "%s: %s", buf, strerror(code));
		err->code = code;
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
	snprintf(err->msg, sizeof(err->msg), "%s: %s", ctx, old);
	err->code = code_or_einval(err->code);
	return -err->code;
}

void vs_error_clear(struct vs_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
