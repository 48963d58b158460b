/*
 * exec_proto.h - the frames of a remote exec stream: `slicectl exec` and
 * `slicectl shell` in cluster mode talking to the node manager that holds
 * the sliver, once GET /v1/slivers/NAME/exec has switched the connection
 * to EXEC_PROTO (docs/cluster-api.md, "Remote exec").
 *
 * A frame is a type byte, a payload length (4 bytes, big-endian, at most
 * EXEC_FRAME_MAX) and the payload. Client to node: START (first, once),
 * STDIN, EOF, WINSIZE, SIGNAL. Node to client: STDOUT, STDERR, ERROR,
 * EXIT (last), PING (every few seconds: libmicrohttpd's TLS relay tells
 * the node of a client gone only when a write to it fails). A frame longer than EXEC_FRAME_MAX or
 * of an unknown type ends the stream: neither side ever holds more than one frame's worth per
 * direction, whatever the peer sends or fails to read.
 *
 * The buffers below are plain memory (no I/O): each side reads into and
 * writes out of them with its own transport (a socket on the node, libcurl
 * on the client).
 */
#ifndef VSLICE_EXEC_PROTO_H
#define VSLICE_EXEC_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vslice/error.h"

#define EXEC_PROTO     "vslice-exec/1"
#define EXEC_FRAME_HDR 5
#define EXEC_FRAME_MAX (64u << 10)
/* What one STDIN/STDOUT/STDERR frame carries at most when we make it. */
#define EXEC_CHUNK (32u << 10)

enum exec_frame_type {
	EXEC_START = 'S',   /* JSON: {"argv":[..], "env":[..], "workdir":"/..", "tty":b,
			     * "rows":n, "cols":n} */
	EXEC_STDIN = 'i',   /* bytes for the command's stdin (or its terminal) */
	EXEC_EOF = 'e',	    /* stdin is over (no payload) */
	EXEC_WINSIZE = 'w', /* rows, cols: 2 bytes each, big-endian */
	EXEC_SIGNAL = 'k',  /* 1 byte: SIGINT, SIGTERM, SIGHUP or SIGQUIT */
	EXEC_STDOUT = 'o',
	EXEC_STDERR = 'r',
	EXEC_ERROR = 'E', /* one line: why vslice could not run the command */
	EXEC_EXIT = 'x',  /* 4 bytes, big-endian: the exit code; the last frame */
	EXEC_PING = 'p',  /* no payload, ignored: the node's keep-alive (see below) */
};

/* Received bytes, parsed a frame at a time. */
struct exec_in {
	unsigned char b[EXEC_FRAME_HDR + EXEC_FRAME_MAX];
	size_t len;
};

struct exec_frame {
	int type;
	const unsigned char *data; /* into the exec_in: valid until exec_in_consume */
	size_t len;
};

/* Room left to read into (at in->b + in->len). */
static inline size_t exec_in_room(const struct exec_in *in)
{
	return sizeof(in->b) - in->len;
}
/* The first whole frame: 1 (f filled), 0 (need more bytes), < 0 with err
 * (a length beyond EXEC_FRAME_MAX, an unknown type). */
int exec_in_frame(const struct exec_in *in, struct exec_frame *f, struct vs_error *err);
/* Drop the first frame (f, from exec_in_frame). */
void exec_in_consume(struct exec_in *in, const struct exec_frame *f);

/* Bytes to send: frames appended, sent from off. */
struct exec_out {
	unsigned char b[2 * (EXEC_FRAME_HDR + EXEC_FRAME_MAX)];
	size_t off, len;
};

/* Free room for a frame payload (0 when not even a header fits). */
size_t exec_out_room(const struct exec_out *o);
/* Append a frame; false (nothing appended) when it does not fit. */
bool exec_out_put(struct exec_out *o, int type, const void *data, size_t len);
/* Append a frame whose payload the caller reads straight into place:
 * exec_out_begin returns where (room for max bytes, or NULL when they do
 * not fit), exec_out_commit closes it with n of them (0: nothing). */
unsigned char *exec_out_begin(struct exec_out *o, size_t max);
void exec_out_commit(struct exec_out *o, int type, size_t n);
/* Bytes sent: drop them. */
void exec_out_sent(struct exec_out *o, size_t n);
static inline bool exec_out_empty(const struct exec_out *o)
{
	return o->off == o->len;
}

/* The START payload as the node reads it: argv (for exec; absent for a
 * shell) as a NULL-terminated list, env "K=V" strings, workdir, tty and
 * the window size. Errors name the field ("start: argv[2]: not a
 * string"). Free with exec_start_free. */
struct exec_start {
	char **argv, **env;
	char *workdir;
	bool tty;
	unsigned rows, cols;
};
int exec_start_parse(const unsigned char *data, size_t len, bool shell, struct exec_start *s,
		     struct vs_error *err);
void exec_start_free(struct exec_start *s);
/* The START payload (a new JSON object) from the client's side; NULL when
 * a string is not UTF-8 (JSON cannot carry it). */
json_t *exec_start_json(char *const *argv, char *const *env, const char *workdir, bool tty,
			unsigned rows, unsigned cols);

/* Big-endian helpers for the fixed-size payloads. */
static inline void exec_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}
static inline uint32_t exec_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
