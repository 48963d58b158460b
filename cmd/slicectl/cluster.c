/*
 * cluster.c - slicectl in cluster mode (--registry URL or $VSLICE_REGISTRY).
 * The verbs act through the registry's HTTP API (docs/cluster-api.md), not
 * on this machine, every request through lib/net's client (regclient.h):
 *
 *   submit FILE [--wait]        validate here, send the resolved manifest
 *   status | show | destroy NAME, list [-q], renew NAME --lifetime D
 *   logs NAME [--node N] [-f]   each sliver's output, from the registry
 *   results NAME DIR            each sliver's result files, verified
 *   nodes, node drain|undrain|reset NODE, token create, user create NAME
 *   migrate, migrations, node drain NODE --migrate: migrate.c
 *
 * Every request carries the token (--token / $VSLICE_TOKEN); an error answer
 * is one line (the registry's own "error" text) printed through ctl_fail().
 *
 * The registry is not trusted with the local file system: `results` writes
 * below DIR only under names checked here (node names against the node name
 * pattern, paths with manifest_check_slice_path()), creates directories one
 * component at a time without following symlinks (vs_mkdirs_at), creates
 * files with O_EXCL | O_NOFOLLOW, and checks the sha256 of what it wrote
 * against both the listing and the download's X-Vslice-Sha256 header.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/http.h"
#include "vslice/json.h"
#include "vslice/regclient.h"
#include "vslice/manifest.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define WAIT_SECS	  30 /* long-poll while nothing runs */
#define WAIT_RUNNING_SECS 2  /* while a sliver runs: logs do not have to bump the revision */
#define TRANSPORT_RETRIES 10 /* consecutive failed polls before --wait / -f give up */
#define LINE_MAX_BYTES	  65536
#define NODE_NAME_MAX	  63

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *key, long long def)
{
	json_t *v = json_object_get(o, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return def;
}

static const char *fmt_time(long long t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "-");
	return buf;
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s)
		printf("%s\n", s);
	free(s);
}

/* A client for ctl's registry; on failure one line and 125. */
int cluster_connect(struct ctl *ctl, const char *verb, struct http_client *c)
{
	struct vs_error err;
	memset(c, 0, sizeof(*c));
	if (!ctl->token || !*ctl->token) {
		fprintf(stderr, "slicectl: %s: no token (--token T or VSLICE_TOKEN)\n", verb);
		return EXIT_VSLICE;
	}
	if (http_client_init(c, ctl->registry, ctl->token, ctl->ca_file, &err) < 0) {
		memset(c, 0, sizeof(*c));
		return ctl_fail(verb, NULL, &err);
	}
	return 0;
}

/*
 * An error answer names its object already ("slice x: not found"): print it
 * after the verb alone. Without an answer (status 0: transport, local
 * errors) obj gives the context.
 */
static int reg_fail(const char *verb, const char *obj, long status, const struct vs_error *err)
{
	return ctl_fail(verb, status > 0 ? NULL : obj, err);
}

/* A regclient call's result r: 0, or the registry's one line through
 * reg_fail() and the exit code. status is read through a pointer, after
 * the call: an argument read by value could be evaluated before the call
 * that fills it (the order of argument evaluation is unspecified). */
static int reg_done(int r, const char *verb, const char *obj, const long *status,
		    const struct vs_error *err)
{
	return r < 0 ? reg_fail(verb, obj, *status, err) : 0;
}

static int check_slice_name(const char *verb, const char *name)
{
	struct vs_error err;
	if (vs_check_name("slice", name, &err) < 0)
		return ctl_usage(verb, "%s", err.msg);
	return 0;
}

static int check_node_name(const char *verb, const char *name)
{
	if (!vs_node_name_valid(name))
		return ctl_usage(verb, "invalid node name \"%s\" ([A-Za-z0-9][A-Za-z0-9._-]{0,62})",
				 name);
	return 0;
}

/* The slice object; index >= 0 and wait > 0: a long-poll. */
static int get_slice(struct http_client *c, const char *name, long long index, long wait,
		     json_t **out, long long *new_index, long *status, struct vs_error *err)
{
	*out = NULL;
	json_t *r = NULL;
	int rc =
	    regclient_slice_get(c, name, wait > 0 ? index : -1, wait, &r, new_index, status, err);
	if (rc < 0)
		return rc;
	if (!json_is_object(r)) {
		if (r)
			json_decref(r);
		return vs_error_set(err, EPROTO, "registry: slice %s: not a JSON object", name);
	}
	*out = r;
	return 0;
}

static bool sliver_ended(const json_t *s)
{
	const char *st = jstr(s, "state");
	return !strcmp(st, "exited") || !strcmp(st, "failed");
}

static bool sliver_ok(const json_t *s)
{
	return !strcmp(jstr(s, "state"), "exited") && jint(s, "exit_code", -1) == 0;
}

/* Every sliver has ended (the slice's own state says so, or each sliver's). */
static bool slice_ended(const json_t *slice)
{
	const char *st = jstr(slice, "state");
	if (!strcmp(st, "succeeded") || !strcmp(st, "failed"))
		return true;
	json_t *sl = json_object_get(slice, "slivers");
	if (!json_array_size(sl))
		return false;
	size_t i;
	json_t *s;
	json_array_foreach(sl, i, s)
	{
		if (!sliver_ended(s))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* logs: fetching and printing                                         */

/* What has been shown of one sliver: log offset, its last state, a partial line. */
struct track {
	char node[NODE_NAME_MAX + 1];
	char state[16];
	long long restarts;
	long long offset;
	char *partial;
	size_t plen;
	bool seen;
};

struct tracks {
	struct track *v;
	size_t n;
};

static struct track *track_get(struct tracks *t, const char *node)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].node, node))
			return &t->v[i];
	struct track *nv = realloc(t->v, (t->n + 1) * sizeof(*nv));
	if (!nv)
		abort();
	t->v = nv;
	struct track *k = &t->v[t->n++];
	memset(k, 0, sizeof(*k));
	snprintf(k->node, sizeof(k->node), "%s", node);
	return k;
}

static void tracks_free(struct tracks *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].partial);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/*
 * The log bytes of NODE from offset on, into *buf (malloc'd, NUL-terminated)
 * and *len. A sliver without a log yet (404) is an empty log.
 */
static int fetch_log(struct http_client *c, const char *slice, const char *node, long long offset,
		     char **buf, size_t *len, struct vs_error *err)
{
	*buf = NULL;
	*len = 0;
	cleanup_close int fd = memfd_create("slicectl-log", MFD_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "memfd_create");
	long status = 0;
	int r = regclient_log_get(c, slice, node, offset, fd, NULL, &status, err);
	if (r < 0)
		return status == 404 ? 0 : r;
	off_t n = lseek(fd, 0, SEEK_END);
	if (n < 0)
		return vs_error_sys(err, errno, "log of %s: lseek", node);
	char *b = vs_xmalloc((size_t)n + 1);
	ssize_t got = n ? pread(fd, b, (size_t)n, 0) : 0;
	if (got < 0) {
		free(b);
		return vs_error_sys(err, errno, "log of %s: read", node);
	}
	b[got] = '\0';
	*buf = b;
	*len = (size_t)got;
	return 0;
}

/*
 * Print data as lines "<prefix>line" (prefix NULL: the bytes as they are),
 * keeping an unfinished last line in t until more comes or final.
 */
static void emit(struct track *t, const char *prefix, const char *data, size_t len, bool final)
{
	if (!prefix) {
		fwrite(data, 1, len, stdout);
		fflush(stdout);
		return;
	}
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (data[i] != '\n')
			continue;
		printf("%s%.*s%.*s\n", prefix, (int)t->plen, t->partial ? t->partial : "",
		       (int)(i - start), data + start);
		t->plen = 0;
		start = i + 1;
	}
	if (start < len) {
		size_t rest = len - start;
		char *np = realloc(t->partial, t->plen + rest);
		if (!np)
			abort();
		t->partial = np;
		memcpy(t->partial + t->plen, data + start, rest);
		t->plen += rest;
	}
	if (t->plen && (final || t->plen >= LINE_MAX_BYTES)) {
		printf("%s%.*s\n", prefix, (int)t->plen, t->partial);
		t->plen = 0;
	}
	fflush(stdout);
}

/* Fetch and print what is new in a sliver's log (as the slice object announces it). */
static int pump_log(struct http_client *c, const char *slice, const json_t *sliver, struct track *t,
		    const char *prefix, bool show, bool final, struct vs_error *err)
{
	long long size = jint(sliver, "log_size", -1);
	if (size < 0 || size > t->offset) {
		cleanup_free char *buf = NULL;
		size_t len = 0;
		int r = fetch_log(c, slice, t->node, t->offset, &buf, &len, err);
		if (r < 0)
			return r;
		t->offset += (long long)len;
		if (show)
			emit(t, prefix, buf, len, false);
	}
	if (final && show && prefix && t->plen)
		emit(t, prefix, "", 0, true);
	return 0;
}

/* ------------------------------------------------------------------ */
/* submit                                                              */

static const char submit_help[] =
    "usage: slicectl submit FILE [--wait]\n\n"
    "Cluster mode: validate the experiment manifest here (docs/manifest.md), send\n"
    "its resolved form (files and policy inline) to the registry, which places one\n"
    "sliver per node; print the slice name.\n"
    "A manifest the registry refuses: every error as FILE: .path: message.\n\n"
    "  --wait, -w     follow the run: one line per sliver state change\n"
    "                 (\"[node1] running\", \"[node1] exited 0 (exited)\",\n"
    "                 \"[node2] failed: message\") and each sliver's output as\n"
    "                 \"[node1] | line\"; when every sliver has ended, exit 0 if\n"
    "                 all exited 0, else the single sliver's code or 1.\n"
    "                 Ctrl-C stops following, not the slice (exit 130).\n";

static char interrupt_msg[512];
static size_t interrupt_len;

static void on_interrupt(int sig)
{
	/* The long-poll may block for WAIT_SECS: leave from here, stdout was flushed. */
	ssize_t w = write(2, interrupt_msg, interrupt_len);
	(void)w;
	_exit(130);
}

/* One line when a sliver's state (or restart count) changes. */
static void report_state(struct track *t, const json_t *s, bool show)
{
	const char *st = jstr(s, "state");
	long long restarts = jint(s, "restarts", 0);
	if (t->seen && !strcmp(t->state, st) && t->restarts == restarts)
		return;
	bool restarted = t->seen && restarts > t->restarts;
	t->seen = true;
	snprintf(t->state, sizeof(t->state), "%s", st);
	t->restarts = restarts;
	if (!show && strcmp(st, "failed") && strcmp(st, "exited"))
		return;
	char msg[512];
	if (!strcmp(st, "exited")) {
		const char *reason = jstr(s, "reason");
		const char *why = slice_exit_reason_text(reason);
		printf("[%s] exited %lld (%s)%s%s\n", t->node, jint(s, "exit_code", -1),
		       *reason ? reason : "exited", why ? ": " : "", why ? why : "");
	} else if (!strcmp(st, "failed")) {
		const char *m = jstr(s, "message");
		printf("[%s] failed: %s\n", t->node,
		       *m ? vs_printable(m, msg, sizeof(msg)) : "(no message)");
	} else if (restarted) {
		printf("[%s] %s (restart %lld)\n", t->node, vs_printable(st, msg, sizeof(msg)),
		       restarts);
	} else {
		printf("[%s] %s\n", t->node, vs_printable(st, msg, sizeof(msg)));
	}
	fflush(stdout);
}

/* The end of --wait: a summary line and the exit code. */
static int wait_summary(const char *name, const json_t *slice)
{
	json_t *sl = json_object_get(slice, "slivers");
	size_t n = json_array_size(sl), bad = 0, i;
	json_t *s;
	char failed[1024] = "";
	size_t fl = 0;
	json_array_foreach(sl, i, s)
	{
		if (sliver_ok(s))
			continue;
		bad++;
		if (fl < sizeof(failed))
			fl += (size_t)snprintf(failed + fl, sizeof(failed) - fl, "%s%s",
					       bad > 1 ? ", " : "", jstr(s, "node"));
	}
	if (!bad) {
		printf("%s: %zu sliver%s ok (results: slicectl results %s DIR)\n", name, n,
		       n == 1 ? "" : "s", name);
		return 0;
	}
	printf("%s: %zu of %zu sliver%s failed: %s (output: slicectl logs %s)\n", name, bad, n,
	       n == 1 ? "" : "s", failed, name);
	if (n == 1) {
		s = json_array_get(sl, 0);
		long long code = jint(s, "exit_code", -1);
		if (!strcmp(jstr(s, "state"), "exited") && code > 0 && code < 256)
			return (int)code;
	}
	return 1;
}

static int wait_slice(struct ctl *ctl, struct http_client *c, const char *name)
{
	snprintf(interrupt_msg, sizeof(interrupt_msg),
		 "\nslicectl: submit %s: stopped following; the slice goes on (check later: "
		 "slicectl status %s, slicectl logs %s)\n",
		 name, name, name);
	interrupt_len = strlen(interrupt_msg);
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	bool show = !ctl->quiet;
	struct tracks tr = {0};
	long long index = 0;
	long wait = 0;
	int failures = 0, rc;
	bool log_failed = false;
	for (;;) {
		struct vs_error err;
		cleanup_json json_t *slice = NULL;
		long long ni = -1;
		long status = 0;
		if (get_slice(c, name, index, wait, &slice, &ni, &status, &err) < 0) {
			/* The registry restarting is not the end of the run. */
			if (status == 0 && ++failures < TRANSPORT_RETRIES) {
				sleep(1);
				continue;
			}
			rc = reg_fail("submit", name, status, &err);
			break;
		}
		failures = 0;
		if (ni >= 0)
			index = ni;
		else if (jint(slice, "revision", -1) >= 0)
			index = jint(slice, "revision", 0);
		bool ended = slice_ended(slice), running = false;
		json_t *sl = json_object_get(slice, "slivers"), *s;
		size_t i;
		json_array_foreach(sl, i, s)
		{
			const char *node = jstr(s, "node");
			if (!vs_node_name_valid(node))
				continue;
			struct track *t = track_get(&tr, node);
			char prefix[NODE_NAME_MAX + 8];
			snprintf(prefix, sizeof(prefix), "[%s] | ", node);
			/* A sliver that started: its state, then its output. One that
			 * ended: the output first, it came before the end. */
			bool end = sliver_ended(s);
			if (!end)
				report_state(t, s, show);
			if (pump_log(c, name, s, t, prefix, show, end, &err) < 0 && !log_failed) {
				log_failed = true;
				if (show)
					ctl_fail("submit", name, &err);
			}
			if (end)
				report_state(t, s, show);
			running = running || !strcmp(jstr(s, "state"), "running");
		}
		if (ended) {
			rc = wait_summary(name, slice);
			break;
		}
		wait = running ? WAIT_RUNNING_SECS : WAIT_SECS;
	}
	tracks_free(&tr);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	return rc;
}

/* The registry refused the manifest (422): every error, as validate prints them. */
static int print_remote_errors(const char *file, const json_t *resp)
{
	json_t *errs = json_object_get(resp, "errors"), *e;
	size_t n = json_array_size(errs), i;
	if (!n)
		return -1;
	json_array_foreach(errs, i, e)
	{
		char p[256], m[VS_ERROR_MAX];
		const char *path = jstr(e, "path");
		vs_printable(jstr(e, "message"), m, sizeof(m));
		if (*path)
			fprintf(stderr, "%s: %s: %s\n", file, vs_printable(path, p, sizeof(p)), m);
		else
			fprintf(stderr, "%s: %s\n", file, m);
	}
	fprintf(stderr, "slicectl: submit %s: %zu error%s (the registry refused the manifest)\n",
		file, n, n == 1 ? "" : "s");
	return EXIT_VSLICE;
}

static void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}

static int post_slice(struct ctl *ctl, const char *verb, const char *label, const char *slice,
		      json_t *body, bool wait, bool rm);

static int cl_submit(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, submit_help))
		return 0;
	static const struct option o[] = {{"wait", no_argument, NULL, 'w'}, {0}};
	bool wait = false;
	int c;
	while ((c = getopt_long(argc, argv, "w", o, NULL)) != -1) {
		if (c != 'w')
			return ctl_usage("submit", "unknown option");
		wait = true;
	}
	if (optind + 1 != argc)
		return ctl_usage("submit",
				 optind >= argc ? "missing manifest FILE" : "one FILE only");
	const char *file = argv[optind];
	__attribute__((cleanup(manifest_freep))) struct manifest *m = NULL;
	int r = ctl_load_manifest(ctl, "submit", file, &m, NULL);
	if (r)
		return r;
	struct vs_error err;
	cleanup_json json_t *body = manifest_resolve(m, &err);
	if (!body)
		return ctl_fail("submit", file, &err);
	return post_slice(ctl, "submit", file, m->name, body, wait, false);
}

/* POST a resolved manifest, print the slice name, and with wait follow the
 * slice to its end (and with rm delete it then). label names the manifest
 * in the registry's error lines. Returns the exit code. */
static int post_slice(struct ctl *ctl, const char *verb, const char *label, const char *slice,
		      json_t *body, bool wait, bool rm)
{
	struct vs_error err;
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, verb, &hc);
	if (r)
		return r;
	cleanup_json json_t *resp = NULL;
	long status = 0;
	if (regclient_slice_create(&hc, body, &resp, &status, &err) < 0) {
		if (status == 422 && (r = print_remote_errors(label, resp)) > 0)
			return r;
		return reg_fail(verb, slice, status, &err);
	}
	const char *name = jstr(resp, "name");
	if (!*name)
		name = slice;
	if (!vs_name_valid(name)) {
		vs_error_set(&err, EPROTO, "registry answered with an invalid slice name");
		return ctl_fail(verb, slice, &err);
	}
	printf("%s\n", name);
	fflush(stdout);
	if (!wait)
		return 0;
	r = wait_slice(ctl, &hc, name);
	if (rm) {
		if (regclient_slice_delete(&hc, name, &status, &err) < 0)
			reg_fail(verb, name, status, &err);
	}
	return r;
}

int cluster_submit_resolved(struct ctl *ctl, const char *verb, const char *slice, json_t *manifest,
			    bool wait, bool rm)
{
	/* Checked here first, with the same parser as the registry. */
	cleanup_free char *text = json_dumps(manifest, JSON_COMPACT);
	struct manifest_errors errs = {0};
	struct manifest *m = NULL;
	if (!text || manifest_parse(text, strlen(text), NULL, &m, &errs) < 0) {
		manifest_errors_print(&errs, stderr, slice);
		manifest_errors_free(&errs);
		return EXIT_VSLICE;
	}
	manifest_free(m);
	manifest_errors_free(&errs);
	return post_slice(ctl, verb, slice, slice, manifest, wait, rm);
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static const char status_help[] =
    "usage: slicectl status NAME\n\n"
    "Cluster mode: per sliver of the slice, from the registry:\n"
    "  NODE STATE EXIT REASON RESTARTS STARTED FINISHED\n"
    "STATE is pending, creating, running, exited, failed or lost; EXIT and REASON\n"
    "(exited, signal, timeout, lifetime) once it exited; times are UTC, - when\n"
    "not yet. Why a sliver failed is printed on stderr. --json for JSON.\n";

static int cl_status(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, status_help))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage("status", argc < 2   ? "missing slice NAME"
					   : argc > 2 ? "one NAME only"
						      : "unknown option");
	const char *name = argv[1];
	int r = check_slice_name("status", name);
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "status", &hc)))
		return r;
	cleanup_json json_t *slice = NULL;
	struct vs_error err;
	long status = 0;
	if (get_slice(&hc, name, -1, 0, &slice, NULL, &status, &err) < 0)
		return reg_fail("status", name, status, &err);
	json_t *sl = json_object_get(slice, "slivers"), *s;
	size_t i;
	if (ctl->json) {
		cleanup_json json_t *arr = json_array();
		json_array_foreach(sl, i, s)
		{
			char s1[32], s2[32];
			bool exited = !strcmp(jstr(s, "state"), "exited");
			long long st = jint(s, "started", 0), fin = jint(s, "finished", 0);
			json_array_append_new(
			    arr,
			    json_pack(
				"{s:s, s:s, s:o, s:s?, s:I, s:o, s:o, s:s, s:s, s:I}", "node",
				jstr(s, "node"), "state", jstr(s, "state"), "exit_code",
				exited ? json_integer(jint(s, "exit_code", -1)) : json_null(),
				"exit_reason",
				exited && *jstr(s, "reason") ? jstr(s, "reason") : NULL, "restarts",
				(json_int_t)jint(s, "restarts", 0), "started",
				st > 0 ? json_string(fmt_time(st, s1, sizeof(s1))) : json_null(),
				"finished",
				fin > 0 ? json_string(fmt_time(fin, s2, sizeof(s2))) : json_null(),
				"message", jstr(s, "message"), "results", jstr(s, "results"),
				"log_size", (json_int_t)jint(s, "log_size", 0)));
		}
		cleanup_json json_t *j = json_pack("{s:s, s:s, s:O}", "slice", name, "state",
						   jstr(slice, "state"), "slivers", arr);
		print_json(j);
		return 0;
	}
	int w = 8;
	json_array_foreach(sl, i, s)
	{
		int len = (int)strlen(jstr(s, "node"));
		w = len > w && len <= NODE_NAME_MAX ? len : w;
	}
	printf("%-*s %-8s %-5s %-9s %-8s %-20s %s\n", w, "NODE", "STATE", "EXIT", "REASON",
	       "RESTARTS", "STARTED", "FINISHED");
	json_array_foreach(sl, i, s)
	{
		char exitc[24] = "-", s1[32], s2[32], node[80], state[32], reason[32];
		bool exited = !strcmp(jstr(s, "state"), "exited");
		if (exited)
			snprintf(exitc, sizeof(exitc), "%lld", jint(s, "exit_code", -1));
		const char *rs = exited ? jstr(s, "reason") : "";
		printf("%-*s %-8s %-5s %-9s %-8lld %-20s %s\n", w,
		       vs_printable(jstr(s, "node"), node, sizeof(node)),
		       vs_printable(jstr(s, "state"), state, sizeof(state)), exitc,
		       *rs ? vs_printable(rs, reason, sizeof(reason)) : "-", jint(s, "restarts", 0),
		       fmt_time(jint(s, "started", 0), s1, sizeof(s1)),
		       fmt_time(jint(s, "finished", 0), s2, sizeof(s2)));
	}
	fflush(stdout);
	json_array_foreach(sl, i, s)
	{
		char node[80], m[VS_ERROR_MAX];
		if (!strcmp(jstr(s, "state"), "failed"))
			fprintf(stderr, "slicectl: status %s: [%s] failed: %s\n", name,
				vs_printable(jstr(s, "node"), node, sizeof(node)),
				*jstr(s, "message") ? vs_printable(jstr(s, "message"), m, sizeof(m))
						    : "(no message)");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* logs                                                                */

static const char logs_help[] =
    "usage: slicectl logs NAME [--node NODE] [-f]\n\n"
    "Cluster mode: the output (stdout and stderr) of each sliver, from the\n"
    "registry. With several slivers and no --node, each line is prefixed with\n"
    "\"[node] \".\n"
    "  --node NODE     only the sliver on NODE (no prefix)\n"
    "  -f, --follow    keep printing (every second) until every sliver has ended;\n"
    "                  with --node, live from that node's manager (a ticket from\n"
    "                  the registry; an https:// node verified against --ca)\n";

static int cl_logs(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, logs_help))
		return 0;
	static const struct option o[] = {
	    {"follow", no_argument, NULL, 'f'}, {"node", required_argument, NULL, 'n'}, {0}};
	bool follow = false;
	const char *only = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "fn:", o, NULL)) != -1) {
		if (c == 'f')
			follow = true;
		else if (c == 'n')
			only = optarg;
		else
			return ctl_usage("logs", "unknown option");
	}
	if (optind + 1 != argc)
		return ctl_usage("logs", optind >= argc ? "missing slice NAME" : "one NAME only");
	const char *name = argv[optind];
	int r = check_slice_name("logs", name);
	if (r || (only && (r = check_node_name("logs", only))))
		return r;
	/* One sliver, followed: from its node, live (remote.c). */
	if (follow && only)
		return cluster_logs_follow(ctl, name, only);
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "logs", &hc)))
		return r;
	struct tracks tr = {0};
	int failures = 0;
	bool first = true;
	r = 0;
	for (;;) {
		struct vs_error err;
		cleanup_json json_t *slice = NULL;
		long status = 0;
		if (get_slice(&hc, name, -1, 0, &slice, NULL, &status, &err) < 0) {
			if (!first && follow && status == 0 && ++failures < TRANSPORT_RETRIES) {
				sleep(1);
				continue;
			}
			r = reg_fail("logs", name, status, &err);
			break;
		}
		failures = 0;
		json_t *sl = json_object_get(slice, "slivers"), *s;
		size_t i, shown = 0;
		if (first && only) {
			bool found = false;
			json_array_foreach(sl, i, s)
			{
				found = found || !strcmp(jstr(s, "node"), only);
			}
			if (!found) {
				vs_error_set(&err, ENOENT, "no sliver on node %s", only);
				r = ctl_fail("logs", name, &err);
				break;
			}
		}
		bool many = !only && json_array_size(sl) > 1;
		bool ended = !follow || slice_ended(slice);
		json_array_foreach(sl, i, s)
		{
			const char *node = jstr(s, "node");
			if (!vs_node_name_valid(node) || (only && strcmp(node, only)))
				continue;
			struct track *t = track_get(&tr, node);
			char prefix[NODE_NAME_MAX + 8];
			snprintf(prefix, sizeof(prefix), "[%s] ", node);
			shown++;
			if (pump_log(&hc, name, s, t, many ? prefix : NULL, true, ended, &err) <
			    0) {
				ctl_fail("logs", name, &err);
				r = EXIT_VSLICE;
			}
		}
		first = false;
		if (ended || r)
			break;
		sleep(1);
	}
	tracks_free(&tr);
	return r;
}

/* ------------------------------------------------------------------ */
/* results                                                             */

static const char results_help[] =
    "usage: slicectl results NAME DIR\n\n"
    "Cluster mode: download each sliver's result files (the manifest's \"results\",\n"
    "as the node uploaded them) from the registry into DIR/<node>/<path>.\n"
    "Each file is verified against the sha256 of the registry's listing and of\n"
    "the download; \"SHA256  node/path\" is printed and listed in DIR/SHA256SUMS\n"
    "(check: cd DIR && sha256sum -c SHA256SUMS). Paths the run did not write, and\n"
    "slivers whose results are not complete yet, are reported on stderr.\n"
    "Exit 125 if a copy failed, a result path is missing (as in local mode) or no\n"
    "sliver's results are complete; the files that could be copied are kept.\n";

struct results_ctx {
	struct http_client *c;
	const char *name;
	const char *dir;
	int dfd;
	FILE *sums;
	size_t files, failed, missing, incomplete, complete;
};

static bool sha_hex_ok(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* Download one listed file into node_fd/<path without '/'>; verify it. */
static int fetch_result(struct results_ctx *rc, const char *node, int node_fd, const json_t *f,
			struct vs_error *err)
{
	const char *path = jstr(f, "path"), *want = jstr(f, "sha256");
	const char *why = *path ? manifest_check_slice_path(path) : "is empty";
	char shown[256];
	if (why)
		return vs_error_set(err, EINVAL, "[%s] \"%s\": %s (refused)", node,
				    vs_printable(path, shown, sizeof(shown)), why);
	if (!sha_hex_ok(want))
		return vs_error_set(err, EPROTO, "[%s] %s: the listing has no valid sha256", node,
				    path);
	const char *rel = path + 1;
	cleanup_free char *parent = vs_xstrdup(rel);
	char *slash = strrchr(parent, '/');
	const char *leaf = rel;
	cleanup_close int pfd = -1;
	if (slash) {
		*slash = '\0';
		leaf = rel + (slash - parent) + 1;
		pfd = vs_mkdirs_at(node_fd, parent, 0755, err);
		if (pfd < 0)
			return vs_error_wrap(
			    err, "[%s] %s%s", node, path,
			    err->code == ENOTDIR ? " (a symlink or file in the way)" : "");
	} else {
		pfd = fcntl(node_fd, F_DUPFD_CLOEXEC, 3);
		if (pfd < 0)
			return vs_error_sys(err, errno, "dup");
	}
	/* Replace an old copy; never write through a link. */
	if (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT)
		return vs_error_sys(err, errno, "[%s] %s: remove old copy", node, path);
	mode_t mode = (mode_t)(jint(f, "mode", 0644) & 0755) | 0600;
	cleanup_close int fd =
	    openat(pfd, leaf, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return vs_error_sys(err, errno, "[%s] %s: create", node, path);
	char hdr[VS_SHA256_HEX];
	int r = regclient_result_get(rc->c, rc->name, node, rel, fd, hdr, NULL, err);
	char got[VS_SHA256_HEX];
	if (r == 0 && (r = vs_sha256_fd(fd, got)) < 0)
		vs_error_sys(err, -r, "[%s] %s: re-read", node, path);
	else if (r == 0 && strcmp(got, want))
		r = vs_error_set(err, EIO, "[%s] %s: sha256 %s, the listing says %s", node, path,
				 got, want);
	else if (r == 0 && *hdr && strcasecmp(hdr, got))
		r = vs_error_set(err, EIO, "[%s] %s: sha256 %s, the download's header says %.64s",
				 node, path, got, vs_printable(hdr, shown, sizeof(shown)));
	else if (r == 0 && fsync(fd) < 0)
		r = vs_error_sys(err, errno, "[%s] %s: fsync", node, path);
	else if (r < 0)
		vs_error_wrap(err, "[%s] %s", node, path);
	if (r < 0) {
		unlinkat(pfd, leaf, 0);
		return r;
	}
	printf("%s  %s/%s\n", got, node, rel);
	if (rc->sums)
		fprintf(rc->sums, "%s  %s/%s\n", got, node, rel);
	rc->files++;
	return 0;
}

static void results_sliver(struct results_ctx *rc, const json_t *s)
{
	struct vs_error err;
	const char *node = jstr(s, "node");
	char shown[80];
	if (!vs_node_name_valid(node)) {
		fprintf(stderr, "slicectl: results %s: \"%s\" is not a node name (refused)\n",
			rc->name, vs_printable(node, shown, sizeof(shown)));
		rc->failed++;
		return;
	}
	cleanup_json json_t *list = NULL;
	long status = 0;
	if (regclient_results_list(rc->c, rc->name, node, &list, &status, &err) < 0) {
		reg_fail("results", rc->name, status, &err);
		rc->failed++;
		return;
	}
	if (!json_is_true(json_object_get(list, "complete"))) {
		fprintf(stderr,
			"slicectl: results %s: [%s] results not complete yet (sliver %s; try "
			"again later)\n",
			rc->name, node, vs_printable(jstr(s, "state"), shown, sizeof(shown)));
		rc->incomplete++;
		return;
	}
	rc->complete++;
	int node_fd = vs_mkdirs_at(rc->dfd, node, 0755, &err);
	if (node_fd < 0) {
		vs_error_wrap(&err, "[%s] %s/%s%s", node, rc->dir, node,
			      err.code == ENOTDIR ? " (a symlink or file in the way)" : "");
		ctl_fail("results", rc->name, &err);
		rc->failed++;
		return;
	}
	json_t *files = json_object_get(list, "files"), *f;
	size_t i;
	json_array_foreach(files, i, f)
	{
		if (fetch_result(rc, node, node_fd, f, &err) < 0) {
			ctl_fail("results", rc->name, &err);
			rc->failed++;
		}
	}
	json_array_foreach(json_object_get(list, "missing"), i, f)
	{
		char p[256];
		fprintf(
		    stderr, "slicectl: results %s: [%s] %s: missing (the run did not write it)\n",
		    rc->name, node,
		    vs_printable(json_string_value(f) ? json_string_value(f) : "?", p, sizeof(p)));
		rc->missing++;
	}
	close(node_fd);
}

static int cl_results(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, results_help))
		return 0;
	int c;
	while ((c = getopt(argc, argv, "+")) != -1)
		return ctl_usage("results", "unknown option");
	if (argc - optind != 2)
		return ctl_usage("results", argc - optind < 1 ? "missing slice NAME"
					    : argc - optind < 2
						? "missing DIR"
						: "cluster mode takes NAME DIR only");
	const char *name = argv[optind], *dir = argv[optind + 1];
	int r = check_slice_name("results", name);
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "results", &hc)))
		return r;
	struct vs_error err;
	cleanup_json json_t *slice = NULL;
	long status = 0;
	if (get_slice(&hc, name, -1, 0, &slice, NULL, &status, &err) < 0)
		return reg_fail("results", name, status, &err);
	if (vs_mkdir_p(dir, 0755, &err) < 0)
		return ctl_fail("results", name, &err);
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		vs_error_sys(&err, errno, "%s", dir);
		return ctl_fail("results", name, &err);
	}
	struct results_ctx rc = {.c = &hc, .name = name, .dir = dir, .dfd = dfd};
	int sfd =
	    openat(dfd, "SHA256SUMS", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	rc.sums = sfd >= 0 ? fdopen(sfd, "w") : NULL;
	if (!rc.sums) {
		vs_error_sys(&err, errno, "%s/SHA256SUMS", dir);
		if (sfd >= 0)
			close(sfd);
		return ctl_fail("results", name, &err);
	}
	json_t *sl = json_object_get(slice, "slivers"), *s;
	size_t i;
	json_array_foreach(sl, i, s)
	{
		results_sliver(&rc, s);
	}
	fflush(stdout);
	if (fclose(rc.sums) != 0) {
		vs_error_sys(&err, errno, "%s/SHA256SUMS", dir);
		ctl_fail("results", name, &err);
		rc.failed++;
	}
	if (!rc.complete) {
		fprintf(stderr, "slicectl: results %s: no sliver's results are complete yet%s\n",
			name, json_array_size(sl) ? " (slicectl status NAME)" : " (no slivers)");
		return EXIT_VSLICE;
	}
	if (!ctl->quiet) {
		char extra[160] = "";
		size_t el = 0;
		if (rc.failed)
			el += (size_t)snprintf(extra + el, sizeof(extra) - el, ", %zu failed",
					       rc.failed);
		if (rc.missing)
			el += (size_t)snprintf(extra + el, sizeof(extra) - el, ", %zu missing",
					       rc.missing);
		if (rc.incomplete)
			snprintf(extra + el, sizeof(extra) - el, ", %zu sliver%s not complete yet",
				 rc.incomplete, rc.incomplete == 1 ? "" : "s");
		fprintf(stderr,
			"slicectl: results %s: %zu file%s from %zu sliver%s copied to %s%s\n", name,
			rc.files, rc.files == 1 ? "" : "s", rc.complete,
			rc.complete == 1 ? "" : "s", dir, extra);
	}
	return rc.failed || rc.missing ? EXIT_VSLICE : 0;
}

/* ------------------------------------------------------------------ */
/* list, show, destroy, renew                                          */

/*
 * What the listing verbs (list, nodes) share: [-q], no arguments, one call.
 * With --json the array is printed here and *arr is NULL; else *arr is the
 * answer's `key` array (owned by *resp). Returns 0 or an exit code.
 */
typedef int (*list_call_fn)(struct http_client *c, json_t **resp, long *status,
			    struct vs_error *err);

static int cl_get_list(struct ctl *ctl, int argc, char **argv, const char *verb, list_call_fn call,
		       const char *key, bool *quiet, json_t **resp, json_t **arr)
{
	*quiet = ctl->quiet;
	*arr = NULL;
	int c;
	while ((c = getopt(argc, argv, "q")) != -1) {
		if (c != 'q')
			return ctl_usage(verb, "unknown option");
		*quiet = true;
	}
	if (optind < argc)
		return ctl_usage(verb, "unexpected \"%s\"", argv[optind]);
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, verb, &hc);
	if (r)
		return r;
	struct vs_error err;
	long status = 0;
	if ((r = reg_done(call(&hc, resp, &status, &err), verb, NULL, &status, &err)))
		return r;
	json_t *a = json_object_get(*resp, key);
	if (ctl->json) {
		cleanup_json json_t *empty = json_array();
		print_json(a ? a : empty);
		return 0;
	}
	*arr = a; /* json_array_foreach over NULL does nothing */
	return 0;
}

static const char list_help[] = "usage: slicectl list [-q]\n\n"
				"Cluster mode: the slices the registry shows this token (a user's "
				"own; admin: all):\n"
				"  NAME STATE NODES OWNER EXPIRES\n"
				"NODES is the slivers' nodes, comma-separated; EXPIRES is UTC.\n"
				"  -q    names only\n";

static int cl_list(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, list_help))
		return 0;
	bool quiet;
	cleanup_json json_t *resp = NULL;
	json_t *arr, *s;
	int r = cl_get_list(ctl, argc, argv, "list", regclient_slice_list, "slices", &quiet, &resp,
			    &arr);
	if (r || ctl->json)
		return r;
	size_t i;
	if (!quiet)
		printf("%-20s %-9s %-24s %-12s %s\n", "NAME", "STATE", "NODES", "OWNER", "EXPIRES");
	json_array_foreach(arr, i, s)
	{
		char name[80], state[32], owner[80], exp[32];
		vs_printable(jstr(s, "name"), name, sizeof(name));
		if (quiet) {
			printf("%s\n", name);
			continue;
		}
		char nodes[512] = "";
		size_t nl = 0, k;
		json_t *sv;
		json_array_foreach(json_object_get(s, "slivers"), k, sv)
		{
			if (nl < sizeof(nodes))
				nl += (size_t)snprintf(nodes + nl, sizeof(nodes) - nl, "%s%s",
						       k ? "," : "", jstr(sv, "node"));
		}
		char nshown[512];
		printf("%-20s %-9s %-24s %-12s %s\n", name,
		       vs_printable(jstr(s, "state"), state, sizeof(state)),
		       nl ? vs_printable(nodes, nshown, sizeof(nshown)) : "-",
		       *jstr(s, "owner") ? vs_printable(jstr(s, "owner"), owner, sizeof(owner))
					 : "-",
		       fmt_time(jint(s, "expires", 0), exp, sizeof(exp)));
	}
	return 0;
}

static const char show_help[] =
    "usage: slicectl show NAME\n\n"
    "Cluster mode: the registry's slice object: owner, state, times (UTC, ISO 8601,\n"
    "and relative to now), nodes, one line per sliver, the manifest. --json: the\n"
    "object as the registry sends it (times in epoch seconds).\n";

/* "2026-12-04T23:40:00Z (5m ago)" / "(in 2h)"; "-" for none. */
static const char *fmt_when(long long t, char *buf, size_t len)
{
	char iso[32], d[32];
	if (t <= 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	long long now = (long long)time(NULL);
	vs_format_duration((uint64_t)(t > now ? t - now : now - t), d, sizeof(d));
	snprintf(buf, len, "%s (%s%s%s)", fmt_time(t, iso, sizeof(iso)), t > now ? "in " : "", d,
		 t > now ? "" : " ago");
	return buf;
}

/* show without --json: the object for a person. */
static void print_slice(json_t *slice)
{
	char w[96], v[256];
	printf("%-14s %s\n", "name", vs_printable(jstr(slice, "name"), v, sizeof(v)));
	printf("%-14s %s\n", "owner", vs_printable(jstr(slice, "owner"), v, sizeof(v)));
	printf("%-14s %s\n", "state", vs_printable(jstr(slice, "state"), v, sizeof(v)));
	printf("%-14s %s\n", "created", fmt_when(jint(slice, "created", 0), w, sizeof(w)));
	printf("%-14s %s\n", "expires", fmt_when(jint(slice, "expires", 0), w, sizeof(w)));
	printf("%-14s", "nodes");
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(slice, "nodes"), i, e) printf(
	    " %s", vs_printable(json_string_value(e) ? json_string_value(e) : "?", v, sizeof(v)));
	printf("\n");
	json_array_foreach(json_object_get(slice, "slivers"), i, e)
	{
		char node[80], st[32], rs[32], w2[96];
		bool exited = !strcmp(jstr(e, "state"), "exited");
		printf("sliver %-7s %s", vs_printable(jstr(e, "node"), node, sizeof(node)),
		       vs_printable(jstr(e, "state"), st, sizeof(st)));
		if (exited)
			printf(" %lld (%s)", jint(e, "exit_code", -1),
			       vs_printable(jstr(e, "reason"), rs, sizeof(rs)));
		printf(", started %s, finished %s\n", fmt_when(jint(e, "started", 0), w, sizeof(w)),
		       fmt_when(jint(e, "finished", 0), w2, sizeof(w2)));
	}
	cleanup_free char *m =
	    json_dumps(json_object_get(slice, "manifest"), JSON_COMPACT | JSON_ENCODE_ANY);
	char shown[VS_ERROR_MAX];
	if (m && strlen(m) >= sizeof(shown) / 4) /* escaped, it might not fit */
		printf("%-14s %zu bytes (slicectl --json show NAME)\n", "manifest", strlen(m));
	else
		printf("%-14s %s\n", "manifest", m ? vs_printable(m, shown, sizeof(shown)) : "-");
}

static int cl_show(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, show_help))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage("show", argc < 2   ? "missing slice NAME"
					 : argc > 2 ? "one NAME only"
						    : "unknown option");
	int r = check_slice_name("show", argv[1]);
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "show", &hc)))
		return r;
	cleanup_json json_t *slice = NULL;
	struct vs_error err;
	long status = 0;
	if (get_slice(&hc, argv[1], -1, 0, &slice, NULL, &status, &err) < 0)
		return reg_fail("show", argv[1], status, &err);
	if (ctl->json)
		print_json(slice);
	else
		print_slice(slice);
	return 0;
}

static const char destroy_help[] =
    "usage: slicectl destroy NAME...\n\n"
    "Cluster mode: delete the slice from the registry; node managers destroy its\n"
    "slivers on their next poll. --force is accepted and changes nothing.\n";

static int cl_destroy(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, destroy_help))
		return 0;
	static const struct option o[] = {{"force", no_argument, NULL, 'f'}, {0}};
	int c;
	while ((c = getopt_long(argc, argv, "f", o, NULL)) != -1)
		if (c != 'f')
			return ctl_usage("destroy", "unknown option");
	if (optind >= argc)
		return ctl_usage("destroy", "missing slice NAME");
	for (int i = optind; i < argc; i++) {
		int r = check_slice_name("destroy", argv[i]);
		if (r)
			return r;
	}
	cleanup_http struct http_client hc;
	int rc = cluster_connect(ctl, "destroy", &hc);
	if (rc)
		return rc;
	for (int i = optind; i < argc; i++) {
		struct vs_error err;
		long status = 0;
		if (reg_done(regclient_slice_delete(&hc, argv[i], &status, &err), "destroy",
			     argv[i], &status, &err))
			rc = EXIT_VSLICE;
	}
	return rc;
}

static const char renew_help[] =
    "usage: slicectl renew NAME --lifetime D\n\n"
    "The slice now expires D from now (e.g. 2h, 14d): the registry's record\n"
    "and, on every node, the running sliver's PID 1.\n"
    "Prints \"NAME: expires TIME\" (UTC); --json: the slice object.\n";

static int cl_renew(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, renew_help))
		return 0;
	static const struct option o[] = {{"lifetime", required_argument, NULL, 'l'}, {0}};
	const char *lifetime = NULL;
	struct vs_error err;
	int c;
	while ((c = getopt_long(argc, argv, "l:", o, NULL)) != -1) {
		if (c != 'l')
			return ctl_usage("renew", "unknown option");
		uint64_t secs = 0;
		if (vs_parse_duration(optarg, &secs, &err) < 0)
			return ctl_usage("renew", "--lifetime: %s", err.msg);
		if (secs == 0)
			return ctl_usage("renew", "--lifetime: must be more than 0");
		lifetime = optarg;
	}
	if (optind + 1 != argc)
		return ctl_usage("renew", optind >= argc ? "missing slice NAME" : "one NAME only");
	if (!lifetime)
		return ctl_usage("renew", "missing --lifetime D (e.g. 14d)");
	const char *name = argv[optind];
	int r = check_slice_name("renew", name);
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "renew", &hc)))
		return r;
	cleanup_json json_t *resp = NULL;
	long status = 0;
	if ((r = reg_done(regclient_slice_renew(&hc, name, lifetime, &resp, &status, &err), "renew",
			  name, &status, &err)))
		return r;
	char t[32];
	if (ctl->json)
		print_json(resp);
	else if (!ctl->quiet)
		printf("%s: expires %s\n", name, fmt_time(jint(resp, "expires", 0), t, sizeof(t)));
	return 0;
}

/* ------------------------------------------------------------------ */
/* nodes, node drain|undrain                                           */

static const char nodes_help[] = "usage: slicectl nodes\n\n"
				 "Cluster mode: the registered nodes:\n"
				 "  NAME STATE CPUS MEMORY SLIVERS LAST-SEEN\n"
				 "STATE is ready, unknown (not seen for 3 heartbeats) or drained; "
				 "LAST-SEEN is UTC.\n"
				 "--json for JSON, -q for names only.\n";

static int cl_nodes(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, nodes_help))
		return 0;
	bool quiet;
	cleanup_json json_t *resp = NULL;
	json_t *arr, *n;
	int r = cl_get_list(ctl, argc, argv, "nodes", regclient_nodes_list, "nodes", &quiet, &resp,
			    &arr);
	if (r || ctl->json)
		return r;
	size_t i;
	if (!quiet)
		printf("%-20s %-8s %-5s %-8s %-7s %s\n", "NAME", "STATE", "CPUS", "MEMORY",
		       "SLIVERS", "LAST-SEEN");
	json_array_foreach(arr, i, n)
	{
		char name[80], state[32], cpus[32] = "-", mem[32] = "-", seen[32];
		vs_printable(jstr(n, "name"), name, sizeof(name));
		if (quiet) {
			printf("%s\n", name);
			continue;
		}
		json_t *cv = json_object_get(n, "cpus");
		if (json_is_number(cv))
			snprintf(cpus, sizeof(cpus), "%g", json_number_value(cv));
		long long m = jint(n, "memory", 0);
		if (m >= (1LL << 30))
			snprintf(mem, sizeof(mem), "%.1fG", (double)m / (1 << 30));
		else if (m > 0)
			snprintf(mem, sizeof(mem), "%lldM", m >> 20);
		json_t *sv = json_object_get(n, "slivers");
		long long slivers =
		    json_is_array(sv) ? (long long)json_array_size(sv) : jint(n, "slivers", 0);
		printf("%-20s %-8s %-5s %-8s %-7lld %s\n", name,
		       vs_printable(jstr(n, "state"), state, sizeof(state)), cpus, mem, slivers,
		       fmt_time(jint(n, "last_seen", 0), seen, sizeof(seen)));
	}
	return 0;
}

static const char node_help[] =
    "usage: slicectl node drain NODE [--migrate [--parallel N]] | undrain NODE | reset NODE\n\n"
    "Cluster mode (admin): a drained node keeps its slivers but gets no new ones.\n"
    "Prints \"NODE STATE\"; --json: the node object.\n"
    "drain --migrate then moves every slice with a sliver there to other nodes\n"
    "(cold; the registry picks each target by capacity), N at a time (default 3),\n"
    "a line per slice, then the slices that could not move with the reason.\n"
    "Exit 0 only if every one moved (finished slivers stay: nothing to move).\n"
    "reset revokes the token that holds the node's name, so that a new node token\n"
    "can enroll under it (a reinstalled machine); the node keeps its slivers.\n"
    "Prints \"NODE reset (N tokens revoked)\". A name held by a token is never\n"
    "taken over otherwise.\n";

static int cl_node(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, node_help))
		return 0;
	if (argc < 2)
		return ctl_usage("node", "missing drain, undrain or reset");
	const char *op = argv[1];
	if (strcmp(op, "drain") && strcmp(op, "undrain") && strcmp(op, "reset"))
		return ctl_usage("node", "unknown subcommand \"%s\" (drain, undrain or reset)", op);
	bool migrate = false;
	unsigned parallel = 3;
	for (int i = 3; i < argc && !strcmp(op, "drain"); i++) {
		char *end;
		if (!strcmp(argv[i], "--migrate")) {
			migrate = true;
		} else if (!strcmp(argv[i], "--parallel") && i + 1 < argc) {
			errno = 0;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (!*argv[i] || *end || errno || v == 0 || v > 64)
				return ctl_usage(
				    "node", "--parallel: \"%s\" is not a count (1 to 64)", argv[i]);
			parallel = (unsigned)v;
		} else {
			return ctl_usage(
			    "node", "drain: unexpected \"%s\" (--migrate, --parallel N)", argv[i]);
		}
	}
	if (argc < 3 || (argc > 3 && strcmp(op, "drain")))
		return ctl_usage("node", argc < 3 ? "%s: missing NODE" : "%s: one NODE only", op);
	const char *node = argv[2];
	int r = check_node_name("node", node);
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "node", &hc)))
		return r;
	cleanup_json json_t *resp = NULL;
	char obj[96];
	snprintf(obj, sizeof(obj), "%s %s", op, node);
	struct vs_error err;
	long status = 0;
	int cr = !strcmp(op, "reset")
		     ? regclient_node_reset(&hc, node, &resp, &status, &err)
		     : regclient_node_drain(&hc, node, !strcmp(op, "drain"), &resp, &status, &err);
	if ((r = reg_done(cr, "node", obj, &status, &err)))
		return r;
	char state[32];
	if (ctl->json && resp)
		print_json(resp);
	else if (!ctl->quiet && !strcmp(op, "reset"))
		printf("%s reset (%lld token%s revoked)\n", node, jint(resp, "revoked", 0),
		       jint(resp, "revoked", 0) == 1 ? "" : "s");
	else if (!ctl->quiet)
		printf("%s %s\n", node,
		       *jstr(resp, "state")
			   ? vs_printable(jstr(resp, "state"), state, sizeof(state))
			   : (!strcmp(op, "drain") ? "drained" : "undrained"));
	fflush(stdout);
	return migrate ? cluster_drain_migrate(ctl, &hc, node, parallel) : 0;
}

/* ------------------------------------------------------------------ */
/* token create, user create                                           */

static const char token_help[] =
    "usage: slicectl token create --role node|admin\n"
    "       slicectl token create --role node --node NAME\n"
    "       slicectl token create --user NAME\n\n"
    "Cluster mode (admin): a new token, printed alone on stdout (it is not shown\n"
    "again; the registry keeps only its hash).\n"
    "  --role node     an enrollment token for one node manager (vslice-nodemgr):\n"
    "                  it takes the first free node name it registers, and keeps it\n"
    "  --node NAME     ... made for node NAME only (refused while another token\n"
    "                  holds NAME: slicectl node reset NAME first)\n"
    "  --role admin    another admin token\n"
    "  --user NAME     another token for an existing user\n";

static int print_token(struct ctl *ctl, const char *verb, const json_t *resp)
{
	const char *tok = jstr(resp, "token");
	if (!*tok) {
		struct vs_error err;
		vs_error_set(&err, EPROTO, "the registry's answer has no token");
		return ctl_fail(verb, NULL, &err);
	}
	if (ctl->json)
		print_json(resp);
	else
		printf("%s\n", tok);
	return 0;
}

static int cl_token(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, token_help))
		return 0;
	static const struct option o[] = {{"role", required_argument, NULL, 'r'},
					  {"user", required_argument, NULL, 'u'},
					  {"node", required_argument, NULL, 'n'},
					  {0}};
	const char *role = NULL, *user = NULL, *node = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "r:u:", o, NULL)) != -1) {
		if (c == 'r')
			role = optarg;
		else if (c == 'u')
			user = optarg;
		else if (c == 'n')
			node = optarg;
		else
			return ctl_usage("token", "unknown option");
	}
	if (optind >= argc || strcmp(argv[optind], "create"))
		return ctl_usage("token",
				 optind >= argc ? "missing create" : "unknown subcommand \"%s\"",
				 argv[optind]);
	if (optind + 1 < argc)
		return ctl_usage("token", "unexpected \"%s\"", argv[optind + 1]);
	if (user && role && strcmp(role, "user"))
		return ctl_usage("token", "--user makes a user token: no --role %s", role);
	if (!user && !role)
		return ctl_usage("token", "missing --role node|admin (or --user NAME)");
	if (!user && strcmp(role, "node") && strcmp(role, "admin"))
		return ctl_usage("token",
				 "--role: \"%s\" is not node or admin (a user token: "
				 "--user NAME)",
				 role);
	if (user && !vs_name_valid(user))
		return ctl_usage("token", "--user: invalid user name \"%s\"", user);
	if (node && (user || strcmp(role, "node")))
		return ctl_usage("token", "--node: only with --role node");
	int r = node ? check_node_name("token", node) : 0;
	if (r)
		return r;
	cleanup_http struct http_client hc;
	if ((r = cluster_connect(ctl, "token", &hc)))
		return r;
	cleanup_json json_t *resp = NULL;
	struct vs_error err;
	long status = 0;
	/* --user makes a user token: the role ("user", if given) is implied. */
	if ((r = reg_done(
		 regclient_token_create(&hc, user, user ? NULL : role, node, &resp, &status, &err),
		 "token", user ? user : node, &status, &err)))
		return r;
	return print_token(ctl, "token", resp);
}

static const char user_help[] =
    "usage: slicectl user create NAME\n\n"
    "Cluster mode (admin): create a user (names like slices) and print their first\n"
    "token alone on stdout. More tokens: slicectl token create --user NAME.\n";

static int cl_user(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, user_help))
		return 0;
	if (argc < 2 || strcmp(argv[1], "create"))
		return ctl_usage("user", argc < 2 ? "missing create" : "unknown subcommand \"%s\"",
				 argv[1]);
	if (argc != 3 || argv[2][0] == '-')
		return ctl_usage("user", argc < 3   ? "create: missing user NAME"
					 : argc > 3 ? "create: one NAME only"
						    : "unknown option");
	const char *name = argv[2];
	if (!vs_name_valid(name))
		return ctl_usage("user", "invalid user name \"%s\" ([a-z][a-z0-9_-]{0,62})", name);
	cleanup_http struct http_client hc;
	int r = cluster_connect(ctl, "user", &hc);
	if (r)
		return r;
	cleanup_json json_t *resp = NULL;
	struct vs_error err;
	long status = 0;
	if ((r = reg_done(regclient_user_create(&hc, name, &resp, &status, &err), "user", name,
			  &status, &err)))
		return r;
	return print_token(ctl, "user", resp);
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */

static const struct {
	const char *name;
	ctl_verb_fn fn;
	const char *help; /* NULL: the verb's own (create, run: slice.c's) */
	const char *summary;
} cluster_verbs[] = {
    {"submit", cl_submit, submit_help, "send an experiment manifest to the registry"},
    {"create", cmd_create, NULL, "a slice from options (like run -d): its slivers start at once"},
    {"run", cmd_run, NULL, "a slice from options: follow its slivers, exit with their code"},
    {"status", cl_status, status_help, "per-sliver state of a slice"},
    {"logs", cl_logs, logs_help, "each sliver's output"},
    {"results", cl_results, results_help, "download each sliver's result files, verified"},
    {"exec", cmd_exec, NULL, "run a command in a sliver (stdio, exit code, -t), via its node"},
    {"shell", cmd_shell, NULL, "an interactive shell in a sliver, via its node"},
    {"list", cl_list, list_help, "list slices"},
    {"show", cl_show, show_help, "the registry's slice object (JSON)"},
    {"destroy", cl_destroy, destroy_help, "delete a slice"},
    {"renew", cl_renew, renew_help, "extend a slice's lifetime"},
    {"nodes", cl_nodes, nodes_help, "list nodes"},
    {"migrate", cmd_migrate_cluster, cluster_migrate_help, "move a slice's sliver to another node"},
    {"migrations", cmd_migrations_cluster, cluster_migrations_help, "past and running migrations"},
    {"stats", cmd_stats_cluster, cluster_stats_help, "a sliver's usage, from its node (ticket)"},
    {"freeze", cmd_freeze_cluster, cluster_freeze_help, "freeze a sliver at its node (ticket)"},
    {"thaw", cmd_thaw_cluster, cluster_thaw_help, "thaw a sliver at its node (ticket)"},
    {"image", cmd_image_cluster, cluster_image_help, "images at the registry: import, list, rm"},
    {"node", cl_node, node_help, "drain (and empty), undrain or reset a node (admin)"},
    {"token", cl_token, token_help, "create a node, admin or user token (admin)"},
    {"user", cl_user, user_help, "create a user and their first token (admin)"},
};

ctl_verb_fn cluster_verb(const char *verb)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(cluster_verbs); i++)
		if (!strcmp(cluster_verbs[i].name, verb))
			return cluster_verbs[i].fn;
	return NULL;
}

bool cluster_only_verb(const char *verb)
{
	static const char *const only[] = {"nodes", "node",    "token",
					   "user",  "migrate", "migrations"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(only); i++)
		if (!strcmp(only[i], verb))
			return true;
	return false;
}

bool cluster_verb_help(const char *verb, int argc, char **argv)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(cluster_verbs); i++)
		if (!strcmp(cluster_verbs[i].name, verb) && cluster_verbs[i].help)
			return ctl_want_help(argc, argv, cluster_verbs[i].help);
	return false;
}

void cluster_usage(FILE *f)
{
	fprintf(f, "\ncluster mode (--registry URL or $VSLICE_REGISTRY; token: --token or "
		   "$VSLICE_TOKEN;\nan https:// registry is verified against the system's CAs, "
		   "or --ca FILE or $VSLICE_CA):\n");
	for (size_t i = 0; i < VS_ARRAY_SIZE(cluster_verbs); i++)
		fprintf(f, "  %-11s %s\n", cluster_verbs[i].name, cluster_verbs[i].summary);
	fprintf(f, "  %-11s %s\n", "validate", "check an experiment manifest (no registry needed)");
}
