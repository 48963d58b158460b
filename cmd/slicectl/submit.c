/*
 * submit.c - slicectl's experiment verbs (docs/manifest.md), local mode:
 *
 *   validate FILE...        every error of each manifest, with its JSON path
 *   submit FILE [--wait]    manifest -> slice: create, place files, start
 *   status NAME             per sliver: node, state, exit code, start/end
 *   results NAME DIR [PATH...]  copy result paths to DIR/<node>/<path>, sha256
 *
 * In local mode there is one sliver, on node "local". A submitted slice
 * keeps what the experiment verbs need later in <slice dir>/experiment.json
 * (the manifest's path and result paths); destroy removes it with the rest.
 *
 * The host side touches the slice's file system only through its overlay
 * upper dir, and always relative to a directory fd: files are placed before
 * the slice first runs, component by component with O_NOFOLLOW and O_EXCL,
 * and results are read with openat2(RESOLVE_IN_ROOT) so a symlink the slice
 * planted resolves inside the upper dir, never on the host.
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
#include "vslice/image.h"
#include "vslice/manifest.h"
#include "vslice/seccomp_policy.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define LOCAL_NODE	  "local"
#define EXPERIMENT_FILE	  "experiment.json"
#define RESULTS_DEPTH_MAX 64

static void json_decref_p(json_t **j)
{
	if (*j)
		json_decref(*j);
}
#define cleanup_json __attribute__((cleanup(json_decref_p)))

static void manifest_freep(struct manifest **m)
{
	manifest_free(*m);
}
#define cleanup_manifest __attribute__((cleanup(manifest_freep)))

static void errors_freep(struct manifest_errors *e)
{
	manifest_errors_free(e);
}
#define cleanup_errors __attribute__((cleanup(errors_freep)))

static void spec_freep(struct slice_spec *s)
{
	slice_spec_free(s);
}
#define cleanup_slice_spec __attribute__((cleanup(spec_freep)))

static long sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve)
{
	struct open_how how = {.flags = flags, .resolve = resolve};
	return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* ------------------------------------------------------------------ */
/* validate                                                            */

/*
 * Load and validate; on failure print every error ("FILE: .path: msg") and
 * a count. Policy files are also compiled here, so validate catches a broken
 * policy before submit does.
 */
static int load_manifest(struct ctl *ctl, const char *verb, const char *file, struct manifest **out,
			 json_t *json_errors)
{
	cleanup_errors struct manifest_errors errs = {0};
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
		if (load_manifest(ctl, "validate", argv[i], &m, errs) != 0) {
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

/* Host id for an id inside the slice (the runtime maps 65536 ids from id_base). */
static uint32_t map_id(uint32_t base, uint32_t id)
{
	return base + (id < 65536 ? id : 65534);
}

/*
 * Write one file into the upper dir. Parent directories that the image
 * has are created with the image's mode and (mapped) owner, so placing
 * /tmp/x does not turn the slice's /tmp into a 0755 directory; others are
 * 0755 owned by the slice's root. A path whose parent is not a directory
 * in the image (a symlink like /lib -> usr/lib) is refused: a directory in
 * the upper layer would hide it.
 */
static int place_file(int upper_fd, int image_fd, const struct manifest_file *f, uint32_t id_base,
		      const char *image, struct vs_error *err)
{
	cleanup_free char *copy = vs_xstrdup(f->path + 1);
	cleanup_close int dfd = fcntl(upper_fd, F_DUPFD_CLOEXEC, 3);
	cleanup_close int lfd = image_fd >= 0 ? fcntl(image_fd, F_DUPFD_CLOEXEC, 3) : -1;
	if (dfd < 0)
		return vs_error_sys(err, errno, "%s: dup", f->path);
	char *save = NULL;
	char *comp = strtok_r(copy, "/", &save);
	for (char *next; comp && (next = strtok_r(NULL, "/", &save)); comp = next) {
		struct stat ls;
		bool in_image = lfd >= 0 && fstatat(lfd, comp, &ls, AT_SYMLINK_NOFOLLOW) == 0;
		if (in_image && !S_ISDIR(ls.st_mode))
			return vs_error_set(
			    err, ENOTDIR, "%s: \"%s\" is not a directory in image %s%s", f->path,
			    comp, image,
			    S_ISLNK(ls.st_mode) ? " (a symlink; use the path it points to)" : "");
		mode_t mode = in_image ? ls.st_mode & 0777 : 0755;
		uint32_t uid = in_image ? map_id(id_base, ls.st_uid) : id_base;
		uint32_t gid = in_image ? map_id(id_base, ls.st_gid) : id_base;
		if (in_image && (ls.st_mode & S_ISVTX))
			mode |= S_ISVTX;
		bool made = mkdirat(dfd, comp, 0700) == 0;
		if (!made && errno != EEXIST)
			return vs_error_sys(err, errno, "%s: mkdir %s", f->path, comp);
		int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			return vs_error_sys(err, errno, "%s: open %s", f->path, comp);
		close(dfd);
		dfd = nfd;
		if (made && (fchown(dfd, uid, gid) < 0 || fchmod(dfd, mode) < 0))
			return vs_error_sys(err, errno, "%s: chown/chmod %s", f->path, comp);
		int nl = in_image ? openat(lfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
				  : -1;
		if (lfd >= 0)
			close(lfd);
		lfd = nl;
	}
	struct stat ls;
	if (lfd >= 0 && fstatat(lfd, comp, &ls, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(ls.st_mode))
		return vs_error_set(err, EISDIR, "%s: is a directory in image %s", f->path, image);
	cleanup_close int fd =
	    openat(dfd, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "%s: create", f->path);
	int r = vs_write_all(fd, f->data, f->len);
	if (r < 0)
		return vs_error_sys(err, -r, "%s: write", f->path);
	if (fchown(fd, id_base, id_base) < 0 || fchmod(fd, f->mode) < 0)
		return vs_error_sys(err, errno, "%s: chown/chmod", f->path);
	return 0;
}

static int place_files(const char *root, const struct manifest *m, const struct slice_spec *spec,
		       struct vs_error *err)
{
	if (m->nfiles == 0)
		return 0;
	cleanup_free char *d = slice_dir(root, spec->name);
	cleanup_free char *upper = vs_xasprintf("%s/upper", d);
	cleanup_close int ufd = open(upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ufd < 0)
		return vs_error_sys(err, errno, "%s", upper);
	cleanup_free char *irootfs = NULL;
	cleanup_close int ifd = -1;
	if (image_rootfs(root, spec->image, &irootfs, err) == 0)
		ifd = open(irootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; i < m->nfiles; i++) {
		int r = place_file(ufd, ifd, &m->files[i], spec->id_base, spec->image, err);
		if (r < 0)
			return vs_error_wrap(err, "files[%zu]", i);
	}
	return 0;
}

/* What the other experiment verbs need later, next to the slice's state. */
static int save_experiment(const char *root, const char *file, const struct manifest *m,
			   struct vs_error *err)
{
	cleanup_json json_t *res = json_array();
	for (size_t i = 0; i < m->nresults; i++)
		json_array_append_new(res, json_string(m->results[i]));
	cleanup_free char *abs = realpath(file, NULL);
	cleanup_json json_t *j =
	    json_pack("{s:i, s:s, s:O, s:[s], s:I}", "version", 1, "manifest", abs ? abs : file,
		      "results", res, "nodes", LOCAL_NODE, "submitted", (json_int_t)time(NULL));
	cleanup_free char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return vs_error_set(err, ENOMEM, "%s: cannot encode", EXPERIMENT_FILE);
	cleanup_free char *d = slice_dir(root, m->name);
	cleanup_free char *p = vs_xasprintf("%s/%s", d, EXPERIMENT_FILE);
	return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

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
				    ".nodes: %u node%s%s need cluster mode (a registry), which is "
				    "not available in this build; local mode runs one sliver here",
				    m->node_count, m->node_count == 1 ? "" : "s",
				    m->nlabels ? " with labels" : "");
	return vs_error_set(
	    err, ENOTSUP,
	    ".nodes.names: named nodes need cluster mode (a registry), which is not "
	    "available in this build; local mode takes only [\"local\"]");
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
		poll(NULL, 0, 200);
	}
	int code;
	if (slice_wait(ctl->root, name, &code, &err) < 0) {
		if (t.fd >= 0)
			close(t.fd);
		return ctl_fail("submit", name, &err);
	}
	log_pump(&t, true, show);
	if (t.fd >= 0)
		close(t.fd);
	slice_load(ctl->root, name, NULL, &st, &err);
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
	printf("[%s] failed: exit %d (%s) after %lds%s\n", LOCAL_NODE, code,
	       st.exit_reason[0] ? st.exit_reason : "exited", secs, restarts);
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
	int r = load_manifest(ctl, "submit", file, &m, NULL);
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
	cleanup_slice_spec struct slice_spec spec = {0};
	if (manifest_to_spec(m, &spec, &err) < 0)
		return ctl_fail("submit", file, &err);
	if (slice_create(ctl->root, &spec, &err) < 0)
		return ctl_fail("submit", m->name, &err);
	/* From here on, a failure destroys the slice: nothing left behind. */
	r = save_experiment(ctl->root, file, m, &err);
	if (r == 0)
		r = place_files(ctl->root, m, &spec, &err);
	if (r == 0) {
		struct slice_start_opts so = {.foreground = false};
		r = slice_start(ctl->root, m->name, &so, &err);
	}
	if (r < 0) {
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
		printf("[%s] started (image %s, %zu file%s placed)\n", LOCAL_NODE, spec.image,
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
	const char *dir; /* DIR as given */
	int node_fd;	 /* DIR/<node> */
	FILE *sums;	 /* DIR/SHA256SUMS */
	size_t files, skipped, failed;
};

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* Hash an open file from the start. */
static int sha256_fd(int fd, char out[2 * SHA256_DIGEST_SIZE + 1])
{
	struct sha256_ctx h;
	sha256_init(&h);
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		sha256_update(&h, (size_t)n, (const uint8_t *)buf);
		off += n;
	}
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(&h, sizeof(d), d);
	hex(d, sizeof(d), out);
	return 0;
}

/* Open (creating) the directory rel below dfd, one component at a time, no symlinks. */
static int mkdirs_at(int dfd, const char *rel, struct vs_error *err)
{
	cleanup_free char *copy = vs_xstrdup(rel);
	int cur = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c && cur >= 0; c = strtok_r(NULL, "/", &save)) {
		if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			close(cur);
			return vs_error_sys(err, e, "mkdir %s", c);
		}
		int n = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(cur);
		if (n < 0)
			return vs_error_sys(err, e, "open %s", c);
		cur = n;
	}
	return cur < 0 ? vs_error_sys(err, errno, "dup") : cur;
}

/* Copy one regular file (src open) to node_dir/rel; verify by re-reading. */
static int copy_file(struct copy_ctx *cc, int src, const char *rel, struct vs_error *err)
{
	cleanup_free char *parent = vs_xstrdup(rel);
	char *slash = strrchr(parent, '/');
	const char *leaf = rel;
	cleanup_close int pfd = -1;
	if (slash) {
		*slash = '\0';
		leaf = slash + 1;
		pfd = mkdirs_at(cc->node_fd, parent, err);
		if (pfd < 0)
			return pfd;
	} else {
		pfd = fcntl(cc->node_fd, F_DUPFD_CLOEXEC, 3);
	}
	/* Replace an old copy, never write through a link. */
	if (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT && errno != EISDIR)
		return vs_error_sys(err, errno, "%s: remove old copy", rel);
	cleanup_close int dst =
	    openat(pfd, leaf, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (dst < 0)
		return vs_error_sys(err, errno, "%s: create", rel);
	struct sha256_ctx h;
	sha256_init(&h);
	char buf[65536];
	for (;;) {
		ssize_t n = read(src, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return vs_error_sys(err, errno, "%s: read", rel);
		if (n == 0)
			break;
		sha256_update(&h, (size_t)n, (const uint8_t *)buf);
		int r = vs_write_all(dst, buf, (size_t)n);
		if (r < 0)
			return vs_error_sys(err, -r, "%s: write", rel);
	}
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(&h, sizeof(d), d);
	char want[2 * SHA256_DIGEST_SIZE + 1], got[2 * SHA256_DIGEST_SIZE + 1];
	hex(d, sizeof(d), want);
	if (fsync(dst) < 0)
		return vs_error_sys(err, errno, "%s: fsync", rel);
	int r = sha256_fd(dst, got);
	if (r < 0)
		return vs_error_sys(err, -r, "%s: re-read", rel);
	if (strcmp(want, got))
		return vs_error_set(err, EIO, "%s: checksum mismatch after copy (%s != %s)", rel,
				    got, want);
	printf("%s  %s/%s\n", want, LOCAL_NODE, rel);
	if (cc->sums)
		fprintf(cc->sums, "%s  %s/%s\n", want, LOCAL_NODE, rel);
	cc->files++;
	return 0;
}

static void copy_tree(struct copy_ctx *cc, int fd, const char *rel, int depth);

/* Copy what fd (opened O_PATH-free, O_NOFOLLOW) is: a file or a directory. */
static void copy_entry(struct copy_ctx *cc, int fd, const char *rel, int depth)
{
	struct stat st;
	struct vs_error err;
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "slicectl: results %s: /%s: %s\n", cc->name, rel, strerror(errno));
		cc->failed++;
	} else if (S_ISREG(st.st_mode)) {
		if (copy_file(cc, fd, rel, &err) < 0) {
			ctl_fail("results", cc->name, &err);
			cc->failed++;
		}
	} else if (S_ISDIR(st.st_mode)) {
		if (depth >= RESULTS_DEPTH_MAX) {
			fprintf(stderr,
				"slicectl: results %s: /%s: deeper than %d levels, skipped\n",
				cc->name, rel, RESULTS_DEPTH_MAX);
			cc->skipped++;
			return;
		}
		int dfd = mkdirs_at(cc->node_fd, rel, &err);
		if (dfd < 0) {
			ctl_fail("results", cc->name, &err);
			cc->failed++;
			return;
		}
		close(dfd);
		copy_tree(cc, fd, rel, depth + 1);
	} else {
		fprintf(stderr,
			"slicectl: results %s: /%s: not a regular file or directory, skipped\n",
			cc->name, rel);
		cc->skipped++;
	}
}

static void copy_tree(struct copy_ctx *cc, int fd, const char *rel, int depth)
{
	int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dup_fd < 0) {
		fprintf(stderr, "slicectl: results %s: /%s: %s\n", cc->name, rel, strerror(errno));
		cc->failed++;
		return;
	}
	cleanup_closedir DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		cc->failed++;
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		cleanup_free char *sub = vs_xasprintf("%s/%s", rel, de->d_name);
		bool ctrl = false;
		for (const char *ch = de->d_name; *ch && !ctrl; ch++)
			ctrl = (unsigned char)*ch < 0x20 || *ch == 0x7f;
		if (ctrl) {
			fprintf(
			    stderr,
			    "slicectl: results %s: /%s: a name with control characters, skipped\n",
			    cc->name, rel);
			cc->skipped++;
			continue;
		}
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			fprintf(stderr, "slicectl: results %s: /%s: a symlink, skipped\n", cc->name,
				sub);
			cc->skipped++;
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			fprintf(
			    stderr,
			    "slicectl: results %s: /%s: not a regular file or directory, skipped\n",
			    cc->name, sub);
			cc->skipped++;
			continue;
		}
		cleanup_close int cfd = openat(dirfd(d), de->d_name,
					       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
						   (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (cfd < 0) {
			fprintf(stderr, "slicectl: results %s: /%s: %s\n", cc->name, sub,
				strerror(errno));
			cc->failed++;
			continue;
		}
		copy_entry(cc, cfd, sub, depth);
	}
}

/* Result paths: the command line's, else those saved at submit. */
static int result_paths(struct ctl *ctl, const char *name, int argc, char **argv, int first,
			char ***out, size_t *n, struct vs_error *err)
{
	*n = 0;
	if (first < argc) {
		*out = vs_xcalloc((size_t)(argc - first) + 1, sizeof(char *));
		for (int i = first; i < argc; i++) {
			const char *why = manifest_check_slice_path(argv[i]);
			if (why)
				return vs_error_set(err, EINVAL, "\"%s\" %s", argv[i], why);
			(*out)[(*n)++] = vs_xstrdup(argv[i]);
		}
		return 0;
	}
	cleanup_free char *d = slice_dir(ctl->root, name);
	cleanup_free char *p = vs_xasprintf("%s/%s", d, EXPERIMENT_FILE);
	cleanup_free char *text = NULL;
	int r = vs_read_file(p, 1 << 20, &text, NULL, err);
	if (r == -ENOENT)
		return vs_error_set(err, ENOENT,
				    "not submitted from a manifest: name the paths (slicectl "
				    "results %s DIR PATH...)",
				    name);
	if (r < 0)
		return r;
	json_error_t je;
	cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	json_t *res = j ? json_object_get(j, "results") : NULL;
	if (!json_is_array(res))
		return vs_error_set(err, EINVAL, "%s: no results array", p);
	*out = vs_xcalloc(json_array_size(res) + 1, sizeof(char *));
	for (size_t i = 0; i < json_array_size(res); i++) {
		const char *s = json_string_value(json_array_get(res, i));
		if (!s || manifest_check_slice_path(s))
			return vs_error_set(err, EINVAL, "%s: .results[%zu]: not a slice path", p,
					    i);
		(*out)[(*n)++] = vs_xstrdup(s);
	}
	return 0;
}

static void strv_freep(char ***v)
{
	for (char **p = *v; p && *p; p++)
		free(*p);
	free(*v);
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
	__attribute__((cleanup(strv_freep))) char **paths = NULL;
	size_t n;
	if (result_paths(ctl, name, argc, argv, optind + 2, &paths, &n, &err) < 0)
		return ctl_fail("results", name, &err);
	cleanup_free char *d = slice_dir(ctl->root, name);
	cleanup_free char *upper = vs_xasprintf("%s/upper", d);
	cleanup_close int ufd = open(upper, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ufd < 0) {
		vs_error_sys(&err, errno, "%s", upper);
		return ctl_fail("results", name, &err);
	}
	if (vs_mkdir_p(dir, 0755, &err) < 0)
		return ctl_fail("results", name, &err);
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		vs_error_sys(&err, errno, "%s", dir);
		return ctl_fail("results", name, &err);
	}
	struct copy_ctx cc = {.name = name, .dir = dir};
	cc.node_fd = mkdirs_at(dfd, LOCAL_NODE, &err);
	if (cc.node_fd < 0) {
		vs_error_wrap(&err, "%s", dir);
		return ctl_fail("results", name, &err);
	}
	int sfd =
	    openat(dfd, "SHA256SUMS", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	cc.sums = sfd >= 0 ? fdopen(sfd, "w") : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *rel = paths[i] + 1;
		long fd = sys_openat2(ufd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
				      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
		if (fd < 0) {
			if (errno == ENOENT)
				fprintf(stderr,
					"slicectl: results %s: %s: not found (the run did not "
					"write it)\n",
					name, paths[i]);
			else
				fprintf(stderr, "slicectl: results %s: %s: %s\n", name, paths[i],
					strerror(errno));
			cc.failed++;
			continue;
		}
		copy_entry(&cc, (int)fd, rel, 0);
		close((int)fd);
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
