/*
 * api_migrations.c - the registry's migration endpoints (docs/cluster-api.md,
 * "Migrations"; the whole protocol is in docs/migration.md):
 *
 *   POST /v1/slices/SLICE/migrations    a user (its own slice) or an admin
 *   GET  /v1/migrations[?slice=NAME]    users: theirs; admins: all
 *   GET  /v1/migrations/ID              + long-poll; also the two nodes' tokens
 *   POST /v1/migrations/ID/report       the source's or the target's node token
 *
 * plus what a migration adds to a node's assignments (migrate_out for the
 * source, an entry with migrate_in for the target), the timer's aborts and
 * the transfer tokens.
 *
 * Transfer tokens: "vst_" + 64 hex digits, HMAC-SHA256(key, migration id)
 * with a 32-byte key kept in <db>.d/transfer.key (0600). The database holds
 * only the token's sha256 (what the target checks a PUT against); the
 * registry derives the token again whenever the source polls its
 * assignments, also after a restart. The user who asked for the migration
 * never sees it, and no node but the source does.
 *
 * Every handler runs under reg->lock (api.c's api_dispatch) in one short
 * transaction; the report's commit (phase committed + the sliver row moved
 * from the source to the target) is one transaction, so a timer abort and a
 * commit cannot both happen: whichever takes the lock first wins and the
 * other finds the phase moved on (409 with the phase).
 */
#include <errno.h>
#include <fcntl.h>
#include <nettle/hmac.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_int.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define MIG_LIST_MAX	100
#define MIG_REASON_MAX	512
#define MIG_STATS_MAX	(64u << 10)
#define MIG_TOKEN_LEN	68		  /* "vst_" + 64 hex */
#define MIG_AT_MS_LIMIT 100000000000000ll /* year 5138: a sane unix ms */

void reg_random_bytes(void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = getrandom((char *)buf + got, len - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			abort(); /* no entropy at all: nothing safe to hand out */
		got += (size_t)r;
	}
}

void reg_hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

int mig_key_load(struct registry *reg, struct vs_error *err)
{
	cleanup_free char *path = vs_xasprintf("%s/transfer.key", reg->store.blob_dir);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		unsigned char key[sizeof(reg->transfer_key)];
		reg_random_bytes(key, sizeof(key));
		cleanup_free char *tmp = vs_xasprintf("%s.tmp", path);
		cleanup_close int w =
		    open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (w < 0 || write(w, key, sizeof(key)) != (ssize_t)sizeof(key) || fsync(w) < 0 ||
		    rename(tmp, path) < 0)
			return vs_error_sys(err, errno, "transfer key %s: write", path);
		memcpy(reg->transfer_key, key, sizeof(key));
		return 0;
	}
	if (fd < 0)
		return vs_error_sys(err, errno, "transfer key %s: open", path);
	ssize_t r = read(fd, reg->transfer_key, sizeof(reg->transfer_key));
	if (r != (ssize_t)sizeof(reg->transfer_key))
		return vs_error_set(err, EINVAL, "transfer key %s: expected %zu bytes", path,
				    sizeof(reg->transfer_key));
	return 0;
}

/* The transfer token of migration id (out: MIG_TOKEN_LEN + 1 bytes). */
static void mig_token(struct registry *reg, const char *id, char *out)
{
	struct hmac_sha256_ctx h;
	unsigned char mac[SHA256_DIGEST_SIZE];
	hmac_sha256_set_key(&h, sizeof(reg->transfer_key), reg->transfer_key);
	hmac_sha256_update(&h, strlen(id), (const uint8_t *)id);
	hmac_sha256_digest(&h, sizeof(mac), mac);
	memcpy(out, "vst_", 4);
	reg_hex(mac, sizeof(mac), out + 4);
}

static bool mig_id_valid(const char *id)
{
	if (strlen(id) != STORE_MIGRATION_ID_LEN || strncmp(id, "mg_", 3) != 0)
		return false;
	for (const char *p = id + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static json_t *num_or_null(long long v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

static bool mig_finished(const struct store_migration *m)
{
	return strcmp(m->phase, "aborted") == 0 ||
	       (strcmp(m->phase, "committed") == 0 && m->started_ms > 0);
}

/* The migration object; as_target: with token_sha256 (the target's view). */
static json_t *mig_json(const struct store_migration *m, bool as_target)
{
	json_t *j =
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:b}",
		      "id", m->id, "slice", m->slice, "owner", m->owner, "from", m->from, "to",
		      m->to, "mode", m->mode, "phase", m->phase, "reason", m->reason, "created",
		      (json_int_t)(m->created / 1000), "updated_ms", (json_int_t)m->updated,
		      "bytes", num_or_null(m->bytes), "total_ms", num_or_null(m->total_ms),
		      "downtime_ms", num_or_null(m->downtime_ms), "stats", api_text_json(m->stats),
		      "finished", mig_finished(m));
	static const char *const times[] = {"stopped_ms", "restored_ms", "committed_ms",
					    "started_ms"};
	const long long tv[] = {m->stopped_ms, m->restored_ms, m->committed_ms, m->started_ms};
	for (size_t i = 0; i < VS_ARRAY_SIZE(times); i++)
		json_object_set_new(j, times[i], tv[i] ? json_integer(tv[i]) : json_null());
	if (as_target)
		json_object_set_new(j, "token_sha256", json_string(m->token_sha256));
	return j;
}

static void mig_to_state(const struct store_migration *m, struct migration_state *s)
{
	int p = migration_phase_parse(m->phase);
	*s = (struct migration_state){
	    .phase = p < 0 ? MIGRATION_ABORTED : (enum migration_phase)p,
	    .created = m->created,
	    .updated = m->updated,
	    .stopped_ms = m->stopped_ms,
	    .restored_ms = m->restored_ms,
	    .committed_ms = m->committed_ms,
	    .started_ms = m->started_ms,
	    .bytes = m->bytes,
	    .total_ms = m->total_ms,
	    .downtime_ms = m->downtime_ms,
	};
}

static void mig_from_state(struct store_migration *m, const struct migration_state *s)
{
	free(m->phase);
	m->phase = vs_xstrdup(migration_phase_name(s->phase));
	m->updated = s->updated;
	m->stopped_ms = s->stopped_ms;
	m->restored_ms = s->restored_ms;
	m->committed_ms = s->committed_ms;
	m->started_ms = s->started_ms;
	m->bytes = s->bytes;
	m->total_ms = s->total_ms;
	m->downtime_ms = s->downtime_ms;
}

/* Abort m (running) with reason in a transaction of its own: 1 aborted, 0
 * it had moved on, < 0 error. */
static int mig_abort(struct registry *reg, struct store_migration *m, const char *reason,
		     struct vs_error *err)
{
	cleanup_free char *expect = vs_xstrdup(m->phase);
	free(m->phase);
	free(m->reason);
	m->phase = vs_xstrdup("aborted");
	m->reason = vs_xstrdup(reason);
	m->updated = reg_wall_ms();
	int r = store_begin(reg, err);
	if (r < 0)
		return r;
	r = store_migration_save(reg, m, expect, err);
	if (r <= 0) {
		store_rollback(reg);
		return r;
	}
	r = store_commit(reg, true, err);
	return r < 0 ? r : 1;
}

/* ---- POST /v1/slices/SLICE/migrations ---- */

/* The manifest's image ("busybox" when it names none): *image, caller frees. */
static char *manifest_image(const char *manifest)
{
	json_auto_t *doc = json_loads(manifest ? manifest : "", 0, NULL);
	const char *img = json_string_value(json_object_get(doc, "image"));
	return vs_xstrdup(img && *img ? img : "busybox");
}

static bool sliver_final(const char *state)
{
	return strcmp(state, "exited") == 0 || strcmp(state, "failed") == 0;
}

struct create_args {
	const char *to, *from, *mode;
};

/* The body's fields; false: a holds 400 naming the field. */
static bool create_args(struct reg_answer *a, json_t *b, const char *slice, struct create_args *c)
{
	json_t *to = json_object_get(b, "to"), *from = json_object_get(b, "from");
	json_t *mode = json_object_get(b, "mode");
	const char *k;
	json_t *v;
	json_object_foreach(b, k, v)
	{
		if (strcmp(k, "to") != 0 && strcmp(k, "from") != 0 && strcmp(k, "mode") != 0) {
			char pb[80];
			api_error(a, 400, "migrate %s: .%s: unknown field (to, from, mode)", slice,
				  vs_printable(k, pb, sizeof(pb)));
			return false;
		}
	}
	if ((to && !json_is_string(to) && !json_is_null(to)) ||
	    (from && !json_is_string(from) && !json_is_null(from))) {
		api_error(a, 400, "migrate %s: .%s: expected a node name", slice,
			  to && !json_is_string(to) && !json_is_null(to) ? "to" : "from");
		return false;
	}
	c->to = json_string_value(to);
	c->from = json_string_value(from);
	if ((c->to && !api_check_node_name(a, c->to)) ||
	    (c->from && !api_check_node_name(a, c->from)))
		return false;
	if (mode && !json_is_string(mode)) {
		api_error(a, 400, "migrate %s: .mode: expected \"cold\", \"live\" or \"precopy\"",
			  slice);
		return false;
	}
	c->mode = mode ? json_string_value(mode) : "cold";
	if (strcmp(c->mode, "cold") != 0 && strcmp(c->mode, "live") != 0 &&
	    strcmp(c->mode, "precopy") != 0) {
		char pb[80];
		api_error(a, 400,
			  "migrate %s: .mode: \"%s\" is not a migration mode (cold, live, precopy)",
			  slice, vs_printable(c->mode, pb, sizeof(pb)));
		return false;
	}
	return true;
}

/* Which sliver moves: *from (borrowed from v). false: a holds the refusal. */
static bool pick_source(struct reg_answer *a, const char *slice, const char *want,
			const struct store_sliver *v, size_t n, const struct store_sliver **from)
{
	*from = NULL;
	for (size_t i = 0; want && i < n; i++)
		if (strcmp(v[i].node, want) == 0)
			*from = &v[i];
	if (want && !*from) {
		api_error(a, 409, "node %s hosts no sliver of %s", want, slice);
		return false;
	}
	if (!want && n == 0) {
		api_error(a, 409, "slice %s has no sliver to migrate", slice);
		return false;
	}
	if (!want && n > 1) {
		api_error(a, 400, "slice %s has %zu slivers: name the one to move with --from NODE",
			  slice, n);
		return false;
	}
	if (!want)
		*from = &v[0];
	if (sliver_final((*from)->state)) {
		api_error(a, 409, "sliver %s/%s has %s: a finished sliver is not migrated", slice,
			  (*from)->node, (*from)->state);
		return false;
	}
	return true;
}

static bool preconditions(struct registry *reg, struct reg_answer *a, const char *slice,
			  const char *mode, const struct store_sliver *from, const char *to);
/* A scratch answer's body (no fd, no headers: api_error's). */
static void answer_clear(struct reg_answer *a)
{
	free(a->body);
	a->body = NULL;
}

/* The target: c->to checked, or the scheduler's pick among the nodes the
 * preconditions allow (when they rule out every node the scheduler would
 * take, the answer is the first one's refusal). *to borrowed from the node cache.
 * false: a holds the refusal. */
static bool pick_target(struct reg_request *req, struct reg_answer *a, const char *slice,
			const struct store_slice *sl, const struct store_sliver *v, size_t nv,
			const char *want, const char *mode, const struct store_sliver *from,
			const char **to)
{
	struct vs_error err;
	cleanup_free struct sched_node *nodes = NULL;
	size_t n = 0;
	if (api_sched_nodes(req->reg, &nodes, &n, &err) < 0) {
		api_db_fail(a, &err);
		return false;
	}
	cleanup_free bool *hosts = vs_xcalloc(n + 1, sizeof(*hosts));
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < nv; k++)
			hosts[i] |= strcmp(nodes[i].name, v[k].node) == 0;
	/* The image is in the manifest (up to 24 MiB): read only now, when every
	 * cheaper refusal (a running migration, the source) has passed. */
	struct store_slice full;
	if (store_slice_get(req->reg, slice, true, &full, &err) < 0) {
		api_db_fail(a, &err);
		return false;
	}
	cleanup_free char *image = manifest_image(full.manifest);
	store_slice_clear(&full);
	if (api_images_sched(req->reg, image, nodes, n, &err) < 0) {
		api_db_fail(a, &err);
		return false;
	}
	if (!want) {
		struct reg_answer first = {.fd = -1};
		size_t left = 0;
		for (size_t i = 0; i < n; i++) {
			struct reg_answer no = {.fd = -1};
			char why[256];
			if (hosts[i] ||
			    sched_target_refusal(&nodes[i], false, slice, image, sl->cpu_millis,
						 sl->memory, why, sizeof(why)))
				continue; /* the scheduler says why */
			if (preconditions(req->reg, &no, slice, mode, from, nodes[i].name)) {
				left++;
				continue;
			}
			hosts[i] = true; /* no candidate: not worth a reason either */
			if (no.status != 409) {
				*a = no; /* the database failed */
				answer_clear(&first);
				return false;
			}
			if (!first.body)
				first = no;
			else
				answer_clear(&no);
		}
		size_t best;
		if (sched_pick_target(nodes, n, hosts, slice, image, sl->cpu_millis, sl->memory,
				      &best, &err) < 0) {
			if (first.body && left == 0) {
				*a = first;
				return false;
			}
			answer_clear(&first);
			api_error(a, 409, "%s", err.msg);
			return false;
		}
		answer_clear(&first);
		*to = nodes[best].name;
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(nodes[i].name, want) != 0)
			continue;
		char why[256];
		if (sched_target_refusal(&nodes[i], hosts[i], slice, image, sl->cpu_millis,
					 sl->memory, why, sizeof(why))) {
			api_error(a, 409, "%s", why);
			return false;
		}
		*to = nodes[i].name;
		return true;
	}
	api_error(a, 404, "node %s is not registered", want);
	return false;
}

/*
 * Preconditions checked before anything is recorded (docs/migration.md,
 * "Preconditions"). Live and pre-copy restore the processes as they were,
 * so the target must offer what they may be using; each node manager
 * registers these facts as labels (lib/node/nodemgr.c, node_facts):
 *   vslice.kernel  the kernel release (the syscalls the tree is in)
 *   vslice.vdso    the [vvar], [vvar_vclock] and [vdso] mappings in address
 *                  order with their sizes, and the vDSO text's sha256: the
 *                  restorer maps the target's vDSO where the source's was,
 *                  and the processes hold pointers into it
 *   vslice.cpu     the CPU's instruction-set features (names as in
 *                  /proc/cpuinfo): code may have picked any of them at start
 *                  (glibc's ifuncs), so the target needs every one
 * A fact a node did not register (an older node manager) is not checked.
 * Every mode: a sliver with a cluster address (issue 13's overlay) needs a
 * target on the same overlay, or its address would reach nothing there.
 */
struct node_facts {
	struct store_node row;
	json_t *labels;
};

static void node_facts_clear(struct node_facts *f)
{
	store_node_clear(&f->row);
	json_decref(f->labels);
}

static int node_facts_get(struct registry *reg, const char *node, struct node_facts *f,
			  struct vs_error *err)
{
	memset(f, 0, sizeof(*f));
	int r = store_node_get(reg, node, &f->row, err);
	if (r < 0)
		return r;
	f->labels = json_loads(f->row.labels ? f->row.labels : "", 0, NULL);
	return 0;
}

static const char *fact(const struct node_facts *f, const char *key)
{
	return json_string_value(json_object_get(f->labels, key));
}

/* 409 {"error": msg, "precondition": what}: slicectl, asked for no mode,
 * falls back to cold on such an answer. */
static void refuse_precondition(struct reg_answer *a, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse_precondition(struct reg_answer *a, const char *what, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_error(a, 409, "%s", msg);
	json_t *j = json_loads(a->body, 0, NULL);
	json_object_set_new(j, "precondition", json_string(what));
	free(a->body);
	a->body = NULL;
	api_answer_json(a, 409, j);
}

/* The words of the source's space-separated list `have` the target's
 * `got` lacks, as "a, b, c" in *out (up to len bytes; "..." when cut);
 * false when it lacks none. */
static bool missing_words(const char *have, const char *got, char *out, size_t len)
{
	size_t off = 0, n = 0;
	out[0] = '\0';
	for (const char *w = have; *w;) {
		size_t wl = strcspn(w, " ");
		bool found = false;
		for (const char *g = got; *g && !found;) {
			size_t gl = strcspn(g, " ");
			found = gl == wl && strncmp(g, w, wl) == 0;
			g += gl;
			g += strspn(g, " ");
		}
		if (wl && !found) {
			n++;
			if (off + wl + 8 < len) {
				int k = snprintf(out + off, len - off, "%s%.*s", off ? ", " : "",
						 (int)wl, w);
				off += k > 0 ? (size_t)k : 0;
			} else if (off + 4 < len && strcmp(out + (off >= 3 ? off - 3 : 0), "...")) {
				off += (size_t)snprintf(out + off, len - off, "...");
			}
		}
		w += wl;
		w += strspn(w, " ");
	}
	return n > 0;
}

/* false: a holds the 409. */
static bool live_facts_match(struct reg_answer *a, const char *mode, const char *from,
			     const struct node_facts *ff, const char *to,
			     const struct node_facts *ft)
{
	char pf[160], pt[160];
	const char *kf = fact(ff, "vslice.kernel"), *kt = fact(ft, "vslice.kernel");
	if (kf && kt && strcmp(kf, kt) != 0) {
		refuse_precondition(a, "kernel",
				    "node %s runs kernel %s, node %s %s: a %s migration needs the "
				    "same kernel release; use --mode cold",
				    to, vs_printable(kt, pt, sizeof(pt)), from,
				    vs_printable(kf, pf, sizeof(pf)), mode);
		return false;
	}
	const char *vf = fact(ff, "vslice.vdso"), *vt = fact(ft, "vslice.vdso");
	if (vf && vt && strcmp(vf, vt) != 0) {
		refuse_precondition(a, "vdso",
				    "node %s's vDSO layout (%s) differs from node %s's (%s): a %s "
				    "migration maps the same vDSO where it was; use --mode cold",
				    to, vs_printable(vt, pt, sizeof(pt)), from,
				    vs_printable(vf, pf, sizeof(pf)), mode);
		return false;
	}
	const char *cf = fact(ff, "vslice.cpu"), *ct = fact(ft, "vslice.cpu");
	char lacks[256];
	if (cf && ct && missing_words(cf, ct, lacks, sizeof(lacks))) {
		refuse_precondition(a, "cpu",
				    "node %s lacks CPU features node %s has (%s): a %s migration "
				    "resumes code that may use them; use --mode cold",
				    to, from, vs_printable(lacks, pt, sizeof(pt)), mode);
		return false;
	}
	return true;
}

/* The overlay (issue 13): a sliver with a cluster address moves only to a
 * node on the same overlay. false: a holds the 409. */
static bool overlay_match(struct reg_answer *a, const char *slice, const struct store_sliver *from,
			  const struct node_facts *ff, const char *to, const struct node_facts *ft)
{
	if (!from->address || !from->address[0])
		return true;
	if (!ft->row.overlay_local) {
		api_error(a, 409,
			  "node %s has no overlay (vslice-nodemgr --overlay-local, --overlay-vni): "
			  "slice %s's address %s would not reach it there",
			  to, slice, from->address);
		return false;
	}
	if (ff->row.overlay_local && ft->row.overlay_vni != ff->row.overlay_vni) {
		api_error(a, 409,
			  "node %s is on VXLAN id %lld, node %s on %lld: slice %s's address %s "
			  "would not reach it there",
			  to, ft->row.overlay_vni, from->node, ff->row.overlay_vni, slice,
			  from->address);
		return false;
	}
	return true;
}

/* Every precondition between the source's sliver and the target. false: a
 * holds the refusal. */
static bool preconditions(struct registry *reg, struct reg_answer *a, const char *slice,
			  const char *mode, const struct store_sliver *from, const char *to)
{
	struct node_facts ff, ft;
	struct vs_error err;
	if (node_facts_get(reg, from->node, &ff, &err) < 0) {
		api_db_fail(a, &err);
		return false;
	}
	if (node_facts_get(reg, to, &ft, &err) < 0) {
		node_facts_clear(&ff);
		api_db_fail(a, &err);
		return false;
	}
	bool ok =
	    overlay_match(a, slice, from, &ff, to, &ft) &&
	    (strcmp(mode, "cold") == 0 || live_facts_match(a, mode, from->node, &ff, to, &ft));
	node_facts_clear(&ff);
	node_facts_clear(&ft);
	return ok;
}

void api_migration_create(struct reg_request *req, struct reg_answer *a, const char *slice)
{
	struct registry *reg = req->reg;
	if (!api_need_role(req, a, true, true, false))
		return;
	cleanup_json json_t *b = api_body_object(req, a, true);
	if (!b)
		return;
	struct create_args c = {0};
	if (!create_args(a, b, slice, &c))
		return;
	struct vs_error err;
	struct store_slice sl;
	int r = store_slice_get(reg, slice, false, &sl, &err);
	if (r == -ENOENT || (r >= 0 && req->role == REGISTRY_ROLE_USER &&
			     (!req->user || strcmp(sl.owner, req->user) != 0))) {
		if (r >= 0)
			store_slice_clear(&sl);
		return api_error(a, 404, "slice %s: not found", slice);
	}
	if (r < 0)
		return api_db_fail(a, &err);
	struct store_migration running;
	r = store_migration_running(reg, slice, &running, &err);
	if (r != 0) {
		store_slice_clear(&sl);
		if (r < 0)
			return api_db_fail(a, &err);
		api_error(a, 409, "a migration of %s is already running (%s)", slice, running.id);
		store_migration_clear(&running);
		return;
	}
	struct store_sliver *v = NULL;
	size_t nv = 0;
	if (store_slivers_of(reg, slice, NULL, &v, &nv, &err) < 0) {
		store_slice_clear(&sl);
		return api_db_fail(a, &err);
	}
	const struct store_sliver *from = NULL;
	const char *to = NULL;
	long long now = reg_now();
	bool ok = pick_source(a, slice, c.from, v, nv, &from);
	if (ok && !reg_node_ready(reg, from->node, now)) {
		api_error(a, 409,
			  "node %s is lost (last seen %lld s ago): its sliver cannot be moved",
			  from->node, now - reg_last_seen(reg, from->node));
		ok = false;
	}
	ok = ok && pick_target(req, a, slice, &sl, v, nv, c.to, c.mode, from, &to);
	ok = ok && preconditions(reg, a, slice, c.mode, from, to);
	struct store_migration m = {0};
	if (ok) {
		unsigned char rnd[8];
		reg_random_bytes(rnd, sizeof(rnd));
		memcpy(m.id, "mg_", 3);
		reg_hex(rnd, sizeof(rnd), m.id + 3);
		char token[MIG_TOKEN_LEN + 1];
		mig_token(reg, m.id, token);
		vs_sha256_buf(token, strlen(token), m.token_sha256);
		m.slice = vs_xstrdup(slice);
		m.owner = vs_xstrdup(sl.owner);
		m.from = vs_xstrdup(from->node);
		m.to = vs_xstrdup(to);
		m.mode = vs_xstrdup(c.mode);
		m.phase = vs_xstrdup("prepared");
		m.reason = vs_xstrdup("");
		m.stats = vs_xstrdup("{}");
		m.created = m.updated = reg_wall_ms();
		m.bytes = m.total_ms = m.downtime_ms = -1;
	}
	store_slivers_free(v, nv);
	store_slice_clear(&sl);
	if (!ok)
		return;
	if (store_begin(reg, &err) < 0) {
		store_migration_clear(&m);
		return api_db_fail(a, &err);
	}
	r = store_migration_insert(reg, &m, &err);
	if (r < 0) {
		store_rollback(reg);
		if (err.kind == VS_EK_BUSY)
			api_error(a, 409, "a migration of %s is already running", slice);
		else
			api_db_fail(a, &err);
		store_migration_clear(&m);
		return;
	}
	if (store_commit(reg, true, &err) < 0) {
		store_migration_clear(&m);
		return api_db_fail(a, &err);
	}
	api_answer_index(req, a);
	api_answer_json(a, 201, mig_json(&m, false));
	store_migration_clear(&m);
}

/* ---- GET /v1/migrations, /v1/migrations/ID ---- */

void api_migrations_list(struct reg_request *req, struct reg_answer *a)
{
	if (!api_need_role(req, a, true, true, false))
		return;
	const char *slice = reg_query(req, "slice");
	if (slice && !api_check_slice_name(a, slice))
		return;
	struct vs_error err;
	struct store_migration *v;
	size_t n;
	const char *owner = req->role == REGISTRY_ROLE_ADMIN ? NULL : req->user ? req->user : "";
	if (store_migrations_list(req->reg, owner, slice, MIG_LIST_MAX, &v, &n, &err) < 0)
		return api_db_fail(a, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, mig_json(&v[i], false));
	store_migrations_free(v, n);
	api_answer_index(req, a);
	api_answer_json(a, 200, json_pack("{s:o}", "migrations", arr));
}

/* May req see m? Owner, admin, and the two nodes' tokens. */
static bool mig_visible(const struct reg_request *req, const struct store_migration *m)
{
	switch (req->role) {
	case REGISTRY_ROLE_ADMIN:
		return true;
	case REGISTRY_ROLE_USER:
		return req->user && strcmp(req->user, m->owner) == 0;
	case REGISTRY_ROLE_NODE:
		return req->node &&
		       (strcmp(req->node, m->from) == 0 || strcmp(req->node, m->to) == 0);
	default:
		return false;
	}
}

static bool is_target(const struct reg_request *req, const struct store_migration *m)
{
	return req->role == REGISTRY_ROLE_NODE && req->node && strcmp(req->node, m->to) == 0;
}

/* The migration id names, if req may see it; false: a holds 400/404 (403
 * for a node token that is neither its source nor its target, when
 * party_403: a report). */
static bool mig_load(struct reg_request *req, struct reg_answer *a, const char *id, bool party_403,
		     struct store_migration *m)
{
	char pb[80];
	if (!mig_id_valid(id)) {
		api_error(a, 400, "migration \"%s\": invalid id (expected mg_ and 16 hex digits)",
			  vs_printable(id, pb, sizeof(pb)));
		return false;
	}
	struct vs_error err;
	int r = store_migration_get(req->reg, id, m, &err);
	if (r >= 0 && party_403 && !mig_visible(req, m)) {
		store_migration_clear(m);
		api_error(a, 403, "migration %s: node %s is neither its source nor its target", id,
			  req->node ? req->node : "?");
		return false;
	}
	if (r == -ENOENT || (r >= 0 && !mig_visible(req, m))) {
		if (r >= 0)
			store_migration_clear(m);
		api_error(a, 404, "migration %s: not found", id);
		return false;
	}
	if (r < 0) {
		api_db_fail(a, &err);
		return false;
	}
	return true;
}

void api_migration_get(struct reg_request *req, struct reg_answer *a, const char *id)
{
	/* Access first: a refusal is answered at once, never parked. */
	struct store_migration m;
	if (!mig_load(req, a, id, false, &m))
		return;
	if (!api_long_poll_args(req, a)) {
		store_migration_clear(&m);
		return;
	}
	api_answer_index(req, a);
	api_answer_json(a, 200, mig_json(&m, is_target(req, &m)));
	store_migration_clear(&m);
}

/* ---- POST /v1/migrations/ID/report ---- */

struct report {
	const char *node, *phase, *reason;
	long long bytes, at_ms;
	char *stats; /* JSON text or NULL */
};

static bool report_parse(struct reg_answer *a, json_t *b, const char *id, struct report *rp)
{
	json_t *bytes = json_object_get(b, "bytes"), *at = json_object_get(b, "at_ms");
	json_t *reason = json_object_get(b, "reason"), *stats = json_object_get(b, "stats");
	rp->node = json_string_value(json_object_get(b, "node"));
	rp->phase = json_string_value(json_object_get(b, "phase"));
	rp->bytes = rp->at_ms = -1;
	if (!rp->node)
		return api_error(a, 400, "migration %s: .node: expected the reporting node's name",
				 id),
		       false;
	if (migration_report_parse(rp->phase) < 0)
		return api_error(
			   a, 400,
			   "migration %s: .phase: expected transferring, restored, aborted or "
			   "started",
			   id),
		       false;
	if (bytes && (!json_is_integer(bytes) || json_integer_value(bytes) < 0))
		return api_error(a, 400, "migration %s: .bytes: expected an integer >= 0", id),
		       false;
	if (at && (!json_is_integer(at) || json_integer_value(at) < 0 ||
		   json_integer_value(at) > MIG_AT_MS_LIMIT))
		return api_error(a, 400, "migration %s: .at_ms: expected unix milliseconds", id),
		       false;
	if (reason &&
	    (!json_is_string(reason) || strlen(json_string_value(reason)) > MIG_REASON_MAX))
		return api_error(a, 400,
				 "migration %s: .reason: expected a string of up to %d bytes", id,
				 MIG_REASON_MAX),
		       false;
	if (stats && !json_is_object(stats))
		return api_error(a, 400, "migration %s: .stats: expected an object", id), false;
	if (stats) {
		rp->stats = json_dumps(stats, JSON_COMPACT | JSON_SORT_KEYS);
		if (!rp->stats || strlen(rp->stats) > MIG_STATS_MAX) {
			free(rp->stats);
			rp->stats = NULL;
			return api_error(a, 400, "migration %s: .stats: larger than %u bytes", id,
					 MIG_STATS_MAX),
			       false;
		}
	}
	rp->bytes = bytes ? json_integer_value(bytes) : -1;
	rp->at_ms = at ? json_integer_value(at) : -1;
	rp->reason = json_string_value(reason);
	return true;
}

/* 409 {"error", "phase"}: the transition is not allowed in m's phase. */
static void report_conflict(struct reg_answer *a, const struct store_migration *m,
			    const char *phase)
{
	cleanup_free char *why = *m->reason ? vs_xasprintf(" (%s)", m->reason) : vs_xstrdup("");
	api_error(a, 409, "migration %s: is %s%s: \"%s\" refused", m->id, m->phase, why, phase);
	json_t *j = json_loads(a->body, 0, NULL);
	json_object_set_new(j, "phase", json_string(m->phase));
	free(a->body);
	a->body = NULL;
	api_answer_json(a, 409, j);
}

/* The one transaction of a commit: the migration's row and the sliver's. */
static int commit_move(struct registry *reg, const struct store_migration *m, struct vs_error *err)
{
	char **shas = NULL;
	size_t nshas = 0;
	int r = store_begin(reg, err);
	if (r < 0)
		return r;
	r = store_migration_save(reg, m, "transferring", err);
	if (r == 0)
		r = vs_error_set(err, EAGAIN, "migration %s: moved on meanwhile", m->id);
	if (r > 0)
		r = store_sliver_move(reg, m->slice, m->from, m->to, &shas, &nshas, err);
	if (r < 0) {
		store_rollback(reg);
		store_names_free(shas, nshas);
		return r;
	}
	r = store_commit(reg, true, err);
	if (r >= 0) {
		/* The log came along in the stream: the target uploads it again
		 * from offset 0 (also over a stale file of an earlier visit). */
		store_sliver_log_remove(reg, m->slice, m->from);
		store_sliver_log_remove(reg, m->slice, m->to);
		store_blobs_gc(reg, shas, nshas);
	}
	store_names_free(shas, nshas);
	return r;
}

/*
 * Live and pre-copy: the source said "transferring" before its memory
 * rounds; it freezes later, at the end of its dump, and says so with a
 * second "transferring" carrying the freeze's at_ms and its stats. That
 * report may arrive after the commit (the target restores while the stream
 * arrives): it moves stopped_ms, the downtime's start, in either phase (and
 * the downtime, if the target has started). true: st holds the new state.
 */
static bool freeze_report(const struct store_migration *m, struct migration_state *st,
			  enum migration_party who, const struct report *rp)
{
	if (who != MIGRATION_SOURCE || strcmp(m->mode, "cold") == 0 ||
	    strcmp(rp->phase, "transferring") != 0 || rp->at_ms < 0 || !rp->stats ||
	    !st->stopped_ms ||
	    (st->phase != MIGRATION_TRANSFERRING && st->phase != MIGRATION_COMMITTED))
		return false;
	st->stopped_ms = rp->at_ms;
	st->updated = reg_wall_ms();
	if (rp->bytes >= 0 && st->phase == MIGRATION_TRANSFERRING)
		st->bytes = rp->bytes;
	if (st->started_ms)
		st->downtime_ms =
		    st->started_ms > st->stopped_ms ? st->started_ms - st->stopped_ms : 0;
	return true;
}

void api_migration_report(struct reg_request *req, struct reg_answer *a, const char *id)
{
	struct registry *reg = req->reg;
	if (req->role != REGISTRY_ROLE_NODE || !req->node)
		return api_error(a, 403, "migration %s: reports come from its nodes' tokens", id);
	cleanup_json json_t *b = api_body_object(req, a, false);
	if (!b)
		return;
	struct report rp = {0};
	if (!report_parse(a, b, id, &rp))
		return;
	cleanup_free char *stats = rp.stats;
	if (strcmp(rp.node, req->node) != 0)
		return api_error(a, 403, "migration %s: .node %s: the token is bound to node %s",
				 id, rp.node, req->node);
	struct store_migration m;
	if (!mig_load(req, a, id, true, &m))
		return;
	enum migration_party who =
	    strcmp(req->node, m.from) == 0 ? MIGRATION_SOURCE : MIGRATION_TARGET;
	struct migration_state st;
	mig_to_state(&m, &st);
	cleanup_free char *before = vs_xstrdup(m.phase);
	enum migration_verdict v;
	if (freeze_report(&m, &st, who, &rp))
		v = MIGRATION_PROGRESS;
	else
		v = migration_step(&st, who,
				   (enum migration_report)migration_report_parse(rp.phase),
				   rp.bytes, rp.at_ms, reg_wall_ms());
	struct vs_error err;
	int r = 0;
	switch (v) {
	case MIGRATION_FORBIDDEN:
		api_error(a, 403, "migration %s: node %s is its %s: it does not report \"%s\"", id,
			  req->node, who == MIGRATION_SOURCE ? "source" : "target", rp.phase);
		break;
	case MIGRATION_CONFLICT:
		report_conflict(a, &m, rp.phase);
		break;
	case MIGRATION_SAME:
		api_answer_json(a, 200, mig_json(&m, who == MIGRATION_TARGET));
		break;
	case MIGRATION_PROGRESS:
	case MIGRATION_MOVED:
	case MIGRATION_COMMIT:
		mig_from_state(&m, &st);
		if (stats) {
			free(m.stats);
			m.stats = vs_xstrdup(stats);
		}
		if (st.phase == MIGRATION_ABORTED && v == MIGRATION_MOVED) {
			free(m.reason);
			m.reason = vs_xasprintf(
			    "%s %s: %s", who == MIGRATION_SOURCE ? "source" : "target", req->node,
			    rp.reason && *rp.reason ? rp.reason : "aborted");
		}
		if (v == MIGRATION_COMMIT) {
			r = commit_move(reg, &m, &err);
		} else if ((r = store_begin(reg, &err)) >= 0) {
			r = store_migration_save(reg, &m, before, &err);
			if (r == 0)
				r = vs_error_set(&err, EAGAIN, "migration %s: moved on meanwhile",
						 id);
			if (r < 0)
				store_rollback(reg);
			else
				/* Progress alone does not wake every long-poll
				 * (the nodes' assignments): slicectl polls it. */
				r = store_commit(reg, v != MIGRATION_PROGRESS, &err);
		}
		if (r < 0)
			api_db_fail(a, &err);
		else
			api_answer_json(a, 200, mig_json(&m, who == MIGRATION_TARGET));
		break;
	}
	store_migration_clear(&m);
}

/* ---- assignments, the target's view of the slice ---- */

int api_migration_assignments(struct registry *reg, const char *node, json_t *slivers,
			      struct vs_error *err)
{
	struct store_migration *v;
	size_t n;
	int r = store_migrations_running_list(reg, node, &v, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		const struct store_migration *m = &v[i];
		if (strcmp(m->from, node) == 0) {
			size_t k;
			json_t *e;
			json_array_foreach(slivers, k, e)
			{
				if (strcmp(json_string_value(json_object_get(e, "slice")),
					   m->slice))
					continue;
				struct store_node to;
				if (store_node_get(reg, m->to, &to, err) < 0) {
					r = -err->code;
					break;
				}
				char token[MIG_TOKEN_LEN + 1];
				mig_token(reg, m->id, token);
				json_object_set_new(e, "migrate_out",
						    json_pack("{s:s, s:s, s:s?, s:s, s:s}", "id",
							      m->id, "to", m->to, "url", to.url,
							      "token", token, "mode", m->mode));
				explicit_bzero(token, sizeof(token));
				store_node_clear(&to);
			}
		} else {
			struct store_slice sl;
			if (store_slice_get(reg, m->slice, false, &sl, err) < 0) {
				r = -err->code;
				break;
			}
			json_array_append_new(
			    slivers,
			    json_pack("{s:s, s:s, s:I, s:{s:s, s:s, s:s, s:s}}", "slice", m->slice,
				      "manifest_sha256", sl.manifest_sha256, "expires",
				      (json_int_t)sl.expires, "migrate_in", "id", m->id, "from",
				      m->from, "token_sha256", m->token_sha256, "mode", m->mode));
			store_slice_clear(&sl);
		}
	}
	store_migrations_free(v, n);
	return r < 0 ? r : 0;
}

bool api_migration_target_of(struct registry *reg, const char *slice, const char *node)
{
	struct vs_error err;
	struct store_migration m;
	if (!node || store_migration_running(reg, slice, &m, &err) <= 0)
		return false;
	bool yes = strcmp(m.to, node) == 0;
	store_migration_clear(&m);
	return yes;
}

/* ---- the timer ---- */

void mig_tick(struct registry *reg)
{
	struct vs_error err;
	struct store_migration *v;
	size_t n;
	if (store_migrations_running_list(reg, NULL, &v, &n, &err) < 0) {
		fprintf(stderr, "vslice-registry: migrations: %s\n", err.msg);
		return;
	}
	long long now = reg_now(), now_ms = reg_wall_ms();
	/* A registry that was down did not hear the nodes: they get a full
	 * timeout from its start. */
	long long since_start = reg->started * 1000;
	for (size_t i = 0; i < n; i++) {
		struct store_migration *m = &v[i];
		cleanup_free char *why = NULL;
		long long heard = m->updated > since_start ? m->updated : since_start;
		if (now_ms - heard > (long long)reg->migration_timeout * 1000)
			why = vs_xasprintf("no report for %u s in phase %s", reg->migration_timeout,
					   m->phase);
		else if (!reg_node_ready(reg, m->from, now))
			why = vs_xasprintf("node %s lost", m->from);
		else if (!reg_node_ready(reg, m->to, now))
			why = vs_xasprintf("node %s lost", m->to);
		if (why && mig_abort(reg, m, why, &err) < 0)
			fprintf(stderr, "vslice-registry: migration %s: abort: %s\n", m->id,
				err.msg);
	}
	store_migrations_free(v, n);
}
