/*
 * nodemgr_reconcile.c - desired against actual, one slice name at a time.
 *
 * For each name that may need work (assigned, recorded, or a slice on disk
 * made by this node manager) three steps, kept apart:
 *   1. inputs: its assignment (nm_assignment_find), its record
 *      (nm_sliver_find) and what is on disk (classify: none, ours, someone
 *      else's, or a half-made/half-removed slice our intent explains);
 *   2. decision: nodemgr_decide(), pure - from those inputs to one action,
 *      no I/O, every case in test_nodemgr.c;
 *   3. action: one switch, one call per action into nodemgr_actions.c.
 * A new action slots in as nodemgr_int.h says, without touching the inputs
 * or the other actions.
 *
 * Nothing happens without a desired set (a successful answer or the
 * cache): a set we do not know destroys nothing.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nodemgr_int.h"
#include "vslice/experiment.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* --- the decision: pure ------------------------------------------- */

/*
 * The migration cases (docs/migration.md), before the others. The
 * assignment says where the registry stands: while a migration runs the
 * source's entry has migrate_out and the target's migrate_in; once it is
 * committed the source has no entry and the target a plain one; once it is
 * aborted the source has a plain one and the target none. A record in a
 * migrating phase without a thread working on it (the reconcile skips the
 * ones that have one) means a node manager restart cut that step short.
 * Returns NODEMGR_NOTHING when the case is not a migration one.
 */
static enum nodemgr_action decide_migration(const struct nodemgr_assignment *a,
					    const struct nodemgr_record *r,
					    enum nodemgr_local local)
{
	enum nodemgr_mig_role role = a ? a->mig.role : NODEMGR_MIG_NONE;
	enum nodemgr_phase p = r ? r->phase : NODEMGR_CREATED;
	bool migrating = r && (p == NODEMGR_MIGRATING_OUT || p == NODEMGR_MIGRATING_IN ||
			       p == NODEMGR_RECEIVING || p == NODEMGR_RESTORED);
	if (role == NODEMGR_MIG_OUT) {
		if (r && p == NODEMGR_MIGRATING_OUT)
			return NODEMGR_MIGRATE_RESOLVE; /* stopped, maybe half sent */
		if (r && p == NODEMGR_CREATED && local == NODEMGR_LOCAL_OURS &&
		    !strcmp(r->sha256, a->sha256))
			return NODEMGR_MIGRATE_OUT;
		return NODEMGR_NOTHING; /* not a sliver we run: the usual rules */
	}
	if (role == NODEMGR_MIG_IN) {
		if (local == NODEMGR_LOCAL_FOREIGN)
			return NODEMGR_CONFLICT;
		if (r && (p == NODEMGR_RECEIVING || p == NODEMGR_RESTORED))
			return NODEMGR_MIGRATE_RESOLVE;
		/* Done (the answer saying so is on its way), or a sliver of this
		 * slice that runs here already: never replaced by a copy. */
		if (r && p == NODEMGR_CREATED)
			return NODEMGR_KEEP;
		/* Nothing here, our own half-made copy, or one a restart left
		 * without its transfer: make it (again). */
		return NODEMGR_MIGRATE_IN;
	}
	if (!migrating)
		return NODEMGR_NOTHING;
	if (!a) /* committed (source) or aborted (target), or the slice deleted */
		return local == NODEMGR_LOCAL_NONE ? NODEMGR_FORGET : NODEMGR_DESTROY;
	/* A plain entry: aborted (source), committed (target): ask the registry
	 * which, and roll forward or back. A copy that never got its stream
	 * is made afresh as a plain sliver. */
	if (p == NODEMGR_MIGRATING_IN)
		return local == NODEMGR_LOCAL_NONE ? NODEMGR_CREATE : NODEMGR_RECREATE;
	return NODEMGR_MIGRATE_RESOLVE;
}

enum nodemgr_action nodemgr_decide(const struct nodemgr_assignment *a,
				   const struct nodemgr_record *r, enum nodemgr_local local)
{
	/* PARTIAL comes only with an intent record (classify); without one it
	 * would be a slice nobody explains, and those are never touched. */
	bool intent = r && (r->phase == NODEMGR_CREATING || r->phase == NODEMGR_DESTROYING ||
			    r->phase == NODEMGR_MIGRATING_IN || r->phase == NODEMGR_RECEIVING);
	if (local == NODEMGR_LOCAL_PARTIAL && !intent)
		local = NODEMGR_LOCAL_FOREIGN;
	enum nodemgr_action m = decide_migration(a, r, local);
	if (m != NODEMGR_NOTHING)
		return m;
	if (!a) {
		if (local == NODEMGR_LOCAL_OURS || local == NODEMGR_LOCAL_PARTIAL)
			return NODEMGR_DESTROY; /* also rolls back a create, finishes a destroy */
		return r ? NODEMGR_FORGET : NODEMGR_NOTHING;
	}
	if (r && r->phase == NODEMGR_FAILED) {
		/* Retry only when the assignment changed (deleted and re-created,
		 * or different): never in a loop. */
		if (!strcmp(r->sha256, a->sha256) && r->expires == a->expires)
			return NODEMGR_KEEP;
		if (local == NODEMGR_LOCAL_OURS)
			return NODEMGR_RECREATE;
		r = NULL;
	}
	if (!r) {
		switch (local) {
		case NODEMGR_LOCAL_NONE:
			return NODEMGR_CREATE;
		case NODEMGR_LOCAL_OURS:
			/* Ours without a record (bookkeeping lost): take it as it is. */
			return NODEMGR_ADOPT;
		case NODEMGR_LOCAL_FOREIGN:
		case NODEMGR_LOCAL_PARTIAL:
			return NODEMGR_CONFLICT;
		}
	}
	switch (r->phase) {
	case NODEMGR_DESTROYING:
		/* A destroy (or the first half of a re-create) was cut short:
		 * finish it, then make the sliver the assignment asks for. */
		if (local == NODEMGR_LOCAL_FOREIGN)
			return NODEMGR_CONFLICT;
		return local == NODEMGR_LOCAL_NONE ? NODEMGR_CREATE : NODEMGR_RECREATE;
	case NODEMGR_CREATING:
		switch (local) {
		case NODEMGR_LOCAL_NONE:
			return NODEMGR_CREATE;
		case NODEMGR_LOCAL_FOREIGN:
			return NODEMGR_CONFLICT;
		case NODEMGR_LOCAL_PARTIAL:
			return NODEMGR_RECREATE; /* half made: remove it, make it again */
		case NODEMGR_LOCAL_OURS:
			/* Complete (experiment.json is written last): finish the
			 * create rather than run the experiment twice. */
			return strcmp(r->sha256, a->sha256) ? NODEMGR_RECREATE : NODEMGR_RESUME;
		}
		break;
	case NODEMGR_CREATED:
	case NODEMGR_FAILED:
	case NODEMGR_MIGRATING_OUT: /* decide_migration has these */
	case NODEMGR_MIGRATING_IN:
	case NODEMGR_RECEIVING:
	case NODEMGR_RESTORED:
		break;
	}
	/* created */
	if (local != NODEMGR_LOCAL_OURS)
		return NODEMGR_VANISHED;
	if (strcmp(r->sha256, a->sha256))
		return NODEMGR_RECREATE;
	/* Renewed at the registry (only expires changed): move its end too. */
	if (a->expires > 0 && r->expires != a->expires)
		return NODEMGR_RENEW;
	return NODEMGR_KEEP;
}

/* No default: a new action without a name does not build (-Wswitch). */
const char *nodemgr_action_name(enum nodemgr_action a)
{
	switch (a) {
	case NODEMGR_NOTHING:
		return "nothing";
	case NODEMGR_KEEP:
		return "keep";
	case NODEMGR_RENEW:
		return "renew";
	case NODEMGR_CREATE:
		return "create";
	case NODEMGR_RECREATE:
		return "recreate";
	case NODEMGR_RESUME:
		return "resume";
	case NODEMGR_ADOPT:
		return "adopt";
	case NODEMGR_CONFLICT:
		return "conflict";
	case NODEMGR_VANISHED:
		return "vanished";
	case NODEMGR_DESTROY:
		return "destroy";
	case NODEMGR_FORGET:
		return "forget";
	case NODEMGR_MIGRATE_OUT:
		return "migrate-out";
	case NODEMGR_MIGRATE_IN:
		return "migrate-in";
	case NODEMGR_MIGRATE_RESOLVE:
		return "migrate-resolve";
	}
	return "?";
}

/* --- inputs and action ---------------------------------------------- */

/*
 * A slice without experiment.json is the one our intent r explains when we
 * were destroying it (experiment.json may go first), or creating it and it
 * is not older than the intent (a slice someone made before is not ours).
 */
static bool partial_is_ours(struct nodemgr *nm, const char *slice, const struct nodemgr_record *r)
{
	if (!r || (r->phase != NODEMGR_CREATING && r->phase != NODEMGR_DESTROYING &&
		   r->phase != NODEMGR_MIGRATING_IN && r->phase != NODEMGR_RECEIVING))
		return false;
	/* receiving: a live migration's restore replaces the copy with a slice
	 * made from the stream's spec; cut short, it has no experiment.json */
	if (r->phase == NODEMGR_DESTROYING || r->phase == NODEMGR_RECEIVING)
		return true;
	struct slice_spec spec;
	struct vs_error err;
	if (slice_load(nm->root, slice, &spec, NULL, &err) < 0)
		return true; /* no spec.json yet: the half our create made */
	bool ours = (long long)spec.created >= r->created;
	slice_spec_free(&spec);
	return ours;
}

static enum nodemgr_local classify(struct nodemgr *nm, const char *slice,
				   const struct nodemgr_record *r)
{
	cleanup_free char *d = slice_dir(nm->root, slice);
	struct stat st;
	if (lstat(d, &st) < 0 && errno == ENOENT)
		return NODEMGR_LOCAL_NONE;
	cleanup_free char *origin = NULL, *node = NULL;
	struct vs_error err;
	int rc = experiment_origin(nm->root, slice, &origin, &node, &err);
	if (rc == -ENOENT && S_ISDIR(st.st_mode) && partial_is_ours(nm, slice, r))
		return NODEMGR_LOCAL_PARTIAL;
	if (rc < 0)
		return NODEMGR_LOCAL_FOREIGN;
	if (origin && !strncmp(origin, "registry ", 9) && node && !strcmp(node, nm->name))
		return NODEMGR_LOCAL_OURS;
	return NODEMGR_LOCAL_FOREIGN;
}

/* Inputs, decision, action (see the top): the only place the three meet. */
static void reconcile_one(struct nodemgr *nm, const char *slice)
{
	struct nodemgr_assignment *a = nm_assignment_find(nm, slice);
	/* A migration thread owns this sliver for now (nodemgr_migrate.c); an
	 * open transfer no PUT came for yet is dropped when its migration is. */
	if (nm_job_holds(nm, slice, a))
		return;
	struct nm_sliver *s = nm_sliver_find(nm, slice);
	enum nodemgr_local local = classify(nm, slice, s ? &s->r : NULL);
	enum nodemgr_action act = nodemgr_decide(a, s ? &s->r : NULL, local);
	if (act != NODEMGR_KEEP && act != NODEMGR_NOTHING)
		nm_log(nm, NODEMGR_LOG_DEBUG, "sliver %s: %s", slice, nodemgr_action_name(act));
	/* No default: a new action without a case here does not build. */
	switch (act) {
	case NODEMGR_NOTHING:
	case NODEMGR_KEEP:
		return;
	case NODEMGR_RENEW:
		nm_renew(nm, a, s);
		return;
	case NODEMGR_CREATE:
		nm_create(nm, a, s);
		return;
	case NODEMGR_RECREATE:
		nm_recreate(nm, a, s);
		return;
	case NODEMGR_RESUME:
		nm_resume(nm, a, s);
		return;
	case NODEMGR_ADOPT:
		nm_adopt(nm, a, s);
		return;
	case NODEMGR_CONFLICT:
		nm_fail(nm, a, s,
			"a slice named %s already exists on this node and was not made by "
			"vslice-nodemgr for this node; not touched",
			slice);
		return;
	case NODEMGR_VANISHED:
		nm_fail(nm, a, s,
			"the sliver's slice was removed from the node behind the node manager's "
			"back");
		return;
	case NODEMGR_DESTROY:
		nm_destroy(nm, slice, s);
		return;
	case NODEMGR_FORGET:
		nm_forget(nm, slice, s);
		return;
	case NODEMGR_MIGRATE_OUT:
		nm_migrate_out(nm, a, s);
		return;
	case NODEMGR_MIGRATE_IN:
		nm_migrate_in(nm, a, s);
		return;
	case NODEMGR_MIGRATE_RESOLVE:
		nm_migrate_resolve(nm, a, s);
		return;
	}
}

/*
 * The overlay's peer list (the registry's "peers": every other node's
 * bridged slivers) into netcfg, when it changed: level-triggered, so a
 * slice that moved is repointed on every node by the next answer after
 * the migration's commit. A failure is logged and tried again next time.
 */
static void apply_peers(struct nodemgr *nm)
{
	if (!nm->overlay || !nm->peers_known || nm->peers_applied)
		return;
	struct vs_error err;
	if (netcfg_overlay_set_peers(nm->root, nm->peers, nm->npeers, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "overlay peers: %s", err.msg);
		return;
	}
	nm->peers_applied = true;
	nm_log(nm, NODEMGR_LOG_INFO, "overlay: %zu peer%s", nm->npeers, nm->npeers == 1 ? "" : "s");
}

void nm_reconcile(struct nodemgr *nm)
{
	if (!nm->have_desired)
		return; /* never destroy on a set we do not know */
	apply_peers(nm);
	/* Every name that may need work: assigned, recorded, or ours on disk. */
	size_t cap = nm->ndesired + nm->nslivers + 1, n = 0;
	char **names = vs_xcalloc(cap, sizeof(char *));
	for (size_t i = 0; i < nm->ndesired; i++)
		names[n++] = vs_xstrdup(nm->desired[i].slice);
	for (size_t i = 0; i < nm->nslivers; i++)
		if (!nm_assignment_find(nm, nm->slivers[i].r.slice))
			names[n++] = vs_xstrdup(nm->slivers[i].r.slice);
	char **local = NULL;
	size_t nlocal = 0;
	struct vs_error err;
	if (slice_list(nm->root, &local, &nlocal, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "listing slices: %s", err.msg);
	for (size_t i = 0; i < nlocal; i++) {
		bool known = false;
		for (size_t j = 0; j < n && !known; j++)
			known = !strcmp(names[j], local[i]);
		if (!known && classify(nm, local[i], NULL) == NODEMGR_LOCAL_OURS) {
			if (n + 1 >= cap) {
				cap *= 2;
				char **v = realloc(names, cap * sizeof(char *));
				if (!v)
					abort();
				names = v;
			}
			names[n++] = vs_xstrdup(local[i]);
		}
	}
	vs_strv_free(local);
	for (size_t i = 0; i < n && !atomic_load(&nm->stop); i++)
		reconcile_one(nm, names[i]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
