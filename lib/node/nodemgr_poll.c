/*
 * nodemgr_poll.c - the node manager's poll thread and its desired set.
 *
 * The thread has an HTTP client of its own (the main loop's may be busy
 * uploading for a while). It registers the node (regclient_node_register:
 * its capacity, labels and images), retrying with backoff (1 s doubling to
 * NODEMGR_BACKOFF_MAX) while the registry is unreachable or refuses, then
 * long-polls the node's assignments (regclient_assignments, 30 s). An answer is
 * the full desired set (level-triggered: a lost answer costs nothing but
 * time). Each successful answer is checked, cached atomically in
 * <root>/nodemgr/assignments.json and handed to the main loop (nm->answer
 * under nm->mu, then a wake-up); the main loop makes it the desired set
 * (nm_take_answer). A 401/403/404 answer means the registry forgot us (a
 * reset): register again.
 *
 * An answer that does not parse never replaces the set: "unreachable" or
 * "garbled" must not look like "nothing assigned", which would destroy
 * every sliver. At start the cache stands in until the registry answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "nodemgr_int.h"
#include "vslice/image.h"
#include "vslice/regclient.h"
#include "vslice/units.h"
#include "vslice/util.h"
#include "vslice_version.h"

/* --- an answer ----------------------------------------------------- */

static void manifest_hash(json_t *manifest, char out[VS_SHA256_HEX])
{
	cleanup_free char *text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		abort(); /* only allocation fails here */
	vs_sha256_buf(text, strlen(text), out);
}

static bool hex_string(const char *s, size_t n)
{
	return s && strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

static bool ipv4_valid(const char *s)
{
	struct in_addr ia;
	return s && strlen(s) < 16 && inet_pton(AF_INET, s, &ia) == 1;
}

/* A migration id: "mg_" + hex, as the registry makes them; nothing that
 * could step out of a URL path or a file name. */
static bool mig_id_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n > 3 && n < NODEMGR_MIG_ID_MAX && !strncmp(s, "mg_", 3) &&
	       strspn(s + 3, "0123456789abcdef") == n - 3;
}

static bool url_valid(const char *s)
{
	if (!s || strlen(s) >= NODEMGR_MIG_URL_MAX ||
	    (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * An entry's "migrate_out" / "migrate_in" into m (role NONE when absent or
 * when a field does not check out: such a migration is not acted on, and
 * the registry aborts it when no report comes).
 */
static void parse_migration(json_t *e, struct nodemgr_migration *m)
{
	memset(m, 0, sizeof(*m));
	json_t *out = json_object_get(e, "migrate_out"), *in = json_object_get(e, "migrate_in");
	json_t *j = json_is_object(out) ? out : json_is_object(in) ? in : NULL;
	if (!j)
		return;
	const char *id = json_string_value(json_object_get(j, "id"));
	const char *mode = json_string_value(json_object_get(j, "mode"));
	const char *peer = json_string_value(json_object_get(j, out ? "to" : "from"));
	if (!mig_id_valid(id) || !peer || !nodemgr_node_name_valid(peer))
		return;
	if (mode && (strlen(mode) >= sizeof(m->mode) ||
		     strspn(mode, "abcdefghijklmnopqrstuvwxyz") != strlen(mode)))
		return;
	if (j == out) {
		const char *url = json_string_value(json_object_get(j, "url"));
		const char *token = json_string_value(json_object_get(j, "token"));
		if (!url_valid(url) || !token || strncmp(token, "vst_", 4) ||
		    !hex_string(token + 4, 64))
			return;
		snprintf(m->url, sizeof(m->url), "%s", url);
		snprintf(m->token, sizeof(m->token), "%s", token);
		m->role = NODEMGR_MIG_OUT;
	} else {
		const char *sha = json_string_value(json_object_get(j, "token_sha256"));
		if (!hex_string(sha, 64))
			return;
		snprintf(m->token_sha256, sizeof(m->token_sha256), "%s", sha);
		m->role = NODEMGR_MIG_IN;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	snprintf(m->peer, sizeof(m->peer), "%s", peer);
	snprintf(m->mode, sizeof(m->mode), "%s", mode ? mode : "cold");
}

void nodemgr_assignments_free(struct nodemgr_assignment *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].manifest)
			json_decref(a[i].manifest);
		if (a[i].addresses)
			json_decref(a[i].addresses);
	}
	free(a);
}

int nodemgr_assignments_parse(json_t *answer, struct nodemgr_assignment **out, size_t *n,
			      long long *index, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	if (index)
		*index = -1;
	if (!json_is_object(answer))
		return vs_error_set(err, EINVAL, "assignments: not a JSON object");
	json_t *slivers = json_object_get(answer, "slivers");
	if (!json_is_array(slivers))
		return vs_error_set(err, EINVAL, "assignments: .slivers: not an array");
	json_t *ix = json_object_get(answer, "index");
	if (index && json_is_integer(ix))
		*index = json_integer_value(ix);
	size_t cnt = json_array_size(slivers), k = 0;
	struct nodemgr_assignment *v = vs_xcalloc(cnt ? cnt : 1, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		json_t *e = json_array_get(slivers, i);
		const char *slice = json_string_value(json_object_get(e, "slice"));
		if (!slice || !vs_name_valid(slice))
			continue;
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = !strcmp(v[j].slice, slice);
		if (dup)
			continue;
		struct nodemgr_assignment *a = &v[k++];
		snprintf(a->slice, sizeof(a->slice), "%s", slice);
		json_t *m = json_object_get(e, "manifest");
		const char *sha = json_string_value(json_object_get(e, "manifest_sha256"));
		if (sha && strlen(sha) == 64 && strspn(sha, "0123456789abcdef") == 64) {
			/* The registry's digest; the manifest is fetched when needed. */
			snprintf(a->sha256, sizeof(a->sha256), "%s", sha);
		} else if (json_is_object(m)) {
			a->manifest = json_incref(m);
			manifest_hash(m, a->sha256);
		}
		json_t *ex = json_object_get(e, "expires");
		a->expires = json_is_integer(ex) ? json_integer_value(ex) : 0;
		parse_migration(e, &a->mig);
		const char *addr = json_string_value(json_object_get(e, "address"));
		if (ipv4_valid(addr))
			snprintf(a->address, sizeof(a->address), "%s", addr);
		json_t *addrs = json_object_get(e, "addresses");
		if (json_is_object(addrs))
			a->addresses = json_incref(addrs);
	}
	*out = v;
	*n = k;
	return 0;
}

/* --- assignments -------------------------------------------------- */

/*
 * The overlay's peers of an answer ([{"address", "node"}], both IPv4
 * addresses; others are skipped) as the peer list to apply; a list equal
 * to the one applied already is not applied again. No overlay here: none.
 */
static void take_peers(struct nodemgr *nm, json_t *arr)
{
	if (!nm->overlay)
		return;
	size_t cnt = json_array_size(arr), k = 0, i;
	struct netcfg_peer *v = vs_xcalloc(cnt ? cnt : 1, sizeof(*v));
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		const char *ip = json_string_value(json_object_get(e, "address"));
		const char *node = json_string_value(json_object_get(e, "node"));
		if (!ipv4_valid(ip) || !ipv4_valid(node))
			continue;
		snprintf(v[k].ip, sizeof(v[k].ip), "%s", ip);
		snprintf(v[k].node, sizeof(v[k].node), "%s", node);
		k++;
	}
	bool same =
	    nm->peers_known && k == nm->npeers && (k == 0 || !memcmp(v, nm->peers, k * sizeof(*v)));
	if (same) {
		free(v);
		return;
	}
	free(nm->peers);
	nm->peers = v;
	nm->npeers = k;
	nm->peers_known = true;
	nm->peers_applied = false;
}

/* Replace the desired set with answer's (parsed already by the caller). */
int nm_take_answer(struct nodemgr *nm, json_t *answer, struct vs_error *err)
{
	struct nodemgr_assignment *a;
	size_t n;
	int r = nodemgr_assignments_parse(answer, &a, &n, NULL, err);
	if (r < 0)
		return r;
	nodemgr_assignments_free(nm->desired, nm->ndesired);
	nm->desired = a;
	nm->ndesired = n;
	nm->have_desired = true;
	take_peers(nm, json_object_get(answer, "peers"));
	return 0;
}

int nm_cache_load(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_free char *text = NULL;
	int r = vs_read_file(nm->cache_path, 64u << 20, &text, NULL, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	json_error_t je;
	cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return vs_error_set(err, EINVAL, "%s: %s", nm->cache_path, je.text);
	if ((r = nm_take_answer(nm, j, err)) < 0)
		return vs_error_wrap(err, "%s", nm->cache_path);
	nm_log(nm, NODEMGR_LOG_INFO, "loaded %zu cached assignment%s", nm->ndesired,
	       nm->ndesired == 1 ? "" : "s");
	return 0;
}

struct nodemgr_assignment *nm_assignment_find(struct nodemgr *nm, const char *slice)
{
	for (size_t i = 0; i < nm->ndesired; i++)
		if (!strcmp(nm->desired[i].slice, slice))
			return &nm->desired[i];
	return NULL;
}

/* --- poller ------------------------------------------------------- */

static int read_images(const char *root, json_t *out)
{
	struct image_info *v = NULL;
	size_t n = 0;
	struct vs_error err;
	if (image_list(root, &v, &n, &err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, json_string(v[i].name));
	free(v);
	return 0;
}

static int register_node(struct nodemgr *nm, struct http_client *c, long *status,
			 struct vs_error *err)
{
	cleanup_json json_t *labels = json_object();
	for (char **l = nm->labels; l && *l; l++) {
		const char *eq = strchr(*l, '=');
		cleanup_free char *k = strndup(*l, (size_t)(eq - *l));
		json_object_set_new(labels, k, json_string(eq + 1));
	}
	/* Live migration checks the target runs the same kernel release. */
	struct utsname un;
	if (!json_object_get(labels, "vslice.kernel") && uname(&un) == 0)
		json_object_set_new(labels, "vslice.kernel", json_string(un.release));
	cleanup_json json_t *images = json_array();
	read_images(nm->root, images);
	cleanup_json json_t *body = json_pack("{s:f, s:I, s:O, s:O, s:s}", "cpus", nm->o.cpus,
					      "memory", (json_int_t)nm->o.memory, "labels", labels,
					      "images", images, "version", VSLICE_VERSION);
	/* Where other nodes send a migration's stream (absent: this node is
	 * no migration target). */
	if (body && nm->url)
		json_object_set_new(body, "url", json_string(nm->url));
	/* Where the overlay's VXLAN reaches this node (absent: no bridged
	 * slivers here in a cluster with an overlay). */
	if (body && nm->overlay)
		json_object_set_new(body, "overlay",
				    json_pack("{s:s, s:I}", "local", nm->net.underlay, "vni",
					      (json_int_t)nm->net.vni));
	unsigned asked = 0;
	int r = regclient_node_register(c, nm->name, body, &asked, status, err);
	if (r < 0)
		return r;
	unsigned secs = nm->o.heartbeat_secs ? nm->o.heartbeat_secs : asked ? asked : 10;
	atomic_store(&nm->heartbeat, secs);
	atomic_store(&nm->registered, true);
	nm_log(nm, NODEMGR_LOG_INFO, "registered with %s (heartbeat %u s)", nm->registry, secs);
	return 0;
}

static void poller_fail(struct nodemgr *nm, const char *what, long status,
			const struct vs_error *err, unsigned *backoff)
{
	if (!status)
		what = "registry unreachable";
	nm_log(nm, NODEMGR_LOG_INFO, "%s (%s), retrying in %u s", what, err->msg, *backoff);
	nm_nap(nm, *backoff);
	*backoff = *backoff * 2 > NODEMGR_BACKOFF_MAX ? NODEMGR_BACKOFF_MAX : *backoff * 2;
}

/*
 * The registry refused to register us with this token: unknown or revoked
 * (401), bound to another node or not a node token (403). No retry changes
 * that, only another token does: stop the node manager (its slivers run on)
 * with one line saying so, instead of retrying for ever.
 */
static void refuse(struct nodemgr *nm, long status, const struct vs_error *why)
{
	pthread_mutex_lock(&nm->mu);
	nm->refused = true;
	vs_error_set(&nm->refused_err, EACCES,
		     "registry %s refuses this node's token (%ld: %s): %s; stopping (slivers keep "
		     "running): start it with a valid node token (slicectl token create --role "
		     "node --node %s)",
		     nm->registry, status, why->msg,
		     status == 401 ? "the token is revoked or unknown to this registry"
				   : "the token is not a node token, or bound to another node",
		     nm->name);
	vs_error_kind(&nm->refused_err, VS_EK_REFUSED);
	pthread_mutex_unlock(&nm->mu);
	atomic_store(&nm->stop, true);
	nm_wake(nm);
}

/* An answer the main loop has to see: cache it, then hand it over. */
static void publish(struct nodemgr *nm, json_t *answer)
{
	cleanup_free char *text = json_dumps(answer, JSON_COMPACT);
	struct vs_error err;
	if (!text || vs_write_file_atomic(nm->cache_path, text, strlen(text), 0600, &err) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "caching assignments: %s",
		       text ? err.msg : "cannot encode");
	pthread_mutex_lock(&nm->mu);
	if (nm->answer)
		json_decref(nm->answer);
	nm->answer = json_incref(answer);
	pthread_mutex_unlock(&nm->mu);
	nm_wake(nm);
}

void *nm_poller_main(void *arg)
{
	struct nodemgr *nm = arg;
	struct http_client c;
	struct vs_error err;
	if (http_client_init(&c, nm->registry, nm->token, nm->ca_file, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "poller: %s", err.msg);
		return NULL;
	}
	unsigned backoff = 1;
	long long index = 0;
	while (!atomic_load(&nm->stop)) {
		if (!atomic_load(&nm->registered)) {
			long status = 0;
			if (register_node(nm, &c, &status, &err) < 0) {
				if (status == 401 || status == 403) {
					refuse(nm, status, &err);
					break;
				}
				poller_fail(nm, "registering failed", status, &err, &backoff);
				continue;
			}
			backoff = 1;
			index = 0;
			nm_wake(nm);
		}
		cleanup_json json_t *resp = NULL;
		long status = 0;
		long long next = -1;
		uint64_t t0 = vs_now_ns();
		int r = regclient_assignments(&c, nm->name, index, NODEMGR_POLL_WAIT, &resp, &next,
					      &status, &err);
		if (atomic_load(&nm->stop))
			break;
		if (r < 0 && status == 200) {
			poller_fail(nm, "assignments answer refused", status, &err, &backoff);
			continue;
		}
		if (r < 0) {
			if (status == 404 || status == 401 || status == 403)
				atomic_store(&nm->registered, false); /* registry reset? */
			poller_fail(nm, "polling assignments failed", status, &err, &backoff);
			continue;
		}
		struct nodemgr_assignment *a;
		size_t n;
		if (nodemgr_assignments_parse(resp, &a, &n, NULL, &err) < 0) {
			poller_fail(nm, "assignments answer refused", 200, &err, &backoff);
			continue;
		}
		nodemgr_assignments_free(a, n);
		backoff = 1;
		if (next < 0)
			next = 0;
		nm_log(nm, NODEMGR_LOG_DEBUG, "assignments: %zu sliver%s at index %lld", n,
		       n == 1 ? "" : "s", next);
		publish(nm, resp);
		/* An answer that came back at once without progress: do not spin. */
		if (next == index && vs_now_ns() - t0 < 1000000000ull)
			nm_nap(nm, 1);
		index = next;
	}
	http_client_free(&c);
	pthread_mutex_lock(&nm->mu);
	nm->poller_done = true;
	pthread_mutex_unlock(&nm->mu);
	return NULL;
}
