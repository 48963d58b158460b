/*
 * nodemgr_records.c - the node manager's bookkeeping of its slivers: one
 * record per sliver it made, <root>/nodemgr/slivers/NAME.json (0600, written
 * atomically), and the main loop's list of them (struct nm_sliver: the
 * record plus what is only worth remembering while running).
 *
 * A record is what makes a slice ours (with the origin in its
 * experiment.json) and carries the intent of a step in progress: phase
 * "creating" or "destroying" is saved before the slice is touched, so a
 * SIGKILL at any point leaves a record that says what to finish. It also
 * keeps what the registry already has: the log offset, whether the
 * registry took no more of the log, whether the results were committed.
 *
 * Records are read once, at start (nm_records_load), type-checked field by
 * field; a record that does not parse, or whose name is not its file's, is
 * logged and ignored - never acted on. Only the main thread touches them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/units.h"
#include "vslice/util.h"

/* --- a record as JSON --------------------------------------------- */

const char *nodemgr_phase_name(enum nodemgr_phase p)
{
	switch (p) {
	case NODEMGR_CREATING:
		return "creating";
	case NODEMGR_CREATED:
		return "created";
	case NODEMGR_FAILED:
		return "failed";
	case NODEMGR_DESTROYING:
		return "destroying";
	case NODEMGR_MIGRATING_OUT:
		return "migrating-out";
	case NODEMGR_MIGRATING_IN:
		return "migrating-in";
	case NODEMGR_RECEIVING:
		return "receiving";
	case NODEMGR_RESTORED:
		return "restored";
	}
	return "?";
}

static const enum nodemgr_phase all_phases[] = {
    NODEMGR_CREATING,	   NODEMGR_CREATED,	 NODEMGR_FAILED,    NODEMGR_DESTROYING,
    NODEMGR_MIGRATING_OUT, NODEMGR_MIGRATING_IN, NODEMGR_RECEIVING, NODEMGR_RESTORED,
};

json_t *nodemgr_record_to_json(const struct nodemgr_record *r)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:b, s:b, s:s}", "version", 1,
			 "slice", r->slice, "phase", nodemgr_phase_name(r->phase),
			 "manifest_sha256", r->sha256, "expires", (json_int_t)r->expires, "message",
			 r->message ? r->message : "", "created", (json_int_t)r->created,
			 "log_offset", (json_int_t)r->log_offset, "log_capped", r->log_capped,
			 "results_uploaded", r->results_done, "migration", r->migration);
}

int nodemgr_record_from_json(json_t *j, struct nodemgr_record *r, struct vs_error *err)
{
	memset(r, 0, sizeof(*r));
	const char *slice, *phase, *sha, *msg, *mig = "";
	json_int_t expires, created, off;
	int capped, done;
	json_error_t je;
	/* "migration" is optional: records written before migration lack it. */
	if (json_unpack_ex(
		j, &je, JSON_STRICT, "{s:i, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:b, s:b, s?s}",
		"version", &(int){0}, "slice", &slice, "phase", &phase, "manifest_sha256", &sha,
		"expires", &expires, "message", &msg, "created", &created, "log_offset", &off,
		"log_capped", &capped, "results_uploaded", &done, "migration", &mig) < 0)
		return vs_error_set(err, EINVAL, "%s", je.text);
	if (strlen(mig) >= sizeof(r->migration) || strpbrk(mig, "/\n"))
		return vs_error_set(err, EINVAL, ".migration: not a migration id");
	if (!vs_name_valid(slice))
		return vs_error_set(err, EINVAL, ".slice: not a slice name");
	if (strlen(sha) >= VS_SHA256_HEX || off < 0)
		return vs_error_set(err, EINVAL, ".manifest_sha256/.log_offset: out of range");
	size_t k = 0;
	while (k < VS_ARRAY_SIZE(all_phases) && strcmp(phase, nodemgr_phase_name(all_phases[k])))
		k++;
	if (k == VS_ARRAY_SIZE(all_phases))
		return vs_error_set(err, EINVAL,
				    ".phase: \"%s\" is not creating/created/failed/destroying/"
				    "migrating-out/migrating-in/receiving/restored",
				    phase);
	r->phase = all_phases[k];
	snprintf(r->migration, sizeof(r->migration), "%s", mig);
	snprintf(r->slice, sizeof(r->slice), "%s", slice);
	snprintf(r->sha256, sizeof(r->sha256), "%s", sha);
	r->expires = expires;
	r->message = msg[0] ? vs_xstrdup(msg) : NULL;
	r->created = created;
	r->log_offset = (uint64_t)off;
	r->log_capped = capped;
	r->results_done = done;
	return 0;
}

void nodemgr_record_free(struct nodemgr_record *r)
{
	free(r->message);
	r->message = NULL;
}

/* --- the main loop's slivers -------------------------------------- */

void nm_close_pidfd(struct nm_sliver *s)
{
	if (s->pidfd >= 0)
		close(s->pidfd);
	s->pidfd = -1;
}

struct nm_sliver *nm_sliver_find(struct nodemgr *nm, const char *slice)
{
	for (size_t i = 0; i < nm->nslivers; i++)
		if (!strcmp(nm->slivers[i].r.slice, slice))
			return &nm->slivers[i];
	return NULL;
}

struct nm_sliver *nm_sliver_add(struct nodemgr *nm, const char *slice)
{
	if (nm->nslivers == nm->cap) {
		nm->cap = nm->cap ? 2 * nm->cap : 16;
		struct nm_sliver *v = realloc(nm->slivers, nm->cap * sizeof(*v));
		if (!v)
			abort();
		nm->slivers = v;
	}
	struct nm_sliver *s = &nm->slivers[nm->nslivers++];
	memset(s, 0, sizeof(*s));
	s->pidfd = -1;
	snprintf(s->r.slice, sizeof(s->r.slice), "%s", slice);
	return s;
}

void nm_sliver_drop(struct nodemgr *nm, struct nm_sliver *s)
{
	nm_close_pidfd(s);
	nodemgr_record_free(&s->r);
	size_t i = (size_t)(s - nm->slivers);
	memmove(&nm->slivers[i], &nm->slivers[i + 1], (nm->nslivers - i - 1) * sizeof(*s));
	nm->nslivers--;
}

/* --- records on disk ---------------------------------------------- */

int nm_record_save(struct nodemgr *nm, const struct nodemgr_record *r, struct vs_error *err)
{
	cleanup_json json_t *j = nodemgr_record_to_json(r);
	cleanup_free char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return vs_error_set(err, ENOMEM, "sliver %s: cannot encode its record", r->slice);
	cleanup_free char *p = vs_xasprintf("%s/%s.json", nm->slivers_dir, r->slice);
	return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

void nm_record_save_or_warn(struct nodemgr *nm, const struct nodemgr_record *r)
{
	struct vs_error err;
	if (nm_record_save(nm, r, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: saving its record: %s", r->slice, err.msg);
}

void nm_record_remove(struct nodemgr *nm, const char *slice)
{
	cleanup_free char *p = vs_xasprintf("%s/%s.json", nm->slivers_dir, slice);
	if (unlink(p) < 0 && errno != ENOENT)
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: removing %s: %s", slice, p,
		       strerror(errno));
}

int nm_records_load(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_closedir DIR *d = opendir(nm->slivers_dir);
	if (!d)
		return vs_error_sys(err, errno, "%s", nm->slivers_dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		cleanup_free char *p = vs_xasprintf("%s/%s", nm->slivers_dir, de->d_name);
		cleanup_free char *text = NULL;
		struct vs_error e;
		json_error_t je;
		if (vs_read_file(p, 1 << 20, &text, NULL, &e) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: %s", p, e.msg);
			continue;
		}
		cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
		struct nodemgr_record r;
		if (!j || nodemgr_record_from_json(j, &r, &e) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: %s", p,
			       j ? e.msg : je.text);
			continue;
		}
		if (strlen(r.slice) + 5 != len || strncmp(r.slice, de->d_name, len - 5) ||
		    nm_sliver_find(nm, r.slice)) {
			nm_log(nm, NODEMGR_LOG_INFO, "ignoring record %s: names another slice", p);
			nodemgr_record_free(&r);
			continue;
		}
		struct nm_sliver *s = nm_sliver_add(nm, r.slice);
		s->r = r;
	}
	return 0;
}
