/*
 * manifest.c - parse and validate experiment manifests (docs/manifest.md).
 *
 * The validator walks the JSON document once, in document order, and keeps
 * going after a problem: a researcher fixing a manifest should see every
 * error in one run, each named by its JSON path. Nothing from a failed parse
 * survives: the half-built struct manifest is freed and only the error list
 * is returned.
 *
 * Hostile input is expected (manifests come from users and, in cluster mode,
 * over the network): the text is bounded (MANIFEST_MAX_SIZE), duplicate keys
 * are refused by jansson, every number is range-checked, every path inside
 * the slice is normalized, and files read from next to the manifest are
 * opened with openat2(RESOLVE_BENEATH) below the manifest's directory, with
 * O_NONBLOCK so a FIFO cannot hang the parser, and size-checked on the fd.
 * Anything echoed back in a message is quoted and escaped (no terminal
 * escapes from a manifest) and truncated.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <nettle/base64.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "vslice/caps.h"
#include "vslice/json.h"
#include "vslice/manifest.h"
#include "vslice/netcfg.h"
#include "vslice/seccomp_policy.h"
#include "vslice/sliver.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define QUOTE_MAX	  60 /* bytes of a user string echoed in a message */
#define DESCRIPTION_MAX	  4096
#define ARG_STRLEN_MAX	  (128u << 10) /* kernel MAX_ARG_STRLEN, NUL included */
#define EXEC_TOTAL_MAX	  (1u << 20)   /* argv + env, well under the exec limit */
#define NODES_MAX	  10000
#define LABELS_MAX	  64
#define LABEL_VALUE_MAX	  256
#define PIDS_MAX	  4194304 /* PID_MAX_LIMIT */
#define RESTART_LIMIT_MAX 1000
#define MEMORY_MIN	  (4u << 20) /* slice_spec_check refuses less */
#define SLICE_PATH_MAX	  4095
#define EXPIRES_AHEAD_MAX ((uint64_t)INT32_MAX * 16) /* as far as a duration may reach */

/* ------------------------------------------------------------------ */
/* Error list                                                          */

static void errs_push(struct manifest_errors *e, const char *path, int line, int col, char *msg)
{
	if (e->n >= MANIFEST_ERRORS_MAX) {
		e->dropped++;
		free(msg);
		return;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		struct manifest_error *v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			abort();
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n++] = (struct manifest_error){
	    .path = vs_xstrdup(path),
	    .message = msg,
	    .line = line,
	    .column = col,
	};
}

void manifest_errors_free(struct manifest_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].path);
		free(errs->v[i].message);
	}
	free(errs->v);
	memset(errs, 0, sizeof(*errs));
}

void manifest_errors_print(const struct manifest_errors *errs, FILE *f, const char *prefix)
{
	for (size_t i = 0; i < errs->n; i++) {
		const struct manifest_error *e = &errs->v[i];
		if (e->line > 0)
			fprintf(f, "%s%s%d:%d: %s\n", prefix ? prefix : "", prefix ? ":" : "",
				e->line, e->column, e->message);
		else if (e->path[0])
			fprintf(f, "%s%s%s: %s\n", prefix ? prefix : "", prefix ? ": " : "",
				e->path, e->message);
		else
			fprintf(f, "%s%s%s\n", prefix ? prefix : "", prefix ? ": " : "",
				e->message);
	}
	if (errs->dropped)
		fprintf(f, "%s%s... and %zu more error%s\n", prefix ? prefix : "",
			prefix ? ": " : "", errs->dropped, errs->dropped == 1 ? "" : "s");
}

/* ------------------------------------------------------------------ */
/* Quoting user text for messages and paths                            */

/* "s" with \" \\ \n \t and \xNN escapes, cut after QUOTE_MAX bytes. */
static char *quote(const char *s, size_t len)
{
	size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;
	char *out = vs_xmalloc(n * 4 + 8);
	char *o = out;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else if (c == '\t') {
			*o++ = '\\';
			*o++ = 't';
		} else if (c < 0x20 || c >= 0x7f) {
			o += sprintf(o, "\\x%02x", c);
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	if (n < len) {
		memcpy(o, "...", 3);
		o += 3;
	}
	*o = '\0';
	return out;
}

static char *quote_str(const char *s)
{
	return quote(s, strlen(s));
}

static bool is_ident(const char *s, size_t len)
{
	if (len == 0 || len > 64 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* path + ".key" (or ["key"] when key is not an identifier). */
static char *path_key(const char *path, const char *key)
{
	size_t len = strlen(key);
	if (is_ident(key, len))
		return vs_xasprintf("%s.%s", path, key);
	cleanup_free char *q = quote(key, len);
	return vs_xasprintf("%s%s[%s]", path, path[0] ? "" : ".", q);
}

static char *path_index(const char *path, size_t i)
{
	return vs_xasprintf("%s[%zu]", path, i);
}

/* ------------------------------------------------------------------ */
/* Did-you-mean                                                        */

/* Optimal string alignment distance (Levenshtein + adjacent swaps), case-insensitive. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]),
			    cb = tolower((unsigned char)b[j - 1]);
			size_t cost = ca != cb;
			size_t best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* The closest of the NULL-terminated candidates, if close enough to be a typo. */
static const char *closest(const char *word, const char *const *cands)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	for (const char *const *c = cands; *c; c++) {
		size_t d = edit_distance(word, *c);
		size_t len = strlen(*c);
		size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
		if (d <= limit && d < best_d) {
			best = *c;
			best_d = d;
		}
	}
	return best;
}

struct alias {
	const char *from, *to;
};

/* Keys people write from other tools, mapped to ours. */
static const struct alias key_aliases[] = {
    {"name", "slice"},
    {"version", "apiVersion"},
    {"api_version", "apiVersion"},
    {"api", "apiVersion"},
    {"command", "run.command"},
    {"cmd", "run.command"},
    {"args", "run.command"},
    {"cpus", "resources.cpus"},
    {"memory", "resources.memory"},
    {"pids", "resources.pids"},
    {"disk", "resources.disk"},
    {"net", "network"},
    {"environment", "env"},
    {"ttl", "lifetime"},
    {"expiry", "expires"},
    {"expire_at", "expires"},
    {"timeout", "run.timeout"},
    {"workdir", "run.workdir"},
    {"restart", "run.restart"},
    {"seccomp", "policy"},
    {"outputs", "results"},
    {"output", "results"},
    {"cpu", "cpus"},
    {"mem", "memory"},
    {"ram", "memory"},
    {"pid", "pids"},
    {"cwd", "workdir"},
    {"dir", "workdir"},
    {"src", "source"},
    {"file", "source"},
    {"dest", "path"},
    {"target", "path"},
    {"perm", "mode"},
    {"permissions", "mode"},
    {"data", "content"},
    {"retries", "restart_limit"},
    {"max_restarts", "restart_limit"},
    {"node", "names"},
    {"nodes", "names"},
    {"selector", "labels"},
    {"args", "command"},
    {"cmd", "command"},
};

/* Suggestion for an unknown key among allowed ones (an alias only if it
 * names an allowed key at this level, or a key elsewhere when at top). */
static const char *suggest_key(const char *key, const char *const *allowed, bool top)
{
	const char *c = closest(key, allowed);
	if (c)
		return c;
	for (size_t i = 0; i < VS_ARRAY_SIZE(key_aliases); i++) {
		if (strcmp(key, key_aliases[i].from))
			continue;
		const char *to = key_aliases[i].to;
		if (strchr(to, '.') && top)
			return to;
		for (const char *const *a = allowed; *a; a++)
			if (!strcmp(*a, to))
				return to;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Parse context                                                       */

struct ctx {
	struct manifest_errors *errs;
	unsigned nerrors;
	struct manifest *m;
	const char *base_arg;
	int base_fd; /* -1 not opened yet, -2 failed (base_errno) */
	int base_errno;
	char *base_abs;
	size_t files_total;
	bool have_lifetime, have_expires, have_run;
	bool resolved; /* no manifest directory (base_dir NULL): nothing read from disk */
};

static void fail(struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record "<path>: <message>"; path "" stands for the whole document ("."). */
static void fail(struct ctx *c, const char *path, const char *fmt, ...)
{
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	c->nerrors++;
	errs_push(c->errs, path[0] ? path : ".", 0, 0, msg);
}

enum {
	T_OBJECT = 1,
	T_ARRAY = 2,
	T_STRING = 4,
	T_INTEGER = 8,
	T_NUMBER = 16,
	T_BOOLEAN = 32,
};

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

static int type_bit(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return T_OBJECT;
	case JSON_ARRAY:
		return T_ARRAY;
	case JSON_STRING:
		return T_STRING;
	case JSON_INTEGER:
		return T_INTEGER | T_NUMBER;
	case JSON_REAL:
		return T_NUMBER;
	case JSON_TRUE:
	case JSON_FALSE:
		return T_BOOLEAN;
	default:
		return 0;
	}
}

/* Is v one of the types in mask? If not, say what was expected. */
static bool want(struct ctx *c, const char *path, const json_t *v, int mask)
{
	if (type_bit(v) & mask)
		return true;
	static const struct {
		int bit;
		const char *name;
	} names[] = {
	    {T_OBJECT, "an object"},   {T_ARRAY, "an array"},  {T_STRING, "a string"},
	    {T_INTEGER, "an integer"}, {T_NUMBER, "a number"}, {T_BOOLEAN, "a boolean"},
	};
	char exp[128] = "";
	size_t k = 0, total = 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++)
		total += (mask & names[i].bit) != 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(names); i++) {
		if (!(mask & names[i].bit))
			continue;
		size_t l = strlen(exp);
		snprintf(exp + l, sizeof(exp) - l, "%s%s",
			 k == 0		  ? ""
			 : k + 1 == total ? " or "
					  : ", ",
			 names[i].name);
		k++;
	}
	if (json_is_real(v) && (mask & T_INTEGER))
		fail(c, path, "expected %s, got %.15g", exp, json_real_value(v));
	else
		fail(c, path, "expected %s, got %s", exp, type_name(v));
	return false;
}

/* Walk obj's keys in document order; unknown keys are errors with a
 * suggestion. For a known key, fn(c, child_path, index_in_allowed, value). */
typedef void (*key_fn)(struct ctx *c, const char *path, int key, json_t *v, void *arg);

static void walk_object(struct ctx *c, const char *path, json_t *obj, const char *const *allowed,
			key_fn fn, void *arg)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		cleanup_free char *kp = path_key(path, key);
		int idx = -1;
		for (int i = 0; allowed[i]; i++)
			if (!strcmp(allowed[i], key)) {
				idx = i;
				break;
			}
		if (idx >= 0) {
			fn(c, kp, idx, v, arg);
			continue;
		}
		const char *s = suggest_key(key, allowed, path[0] == '\0');
		if (s) {
			fail(c, kp, "unknown key (did you mean \"%s\"?)", s);
		} else {
			char list[512] = "";
			for (int i = 0; allowed[i]; i++) {
				size_t l = strlen(list);
				snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "",
					 allowed[i]);
			}
			fail(c, kp, "unknown key (expected one of: %s)", list);
		}
	}
}

/* An enum string: the value's index in vals, or -1 after an error. */
static int want_enum(struct ctx *c, const char *path, json_t *v, const char *what,
		     const char *const *vals)
{
	if (!want(c, path, v, T_STRING))
		return -1;
	const char *s = json_string_value(v);
	for (int i = 0; vals[i]; i++)
		if (!strcmp(s, vals[i]))
			return i;
	char list[256] = "";
	for (int i = 0; vals[i]; i++) {
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s%s",
			 i == 0	       ? ""
			 : vals[i + 1] ? ", "
				       : " or ",
			 vals[i]);
	}
	cleanup_free char *q = quote(s, json_string_length(v));
	const char *sug = closest(s, vals);
	if (sug)
		fail(c, path, "%s is not %s (use %s; did you mean \"%s\"?)", q, what, list, sug);
	else
		fail(c, path, "%s is not %s (use %s)", q, what, list);
	return -1;
}

/* A duration string > 0 into *out. */
static bool want_duration(struct ctx *c, const char *path, json_t *v, uint64_t *out)
{
	if (!want(c, path, v, T_STRING))
		return false;
	const char *s = json_string_value(v);
	cleanup_free char *q = quote(s, json_string_length(v));
	struct vs_error e;
	uint64_t secs;
	if (vs_parse_duration(s, &secs, &e) < 0) {
		if (e.code == ERANGE)
			fail(c, path, "%s is too large", q);
		else
			fail(c, path, "%s is not a duration (use e.g. 30s, 10m, 2h, 14d)", q);
		return false;
	}
	if (secs == 0) {
		fail(c, path, "%s must be more than 0", q);
		return false;
	}
	*out = secs;
	return true;
}

/* A string of at most max bytes (sets *out to the jansson-owned text). */
static bool want_string(struct ctx *c, const char *path, json_t *v, size_t max, const char **out)
{
	if (!want(c, path, v, T_STRING))
		return false;
	if (json_string_length(v) > max) {
		fail(c, path, "too long (%zu bytes, at most %zu)", json_string_length(v), max);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* An integer in [lo, hi]. */
static bool want_int(struct ctx *c, const char *path, json_t *v, json_int_t lo, json_int_t hi,
		     json_int_t *out)
{
	if (!want(c, path, v, T_INTEGER))
		return false;
	json_int_t x = json_integer_value(v);
	if (x < lo || x > hi) {
		fail(c, path, "%lld is out of range (%lld to %lld)", (long long)x, (long long)lo,
		     (long long)hi);
		return false;
	}
	*out = x;
	return true;
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */

const char *manifest_check_slice_path(const char *p)
{
	if (p[0] != '/')
		return "must be an absolute path inside the slice (starting with /)";
	if (strlen(p) > SLICE_PATH_MAX)
		return "is longer than 4095 bytes";
	if (p[1] == '\0')
		return "must name a file or directory below /, not / itself";
	for (const char *s = p; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return "must not contain control characters";
	for (const char *s = p + 1;;) {
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return "must be a normalized path (no \"..\", \".\", \"//\" or trailing "
			       "\"/\")";
		if (n > NAME_MAX)
			return "has a component longer than 255 bytes";
		if (!*e)
			break;
		s = e + 1;
	}
	static const char *const mounted[] = {"/proc", "/sys", "/dev"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(mounted); i++) {
		size_t l = strlen(mounted[i]);
		if (!strncmp(p, mounted[i], l) && (p[l] == '/' || p[l] == '\0'))
			return "is under /proc, /sys or /dev, which the slice mounts over";
	}
	return NULL;
}

/* A path relative to the manifest's directory that cannot leave it. */
static bool check_rel_path(struct ctx *c, const char *path, const char *p, size_t len)
{
	cleanup_free char *q = quote(p, len);
	if (len == 0) {
		fail(c, path, "must not be empty");
		return false;
	}
	if (p[0] == '/') {
		fail(c, path, "%s is absolute (use a path relative to the manifest's directory)",
		     q);
		return false;
	}
	if (len > PATH_MAX - 1) {
		fail(c, path, "too long (%zu bytes)", len);
		return false;
	}
	for (const char *s = p;;) {
		const char *e = strchrnul(s, '/');
		size_t n = (size_t)(e - s);
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			fail(c, path, "%s leaves the manifest's directory (no \"..\" allowed)", q);
			return false;
		}
		if (n == 0 || (n == 1 && s[0] == '.')) {
			fail(c, path,
			     "%s must be a normalized relative path (no \".\", \"//\" or trailing "
			     "\"/\")",
			     q);
			return false;
		}
		if (!*e)
			break;
		s = e + 1;
	}
	return true;
}

static int base_dir_fd(struct ctx *c)
{
	if (c->base_fd == -1) {
		const char *b = c->base_arg ? c->base_arg : ".";
		c->base_fd = open(b, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (c->base_fd < 0) {
			c->base_errno = errno;
			c->base_fd = -2;
		}
	}
	return c->base_fd;
}

/* Open rel (checked by check_rel_path) below the base directory; symlinks
 * may point anywhere below it, never out. Returns fd or -errno. */
static int open_beneath(int dirfd, const char *rel)
{
	struct open_how how = {
	    .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	if (errno != ENOSYS)
		return -errno;
	/* Before Linux 5.6: walk the components, following no symlink at all. */
	cleanup_free char *copy = vs_xstrdup(rel);
	cleanup_close int cur = -1;
	int at = dirfd;
	char *save = NULL;
	for (char *comp = strtok_r(copy, "/", &save); comp;) {
		char *next = strtok_r(NULL, "/", &save);
		int nfd = openat(at, comp,
				 next ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
				      : O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (nfd < 0)
			return -errno;
		if (cur >= 0)
			close(cur);
		cur = nfd;
		at = nfd;
		comp = next;
		if (!next)
			return steal_fd(&cur);
	}
	return -ENOENT;
}

/* Open a file named relative to the manifest for path; NULL-safe error reports. */
static int open_rel(struct ctx *c, const char *path, const char *rel, size_t len)
{
	if (c->resolved) {
		fail(c, path,
		     "not allowed in a submitted manifest (no manifest directory here; slicectl "
		     "inlines such files)");
		return -1;
	}
	if (!check_rel_path(c, path, rel, len))
		return -1;
	cleanup_free char *q = quote(rel, len);
	int dfd = base_dir_fd(c);
	if (dfd < 0) {
		cleanup_free char *qb = quote_str(c->base_arg ? c->base_arg : ".");
		fail(c, path, "cannot open the manifest's directory %s: %s", qb,
		     strerror(c->base_errno));
		return -1;
	}
	int fd = open_beneath(dfd, rel);
	if (fd == -EXDEV || fd == -ELOOP) {
		fail(c, path, "%s leaves the manifest's directory (through a symlink)", q);
		return -1;
	}
	if (fd < 0) {
		fail(c, path, "cannot open %s next to the manifest: %s", q, strerror(-fd));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fail(c, path, "%s is not a regular file", q);
		close(fd);
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------------ */
/* Sections                                                            */

static const char *const top_keys[] = {
    "apiVersion", "slice",   "description", "lifetime", "expires", "nodes",   "image", "resources",
    "policy",	  "network", "env",	    "files",	"run",	   "results", NULL,
};
enum {
	K_API,
	K_SLICE,
	K_DESC,
	K_LIFETIME,
	K_EXPIRES,
	K_NODES,
	K_IMAGE,
	K_RESOURCES,
	K_POLICY,
	K_NETWORK,
	K_ENV,
	K_FILES,
	K_RUN,
	K_RESULTS
};

static const char *const node_keys[] = {"count", "labels", "names", NULL};
static const char *const resource_keys[] = {"cpus", "memory", "pids", "disk", NULL};
static const char *const file_keys[] = {"path", "content", "source", "mode", "encoding", NULL};
static const char *const run_keys[] = {
    "command", "workdir", "timeout", "restart", "restart_limit", NULL,
};

static bool days_ok(int y, int mon, int d)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int max = mdays[mon - 1];
	if (mon == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		max = 29;
	return d >= 1 && d <= max;
}

/* RFC 3339 date-time: 2026-12-01T18:00:00Z, ...T18:00:00.5+02:00. */
static int parse_rfc3339(const char *s, time_t *out)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t i = 0; i < sizeof(pat) - 1; i++) {
		char p = pat[i], ch = s[i];
		if (p == 'd'   ? !isdigit((unsigned char)ch)
		    : p == 'T' ? (ch != 'T' && ch != 't')
			       : ch != p)
			return -1;
	}
	int y = atoi(s), mon = atoi(s + 5), d = atoi(s + 8);
	int h = atoi(s + 11), mi = atoi(s + 14), sec = atoi(s + 17);
	const char *p = s + 19;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return -1;
		for (p++; isdigit((unsigned char)*p); p++)
			;
	}
	long off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
		    !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
			return -1;
		int oh = (p[1] - '0') * 10 + (p[2] - '0'), om = (p[4] - '0') * 10 + (p[5] - '0');
		if (oh > 23 || om > 59)
			return -1;
		off = (*p == '-' ? -1 : 1) * (oh * 3600L + om * 60L);
		p += 6;
	} else {
		return -1;
	}
	if (*p || mon < 1 || mon > 12 || !days_ok(y, mon, d) || h > 23 || mi > 59 || sec > 60)
		return -1;
	struct tm tm = {
	    .tm_year = y - 1900,
	    .tm_mon = mon - 1,
	    .tm_mday = d,
	    .tm_hour = h,
	    .tm_min = mi,
	    .tm_sec = sec > 59 ? 59 : sec,
	};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = t - off;
	return 0;
}

/* Node names as node managers register them: [A-Za-z0-9][A-Za-z0-9._-]{0,62}. */
static bool node_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

/* Label keys: [A-Za-z0-9][A-Za-z0-9._/-]{0,62}. */
static bool label_key_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._/-", s[i]))
			return false;
	return true;
}

static void do_nodes_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct manifest *m = c->m;
	json_int_t n;
	switch (key) {
	case 0: /* count */
		if (want_int(c, path, v, 1, NODES_MAX, &n))
			m->node_count = (unsigned)n;
		break;
	case 1: { /* labels */
		if (!want(c, path, v, T_OBJECT))
			break;
		if (json_object_size(v) > LABELS_MAX) {
			fail(c, path, "too many labels (%zu, at most %d)", json_object_size(v),
			     LABELS_MAX);
			break;
		}
		m->labels = vs_xcalloc(json_object_size(v), sizeof(*m->labels));
		const char *k;
		json_t *lv;
		json_object_foreach(v, k, lv)
		{
			cleanup_free char *lp = path_key(path, k);
			const char *val;
			if (!label_key_ok(k, strlen(k))) {
				fail(c, lp,
				     "not a valid label name (use "
				     "[A-Za-z0-9][A-Za-z0-9._/-]{0,62})");
				continue;
			}
			if (!want_string(c, lp, lv, LABEL_VALUE_MAX, &val))
				continue;
			m->labels[m->nlabels].key = vs_xstrdup(k);
			m->labels[m->nlabels++].value = vs_xstrdup(val);
		}
		break;
	}
	case 2: { /* names */
		if (!want(c, path, v, T_ARRAY))
			break;
		size_t cnt = json_array_size(v);
		if (cnt == 0) {
			fail(c, path, "must name at least one node");
			break;
		}
		if (cnt > NODES_MAX) {
			fail(c, path, "too many nodes (%zu, at most %d)", cnt, NODES_MAX);
			break;
		}
		m->node_names = vs_xcalloc(cnt + 1, sizeof(char *));
		for (size_t i = 0; i < cnt; i++) {
			json_t *e = json_array_get(v, i);
			cleanup_free char *ep = path_index(path, i);
			if (!want(c, ep, e, T_STRING))
				continue;
			const char *s = json_string_value(e);
			cleanup_free char *q = quote(s, json_string_length(e));
			if (!node_name_ok(s, json_string_length(e))) {
				fail(c, ep,
				     "%s is not a valid node name (use "
				     "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
				     q);
				continue;
			}
			bool dup = false;
			for (size_t k = 0; k < m->nnode_names && !dup; k++)
				dup = !strcmp(m->node_names[k], s);
			if (dup) {
				fail(c, ep, "%s is listed twice", q);
				continue;
			}
			m->node_names[m->nnode_names++] = vs_xstrdup(s);
		}
		break;
	}
	}
}

/* A size: "256M" (binary units) or bytes, min..max; *out set only when valid.
 * max_text NULL: no upper bound but what a size can hold. */
static void want_size(struct ctx *c, const char *path, json_t *v, uint64_t min,
		      const char *min_text, uint64_t max, const char *max_text, const char *example,
		      uint64_t *out)
{
	if (!want(c, path, v, T_STRING | T_INTEGER))
		return;
	uint64_t bytes;
	struct vs_error e;
	cleanup_free char *q = NULL;
	if (json_is_integer(v)) {
		q = vs_xasprintf("%lld", (long long)json_integer_value(v));
		if (json_integer_value(v) < 0) {
			fail(c, path, "%s is not a size (use e.g. %s)", q, example);
			return;
		}
		bytes = (uint64_t)json_integer_value(v);
	} else {
		q = quote(json_string_value(v), json_string_length(v));
		if (vs_parse_size(json_string_value(v), &bytes, &e) < 0) {
			if (e.code == ERANGE)
				fail(c, path, "%s is too large", q);
			else
				fail(c, path, "%s is not a size (use e.g. %s)", q, example);
			return;
		}
	}
	if (bytes < min) {
		fail(c, path, "%s is too small (at least %s)", q, min_text);
		return;
	}
	if (bytes > max) {
		fail(c, path, "%s is too large (at most %s)", q, max_text);
		return;
	}
	*out = bytes;
}

static void do_resources_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct manifest *m = c->m;
	struct vs_error e;
	switch (key) {
	case 0: { /* cpus: "0.5" or 0.5 */
		if (!want(c, path, v, T_STRING | T_NUMBER))
			break;
		char num[64];
		cleanup_free char *q = NULL;
		const char *s;
		if (json_is_string(v)) {
			s = json_string_value(v);
			q = quote(s, json_string_length(v));
		} else {
			if (json_is_integer(v))
				snprintf(num, sizeof(num), "%lld",
					 (long long)json_integer_value(v));
			else
				snprintf(num, sizeof(num), "%.15g", json_real_value(v));
			s = num;
			q = vs_xstrdup(num);
		}
		uint64_t millis;
		if (vs_parse_cpus(s, &millis, &e) < 0) {
			if (e.code == ERANGE)
				fail(c, path, "%s is too many cpus (at most 4096)", q);
			else if (strstr(e.msg, "more than 0"))
				fail(c, path, "%s must be more than 0", q);
			else
				fail(
				    c, path,
				    "%s is not a cpu count (use e.g. 0.5 or 2, at most 3 decimals)",
				    q);
			break;
		}
		m->cpu_millis = millis;
		break;
	}
	case 1: /* memory: "256M" or bytes */
		want_size(c, path, v, MEMORY_MIN, "4M", UINT64_MAX, NULL, "256M", &m->memory_bytes);
		break;
	case 2: { /* pids */
		json_int_t n;
		if (want_int(c, path, v, 1, PIDS_MAX, &n))
			m->pids_max = (uint64_t)n;
		break;
	}
	case 3: /* disk: "1G" or bytes */
		want_size(c, path, v, SLIVER_DISK_MIN, "16M", SLIVER_DISK_MAX, "16T", "1G",
			  &m->disk_bytes);
		break;
	}
}

/* files[i]: the entry being built, and which of content/source were seen. */
struct file_arg {
	struct manifest_file *f;
	bool has_path, has_content, has_source;
	bool base64; /* "encoding": "base64" */
	json_t *content, *source;
};

static void do_file_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct file_arg *fa = arg;
	switch (key) {
	case 0: { /* path */
		fa->has_path = true;
		if (!want(c, path, v, T_STRING))
			break;
		const char *p = json_string_value(v);
		const char *why = manifest_check_slice_path(p);
		if (why) {
			cleanup_free char *q = quote(p, json_string_length(v));
			fail(c, path, "%s %s", q, why);
			break;
		}
		fa->f->path = vs_xstrdup(p);
		break;
	}
	case 1: /* content */
		fa->has_content = true;
		if (want(c, path, v, T_STRING))
			fa->content = v;
		break;
	case 2: /* source */
		fa->has_source = true;
		if (want(c, path, v, T_STRING))
			fa->source = v;
		break;
	case 3: { /* mode: "0644" or 644 (octal digits either way) */
		if (!want(c, path, v, T_STRING | T_INTEGER))
			break;
		char buf[32];
		const char *s;
		if (json_is_integer(v)) {
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
			s = buf;
		} else {
			s = json_string_value(v);
		}
		size_t len = strlen(s);
		bool ok = len >= 1 && len <= 4;
		for (size_t i = 0; ok && i < len; i++)
			ok = s[i] >= '0' && s[i] <= '7';
		cleanup_free char *q = json_is_string(v) ? quote(s, len) : vs_xstrdup(s);
		if (!ok) {
			fail(c, path, "%s is not an octal mode (use e.g. \"0644\" or \"0755\")", q);
			break;
		}
		unsigned long mode = strtoul(s, NULL, 8);
		if (mode > 0777) {
			fail(c, path, "%s has setuid, setgid or sticky bits (at most 0777)", q);
			break;
		}
		fa->f->mode = (mode_t)mode;
		break;
	}
	case 4: { /* encoding */
		static const char *const vals[] = {"text", "base64", NULL};
		int i = want_enum(c, path, v, "an encoding", vals);
		fa->base64 = i == 1;
		break;
	}
	}
}

/* Decode base64 text into a NUL-terminated buffer; -1 if it is not base64. */
static ssize_t decode_base64(const char *in, size_t len, unsigned char **out)
{
	struct base64_decode_ctx d;
	base64_decode_init(&d);
	cleanup_free unsigned char *buf = vs_xmalloc(BASE64_DECODE_LENGTH(len) + 1);
	size_t n = BASE64_DECODE_LENGTH(len);
	if (!base64_decode_update(&d, &n, buf, len, in) || !base64_decode_final(&d))
		return -1;
	buf[n] = '\0';
	*out = steal_pointer(&buf);
	return (ssize_t)n;
}

static void check_file_entry(struct ctx *c, const char *path, json_t *v, struct manifest_file *f)
{
	struct file_arg fa = {.f = f};
	f->mode = 0644;
	walk_object(c, path, v, file_keys, do_file_key, &fa);
	if (!fa.has_path) {
		cleanup_free char *p = path_key(path, "path");
		fail(c, p, "required");
	}
	if (fa.has_content && fa.has_source) {
		fail(c, path, "give either \"content\" or \"source\", not both");
		return;
	}
	if (!fa.has_content && !fa.has_source) {
		fail(c, path,
		     "needs \"content\" (inline text) or \"source\" (a file next to the manifest)");
		return;
	}
	if (fa.content && fa.base64) {
		cleanup_free char *p = path_key(path, "content");
		cleanup_free unsigned char *data = NULL;
		ssize_t n = decode_base64(json_string_value(fa.content),
					  json_string_length(fa.content), &data);
		if (n < 0) {
			fail(c, p, "not valid base64 (with \"encoding\": \"base64\")");
			return;
		}
		if ((size_t)n > MANIFEST_FILE_MAX) {
			fail(c, p, "too large (%zd bytes, at most 1 MiB)", n);
			return;
		}
		if (c->files_total + (size_t)n > MANIFEST_FILES_TOTAL_MAX) {
			fail(c, p, "files together exceed 16 MiB");
			return;
		}
		c->files_total += (size_t)n;
		f->data = steal_pointer(&data);
		f->len = (size_t)n;
	} else if (fa.content) {
		cleanup_free char *p = path_key(path, "content");
		size_t len = json_string_length(fa.content);
		if (len > MANIFEST_FILE_MAX) {
			fail(c, p, "too large (%zu bytes, at most 1 MiB)", len);
			return;
		}
		if (c->files_total + len > MANIFEST_FILES_TOTAL_MAX) {
			fail(c, p, "files together exceed 16 MiB");
			return;
		}
		c->files_total += len;
		f->data = vs_xmalloc(len + 1);
		memcpy(f->data, json_string_value(fa.content), len);
		f->data[len] = '\0';
		f->len = len;
	}
	if (fa.source && fa.base64) {
		cleanup_free char *p = path_key(path, "encoding");
		fail(c, p, "only with \"content\"");
		return;
	}
	if (fa.source) {
		cleanup_free char *p = path_key(path, "source");
		const char *rel = json_string_value(fa.source);
		size_t rlen = json_string_length(fa.source);
		cleanup_close int fd = open_rel(c, p, rel, rlen);
		if (fd < 0)
			return;
		cleanup_free char *q = quote(rel, rlen);
		struct stat st;
		if (fstat(fd, &st) < 0 || st.st_size > (off_t)MANIFEST_FILE_MAX) {
			fail(c, p, "%s is too large (%lld bytes, at most 1 MiB)", q,
			     (long long)st.st_size);
			return;
		}
		/* Read one byte past the limit: the file may have grown since fstat. */
		cleanup_free unsigned char *buf = vs_xmalloc(MANIFEST_FILE_MAX + 2);
		ssize_t n = vs_read_all(fd, buf, MANIFEST_FILE_MAX + 1);
		if (n < 0) {
			fail(c, p, "cannot read %s: %s", q, strerror((int)-n));
			return;
		}
		if ((size_t)n > MANIFEST_FILE_MAX) {
			fail(c, p, "%s is too large (more than 1 MiB)", q);
			return;
		}
		if (c->files_total + (size_t)n > MANIFEST_FILES_TOTAL_MAX) {
			fail(c, p, "files together exceed 16 MiB");
			return;
		}
		c->files_total += (size_t)n;
		buf[n] = '\0';
		f->data = steal_pointer(&buf);
		f->len = (size_t)n;
		f->source = vs_xstrdup(rel);
	}
}

/* Is a below b, as a path ("/a/b" below "/a")? */
static bool path_below(const char *a, const char *b)
{
	size_t lb = strlen(b);
	return !strncmp(a, b, lb) && a[lb] == '/';
}

static void check_files(struct ctx *c, const char *path, json_t *v)
{
	struct manifest *m = c->m;
	if (!want(c, path, v, T_ARRAY))
		return;
	size_t n = json_array_size(v);
	if (n > MANIFEST_FILES_MAX) {
		fail(c, path, "too many files (%zu, at most %d)", n, MANIFEST_FILES_MAX);
		return;
	}
	m->files = vs_xcalloc(n, sizeof(*m->files));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		cleanup_free char *ep = path_index(path, i);
		if (!want(c, ep, e, T_OBJECT))
			continue;
		struct manifest_file *f = &m->files[m->nfiles++];
		check_file_entry(c, ep, e, f);
		if (!f->path)
			continue;
		/* The file, below it, or its directory (a file at /etc is
		 * refused where it is placed: a directory in the image). */
		if (!strcmp(f->path, MANIFEST_PEERS_FILE) ||
		    path_below(f->path, MANIFEST_PEERS_FILE) || !strcmp(f->path, "/etc/vslice")) {
			cleanup_free char *pp = path_key(ep, "path");
			fail(c, pp, "\"%s\" is written by vslice (the slice's peers)", f->path);
			continue;
		}
		/* Two entries for one path, or a file where another needs a directory. */
		for (size_t k = 0; k + 1 < m->nfiles; k++) {
			const char *o = m->files[k].path;
			if (!o)
				continue;
			cleanup_free char *pp = path_key(ep, "path");
			cleanup_free char *q = quote_str(f->path);
			if (!strcmp(o, f->path))
				fail(c, pp, "%s is already given by %s[%zu]", q, path, k);
			else if (path_below(f->path, o) || path_below(o, f->path))
				fail(
				    c, pp,
				    "%s conflicts with %s[%zu] (a file cannot also be a directory)",
				    q, path, k);
			else
				continue;
			break;
		}
	}
}

static void check_strv_paths(struct ctx *c, const char *path, json_t *v, size_t max, char ***out,
			     size_t *nout)
{
	if (!want(c, path, v, T_ARRAY))
		return;
	size_t n = json_array_size(v);
	if (n > max) {
		fail(c, path, "too many entries (%zu, at most %zu)", n, max);
		return;
	}
	*out = vs_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		cleanup_free char *ep = path_index(path, i);
		if (!want(c, ep, e, T_STRING))
			continue;
		const char *p = json_string_value(e);
		cleanup_free char *q = quote(p, json_string_length(e));
		const char *why = manifest_check_slice_path(p);
		if (why) {
			fail(c, ep, "%s %s", q, why);
			continue;
		}
		bool dup = false;
		for (size_t k = 0; k < *nout && !dup; k++)
			dup = !strcmp((*out)[k], p);
		if (dup) {
			fail(c, ep, "%s is listed twice", q);
			continue;
		}
		(*out)[(*nout)++] = vs_xstrdup(p);
	}
}

struct run_arg {
	bool has_command, has_restart_limit, restart_limit_ok, restart_bad;
	json_int_t restart_limit;
};

static void do_run_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct manifest *m = c->m;
	struct run_arg *ra = arg;
	switch (key) {
	case 0: { /* command */
		ra->has_command = true;
		if (!want(c, path, v, T_ARRAY | T_STRING))
			break;
		if (json_is_string(v)) {
			if (json_string_length(v) == 0) {
				fail(c, path, "must not be empty");
				break;
			}
			if (json_string_length(v) >= ARG_STRLEN_MAX) {
				fail(c, path, "too long (%zu bytes, at most 128K)",
				     json_string_length(v));
				break;
			}
			m->argv = vs_xcalloc(4, sizeof(char *));
			m->argv[0] = vs_xstrdup("/bin/sh");
			m->argv[1] = vs_xstrdup("-c");
			m->argv[2] = vs_xstrdup(json_string_value(v));
			m->argc = 3;
			m->shell_command = true;
			break;
		}
		size_t n = json_array_size(v);
		if (n == 0) {
			fail(c, path, "must not be empty (give the program and its arguments)");
			break;
		}
		char **argv = vs_xcalloc(n + 1, sizeof(char *));
		size_t total = 0;
		bool ok = true;
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_array_get(v, i);
			cleanup_free char *ep = path_index(path, i);
			if (!want(c, ep, e, T_STRING)) {
				ok = false;
				continue;
			}
			size_t l = json_string_length(e);
			if (l >= ARG_STRLEN_MAX) {
				fail(c, ep, "too long (%zu bytes, at most 128K)", l);
				ok = false;
				continue;
			}
			if (i == 0 && l == 0) {
				fail(c, ep, "the program must not be empty");
				ok = false;
				continue;
			}
			total += l + 1;
			argv[i] = vs_xstrdup(json_string_value(e));
		}
		if (ok && total > EXEC_TOTAL_MAX) {
			fail(c, path, "too long (%zu bytes together, at most 1M)", total);
			ok = false;
		}
		if (!ok) {
			for (size_t i = 0; i < n; i++)
				free(argv[i]);
			free(argv);
			break;
		}
		m->argv = argv;
		m->argc = n;
		break;
	}
	case 1: { /* workdir */
		if (!want(c, path, v, T_STRING))
			break;
		const char *p = json_string_value(v);
		const char *why = strcmp(p, "/") ? manifest_check_slice_path(p) : NULL;
		if (why) {
			cleanup_free char *q = quote(p, json_string_length(v));
			fail(c, path, "%s %s", q, why);
			break;
		}
		m->workdir = vs_xstrdup(p);
		break;
	}
	case 2: /* timeout */
		want_duration(c, path, v, &m->timeout_secs);
		break;
	case 3: { /* restart */
		static const char *const vals[] = {"never", "on-failure", NULL};
		int i = want_enum(c, path, v, "a restart policy", vals);
		if (i >= 0)
			m->restart_on_failure = i == 1;
		ra->restart_bad = i < 0;
		break;
	}
	case 4: /* restart_limit (checked against restart once both are known) */
		ra->has_restart_limit = true;
		ra->restart_limit_ok =
		    want_int(c, path, v, 0, RESTART_LIMIT_MAX, &ra->restart_limit);
		break;
	}
}

static void check_run(struct ctx *c, const char *path, json_t *v)
{
	struct manifest *m = c->m;
	if (!want(c, path, v, T_OBJECT))
		return;
	struct run_arg ra = {.has_command = false};
	walk_object(c, path, v, run_keys, do_run_key, &ra);
	if (!ra.has_command) {
		cleanup_free char *p = path_key(path, "command");
		fail(c, p, "required");
	}
	if (ra.restart_limit_ok && !m->restart_on_failure && !ra.restart_bad) {
		cleanup_free char *p = path_key(path, "restart_limit");
		fail(c, p, "only allowed with \"restart\": \"on-failure\"");
	} else if (ra.restart_limit_ok) {
		m->restart_limit = (unsigned)ra.restart_limit;
	} else if (m->restart_on_failure) {
		m->restart_limit = 3;
	}
}

static void check_env(struct ctx *c, const char *path, json_t *v)
{
	struct manifest *m = c->m;
	if (!want(c, path, v, T_OBJECT))
		return;
	free(m->env);
	m->env = vs_xcalloc(json_object_size(v) + 1, sizeof(char *));
	const char *k;
	json_t *ev;
	json_object_foreach(v, k, ev)
	{
		cleanup_free char *kp = path_key(path, k);
		size_t kl = strlen(k);
		bool ok = kl > 0 && (isalpha((unsigned char)k[0]) || k[0] == '_');
		for (size_t i = 1; ok && i < kl; i++)
			ok = isalnum((unsigned char)k[i]) || k[i] == '_';
		if (!ok) {
			fail(c, kp, "not a valid variable name (use [A-Za-z_][A-Za-z0-9_]*)");
			continue;
		}
		static const char *const reserved[] = MANIFEST_ENV_RESERVED;
		bool taken = false;
		for (size_t i = 0; reserved[i]; i++)
			taken |= !strcmp(k, reserved[i]);
		if (taken) {
			fail(c, kp,
			     "set by vslice in every slice (where it runs); choose another name");
			continue;
		}
		if (!want(c, kp, ev, T_STRING))
			continue;
		if (kl + 1 + json_string_length(ev) >= ARG_STRLEN_MAX) {
			fail(c, kp, "too long (%zu bytes, at most 128K)",
			     kl + 1 + json_string_length(ev));
			continue;
		}
		m->env[m->nenv++] = vs_xasprintf("%s=%s", k, json_string_value(ev));
	}
}

static void check_policy(struct ctx *c, const char *path, json_t *v)
{
	static const char *const builtin[] = {"default", "strict", "unconfined", NULL};
	struct manifest *m = c->m;
	if (!want(c, path, v, T_STRING | T_OBJECT))
		return;
	if (json_is_object(v)) {
		/* An inline seccomp profile: compiled here, so errors carry the path. */
		cleanup_free char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
		struct seccomp_bpf bpf;
		struct vs_error err;
		if (!text) {
			fail(c, path, "cannot encode the policy");
			return;
		}
		if (seccomp_policy_compile(text, strlen(text), caps_default_mask(), &bpf, &err) <
		    0) {
			fail(c, path, "inline seccomp policy: %s", err.msg);
			return;
		}
		seccomp_bpf_free(&bpf);
		m->policy_json = steal_pointer(&text);
		return;
	}
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	for (int i = 0; builtin[i]; i++)
		if (!strcmp(s, builtin[i])) {
			m->policy = vs_xstrdup(s);
			return;
		}
	/* A bare word that is no file is most likely a misspelled builtin. */
	const char *sug = closest(s, builtin);
	if (!strchr(s, '/') && !strchr(s, '.') && sug) {
		int dfd = base_dir_fd(c);
		struct stat st;
		if (dfd < 0 || fstatat(dfd, s, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			cleanup_free char *q = quote(s, len);
			fail(c, path,
			     "%s is not a built-in policy (default, strict, unconfined) nor a "
			     "file next to the manifest (did you mean \"%s\"?)",
			     q, sug);
			return;
		}
	}
	cleanup_close int fd = open_rel(c, path, s, len);
	if (fd < 0)
		return;
	/* The path the kernel resolved (symlinks below the directory included). */
	char link[64], real[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, real, sizeof(real) - 1);
	if (n > 0 && real[0] == '/') {
		real[n] = '\0';
		m->policy = vs_xstrdup(real);
	} else {
		m->policy = vs_xasprintf("%s/%s", m->base_dir, s);
	}
}

/* .network: "none" | "bridge" | "bridge,no-egress" | "host", or for bridge
 * the object {"mode": ..., "publish": ["8080:80", "5353:53/udp"], "rate":
 * "10mbit"} (mode defaults to "bridge" there). */
static const char *const network_keys[] = {"mode", "publish", "rate", NULL};

static void set_network_mode(struct ctx *c, const char *path, json_t *v)
{
	/* "bridge,no-egress" is taken but not offered in the error's list
	 * (it is a variant of bridge, docs/manifest.md). */
	static const char *const vals[] = {"none", "bridge", "host", NULL};
	if (json_is_string(v) && !strcmp(json_string_value(v), "bridge,no-egress")) {
		snprintf(c->m->network, sizeof(c->m->network), "bridge");
		c->m->netopts.no_egress = true;
		return;
	}
	int i = want_enum(c, path, v, "a network mode", vals);
	if (i >= 0)
		snprintf(c->m->network, sizeof(c->m->network), "%s", vals[i]);
}

static void do_network_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct netcfg_slice *n = &c->m->netopts;
	struct vs_error e;
	size_t i;
	json_t *p;
	switch (key) {
	case 0:
		set_network_mode(c, path, v);
		break;
	case 1:
		if (!want(c, path, v, T_ARRAY))
			break;
		if (json_array_size(v) > NETCFG_PUBLISH_MAX) {
			fail(c, path, "at most %d published ports", NETCFG_PUBLISH_MAX);
			break;
		}
		json_array_foreach(v, i, p)
		{
			cleanup_free char *ep = path_index(path, i);
			if (!want(c, ep, p, T_STRING))
				continue;
			if (netcfg_parse_publish(json_string_value(p), &n->publish[n->n_publish],
						 &e) < 0)
				fail(c, ep, "%s", e.msg);
			else
				n->n_publish++;
		}
		break;
	case 2:
		if (want(c, path, v, T_STRING) &&
		    netcfg_parse_rate(json_string_value(v), &n->rate_bps, &e) < 0)
			fail(c, path, "%s", e.msg);
		break;
	}
}

static void check_network(struct ctx *c, const char *path, json_t *v)
{
	if (!json_is_object(v)) {
		set_network_mode(c, path, v);
		return;
	}
	snprintf(c->m->network, sizeof(c->m->network), "bridge");
	walk_object(c, path, v, network_keys, do_network_key, NULL);
	if (strcmp(c->m->network, "bridge") && (c->m->netopts.n_publish || c->m->netopts.rate_bps))
		fail(c, path, "publish and rate need \"mode\": \"bridge\"");
}

static void do_top_key(struct ctx *c, const char *path, int key, json_t *v, void *arg)
{
	struct manifest *m = c->m;
	bool *seen = arg;
	const char *s;
	seen[key] = true;
	switch (key) {
	case K_API:
		if (!want(c, path, v, T_STRING))
			break;
		if (strcmp(json_string_value(v), MANIFEST_API_VERSION)) {
			cleanup_free char *q = quote(json_string_value(v), json_string_length(v));
			fail(c, path, "%s is not supported (use \"" MANIFEST_API_VERSION "\")", q);
		}
		break;
	case K_SLICE:
		if (!want(c, path, v, T_STRING))
			break;
		s = json_string_value(v);
		if (!vs_name_valid(s) || strlen(s) != json_string_length(v)) {
			cleanup_free char *q = quote(s, json_string_length(v));
			fail(c, path,
			     "%s is not a valid slice name (use [a-z][a-z0-9_-]{0,62}, e.g. "
			     "site_exp1)",
			     q);
			break;
		}
		snprintf(m->name, sizeof(m->name), "%s", s);
		break;
	case K_DESC:
		if (want_string(c, path, v, DESCRIPTION_MAX, &s))
			m->description = vs_xstrdup(s);
		break;
	case K_LIFETIME:
		if (want_duration(c, path, v, &m->lifetime_secs))
			c->have_lifetime = true;
		break;
	case K_EXPIRES: {
		if (!want(c, path, v, T_STRING))
			break;
		s = json_string_value(v);
		cleanup_free char *q = quote(s, json_string_length(v));
		time_t t;
		if (parse_rfc3339(s, &t) < 0) {
			fail(c, path,
			     "%s is not an RFC 3339 timestamp (use e.g. 2026-12-01T18:00:00Z)", q);
			break;
		}
		time_t now = time(NULL);
		if (t <= now) {
			fail(c, path, "%s is in the past", q);
			break;
		}
		if ((uint64_t)(t - now) > EXPIRES_AHEAD_MAX) {
			fail(c, path, "%s is too far in the future", q);
			break;
		}
		m->expires = t;
		c->have_expires = true;
		break;
	}
	case K_NODES: {
		if (!want(c, path, v, T_OBJECT))
			break;
		m->nodes_given = true;
		walk_object(c, path, v, node_keys, do_nodes_key, NULL);
		bool count = json_object_get(v, "count"), names = json_object_get(v, "names");
		if (count && names)
			fail(c, path,
			     "give either \"count\" (with optional \"labels\") or \"names\", not "
			     "both");
		else if (!count && !names)
			fail(c, path, "needs \"count\" (with optional \"labels\") or \"names\"");
		else if (names && json_object_get(v, "labels")) {
			cleanup_free char *p = path_key(path, "labels");
			fail(c, p,
			     "only allowed with \"count\" (\"names\" picks the nodes already)");
		}
		break;
	}
	case K_IMAGE:
		if (!want(c, path, v, T_STRING))
			break;
		s = json_string_value(v);
		if (!vs_name_valid(s) || strlen(s) != json_string_length(v)) {
			cleanup_free char *q = quote(s, json_string_length(v));
			fail(c, path, "%s is not a valid image name (use [a-z][a-z0-9_-]{0,62})",
			     q);
			break;
		}
		snprintf(m->image, sizeof(m->image), "%s", s);
		break;
	case K_RESOURCES:
		if (want(c, path, v, T_OBJECT))
			walk_object(c, path, v, resource_keys, do_resources_key, NULL);
		break;
	case K_POLICY:
		check_policy(c, path, v);
		break;
	case K_NETWORK:
		check_network(c, path, v);
		break;
	case K_ENV:
		check_env(c, path, v);
		break;
	case K_FILES:
		check_files(c, path, v);
		break;
	case K_RUN:
		c->have_run = true;
		check_run(c, path, v);
		break;
	case K_RESULTS:
		check_strv_paths(c, path, v, MANIFEST_RESULTS_MAX, &m->results, &m->nresults);
		break;
	}
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->description);
	free(m->base_dir);
	for (size_t i = 0; i < m->nlabels; i++) {
		free(m->labels[i].key);
		free(m->labels[i].value);
	}
	free(m->labels);
	for (size_t i = 0; i < m->nnode_names; i++)
		free(m->node_names[i]);
	free(m->node_names);
	free(m->policy);
	free(m->policy_json);
	free(m->text);
	for (size_t i = 0; i < m->nenv; i++)
		free(m->env[i]);
	free(m->env);
	for (size_t i = 0; i < m->nfiles; i++) {
		free(m->files[i].path);
		free(m->files[i].data);
		free(m->files[i].source);
	}
	free(m->files);
	for (size_t i = 0; i < m->argc; i++)
		free(m->argv[i]);
	free(m->argv);
	free(m->workdir);
	for (size_t i = 0; i < m->nresults; i++)
		free(m->results[i]);
	free(m->results);
	free(m);
}

/* Absolute form of dir (not resolving symlinks: what the user named). */
static char *absolute_dir(const char *dir)
{
	char real[PATH_MAX];
	if (realpath(dir, real))
		return vs_xstrdup(real);
	if (dir[0] == '/')
		return vs_xstrdup(dir);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return vs_xstrdup(dir);
	return vs_xasprintf("%s/%s", cwd, dir);
}

int manifest_parse(const char *json, size_t len, const char *base_dir, struct manifest **out,
		   struct manifest_errors *errs)
{
	*out = NULL;
	size_t max = base_dir ? MANIFEST_MAX_SIZE : MANIFEST_RESOLVED_MAX_SIZE;
	if (len > max) {
		errs_push(errs, "", 0, 0,
			  vs_xasprintf("manifest is too large (%zu bytes, at most %zu MiB)", len,
				       max >> 20));
		return -EFBIG;
	}
	json_error_t jerr;
	cleanup_json json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson echoes input bytes ("near '...'"): keep them printable. */
		char text[sizeof(jerr.text) * 4];
		size_t o = 0;
		for (const char *t = jerr.text; *t && o + 5 < sizeof(text); t++) {
			unsigned char ch = (unsigned char)*t;
			if (ch < 0x20 || ch >= 0x7f)
				o += (size_t)snprintf(text + o, sizeof(text) - o, "\\x%02x", ch);
			else
				text[o++] = (char)ch;
		}
		text[o] = '\0';
		/* jansson stops on the comment's first byte; people write
		 * manifests by hand and expect // and # to work. */
		size_t at = jerr.position > 0 ? (size_t)jerr.position - 1 : 0;
		bool comment =
		    at < len && (json[at] == '#' || (json[at] == '/' && at + 1 < len &&
						     (json[at + 1] == '/' || json[at + 1] == '*')));
		errs_push(errs, "", jerr.line > 0 ? jerr.line : 1,
			  jerr.column > 0 ? jerr.column : 1,
			  vs_xasprintf("invalid JSON: %s%s", text,
				       comment ? " (comments are not JSON: remove them, or "
						 "say it in \"description\")"
					       : ""));
		return -EINVAL;
	}
	cleanup_manifest struct manifest *m = vs_xcalloc(1, sizeof(*m));
	struct ctx c = {
	    .errs = errs, .m = m, .base_arg = base_dir, .base_fd = -1, .resolved = !base_dir};
	m->base_dir = absolute_dir(base_dir ? base_dir : ".");
	snprintf(m->image, sizeof(m->image), "busybox");
	snprintf(m->network, sizeof(m->network), "none");
	m->env = vs_xcalloc(1, sizeof(char *));

	if (want(&c, "", root, T_OBJECT)) {
		bool seen[VS_ARRAY_SIZE(top_keys)] = {false};
		walk_object(&c, "", root, top_keys, do_top_key, seen);
		static const int required[] = {K_API, K_SLICE, K_RUN};
		for (size_t i = 0; i < VS_ARRAY_SIZE(required); i++)
			if (!seen[required[i]]) {
				cleanup_free char *p = path_key("", top_keys[required[i]]);
				fail(&c, p, "required");
			}
		if (seen[K_LIFETIME] && seen[K_EXPIRES])
			fail(&c, ".expires", "conflicts with .lifetime (give one of them)");
		if (!seen[K_LIFETIME] && !seen[K_EXPIRES])
			m->lifetime_secs = MANIFEST_DEFAULT_LIFETIME;
		size_t exec = 0;
		for (size_t i = 0; i < m->nenv; i++)
			exec += strlen(m->env[i]) + 1;
		for (size_t i = 0; i < m->argc; i++)
			exec += strlen(m->argv[i]) + 1;
		if (exec > EXEC_TOTAL_MAX)
			fail(&c, ".env", "env and run.command together are %zu bytes (at most 1M)",
			     exec);
	}
	if (c.base_fd >= 0)
		close(c.base_fd);
	if (c.nerrors)
		return -EINVAL;
	m->text = vs_xmalloc(len + 1);
	memcpy(m->text, json, len);
	m->text[len] = '\0';
	m->text_len = len;
	*out = steal_pointer(&m);
	return 0;
}

static char *encode_base64(const unsigned char *data, size_t len)
{
	char *out = vs_xmalloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
	base64_encode_raw(out, len, data);
	out[BASE64_ENCODE_RAW_LENGTH(len)] = '\0';
	return out;
}

json_t *manifest_resolve(const struct manifest *m, struct vs_error *err)
{
	json_error_t je;
	json_t *root = json_loadb(m->text, m->text_len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(root)) {
		json_decref(root);
		vs_error_set(err, EINVAL, "manifest text no longer parses");
		return NULL;
	}
	if (m->nfiles) {
		json_t *files = json_array();
		for (size_t i = 0; i < m->nfiles; i++) {
			const struct manifest_file *f = &m->files[i];
			char mode[8];
			snprintf(mode, sizeof(mode), "0%03o", (unsigned)f->mode);
			json_array_append_new(files, json_pack("{s:s, s:s%, s:s, s:s}", "path",
							       f->path, "content", "", (size_t)0,
							       "encoding", "base64", "mode", mode));
			char *b64 = encode_base64(f->data, f->len);
			json_object_set_new(json_array_get(files, i), "content",
					    json_stringn_nocheck(b64, strlen(b64)));
			free(b64);
		}
		json_object_set_new(root, "files", files);
	}
	if (m->policy && m->policy[0] == '/') {
		json_t *p = json_load_file(m->policy, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(p)) {
			json_decref(p);
			json_decref(root);
			vs_error_set(err, EINVAL, ".policy: %s: %s", m->policy, je.text);
			return NULL;
		}
		json_object_set_new(root, "policy", p);
	}
	return root;
}

int manifest_load_file(const char *path, struct manifest **out, struct manifest_errors *errs)
{
	*out = NULL;
	/* O_NONBLOCK: a FIFO without a writer must not hang validate. */
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int saved = errno;
		errs_push(errs, "", 0, 0,
			  vs_xasprintf("cannot open %s: %s", path, strerror(saved)));
		return -saved;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
		errs_push(errs, "", 0, 0, vs_xasprintf("%s is not a regular file", path));
		return -EINVAL;
	}
	if (S_ISFIFO(st.st_mode)) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	cleanup_free char *text = vs_xmalloc(MANIFEST_MAX_SIZE + 2);
	ssize_t n = vs_read_all(fd, text, MANIFEST_MAX_SIZE + 1);
	if (n < 0) {
		errs_push(errs, "", 0, 0,
			  vs_xasprintf("cannot read %s: %s", path, strerror((int)-n)));
		return (int)n;
	}
	if ((size_t)n > MANIFEST_MAX_SIZE) {
		errs_push(errs, "", 0, 0,
			  vs_xasprintf("%s: manifest is too large (at most 4 MiB)", path));
		return -EFBIG;
	}
	text[n] = '\0';
	cleanup_free char *copy = vs_xstrdup(path);
	return manifest_parse(text, (size_t)n, dirname(copy), out, errs);
}
