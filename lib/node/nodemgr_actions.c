/*
 * nodemgr_actions.c - what the reconcile switch does, one function per
 * action (nodemgr_reconcile.c decides which).
 *
 * Every change to a slice is preceded by its intent in the record, saved
 * atomically (nodemgr_records.c): "creating" before experiment_create,
 * "destroying" before slice_destroy. Steps are numbered as the top of
 * nodemgr.c lists them and as VSLICE_FAULT counts them (nm_fault_point).
 * A create takes the manifest from the assignment, or fetches it from the
 * registry (nodemgr_upload.c), gives it the node's default limits where it
 * sets none, makes its image present (nodemgr_images.c: busybox built, a
 * registry image fetched and checked), then
 * experiment_create (experiment.json last) and slice_start (detached).
 *
 * Failures are logged and, for a create, recorded as "failed" with a one-
 * line message the registry is told; a failed sliver is not retried until
 * its assignment changes (nodemgr_decide). Main thread only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodemgr_int.h"
#include "vslice/experiment.h"
#include "vslice/image.h"
#include "vslice/manifest.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

/* --- making and removing a slice ---------------------------------- */

unsigned nodemgr_apply_defaults(struct manifest *m, uint64_t memory, uint64_t pids, uint64_t disk)
{
	unsigned applied = 0;
	if (!m->memory_bytes && memory) {
		m->memory_bytes = memory;
		applied |= NODEMGR_DEFAULTED_MEMORY;
	}
	if (!m->pids_max && pids) {
		m->pids_max = pids;
		applied |= NODEMGR_DEFAULTED_PIDS;
	}
	if (!m->disk_bytes && disk) {
		m->disk_bytes = disk;
		applied |= NODEMGR_DEFAULTED_DISK;
	}
	return applied;
}

static void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}

/* Parse the resolved manifest; every error in one line. */
static int parse_manifest(json_t *j, const char *slice, struct manifest **out, struct vs_error *err)
{
	if (!j)
		return vs_error_set(err, EINVAL, "the assignment has no manifest");
	cleanup_free char *text = json_dumps(j, JSON_COMPACT);
	if (!text)
		return vs_error_set(err, ENOMEM, "manifest: cannot encode");
	struct manifest_errors errs = {0};
	int r = manifest_parse(text, strlen(text), NULL, out, &errs);
	if (r < 0) {
		size_t total = errs.n + errs.dropped;
		if (errs.n)
			vs_error_set(err, EINVAL, "manifest: %s%s%s%s", errs.v[0].path,
				     errs.v[0].path[0] ? ": " : "", errs.v[0].message,
				     total > 1 ? " (and more)" : "");
		else
			vs_error_set(err, -r, "manifest: invalid");
		manifest_errors_free(&errs);
		return -err->code;
	}
	manifest_errors_free(&errs);
	if (strcmp((*out)->name, slice)) {
		vs_error_set(err, EINVAL, "manifest: .slice: \"%s\" is not the assigned \"%s\"",
			     (*out)->name, slice);
		manifest_free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* experiment_create's steps, as the create's steps 2 to 4 (see the top). */
static void create_step(void *arg, enum experiment_step step)
{
	nm_fault_point(arg, "nodemgr.create", 1 + (unsigned)step);
}

static void log_defaults(struct nodemgr *nm, const char *slice, unsigned applied,
			 const struct manifest *m)
{
	if (!applied)
		return;
	/* "sliver S: its manifest sets no memory/pids: node default memory 1024M, pids 1024" */
	char what[32] = "", values[128] = "";
	size_t nw = 0, nv = 0;
	const char *sep = "";
	if (applied & NODEMGR_DEFAULTED_MEMORY) {
		nw += (size_t)snprintf(what + nw, sizeof(what) - nw, "%smemory", sep);
		nv += (size_t)snprintf(values + nv, sizeof(values) - nv, "memory %lluM",
				       (unsigned long long)(m->memory_bytes >> 20));
		sep = "/";
	}
	if (applied & NODEMGR_DEFAULTED_PIDS) {
		nw += (size_t)snprintf(what + nw, sizeof(what) - nw, "%spids", sep);
		nv += (size_t)snprintf(values + nv, sizeof(values) - nv, "%spids %llu",
				       *sep ? ", " : "", (unsigned long long)m->pids_max);
		sep = "/";
	}
	if (applied & NODEMGR_DEFAULTED_DISK) {
		nw += (size_t)snprintf(what + nw, sizeof(what) - nw, "%sdisk", sep);
		nv += (size_t)snprintf(values + nv, sizeof(values) - nv, "%sdisk %lluM",
				       *sep ? ", " : "", (unsigned long long)(m->disk_bytes >> 20));
	}
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: its manifest sets no %s: node default %s", slice,
	       what, values);
}

/* The registry's "nodes" of a slice object (names of the nodes holding its
 * slivers) as a NULL-terminated list; NULL when absent (an assignment that
 * carried its manifest: the sliver then knows only itself). */
char **nm_slice_nodes(json_t *slice)
{
	json_t *arr = json_object_get(slice, "nodes");
	if (!json_is_array(arr))
		return NULL;
	char **v = vs_xcalloc(json_array_size(arr) + 1, sizeof(char *));
	size_t n = 0, i;
	json_t *e;
	json_array_foreach(arr, i, e) if (json_is_string(e)) v[n++] =
	    vs_xstrdup(json_string_value(e));
	return v;
}

/*
 * A bridged sliver with the overlay takes the cluster-wide address the
 * registry gave it (the --net bridge,ip= form): the same on whichever node
 * it runs, so peers keep reaching it after a migration. Without an overlay
 * here a bridged sliver gets a per-node address, and an address from the
 * registry is refused (it could reach no other node).
 */
static int overlay_address(struct nodemgr *nm, const struct nodemgr_assignment *a,
			   struct manifest *m, struct vs_error *err)
{
	if (strcmp(m->network, "bridge"))
		return 0;
	if (nm->overlay && !a->address[0])
		return vs_error_set(err, EINVAL,
				    "network bridge: the registry gave this sliver no cluster "
				    "address (its overlay is off, or the registry is older)");
	if (!nm->overlay && a->address[0])
		return vs_error_set(err, EINVAL,
				    "network bridge: address %s is a cluster address, and this "
				    "node has no overlay (vslice-nodemgr --overlay-local, "
				    "--overlay-vni)",
				    a->address);
	snprintf(m->netopts.ip, sizeof(m->netopts.ip), "%s", a->address);
	return 0;
}

/* The address of each of nodes (the slice's, from the assignment's
 * "addresses"; "" when unknown), NULL-terminated; NULL when it has none. */
static char **node_addresses(const struct nodemgr_assignment *a, char *const *nodes)
{
	if (!nodes || !a->addresses)
		return NULL;
	size_t n = 0;
	while (nodes[n])
		n++;
	char **v = vs_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(a->addresses, nodes[i]));
		struct in_addr ia;
		v[i] = vs_xstrdup(s && strlen(s) < 16 && inet_pton(AF_INET, s, &ia) == 1 ? s : "");
	}
	return v;
}

int nm_make_slice(struct nodemgr *nm, const struct nodemgr_assignment *a, json_t *mj, bool start,
		  char *const *nodes, struct vs_error *err)
{
	__attribute__((cleanup(manifest_freep))) struct manifest *m = NULL;
	int r = parse_manifest(mj, a->slice, &m, err);
	if (r < 0)
		return r;
	if ((r = overlay_address(nm, a, m, err)) < 0)
		return r;
	unsigned applied =
	    nodemgr_apply_defaults(m, nm->o.default_memory, nm->o.default_pids, nm->o.default_disk);
	log_defaults(nm, a->slice, applied, m);
	/* busybox built, a registry image fetched and checked (nodemgr_images.c) */
	char local[sizeof(m->image)];
	if ((r = nm_image_ensure(nm, m->image, !start, local, err)) < 0)
		return r;
	snprintf(m->image, sizeof(m->image), "%s", local);
	/* The create's crash steps (nodemgr.create:N) are a plain create's;
	 * a migration's copy has its own (migrate.in:N). */
	cleanup_strv char **addrs = node_addresses(a, nodes);
	struct experiment_create_opts eo = {.step = start ? create_step : NULL,
					    .arg = nm,
					    .nodes = nodes,
					    .addresses = addrs,
					    .address = a->address,
					    .registry = nm->registry};
	if ((r = experiment_create_with(nm->root, m, nm->origin, nm->name, &eo, err)) < 0)
		return r;
	if (!start)
		return 0;
	r = slice_start(nm->root, a->slice, &(struct slice_start_opts){.foreground = false}, err);
	if (r < 0) {
		struct vs_error derr;
		if (slice_destroy(nm->root, a->slice, true, &derr) < 0)
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: cleaning up after a failed start: %s", a->slice,
			       derr.msg);
		return vs_error_wrap(err, "start");
	}
	return 0;
}

/*
 * Destroy slice, intent first: its record (made if it had none) says
 * "destroying" before anything goes, so a crash half-way through leaves a
 * slice the next reconcile still knows to remove. *sp: the sliver (may be
 * NULL; set to the one made).
 */
int nm_destroy_slice(struct nodemgr *nm, const char *slice, struct nm_sliver **sp)
{
	struct vs_error err;
	struct nm_sliver *s = *sp;
	if (!s) {
		s = *sp = nm_sliver_add(nm, slice);
		s->r.created = time(NULL);
	}
	if (s->r.phase != NODEMGR_DESTROYING) {
		nm_close_pidfd(s);
		s->r.phase = NODEMGR_DESTROYING;
		if (nm_record_save(nm, &s->r, &err) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "destroying sliver %s: %s (retrying later)",
			       slice, err.msg);
			return -1;
		}
	}
	nm_fault_point(nm, "nodemgr.destroy", 1);
	if (slice_destroy(nm->root, slice, true, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "destroying sliver %s: %s (retrying later)", slice,
		       err.msg);
		return -1;
	}
	nm_log(nm, NODEMGR_LOG_INFO, "destroyed sliver %s", slice);
	nm->changed = true;
	nm_fault_point(nm, "nodemgr.destroy", 2);
	return 0;
}

/* A fresh record of assignment a in phase p, made now, for s (made if
 * NULL); not saved yet. */
static struct nm_sliver *new_record(struct nodemgr *nm, struct nm_sliver *s,
				    const struct nodemgr_assignment *a, enum nodemgr_phase p)
{
	if (!s)
		s = nm_sliver_add(nm, a->slice);
	nodemgr_record_free(&s->r);
	memset(&s->r, 0, sizeof(s->r));
	snprintf(s->r.slice, sizeof(s->r.slice), "%s", a->slice);
	snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
	s->r.expires = a->expires;
	s->r.phase = p;
	s->r.created = time(NULL);
	return s;
}

/* --- one function per action ------------------------------------- */

void nm_create(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	cleanup_json json_t *fetched = NULL;
	json_t *mj = a->manifest;
	if (!mj) {
		struct vs_error ferr;
		if (nm_fetch_manifest(nm, a->slice, &fetched, &ferr) < 0) {
			/* Leave no record: the next reconcile creates it afresh. */
			nm_log(nm, NODEMGR_LOG_INFO,
			       "sliver %s: fetching its manifest: %s (retrying later)", a->slice,
			       ferr.msg);
			if (s) {
				nm_record_remove(nm, a->slice);
				nm_sliver_drop(nm, s);
			}
			return;
		}
		mj = json_object_get(fetched, "manifest");
	}
	s = new_record(nm, s, a, NODEMGR_CREATING);
	s->last_state[0] = 0;
	struct vs_error err;
	/* The record comes first: a crash mid-create leaves a slice we know. */
	if (nm_record_save(nm, &s->r, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: %s (not created)", a->slice, err.msg);
		nm_sliver_drop(nm, s);
		return;
	}
	nm->changed = true;
	nm_fault_point(nm, "nodemgr.create", 1);
	cleanup_strv char **nodes = fetched ? nm_slice_nodes(fetched) : NULL;
	int r = nm_make_slice(nm, a, mj, true, nodes, &err);
	if (r == -EINPROGRESS) {
		/* Its image is being fetched (nodemgr_images.c): nothing is made
		 * yet; the reconcile after the fetch creates it afresh. */
		nm_record_remove(nm, a->slice);
		nm_sliver_drop(nm, s);
		return;
	}
	if (r < 0) {
		char one[VS_ERROR_MAX];
		s->r.phase = NODEMGR_FAILED;
		s->r.message = vs_xstrdup(vs_printable(err.msg, one, sizeof(one)));
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s failed: %s", a->slice, s->r.message);
	} else {
		nm_fault_point(nm, "nodemgr.create", 5);
		s->r.phase = NODEMGR_CREATED;
		nm_log(nm, NODEMGR_LOG_INFO, "created sliver %s", a->slice);
	}
	nm_record_save_or_warn(nm, &s->r);
	nm_fault_point(nm, "nodemgr.create", 6);
}

void nm_recreate(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: assignment changed or half made, re-creating",
	       a->slice);
	if (nm_destroy_slice(nm, a->slice, &s) == 0)
		nm_create(nm, a, s);
}

/*
 * The create of s was cut short after experiment.json (step 4 or 5): the
 * slice is complete. Start it if it never ran, then record it; a slice in
 * any other shape is made again.
 */
void nm_resume(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	struct slice_state st;
	struct vs_error err;
	int r = slice_load(nm->root, a->slice, NULL, &st, &err);
	if (r == 0 && st.status == SLICE_CREATED)
		r = slice_start(nm->root, a->slice, &(struct slice_start_opts){.foreground = false},
				&err);
	else if (r == 0 && st.status == SLICE_UNKNOWN)
		r = vs_error_set(&err, EIO, "its state is unknown");
	if (r < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: finishing its create: %s; re-creating",
		       a->slice, err.msg);
		if (nm_destroy_slice(nm, a->slice, &s) == 0)
			nm_create(nm, a, s);
		return;
	}
	s->r.phase = NODEMGR_CREATED;
	s->last_state[0] = 0;
	nm->changed = true;
	nm_log(nm, NODEMGR_LOG_INFO, "created sliver %s (finished after a restart)", a->slice);
	nm_record_save_or_warn(nm, &s->r);
}

/* Ours on disk without a record (bookkeeping lost): take it as it is. */
void nm_adopt(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	s = new_record(nm, s, a, NODEMGR_CREATED);
	nm_log(nm, NODEMGR_LOG_INFO, "adopted sliver %s", a->slice);
	nm_record_save_or_warn(nm, &s->r);
}

/* Renewed at the registry: move the sliver's end too. */
void nm_renew(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s)
{
	struct vs_error err;
	if (slice_renew(nm->root, a->slice, (time_t)a->expires, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: renew: %s", a->slice, err.msg);
		return;
	}
	s->r.expires = a->expires;
	nm_record_save_or_warn(nm, &s->r);
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s: renewed until %lld", a->slice,
	       (long long)a->expires);
}

void nm_fail(struct nodemgr *nm, const struct nodemgr_assignment *a, struct nm_sliver *s,
	     const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!s)
		s = nm_sliver_add(nm, a->slice);
	nodemgr_record_free(&s->r);
	s->r.phase = NODEMGR_FAILED;
	s->r.message = vs_xstrdup(msg);
	snprintf(s->r.sha256, sizeof(s->r.sha256), "%s", a->sha256);
	s->r.expires = a->expires;
	nm_log(nm, NODEMGR_LOG_INFO, "sliver %s failed: %s", a->slice, msg);
	nm_record_save_or_warn(nm, &s->r);
	nm->changed = true;
}

void nm_destroy(struct nodemgr *nm, const char *slice, struct nm_sliver *s)
{
	if (nm_destroy_slice(nm, slice, &s) < 0)
		return;
	nm_record_remove(nm, slice);
	nm_sliver_drop(nm, s);
	nm_fault_point(nm, "nodemgr.destroy", 3);
}

void nm_forget(struct nodemgr *nm, const char *slice, struct nm_sliver *s)
{
	nm_record_remove(nm, slice);
	if (s)
		nm_sliver_drop(nm, s);
}
