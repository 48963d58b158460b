/*
 * nodemgr_upload.c - what the main loop sends to the registry, on its own
 * HTTP client (nm->hc), each heartbeat and when a sliver's run ends:
 *   1. every sliver's state (nodemgr_status.c), read first;
 *   2. new log bytes, up to NODEMGR_LOG_CHUNK per sliver per heartbeat:
 *      PUT .../slivers/NODE/log?offset=N, resumed from the record's offset
 *      (a 409 names the registry's size, 413 means it takes no more);
 *   3. POST /v1/nodes/NODE/status - after the logs, so a sliver the registry
 *      sees as exited has its whole output there;
 *   4. for an exited sliver whose log is all sent: each result file, PUT
 *      .../results/PATH (streamed, with its sha256 and mode), then POST
 *      .../results to commit, once (the record remembers).
 * Also the manifest fetch a create needs (assignments carry only its
 * digest). Registry trouble is logged and retried next heartbeat; it never
 * changes a sliver.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/experiment.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* --- what a 409 says ---------------------------------------------- */

/* The number right after the last occurrence of key (digits, after
 * non-digits up to the first digit). */
static long long number_after(const char *msg, const char *key, bool adjacent)
{
	const char *p = NULL;
	for (const char *q = msg; (q = strstr(q, key)); q++)
		p = q + strlen(key);
	if (!p)
		return -1;
	while (!adjacent && *p && (*p < '0' || *p > '9'))
		p++;
	if (*p < '0' || *p > '9')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	return errno ? -1 : v;
}

long long nodemgr_conflict_size(const char *msg)
{
	/* vslice-registry: "log of sliver S/N: offset 0, the log has 120 bytes" */
	long long v = number_after(msg, " has ", true);
	return v >= 0 ? v : number_after(msg, "size", false);
}

/* --- requests ----------------------------------------------------- */

/* Assignments carry the manifest's digest only: the manifest itself (up to
 * 24 MiB) is fetched from the slice object when a sliver is to be made. */
int nm_fetch_manifest(struct nodemgr *nm, const char *slice, json_t **out, struct vs_error *err)
{
	cleanup_free char *ename = http_escape(slice, 0);
	cleanup_free char *path = vs_xasprintf("/v1/slices/%s", ename);
	long status;
	int r = http_json(&nm->hc, "GET", path, NULL, 0, &status, out, NULL, err);
	if (r == 0 && !json_is_object(json_object_get(*out, "manifest")))
		r = vs_error_set(err, EPROTO, "the slice object has no manifest");
	return r;
}

static void post_status(struct nodemgr *nm, json_t *list)
{
	cleanup_json json_t *body = json_pack("{s:O}", "slivers", list);
	cleanup_free char *ename = http_escape(nm->name, 0);
	cleanup_free char *path = vs_xasprintf("/v1/nodes/%s/status", ename);
	long status;
	struct vs_error err;
	if (http_json(&nm->hc, "POST", path, body, 0, &status, NULL, NULL, &err) < 0)
		nm_log(nm, status ? NODEMGR_LOG_INFO : NODEMGR_LOG_DEBUG, "status report: %s",
		       err.msg);
}

static char *sliver_path(struct nodemgr *nm, const char *slice, const char *rest)
{
	cleanup_free char *es = http_escape(slice, 0);
	cleanup_free char *en = http_escape(nm->name, 0);
	return vs_xasprintf("/v1/slices/%s/slivers/%s%s", es, en, rest);
}

/* Upload up to NODEMGR_LOG_CHUNK new log bytes. Returns 1 when the registry
 * has the whole log (or will take no more), 0 when bytes are left, -1 on
 * an error. */
static int upload_log(struct nodemgr *nm, struct nm_sliver *s)
{
	if (s->r.log_capped)
		return 1;
	struct vs_error err;
	cleanup_close int fd = slice_log_open(nm->root, s->r.slice, &err);
	if (fd < 0) {
		nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: log: %s", s->r.slice, err.msg);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	uint64_t size = (uint64_t)st.st_size;
	if (s->r.log_offset > size) /* a log that shrank (cannot happen): start over */
		s->r.log_offset = size;
	size_t budget = NODEMGR_LOG_CHUNK;
	cleanup_free char *buf = NULL;
	for (int attempt = 0; attempt < 3 && budget > 0 && s->r.log_offset < size; attempt++) {
		size_t want = size - s->r.log_offset < budget ? size - s->r.log_offset : budget;
		if (!buf)
			buf = vs_xmalloc(NODEMGR_LOG_CHUNK);
		ssize_t got = pread(fd, buf, want, (off_t)s->r.log_offset);
		if (got <= 0)
			return -1;
		cleanup_free char *path = NULL;
		char rest[64];
		snprintf(rest, sizeof(rest), "/log?offset=%llu",
			 (unsigned long long)s->r.log_offset);
		path = sliver_path(nm, s->r.slice, rest);
		long status = 0;
		int r = http_put_buf(&nm->hc, path, buf, (size_t)got, NULL, &status, &err);
		if (r == 0) {
			s->r.log_offset += (uint64_t)got;
			budget -= (size_t)got;
			continue;
		}
		if (status == 409) {
			long long have = nodemgr_conflict_size(err.msg);
			if (have < 0 || (uint64_t)have > size) {
				nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: log upload: %s",
				       s->r.slice, err.msg);
				return -1;
			}
			nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: registry has %lld log bytes",
			       s->r.slice, have);
			s->r.log_offset = (uint64_t)have;
			continue;
		}
		if (status == 413) {
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: the registry takes no more of its log (%s)", s->r.slice,
			       err.msg);
			s->r.log_capped = true;
			nm_record_save_or_warn(nm, &s->r);
			return 1;
		}
		nm_log(nm, status ? NODEMGR_LOG_INFO : NODEMGR_LOG_DEBUG,
		       "sliver %s: log upload: %s", s->r.slice, err.msg);
		nm_record_save_or_warn(nm, &s->r);
		return -1;
	}
	nm_record_save_or_warn(nm, &s->r);
	return s->r.log_offset >= size ? 1 : 0;
}

struct results_ctx {
	struct nodemgr *nm;
	struct nm_sliver *s;
	size_t files;
	json_t *missing;
	bool abort; /* the registry failed us: try the whole upload again later */
};

static int result_file(void *arg, const char *rel, int fd, const struct stat *st,
		       struct vs_error *err)
{
	struct results_ctx *rc = arg;
	if (rc->abort)
		return 0;
	char sha[VS_SHA256_HEX];
	int r = vs_sha256_fd(fd, sha);
	if (r < 0)
		return vs_error_sys(err, -r, "read");
	if (lseek(fd, 0, SEEK_SET) < 0)
		return vs_error_sys(err, errno, "seek");
	char h_sha[128], h_mode[64];
	snprintf(h_sha, sizeof(h_sha), "X-Vslice-Sha256: %s", sha);
	snprintf(h_mode, sizeof(h_mode), "X-Vslice-Mode: %04o", (unsigned)(st->st_mode & 07777));
	const char *headers[] = {h_sha, h_mode, NULL};
	cleanup_free char *erel = http_escape(rel, 1);
	cleanup_free char *rest = vs_xasprintf("/results/%s", erel);
	cleanup_free char *path = sliver_path(rc->nm, rc->s->r.slice, rest);
	long status = 0;
	r = http_put_fd(&rc->nm->hc, path, fd, headers, &status, err);
	if (r == 0) {
		rc->files++;
		return 0;
	}
	/* Transport trouble, 5xx, or not (yet / any more) ours: retry later.
	 * A refusal of this file (400 mismatch, 413) is final: it counts as
	 * missing, so one bad file does not hold the others back forever. */
	if (status == 0 || status >= 500 || status == 401 || status == 403 || status == 404)
		rc->abort = true;
	return r;
}

static void result_problem(void *arg, const char *rel, const char *why, bool missing, bool failed)
{
	struct results_ctx *rc = arg;
	if (rc->abort)
		return;
	if (missing || failed) {
		cleanup_free char *abs = vs_xasprintf("/%s", rel);
		json_array_append_new(rc->missing, json_string(abs));
	}
	nm_log(rc->nm, missing ? NODEMGR_LOG_DEBUG : NODEMGR_LOG_INFO, "sliver %s: result /%s: %s",
	       rc->s->r.slice, rel, why);
}

static void upload_results(struct nodemgr *nm, struct nm_sliver *s)
{
	struct vs_error err;
	char **paths = NULL;
	size_t n = 0;
	int r = experiment_result_paths(nm->root, s->r.slice, &paths, &n, &err);
	if (r < 0 && r != -ENOENT) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results: %s", s->r.slice, err.msg);
		return;
	}
	cleanup_json json_t *missing = json_array();
	struct results_ctx rc = {.nm = nm, .s = s, .missing = missing};
	struct experiment_walk w = {.file = result_file, .problem = result_problem, .arg = &rc};
	r = n ? experiment_walk_results(nm->root, s->r.slice, paths, n, &w, &err) : 0;
	vs_strv_free(paths);
	if (r < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results: %s", s->r.slice, err.msg);
		return;
	}
	if (rc.abort) {
		if (!s->upload_warned)
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: results upload interrupted, retrying", s->r.slice);
		s->upload_warned = true;
		return;
	}
	cleanup_json json_t *body =
	    json_pack("{s:I, s:O}", "files", (json_int_t)rc.files, "missing", missing);
	cleanup_free char *path = sliver_path(nm, s->r.slice, "/results");
	long status;
	if (http_json(&nm->hc, "POST", path, body, 0, &status, NULL, NULL, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: results commit: %s", s->r.slice, err.msg);
		return;
	}
	s->r.results_done = true;
	nm_record_save_or_warn(nm, &s->r);
	size_t nm_missing = json_array_size(missing);
	nm_log(nm, NODEMGR_LOG_INFO, "uploaded results of sliver %s: %zu file%s, %zu missing",
	       s->r.slice, rc.files, rc.files == 1 ? "" : "s", nm_missing);
}

/* --- the heartbeat's order ----------------------------------------- */

void nm_heartbeat(struct nodemgr *nm)
{
	/*
	 * States first, then the logs, then the states are posted: a sliver
	 * the registry sees as exited has its whole output there already (it
	 * exited before its log was read), so `submit --wait` never misses the
	 * tail of a run. The final log bytes also go before the results commit.
	 */
	bool *exited = vs_xcalloc(nm->nslivers + 1, sizeof(bool));
	int *logged = vs_xcalloc(nm->nslivers + 1, sizeof(int));
	cleanup_json json_t *list = nm_collect_status(nm, exited);
	if (atomic_load(&nm->registered)) {
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++)
			if (nm->slivers[i].r.phase == NODEMGR_CREATED)
				logged[i] = upload_log(nm, &nm->slivers[i]);
		post_status(nm, list);
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++) {
			struct nm_sliver *s = &nm->slivers[i];
			if (s->r.phase == NODEMGR_CREATED && exited[i] && logged[i] == 1 &&
			    !s->r.results_done)
				upload_results(nm, s);
		}
	}
	free(logged);
	free(exited);
}
