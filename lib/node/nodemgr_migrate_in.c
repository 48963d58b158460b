/*
 * nodemgr_migrate_in.c - a cold migration's target side (the steps and the
 * rules are at the top of nodemgr_migrate.c): MIGRATE_IN makes the copy,
 * not started, and opens its transfer; the PUT that takes the transfer
 * (nodemgr_xfer.c) starts the job here that reads the stream into the
 * copy (slice_fs_receive), reports "restored" and, once the registry
 * answers "committed", starts the copy and reports "started".
 * Live and pre-copy: the stream is a checkpoint; slice_restore replaces the
 * copy with the restored slice, held frozen until "committed" (then thawed).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/slice_ckpt.h"
#include "vslice/slice_xfer.h"
#include "vslice/util.h"

static void in_progress(void *arg, uint64_t bytes)
{
	struct nm_job *j = arg;
	uint64_t before = atomic_exchange(&j->bytes, bytes);
	if (before < (1u << 20) && bytes >= (1u << 20))
		nm_fault_point(j->nm, "migrate.in", 4);
}

static void in_answer(struct nm_job *j, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void in_answer(struct nm_job *j, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&j->nm->mu);
	j->answer_status = status;
	vsnprintf(j->answer_msg, sizeof(j->answer_msg), fmt, ap);
	pthread_mutex_unlock(&j->nm->mu);
	va_end(ap);
}

/* The PUT's answer for a failed receive (slice_xfer.h's kinds). */
static unsigned receive_status(const struct vs_error *err)
{
	if (err->kind == VS_EK_LIMIT || err->code == ENOSPC || err->code == EDQUOT)
		return 507; /* no space left here */
	if (err->kind == VS_EK_REFUSED)
		return 422; /* the stream did not verify */
	return 500;
}

/*
 * Live / pre-copy: the checkpoint, restored as it arrives and held frozen
 * until the commit. slice_restore replaces the copy made from the manifest
 * (a slice made from the stream's own spec); the copy's experiment.json
 * (origin: this registry, this node) goes back into it, so it stays this
 * node manager's sliver.
 */
struct kept_file {
	const char *path;
	const char *data;
	size_t len;
	uint64_t created_ns; /* when the slice existed: the phases' log line */
};

static int put_back(void *arg, struct vs_error *err)
{
	struct kept_file *k = arg;
	k->created_ns = vs_now_ns();
	return vs_write_file_atomic(k->path, k->data, k->len, 0644, err);
}

static int live_receive(struct nm_job *j, struct vs_error *err)
{
	struct nodemgr *nm = j->nm;
	cleanup_free char *d = slice_dir(nm->root, j->r.slice);
	cleanup_free char *ep = vs_xasprintf("%s/experiment.json", d);
	cleanup_free char *exp = NULL;
	size_t elen = 0;
	int r = vs_read_file(ep, 1 << 20, &exp, &elen, err);
	if (r < 0)
		return vs_error_wrap(err, "the copy made from the manifest");
	/* experiment.json goes in as soon as the slice exists: a node manager
	 * killed mid-restore finds its own (receiving) copy, not a stranger */
	struct kept_file k = {.path = ep, .data = exp, .len = elen};
	struct slice_restore_opts ro = {.frozen = true, .created = put_back, .created_arg = &k};
	struct ckpt_stats cst;
	uint64_t t0 = vs_now_ns();
	r = slice_restore(nm->root, j->r.slice, j->in_fd, &ro, &cst, err);
	if (r == 0) {
		uint64_t t1 = vs_now_ns();
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s: restored in %.1f ms: records and made %.1f, "
		       "stubs %.1f (forking %.1f), memory %.1f (read %.1f, crc %.1f, write %.1f)",
		       j->r.slice, j->mig.id, (double)(t1 - t0) / 1e6,
		       (double)(k.created_ns - t0) / 1e6, (double)cst.restore_ns / 1e6,
		       (double)cst.forking_ns / 1e6, (double)cst.memrestore_ns / 1e6,
		       (double)cst.mem_read_ns / 1e6, (double)cst.mem_crc_ns / 1e6,
		       (double)cst.mem_write_ns / 1e6);
	}
	return r;
}

static void *in_main(void *arg)
{
	struct nm_job *j = arg;
	struct nodemgr *nm = j->nm;
	nm_block_sigpipe();
	struct vs_error err;
	struct slice_xfer_stats st = {0};
	struct slice_xfer_opts o = {.progress = in_progress, .arg = j};
	uint64_t t0 = vs_now_ns();
	bool live = strcmp(j->mig.mode, "live") == 0 || strcmp(j->mig.mode, "precopy") == 0;
	int rc;
	if (live) {
		/* The checkpoint, restored as it arrives (it replaces the copy
		 * made from the manifest) and held frozen until the commit. */
		rc = live_receive(j, &err);
		st.bytes = atomic_load(&j->bytes);
	} else {
		rc = slice_fs_receive(nm->root, j->r.slice, j->in_fd, &o, &st, &err);
	}
	close(j->in_fd);
	j->in_fd = -1;
	if (rc == 0) {
		j->r.phase = NODEMGR_RESTORED;
		rc = nm_record_save(nm, &j->r, &err);
	}
	struct http_client c;
	bool have = nm_job_client(j, &c) == 0;
	char got[16] = "";
	if (rc < 0) {
		char reason[VS_ERROR_MAX + 160];
		snprintf(reason, sizeof(reason), "receiving the stream: %s", err.msg);
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", j->r.slice, j->mig.id,
		       reason);
		if (have)
			nm_job_report(&c, j, "aborted", (long long)atomic_load(&j->bytes), reason,
				      NM_MIG_PATIENCE, got);
		/* Never "restored": the registry cannot commit; the copy goes. */
		nm_job_destroy_slice(j);
		in_answer(j, receive_status(&err), "%s", reason);
		goto out;
	}
	nm_fault_point(nm, "migrate.in", 5);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: received from %s (%s): %llu bytes in %.2f s",
	       j->r.slice, j->mig.peer, j->mig.id, (unsigned long long)st.bytes,
	       (double)(vs_now_ns() - t0) / 1e9);
	int rr =
	    have ? nm_job_report(&c, j, "restored", (long long)st.bytes, NULL, NM_MIG_PATIENCE, got)
		 : -1;
	if (rr == 0 && !strcmp(got, "committed")) {
		nm_fault_point(nm, "migrate.in", 6);
		int sr = live ? slice_thaw(nm->root, j->r.slice, &err)
			      : slice_start(nm->root, j->r.slice,
					    &(struct slice_start_opts){.foreground = false}, &err);
		if (sr < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: start after the migration: %s",
			       j->r.slice, err.msg);
			j->r.phase = NODEMGR_FAILED;
			j->r.message = vs_xasprintf("start after the migration: %s", err.msg);
		} else {
			j->r.phase = NODEMGR_CREATED;
		}
		j->r.log_offset = 0; /* the log came along; the registry has none of it */
		j->r.log_capped = false;
		j->r.results_done = false;
		nm_fault_point(nm, "migrate.in", 7);
		/* "started" before the record says created: a restart in between
		 * finds "restored" and reports it, and "started", again
		 * (MIGRATE_RESOLVE). */
		nm_job_report(&c, j, "started", -1, NULL, 5, got);
		nm_fault_point(nm, "migrate.in", 8);
		nm_record_save_or_warn(nm, &j->r);
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migrated here from %s (%s) and started",
		       j->r.slice, j->mig.peer, j->mig.id);
		in_answer(j, 200, "committed");
	} else if (rr >= 0) {
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s is %s at the registry; removing the copy",
		       j->r.slice, j->mig.id, got);
		nm_job_destroy_slice(j);
		in_answer(j, 409, "migration %s is %s at the registry", j->mig.id, got);
	} else {
		/* Restored, no word from the registry: the record has
		 * MIGRATE_RESOLVE ask again. */
		in_answer(j, 503,
			  "target %s: the stream is in, the registry did not answer \"restored\"; "
			  "it will be settled when it does",
			  nm->name);
	}
out:
	if (have)
		http_client_free(&c);
	nm_job_finish(j);
	return NULL;
}

int nm_job_start_receive(struct nm_job *j, struct vs_error *err)
{
	struct nodemgr *nm = j->nm;
	/* One use, also across a restart: "receiving" is never made "open"
	 * again (nodemgr_decide resolves it with the registry). */
	j->r.phase = NODEMGR_RECEIVING;
	int r = nm_record_save(nm, &j->r, err);
	if (r == 0) {
		nm_fault_point(nm, "migrate.in", 3);
		/* Under nm->mu: the thread cannot finish (nm_job_finish takes
		 * it) before thread_started says the main loop must join it. */
		pthread_mutex_lock(&nm->mu);
		r = pthread_create(&j->thread, NULL, in_main, j);
		j->thread_started = r == 0;
		pthread_mutex_unlock(&nm->mu);
		if (r == 0)
			return 0;
		r = vs_error_sys(err, r, "starting the receiver thread");
	}
	/* The record says receiving (or could not be saved): resolved later. */
	close(j->in_fd);
	j->in_fd = -1;
	in_answer(j, 500, "target %s: %s", nm->name, err->msg);
	nm_job_finish(j);
	return r;
}

void nm_migrate_in(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	if (s && vs_now_ns() < s->mig_retry_ns)
		return;
	cleanup_json json_t *fetched = NULL;
	struct vs_error err;
	if (nm_fetch_manifest(nm, a->slice, &fetched, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO,
		       "sliver %s: migration %s: fetching its manifest: %s (retrying later)",
		       a->slice, a->mig.id, err.msg);
		if (s)
			s->mig_retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
		return;
	}
	/* Whatever is here of ours (a copy a restart cut off, a half-made
	 * one) goes first: the stream goes into a fresh copy. */
	cleanup_free char *d = slice_dir(nm->root, a->slice);
	if (access(d, F_OK) == 0 && nm_destroy_slice(nm, a->slice, &s) < 0)
		return;
	if (!s)
		s = nm_sliver_add(nm, a->slice);
	nodemgr_record_free(&s->r);
	memset(&s->r, 0, sizeof(s->r));
	snprintf(s->r.slice, sizeof(s->r.slice), "%s", a->slice);
	snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
	snprintf(s->r.migration, sizeof(s->r.migration), "%s", a->mig.id);
	s->r.expires = a->expires;
	s->r.created = time(NULL);
	s->r.phase = NODEMGR_MIGRATING_IN;
	s->last_state[0] = '\0';
	if (nm_record_save(nm, &s->r, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", a->slice, a->mig.id,
		       err.msg);
		s->mig_retry_ns = vs_now_ns() + NM_MIG_RETRY_NS;
		return;
	}
	nm_fault_point(nm, "migrate.in", 1);
	/* The test hook VSLICE_FAULT=migrate.delay:MS: a target slow to make
	 * the copy, so the source's PUT comes before the transfer is open. */
	unsigned delay = nm_fault_delay_ms(nm, "migrate.delay");
	if (delay) {
		nm_log(nm, NODEMGR_LOG_INFO, "VSLICE_FAULT: migration %s: opening in %u ms",
		       a->mig.id, delay);
		nm_nap_ms(nm, delay);
	}
	cleanup_strv char **nodes = nm_slice_nodes(fetched);
	if (nm_make_slice(nm, a, json_object_get(fetched, "manifest"), false, nodes, &err) < 0) {
		char reason[VS_ERROR_MAX + 160];
		snprintf(reason, sizeof(reason), "making the copy: %s", err.msg);
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s: %s", a->slice, a->mig.id,
		       reason);
		/* Tell the registry now, so the source does not wait it out. */
		struct regclient_migration_report rep = {.node = nm->name,
							 .phase = "aborted",
							 .bytes = -1,
							 .at_ms = (long long)nm_now_ms(),
							 .reason = reason};
		long status;
		struct vs_error rerr;
		regclient_migration_report(&nm->hc, a->mig.id, &rep, NULL, NULL, &status, &rerr);
		if (nm_destroy_slice(nm, a->slice, &s) == 0) {
			nm_record_remove(nm, a->slice);
			nm_sliver_drop(nm, s);
		}
		return;
	}
	nm_fault_point(nm, "migrate.in", 2);
	struct nm_job *j = nm_job_new(nm, NM_JOB_IN, &a->mig, &s->r);
	j->state = NM_JOB_OPEN;
	nm_job_push(nm, j);
	nm->changed = true;
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: migration %s from %s: copy made, transfer open",
	       a->slice, a->mig.id, a->mig.peer);
}
