/*
 * experiment.c - a manifest turned into a slice on this node (files placed
 * in its upper dir before it first runs), and its result files walked back
 * out. Used by `slicectl submit`/`results` in local mode and by
 * vslice-nodemgr for each sliver assigned to its node.
 *
 * experiment_spec() is the one place a manifest becomes a slice spec: the
 * manifest module (lib/manifest) knows the format only, lib/node knows both.
 *
 * Files and results go through slice_with_upper() (slice.h): the same code
 * for every slice, rooted in the upper dir on the host, or in the one inside
 * the image of a slice with a disk limit (mounted for the call only).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "node_internal.h"
#include "vslice/experiment.h"
#include "vslice/image.h"
#include "vslice/json.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

/* ------------------------------------------------------------------ */
/* manifest -> slice spec                                              */

_Static_assert(MANIFEST_NAME_MAX <= SLICE_NAME_MAX, "a manifest name fits a slice spec");

static char **strv_dup(char *const *v, size_t n)
{
	char **out = vs_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = vs_xstrdup(v[i]);
	return out;
}

int experiment_spec(const struct manifest *m, struct slice_spec *spec, struct vs_error *err)
{
	memset(spec, 0, sizeof(*spec));
	uint64_t lifetime = m->lifetime_secs;
	if (m->expires) {
		time_t now = time(NULL);
		if (m->expires <= now) {
			char buf[64];
			struct tm tm;
			strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ",
				 gmtime_r(&m->expires, &tm));
			return vs_error_set(err, EINVAL, "slice %s: .expires: %s has passed",
					    m->name, buf);
		}
		lifetime = (uint64_t)(m->expires - now);
	}
	enum slice_net net;
	if (slice_net_parse(m->network, &net) < 0)
		return vs_error_set(err, EINVAL, "slice %s: .network: unknown mode", m->name);
	snprintf(spec->name, sizeof(spec->name), "%s", m->name);
	snprintf(spec->image, sizeof(spec->image), "%s", m->image);
	/* Hostnames take no '_' (site_exp1 -> site-exp1). */
	snprintf(spec->hostname, sizeof(spec->hostname), "%s", m->name);
	for (char *h = spec->hostname; *h; h++)
		if (*h == '_')
			*h = '-';
	spec->policy = vs_xstrdup(m->policy ? m->policy : "default");
	spec->policy_text = m->policy_json ? vs_xstrdup(m->policy_json) : NULL;
	spec->workdir = m->workdir ? vs_xstrdup(m->workdir) : NULL;
	spec->cpu_millis = m->cpu_millis;
	spec->memory_bytes = m->memory_bytes;
	spec->pids_max = m->pids_max;
	spec->disk_bytes = m->disk_bytes;
	spec->lifetime_secs = lifetime;
	spec->net = net;
	spec->netopts = m->netopts;
	spec->env = strv_dup(m->env, m->nenv);
	spec->argv = strv_dup(m->argv, m->argc);
	spec->timeout_secs = m->timeout_secs;
	spec->restart_max = m->restart_on_failure ? m->restart_limit : 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* create                                                              */

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

struct place_ctx {
	const struct manifest *m;
	const struct slice_spec *spec;
	int image_fd;		    /* the image's rootfs (O_PATH), -1 if unknown */
	struct manifest_file peers; /* EXPERIMENT_PEERS_FILE */
};

/* slice_upper_fn: the peers file, then every file of the manifest, from
 * the upper dir. */
static int place_in(void *arg, int upper_fd, struct vs_error *err)
{
	const struct place_ctx *pc = arg;
	int r =
	    place_file(upper_fd, pc->image_fd, &pc->peers, pc->spec->id_base, pc->spec->image, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < pc->m->nfiles; i++) {
		r = place_file(upper_fd, pc->image_fd, &pc->m->files[i], pc->spec->id_base,
			       pc->spec->image, err);
		if (r < 0)
			return vs_error_wrap(err, "files[%zu]", i);
	}
	return 0;
}

static int place_files(const char *root, const struct manifest *m, const struct slice_spec *spec,
		       const char *peers, struct vs_error *err)
{
	cleanup_free char *irootfs = NULL;
	cleanup_close int ifd = -1;
	if (image_rootfs(root, spec->image, &irootfs, err) == 0)
		ifd = open(irootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct place_ctx pc = {.m = m,
			       .spec = spec,
			       .image_fd = ifd,
			       .peers = {.path = (char *)EXPERIMENT_PEERS_FILE,
					 .data = (unsigned char *)peers,
					 .len = strlen(peers),
					 .mode = 0644}};
	/* A slice with a disk limit: its upper dir is in its image. */
	return slice_with_upper(root, spec, true, place_in, &pc, err);
}

/* What the experiment verbs need later, next to the slice's state. */
static int save_experiment(const char *root, const struct manifest *m, const char *origin,
			   const char *node, struct vs_error *err)
{
	cleanup_json json_t *res = json_array();
	for (size_t i = 0; i < m->nresults; i++)
		json_array_append_new(res, json_string(m->results[i]));
	cleanup_json json_t *j =
	    json_pack("{s:i, s:s, s:O, s:[s], s:I}", "version", 1, "manifest", origin, "results",
		      res, "nodes", node, "submitted", (json_int_t)time(NULL));
	cleanup_free char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return vs_error_set(err, ENOMEM, "%s: cannot encode", EXPERIMENT_FILE);
	cleanup_free char *d = slice_dir(root, m->name);
	cleanup_free char *p = vs_xasprintf("%s/%s", d, EXPERIMENT_FILE);
	return vs_write_file_atomic(p, text, strlen(text), 0600, err);
}

static void step_done(const struct experiment_create_opts *o, enum experiment_step step)
{
	if (o && o->step)
		o->step(o->arg, step);
}

/* VSLICE_PEERS longer than this is left unset: one environment string
 * must stay below the kernel's 128 KiB (MAX_ARG_STRLEN), and the file has
 * every peer anyway. */
#define PEERS_ENV_MAX (64u << 10)

/* A registry URL without its user info ("https://u:p@host" -> "https://host"):
 * the sliver's environment is the experiment's, not the operator's. */
static char *url_without_userinfo(const char *url)
{
	const char *auth = strstr(url, "://");
	auth = auth ? auth + 3 : url;
	size_t alen = strcspn(auth, "/?#");
	const char *at = memrchr(auth, '@', alen);
	if (!at)
		return vs_xstrdup(url);
	return vs_xasprintf("%.*s%s", (int)(auth - url), url, at + 1);
}

/*
 * Where am I (experiment.h): VSLICE_SLICE, VSLICE_NODE, VSLICE_PEERS and
 * VSLICE_REGISTRY appended to spec->env, and the text of
 * EXPERIMENT_PEERS_FILE in *peers. nodes: the slice's nodes (NULL: node
 * alone), in the registry's order; node is listed first if missing there.
 * Names that are not node names (a registry is not trusted with the
 * sliver's files) are skipped. Linear in the number of nodes.
 */
static void where_am_i(struct slice_spec *spec, const char *node, char *const *nodes,
		       char *const *addrs, const char *self_addr, const char *registry,
		       char **peers)
{
	if (!self_addr || !*self_addr)
		self_addr = "-";
	char *const alone[] = {(char *)node, NULL};
	if (!nodes)
		nodes = alone;
	size_t n = 0;
	while (spec->env && spec->env[n])
		n++;
	bool self_listed = false;
	for (char *const *p = nodes; *p; p++)
		self_listed |= !strcmp(*p, node);
	char *lines = NULL, *others = NULL;
	size_t lines_len = 0, others_len = 0;
	FILE *lf = open_memstream(&lines, &lines_len);
	FILE *of = open_memstream(&others, &others_len);
	if (!lf || !of)
		abort(); /* allocation failure */
	fprintf(lf,
		"# The slivers of slice %s: NODE ADDRESS, one a line (\"-\": no address "
		"known).\n# This one is on %s ($VSLICE_NODE).\n",
		spec->name, node);
	if (!self_listed)
		fprintf(lf, "%s %s\n", node, self_addr);
	bool first = true;
	for (char *const *p = nodes; *p; p++) {
		if (!vs_node_name_valid(*p))
			continue;
		const char *ad = addrs && addrs[p - nodes] && addrs[p - nodes][0] ? addrs[p - nodes]
				 : !strcmp(*p, node)				  ? self_addr
										  : "-";
		fprintf(lf, "%s %s\n", *p, ad);
		if (strcmp(*p, node)) {
			fprintf(of, "%s%s", first ? "" : " ", *p);
			first = false;
		}
	}
	if (fclose(lf) != 0 || fclose(of) != 0)
		abort();
	spec->env = vs_xrealloc(spec->env, (n + 5) * sizeof(char *));
	spec->env[n++] = vs_xasprintf("VSLICE_SLICE=%s", spec->name);
	spec->env[n++] = vs_xasprintf("VSLICE_NODE=%s", node);
	if (others_len <= PEERS_ENV_MAX)
		spec->env[n++] = vs_xasprintf("VSLICE_PEERS=%s", others);
	if (registry) {
		cleanup_free char *shown = url_without_userinfo(registry);
		spec->env[n++] = vs_xasprintf("VSLICE_REGISTRY=%s", shown);
	}
	spec->env[n] = NULL;
	free(others);
	*peers = lines;
}

int experiment_create_with(const char *root, const struct manifest *m, const char *origin,
			   const char *node, const struct experiment_create_opts *o,
			   struct vs_error *err)
{
	struct slice_spec spec = {0};
	int r = experiment_spec(m, &spec, err);
	if (r < 0)
		return r;
	cleanup_free char *peers = NULL;
	where_am_i(&spec, node, o ? o->nodes : NULL, o && o->nodes ? o->addresses : NULL,
		   o ? o->address : NULL, o ? o->registry : NULL, &peers);
	r = slice_create(root, &spec, err);
	if (r == 0) {
		/* From here on, a failure destroys the slice: nothing left behind.
		 * experiment.json goes last: whoever finds it (a restarted node
		 * manager) may take the slice as complete. */
		step_done(o, EXPERIMENT_SLICE_CREATED);
		r = place_files(root, m, &spec, peers, err);
		if (r == 0) {
			step_done(o, EXPERIMENT_FILES_PLACED);
			r = save_experiment(root, m, origin, node, err);
		}
		if (r < 0) {
			struct vs_error e2;
			slice_destroy(root, m->name, true, &e2);
		} else {
			step_done(o, EXPERIMENT_RECORDED);
		}
	}
	slice_spec_free(&spec);
	return r;
}

int experiment_create(const char *root, const struct manifest *m, const char *origin,
		      const char *node, struct vs_error *err)
{
	return experiment_create_with(root, m, origin, node, NULL, err);
}

static int load_experiment(const char *root, const char *name, json_t **out, struct vs_error *err)
{
	cleanup_free char *d = slice_dir(root, name);
	cleanup_free char *p = vs_xasprintf("%s/%s", d, EXPERIMENT_FILE);
	cleanup_free char *text = NULL;
	int r = vs_read_file(p, 1 << 20, &text, NULL, err);
	if (r == -ENOENT)
		return vs_error_set(err, ENOENT, "not submitted from a manifest");
	if (r < 0)
		return r;
	json_error_t je;
	*out = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return vs_error_set(err, EINVAL, "%s: %s", p, je.text);
	}
	return 0;
}

int experiment_result_paths(const char *root, const char *name, char ***out, size_t *n,
			    struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_json json_t *j = NULL;
	int r = load_experiment(root, name, &j, err);
	if (r < 0)
		return r;
	json_t *res = json_object_get(j, "results");
	if (!json_is_array(res))
		return vs_error_set(err, EINVAL, "%s: no results array", EXPERIMENT_FILE);
	char **v = vs_xcalloc(json_array_size(res) + 1, sizeof(char *));
	for (size_t i = 0; i < json_array_size(res); i++) {
		const char *s = json_string_value(json_array_get(res, i));
		if (!s || manifest_check_slice_path(s)) {
			vs_strv_free(v);
			return vs_error_set(err, EINVAL, "%s: .results[%zu]: not a slice path",
					    EXPERIMENT_FILE, i);
		}
		v[(*n)++] = vs_xstrdup(s);
	}
	*out = v;
	return 0;
}

int experiment_origin(const char *root, const char *name, char **origin, char **node,
		      struct vs_error *err)
{
	*origin = *node = NULL;
	cleanup_json json_t *j = NULL;
	int r = load_experiment(root, name, &j, err);
	if (r < 0)
		return r;
	const char *o = json_string_value(json_object_get(j, "manifest"));
	const char *nd = json_string_value(json_array_get(json_object_get(j, "nodes"), 0));
	*origin = o ? vs_xstrdup(o) : NULL;
	*node = nd ? vs_xstrdup(nd) : NULL;
	return 0;
}

/* ------------------------------------------------------------------ */
/* results                                                             */

static void problem(const struct experiment_walk *w, const char *rel, const char *why, bool missing,
		    bool failed)
{
	if (w->problem)
		w->problem(w->arg, rel, why, missing, failed);
}

static void walk_tree(const struct experiment_walk *w, int fd, const char *rel, int depth);

/* What fd (opened O_NOFOLLOW) is: a file or a directory. */
static void walk_entry(const struct experiment_walk *w, int fd, const char *rel, int depth)
{
	struct stat st;
	struct vs_error err;
	if (fstat(fd, &st) < 0) {
		problem(w, rel, strerror(errno), false, true);
	} else if (S_ISREG(st.st_mode)) {
		if (w->file(w->arg, rel, fd, &st, &err) < 0)
			problem(w, rel, err.msg, false, true);
	} else if (S_ISDIR(st.st_mode)) {
		if (depth >= RESULTS_DEPTH_MAX) {
			problem(w, rel, "too deep, skipped", false, false);
			return;
		}
		if (w->dir && w->dir(w->arg, rel, &err) < 0) {
			problem(w, rel, err.msg, false, true);
			return;
		}
		walk_tree(w, fd, rel, depth + 1);
	} else {
		problem(w, rel, "not a regular file or directory, skipped", false, false);
	}
}

static void walk_tree(const struct experiment_walk *w, int fd, const char *rel, int depth)
{
	cleanup_closedir DIR *d = vs_opendirat(fd, ".", 0);
	if (!d) {
		problem(w, rel, strerror(errno), false, true);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		bool ctrl = false;
		for (const char *ch = de->d_name; *ch && !ctrl; ch++)
			ctrl = (unsigned char)*ch < 0x20 || *ch == 0x7f;
		if (ctrl) {
			problem(w, rel, "a name with control characters inside, skipped", false,
				false);
			continue;
		}
		cleanup_free char *sub = vs_xasprintf("%s/%s", rel, de->d_name);
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			problem(w, sub, "a symlink, skipped", false, false);
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			problem(w, sub, "not a regular file or directory, skipped", false, false);
			continue;
		}
		cleanup_close int cfd = openat(dirfd(d), de->d_name,
					       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
						   (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (cfd < 0) {
			problem(w, sub, strerror(errno), false, true);
			continue;
		}
		walk_entry(w, cfd, sub, depth);
	}
}

struct walk_ctx {
	char *const *paths;
	size_t n;
	const struct experiment_walk *w;
};

/* slice_upper_fn: each result path, resolved inside the upper dir. */
static int walk_in(void *arg, int ufd, struct vs_error *err)
{
	(void)err;
	const struct walk_ctx *wc = arg;
	const struct experiment_walk *w = wc->w;
	char *const *paths = wc->paths;
	for (size_t i = 0; i < wc->n; i++) {
		const char *rel = paths[i] + 1;
		struct open_how how = {
		    .flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
		    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
		};
		long fd = syscall(SYS_openat2, ufd, rel, &how, sizeof(how));
		if (fd < 0) {
			if (errno == ENOENT)
				problem(w, rel, "not found (the run did not write it)", true,
					false);
			else
				problem(w, rel, strerror(errno), false, true);
			continue;
		}
		walk_entry(w, (int)fd, rel, 0);
		close((int)fd);
	}
	return 0;
}

int experiment_walk_results(const char *root, const char *name, char *const *paths, size_t n,
			    const struct experiment_walk *w, struct vs_error *err)
{
	struct slice_spec spec;
	int r = slice_load(root, name, &spec, NULL, err);
	if (r < 0)
		return r;
	struct walk_ctx wc = {.paths = paths, .n = n, .w = w};
	/* A slice with a disk limit: read-only, from its image. */
	r = slice_with_upper(root, &spec, false, walk_in, &wc, err);
	slice_spec_free(&spec);
	return r;
}
