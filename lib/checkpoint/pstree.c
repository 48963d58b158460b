/*
 * pstree.c - how to recreate the tree's sessions and process groups.
 *
 * A process can only setsid() (becoming leader of a new session), make a
 * group of its own, or join a group that exists in its session right now;
 * it inherits its parent's session and group at fork. So the order in which
 * processes are forked and the place each one is forked from decide which
 * ids can be rebuilt. ck_pstree_plan() is a pure function from the dumped
 * (pid, ppid, sid, pgid, zombie) table to an ordered list of steps; the
 * restore stub carries it out (restore.c) and the dump runs it first so a
 * tree that cannot be rebuilt is refused before anything is stopped.
 *
 * Model (what the stub does, one step at a time):
 *  - the root starts with the restoring PID 1's session and group and
 *    creates every other child of PID 1 itself with CLONE_PARENT, before or
 *    after its own setsid/setpgid (its "self" step);
 *  - every other process creates its own children;
 *  - a created process first does its action (setsid, setpgid(0, 0) or
 *    setpgid(0, G)) and then its own steps; its creator waits for that
 *    (a pipe closing) before the next step, so each subtree's sessions and
 *    groups exist before the next sibling is forked;
 *  - a session or group whose leader is gone (the double-forked daemon: its
 *    session leader exited) gets a helper with the leader's pid, forked where
 *    the members belong: it does setsid/setpgid, forks every waiting sibling
 *    of that session/group with CLONE_PARENT (so their parent is right) and
 *    exits; its parent reaps it (PID 1 for helpers at the top), as CRIU does.
 * Children are placed greedily in image order: the first one whose whole
 * subtree can be built in the current state goes next. If none can, the
 * tree is refused with the pid and the reason. The search is bounded (a
 * tree built to make it explode is refused, not searched).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ckpt_int.h"
#include "vslice/util.h"

struct ent {
	int32_t pid, sid, pgid;
	bool alive; /* holds its group (zombies do until reaped) */
};

struct planner {
	const struct ck_pnode *n;
	size_t nn;
	int32_t root;
	bool *placed;
	struct ent *e;
	size_t ne, ecap;
	struct ck_pstep *s;
	size_t ns, scap;
	unsigned long budget;	/* placement attempts left: a hostile tree must
				 * not make the host search for ever */
	unsigned depth;		/* recursion depth: bounded, for the same reason */
	char why[VS_ERROR_MAX]; /* the last reason a placement failed */
	int32_t why_pid;	/* ... and the process it is about */
};

struct snap {
	size_t ne, ns;
	bool *placed;
	int32_t root_sid, root_pgid; /* the root's own step changes its entity */
};

static struct snap snap_take(struct planner *P)
{
	struct snap s = {P->ne, P->ns, vs_xmalloc(P->nn ? P->nn : 1), P->e[0].sid, P->e[0].pgid};
	memcpy(s.placed, P->placed, P->nn);
	return s;
}

static void snap_back(struct planner *P, struct snap *s, const bool *alive_before)
{
	P->ne = s->ne;
	P->ns = s->ns;
	memcpy(P->placed, s->placed, P->nn);
	for (size_t i = 0; i < P->ne; i++)
		P->e[i].alive = alive_before[i];
	P->e[0].sid = s->root_sid;
	P->e[0].pgid = s->root_pgid;
}

static bool is_image_pid(struct planner *P, int32_t pid)
{
	for (size_t i = 0; i < P->nn; i++)
		if (P->n[i].pid == pid)
			return true;
	return false;
}

static bool group_exists(struct planner *P, int32_t pgid, int32_t sid)
{
	for (size_t i = 0; i < P->ne; i++)
		if (P->e[i].alive && P->e[i].pgid == pgid && P->e[i].sid == sid)
			return true;
	return false;
}

static size_t ent_add(struct planner *P, int32_t pid, int32_t sid, int32_t pgid)
{
	if (P->ne == P->ecap) {
		P->ecap = P->ecap ? P->ecap * 2 : 32;
		P->e = ck_xrealloc(P->e, P->ecap * sizeof(*P->e));
	}
	P->e[P->ne] = (struct ent){pid, sid, pgid, true};
	return P->ne++;
}

static struct ent *ent_of(struct planner *P, int32_t pid)
{
	for (size_t i = P->ne; i-- > 0;)
		if (P->e[i].pid == pid)
			return &P->e[i];
	return NULL;
}

static void step_add(struct planner *P, struct ck_pstep st)
{
	if (P->ns == P->scap) {
		P->scap = P->scap ? P->scap * 2 : 32;
		P->s = ck_xrealloc(P->s, P->scap * sizeof(*P->s));
	}
	P->s[P->ns++] = st;
}

/* Action that turns the inherited (sid, pgid) into the wanted one, without
 * helpers; false (P->why set) if that cannot be done from here. */
static bool pick_action(struct planner *P, int32_t pid, int32_t sid, int32_t pgid, int32_t in_sid,
			int32_t in_pgid, int *act)
{
	if (sid == pid) {
		if (pgid != pid) {
			P->why_pid = pid;
			snprintf(P->why, sizeof(P->why),
				 "session leader outside its own process group %d", pgid);
			return false;
		}
		*act = CK_PA_SETSID;
		return true;
	}
	if (sid != in_sid) {
		P->why_pid = pid;
		snprintf(P->why, sizeof(P->why),
			 "session %d cannot be entered from where it is forked "
			 "(its leader is alive but not an ancestor)",
			 sid);
		return false;
	}
	if (pgid == in_pgid)
		*act = CK_PA_NONE;
	else if (pgid == pid)
		*act = CK_PA_PGID_SELF;
	else if (group_exists(P, pgid, sid))
		*act = CK_PA_PGID_JOIN;
	else {
		P->why_pid = pid;
		snprintf(P->why, sizeof(P->why),
			 "process group %d does not exist where it is forked "
			 "(its leader is alive but forked later or elsewhere)",
			 pgid);
		return false;
	}
	return true;
}

static bool place_children(struct planner *P, int32_t creator, int32_t parent, bool clone_parent,
			   bool top, int32_t only_sid, int32_t only_pgid);

#define CK_PSTREE_MAX_DEPTH 2048

/* The children of pid, forked by itself. */
static bool place_subtree(struct planner *P, int32_t pid)
{
	if (P->depth >= CK_PSTREE_MAX_DEPTH) {
		P->why_pid = pid;
		snprintf(P->why, sizeof(P->why), "process tree deeper than %d levels",
			 CK_PSTREE_MAX_DEPTH);
		P->budget = 0; /* no point in trying other orders */
		return false;
	}
	P->depth++;
	bool ok = place_children(P, pid, pid, false, false, 0, 0);
	P->depth--;
	return ok;
}

/* Create node k from creator (state of the creator's entity), then its subtree. */
static bool place_direct(struct planner *P, size_t k, int32_t creator, int32_t parent,
			 bool clone_parent)
{
	const struct ck_pnode *nd = &P->n[k];
	struct ent *c = ent_of(P, creator);
	int act;
	if (!pick_action(P, nd->pid, nd->sid, nd->pgid, c->sid, c->pgid, &act))
		return false;
	P->placed[k] = true;
	step_add(P, (struct ck_pstep){.creator = creator,
				      .pid = nd->pid,
				      .parent = parent,
				      .clone_parent = clone_parent,
				      .action = act,
				      .pgid = nd->pgid,
				      .node = (int32_t)k});
	ent_add(P, nd->pid, nd->sid, nd->pgid);
	if (nd->zombie)
		return true;
	return place_subtree(P, nd->pid);
}

/* The root's own setsid/setpgid, done by itself at this point of the top
 * level, then its own children. */
static bool place_root(struct planner *P, size_t k)
{
	const struct ck_pnode *nd = &P->n[k];
	struct ent *c = ent_of(P, nd->pid);
	int act;
	if (!pick_action(P, nd->pid, nd->sid, nd->pgid, c->sid, c->pgid, &act))
		return false;
	P->placed[k] = true;
	step_add(P, (struct ck_pstep){.creator = nd->pid,
				      .pid = nd->pid,
				      .parent = 0,
				      .action = act,
				      .pgid = nd->pgid,
				      .node = (int32_t)k});
	c->sid = nd->sid;
	c->pgid = nd->pgid;
	return place_subtree(P, nd->pid);
}

/* A placeholder for a gone leader of session sid (is_session) or group
 * pgid, forked by creator; it forks the waiting siblings that belong to it
 * with CLONE_PARENT, then exits. */
static bool place_helper(struct planner *P, int32_t hpid, bool is_session, int32_t creator,
			 int32_t parent, bool clone_parent, bool top)
{
	for (size_t i = 0; i < P->ns; i++)
		if (P->s[i].pid == hpid) {
			P->why_pid = P->s[i].pid;
			snprintf(P->why, sizeof(P->why),
				 "%s %d: its leader is gone and its members hang under "
				 "different parents",
				 is_session ? "session" : "process group", hpid);
			return false;
		}
	struct ent *c = ent_of(P, creator);
	int32_t sid = is_session ? hpid : c->sid;
	step_add(P, (struct ck_pstep){.creator = creator,
				      .pid = hpid,
				      .parent = parent,
				      .clone_parent = clone_parent,
				      .helper = true,
				      .action = is_session ? CK_PA_SETSID : CK_PA_PGID_SELF,
				      .pgid = hpid,
				      .node = -1});
	size_t hi = ent_add(P, hpid, sid, hpid);
	size_t before = P->ns;
	bool ok = place_children(P, hpid, parent, true, top, sid, is_session ? 0 : hpid);
	P->e[hi].alive = false; /* exits once its members exist */
	return ok && P->ns > before;
}

/* Place every unplaced child of `parent` (0: of PID 1, created by the root
 * with CLONE_PARENT); inside a helper only its session's / group's members. */
static bool place_children(struct planner *P, int32_t creator, int32_t parent, bool clone_parent,
			   bool top, int32_t only_sid, int32_t only_pgid)
{
	for (;;) {
		bool progress = false, pending = false;
		for (size_t k = 0; k < P->nn && !progress; k++) {
			const struct ck_pnode *nd = &P->n[k];
			if (P->placed[k] || nd->ppid != (top ? 0 : parent))
				continue;
			if ((only_sid && nd->sid != only_sid) ||
			    (only_pgid && nd->pgid != only_pgid))
				continue;
			bool is_root = nd->pid == P->root;
			if (is_root && creator != P->root)
				continue; /* only the root does its own step */
			pending = true;
			if (P->budget == 0) {
				P->why_pid = nd->pid;
				snprintf(P->why, sizeof(P->why),
					 "sessions and process groups too tangled to plan");
				return false;
			}
			P->budget--;
			struct snap sn = snap_take(P);
			bool *alive = vs_xmalloc(P->ne ? P->ne : 1);
			for (size_t i = 0; i < P->ne; i++)
				alive[i] = P->e[i].alive;
			const struct ent *c = ent_of(P, creator);
			bool ok;
			if (is_root)
				ok = place_root(P, k);
			else if (nd->sid != c->sid && nd->sid != nd->pid && nd->sid > 0 &&
				 !is_image_pid(P, nd->sid))
				ok = place_helper(P, nd->sid, true, creator, parent, clone_parent,
						  top);
			else if (nd->sid == c->sid && nd->pgid != nd->pid && nd->pgid != c->pgid &&
				 nd->pgid > 0 && !is_image_pid(P, nd->pgid) &&
				 !group_exists(P, nd->pgid, c->sid))
				ok = place_helper(P, nd->pgid, false, creator, parent, clone_parent,
						  top);
			else
				ok = place_direct(P, k, creator, parent, clone_parent);
			if (ok)
				progress = true;
			else
				snap_back(P, &sn, alive);
			free(sn.placed);
			free(alive);
		}
		if (!progress)
			return !pending;
	}
}

int ck_pstree_plan(const struct ck_pnode *n, size_t nn, int32_t root, int32_t top_sid,
		   int32_t top_pgid, struct ck_pstep **out, size_t *nout, int32_t *bad_pid,
		   struct vs_error *err)
{
	*out = NULL;
	*nout = 0;
	/* each attempt costs O(nn): bound the whole search to ~5e7 steps */
	struct planner P = {.n = n, .nn = nn, .root = root, .budget = 50000000ul / (nn + 16)};
	if (!is_image_pid(&P, root))
		return vs_error_set(err, EINVAL, "process tree: root pid %d missing", root);
	P.placed = vs_xcalloc(nn ? nn : 1, 1);
	ent_add(&P, root, top_sid, top_pgid);
	bool ok = place_children(&P, root, 0, true, true, 0, 0);
	int r = 0;
	for (size_t k = 0; ok && k < nn; k++)
		if (!P.placed[k]) {
			P.why_pid = n[k].pid;
			snprintf(P.why, sizeof(P.why), "its parent %d is not in the tree",
				 n[k].ppid);
			ok = false;
		}
	if (!ok) {
		r = vs_error_set(err, ENOTSUP, "pid %d: %s", P.why_pid,
				 P.why[0] ? P.why : "process tree cannot be rebuilt");
		if (bad_pid)
			*bad_pid = P.why_pid;
		free(P.s);
	} else {
		*out = P.s;
		*nout = P.ns;
	}
	free(P.placed);
	free(P.e);
	return r;
}
