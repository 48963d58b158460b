/*
 * exec_proto.c - the remote exec stream's frames (include/vslice/exec_proto.h):
 * fixed buffers, one frame parsed at a time, and the START payload.
 *
 * Both buffers are arrays of a fixed size inside their owner's state, so a
 * peer that sends huge frames, many frames, or reads nothing never grows
 * anyone's memory: a frame beyond EXEC_FRAME_MAX is an error, and a full
 * buffer simply stops the side that fills it (its poll() stops asking).
 */
#include <errno.h>
#include <string.h>

#include "vslice/exec_proto.h"
#include "vslice/json.h"
#include "vslice/util.h"

#define ARGV_MAX 4096 /* arguments or environment strings in a START */

static bool known_type(int t)
{
	switch (t) {
	case EXEC_START:
	case EXEC_STDIN:
	case EXEC_EOF:
	case EXEC_WINSIZE:
	case EXEC_SIGNAL:
	case EXEC_STDOUT:
	case EXEC_STDERR:
	case EXEC_ERROR:
	case EXEC_EXIT:
	case EXEC_PING:
		return true;
	default:
		return false;
	}
}

int exec_in_frame(const struct exec_in *in, struct exec_frame *f, struct vs_error *err)
{
	if (in->len < EXEC_FRAME_HDR)
		return 0;
	uint32_t n = exec_get_u32(in->b + 1);
	if (!known_type(in->b[0]))
		return vs_error_set(err, EPROTO, "exec stream: unknown frame type 0x%02x",
				    in->b[0]);
	if (n > EXEC_FRAME_MAX)
		return vs_error_set(err, EPROTO, "exec stream: a frame of %u bytes (at most %u)",
				    (unsigned)n, EXEC_FRAME_MAX);
	if (in->len < EXEC_FRAME_HDR + (size_t)n)
		return 0;
	f->type = in->b[0];
	f->data = in->b + EXEC_FRAME_HDR;
	f->len = n;
	return 1;
}

void exec_in_consume(struct exec_in *in, const struct exec_frame *f)
{
	size_t n = EXEC_FRAME_HDR + f->len;
	memmove(in->b, in->b + n, in->len - n);
	in->len -= n;
}

/* Move what is left to the front, so the room is all at the end. */
static void out_compact(struct exec_out *o)
{
	if (!o->off)
		return;
	memmove(o->b, o->b + o->off, o->len - o->off);
	o->len -= o->off;
	o->off = 0;
}

size_t exec_out_room(const struct exec_out *o)
{
	size_t free_bytes = sizeof(o->b) - (o->len - o->off);
	return free_bytes > EXEC_FRAME_HDR ? free_bytes - EXEC_FRAME_HDR : 0;
}

unsigned char *exec_out_begin(struct exec_out *o, size_t max)
{
	if (max > EXEC_FRAME_MAX || exec_out_room(o) < max)
		return NULL;
	out_compact(o);
	return o->b + o->len + EXEC_FRAME_HDR;
}

void exec_out_commit(struct exec_out *o, int type, size_t n)
{
	if (!n && type != EXEC_EOF)
		return;
	o->b[o->len] = (unsigned char)type;
	exec_put_u32(o->b + o->len + 1, (uint32_t)n);
	o->len += EXEC_FRAME_HDR + n;
}

bool exec_out_put(struct exec_out *o, int type, const void *data, size_t len)
{
	unsigned char *p = exec_out_begin(o, len);
	if (!p)
		return false;
	if (len)
		memcpy(p, data, len);
	o->b[o->len] = (unsigned char)type;
	exec_put_u32(o->b + o->len + 1, (uint32_t)len);
	o->len += EXEC_FRAME_HDR + len;
	return true;
}

void exec_out_sent(struct exec_out *o, size_t n)
{
	o->off += n;
	if (o->off == o->len)
		o->off = o->len = 0;
}

/* A JSON array of strings as a NULL-terminated list; "field" names it. */
static int strv_of(json_t *a, const char *field, bool need_eq, char ***out, struct vs_error *err)
{
	*out = NULL;
	if (!a)
		return 0;
	if (!json_is_array(a))
		return vs_error_set(err, EINVAL, "start: %s: not an array", field);
	size_t n = json_array_size(a);
	if (n > ARGV_MAX)
		return vs_error_set(err, EINVAL, "start: %s: more than %d strings", field,
				    ARGV_MAX);
	cleanup_strv char **v = vs_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(a, i);
		const char *s = json_string_value(e);
		/* A string with a NUL in it would mean one thing here and
		 * another to execve. */
		if (!s || strlen(s) != json_string_length(e))
			return vs_error_set(err, EINVAL, "start: %s[%zu]: not a string%s", field, i,
					    s ? " (has a NUL byte)" : "");
		if (need_eq && (!strchr(s, '=') || s[0] == '='))
			return vs_error_set(err, EINVAL, "start: %s[%zu]: \"%.64s\" is not K=V",
					    field, i, s);
		v[i] = vs_xstrdup(s);
	}
	*out = steal_pointer(&v);
	return 0;
}

static int winsize_of(json_t *j, const char *field, unsigned *out, struct vs_error *err)
{
	*out = 0;
	if (!j)
		return 0;
	if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > 65535)
		return vs_error_set(err, EINVAL, "start: %s: not a number from 0 to 65535", field);
	*out = (unsigned)json_integer_value(j);
	return 0;
}

int exec_start_parse(const unsigned char *data, size_t len, bool shell, struct exec_start *s,
		     struct vs_error *err)
{
	memset(s, 0, sizeof(*s));
	json_error_t je;
	cleanup_json json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j))
		return vs_error_set(err, EINVAL, "start: not a JSON object%s%s", j ? "" : ": ",
				    j ? "" : je.text);
	int r;
	json_t *argv = json_object_get(j, "argv");
	if (shell && argv)
		return vs_error_set(err, EINVAL, "start: argv: a shell takes none");
	if (!shell && (!json_is_array(argv) || !json_array_size(argv)))
		return vs_error_set(err, EINVAL, "start: argv: missing or empty");
	if ((r = strv_of(argv, "argv", false, &s->argv, err)) < 0 ||
	    (r = strv_of(json_object_get(j, "env"), "env", true, &s->env, err)) < 0)
		goto fail;
	json_t *wd = json_object_get(j, "workdir");
	if (wd) {
		const char *w = json_string_value(wd);
		if (!w || w[0] != '/' || strlen(w) != json_string_length(wd)) {
			r = vs_error_set(err, EINVAL, "start: workdir: not an absolute path");
			goto fail;
		}
		s->workdir = vs_xstrdup(w);
	}
	json_t *tty = json_object_get(j, "tty");
	if (tty && !json_is_boolean(tty)) {
		r = vs_error_set(err, EINVAL, "start: tty: not true or false");
		goto fail;
	}
	s->tty = json_is_true(tty);
	if ((r = winsize_of(json_object_get(j, "rows"), "rows", &s->rows, err)) < 0 ||
	    (r = winsize_of(json_object_get(j, "cols"), "cols", &s->cols, err)) < 0)
		goto fail;
	return 0;
fail:
	exec_start_free(s);
	return r;
}

void exec_start_free(struct exec_start *s)
{
	vs_strv_free(s->argv);
	vs_strv_free(s->env);
	free(s->workdir);
	memset(s, 0, sizeof(*s));
}

json_t *exec_start_json(char *const *argv, char *const *env, const char *workdir, bool tty,
			unsigned rows, unsigned cols)
{
	json_t *j = json_object();
	bool ok = true;
	if (argv) {
		json_t *a = json_array();
		for (char *const *p = argv; *p; p++)
			ok = json_array_append_new(a, json_string(*p)) == 0 && ok;
		json_object_set_new(j, "argv", a);
	}
	json_t *e = json_array();
	for (char *const *p = env; p && *p; p++)
		ok = json_array_append_new(e, json_string(*p)) == 0 && ok;
	json_object_set_new(j, "env", e);
	if (!ok) { /* a string that is not UTF-8: dropped, it would shift argv */
		json_decref(j);
		return NULL;
	}
	if (workdir && json_object_set_new(j, "workdir", json_string(workdir)) < 0) {
		json_decref(j);
		return NULL;
	}
	json_object_set_new(j, "tty", json_boolean(tty));
	if (rows && cols) {
		json_object_set_new(j, "rows", json_integer(rows));
		json_object_set_new(j, "cols", json_integer(cols));
	}
	return j;
}
