/* sched_bench: the registry's scheduler, sched_place() (lib/registry/sched.c),
 * in process, over synthetic nodes. No database, no HTTP: this is the cost of
 * the placement decision alone.
 *
 *   sched_bench [NODES [MAX_DECISIONS [MAX_SECS]]]     (5000 100000 3)
 *
 * Nodes: "n00000".., capacities 2..64 cpus and 4..255 GiB, 0..50 % already
 * requested, 0..19 slivers, labels region (eu, us, asia, af) and arch
 * (x86_64, 3 of 4; arm64); 1 in 50 unknown (not heard from), 1 in 100
 * drained. Each case parses its manifest once with manifest_parse(base_dir
 * NULL, as the registry does), then places it again and again; every
 * placement is charged to the picked nodes (cpu, memory, slivers), so the
 * cluster fills up as it would (should it fill, the nodes go back to their
 * first state and the decision is retried: "refills" counts that). Cases:
 *   count1         nodes.count 1 (0.1 cpus, 64M)
 *   count10_label  nodes.count 10, labels region=eu (0.1 cpus, 64M)
 *   names5         nodes.names with 5 explicit nodes
 *   parse          manifest_parse of the count1 manifest alone (what the
 *                  registry does per POST /v1/slices, outside its lock)
 * Prints one JSON object per case on stdout:
 *   {"case", "nodes", "decisions", "secs", "per_sec", "p50_us", "p99_us", "max_us",
 *    "mean_us", "refills"}
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vslice/manifest.h"
#include "vslice/registry.h"

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static unsigned refills;

static void report(const char *name, size_t nodes, double *s, size_t n, double secs)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	qsort(s, n, sizeof(*s), cmp_d);
	printf("{\"case\": \"%s\", \"nodes\": %zu, \"decisions\": %zu, \"secs\": %.3f, "
	       "\"per_sec\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, "
	       "\"mean_us\": %.1f, \"refills\": %u}\n",
	       name, nodes, n, secs, secs > 0 ? (double)n / secs : 0, pct(s, n, 50), pct(s, n, 99),
	       n ? s[n - 1] : 0, n ? sum / (double)n : 0, refills);
	refills = 0;
	fflush(stdout);
}

static struct manifest *parse(const char *json)
{
	struct manifest_errors errs = {0};
	struct manifest *m = NULL;
	if (manifest_parse(json, strlen(json), NULL, &m, &errs) < 0) {
		fprintf(stderr, "sched_bench: manifest does not parse:\n");
		manifest_errors_print(&errs, stderr, "manifest");
		manifest_errors_free(&errs);
		exit(1);
	}
	manifest_errors_free(&errs);
	return m;
}

#define RES  "\"resources\": {\"cpus\": \"0.1\", \"memory\": \"64M\"}, "
#define RUN  "\"run\": {\"command\": [\"/bin/true\"]}}"
#define HEAD "{\"apiVersion\": \"vslice/v1\", \"slice\": \"bench\", "

static const char m_count1[] = HEAD "\"nodes\": {\"count\": 1}, " RES RUN;
static const char m_count10[] =
    HEAD "\"nodes\": {\"count\": 10, \"labels\": {\"region\": \"eu\"}}, " RES RUN;
/* none of these is unknown (i % 50 == 7) or drained (i % 100 == 3) */
static const char m_names[] = HEAD
    "\"nodes\": {\"names\": [\"n00017\", \"n01234\", \"n02500\", \"n03999\", \"n04998\"]}, " RES
	RUN;

int main(int argc, char **argv)
{
	size_t nn = argc > 1 ? strtoul(argv[1], NULL, 10) : 5000;
	size_t maxd = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
	double maxs = argc > 3 ? strtod(argv[3], NULL) : 3.0;
	if (nn < 5000 || maxd == 0 || maxs <= 0) {
		fprintf(stderr, "usage: sched_bench [NODES>=5000 [MAX_DECISIONS [MAX_SECS]]]\n");
		return 2;
	}
	static const char *const regions[] = {"eu", "us", "asia", "af"};
	struct sched_node *base = calloc(nn, sizeof(*base)), *nodes = calloc(nn, sizeof(*nodes));
	char **names = calloc(nn, sizeof(*names));
	double *s = calloc(maxd, sizeof(*s));
	if (!base || !nodes || !names || !s)
		return 1;
	for (size_t i = 0; i < nn; i++) {
		if (asprintf(&names[i], "n%05zu", i) < 0)
			return 1;
		struct sched_node *n = &base[i];
		n->name = names[i];
		n->state = i % 50 == 7 ? SCHED_NODE_UNKNOWN : SCHED_NODE_READY;
		n->drained = i % 100 == 3;
		n->last_seen_ago = n->state == SCHED_NODE_READY ? 3 : 120;
		n->cpu_millis = (2 + rnd() % 63) * 1000;
		n->memory_bytes = (4 + rnd() % 252) << 30;
		n->cpu_used = n->cpu_millis * (rnd() % 51) / 100;
		n->memory_used = n->memory_bytes * (rnd() % 51) / 100;
		n->nslivers = (unsigned)(rnd() % 20);
		n->labels = json_pack("{s:s, s:s}", "region", regions[rnd() % 4], "arch",
				      rnd() % 4 ? "x86_64" : "arm64");
		n->images = NULL;
	}

	static const struct {
		const char *name, *json;
	} cases[] = {{"count1", m_count1}, {"count10_label", m_count10}, {"names5", m_names}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		memcpy(nodes, base, nn * sizeof(*nodes));
		struct manifest *m = parse(cases[c].json);
		size_t n = 0;
		bool refilled = false;
		double t0 = now_us(), deadline = t0 + maxs * 1e6;
		while (n < maxd) {
			size_t *picked = NULL, np = 0;
			struct vs_error err;
			double a = now_us();
			int r = sched_place(m, nodes, nn, &picked, &np, &err);
			double b = now_us();
			if (r == -EAGAIN && !refilled) {
				memcpy(nodes, base, nn * sizeof(*nodes));
				refilled = true;
				refills++;
				continue;
			}
			refilled = false;
			if (r < 0) {
				fprintf(stderr, "sched_bench: %s: decision %zu failed: %s\n",
					cases[c].name, n, err.msg);
				return 1;
			}
			s[n++] = b - a;
			for (size_t k = 0; k < np; k++) {
				nodes[picked[k]].cpu_used += m->cpu_millis;
				nodes[picked[k]].memory_used += m->memory_bytes;
				nodes[picked[k]].nslivers++;
			}
			free(picked);
			if (b > deadline)
				break;
		}
		report(cases[c].name, nn, s, n, (now_us() - t0) / 1e6);
		manifest_free(m);
	}

	/* what the registry does first with every POST /v1/slices body */
	size_t n = 0;
	double t0 = now_us(), deadline = t0 + maxs * 1e6;
	while (n < maxd) {
		double a = now_us();
		struct manifest *m = parse(m_count1);
		manifest_free(m);
		double b = now_us();
		s[n++] = b - a;
		if (b > deadline)
			break;
	}
	report("parse", nn, s, n, (now_us() - t0) / 1e6);

	for (size_t i = 0; i < nn; i++) {
		json_decref((json_t *)base[i].labels);
		free(names[i]);
	}
	free(names);
	free(base);
	free(nodes);
	free(s);
	return 0;
}
