/*
 * info.c - slicectl's read-only verbs: list, show, logs, stats.
 * --json (global) gives machine-readable output for list, show and stats.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/slice.h"
#include "vslice/netcfg.h"
#include "vslice/units.h"
#include "vslice/util.h"

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(j);
}

static json_t *strv_json(char **v)
{
	json_t *a = json_array();
	for (; v && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

static json_t *slice_json(const struct slice_spec *s, const struct slice_state *st)
{
	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:o, s:o, s:s, s:I, s:I,"
	    " s:I, s:i, s:I, s:I, s:i, s:s, s:i, s:I, s:I, s:b, s:s}",
	    "name", s->name, "state", slice_status_name(st->status), "image", s->image, "hostname",
	    s->hostname, "policy", s->policy, "cpus", s->cpu_millis / 1000.0, "memory_bytes",
	    (json_int_t)s->memory_bytes, "pids_max", (json_int_t)s->pids_max, "lifetime_secs",
	    (json_int_t)s->lifetime_secs, "argv", strv_json(s->argv), "env", strv_json(s->env),
	    "net",
	    s->net == SLICE_NET_HOST	 ? "host"
	    : s->net != SLICE_NET_BRIDGE ? "none"
	    : s->netopts.no_egress	 ? "bridge,no-egress"
					 : "bridge",
	    "timeout_secs", (json_int_t)s->timeout_secs, "created", (json_int_t)s->created,
	    "expires", (json_int_t)s->expires, "restart_max", (int)s->restart_max, "id_base",
	    (json_int_t)s->id_base, "started", (json_int_t)st->started, "pid", (int)st->pid,
	    "exit_reason", st->exit_reason, "exit_code", st->exit_code, "finished",
	    (json_int_t)st->finished, "restarts", (json_int_t)st->restarts, "idmapped",
	    st->idmapped, "node", "local");
}

static const char list_help[] = "usage: slicectl list [-q]\n\nAll slices on this node: NAME STATE "
				"IMAGE CPUS MEMORY PIDS NODE UPTIME.\n"
				"  -q    names only\n";

int cmd_list(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, list_help))
		return 0;
	bool quiet = ctl->quiet;
	int c;
	while ((c = getopt(argc, argv, "q")) != -1) {
		if (c != 'q')
			return ctl_usage("list", "unknown option");
		quiet = true;
	}
	if (optind < argc)
		return ctl_usage("list", "unexpected \"%s\"", argv[optind]);
	char **names;
	size_t n;
	struct vs_error err;
	if (slice_list(ctl->root, &names, &n, &err) < 0)
		return ctl_fail("list", NULL, &err);
	json_t *arr = ctl->json ? json_array() : NULL;
	if (!quiet && !ctl->json)
		printf("%-20s %-8s %-10s %-5s %-7s %-6s %-6s %s\n", "NAME", "STATE", "IMAGE",
		       "CPUS", "MEMORY", "PIDS", "NODE", "UPTIME");
	for (size_t i = 0; i < n; i++) {
		struct slice_spec s;
		struct slice_state st;
		if (quiet && !ctl->json) {
			printf("%s\n", names[i]);
		} else if (slice_load(ctl->root, names[i], &s, &st, &err) < 0) {
			if (ctl->json)
				json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name",
								     names[i], "state", "broken",
								     "error", err.msg));
			else
				printf("%-20s %-8s (%s)\n", names[i], "broken", err.msg);
		} else {
			if (ctl->json) {
				json_array_append_new(arr, slice_json(&s, &st));
			} else {
				char cpus[24] = "-", mem[24] = "-", pids[24] = "-", up[32] = "-";
				if (s.cpu_millis)
					snprintf(cpus, sizeof(cpus), "%g", s.cpu_millis / 1000.0);
				if (s.memory_bytes)
					vs_format_size(s.memory_bytes, mem, sizeof(mem));
				if (s.pids_max)
					snprintf(pids, sizeof(pids), "%llu",
						 (unsigned long long)s.pids_max);
				if (st.status == SLICE_RUNNING || st.status == SLICE_FROZEN)
					vs_format_duration((uint64_t)(time(NULL) - st.started), up,
							   sizeof(up));
				printf("%-20s %-8s %-10s %-5s %-7s %-6s %-6s %s\n", s.name,
				       slice_status_name(st.status), s.image, cpus, mem, pids,
				       "local", up);
			}
			slice_spec_free(&s);
		}
		free(names[i]);
	}
	free(names);
	if (ctl->json)
		print_json(arr);
	return 0;
}

/* show's times: epoch seconds in --json, readable here. */
static bool is_time_key(const char *key)
{
	return !strcmp(key, "created") || !strcmp(key, "expires") || !strcmp(key, "started") ||
	       !strcmp(key, "finished");
}

/* "2026-12-04T23:40:00Z (5m ago)", "... (in 2h)", or "-" for never. */
static const char *fmt_when(long long t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t, now = time(NULL);
	char iso[32], d[32];
	if (t <= 0 || !gmtime_r(&tt, &tm) ||
	    !strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		snprintf(buf, len, "-");
		return buf;
	}
	vs_format_duration((uint64_t)(tt > now ? tt - now : now - tt), d, sizeof(d));
	int n = snprintf(buf, len, "%s (%s", iso, tt > now ? "in " : "");
	if (n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "%s%s)", d, tt > now ? "" : " ago");
	return buf;
}

static const char show_help[] =
    "usage: slicectl show NAME\n\nSpec and status of a slice (--json for JSON). Times in UTC\n"
    "(ISO 8601) and relative to now; --json gives them as epoch seconds.\n";

int cmd_show(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, show_help))
		return 0;
	if (argc != 2)
		return ctl_usage("show", argc < 2 ? "missing slice NAME" : "one NAME only");
	struct slice_spec s;
	struct slice_state st;
	struct vs_error err;
	if (slice_load(ctl->root, argv[1], &s, &st, &err) < 0)
		return ctl_fail("show", argv[1], &err);
	json_t *j = slice_json(&s, &st);
	if (ctl->json) {
		print_json(j);
	} else {
		const char *key;
		json_t *v;
		json_object_foreach(j, key, v)
		{
			char when[96];
			if (is_time_key(key)) {
				printf(
				    "%-14s %s\n", key,
				    fmt_when((long long)json_integer_value(v), when, sizeof(when)));
				continue;
			}
			if (!strcmp(key, "exit_reason") &&
			    slice_exit_reason_text(json_string_value(v))) {
				printf("%-14s %s: %s\n", key, json_string_value(v),
				       slice_exit_reason_text(json_string_value(v)));
				continue;
			}
			char *t = json_is_string(v) ? NULL
						    : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			printf("%-14s %s\n", key, t ? t : json_string_value(v));
			free(t);
		}
		printf("%-14s %s\n", "rootfs",
		       st.idmapped
			   ? "overlay on the image, id-mapped"
			   : "overlay on a chowned copy of the image (id-mapped mounts refused)");
		json_decref(j);
	}
	slice_spec_free(&s);
	return 0;
}

static const char logs_help[] =
    "usage: slicectl logs NAME [-f] [--node NODE]\n\nOutput (stdout and stderr) of a detached "
    "slice.\n"
    "  -f, --follow    keep printing until the slice stops\n"
    "  --node NODE     the sliver on NODE (local mode: only \"local\")\n";

int cmd_logs(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, logs_help))
		return 0;
	static const struct option o[] = {
	    {"follow", no_argument, NULL, 'f'}, {"node", required_argument, NULL, 'n'}, {0}};
	bool follow = false;
	int c;
	while ((c = getopt_long(argc, argv, "fn:", o, NULL)) != -1) {
		if (c == 'n' && strcmp(optarg, "local"))
			return ctl_usage(
			    "logs",
			    "--node %s: local mode has one node, \"local\" (other nodes "
			    "need --registry)",
			    optarg);
		else if (c == 'f')
			follow = true;
		else if (c != 'n')
			return ctl_usage("logs", "unknown option");
	}
	if (optind + 1 != argc)
		return ctl_usage("logs", optind >= argc ? "missing slice NAME" : "one NAME only");
	const char *name = argv[optind];
	struct vs_error err;
	int fd = slice_log_open(ctl->root, name, &err);
	if (fd < 0)
		return ctl_fail("logs", name, &err);
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			if (vs_write_all(1, buf, (size_t)n) < 0)
				break;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (!follow || !slice_pid1(ctl->root, name))
			break;
		poll(NULL, 0, 100);
	}
	close(fd);
	return 0;
}

static const char stats_help[] =
    "usage: slicectl stats NAME [--window MS]\n\n"
    "cpu, memory, pids and the slice's thread-level parallelism (TLP), sampled\n"
    "every 10 ms over --window milliseconds (default 1000).\n";

int cmd_stats(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, stats_help))
		return 0;
	static const struct option o[] = {{"window", required_argument, NULL, 'w'}, {0}};
	unsigned window = 1000;
	int c;
	while ((c = getopt_long(argc, argv, "w:", o, NULL)) != -1) {
		char *end;
		long v = c == 'w' ? strtol(optarg, &end, 10) : -1;
		if (c != 'w' || *end || v < 10 || v > 600000)
			return ctl_usage("stats", "--window: milliseconds, 10..600000");
		window = (unsigned)v;
	}
	if (optind + 1 != argc)
		return ctl_usage("stats", optind >= argc ? "missing slice NAME" : "one NAME only");
	const char *name = argv[optind];
	struct slice_stats st;
	struct vs_error err;
	if (slice_stats(ctl->root, name, window, &st, &err) < 0)
		return ctl_fail("stats", name, &err);
	return ctl_print_stats(ctl, slice_stats_json(ctl->root, name, window, &st));
}

static unsigned long long ju(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (unsigned long long)v : 0;
}

/* slice_stats_json()'s object, as JSON (--json) or text; j consumed. */
int ctl_print_stats(struct ctl *ctl, json_t *j)
{
	if (!j) {
		fprintf(stderr, "slicectl: stats: out of memory\n");
		return EXIT_VSLICE;
	}
	if (ctl->json) {
		print_json(j);
		return 0;
	}
	json_t *net = json_object_get(j, "net");
	if (net) {
		char rate[32] = "none";
		if (ju(net, "rate_bps"))
			netcfg_format_rate(ju(net, "rate_bps"), rate, sizeof(rate));
		const char *ip = json_string_value(json_object_get(net, "ip"));
		printf("net      %s, cap %s%s\n", ip ? ip : "?", rate,
		       json_is_true(json_object_get(net, "attached")) ? "" : " (not attached)");
		printf("net in   %llu bytes, %llu packets\n", ju(net, "rx_bytes"),
		       ju(net, "rx_packets"));
		printf("net out  %llu bytes, %llu packets\n", ju(net, "tx_bytes"),
		       ju(net, "tx_packets"));
	}
	char mem[32], mmax[32] = "max", pmax[32] = "max";
	vs_format_size(ju(j, "memory_bytes"), mem, sizeof(mem));
	if (ju(j, "memory_max"))
		vs_format_size(ju(j, "memory_max"), mmax, sizeof(mmax));
	if (ju(j, "pids_max"))
		snprintf(pmax, sizeof(pmax), "%llu", ju(j, "pids_max"));
	printf("cpu      %.3f s total, %.1f%% over the last %llu ms\n", ju(j, "cpu_usage_ns") / 1e9,
	       json_number_value(json_object_get(j, "cpu_percent")), ju(j, "window_ms"));
	printf("memory   %s / %s  (oom kills: %llu)\n", mem, mmax, ju(j, "oom_kills"));
	printf("pids     %llu / %s\n", ju(j, "pids"), pmax);
	printf("frozen   %s\n", json_is_true(json_object_get(j, "frozen")) ? "yes" : "no");
	json_t *c = json_object_get(j, "running_fraction");
	printf("TLP      %.2f  (samples %llu; c0=%.2f",
	       json_number_value(json_object_get(j, "tlp")), ju(j, "samples"),
	       json_number_value(json_array_get(c, 0)));
	for (size_t i = 1; i < json_array_size(c); i++)
		printf(" c%zu=%.2f", i, json_number_value(json_array_get(c, i)));
	printf(")\n");
	json_decref(j);
	return 0;
}
