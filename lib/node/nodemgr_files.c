/*
 * nodemgr_files.c - GET|PUT /v1/slivers/NAME/files?path=P on the node
 * manager's --listen API: `slicectl cp` to and from a sliver on this node
 * (docs/cluster-api.md; the stream and its rules: slice_files.h).
 *
 *   GET  the file or tree at P in the sliver, as a tar stream (chunked);
 *   PUT  a tar stream (the body) put at P: into P if it is a directory,
 *        else as P; 200 {"path": P} once it is in place.
 *
 * Who: the holder of a "cp" ticket for slice NAME on this node
 * (nm_ticket_check; 401/403/404/503 as for every sliver route). For a PUT
 * the ticket is checked when the headers are in, before a byte of the body
 * is read: a caller without one costs nothing but the headers.
 *
 * What a caller can do with one: what the slice's own root can do to its
 * file system (slice_files_start runs the copy in a child process that sees
 * the slice as its root does: its namespaces, its id range), on paths
 * resolved beneath the slice's root (an escape: 403). Bounds: the body goes
 * through a pipe (1 MiB) into that child, which writes it to the slice's
 * own file system (its --disk limit: 507 when full); memory is the pipe, the
 * child's buffers and libarchive's capped header; the connection's idle
 * timeout (FILES_IDLE_SECS) ends a stalled upload; a body cut short, or
 * refused half-way, leaves nothing in the sliver (staged, renamed only when
 * whole). A GET whose copy fails half-way aborts the connection (the client
 * sees a cut transfer, never a short tar taken as whole).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/nodeapi.h"
#include "vslice/httpd.h"
#include "vslice/slice_files.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define FILES_PREFIX	NODEAPI_SLIVERS
#define FILES_SUFFIX	"/files"
#define FILES_IDLE_SECS 60
#define FILES_PIPE_SIZE (1 << 20)

bool nm_files_route(const char *url)
{
	size_t pl = strlen(FILES_PREFIX), sl = strlen(FILES_SUFFIX), n = strlen(url);
	if (n <= pl + sl || strncmp(url, FILES_PREFIX, pl) || strcmp(url + n - sl, FILES_SUFFIX))
		return false;
	const char *slash = strchr(url + pl, '/');
	return slash == url + n - sl;
}

/* The sliver's name from the URL (nm_files_route's shape), or false. */
static bool files_name(const struct httpd_request *req, char name[64])
{
	const char *s = req->url + strlen(FILES_PREFIX);
	size_t n = (size_t)(strchr(s, '/') - s);
	if (n == 0 || n >= 64)
		return false;
	memcpy(name, s, n);
	name[n] = '\0';
	return vs_name_valid(name);
}

static unsigned files_status(const struct vs_error *err)
{
	switch (err->code) {
	case EXDEV:
	case ELOOP:
	case EACCES:
	case EPERM:
		return 403;
	case ENOENT:
	case ENOTDIR:
		return 404;
	case EEXIST:
	case EISDIR:
	case EBUSY:
		return 409;
	case ENOSPC:
	case EDQUOT:
		return 507;
	case EINVAL:
	case ENAMETOOLONG:
	case EPIPE:
		return 400;
	case EROFS:
		return 403;
	default:
		return err->kind == VS_EK_REFUSED ? 403 : 500;
	}
}

/* The ticket, then the path argument; 0 or an answer filled. */
static int files_admit(struct httpd_request *req, struct httpd_answer *a, const char *name,
		       const char **path)
{
	struct nodemgr *nm = httpd_cls(req->srv);
	*path = httpd_query(req, "path");
	unsigned status;
	struct vs_error err;
	if (nm_ticket_check(nm, req, name, "cp", &status, &err) < 0) {
		httpd_answer_error(a, status, "%s", err.msg);
		return -1;
	}
	if (!*path || !**path || strlen(*path) >= 4096) {
		httpd_answer_error(a, 400, "sliver %s: files: path: a path in the sliver is needed",
				   name);
		return -1;
	}
	return 0;
}

/* ---- PUT: the body into a child that unpacks it in the sliver --------- */

struct files_put {
	struct slice_files_job job;
	int pipe_w;
	bool failed; /* the child stopped reading (it refused the stream) */
};

void nm_files_begin(struct httpd_request *req, struct httpd_answer *a)
{
	if (strcmp(req->method, "PUT"))
		return; /* GET: all in nm_files_handle */
	char name[64];
	if (!files_name(req, name))
		return httpd_answer_error(a, 404, "%s: no such route", req->url);
	const char *path;
	if (files_admit(req, a, name, &path) < 0)
		return;
	struct nodemgr *nm = httpd_cls(req->srv);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return httpd_answer_error(a, 500, "sliver %s: pipe: %s", name, strerror(errno));
	fcntl(p[1], F_SETPIPE_SZ, FILES_PIPE_SIZE);
	struct files_put *fp = vs_xcalloc(1, sizeof(*fp));
	struct vs_error err;
	int r = slice_files_start(nm->root, name, SLICE_FILES_PUT, path, p[0], &fp->job, &err);
	close(p[0]);
	if (r < 0) {
		close(p[1]);
		free(fp);
		return httpd_answer_error(a, files_status(&err), "sliver %s: %s", name, err.msg);
	}
	fp->pipe_w = p[1];
	req->data = fp;
	httpd_stream_body(req);
	httpd_set_timeout(req, FILES_IDLE_SECS);
}

int nm_files_data(struct httpd_request *req, const char *buf, size_t len)
{
	struct files_put *fp = req->data;
	if (!fp || fp->failed)
		return -1;
	if (vs_write_all(fp->pipe_w, buf, len) < 0) {
		fp->failed = true;
		return -1;
	}
	return 0;
}

static void put_end(struct files_put *fp, bool whole, struct vs_error *err, int *r)
{
	if (fp->pipe_w >= 0) {
		close(fp->pipe_w);
		fp->pipe_w = -1;
	}
	if (whole)
		slice_files_commit(&fp->job);
	*r = slice_files_finish(&fp->job, err);
}

void nm_files_done(struct httpd_request *req, bool completed)
{
	struct files_put *fp = req->data;
	if (!fp)
		return;
	if (fp->job.pid >= 0) {
		/* Dropped before its answer: not whole, nothing is kept. */
		struct vs_error err;
		int r;
		put_end(fp, false, &err, &r);
	}
	free(fp);
	req->data = NULL;
}

/* ---- GET: a child packs the path in the sliver into a pipe we stream --- */

struct files_get {
	struct slice_files_job job;
	int pipe_r;
};

static ssize_t get_read(void *cls, char *buf, size_t max)
{
	struct files_get *fg = cls;
	ssize_t n;
	do
		n = read(fg->pipe_r, buf, max);
	while (n < 0 && errno == EINTR);
	if (n != 0)
		return n < 0 ? -1 : n;
	/* The end: whole only if the child says so; else cut the connection. */
	struct vs_error err;
	return slice_files_finish(&fg->job, &err) < 0 ? -1 : 0;
}

static void get_free(void *cls)
{
	struct files_get *fg = cls;
	close(fg->pipe_r); /* a child still writing gets EPIPE and ends */
	struct vs_error err;
	slice_files_finish(&fg->job, &err);
	free(fg);
}

void nm_files_handle(struct httpd_request *req, struct httpd_answer *a, const char *name)
{
	struct vs_error err;
	if (!strcmp(req->method, "PUT")) {
		struct files_put *fp = req->data;
		if (!fp)
			return httpd_answer_error(a, 500, "sliver %s: files: no upload", name);
		int r;
		put_end(fp, !fp->failed, &err, &r);
		if (r < 0)
			return httpd_answer_error(a, files_status(&err), "sliver %s: %s", name,
						  err.msg);
		json_t *j = json_pack("{s:s}", "path", httpd_query(req, "path"));
		httpd_answer_json(a, 200, j);
		json_decref(j);
		return;
	}
	if (strcmp(req->method, "GET"))
		return httpd_answer_error(a, 405, "sliver %s: files takes GET or PUT", name);
	const char *path;
	if (files_admit(req, a, name, &path) < 0)
		return;
	struct nodemgr *nm = httpd_cls(req->srv);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return httpd_answer_error(a, 500, "sliver %s: pipe: %s", name, strerror(errno));
	fcntl(p[1], F_SETPIPE_SZ, FILES_PIPE_SIZE);
	struct files_get *fg = vs_xcalloc(1, sizeof(*fg));
	int r = slice_files_start(nm->root, name, SLICE_FILES_GET, path, p[1], &fg->job, &err);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		free(fg);
		return httpd_answer_error(a, files_status(&err), "sliver %s: %s", name, err.msg);
	}
	fg->pipe_r = p[0];
	httpd_answer_stream(a, 200, get_read, get_free, fg, "application/x-tar");
	httpd_set_timeout(req, FILES_IDLE_SECS);
}
