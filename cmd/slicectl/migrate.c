/*
 * migrate.c - slicectl's migration verbs in cluster mode (docs/migration.md,
 * docs/cluster-api.md "Migrations"):
 *
 *   migrate NAME [--to NODE] [--from NODE] [--mode cold] [--json]
 *   migrations [NAME] [--json]
 *   node drain NODE --migrate [--parallel N]     (cluster.c's node verb calls
 *                                                 cluster_drain_migrate)
 *
 * The registry does the work (it records the migration, the two node
 * managers move the slice and report); slicectl asks for it and follows the
 * migration object with long-polls until it is finished. Exit codes: 0
 * moved; 1 aborted (the slice runs where it ran); 125 refused before
 * anything stopped (or a local error).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/http.h"
#include "vslice/json.h"
#include "vslice/regclient.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define MIG_POLL_SECS	  1	 /* long-poll wait while it runs: progress once a second */
#define MIG_START_WAIT_MS 120000 /* after the commit, how long to wait for "started" */
#define MIG_RETRIES	  10	 /* consecutive failed polls before giving up */

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* An integer field, or def when absent or null. */
static long long jnum(const json_t *o, const char *key, long long def)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : def;
}

static long long mono_ms(void)
{
	return (long long)(vs_now_ns() / 1000000);
}

/* "12.3 MiB": bytes for people. */
static const char *human_bytes(long long b, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	if (b < 1024) {
		snprintf(buf, len, "%lld B", b < 0 ? 0 : b);
		return buf;
	}
	double v = (double)b;
	size_t u = 0;
	for (v /= 1024; v >= 1024 && u + 1 < VS_ARRAY_SIZE(units); u++)
		v /= 1024;
	snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s)
		printf("%s\n", s);
	free(s);
}

/* ------------------------------------------------------------------ */
/* following one migration                                             */

struct follow {
	const char *slice;
	bool tty;	       /* stderr is a terminal: one \r line */
	bool quiet;	       /* --json, -q: no progress at all */
	char phase[16];	       /* last shown */
	long long t_transfer;  /* mono_ms when it was first seen transferring */
	long long t_committed; /* mono_ms when first seen committed */
	size_t line_len;       /* of the \r line on the terminal */
};

static void progress(struct follow *f, const json_t *m)
{
	const char *phase = jstr(m, "phase");
	long long bytes = jnum(m, "bytes", 0), now = mono_ms();
	if (!strcmp(phase, "transferring") && !f->t_transfer)
		f->t_transfer = now;
	if (!strcmp(phase, "committed") && !f->t_committed)
		f->t_committed = now;
	char b[32], rate[48] = "";
	human_bytes(bytes, b, sizeof(b));
	if (f->t_transfer && now > f->t_transfer && bytes > 0) {
		char r[32];
		human_bytes((long long)((double)bytes * 1000.0 / (double)(now - f->t_transfer)), r,
			    sizeof(r));
		snprintf(rate, sizeof(rate), ", %s/s", r);
	}
	char pb[32];
	vs_printable(phase, pb, sizeof(pb));
	if (f->quiet) {
		/* nothing */
	} else if (f->tty) {
		char line[160];
		int n = snprintf(line, sizeof(line), "%s %s -> %s: %s, %s%s", f->slice,
				 jstr(m, "from"), jstr(m, "to"), pb, b, rate);
		size_t len = n > 0 ? (size_t)n : 0;
		fprintf(stderr, "\r%s%*s", line, f->line_len > len ? (int)(f->line_len - len) : 0,
			"");
		f->line_len = len;
	} else if (strcmp(phase, f->phase)) {
		printf("%s: %s%s%s\n", f->slice, pb, bytes > 0 ? ", " : "", bytes > 0 ? b : "");
		fflush(stdout);
	}
	snprintf(f->phase, sizeof(f->phase), "%s", phase);
}

static void progress_end(struct follow *f)
{
	if (f->tty && f->line_len)
		fputc('\n', stderr);
	f->line_len = 0;
}

/* Follow migration id until it is finished (or committed and the target
 * never said "started"). *out: the last object. 0, or 125 (transport). */
static int follow(struct http_client *c, const char *id, struct follow *f, json_t **out)
{
	long long index = 0;
	unsigned failures = 0;
	*out = NULL;
	for (;;) {
		json_t *m = NULL;
		long long next = -1;
		long status = 0;
		struct vs_error err;
		int r =
		    regclient_migration_get(c, id, index, MIG_POLL_SECS, &m, &next, &status, &err);
		if (r < 0) {
			/* 4xx: the answer will not change; else ride out a registry
			 * restart or a blip. */
			if ((status >= 400 && status < 500) || ++failures > MIG_RETRIES) {
				progress_end(f);
				return ctl_fail("migrate", f->slice, &err);
			}
			sleep(1);
			continue;
		}
		failures = 0;
		if (next >= 0)
			index = next;
		progress(f, m);
		bool done = json_is_true(json_object_get(m, "finished")) ||
			    (f->t_committed && mono_ms() - f->t_committed > MIG_START_WAIT_MS);
		json_decref(*out);
		*out = m;
		if (done)
			break;
	}
	progress_end(f);
	return 0;
}

/* Live and pre-copy: a line per running round and one for the frozen
 * round, from the source's "stats" (docs/cluster-api.md). */
static void print_rounds(const json_t *m)
{
	const json_t *st = json_object_get(m, "stats");
	const json_t *rounds = json_object_get(st, "rounds");
	size_t i;
	const json_t *r;
	char b[32], d[32];
	json_array_foreach(rounds, i, r)
	{
		long long dirty = jnum(r, "dirty_bps", 0);
		printf("  round %zu: %lld pages, %s in %lld ms", i + 1, jnum(r, "pages", 0),
		       human_bytes(jnum(r, "bytes", 0), b, sizeof(b)), jnum(r, "ms", 0));
		if (i > 0)
			printf(", dirtied %s/s", human_bytes(dirty, d, sizeof(d)));
		printf("\n");
	}
	if (json_object_get(st, "freeze_ms"))
		printf("  frozen: %lld pages, %s, the source frozen %lld ms for the dump\n",
		       jnum(st, "frozen_pages", 0),
		       human_bytes(jnum(st, "frozen_bytes", 0), b, sizeof(b)),
		       jnum(st, "freeze_ms", 0));
}

/* The summary line; returns the exit code. */
static int summary(struct ctl *ctl, const json_t *m, long long t0)
{
	const char *phase = jstr(m, "phase");
	char slice[80], reason[512];
	vs_printable(jstr(m, "slice"), slice, sizeof(slice));
	if (ctl->json)
		print_json(m);
	if (!strcmp(phase, "aborted")) {
		fprintf(stderr, "slicectl: migrate %s: aborted: %s\n", slice,
			vs_printable(jstr(m, "reason"), reason, sizeof(reason)));
		return 1;
	}
	if (ctl->json || ctl->quiet)
		return 0;
	char b[32], down[48] = "";
	print_rounds(m);
	long long total = jnum(m, "total_ms", -1), dt = jnum(m, "downtime_ms", -1);
	if (total < 0)
		total = mono_ms() - t0;
	if (dt >= 0)
		snprintf(down, sizeof(down), ", downtime %.2f s", (double)dt / 1000.0);
	else
		snprintf(down, sizeof(down), ", not started yet");
	printf("migrated %s %s -> %s (%s): %s in %.2f s%s\n", slice, jstr(m, "from"), jstr(m, "to"),
	       jstr(m, "mode"), human_bytes(jnum(m, "bytes", 0), b, sizeof(b)),
	       (double)total / 1000.0, down);
	return 0;
}

const char cluster_migrate_help[] =
    "usage: slicectl migrate NAME [--to NODE] [--from NODE] [--mode cold|live|precopy]\n"
    "       [--json]\n\n"
    "Cluster mode: move slice NAME's sliver to another node. The source node stops\n"
    "it, sends its file system changes and log straight to the target, which starts\n"
    "it (cold: execution restarts, the files stay). Only one copy ever runs.\n"
    "  --to NODE     the target (default: the registry picks a ready node with room)\n"
    "  --from NODE   which sliver, when the slice has several\n"
    "  --mode MODE   cold (stop, send the files, start afresh), live (freeze, send the\n"
    "                checkpoint, resume on the target) or precopy (memory rounds while\n"
    "                it runs, then a short frozen round). Default: precopy, and cold\n"
    "                (saying why) when the source cannot checkpoint the slice\n"
    "  --json        print the final migration object\n"
    "Shows the phase, bytes and rate while it runs (one line on a terminal), then\n"
    "  migrated m1 n1 -> n2 (cold): 12.3 MiB in 2.41 s, downtime 2.10 s\n"
    "Exit 0 moved; 1 aborted (the slice runs where it ran; the reason is printed);\n"
    "125 refused before anything stopped.\n";

static int migrate_once(struct ctl *ctl, struct http_client *hc, const char *slice, const char *to,
			const char *from, const char *mode, char **precond, json_t **last);

int cmd_migrate_cluster(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, cluster_migrate_help))
		return 0;
	static const struct option o[] = {{"to", required_argument, NULL, 't'},
					  {"from", required_argument, NULL, 'f'},
					  {"mode", required_argument, NULL, 'm'},
					  {"json", no_argument, NULL, 'j'},
					  {0}};
	const char *to = NULL, *from = NULL, *mode = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'j':
			ctl->json = true;
			break;
		default:
			return ctl_usage("migrate", "unknown option");
		}
	}
	if (optind >= argc)
		return ctl_usage("migrate", "missing slice NAME");
	if (optind + 1 < argc)
		return ctl_usage("migrate", "unexpected \"%s\"", argv[optind + 1]);
	const char *slice = argv[optind];
	struct vs_error err;
	if (vs_check_name("slice", slice, &err) < 0)
		return ctl_usage("migrate", "%s", err.msg);
	if ((to && !vs_node_name_valid(to)) || (from && !vs_node_name_valid(from)))
		return ctl_usage("migrate", "%s: invalid node name \"%s\"", to ? "--to" : "--from",
				 to && !vs_node_name_valid(to) ? to : from);
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, "migrate", &hc);
	if (r)
		return r;
	long long t0 = mono_ms();
	/* Without --mode: pre-copy, and cold where the source's checkpointer
	 * refuses the slice (it says so before anything stops). */
	bool picked = !mode;
	json_t *last = NULL;
	/* The registry's refusal of a live/pre-copy precondition (kernel,
	 * vDSO, CPU features of the target): without --mode, cold instead. */
	cleanup_free char *precond = NULL;
	r = migrate_once(ctl, &hc, slice, to, from, mode ? mode : "precopy",
			 picked ? &precond : NULL, &last);
	if (precond) {
		fprintf(stderr, "slicectl: migrate %s: %s; migrating it cold instead\n", slice,
			precond);
		json_decref(last);
		last = NULL;
		r = migrate_once(ctl, &hc, slice, to, from, "cold", NULL, &last);
	}
	if (r) {
		json_decref(last);
		return r;
	}
	const json_t *stats = json_object_get(last, "stats");
	if (picked && !precond && !strcmp(jstr(last, "phase"), "aborted") &&
	    json_is_true(json_object_get(stats, "refused"))) {
		char reason[512];
		fprintf(stderr, "slicectl: migrate %s: %s; migrating it cold instead\n", slice,
			vs_printable(jstr(last, "reason"), reason, sizeof(reason)));
		json_decref(last);
		last = NULL;
		if ((r = migrate_once(ctl, &hc, slice, to, from, "cold", NULL, &last))) {
			json_decref(last);
			return r;
		}
	}
	r = summary(ctl, last, t0);
	json_decref(last);
	return r;
}

/* POST the migration and follow it to its end: *last the final object.
 * 0, or the exit code of a refusal / transport failure. With precond, a
 * 409 that names a failed "precondition" (the mode cannot work on that
 * target; cold can) is not printed: *precond gets its line, and 0. */
static int migrate_once(struct ctl *ctl, struct http_client *hc, const char *slice, const char *to,
			const char *from, const char *mode, char **precond, json_t **last)
{
	struct vs_error err;
	cleanup_json json_t *m = NULL;
	long status = 0;
	int r;
	/* A refusal is one line naming the slice: "slicectl: migrate m1: node
	 * n3 is drained". */
	if (regclient_migration_create(hc, slice, to, from, mode, &m, &status, &err) < 0) {
		if (precond && status == 409 &&
		    json_is_string(json_object_get(m, "precondition"))) {
			char line[512];
			*precond = vs_xstrdup(vs_printable(err.msg, line, sizeof(line)));
			/* its advice is what happens next: not repeated */
			size_t n = strlen(*precond), k = strlen("; use --mode cold");
			if (n > k && !strcmp(*precond + n - k, "; use --mode cold"))
				(*precond)[n - k] = '\0';
			return 0;
		}
		return ctl_fail("migrate", slice, &err);
	}
	const char *id = jstr(m, "id");
	if (!*id) {
		vs_error_set(&err, EPROTO, "the registry's answer has no migration id");
		return ctl_fail("migrate", slice, &err);
	}
	cleanup_free char *idc = vs_xstrdup(id);
	struct follow f = {.slice = slice, .quiet = ctl->json || ctl->quiet};
	f.tty = !f.quiet && isatty(2);
	if (!f.tty && !f.quiet)
		printf("%s: migration %s (%s): %s -> %s\n", slice, idc, mode, jstr(m, "from"),
		       jstr(m, "to"));
	if ((r = follow(hc, idc, &f, last)))
		return r;
	/* live / pre-copy: the source's stats (its freeze) may come just
	 * after the target's "started" */
	for (int k = 0; k < 25 && strcmp(jstr(*last, "mode"), "cold") &&
			strcmp(jstr(*last, "phase"), "aborted") &&
			!json_object_get(json_object_get(*last, "stats"), "freeze_ms");
	     k++) {
		usleep(200000);
		json_t *m2 = NULL;
		if (regclient_migration_get(hc, idc, -1, 0, &m2, NULL, &status, &err) == 0) {
			json_decref(*last);
			*last = m2;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* migrations [NAME]                                                   */

const char cluster_migrations_help[] =
    "usage: slicectl migrations [NAME] [--json]\n\n"
    "Cluster mode: past and running migrations (yours; an admin's: all), newest\n"
    "first, at most 100:\n"
    "  ID SLICE FROM TO MODE PHASE BYTES TOTAL DOWNTIME REASON\n"
    "PHASE is prepared, transferring, committed or aborted; TOTAL and DOWNTIME in\n"
    "seconds (- until known). --json: {\"migrations\": [...]}.\n";

static void secs_or_dash(long long ms, char *buf, size_t len)
{
	if (ms < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", (double)ms / 1000.0);
}

int cmd_migrations_cluster(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, cluster_migrations_help))
		return 0;
	static const struct option o[] = {{"json", no_argument, NULL, 'j'}, {0}};
	int c;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		if (c != 'j')
			return ctl_usage("migrations", "unknown option");
		ctl->json = true;
	}
	if (optind + 1 < argc)
		return ctl_usage("migrations", "unexpected \"%s\"", argv[optind + 1]);
	const char *slice = optind < argc ? argv[optind] : NULL;
	struct vs_error err;
	if (slice && vs_check_name("slice", slice, &err) < 0)
		return ctl_usage("migrations", "%s", err.msg);
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, "migrations", &hc);
	if (r)
		return r;
	cleanup_json json_t *resp = NULL;
	long status = 0;
	if (regclient_migration_list(&hc, slice, &resp, &status, &err) < 0)
		return ctl_fail("migrations", slice, &err);
	json_t *arr = json_object_get(resp, "migrations");
	if (!json_is_array(arr)) {
		vs_error_set(&err, EPROTO, "the registry's answer has no \"migrations\" array");
		return ctl_fail("migrations", slice, &err);
	}
	if (ctl->json) {
		print_json(resp);
		return 0;
	}
	printf("%-19s %-16s %-12s %-12s %-5s %-12s %-10s %-7s %-8s %s\n", "ID", "SLICE", "FROM",
	       "TO", "MODE", "PHASE", "BYTES", "TOTAL", "DOWNTIME", "REASON");
	size_t i;
	json_t *m;
	json_array_foreach(arr, i, m)
	{
		char id[32], sl[80], fr[80], to[80], mode[16], ph[16], reason[256], b[32] = "-";
		char tot[24], down[24];
		if (jnum(m, "bytes", -1) >= 0)
			human_bytes(jnum(m, "bytes", 0), b, sizeof(b));
		secs_or_dash(jnum(m, "total_ms", -1), tot, sizeof(tot));
		secs_or_dash(jnum(m, "downtime_ms", -1), down, sizeof(down));
		printf("%-19s %-16s %-12s %-12s %-5s %-12s %-10s %-7s %-8s %s\n",
		       vs_printable(jstr(m, "id"), id, sizeof(id)),
		       vs_printable(jstr(m, "slice"), sl, sizeof(sl)),
		       vs_printable(jstr(m, "from"), fr, sizeof(fr)),
		       vs_printable(jstr(m, "to"), to, sizeof(to)),
		       vs_printable(jstr(m, "mode"), mode, sizeof(mode)),
		       vs_printable(jstr(m, "phase"), ph, sizeof(ph)), b, tot, down,
		       *jstr(m, "reason") ? vs_printable(jstr(m, "reason"), reason, sizeof(reason))
					  : "-");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* node drain NODE --migrate                                           */

struct drain_job {
	char *slice;
	char *id;      /* running migration, NULL before it started / after */
	char *outcome; /* NULL: not finished; "" moved; else why not */
};

/* The slices with a sliver on node, unfinished ones to move, finished ones
 * told and skipped. */
static int drain_slices(struct http_client *c, const char *node, struct drain_job **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	cleanup_json json_t *resp = NULL;
	struct vs_error err;
	long status = 0;
	if (regclient_slice_list(c, &resp, &status, &err) < 0)
		return ctl_fail("node", node, &err);
	size_t i, k;
	json_t *s, *v;
	json_array_foreach(json_object_get(resp, "slices"), i, s)
	{
		json_array_foreach(json_object_get(s, "slivers"), k, v)
		{
			if (strcmp(jstr(v, "node"), node))
				continue;
			const char *st = jstr(v, "state");
			char sl[80];
			vs_printable(jstr(s, "name"), sl, sizeof(sl));
			if (!strcmp(st, "exited") || !strcmp(st, "failed")) {
				printf("%s: %s there: nothing to move\n", sl, st);
				continue;
			}
			*out = vs_xrealloc(*out, (*n + 1) * sizeof(**out));
			(*out)[(*n)++] = (struct drain_job){.slice = vs_xstrdup(jstr(s, "name"))};
		}
	}
	return 0;
}

/* Start job j's migration off node; false when the registry refused it
 * (j->outcome says why). */
static bool drain_start(struct http_client *c, const char *node, struct drain_job *j)
{
	cleanup_json json_t *m = NULL;
	struct vs_error err;
	long status = 0;
	if (regclient_migration_create(c, j->slice, NULL, node, "cold", &m, &status, &err) < 0) {
		j->outcome = vs_xstrdup(err.msg);
		char sl[80], why[512];
		printf("%s: cannot move: %s\n", vs_printable(j->slice, sl, sizeof(sl)),
		       vs_printable(err.msg, why, sizeof(why)));
		fflush(stdout);
		return false;
	}
	j->id = vs_xstrdup(jstr(m, "id"));
	return true;
}

/* Poll job j's running migration once: true when it finished. */
static bool drain_poll(struct http_client *c, struct drain_job *j)
{
	cleanup_json json_t *m = NULL;
	struct vs_error err;
	long status = 0;
	if (regclient_migration_get(c, j->id, -1, 0, &m, NULL, &status, &err) < 0) {
		if (status < 400 || status >= 500)
			return false; /* transient: try again */
		j->outcome = vs_xstrdup(err.msg);
	} else if (!json_is_true(json_object_get(m, "finished")) &&
		   strcmp(jstr(m, "phase"), "committed")) {
		return false;
	} else if (!strcmp(jstr(m, "phase"), "aborted")) {
		j->outcome = vs_xasprintf("aborted: %s", jstr(m, "reason"));
	} else {
		j->outcome = vs_xstrdup("");
	}
	char sl[80], why[512], b[32];
	vs_printable(j->slice, sl, sizeof(sl));
	if (*j->outcome)
		printf("%s: not moved: %s\n", sl, vs_printable(j->outcome, why, sizeof(why)));
	else
		printf("%s: moved to %s (%s)\n", sl, vs_printable(jstr(m, "to"), why, sizeof(why)),
		       human_bytes(jnum(m, "bytes", 0), b, sizeof(b)));
	fflush(stdout);
	free(j->id);
	j->id = NULL;
	return true;
}

int cluster_drain_migrate(struct ctl *ctl, struct http_client *c, const char *node,
			  unsigned parallel)
{
	struct drain_job *jobs;
	size_t n;
	int r = drain_slices(c, node, &jobs, &n);
	if (r)
		return r;
	size_t next = 0, running = 0, done = 0;
	unsigned failures = 0;
	while (done < n) {
		while (running < parallel && next < n) {
			if (drain_start(c, node, &jobs[next]))
				running++;
			else
				done++;
			next++;
		}
		bool any = false;
		for (size_t i = 0; i < n; i++) {
			if (!jobs[i].id)
				continue;
			any = true;
			if (drain_poll(c, &jobs[i])) {
				running--;
				done++;
			}
		}
		if (any && done < n) {
			/* A migration takes seconds; half a second keeps the lines
			 * prompt without hammering the registry. */
			usleep(500 * 1000);
			failures = 0;
		} else if (!any && done < n && ++failures > MIG_RETRIES) {
			break;
		}
	}
	size_t moved = 0, failed = 0;
	for (size_t i = 0; i < n; i++)
		if (jobs[i].outcome && !*jobs[i].outcome)
			moved++;
	if (moved < n) {
		printf("not moved from %s:\n", node);
		for (size_t i = 0; i < n; i++) {
			if (jobs[i].outcome && !*jobs[i].outcome)
				continue;
			char sl[80], why[512];
			printf("  %s: %s\n", vs_printable(jobs[i].slice, sl, sizeof(sl)),
			       jobs[i].outcome ? vs_printable(jobs[i].outcome, why, sizeof(why))
					       : "still running");
			failed++;
		}
	} else if (!ctl->quiet) {
		printf("%s drained: %zu slice%s moved\n", node, moved, moved == 1 ? "" : "s");
	}
	for (size_t i = 0; i < n; i++) {
		free(jobs[i].slice);
		free(jobs[i].id);
		free(jobs[i].outcome);
	}
	free(jobs);
	return failed ? 1 : 0;
}
