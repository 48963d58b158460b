/*
 * image.c - the image store: <root>/images/<name>/{rootfs/,image.json}.
 *
 * An image appears all at once or not at all: every build or import writes
 * into <root>/images/.tmp-<name>-XXXXXX (mode 0700, so nobody uses a half
 * image), then renames it into place with RENAME_NOREPLACE; any failure
 * removes the staging dir. Readers (list/get/rootfs) only ever see committed
 * images; .tmp-* dirs and dirs without image.json are not images.
 *
 * Also here: the helpers every rootfs writer shares - entry path cleaning,
 * the lexical "does this symlink stay inside" check, a parent-directory walk
 * that never follows a symlink, and the size limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "image_internal.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define IMAGE_MAX_DEPTH		256
#define IMAGE_DEFAULT_MAX_ENTRY (8ull << 30)
#define IMAGE_DEFAULT_MAX_TOTAL (32ull << 30)

bool image_can_chown(void)
{
	return geteuid() == 0;
}

/* ---- staging ------------------------------------------------------------ */

static char *image_dir(const char *root, const char *name)
{
	return vs_xasprintf("%s/images/%s", root, name);
}

int image_stage_begin(struct image_stage *st, const char *root, const char *name,
		      struct vs_error *err)
{
	memset(st, 0, sizeof(*st));
	st->rootfd = -1;
	st->name = name;
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;
	if (!root || !*root)
		return vs_error_set(err, EINVAL, "image %s: no state root given", name);
	st->images = vs_xasprintf("%s/images", root);
	r = vs_mkdir_p(st->images, 0755, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s", name);

	cleanup_free char *final = image_dir(root, name);
	struct stat sb;
	if (lstat(final, &sb) == 0)
		return vs_error_set(
		    err, EEXIST, "image %s: already exists (remove it with: slicectl image rm %s)",
		    name, name);

	st->tmp = vs_xasprintf("%s/.tmp-%s-XXXXXX", st->images, name);
	if (!mkdtemp(st->tmp)) {
		int e = errno;
		free(st->tmp);
		st->tmp = NULL;
		return vs_error_sys(err, e, "image %s: create staging dir in %s", name, st->images);
	}
	st->rootfs = vs_xasprintf("%s/rootfs", st->tmp);
	if (mkdir(st->rootfs, 0755) < 0 || chmod(st->rootfs, 0755) < 0)
		return vs_error_sys(err, errno, "image %s: mkdir %s", name, st->rootfs);
	if (image_can_chown() && chown(st->rootfs, 0, 0) < 0)
		return vs_error_sys(err, errno, "image %s: chown %s", name, st->rootfs);
	st->rootfd = open(st->rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (st->rootfd < 0)
		return vs_error_sys(err, errno, "image %s: open %s", name, st->rootfs);
	return 0;
}

void image_stage_end(struct image_stage *st)
{
	if (st->rootfd >= 0)
		close(st->rootfd);
	st->rootfd = -1;
	if (st->tmp) {
		struct vs_error ignored;
		vs_rm_rf(st->tmp, &ignored);
	}
	free(st->tmp);
	free(st->rootfs);
	free(st->images);
	st->tmp = st->rootfs = st->images = NULL;
}

int image_stage_commit(struct image_stage *st, const char *source, struct vs_error *err)
{
	uint64_t size = 0;
	int r = image_tree_size(st->rootfd, &size, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s: size", st->name);
	/* One syncfs instead of an fsync per file: the data is durable before
	 * the rename makes the image visible. */
	if (syncfs(st->rootfd) < 0)
		return vs_error_sys(err, errno, "image %s: syncfs", st->name);

	json_t *j =
	    json_pack("{s:s, s:s, s:I, s:I}", "name", st->name, "source", source ? source : "",
		      "created", (json_int_t)time(NULL), "size", (json_int_t)size);
	if (!j)
		abort();
	cleanup_free char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (!text)
		abort();
	cleanup_free char *meta = vs_xasprintf("%s/image.json", st->tmp);
	cleanup_free char *withnl = vs_xasprintf("%s\n", text);
	r = vs_write_file_atomic(meta, withnl, strlen(withnl), 0644, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s", st->name);
	if (chmod(st->tmp, 0755) < 0)
		return vs_error_sys(err, errno, "image %s: chmod %s", st->name, st->tmp);

	cleanup_free char *final = vs_xasprintf("%s/%s", st->images, st->name);
	if (renameat2(AT_FDCWD, st->tmp, AT_FDCWD, final, RENAME_NOREPLACE) < 0) {
		int e = errno;
		if (e == EEXIST)
			return vs_error_set(
			    err, EEXIST,
			    "image %s: already exists (remove it with: slicectl image rm %s)",
			    st->name, st->name);
		if (e != EINVAL && e != ENOSYS)
			return vs_error_sys(err, e, "image %s: rename into %s", st->name, final);
		/* File system without RENAME_NOREPLACE: rename(2) refuses a
		 * non-empty target, and an image dir is never empty. */
		if (rename(st->tmp, final) < 0)
			return vs_error_sys(err, errno, "image %s: rename into %s", st->name,
					    final);
	}
	free(st->tmp);
	st->tmp = NULL;
	cleanup_close int dfd = open(st->images, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

/* ---- size --------------------------------------------------------------- */

struct inode_set {
	ino_t *v;
	size_t n, cap;
};

static bool inode_seen(struct inode_set *s, ino_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return true;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			abort();
	}
	s->v[s->n++] = ino;
	return false;
}

static int tree_size_at(int dfd, struct inode_set *seen, uint64_t *sum, int depth,
			struct vs_error *err)
{
	if (depth > IMAGE_MAX_DEPTH + 1)
		return vs_error_set(err, ELOOP, "directory tree deeper than %d", IMAGE_MAX_DEPTH);
	cleanup_closedir DIR *d = vs_opendirat(dfd, ".", 0);
	if (!d)
		return vs_error_sys(err, errno, "open");
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "%s: stat", de->d_name);
		if (S_ISREG(sb.st_mode)) {
			if (sb.st_nlink > 1 && inode_seen(seen, sb.st_ino))
				continue;
			*sum += (uint64_t)sb.st_size;
		} else if (S_ISDIR(sb.st_mode)) {
			cleanup_close int sub = openat(
			    dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return vs_error_sys(err, errno, "%s: open", de->d_name);
			int r = tree_size_at(sub, seen, sum, depth + 1, err);
			if (r < 0)
				return vs_error_wrap(err, "%s", de->d_name);
		}
	}
	return 0;
}

int image_tree_size(int dfd, uint64_t *out, struct vs_error *err)
{
	struct inode_set seen = {0};
	uint64_t sum = 0;
	int r = tree_size_at(dfd, &seen, &sum, 0, err);
	free(seen.v);
	if (r == 0)
		*out = sum;
	return r;
}

/* ---- paths -------------------------------------------------------------- */

char *image_clean_path(const char *path, struct vs_error *err)
{
	if (!path || !*path) {
		vs_error_set(err, EINVAL, "empty path");
		return NULL;
	}
	if (path[0] == '/') {
		vs_error_set(err, EPERM, "absolute path");
		return NULL;
	}
	size_t n = strlen(path);
	if (n >= PATH_MAX) {
		vs_error_set(err, ENAMETOOLONG, "path longer than %d bytes", PATH_MAX);
		return NULL;
	}
	cleanup_free char *out = vs_xmalloc(n + 1);
	size_t o = 0;
	int depth = 0;
	const char *p = path;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			vs_error_set(err, EPERM, "path leaves the image");
			return NULL;
		}
		if (len > 0 && !(len == 1 && p[0] == '.')) {
			if (len > NAME_MAX) {
				vs_error_set(err, ENAMETOOLONG,
					     "path component longer than %d bytes", NAME_MAX);
				return NULL;
			}
			if (++depth > IMAGE_MAX_DEPTH) {
				vs_error_set(err, ELOOP, "path deeper than %d directories",
					     IMAGE_MAX_DEPTH);
				return NULL;
			}
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = *e ? e + 1 : e;
	}
	out[o] = '\0';
	return steal_pointer(&out);
}

enum image_link image_symlink_check(const char *rel, const char *target)
{
	if (!target || !*target || target[0] == '/')
		return IMAGE_LINK_ABSOLUTE;
	long depth = 0;
	for (const char *c = rel; *c; c++)
		if (*c == '/')
			depth++;
	bool descended = false;
	const char *p = target;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			/* After a name, ".." climbs from wherever that name
			 * leads - possibly the image root, and from there out. */
			if (descended)
				return IMAGE_LINK_DOTDOT_INSIDE;
			if (depth == 0)
				return IMAGE_LINK_LEAVES;
			depth--;
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			descended = true;
		}
		p = *e ? e + 1 : e;
	}
	return IMAGE_LINK_OK;
}

int image_open_parent(int rootfd, const char *rel, bool create, const char **leaf,
		      struct vs_error *err)
{
	cleanup_close int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return vs_error_sys(err, errno, "dup");
	const char *p = rel;
	char comp[NAME_MAX + 1];
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		size_t len = (size_t)(slash - p);
		if (len == 0 || len > NAME_MAX)
			return vs_error_set(err, EINVAL, "bad path component");
		memcpy(comp, p, len);
		comp[len] = '\0';
		int fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST)
				return vs_error_sys(err, errno, "%.*s: mkdir", (int)(slash - rel),
						    rel);
			fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0 &&
			    (fchmod(fd, 0755) < 0 || (image_can_chown() && fchown(fd, 0, 0) < 0))) {
				int e = errno;
				close(fd);
				return vs_error_sys(err, e, "%.*s: chmod", (int)(slash - rel), rel);
			}
		}
		if (fd < 0) {
			if (errno == ELOOP || errno == ENOTDIR)
				return vs_error_set(
				    err, ENOTDIR,
				    "%.*s: not a directory (a path never goes through a symlink)",
				    (int)(slash - rel), rel);
			return vs_error_sys(err, errno, "%.*s: open", (int)(slash - rel), rel);
		}
		close(cur);
		cur = fd;
		p = slash + 1;
	}
	*leaf = p;
	return steal_fd(&cur);
}

/* ---- limits ------------------------------------------------------------- */

static int limit_from_env(const char *var, uint64_t def, uint64_t *out, struct vs_error *err)
{
	const char *s = getenv(var);
	*out = def;
	if (!s || !*s)
		return 0;
	int r = vs_parse_size(s, out, err);
	if (r < 0)
		return vs_error_wrap(err, "$%s", var);
	return 0;
}

int image_limits_init(struct image_limits *l, struct vs_error *err)
{
	l->total = 0;
	int r =
	    limit_from_env("VSLICE_IMAGE_MAX_ENTRY", IMAGE_DEFAULT_MAX_ENTRY, &l->max_entry, err);
	if (r < 0)
		return r;
	return limit_from_env("VSLICE_IMAGE_MAX_TOTAL", IMAGE_DEFAULT_MAX_TOTAL, &l->max_total,
			      err);
}

int image_limits_add(struct image_limits *l, uint64_t size, struct vs_error *err)
{
	char b1[32], b2[32];
	if (size > l->max_entry)
		return vs_error_set(err, EFBIG,
				    "size %llu bytes is over the per-file limit of %s (set "
				    "$VSLICE_IMAGE_MAX_ENTRY)",
				    (unsigned long long)size,
				    vs_format_size(l->max_entry, b1, sizeof(b1)));
	if (size > l->max_total - l->total || l->total > l->max_total)
		return vs_error_set(
		    err, EFBIG,
		    "image grows over the total limit of %s (set $VSLICE_IMAGE_MAX_TOTAL)",
		    vs_format_size(l->max_total, b2, sizeof(b2)));
	l->total += size;
	return 0;
}

/* ---- store -------------------------------------------------------------- */

static int read_info(const char *dir, const char *name, struct image_info *info,
		     struct vs_error *err)
{
	cleanup_free char *meta = vs_xasprintf("%s/image.json", dir);
	cleanup_free char *text = NULL;
	int r = vs_read_file(meta, 1 << 20, &text, NULL, err);
	if (r < 0)
		return r;
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		return vs_error_set(err, EINVAL, "%s: line %d: %s", meta, jerr.line, jerr.text);
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", name);
	json_t *v = json_object_get(j, "source");
	if (json_is_string(v))
		snprintf(info->source, sizeof(info->source), "%s", json_string_value(v));
	v = json_object_get(j, "size");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		info->size = (uint64_t)json_integer_value(v);
	v = json_object_get(j, "created");
	if (json_is_integer(v))
		info->created = (time_t)json_integer_value(v);
	json_decref(j);
	return 0;
}

int image_get(const char *root, const char *name, struct image_info *info, struct vs_error *err)
{
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;
	cleanup_free char *dir = image_dir(root, name);
	r = read_info(dir, name, info, err);
	if (r == -ENOENT)
		return vs_error_set(err, ENOENT,
				    "image %s: no such image (see: slicectl image list)", name);
	if (r < 0)
		return vs_error_wrap(err, "image %s", name);
	return 0;
}

static int cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct image_info *)a)->name, ((const struct image_info *)b)->name);
}

int image_list(const char *root, struct image_info **out, size_t *n, struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_free char *images = vs_xasprintf("%s/images", root);
	cleanup_closedir DIR *d = opendir(images);
	if (!d)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "images %s: open", images);
	cleanup_free struct image_info *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!vs_name_valid(de->d_name)) /* also skips ".", "..", ".tmp-*" */
			continue;
		cleanup_free char *dir = vs_xasprintf("%s/%s", images, de->d_name);
		struct image_info info;
		struct vs_error ignored;
		if (read_info(dir, de->d_name, &info, &ignored) < 0)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 8;
			struct image_info *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				abort();
			v = nv;
		}
		v[cnt++] = info;
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_info);
	*out = steal_pointer(&v);
	*n = cnt;
	return 0;
}

int image_rm(const char *root, const char *name, struct vs_error *err)
{
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;
	cleanup_free char *dir = image_dir(root, name);
	struct stat sb;
	if (lstat(dir, &sb) < 0) {
		if (errno == ENOENT)
			return vs_error_set(err, ENOENT,
					    "image %s: no such image (see: slicectl image list)",
					    name);
		return vs_error_sys(err, errno, "image %s: stat %s", name, dir);
	}
	/* Take it out of sight first, so a slow or failed rm never leaves a
	 * half-removed image that list or create would pick up. */
	cleanup_free char *gone = vs_xasprintf("%s/images/.tmp-%s-rm%d", root, name, (int)getpid());
	const char *victim = dir;
	if (rename(dir, gone) == 0)
		victim = gone;
	r = vs_rm_rf(victim, err);
	if (r < 0)
		return vs_error_wrap(err, "image %s: remove", name);
	return 0;
}

int image_rootfs(const char *root, const char *name, char **path, struct vs_error *err)
{
	*path = NULL;
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;
	cleanup_free char *dir = image_dir(root, name);
	cleanup_free char *meta = vs_xasprintf("%s/image.json", dir);
	cleanup_free char *rootfs = vs_xasprintf("%s/rootfs", dir);
	struct stat sb;
	if (stat(meta, &sb) < 0 || lstat(rootfs, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		if (!strcmp(name, "busybox"))
			return vs_error_set(
			    err, ENOENT,
			    "image %s: no such image (build it with: slicectl image build busybox)",
			    name);
		return vs_error_set(
		    err, ENOENT,
		    "image %s: no such image (build it with: slicectl image build busybox, "
		    "or import one: slicectl image import %s PATH)",
		    name, name);
	}
	*path = steal_pointer(&rootfs);
	return 0;
}
