/*
 * sched.c - where a submitted slice's slivers go.
 *
 * Explicit nodes.names: exactly those nodes, each registered, ready and not
 * drained. nodes.count (+ labels): filter ready, undrained nodes whose labels
 * match, that have the image (busybox every node can build, an image the
 * registry holds every node fetches on first use) and the free cpu
 * and memory the manifest asks for; score by spread (least requested
 * fraction first, then fewer slivers, then name); take count. Neither: one
 * sliver on the least loaded ready node.
 *
 * Pure: no database, no clock. When placement is impossible the message
 * names the manifest field that made it so, with the count at the filter
 * step where the candidates ran out.
 */
#include <errno.h>
#include <string.h>

#include "vslice/registry.h"
#include "vslice/units.h"
#include "vslice/util.h"

static bool labels_match(const struct manifest *m, const json_t *labels)
{
	for (size_t i = 0; i < m->nlabels; i++) {
		const json_t *v = labels ? json_object_get(labels, m->labels[i].key) : NULL;
		if (!json_is_string(v) || strcmp(json_string_value(v), m->labels[i].value) != 0)
			return false;
	}
	return true;
}

/* Every node builds busybox and fetches an image the registry holds on
 * first use; else only those whose images list names it have it. */
static bool has_image(const char *image, const struct sched_node *nd)
{
	if (strcmp(image, "busybox") == 0 || nd->image_fetchable)
		return true;
	const json_t *images = nd->images;
	size_t i;
	const json_t *v;
	json_array_foreach(images, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), image) == 0)
			return true;
	}
	return false;
}

static double used_fraction(const struct sched_node *n)
{
	double c = n->cpu_millis ? (double)n->cpu_used / (double)n->cpu_millis : 0;
	double mem = n->memory_bytes ? (double)n->memory_used / (double)n->memory_bytes : 0;
	return (c + mem) / 2;
}

static const struct sched_node *score_nodes;

static int cmp_spread(const void *a, const void *b)
{
	const struct sched_node *x = &score_nodes[*(const size_t *)a];
	const struct sched_node *y = &score_nodes[*(const size_t *)b];
	double fx = used_fraction(x), fy = used_fraction(y);
	if (fx < fy - 1e-12)
		return -1;
	if (fx > fy + 1e-12)
		return 1;
	if (x->nslivers != y->nslivers)
		return x->nslivers < y->nslivers ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * Put the k best of idx[0..n) (by cmp_spread, a total order: ties end on
 * the name) first, in order. For a few slivers out of many nodes, k passes
 * of a minimum search beat sorting them all (count 1 over 5000 nodes: one
 * pass instead of a 0.7 ms qsort); the prefix is the same either way.
 */
static void sort_spread(size_t *idx, size_t n, const struct sched_node *nodes);

static void select_spread(size_t *idx, size_t n, size_t k, const struct sched_node *nodes)
{
	if (k * 16 >= n) {
		sort_spread(idx, n, nodes);
		return;
	}
	const struct sched_node *saved = score_nodes;
	score_nodes = nodes;
	for (size_t i = 0; i < k; i++) {
		size_t best = i;
		for (size_t j = i + 1; j < n; j++)
			if (cmp_spread(&idx[j], &idx[best]) < 0)
				best = j;
		size_t t = idx[i];
		idx[i] = idx[best];
		idx[best] = t;
	}
	score_nodes = saved;
}

static void sort_spread(size_t *idx, size_t n, const struct sched_node *nodes)
{
	/* qsort has no context argument; sched_place runs under the registry
	 * lock, and tests are single-threaded. */
	static __thread const struct sched_node *saved;
	saved = score_nodes;
	score_nodes = nodes;
	qsort(idx, n, sizeof(*idx), cmp_spread);
	score_nodes = saved;
}

static const char *labels_text(const struct manifest *m, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < m->nlabels && off < len; i++) {
		int w = snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "", m->labels[i].key,
				 m->labels[i].value);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}

static int place_names(const struct manifest *m, const struct sched_node *nodes, size_t n,
		       size_t *picked, size_t *npicked, struct vs_error *err)
{
	char pb[128];
	for (size_t i = 0; i < m->nnode_names; i++) {
		const char *name = m->node_names[i];
		size_t j;
		for (j = 0; j < n; j++)
			if (strcmp(nodes[j].name, name) == 0)
				break;
		vs_printable(name, pb, sizeof(pb));
		if (j == n)
			return vs_error_set(
			    err, EAGAIN, ".nodes.names[%zu]: node \"%s\" is not registered", i, pb);
		if (nodes[j].drained)
			return vs_error_set(err, EAGAIN,
					    ".nodes.names[%zu]: node \"%s\" is drained", i, pb);
		if (nodes[j].state != SCHED_NODE_READY)
			return vs_error_set(
			    err, EAGAIN,
			    ".nodes.names[%zu]: node \"%s\" is not ready (last seen %lld s ago)", i,
			    pb, nodes[j].last_seen_ago);
		bool dup = false;
		for (size_t k = 0; k < *npicked; k++)
			dup |= picked[k] == j;
		if (!dup)
			picked[(*npicked)++] = j;
	}
	return 0;
}

int sched_place(const struct manifest *m, const struct sched_node *nodes, size_t n,
		size_t **picked_out, size_t *npicked, struct vs_error *err)
{
	cleanup_free size_t *picked = vs_xcalloc(n + 1, sizeof(size_t));
	*npicked = 0;
	*picked_out = NULL;
	if (m->nnode_names > 0) {
		int r = place_names(m, nodes, n, picked, npicked, err);
		if (r < 0)
			return r;
		*picked_out = steal_pointer(&picked);
		return 0;
	}

	size_t want = m->node_count > 0 ? m->node_count : 1;
	size_t ready = 0, labelled = 0, imaged = 0, cpu_ok = 0, mem_ok = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sched_node *nd = &nodes[i];
		if (nd->drained || nd->state != SCHED_NODE_READY)
			continue;
		ready++;
		if (!labels_match(m, nd->labels))
			continue;
		labelled++;
		if (!has_image(m->image, nd))
			continue;
		imaged++;
		if (m->cpu_millis && (nd->cpu_used > nd->cpu_millis ||
				      nd->cpu_millis - nd->cpu_used < m->cpu_millis))
			continue;
		cpu_ok++;
		if (m->memory_bytes && (nd->memory_used > nd->memory_bytes ||
					nd->memory_bytes - nd->memory_used < m->memory_bytes))
			continue;
		mem_ok++;
		picked[(*npicked)++] = i;
	}
	if (mem_ok < want) {
		char lb[1024], sz[32];
		const char *s = want == 1 ? "" : "s";
		*npicked = 0;
		if (labelled < want) {
			if (m->nlabels)
				return vs_error_set(
				    err, EAGAIN,
				    ".nodes.count: %zu sliver%s wanted, %zu ready node%s labels %s",
				    want, s, labelled, labelled == 1 ? " matches" : "s match",
				    labels_text(m, lb, sizeof(lb)));
			return vs_error_set(err, EAGAIN,
					    "%s: %zu sliver%s wanted, %zu ready node%s",
					    m->node_count ? ".nodes.count" : ".nodes", want, s,
					    ready, ready == 1 ? "" : "s");
		}
		if (imaged < want)
			return vs_error_set(
			    err, EAGAIN,
			    ".image: %zu sliver%s wanted, %zu ready node%s image \"%s\" and the "
			    "registry has none of that name (import it with: slicectl image "
			    "import %s SRC)",
			    want, s, imaged, imaged == 1 ? " has" : "s have", m->image, m->image);
		if (cpu_ok == 0)
			return vs_error_set(
			    err, EAGAIN,
			    ".resources.cpus: %zu sliver%s wanted, no node has %.3g cpus free",
			    want, s, (double)m->cpu_millis / 1000.0);
		if (cpu_ok < want)
			return vs_error_set(
			    err, EAGAIN,
			    ".resources.cpus: %zu sliver%s wanted, %zu node%s %.3g cpus free", want,
			    s, cpu_ok, cpu_ok == 1 ? " has" : "s have",
			    (double)m->cpu_millis / 1000.0);
		vs_format_size(m->memory_bytes, sz, sizeof(sz));
		if (mem_ok == 0)
			return vs_error_set(
			    err, EAGAIN,
			    ".resources.memory: %zu sliver%s wanted, no node has %s free", want, s,
			    sz);
		return vs_error_set(err, EAGAIN,
				    ".resources.memory: %zu sliver%s wanted, %zu node%s %s free",
				    want, s, mem_ok, mem_ok == 1 ? " has" : "s have", sz);
	}
	select_spread(picked, *npicked, want, nodes);
	*npicked = want;
	*picked_out = steal_pointer(&picked);
	return 0;
}

/* ---- migration targets ---- */

/* "512 MiB", "1.5 GiB": a size for a refusal message. */
static const char *human_size(uint64_t b, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (b < 1024) {
		snprintf(buf, len, "%llu bytes", (unsigned long long)b);
		return buf;
	}
	double v = (double)b / 1024;
	size_t u = 0;
	for (; v >= 1024 && u + 1 < VS_ARRAY_SIZE(units); u++)
		v /= 1024;
	snprintf(buf, len, "%.3g %s", v, units[u]);
	return buf;
}

const char *sched_target_refusal(const struct sched_node *nd, bool hosts, const char *slice,
				 const char *image, uint64_t cpu_millis, uint64_t memory_bytes,
				 char *buf, size_t len)
{
	char free_s[32], ask_s[32];
	if (nd->drained)
		snprintf(buf, len, "node %s is drained", nd->name);
	else if (nd->state != SCHED_NODE_READY)
		snprintf(buf, len, "node %s is not ready (last seen %lld s ago)", nd->name,
			 nd->last_seen_ago);
	else if (hosts)
		snprintf(buf, len, "node %s already hosts a sliver of %s", nd->name, slice);
	else if (!nd->has_url)
		snprintf(buf, len,
			 "node %s has no transfer url (its node manager runs without "
			 "--listen/--advertise)",
			 nd->name);
	else if (!has_image(image, nd))
		snprintf(buf, len, "node %s lacks image %s", nd->name, image);
	else if (cpu_millis &&
		 (nd->cpu_used > nd->cpu_millis || nd->cpu_millis - nd->cpu_used < cpu_millis))
		snprintf(buf, len, "node %s lacks capacity: %.3g cpus free, %.3g asked", nd->name,
			 nd->cpu_used > nd->cpu_millis
			     ? 0.0
			     : (double)(nd->cpu_millis - nd->cpu_used) / 1000.0,
			 (double)cpu_millis / 1000.0);
	else if (memory_bytes && (nd->memory_used > nd->memory_bytes ||
				  nd->memory_bytes - nd->memory_used < memory_bytes))
		snprintf(buf, len, "node %s lacks capacity: %s memory free, %s asked", nd->name,
			 human_size(nd->memory_used > nd->memory_bytes
					? 0
					: nd->memory_bytes - nd->memory_used,
				    free_s, sizeof(free_s)),
			 human_size(memory_bytes, ask_s, sizeof(ask_s)));
	else
		return NULL;
	return buf;
}

int sched_pick_target(const struct sched_node *nodes, size_t n, const bool *hosts,
		      const char *slice, const char *image, uint64_t cpu_millis,
		      uint64_t memory_bytes, size_t *picked, struct vs_error *err)
{
	char why[512] = "", one[256];
	size_t off = 0, refused = 0, best = n;
	const struct sched_node *saved = score_nodes;
	score_nodes = nodes;
	for (size_t i = 0; i < n; i++) {
		if (!sched_target_refusal(&nodes[i], hosts[i], slice, image, cpu_millis,
					  memory_bytes, one, sizeof(one))) {
			if (best == n || cmp_spread(&i, &best) < 0)
				best = i;
			continue;
		}
		/* The source is no candidate: not worth a reason. */
		if (hosts[i])
			continue;
		if (refused++ < 3 && off < sizeof(why)) {
			int w =
			    snprintf(why + off, sizeof(why) - off, "%s%s", off ? "; " : "", one);
			off += w > 0 ? (size_t)w : 0;
		}
	}
	score_nodes = saved;
	if (best < n) {
		*picked = best;
		return 0;
	}
	if (refused == 0)
		return vs_error_set(
		    err, EAGAIN, "no node can take slice %s: no other node is registered", slice);
	if (refused > 3)
		return vs_error_set(err, EAGAIN, "no node can take slice %s: %s (and %zu more)",
				    slice, why, refused - 3);
	return vs_error_set(err, EAGAIN, "no node can take slice %s: %s", slice, why);
}
