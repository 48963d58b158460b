/*
 * submit.c - slicectl's experiment verbs (docs/manifest.md), local mode:
 *
 *   validate FILE...        every error of each manifest, with its JSON path
 *   submit FILE [--wait]    manifest -> slice: create, place files, start
 *   status NAME             per sliver: node, state, exit code, start/end
 *   results NAME DIR [PATH...]  copy result paths to DIR/<node>/<path>, sha256
 *
 * In local mode there is one sliver, on node "local". The slice itself is
 * made by lib/node/experiment.c (files placed, experiment.json recorded),
 * which vslice-nodemgr uses for each sliver in cluster mode too; result
 * files are walked by it as well (inside the slice's root, never the host).
 * Cluster mode (a registry) is cluster.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <nettle/sha2.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/experiment.h"
#include "vslice/image.h"
#include "vslice/json.h"
#include "vslice/manifest.h"
#include "vslice/seccomp_policy.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define LOCAL_NODE "local"

/* ------------------------------------------------------------------ */
/* validate                                                            */

/*
 * Load and validate; on failure print every error ("FILE: .path: msg") and
 * a count. Policy files are also compiled here, so validate catches a broken
 * policy before submit does.
 */
int ctl_load_manifest(struct ctl *ctl, const char *verb, const char *file, struct manifest **out,
		      json_t *json_errors)
{
	cleanup_manifest_errors struct manifest_errors errs = {0};
	cleanup_manifest struct manifest *m = NULL;
	int r = manifest_load_file(file, &m, &errs);
	if (r == 0 && m->policy && m->policy[0] == '/') {
		struct vs_error err;
		if (seccomp_policy_check(m->policy, &err) < 0) {
			struct manifest_error e = {.path = vs_xstrdup(".policy"),
						   .message = vs_xstrdup(err.msg)};
			errs.v = vs_xcalloc(1, sizeof(e));
			errs.v[0] = e;
			errs.n = errs.cap = 1;
			r = -EINVAL;
		}
	}
	if (r == 0) {
		*out = steal_pointer(&m);
		return 0;
	}
	if (json_errors) {
		for (size_t i = 0; i < errs.n; i++) {
			const struct manifest_error *e = &errs.v[i];
			json_t *o = json_pack("{s:s, s:s, s:s}", "file", file, "path", e->path,
					      "message", e->message);
			if (e->line > 0) {
				json_object_set_new(o, "line", json_integer(e->line));
				json_object_set_new(o, "column", json_integer(e->column));
			}
			json_array_append_new(json_errors, o);
		}
		return EXIT_VSLICE;
	}
	manifest_errors_print(&errs, stderr, file);
	size_t total = errs.n + errs.dropped;
	fprintf(stderr, "slicectl: %s %s: %zu error%s\n", verb, file, total, total == 1 ? "" : "s");
	return EXIT_VSLICE;
}

static const char validate_help[] =
    "usage: slicectl validate FILE...\n\n"
    "Check experiment manifests (docs/manifest.md) without running anything.\n"
    "Every error is reported, each with the JSON path of the value it is about:\n"
    "  hello.json: .resources.memory: \"lots\" is not a size (use e.g. 256M)\n"
    "Files next to the manifest (files[].source, policy) are read and checked too.\n"
    "Exit 0 when all are valid, 125 otherwise. --json: a JSON report on stdout.\n";

int cmd_validate(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, validate_help))
		return 0;
	int c;
	while ((c = getopt(argc, argv, "+")) != -1)
		return ctl_usage("validate", "unknown option");
	if (optind >= argc)
		return ctl_usage("validate", "missing manifest FILE");
	int rc = 0;
	cleanup_json json_t *report = ctl->json ? json_array() : NULL;
	for (int i = optind; i < argc; i++) {
		struct manifest *m = NULL;
		json_t *errs = ctl->json ? json_array() : NULL;
		if (ctl_load_manifest(ctl, "validate", argv[i], &m, errs) != 0) {
			rc = EXIT_VSLICE;
		} else if (!ctl->json && !ctl->quiet) {
			printf("%s: ok (slice %s, %zu file%s, %zu result%s)\n", argv[i], m->name,
			       m->nfiles, m->nfiles == 1 ? "" : "s", m->nresults,
			       m->nresults == 1 ? "" : "s");
		}
		if (report)
			json_array_append_new(report,
					      json_pack("{s:s, s:b, s:s?, s:o}", "file", argv[i],
							"valid", m != NULL, "slice",
							m ? m->name : NULL, "errors", errs));
		manifest_free(m);
	}
	if (report) {
		char *s = json_dumps(report, JSON_INDENT(2));
		if (s)
			printf("%s\n", s);
		free(s);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* submit: placing files                                               */

/* Local mode runs one sliver on this node: nodes must say no more than that. */
static int check_local_nodes(const struct manifest *m, struct vs_error *err)
{
	if (!m->nodes_given)
		return 0;
	if (m->node_count == 1 && m->nlabels == 0)
		return 0;
	if (m->nnode_names == 1 && !strcmp(m->node_names[0], LOCAL_NODE))
		return 0;
	if (m->node_count)
		return vs_error_set(err, ENOTSUP,
				    ".nodes: %u node%s%s need cluster mode (--registry URL or "
				    "VSLICE_REGISTRY); local mode runs one sliver here",
				    m->node_count, m->node_count == 1 ? "" : "s",
				    m->nlabels ? " with labels" : "");
	return vs_error_set(
	    err, ENOTSUP,
	    ".nodes.names: named nodes need cluster mode (--registry URL or VSLICE_REGISTRY); "
	    "local mode takes only [\"local\"]");
}

/* ------------------------------------------------------------------ */
/* submit --wait: progress                                              */

static const char *fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;
	if (!t || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "-");
	return buf;
}

/* Copy complete lines of the log to stdout as "[local] | line"; flush
 * partial lines at the end. */
struct log_tail {
	int fd;
	char buf[4096];
	size_t len;
};

static void log_pump(struct log_tail *t, bool final, bool show)
{
	for (;;) {
		/* Lagged past the part of the log still kept (a hole, reaper.h):
		 * jump to what is kept instead of printing zeroes. */
		off_t at = t->fd >= 0 ? lseek(t->fd, 0, SEEK_CUR) : -1;
		off_t data = at >= 0 ? lseek(t->fd, at, SEEK_DATA) : -1;
		if (data > at && show)
			printf("[%s] | ... (%lld bytes of output dropped: only the log's tail is "
			       "kept)\n",
			       LOCAL_NODE, (long long)(data - at));
		ssize_t n = t->fd >= 0 ? read(t->fd, t->buf + t->len, sizeof(t->buf) - t->len) : 0;
		if (n > 0)
			t->len += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < t->len; i++) {
			if (t->buf[i] != '\n')
				continue;
			if (show)
				printf("[%s] | %.*s\n", LOCAL_NODE, (int)(i - start),
				       t->buf + start);
			start = i + 1;
		}
		memmove(t->buf, t->buf + start, t->len - start);
		t->len -= start;
		if (t->len == sizeof(t->buf) || (final && n <= 0 && t->len)) {
			if (show)
				printf("[%s] | %.*s\n", LOCAL_NODE, (int)t->len, t->buf);
			t->len = 0;
		}
		if (n <= 0)
			break;
	}
	fflush(stdout);
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	interrupted = 1;
}

/* Follow the sliver until its run ends; returns the exit code for slicectl.
 * Ctrl-C stops following, not the run (it is detached). */
static int wait_sliver(struct ctl *ctl, const char *name)
{
	struct sigaction sa = {.sa_handler = on_interrupt};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct vs_error err;
	struct log_tail t = {.fd = slice_log_open(ctl->root, name, &err)};
	bool show = !ctl->quiet;
	struct slice_state st;
	for (;;) {
		log_pump(&t, false, show);
		if (slice_load(ctl->root, name, NULL, &st, &err) < 0) {
			if (t.fd >= 0)
				close(t.fd);
			return ctl_fail("submit", name, &err);
		}
		if (st.status != SLICE_RUNNING && st.status != SLICE_FROZEN)
			break;
		if (interrupted) {
			log_pump(&t, true, show);
			if (t.fd >= 0)
				close(t.fd);
			fprintf(stderr,
				"slicectl: submit %s: stopped following; the run goes on "
				"(slicectl status %s, slicectl logs %s)\n",
				name, name, name);
			return 130;
		}
		/* Wake when PID 1 ends (its pidfd), or in 200 ms to show output. */
		int pfd = st.pid > 0 ? (int)syscall(SYS_pidfd_open, st.pid, 0) : -1;
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		poll(&p, pfd >= 0 ? 1 : 0, 200);
		if (pfd >= 0)
			close(pfd);
	}
	int code;
	if (slice_wait(ctl->root, name, &code, &st, &err) < 0) {
		if (t.fd >= 0)
			close(t.fd);
		return ctl_fail("submit", name, &err);
	}
	log_pump(&t, true, show);
	if (t.fd >= 0)
		close(t.fd);
	long secs = st.finished && st.started ? (long)(st.finished - st.started) : 0;
	char restarts[48] = "";
	if (st.restarts)
		snprintf(restarts, sizeof(restarts), ", %u restart%s", st.restarts,
			 st.restarts == 1 ? "" : "s");
	if (code == 0) {
		if (show)
			printf("[%s] done: exit 0 after %lds%s\n", LOCAL_NODE, secs, restarts);
		printf("%s: 1 sliver ok (results: slicectl results %s DIR)\n", name, name);
		return 0;
	}
	const char *why = slice_exit_reason_text(st.exit_reason);
	printf("[%s] failed: exit %d (%s) after %lds%s%s%s\n", LOCAL_NODE, code,
	       st.exit_reason[0] ? st.exit_reason : "exited", secs, restarts, why ? ": " : "",
	       why ? why : "");
	printf("%s: 1 of 1 sliver failed (output: slicectl logs %s)\n", name, name);
	return code > 0 && code < 256 ? code : 1;
}

static const char submit_help[] =
    "usage: slicectl submit FILE [--wait]\n\n"
    "Run an experiment manifest (docs/manifest.md): validate it, create the\n"
    "slice, place its files, start the run detached, and print the slice name.\n"
    "Local mode runs one sliver on this node (\"local\"). If any step before the\n"
    "run starts fails, nothing is left behind.\n\n"
    "  --wait, -w     follow the run: its output and the sliver's end, as\n"
    "                 \"[local] ...\" lines; exit with the run's exit code\n"
    "                 (non-zero if it failed)\n";

int cmd_submit(struct ctl *ctl, int argc, char **argv)
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
	cleanup_manifest struct manifest *m = NULL;
	int r = ctl_load_manifest(ctl, "submit", file, &m, NULL);
	if (r)
		return r;
	struct vs_error err;
	if (check_local_nodes(m, &err) < 0)
		return ctl_fail("submit", file, &err);
	struct image_info info;
	if (image_get(ctl->root, m->image, &info, &err) < 0) {
		vs_error_wrap(&err, ".image");
		return ctl_fail("submit", file, &err);
	}
	cleanup_free char *abs = realpath(file, NULL);
	if (experiment_create(ctl->root, m, abs ? abs : file, LOCAL_NODE, &err) < 0)
		return ctl_fail("submit", m->name, &err);
	/* From here on, a failure destroys the slice: nothing left behind. */
	struct slice_start_opts so = {.foreground = false};
	if (slice_start(ctl->root, m->name, &so, &err) < 0) {
		ctl_fail("submit", m->name, &err);
		struct vs_error e2;
		if (slice_destroy(ctl->root, m->name, true, &e2) < 0)
			ctl_fail("submit", m->name, &e2);
		return EXIT_VSLICE;
	}
	printf("%s\n", m->name);
	fflush(stdout);
	if (!wait)
		return 0;
	if (!ctl->quiet)
		printf("[%s] started (image %s, %zu file%s placed)\n", LOCAL_NODE, m->image,
		       m->nfiles, m->nfiles == 1 ? "" : "s");
	return wait_sliver(ctl, m->name);
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static const char status_help[] =
    "usage: slicectl status NAME\n\n"
    "Per sliver of an experiment: node, state, exit code (and why it ended:\n"
    "exited, signal, timeout, lifetime), restarts, start and end time (UTC).\n"
    "Local mode has one sliver, on node \"local\". --json for JSON.\n";

int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, status_help))
		return 0;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage("status", argc < 2   ? "missing slice NAME"
					   : argc > 2 ? "one NAME only"
						      : "unknown option");
	const char *name = argv[1];
	struct slice_spec spec;
	struct slice_state st;
	struct vs_error err;
	if (slice_load(ctl->root, name, &spec, &st, &err) < 0)
		return ctl_fail("status", name, &err);
	slice_spec_free(&spec);
	char exitc[16] = "-", s1[32], s2[32];
	bool ended = st.status == SLICE_EXITED;
	if (ended)
		snprintf(exitc, sizeof(exitc), "%d", st.exit_code);
	if (ctl->json) {
		cleanup_json json_t *j = json_pack(
		    "{s:s, s:[{s:s, s:s, s:o, s:s?, s:I, s:o, s:o}]}", "slice", name, "slivers",
		    "node", LOCAL_NODE, "state", slice_status_name(st.status), "exit_code",
		    ended ? json_integer(st.exit_code) : json_null(), "exit_reason",
		    ended && st.exit_reason[0] ? st.exit_reason : NULL, "restarts",
		    (json_int_t)st.restarts, "started",
		    st.started ? json_string(fmt_time(st.started, s1, sizeof(s1))) : json_null(),
		    "finished",
		    ended && st.finished ? json_string(fmt_time(st.finished, s2, sizeof(s2)))
					 : json_null());
		char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		if (s)
			printf("%s\n", s);
		free(s);
		return 0;
	}
	printf("%-8s %-8s %-5s %-9s %-8s %-20s %s\n", "NODE", "STATE", "EXIT", "REASON", "RESTARTS",
	       "STARTED", "FINISHED");
	printf("%-8s %-8s %-5s %-9s %-8u %-20s %s\n", LOCAL_NODE, slice_status_name(st.status),
	       exitc, ended && st.exit_reason[0] ? st.exit_reason : "-", st.restarts,
	       fmt_time(st.started, s1, sizeof(s1)),
	       fmt_time(ended ? st.finished : 0, s2, sizeof(s2)));
	return 0;
}

/* ------------------------------------------------------------------ */
/* results                                                             */

struct copy_ctx {
	const char *name;
	int node_fd; /* DIR/<node> */
	FILE *sums;  /* DIR/SHA256SUMS */
	size_t files, skipped, failed;
};

/* Copy one regular file (src open) to node_dir/rel; verify by re-reading. */
static int copy_file(void *arg, const char *rel, int src, const struct stat *st,
		     struct vs_error *err)
{
	struct copy_ctx *cc = arg;
	cleanup_free char *parent = vs_xstrdup(rel);
	char *slash = strrchr(parent, '/');
	const char *leaf = rel;
	cleanup_close int pfd = -1;
	if (slash) {
		*slash = '\0';
		leaf = slash + 1;
		pfd = vs_mkdirs_at(cc->node_fd, parent, 0755, err);
		if (pfd < 0)
			return pfd;
	} else {
		pfd = fcntl(cc->node_fd, F_DUPFD_CLOEXEC, 3);
	}
	/* Replace an old copy, never write through a link. */
	if (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT && errno != EISDIR)
		return vs_error_sys(err, errno, "/%s: remove old copy", rel);
	cleanup_close int dst =
	    openat(pfd, leaf, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (dst < 0)
		return vs_error_sys(err, errno, "/%s: create", rel);
	struct sha256_ctx h;
	sha256_init(&h);
	char buf[65536];
	for (;;) {
		ssize_t n = read(src, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return vs_error_sys(err, errno, "/%s: read", rel);
		if (n == 0)
			break;
		sha256_update(&h, (size_t)n, (const uint8_t *)buf);
		int r = vs_write_all(dst, buf, (size_t)n);
		if (r < 0)
			return vs_error_sys(err, -r, "/%s: write", rel);
	}
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(&h, sizeof(d), d);
	char want[VS_SHA256_HEX], got[VS_SHA256_HEX];
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(want + 2 * i, 3, "%02x", d[i]);
	if (fsync(dst) < 0)
		return vs_error_sys(err, errno, "/%s: fsync", rel);
	int r = vs_sha256_fd(dst, got);
	if (r < 0)
		return vs_error_sys(err, -r, "/%s: re-read", rel);
	if (strcmp(want, got))
		return vs_error_set(err, EIO, "/%s: checksum mismatch after copy (%s != %s)", rel,
				    got, want);
	printf("%s  %s/%s\n", want, LOCAL_NODE, rel);
	if (cc->sums)
		fprintf(cc->sums, "%s  %s/%s\n", want, LOCAL_NODE, rel);
	cc->files++;
	return 0;
}

static int copy_dir(void *arg, const char *rel, struct vs_error *err)
{
	struct copy_ctx *cc = arg;
	int fd = vs_mkdirs_at(cc->node_fd, rel, 0755, err);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static void copy_problem(void *arg, const char *rel, const char *why, bool missing, bool failed)
{
	struct copy_ctx *cc = arg;
	char shown[VS_ERROR_MAX];
	fprintf(stderr, "slicectl: results %s: /%s: %s\n", cc->name,
		vs_printable(rel, shown, sizeof(shown)), why);
	if (missing || failed)
		cc->failed++;
	else
		cc->skipped++;
}

/* Result paths: the command line's, else those saved at submit. */
static int result_paths(struct ctl *ctl, const char *name, int argc, char **argv, int first,
			char ***out, size_t *n, struct vs_error *err)
{
	*n = 0;
	if (first >= argc) {
		int r = experiment_result_paths(ctl->root, name, out, n, err);
		if (r == -ENOENT)
			return vs_error_set(
			    err, ENOENT,
			    "not submitted from a manifest: name the paths (slicectl "
			    "results %s DIR PATH...)",
			    name);
		return r;
	}
	*out = vs_xcalloc((size_t)(argc - first) + 1, sizeof(char *));
	for (int i = first; i < argc; i++) {
		const char *why = manifest_check_slice_path(argv[i]);
		if (why)
			return vs_error_set(err, EINVAL, "\"%s\" %s", argv[i], why);
		(*out)[(*n)++] = vs_xstrdup(argv[i]);
	}
	return 0;
}

static const char results_help[] =
    "usage: slicectl results NAME DIR [PATH...]\n\n"
    "Copy an experiment's result paths (the manifest's \"results\", or the PATHs\n"
    "given) out of the slice into DIR/<node>/<path> (local mode: DIR/local/...),\n"
    "directories recursively. Each copy is verified by re-reading it; its sha256\n"
    "is printed and listed in DIR/SHA256SUMS (check: cd DIR && sha256sum -c SHA256SUMS).\n"
    "Results are read from the slice's own file system layer (what the run wrote);\n"
    "symlinks resolve inside the slice, never on the host; symlinks inside result\n"
    "directories are skipped. Exit 125 if a path is missing or a copy failed.\n";

int cmd_results(struct ctl *ctl, int argc, char **argv)
{
	if (ctl_want_help(argc, argv, results_help))
		return 0;
	int c;
	while ((c = getopt(argc, argv, "+")) != -1)
		return ctl_usage("results", "unknown option");
	if (argc - optind < 2)
		return ctl_usage("results",
				 argc - optind < 1 ? "missing slice NAME" : "missing DIR");
	const char *name = argv[optind], *dir = argv[optind + 1];
	struct vs_error err;
	struct slice_spec spec;
	if (slice_load(ctl->root, name, &spec, NULL, &err) < 0)
		return ctl_fail("results", name, &err);
	slice_spec_free(&spec);
	cleanup_strv char **paths = NULL;
	size_t n;
	if (result_paths(ctl, name, argc, argv, optind + 2, &paths, &n, &err) < 0)
		return ctl_fail("results", name, &err);
	if (vs_mkdir_p(dir, 0755, &err) < 0)
		return ctl_fail("results", name, &err);
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		vs_error_sys(&err, errno, "%s", dir);
		return ctl_fail("results", name, &err);
	}
	struct copy_ctx cc = {.name = name};
	cc.node_fd = vs_mkdirs_at(dfd, LOCAL_NODE, 0755, &err);
	if (cc.node_fd < 0) {
		vs_error_wrap(&err, "%s", dir);
		return ctl_fail("results", name, &err);
	}
	int sfd =
	    openat(dfd, "SHA256SUMS", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	cc.sums = sfd >= 0 ? fdopen(sfd, "w") : NULL;
	struct experiment_walk w = {
	    .file = copy_file, .dir = copy_dir, .problem = copy_problem, .arg = &cc};
	if (experiment_walk_results(ctl->root, name, paths, n, &w, &err) < 0) {
		ctl_fail("results", name, &err);
		cc.failed++;
	}
	if (cc.sums)
		fclose(cc.sums);
	close(cc.node_fd);
	if (!ctl->quiet)
		fprintf(stderr, "slicectl: results %s: %zu file%s copied to %s/%s%s\n", name,
			cc.files, cc.files == 1 ? "" : "s", dir, LOCAL_NODE,
			cc.skipped ? " (some entries skipped)" : "");
	return cc.failed ? EXIT_VSLICE : 0;
}
