/*
 * nodemgr_upload.c - what the main loop sends to the registry, on its own
 * HTTP client (nm->hc), each heartbeat and when a sliver's run ends, every
 * request through regclient.h (which alone spells the registry's paths):
 *   1. every sliver's state (nodemgr_status.c), read first;
 *   2. new log bytes, up to NODEMGR_LOG_CHUNK per sliver per heartbeat
 *      (regclient_log_upload at the record's offset; a 409 gives the size
 *      the registry holds, from its answer's "size", 413 means it takes no
 *      more);
 *   3. the status report (regclient_node_status) - after the logs, so a
 *      sliver the registry sees as exited has its whole output there;
 *   4. for an exited sliver whose log is all sent: each result file
 *      (regclient_result_upload: streamed, with its sha256 and mode), then
 *      the commit (regclient_results_commit), once (the record remembers).
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
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* --- requests ----------------------------------------------------- */

/* Assignments carry the manifest's digest only: the manifest itself (up to
 * 24 MiB) is fetched from the slice object when a sliver is to be made. */
int nm_fetch_manifest(struct nodemgr *nm, const char *slice, json_t **out, struct vs_error *err)
{
	int r = regclient_slice_get(&nm->hc, slice, -1, 0, out, NULL, NULL, err);
	if (r == 0 && !json_is_object(json_object_get(*out, "manifest")))
		r = vs_error_set(err, EPROTO, "the slice object has no manifest");
	return r;
}

static void post_status(struct nodemgr *nm, json_t *list)
{
	long status = 0;
	struct vs_error err;
	if (regclient_node_status(&nm->hc, nm->name, list, &status, &err) < 0)
		nm_log(nm, status ? NODEMGR_LOG_INFO : NODEMGR_LOG_DEBUG, "status report: %s",
		       err.msg);
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
		long status = 0;
		long long have = -1;
		int r = regclient_log_upload(&nm->hc, s->r.slice, nm->name, s->r.log_offset, buf,
					     (size_t)got, &have, &status, &err);
		if (r == 0) {
			s->r.log_offset += (uint64_t)got;
			budget -= (size_t)got;
			continue;
		}
		if (status == 409) {
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
	long status = 0;
	r = regclient_result_upload(&rc->nm->hc, rc->s->r.slice, rc->nm->name, rel, fd, sha,
				    (unsigned)st->st_mode, &status, err);
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
	long status;
	if (regclient_results_commit(&nm->hc, s->r.slice, nm->name, rc.files, missing, &status,
				     &err) < 0) {
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
	 * States first, then the logs and the results of the runs that ended,
	 * then the states are posted: a sliver the registry sees as exited has
	 * its whole output and its result files there already (it exited before
	 * its log was read), so `submit --wait` never misses the tail of a run
	 * and `results` right after it finds them complete. The final log bytes
	 * also go before the results commit.
	 */
	bool *exited = vs_xcalloc(nm->nslivers + 1, sizeof(bool));
	int *logged = vs_xcalloc(nm->nslivers + 1, sizeof(int));
	cleanup_json json_t *list = nm_collect_status(nm, exited);
	if (atomic_load(&nm->registered)) {
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++)
			if (nm->slivers[i].r.phase == NODEMGR_CREATED && !nm->slivers[i].busy)
				logged[i] = upload_log(nm, &nm->slivers[i]);
		for (size_t i = 0; i < nm->nslivers && !atomic_load(&nm->stop); i++) {
			struct nm_sliver *s = &nm->slivers[i];
			if (s->r.phase == NODEMGR_CREATED && !s->busy && exited[i] &&
			    logged[i] == 1 && !s->r.results_done)
				upload_results(nm, s);
		}
		post_status(nm, list);
	}
	free(logged);
	free(exited);
}
