/*
 * test_manifest.c - experiment manifests (lib/manifest): the examples in
 * docs/examples validate, every error class names its JSON path with the
 * exact message a user sees, all errors come at once, files next to the
 * manifest cannot be used to read outside its directory, size limits hold,
 * and experiment_spec (lib/node, the one manifest -> spec conversion) fills
 * the slice spec.
 *
 * Runs from the repository root (fixtures: tests/unit/data/manifests/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vslice/manifest.h"
/* The manifest module knows the format, not slices (experiment.h converts). */
#ifdef VSLICE_SLICE_H
#error "vslice/manifest.h must not pull in vslice/slice.h"
#endif
#include "vslice/experiment.h"
#include "vslice/slice.h"
#include "vslice/util.h"

#define FIXTURES "tests/unit/data/manifests"

/* The errors as the user sees them (manifest_errors_print without prefix). */
static char *render(const struct manifest_errors *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	manifest_errors_print(e, f, NULL);
	fclose(f);
	return buf;
}

/* Parse text; expect failure with exactly the given error lines. */
static void expect_errors_in(const char *dir, const char *json, const char *expected)
{
	struct manifest *m = (struct manifest *)0x1;
	struct manifest_errors e = {0};
	int r = manifest_parse(json, strlen(json), dir, &m, &e);
	cleanup_free char *got = render(&e);
	if (r == 0 || strcmp(got, expected))
		print_error("manifest:\n%s\nexpected:\n%sgot (r=%d):\n%s", json, expected, r, got);
	assert_int_equal(r, -EINVAL);
	assert_null(m);
	assert_string_equal(got, expected);
	manifest_errors_free(&e);
}

static void expect_errors(const char *json, const char *expected)
{
	expect_errors_in(FIXTURES "/good", json, expected);
}

static struct manifest *parse_ok_in(const char *dir, const char *json)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	int r = manifest_parse(json, strlen(json), dir, &m, &e);
	if (r != 0) {
		cleanup_free char *got = render(&e);
		print_error("manifest:\n%s\nunexpected errors:\n%s", json, got);
	}
	assert_int_equal(r, 0);
	assert_int_equal(e.n, 0);
	assert_non_null(m);
	manifest_errors_free(&e);
	return m;
}

static struct manifest *parse_ok(const char *json)
{
	return parse_ok_in(FIXTURES "/good", json);
}

#define HEAD "{\"apiVersion\": \"vslice/v1\", \"slice\": \"t\", "
#define RUN  "\"run\": {\"command\": \"true\"}"

/* ---------------------------------------------------------------- */

static void test_examples_validate(void **state)
{
	glob_t g;
	assert_int_equal(glob("docs/examples/*.json", 0, NULL, &g), 0);
	assert_true(g.gl_pathc >= 4);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct manifest *m = NULL;
		struct manifest_errors e = {0};
		int r = manifest_load_file(g.gl_pathv[i], &m, &e);
		if (r != 0) {
			cleanup_free char *got = render(&e);
			print_error("%s:\n%s", g.gl_pathv[i], got);
		}
		assert_int_equal(r, 0);
		assert_non_null(m);
		assert_non_null(m->argv);
		struct slice_spec spec;
		struct vs_error err;
		assert_int_equal(experiment_spec(m, &spec, &err), 0);
		slice_spec_free(&spec);
		manifest_free(m);
		manifest_errors_free(&e);
	}
	globfree(&g);
}

static void test_hello_example(void **state)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	assert_int_equal(manifest_load_file("docs/examples/hello.json", &m, &e), 0);
	assert_string_equal(m->name, "hello");
	assert_string_equal(m->image, "busybox");
	assert_int_equal(m->nfiles, 1);
	assert_string_equal(m->files[0].path, "/opt/hello/run.sh");
	assert_string_equal(m->files[0].source, "hello/run.sh");
	assert_int_equal(m->files[0].mode, 0755);
	cleanup_free char *script = NULL;
	size_t len;
	struct vs_error err;
	assert_int_equal(vs_read_file("docs/examples/hello/run.sh", 0, &script, &len, &err), 0);
	assert_int_equal(m->files[0].len, len);
	assert_memory_equal(m->files[0].data, script, len);
	assert_int_equal(m->nresults, 1);
	assert_string_equal(m->results[0], "/results/hello.txt");
	assert_null(m->results[1]);
	assert_true(m->base_dir[0] == '/');
	manifest_free(m);
}

/* Every good fixture validates; every bad/X.json fails with exactly bad/X.errors. */
static void test_fixtures(void **state)
{
	glob_t g;
	assert_int_equal(glob(FIXTURES "/good/*.json", 0, NULL, &g), 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct manifest *m = NULL;
		struct manifest_errors e = {0};
		int r = manifest_load_file(g.gl_pathv[i], &m, &e);
		if (r) {
			cleanup_free char *got = render(&e);
			print_error("%s:\n%s", g.gl_pathv[i], got);
		}
		assert_int_equal(r, 0);
		manifest_free(m);
	}
	globfree(&g);

	assert_int_equal(glob(FIXTURES "/bad/*.json", 0, NULL, &g), 0);
	assert_true(g.gl_pathc >= 5);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct manifest *m = (struct manifest *)0x1;
		struct manifest_errors e = {0};
		int r = manifest_load_file(g.gl_pathv[i], &m, &e);
		cleanup_free char *errfile =
		    vs_xasprintf("%.*s.errors", (int)strlen(g.gl_pathv[i]) - 5, g.gl_pathv[i]);
		cleanup_free char *want = NULL;
		struct vs_error err;
		assert_int_equal(vs_read_file(errfile, 0, &want, NULL, &err), 0);
		cleanup_free char *got = render(&e);
		if (strcmp(got, want))
			print_error("%s: expected:\n%sgot:\n%s", g.gl_pathv[i], want, got);
		assert_int_equal(r, -EINVAL);
		assert_null(m);
		assert_string_equal(got, want);
		manifest_errors_free(&e);
	}
	globfree(&g);
}

static void test_many_errors_at_once(void **state)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	assert_int_equal(manifest_load_file(FIXTURES "/bad/many.json", &m, &e), -EINVAL);
	assert_null(m);
	assert_true(e.n >= 4);
	assert_string_equal(e.v[0].path, ".resources.memory");
	assert_string_equal(e.v[0].message, "\"lots\" is not a size (use e.g. 256M)");
	assert_string_equal(e.v[3].path, ".run.comand");
	assert_string_equal(e.v[3].message, "unknown key (did you mean \"command\"?)");
	manifest_errors_free(&e);
}

static void test_syntax_error_line_column(void **state)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	const char *text = "{\n  \"slice\": \"x\"\n  \"run\": 1\n}\n";
	assert_int_equal(manifest_parse(text, strlen(text), NULL, &m, &e), -EINVAL);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.v[0].line, 3);
	assert_string_equal(e.v[0].path, "");
	assert_non_null(strstr(e.v[0].message, "invalid JSON: "));
	manifest_errors_free(&e);

	expect_errors("{\"a\": 1, \"a\": 2}",
		      "1:12: invalid JSON: duplicate object key near '\"a\"'\n");
	expect_errors("", "1:1: invalid JSON: '[' or '{' expected near end of file\n");
	expect_errors("[]", ".: expected an object, got array\n");
	/* Bytes jansson echoes come back printable. */
	expect_errors("{\"a\": \x1b[31m}", "1:7: invalid JSON: invalid token near '\\x1b'\n");
}

/* What vslice writes into every slice (where am I) a manifest may not set. */
static void test_where_am_i_reserved(void **state)
{
	expect_errors(
	    HEAD RUN ", \"env\": {\"VSLICE_SLICE\": \"a\", \"VSLICE_PEERS\": \"b\", "
		     "\"VSLICE_X\": \"ok\"}}",
	    ".env.VSLICE_SLICE: set by vslice in every slice (where it runs); choose another "
	    "name\n"
	    ".env.VSLICE_PEERS: set by vslice in every slice (where it runs); choose another "
	    "name\n");
	expect_errors(
	    HEAD RUN ", \"files\": [{\"path\": \"/etc/vslice/peers\", \"content\": "
		     "\"x\"}, {\"path\": \"/etc/vslice\", \"content\": \"x\"}]}",
	    ".files[0].path: \"/etc/vslice/peers\" is written by vslice (the slice's peers)\n"
	    ".files[1].path: \"/etc/vslice\" is written by vslice (the slice's peers)\n");
	/* Beside it, and /etc itself (placing fails there), are not refused here. */
	manifest_free(parse_ok_in(FIXTURES "/good",
				  HEAD RUN ", \"files\": [{\"path\": "
					   "\"/etc/vslice/other\", \"content\": \"x\"}]}"));
}

/* A comment is the commonest hand-written JSON mistake: say so. */
static void test_syntax_error_comment(void **state)
{
	expect_errors("{ // the slice\n \"slice\": \"x\"}",
		      "1:3: invalid JSON: string or '}' expected near '/' (comments are not JSON: "
		      "remove them, or say it in \"description\")\n");
	expect_errors("{\"a\": 1, /* x */ \"b\": 2}",
		      "1:10: invalid JSON: string or '}' expected near '/' (comments are not JSON: "
		      "remove them, or say it in \"description\")\n");
	expect_errors("# hello\n{}", "1:1: invalid JSON: '[' or '{' expected near '#' (comments "
				     "are not JSON: remove them, or say it in \"description\")\n");
	/* A lone slash is no comment. */
	expect_errors("{\"a\": 1 / 2}", "1:9: invalid JSON: '}' expected near '/'\n");
}

static void test_unknown_keys_did_you_mean(void **state)
{
	expect_errors(HEAD RUN
		      ", \"resources\": {\"memroy\": \"1G\", \"cpu\": 1, \"disc\": \"1G\"}}",
		      ".resources.memroy: unknown key (did you mean \"memory\"?)\n"
		      ".resources.cpu: unknown key (did you mean \"cpus\"?)\n"
		      ".resources.disc: unknown key (did you mean \"disk\"?)\n");
	expect_errors(HEAD "\"run\": {\"command\": \"x\", \"cwd\": \"/\", \"retries\": 2}}",
		      ".run.cwd: unknown key (did you mean \"workdir\"?)\n"
		      ".run.retries: unknown key (did you mean \"restart_limit\"?)\n");
	expect_errors(HEAD RUN
		      ", \"apiversion\": 1, \"Image\": \"x\", \"name\": \"y\", \"cpus\": 2}",
		      ".apiversion: unknown key (did you mean \"apiVersion\"?)\n"
		      ".Image: unknown key (did you mean \"image\"?)\n"
		      ".name: unknown key (did you mean \"slice\"?)\n"
		      ".cpus: unknown key (did you mean \"resources.cpus\"?)\n");
	expect_errors(HEAD RUN ", \"files\": [{\"path\": \"/x\", \"contents\": \"a\"}]}",
		      ".files[0].contents: unknown key (did you mean \"content\"?)\n"
		      ".files[0]: needs \"content\" (inline text) or \"source\" (a file next to "
		      "the manifest)\n");
	/* Keys that are not identifiers are quoted and escaped in the path. */
	expect_errors(
	    HEAD RUN ", \"a b\": 1, \"\\u00e9\\u001b\": 2}",
	    ".[\"a b\"]: unknown key (expected one of: apiVersion, slice, description, lifetime, "
	    "expires, nodes, image, resources, policy, network, env, files, run, results)\n"
	    ".[\"\\xc3\\xa9\\x1b\"]: unknown key (expected one of: apiVersion, slice, description, "
	    "lifetime, expires, nodes, image, resources, policy, network, env, files, run, "
	    "results)\n");
}

static void test_types_and_values(void **state)
{
	expect_errors(HEAD RUN
		      ", \"resources\": {\"memory\": \"lots\", \"cpus\": \"0\", \"pids\": 0}}",
		      ".resources.memory: \"lots\" is not a size (use e.g. 256M)\n"
		      ".resources.cpus: \"0\" must be more than 0\n"
		      ".resources.pids: 0 is out of range (1 to 4194304)\n");
	expect_errors(HEAD RUN
		      ", \"resources\": {\"memory\": \"1K\", \"cpus\": 5000, \"pids\": 1.5}}",
		      ".resources.memory: \"1K\" is too small (at least 4M)\n"
		      ".resources.cpus: 5000 is too many cpus (at most 4096)\n"
		      ".resources.pids: expected an integer, got 1.5\n");
	/* .resources.disk: a size, 16M to 16T (its own ext4 image). */
	expect_errors(HEAD RUN ", \"resources\": {\"disk\": \"lots\"}}",
		      ".resources.disk: \"lots\" is not a size (use e.g. 1G)\n");
	expect_errors(HEAD RUN ", \"resources\": {\"disk\": \"8M\"}}",
		      ".resources.disk: \"8M\" is too small (at least 16M)\n");
	expect_errors(HEAD RUN ", \"resources\": {\"disk\": \"17T\"}}",
		      ".resources.disk: \"17T\" is too large (at most 16T)\n");
	expect_errors(HEAD RUN ", \"resources\": {\"disk\": -1}}",
		      ".resources.disk: -1 is not a size (use e.g. 1G)\n");
	expect_errors(HEAD RUN ", \"resources\": {\"disk\": true}}",
		      ".resources.disk: expected a string or an integer, got boolean\n");
	expect_errors(
	    HEAD RUN ", \"resources\": {\"memory\": \"99999999999T\", \"cpus\": 0.0005}}",
	    ".resources.memory: \"99999999999T\" is too large\n"
	    ".resources.cpus: 0.0005 is not a cpu count (use e.g. 0.5 or 2, at most 3 decimals)\n");
	expect_errors("{\"apiVersion\": \"vslice/v2\", \"slice\": \"Bad_Name\", " RUN
		      ", \"image\": \"../x\", \"description\": 5}",
		      ".apiVersion: \"vslice/v2\" is not supported (use \"vslice/v1\")\n"
		      ".slice: \"Bad_Name\" is not a valid slice name (use [a-z][a-z0-9_-]{0,62}, "
		      "e.g. site_exp1)\n"
		      ".image: \"../x\" is not a valid image name (use [a-z][a-z0-9_-]{0,62})\n"
		      ".description: expected a string, got number\n");
	expect_errors(
	    HEAD RUN ", \"network\": \"nat\", \"policy\": \"defualt\"}",
	    ".network: \"nat\" is not a network mode (use none, bridge or host)\n"
	    ".policy: \"defualt\" is not a built-in policy (default, strict, unconfined) nor a "
	    "file next to the manifest (did you mean \"default\"?)\n");
	expect_errors(HEAD RUN ", \"env\": {\"1X\": \"a\", \"Y\": 1, \"Z\": null, \"OK_1\": \"\"}}",
		      ".env[\"1X\"]: not a valid variable name (use [A-Za-z_][A-Za-z0-9_]*)\n"
		      ".env.Y: expected a string, got number\n"
		      ".env.Z: expected a string, got null\n");
	expect_errors(HEAD "\"run\": {\"command\": [], \"timeout\": \"0\", \"workdir\": \"/a/\"}}",
		      ".run.command: must not be empty (give the program and its arguments)\n"
		      ".run.timeout: \"0\" must be more than 0\n"
		      ".run.workdir: \"/a/\" must be a normalized path (no \"..\", \".\", \"//\" "
		      "or trailing \"/\")\n");
	expect_errors(HEAD "\"run\": {\"command\": [\"\", 1, \"ok\"]}}",
		      ".run.command[0]: the program must not be empty\n"
		      ".run.command[1]: expected a string, got number\n");
	expect_errors(
	    HEAD "\"run\": {\"command\": \"\", \"restart\": \"always\", \"restart_limit\": -1}}",
	    ".run.command: must not be empty\n"
	    ".run.restart: \"always\" is not a restart policy (use never or on-failure)\n"
	    ".run.restart_limit: -1 is out of range (0 to 1000)\n");
	expect_errors(HEAD "\"run\": {\"command\": \"x\", \"restart_limit\": 2}}",
		      ".run.restart_limit: only allowed with \"restart\": \"on-failure\"\n");
	expect_errors(HEAD "\"run\": {}}", ".run.command: required\n");
	expect_errors(HEAD "\"run\": null}", ".run: expected an object, got null\n");
}

static void test_nodes(void **state)
{
	expect_errors(HEAD RUN ", \"nodes\": {}}",
		      ".nodes: needs \"count\" (with optional \"labels\") or \"names\"\n");
	expect_errors(
	    HEAD RUN ", \"nodes\": {\"count\": 2, \"names\": [\"a\"]}}",
	    ".nodes: give either \"count\" (with optional \"labels\") or \"names\", not both\n");
	expect_errors(
	    HEAD RUN ", \"nodes\": {\"names\": [\"a\", \"a\", \"-x\"], \"labels\": {}}}",
	    ".nodes.names[1]: \"a\" is listed twice\n"
	    ".nodes.names[2]: \"-x\" is not a valid node name (use "
	    "[A-Za-z0-9][A-Za-z0-9._-]{0,62})\n"
	    ".nodes.labels: only allowed with \"count\" (\"names\" picks the nodes already)\n");
	expect_errors(
	    HEAD RUN ", \"nodes\": {\"count\": 20000, \"labels\": {\"\": \"x\", \"k\": 1}}}",
	    ".nodes.count: 20000 is out of range (1 to 10000)\n"
	    ".nodes.labels[\"\"]: not a valid label name (use [A-Za-z0-9][A-Za-z0-9._/-]{0,62})\n"
	    ".nodes.labels.k: expected a string, got number\n");
}

static void test_files_paths_and_modes(void **state)
{
	expect_errors(
	    HEAD RUN
	    ", \"files\": [{\"path\": \"/\", \"content\": \"\"},"
	    "{\"path\": \"/sys/x\", \"content\": \"\"}, {\"path\": \"/x\", \"content\": \"\", "
	    "\"mode\": \"0o644\"},"
	    "{\"path\": \"/x\", \"content\": \"\"}, {\"path\": \"/x/y\", \"content\": \"\"},"
	    "{\"path\": \"/y\", \"content\": \"\", \"mode\": 1755}]}",
	    ".files[0].path: \"/\" must name a file or directory below /, not / itself\n"
	    ".files[1].path: \"/sys/x\" is under /proc, /sys or /dev, which the slice mounts over\n"
	    ".files[2].mode: \"0o644\" is not an octal mode (use e.g. \"0644\" or \"0755\")\n"
	    ".files[3].path: \"/x\" is already given by .files[2]\n"
	    ".files[4].path: \"/x/y\" conflicts with .files[2] (a file cannot also be a "
	    "directory)\n"
	    ".files[5].mode: 1755 has setuid, setgid or sticky bits (at most 0777)\n");
	expect_errors(
	    HEAD RUN ", \"results\": [\"/a\\nb\", \"/ok\", \"/x/./y\", \"//x\"]}",
	    ".results[0]: \"/a\\nb\" must not contain control characters\n"
	    ".results[2]: \"/x/./y\" must be a normalized path (no \"..\", \".\", \"//\" or "
	    "trailing \"/\")\n"
	    ".results[3]: \"//x\" must be a normalized path (no \"..\", \".\", \"//\" or "
	    "trailing \"/\")\n");
	struct manifest *m =
	    parse_ok(HEAD RUN ", \"files\": [{\"path\": \"/a\", \"content\": \"x\"},"
			      "{\"path\": \"/b\", \"content\": \"y\", \"mode\": 700},"
			      "{\"path\": \"/c\", \"content\": \"z\", \"mode\": \"0755\"},"
			      "{\"path\": \"/d\", \"content\": \"\", \"mode\": \"640\"}]}");
	assert_int_equal(m->nfiles, 4);
	assert_int_equal(m->files[0].mode, 0644);
	assert_int_equal(m->files[1].mode, 0700);
	assert_int_equal(m->files[2].mode, 0755);
	assert_int_equal(m->files[3].mode, 0640);
	assert_int_equal(m->files[3].len, 0);
	assert_null(m->files[0].source);
	manifest_free(m);
}

/* A temp dir: manifest dir "d" with a file, a symlink inside, a symlink out,
 * a FIFO, a subdir, and a secret next to d. */
/* The resolved form (cluster mode): files inline as base64, policy inline. */
static void test_resolved_form(void **state)
{
	/* base64 content decodes to bytes, NULs included */
	struct manifest *m = parse_ok(HEAD RUN ", \"files\": [{\"path\": \"/b\", \"content\": "
					       "\"AGhpAA==\", \"encoding\": \"base64\"}]}");
	assert_int_equal(m->files[0].len, 4);
	assert_memory_equal(m->files[0].data, "\0hi\0", 4);
	manifest_free(m);
	expect_errors(HEAD RUN ", \"files\": [{\"path\": \"/b\", \"content\": \"@@@\", "
			       "\"encoding\": \"base64\"}]}",
		      ".files[0].content: not valid base64 (with \"encoding\": \"base64\")\n");
	expect_errors(HEAD RUN ", \"files\": [{\"path\": \"/b\", \"content\": \"x\", "
			       "\"encoding\": \"gzip\"}]}",
		      ".files[0].encoding: \"gzip\" is not an encoding (use text or base64)\n");

	/* an inline policy is compiled at parse time */
	m = parse_ok(HEAD RUN ", \"policy\": {\"defaultAction\": \"SCMP_ACT_ALLOW\", "
			      "\"syscalls\": [{\"names\": [\"ptrace\"], \"action\": "
			      "\"SCMP_ACT_ERRNO\"}]}}");
	assert_null(m->policy);
	assert_non_null(m->policy_json);
	assert_non_null(strstr(m->policy_json, "ptrace"));
	/* ... and handed to the slice by the one conversion */
	struct slice_spec spec;
	struct vs_error serr;
	assert_int_equal(experiment_spec(m, &spec, &serr), 0);
	assert_string_equal(spec.policy, "default");
	assert_string_equal(spec.policy_text, m->policy_json);
	slice_spec_free(&spec);
	manifest_free(m);

	/* no manifest directory: nothing is read from disk */
	struct manifest *r = (struct manifest *)0x1;
	struct manifest_errors e = {0};
	const char *src = HEAD RUN ", \"files\": [{\"path\": \"/x\", \"source\": \"run.sh\"}]}";
	assert_int_equal(manifest_parse(src, strlen(src), NULL, &r, &e), -EINVAL);
	assert_null(r);
	assert_string_equal(e.v[0].path, ".files[0].source");
	assert_non_null(strstr(e.v[0].message, "not allowed in a submitted manifest"));
	manifest_errors_free(&e);

	/* resolve: a manifest with source files round-trips to the same bytes */
	struct manifest_errors e2 = {0};
	m = NULL;
	assert_int_equal(manifest_load_file("docs/examples/hello.json", &m, &e2), 0);
	struct vs_error err;
	json_t *j = manifest_resolve(m, &err);
	assert_non_null(j);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	assert_null(strstr(text, "\"source\""));
	r = NULL;
	assert_int_equal(manifest_parse(text, strlen(text), NULL, &r, &e2), 0);
	assert_int_equal(r->nfiles, m->nfiles);
	for (size_t i = 0; i < m->nfiles; i++) {
		assert_string_equal(r->files[i].path, m->files[i].path);
		assert_int_equal(r->files[i].len, m->files[i].len);
		assert_memory_equal(r->files[i].data, m->files[i].data, m->files[i].len);
		assert_int_equal(r->files[i].mode, m->files[i].mode);
	}
	assert_string_equal(r->name, m->name);
	assert_int_equal(r->nresults, m->nresults);
	free(text);
	manifest_free(r);
	manifest_free(m);
	manifest_errors_free(&e2);
}

static char tmpdir[64];
static char mdir[96];

static void write_file(const char *path, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int setup_tmp(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_manifest.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(mdir, sizeof(mdir), "%s/d", tmpdir);
	char p[256];
	mkdir(mdir, 0755);
	snprintf(p, sizeof(p), "%s/secret", tmpdir);
	write_file(p, 10);
	snprintf(p, sizeof(p), "%s/sub", mdir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/sub/in.txt", mdir);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "inside\n", 7) != 7)
		return -1;
	close(fd);
	snprintf(p, sizeof(p), "%s/link-in", mdir);
	if (symlink("sub/in.txt", p) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/link-out", mdir);
	if (symlink("../secret", p) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/link-abs", mdir);
	if (symlink("/etc/passwd", p) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/sub/link-up", mdir);
	if (symlink("../../secret", p) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/fifo", mdir);
	if (mkfifo(p, 0644) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/big", mdir);
	write_file(p, MANIFEST_FILE_MAX + 1);
	snprintf(p, sizeof(p), "%s/max", mdir);
	write_file(p, MANIFEST_FILE_MAX);
	return 0;
}

static int teardown_tmp(void **state)
{
	struct vs_error err;
	vs_rm_rf(tmpdir, &err);
	return 0;
}

static void test_source_cannot_escape(void **state)
{
	expect_errors_in(
	    mdir,
	    HEAD RUN ", \"files\": ["
		     "{\"path\": \"/1\", \"source\": \"../secret\"},"
		     "{\"path\": \"/2\", \"source\": \"sub/../../secret\"},"
		     "{\"path\": \"/3\", \"source\": \"link-out\"},"
		     "{\"path\": \"/4\", \"source\": \"link-abs\"},"
		     "{\"path\": \"/5\", \"source\": \"sub/link-up\"},"
		     "{\"path\": \"/6\", \"source\": \"/etc/passwd\"},"
		     "{\"path\": \"/7\", \"source\": \"\"},"
		     "{\"path\": \"/8\", \"source\": \"sub\"},"
		     "{\"path\": \"/9\", \"source\": \"fifo\"},"
		     "{\"path\": \"/10\", \"source\": \"nope\"}]}",
	    ".files[0].source: \"../secret\" leaves the manifest's directory (no \"..\" allowed)\n"
	    ".files[1].source: \"sub/../../secret\" leaves the manifest's directory (no \"..\" "
	    "allowed)\n"
	    ".files[2].source: \"link-out\" leaves the manifest's directory (through a symlink)\n"
	    ".files[3].source: \"link-abs\" leaves the manifest's directory (through a symlink)\n"
	    ".files[4].source: \"sub/link-up\" leaves the manifest's directory (through a "
	    "symlink)\n"
	    ".files[5].source: \"/etc/passwd\" is absolute (use a path relative to the manifest's "
	    "directory)\n"
	    ".files[6].source: must not be empty\n"
	    ".files[7].source: \"sub\" is not a regular file\n"
	    ".files[8].source: \"fifo\" is not a regular file\n"
	    ".files[9].source: cannot open \"nope\" next to the manifest: No such file or "
	    "directory\n");
	/* Symlinks that stay inside are fine. */
	struct manifest *m =
	    parse_ok_in(mdir, HEAD RUN ", \"files\": ["
				       "{\"path\": \"/a\", \"source\": \"link-in\"},"
				       "{\"path\": \"/b\", \"source\": \"sub/in.txt\"}]}");
	assert_int_equal(m->files[0].len, 7);
	assert_memory_equal(m->files[0].data, "inside\n", 7);
	assert_string_equal((char *)m->files[1].data, "inside\n");
	manifest_free(m);
	/* Same rules for a policy file. */
	expect_errors_in(
	    mdir, HEAD RUN ", \"policy\": \"link-out\"}",
	    ".policy: \"link-out\" leaves the manifest's directory (through a symlink)\n");
	m = parse_ok_in(mdir, HEAD RUN ", \"policy\": \"link-in\"}");
	cleanup_free char *real = realpath(mdir, NULL);
	assert_non_null(real);
	cleanup_free char *want = vs_xasprintf("%s/sub/in.txt", real);
	assert_string_equal(m->policy, want);
	manifest_free(m);
}

static void test_size_limits(void **state)
{
	/* Inline content of 1 MiB is fine, one byte more is not. */
	size_t n = MANIFEST_FILE_MAX + 1;
	cleanup_free char *json = vs_xmalloc(n + 256);
	int off = sprintf(json, HEAD RUN ", \"files\": [{\"path\": \"/x\", \"content\": \"");
	memset(json + off, 'a', n);
	strcpy(json + off + n, "\"}]}");
	expect_errors(json, ".files[0].content: too large (1048577 bytes, at most 1 MiB)\n");
	strcpy(json + off + n - 1, "\"}]}");
	struct manifest *m = parse_ok(json);
	assert_int_equal(m->files[0].len, MANIFEST_FILE_MAX);
	manifest_free(m);

	/* Sources: 1 MiB ok, more refused; 16 MiB in total. */
	expect_errors_in(mdir, HEAD RUN ", \"files\": [{\"path\": \"/x\", \"source\": \"big\"}]}",
			 ".files[0].source: \"big\" is too large (1048577 bytes, at most 1 MiB)\n");
	m = parse_ok_in(mdir, HEAD RUN ", \"files\": [{\"path\": \"/x\", \"source\": \"max\"}]}");
	assert_int_equal(m->files[0].len, MANIFEST_FILE_MAX);
	manifest_free(m);
	char *p = json + sprintf(json, HEAD RUN ", \"files\": [");
	for (int i = 0; i < 17; i++)
		p += sprintf(p, "%s{\"path\": \"/f%d\", \"source\": \"max\"}", i ? "," : "", i);
	strcpy(p, "]}");
	expect_errors_in(mdir, json, ".files[16].source: files together exceed 16 MiB\n");

	/* The manifest itself: at most 4 MiB. */
	struct manifest_errors e = {0};
	assert_int_equal(manifest_parse("{}", MANIFEST_MAX_SIZE + 1, tmpdir, &m, &e), -EFBIG);
	assert_null(m);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.v[0].message, "manifest is too large (4194305 bytes, at most 4 MiB)");
	manifest_errors_free(&e);
	char big[256];
	snprintf(big, sizeof(big), "%s/big.json", tmpdir);
	write_file(big, MANIFEST_MAX_SIZE + 1);
	assert_int_equal(manifest_load_file(big, &m, &e), -EFBIG);
	assert_int_equal(e.n, 1);
	manifest_errors_free(&e);

	/* Too many files / results. */
	cleanup_free char *many = vs_xmalloc(64 * 1024);
	p = many + sprintf(many, HEAD RUN ", \"results\": [");
	for (int i = 0; i <= MANIFEST_RESULTS_MAX; i++)
		p += sprintf(p, "%s\"/r%d\"", i ? "," : "", i);
	strcpy(p, "]}");
	expect_errors(many, ".results: too many entries (257, at most 256)\n");
}

static void test_error_cap(void **state)
{
	/* 150 unknown keys: 100 kept, the rest counted. */
	cleanup_free char *json = vs_xmalloc(8192);
	char *p = json + sprintf(json, HEAD RUN);
	for (int i = 0; i < 150; i++)
		p += sprintf(p, ", \"zz%d\": 1", i);
	strcpy(p, "}");
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	assert_int_equal(manifest_parse(json, strlen(json), NULL, &m, &e), -EINVAL);
	assert_int_equal(e.n, MANIFEST_ERRORS_MAX);
	assert_int_equal(e.dropped, 50);
	cleanup_free char *out = render(&e);
	assert_non_null(strstr(out, "... and 50 more errors\n"));
	manifest_errors_free(&e);
}

static void test_lifetime_and_expires(void **state)
{
	expect_errors(HEAD RUN ", \"lifetime\": \"2h\", \"expires\": \"2099-01-01T00:00:00Z\"}",
		      ".expires: conflicts with .lifetime (give one of them)\n");
	expect_errors(HEAD RUN ", \"expires\": \"2001-01-01T00:00:00Z\"}",
		      ".expires: \"2001-01-01T00:00:00Z\" is in the past\n");
	expect_errors(HEAD RUN ", \"expires\": \"2099-02-30T00:00:00Z\"}",
		      ".expires: \"2099-02-30T00:00:00Z\" is not an RFC 3339 timestamp (use e.g. "
		      "2026-12-01T18:00:00Z)\n");
	expect_errors(HEAD RUN ", \"expires\": \"2099-01-01 00:00:00\"}",
		      ".expires: \"2099-01-01 00:00:00\" is not an RFC 3339 timestamp (use e.g. "
		      "2026-12-01T18:00:00Z)\n");
	expect_errors(HEAD RUN ", \"expires\": \"9999-12-31T23:59:59Z\"}",
		      ".expires: \"9999-12-31T23:59:59Z\" is too far in the future\n");
	expect_errors(HEAD RUN ", \"lifetime\": \"2 hours\"}",
		      ".lifetime: \"2 hours\" is not a duration (use e.g. 30s, 10m, 2h, 14d)\n");
	expect_errors(HEAD RUN ", \"lifetime\": 7200}",
		      ".lifetime: expected a string, got number\n");

	struct manifest *m = parse_ok(HEAD RUN "}");
	assert_int_equal(m->lifetime_secs, MANIFEST_DEFAULT_LIFETIME);
	assert_int_equal(m->expires, 0);
	manifest_free(m);

	m = parse_ok(HEAD RUN ", \"expires\": \"2099-06-01T12:00:00.250+02:00\"}");
	/* 2099-06-01T10:00:00Z */
	assert_int_equal(m->expires, 4083991200);
	assert_int_equal(m->lifetime_secs, 0);
	struct slice_spec spec;
	struct vs_error err;
	assert_int_equal(experiment_spec(m, &spec, &err), 0);
	uint64_t left = (uint64_t)(4083991200 - time(NULL));
	assert_true(spec.lifetime_secs >= left - 5 && spec.lifetime_secs <= left);
	slice_spec_free(&spec);
	/* Expired between parse and conversion. */
	m->expires = time(NULL) - 1;
	assert_int_equal(experiment_spec(m, &spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "has passed"));
	assert_null(spec.argv);
	manifest_free(m);
}

static void test_to_spec(void **state)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	assert_int_equal(manifest_load_file(FIXTURES "/good/full.json", &m, &e), 0);
	struct slice_spec spec;
	struct vs_error err;
	assert_int_equal(experiment_spec(m, &spec, &err), 0);
	assert_string_equal(spec.name, "site_full");
	assert_string_equal(spec.hostname, "site-full");
	assert_string_equal(spec.image, "busybox");
	assert_true(spec.policy[0] == '/');
	assert_non_null(strstr(spec.policy, "/tests/unit/data/manifests/good/data/policy.json"));
	assert_string_equal(spec.workdir, "/opt/x");
	assert_int_equal(spec.cpu_millis, 1500);
	assert_int_equal(spec.memory_bytes, 256u << 20);
	assert_int_equal(spec.pids_max, 100);
	assert_int_equal(spec.disk_bytes, 1ull << 30);
	assert_string_equal(m->network, "bridge");
	assert_int_equal(spec.net, SLICE_NET_BRIDGE);
	assert_string_equal(spec.env[0], "A=1");
	assert_string_equal(spec.env[1], "_B=two words");
	assert_string_equal(spec.env[2], "C=");
	assert_null(spec.env[3]);
	assert_string_equal(spec.argv[0], "/bin/sh");
	assert_string_equal(spec.argv[2], "cat /opt/x/input.txt");
	assert_null(spec.argv[3]);
	assert_int_equal(spec.timeout_secs, 90);
	assert_int_equal(spec.restart_max, 5);
	assert_true(spec.lifetime_secs > 0);
	slice_spec_free(&spec);

	/* The manifest keeps nodes, files and results. */
	assert_true(m->nodes_given);
	assert_int_equal(m->node_count, 2);
	assert_int_equal(m->nlabels, 2);
	assert_string_equal(m->labels[1].key, "kernel/min");
	assert_int_equal(m->nfiles, 3);
	assert_string_equal((char *)m->files[0].data, "input data\n");
	assert_int_equal(m->files[1].mode, 0755);
	assert_int_equal(m->files[2].mode, 0600);
	assert_int_equal(m->nresults, 2);
	manifest_free(m);

	/* Defaults; a string command runs under /bin/sh -c. */
	m = parse_ok(HEAD
		     "\"run\": {\"command\": \"echo $HOME > /x\", \"restart\": \"on-failure\"}}");
	assert_int_equal(experiment_spec(m, &spec, &err), 0);
	assert_string_equal(spec.image, "busybox");
	assert_string_equal(spec.hostname, "t");
	assert_string_equal(spec.policy, "default");
	assert_null(spec.workdir);
	assert_int_equal(spec.cpu_millis, 0);
	assert_int_equal(spec.memory_bytes, 0);
	assert_int_equal(spec.disk_bytes, 0);
	assert_string_equal(m->network, "none");
	assert_int_equal(spec.net, SLICE_NET_NONE);
	assert_non_null(spec.env);
	assert_null(spec.env[0]);
	assert_string_equal(spec.argv[0], "/bin/sh");
	assert_string_equal(spec.argv[1], "-c");
	assert_string_equal(spec.argv[2], "echo $HOME > /x");
	assert_null(spec.argv[3]);
	assert_int_equal(spec.restart_max, 3);
	assert_int_equal(spec.lifetime_secs, MANIFEST_DEFAULT_LIFETIME);
	assert_false(m->nodes_given);
	slice_spec_free(&spec);
	manifest_free(m);

	m = parse_ok(HEAD "\"run\": {\"command\": [\"/bin/true\"], \"restart\": \"never\"}}");
	assert_int_equal(experiment_spec(m, &spec, &err), 0);
	assert_int_equal(spec.restart_max, 0);
	assert_string_equal(spec.argv[0], "/bin/true");
	assert_null(spec.argv[1]);
	slice_spec_free(&spec);
	manifest_free(m);
}

static void test_load_file_errors(void **state)
{
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	assert_int_equal(manifest_load_file("/nonexistent/x.json", &m, &e), -ENOENT);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.v[0].message,
			    "cannot open /nonexistent/x.json: No such file or directory");
	manifest_errors_free(&e);
	assert_int_equal(manifest_load_file(FIXTURES, &m, &e), -EINVAL);
	assert_non_null(strstr(e.v[0].message, "is not a regular file"));
	manifest_errors_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_examples_validate),
	    cmocka_unit_test(test_hello_example),
	    cmocka_unit_test(test_fixtures),
	    cmocka_unit_test(test_resolved_form),
	    cmocka_unit_test(test_many_errors_at_once),
	    cmocka_unit_test(test_syntax_error_line_column),
	    cmocka_unit_test(test_syntax_error_comment),
	    cmocka_unit_test(test_where_am_i_reserved),
	    cmocka_unit_test(test_unknown_keys_did_you_mean),
	    cmocka_unit_test(test_types_and_values),
	    cmocka_unit_test(test_nodes),
	    cmocka_unit_test(test_files_paths_and_modes),
	    cmocka_unit_test(test_source_cannot_escape),
	    cmocka_unit_test(test_size_limits),
	    cmocka_unit_test(test_error_cap),
	    cmocka_unit_test(test_lifetime_and_expires),
	    cmocka_unit_test(test_to_spec),
	    cmocka_unit_test(test_load_file_errors),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
