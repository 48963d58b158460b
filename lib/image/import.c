/*
 * import.c - images from a rootfs directory or a tar archive (plain, gzip,
 * xz, bzip2, zstd, lz4; the compression is recognised by content, not by the
 * file name).
 *
 * Archives come from anywhere, so nothing in one is trusted. We do not hand
 * entries to archive_write_disk: each entry is checked first and then
 * created with openat()/mkdirat()/symlinkat()/linkat() below the staging
 * rootfs, walking the parent path one component at a time with O_NOFOLLOW,
 * so no entry can write through a symlink - not even one the archive itself
 * planted (the "d/l -> .., d/l/x -> .." chain a lexical check misses).
 * Refused, naming the entry, and the whole import aborted: absolute paths,
 * ".." components, symlinks whose target is absolute or leaves the image
 * lexically, hard links to anything but a regular file inside the image,
 * devices, FIFOs, sockets, files over the size limits.
 * setuid/setgid bits are dropped; owners become 0:0 (when running as root).
 *
 * An OCI image layout (or a pre-OCI `docker save` archive) is first
 * unpacked like any archive (inside the staging dir), then flattened layer
 * by layer into a fresh rootfs: each layer is
 * read twice, whiteouts first (they hide the layers below, never entries of
 * their own layer), then everything else under the same rules.
 *
 * A directory import applies the same rules, so every image in the store has
 * the same invariant whatever it came from.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "archive_dl.h"
#include "image_internal.h"
#include "vslice/util.h"

#define MODE_MASK     (07777 & ~06000)
#define MAX_DIR_DEPTH 256

struct dir_fix {
	char *rel;
	mode_t mode;
	struct timespec mtime;
	bool has_mtime;
};

struct import_ctx {
	struct image_stage *st;
	struct image_limits lim;
	struct dir_fix *fixes;
	size_t nfix, capfix;
	size_t entries;
	unsigned flags; /* IMAGE_IMPORT_* */
	int dstfd;	/* the rootfs (or the OCI layout dir) entries go below */
	bool layered;	/* an OCI layer: upper entries replace whole trees */
	dev_t stage_dev;
	ino_t stage_ino;
};

static void import_ctx_free(struct import_ctx *c)
{
	for (size_t i = 0; i < c->nfix; i++)
		free(c->fixes[i].rel);
	free(c->fixes);
	c->fixes = NULL;
	c->nfix = c->capfix = 0;
}

static void add_fix(struct import_ctx *c, const char *rel, mode_t mode,
		    const struct timespec *mtime)
{
	if (c->nfix == c->capfix) {
		c->capfix = c->capfix ? c->capfix * 2 : 32;
		struct dir_fix *n = realloc(c->fixes, c->capfix * sizeof(*n));
		if (!n)
			abort();
		c->fixes = n;
	}
	struct dir_fix *f = &c->fixes[c->nfix++];
	f->rel = vs_xstrdup(rel);
	f->mode = mode;
	f->has_mtime = mtime != NULL;
	if (mtime)
		f->mtime = *mtime;
}

/* Owner 0:0 (as root), permissions without setuid/setgid, mtime if given. */
static int finish_fd(int fd, mode_t mode, const struct timespec *mtime, struct vs_error *err)
{
	if (image_can_chown() && fchown(fd, 0, 0) < 0)
		return vs_error_sys(err, errno, "chown");
	if (fchmod(fd, mode & MODE_MASK) < 0)
		return vs_error_sys(err, errno, "chmod");
	if (mtime) {
		struct timespec ts[2] = {*mtime, *mtime};
		if (futimens(fd, ts) < 0)
			return vs_error_sys(err, errno, "set mtime");
	}
	return 0;
}

static int apply_fixes(struct import_ctx *c, struct vs_error *err)
{
	for (size_t i = 0; i < c->nfix; i++) {
		struct dir_fix *f = &c->fixes[i];
		const char *leaf;
		cleanup_close int dfd = image_open_parent(c->dstfd, f->rel, false, &leaf, err);
		if (dfd < 0)
			return vs_error_wrap(err, "entry \"%s\"", f->rel);
		cleanup_close int fd =
		    openat(dfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) /* replaced by a later entry: that one won */
			continue;
		int r = finish_fd(fd, f->mode, f->has_mtime ? &f->mtime : NULL, err);
		if (r < 0)
			return vs_error_wrap(err, "entry \"%s\"", f->rel);
	}
	return 0;
}

/* rm -rf dfd/leaf without following a symlink on the way (dfd is trusted). */
static int rm_rf_at(int dfd, const char *leaf, struct vs_error *err)
{
	cleanup_free char *p = vs_xasprintf("/proc/self/fd/%d/%s", dfd, leaf);
	return vs_rm_rf(p, err);
}

/*
 * Make room for a new non-directory (want_dir false) or directory at
 * dfd/leaf: an existing non-directory is replaced (a later tar entry wins),
 * an existing directory is kept for a directory and must be empty otherwise
 * - except in an OCI layer, where an upper non-directory hides the whole
 * lower tree. Returns 1 if a directory is already there and want_dir.
 */
static int make_room(struct import_ctx *c, int dfd, const char *leaf, bool want_dir,
		     struct vs_error *err)
{
	struct stat sb;
	if (fstatat(dfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : vs_error_sys(err, errno, "stat");
	if (S_ISDIR(sb.st_mode)) {
		if (want_dir)
			return 1;
		if (c->layered)
			return rm_rf_at(dfd, leaf, err);
		if (unlinkat(dfd, leaf, AT_REMOVEDIR) < 0)
			return vs_error_sys(err, errno, "replace existing directory");
		return 0;
	}
	if (unlinkat(dfd, leaf, 0) < 0)
		return vs_error_sys(err, errno, "replace existing file");
	return 0;
}

/*
 * "/usr/share/zoneinfo/UTC" at etc/localtime -> "../usr/share/zoneinfo/UTC":
 * the same file inside the slice, where "/" is the image root ("/.." stays
 * at "/", so ".." is resolved lexically and clamped at the root).
 */
static char *relativize(const char *rel, const char *abs)
{
	size_t depth = 0;
	for (const char *p = rel; *p; p++)
		depth += *p == '/';
	size_t n = strlen(abs);
	cleanup_free char *norm = vs_xmalloc(n + 1);
	cleanup_free size_t *starts = vs_xcalloc(n / 2 + 2, sizeof(size_t));
	size_t o = 0, sp = 0;
	for (const char *p = abs; *p;) {
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (sp)
				o = starts[--sp];
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			starts[sp++] = o;
			if (o)
				norm[o++] = '/';
			memcpy(norm + o, p, len);
			o += len;
		}
		p = *e ? e + 1 : e;
	}
	norm[o] = '\0';
	char *out = vs_xmalloc(depth * 3 + o + 2);
	char *q = out;
	for (size_t i = 0; i < depth; i++, q += 3)
		memcpy(q, "../", 3);
	if (o)
		strcpy(q, norm);
	else if (depth)
		q[-1] = '\0'; /* "../.." */
	else
		strcpy(q, ".");
	return out;
}

/*
 * Check a symlink's target; *use (caller frees) gets the target to create:
 * a copy, or with IMAGE_IMPORT_RELATIVIZE_SYMLINKS the relative form of an
 * absolute one.
 */
static int check_symlink(struct import_ctx *c, const char *rel, const char *target, char **use,
			 struct vs_error *err)
{
	*use = NULL;
	if (!target || !*target)
		return vs_error_set(err, EINVAL, "symlink with an empty target");
	if (strlen(target) >= PATH_MAX)
		return vs_error_set(err, ENAMETOOLONG, "symlink target too long");
	cleanup_free char *cand = target[0] == '/' && (c->flags & IMAGE_IMPORT_RELATIVIZE_SYMLINKS)
				      ? relativize(rel, target)
				      : vs_xstrdup(target);
	if (strlen(cand) >= PATH_MAX)
		return vs_error_set(err, ENAMETOOLONG, "symlink target too long");
	switch (image_symlink_check(rel, cand)) {
	case IMAGE_LINK_OK:
		*use = steal_pointer(&cand);
		return 0;
	case IMAGE_LINK_ABSOLUTE:
		return vs_error_set(
		    err, EPERM,
		    "symlink to absolute path \"%.200s\" (images take relative symlinks only)",
		    target);
	case IMAGE_LINK_LEAVES:
		return vs_error_set(err, EPERM, "symlink target \"%.200s\" leaves the image",
				    target);
	case IMAGE_LINK_DOTDOT_INSIDE:
		break;
	}
	return vs_error_set(err, EPERM,
			    "symlink target \"%.200s\" has \"..\" after a name (only leading "
			    "\"..\" are taken)",
			    target);
}

static int refuse_type(mode_t type, struct vs_error *err)
{
	switch (type) {
	case S_IFCHR:
		return vs_error_set(err, EPERM, "character device (images hold no device nodes)");
	case S_IFBLK:
		return vs_error_set(err, EPERM, "block device (images hold no device nodes)");
	case S_IFIFO:
		return vs_error_set(err, EPERM, "FIFO (images hold no FIFOs)");
	case S_IFSOCK:
		return vs_error_set(err, EPERM, "socket (images hold no sockets)");
	default:
		return vs_error_set(err, EPERM, "unsupported file type 0%o", (unsigned)type);
	}
}

/* ---- archives ----------------------------------------------------------- */

static int archive_err(struct archive *a, int code, const char *what, struct vs_error *err)
{
	const char *s = archive_error_string(a);
	int e = archive_errno(a);
	if (e <= 0)
		e = code;
	return vs_error_set(err, e, "%s: %s", what, s ? s : "archive error");
}

static int extract_file(struct import_ctx *c, struct archive *a, struct archive_entry *e, int dfd,
			const char *leaf, struct vs_error *err)
{
	int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	if (declared < 0)
		return vs_error_set(err, EINVAL, "negative size");
	int r = image_limits_add(&c->lim, (uint64_t)declared, err);
	if (r < 0)
		return r;
	r = make_room(c, dfd, leaf, false, err);
	if (r < 0)
		return r;
	cleanup_close int fd =
	    openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return vs_error_sys(err, errno, "create");
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int ar = archive_read_data_block(a, &buf, &len, &off);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN)
			return archive_err(a, EIO, "read data", err);
		if (off < 0 || (uint64_t)off > (uint64_t)declared ||
		    len > (uint64_t)declared - (uint64_t)off)
			return vs_error_set(err, EFBIG, "data beyond the declared size");
		/* pwrite at the block's offset keeps sparse files sparse. */
		const char *p = buf;
		while (len > 0) {
			ssize_t w = pwrite(fd, p, len, off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return vs_error_sys(err, errno, "write");
			p += w;
			off += w;
			len -= (size_t)w;
		}
	}
	if (ftruncate(fd, declared) < 0)
		return vs_error_sys(err, errno, "truncate");
	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	return finish_fd(fd, archive_entry_perm(e), archive_entry_mtime_is_set(e) ? &mt : NULL,
			 err);
}

static int extract_hardlink(struct import_ctx *c, const char *rel, const char *raw_target, int dfd,
			    const char *leaf, struct vs_error *err)
{
	if (raw_target[0] == '/')
		return vs_error_set(err, EPERM, "hard link to absolute path \"%.200s\"",
				    raw_target);
	struct vs_error terr;
	cleanup_free char *target = image_clean_path(raw_target, &terr);
	if (!target)
		return vs_error_set(err, EPERM, "hard link target \"%.200s\": %s", raw_target,
				    terr.msg);
	if (!*target || !strcmp(target, rel))
		return vs_error_set(err, EPERM, "hard link to \"%.200s\"", raw_target);
	const char *tleaf;
	cleanup_close int tdfd = image_open_parent(c->dstfd, target, false, &tleaf, err);
	if (tdfd < 0)
		return vs_error_wrap(err, "hard link target \"%.200s\"", raw_target);
	struct stat sb;
	if (fstatat(tdfd, tleaf, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return vs_error_sys(err, errno, "hard link target \"%.200s\"", raw_target);
	/* A hard-linked symlink would resolve from another directory than the
	 * one it was checked for. */
	if (!S_ISREG(sb.st_mode))
		return vs_error_set(
		    err, EPERM, "hard link to \"%.200s\", which is not a regular file", raw_target);
	int r = make_room(c, dfd, leaf, false, err);
	if (r < 0)
		return r;
	if (linkat(tdfd, tleaf, dfd, leaf, 0) < 0)
		return vs_error_sys(err, errno, "link to \"%.200s\"", raw_target);
	return 0;
}

static int extract_entry(struct import_ctx *c, struct archive *a, struct archive_entry *e,
			 const char *rel, struct vs_error *err)
{
	mode_t type = archive_entry_filetype(e);
	const char *hardlink = archive_entry_hardlink(e);

	if (!*rel) { /* "./" - the root itself */
		if (hardlink || type != AE_IFDIR)
			return vs_error_set(err, EPERM, "the image root must be a directory");
		return 0;
	}
	cleanup_free char *link = NULL;
	if (!hardlink) {
		if (type == AE_IFLNK) {
			int r = check_symlink(c, rel, archive_entry_symlink(e), &link, err);
			if (r < 0)
				return r;
		} else if (type != AE_IFREG && type != AE_IFDIR) {
			return refuse_type(type, err);
		}
	}

	const char *leaf;
	cleanup_close int dfd = image_open_parent(c->dstfd, rel, true, &leaf, err);
	if (dfd < 0)
		return dfd;
	if (hardlink)
		return extract_hardlink(c, rel, hardlink, dfd, leaf, err);

	struct timespec mt = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	bool has_mt = archive_entry_mtime_is_set(e);
	int r;
	switch (type) {
	case AE_IFDIR:
		r = make_room(c, dfd, leaf, true, err);
		if (r < 0)
			return r;
		/* 0700 while we fill it; the real mode comes at the end. */
		if (r == 0 && mkdirat(dfd, leaf, 0700) < 0)
			return vs_error_sys(err, errno, "mkdir");
		add_fix(c, rel, archive_entry_perm(e), has_mt ? &mt : NULL);
		return 0;
	case AE_IFREG:
		return extract_file(c, a, e, dfd, leaf, err);
	case AE_IFLNK:
		r = make_room(c, dfd, leaf, false, err);
		if (r < 0)
			return r;
		if (symlinkat(link, dfd, leaf) < 0)
			return vs_error_sys(err, errno, "symlink");
		if (image_can_chown() && fchownat(dfd, leaf, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "chown");
		if (has_mt) {
			struct timespec ts[2] = {mt, mt};
			utimensat(dfd, leaf, ts, AT_SYMLINK_NOFOLLOW);
		}
		return 0;
	}
	return refuse_type(type, err);
}

static struct archive *archive_open_tar(void)
{
	struct archive *a = archive_read_new();
	if (!a)
		abort();
	/* The compressions libarchive decodes itself; not filter_all, which may
	 * fall back to running external programs (lrzip, lzop, grzip). */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_lz4(a);
	archive_read_support_format_tar(a); /* ustar, pax, GNU tar */
	return a;
}

#define OPEN_FAILED "not a readable tar archive (plain, gzip, xz, bzip2, zstd or lz4)"

enum pass {
	PASS_ALL,	     /* a plain archive: every entry */
	PASS_WHITEOUTS,	     /* an OCI layer, first: only its whiteouts, on the layers below */
	PASS_SKIP_WHITEOUTS, /* an OCI layer, then: everything but its whiteouts */
};

static const char *base_name(const char *rel)
{
	const char *s = strrchr(rel, '/');
	return s ? s + 1 : rel;
}

/* ".wh.NAME" removes NAME from the layers below; ".wh..wh..opq" empties its dir. */
static int apply_whiteout(struct import_ctx *c, const char *rel, struct vs_error *err)
{
	const char *base = base_name(rel);
	bool opaque = !strcmp(base, ".wh..wh..opq");
	if (!opaque && !strncmp(base, ".wh..wh.", 8))
		return 0; /* aufs bookkeeping (.wh..wh.plnk ...) */
	const char *victim = base + 4;
	if (!opaque && (!*victim || !strcmp(victim, ".") || !strcmp(victim, "..")))
		return vs_error_set(err, EPERM, "bad whiteout");
	const char *leaf;
	cleanup_close int dfd = image_open_parent(c->dstfd, rel, false, &leaf, err);
	if (dfd < 0) /* nothing below to hide (or only through a symlink: never followed) */
		return dfd == -ENOENT || dfd == -ENOTDIR ? 0 : dfd;
	if (!opaque)
		return rm_rf_at(dfd, victim, err);
	cleanup_closedir DIR *d = vs_opendirat(dfd, ".", 0);
	if (!d)
		return vs_error_sys(err, errno, "open");
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int r = rm_rf_at(dfd, de->d_name, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int extract_stream(struct import_ctx *c, struct archive *a, enum pass pass,
			  struct vs_error *err)
{
	size_t n = 0;
	for (;;) {
		struct archive_entry *e;
		int ar = archive_read_next_header(a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar == ARCHIVE_RETRY)
			continue;
		if (ar < ARCHIVE_WARN)
			return archive_err(a, EINVAL, n ? "read entry header" : "not a tar archive",
					   err);
		n++;
		c->entries++;
		const char *raw = archive_entry_pathname(e);
		if (!raw)
			return vs_error_set(err, EINVAL, "entry %zu: unreadable name", n);
		cleanup_free char *rel = image_clean_path(raw, err);
		if (!rel)
			return vs_error_wrap(err, "entry \"%.200s\"", raw);
		int r = 0;
		bool whiteout = pass != PASS_ALL && !strncmp(base_name(rel), ".wh.", 4);
		if (pass == PASS_WHITEOUTS) {
			if (whiteout)
				r = apply_whiteout(c, rel, err);
		} else if (!whiteout) {
			r = extract_entry(c, a, e, rel, err);
		}
		if (r < 0)
			return vs_error_wrap(err, "entry \"%.200s\"", raw);
	}
	if (pass == PASS_ALL && n == 0)
		return vs_error_set(err, EINVAL, "empty archive");
	int r = apply_fixes(c, err);
	for (size_t i = 0; i < c->nfix; i++)
		free(c->fixes[i].rel);
	c->nfix = 0;
	return r;
}

/* ---- OCI image layouts -------------------------------------------------- */

#define OCI_MAX_JSON (4u << 20)

#if defined(__x86_64__)
#define OCI_ARCH "amd64"
#elif defined(__aarch64__)
#define OCI_ARCH "arm64"
#elif defined(__i386__)
#define OCI_ARCH "386"
#elif defined(__arm__)
#define OCI_ARCH "arm"
#else
#define OCI_ARCH ""
#endif

/* One layer tar (any compression) on top of c->dstfd: whiteouts, then the rest. */
static int apply_layer(struct import_ctx *c, int fd, struct vs_error *err)
{
	c->layered = true;
	int r = 0;
	for (int pass = PASS_WHITEOUTS; pass <= PASS_SKIP_WHITEOUTS && r == 0; pass++) {
		cleanup_archive_read struct archive *a = archive_open_tar();
		if (lseek(fd, 0, SEEK_SET) < 0)
			r = vs_error_sys(err, errno, "seek");
		else if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK)
			r = archive_err(a, EINVAL, OPEN_FAILED, err);
		else
			r = extract_stream(c, a, (enum pass)pass, err);
	}
	return r;
}

/* Open blobs/<alg>/<hex> of a descriptor below the layout dir. */
static int oci_open_blob(int layoutfd, json_t *desc, struct vs_error *err)
{
	const char *digest = json_string_value(json_object_get(desc, "digest"));
	if (!digest)
		return vs_error_set(err, EINVAL, "descriptor without a digest");
	const char *colon = strchr(digest, ':');
	if (!colon || colon == digest || !colon[1] || strlen(digest) > 200)
		return vs_error_set(err, EINVAL, "bad digest \"%.80s\"", digest);
	for (const char *p = digest; p < colon; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789+._-", *p))
			return vs_error_set(err, EINVAL, "bad digest \"%.80s\"", digest);
	for (const char *p = colon + 1; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-",
			    *p))
			return vs_error_set(err, EINVAL, "bad digest \"%.80s\"", digest);
	cleanup_free char *rel =
	    vs_xasprintf("blobs/%.*s/%s", (int)(colon - digest), digest, colon + 1);
	const char *leaf;
	cleanup_close int dfd = image_open_parent(layoutfd, rel, false, &leaf, err);
	if (dfd < 0)
		return vs_error_wrap(err, "blob %.80s", digest);
	int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "blob %.80s", digest);
	return fd;
}

static int oci_load_json(int layoutfd, json_t *desc, json_t **out, struct vs_error *err)
{
	cleanup_close int fd = oci_open_blob(layoutfd, desc, err);
	if (fd < 0)
		return fd;
	cleanup_free char *text = NULL;
	cleanup_free char *self = vs_xasprintf("/proc/self/fd/%d", fd);
	int r = vs_read_file(self, OCI_MAX_JSON, &text, NULL, err);
	if (r < 0)
		return r;
	json_error_t jerr;
	*out = json_loads(text, 0, &jerr);
	if (!*out)
		return vs_error_set(err, EINVAL, "line %d: %s", jerr.line, jerr.text);
	return 0;
}

/* From an index's manifests, the one for this machine (or the only one). */
static json_t *oci_pick(json_t *manifests)
{
	size_t n = json_array_size(manifests);
	if (n == 1)
		return json_array_get(manifests, 0);
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(manifests, i);
		json_t *pl = json_object_get(m, "platform");
		const char *os = json_string_value(json_object_get(pl, "os"));
		const char *arch = json_string_value(json_object_get(pl, "architecture"));
		if (os && arch && !strcmp(os, "linux") && !strcmp(arch, OCI_ARCH))
			return m;
	}
	return NULL;
}

/* Flatten the layout below layoutfd into c->dstfd (the empty rootfs). */
static int oci_flatten(struct import_ctx *c, int layoutfd, struct vs_error *err)
{
	json_t *doc = NULL;
	{
		cleanup_free char *text = NULL;
		int r = vs_read_file_at(layoutfd, "index.json", OCI_MAX_JSON, &text, NULL, err);
		if (r < 0)
			return r;
		json_error_t jerr;
		doc = json_loads(text, 0, &jerr);
		if (!doc)
			return vs_error_set(err, EINVAL, "index.json: line %d: %s", jerr.line,
					    jerr.text);
	}
	/* index -> (nested index ->) manifest: a few levels at most. */
	int r = 0;
	for (int depth = 0; r == 0; depth++) {
		json_t *layers = json_object_get(doc, "layers");
		if (json_is_array(layers))
			break;
		json_t *m = oci_pick(json_object_get(doc, "manifests"));
		if (depth > 4 || !m) {
			r = vs_error_set(err, EINVAL,
					 "no image manifest for linux/%s in the OCI index",
					 OCI_ARCH);
			break;
		}
		json_t *next = NULL;
		r = oci_load_json(layoutfd, m, &next, err);
		json_decref(doc);
		doc = next;
		if (r < 0)
			r = vs_error_wrap(err, "manifest");
	}
	if (r < 0) {
		json_decref(doc);
		return r;
	}
	json_t *layers = json_object_get(doc, "layers");
	for (size_t i = 0; i < json_array_size(layers) && r == 0; i++) {
		cleanup_close int fd = oci_open_blob(layoutfd, json_array_get(layers, i), err);
		r = fd < 0 ? fd : apply_layer(c, fd, err);
		if (r < 0)
			r = vs_error_wrap(err, "layer %zu", i + 1);
	}
	json_decref(doc);
	return r;
}

/*
 * The pre-OCI `docker save` format: manifest.json = [{"Config": "x.json",
 * "RepoTags": [...], "Layers": ["<id>/layer.tar", ...]}], layers bottom
 * first. NULL unless manifest.json has exactly that shape.
 */
static json_t *docker_manifest(int layoutfd)
{
	cleanup_free char *text = NULL;
	struct vs_error ignored;
	struct stat sb;
	if (fstatat(layoutfd, "manifest.json", &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(sb.st_mode) ||
	    vs_read_file_at(layoutfd, "manifest.json", OCI_MAX_JSON, &text, NULL, &ignored) < 0)
		return NULL;
	json_t *doc = json_loads(text, 0, NULL);
	json_t *first = json_array_get(doc, 0);
	json_t *layers = json_object_get(first, "Layers");
	bool ok = json_is_string(json_object_get(first, "Config")) && json_is_array(layers);
	for (size_t i = 0; ok && i < json_array_size(layers); i++)
		ok = json_is_string(json_array_get(layers, i));
	if (!ok) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static int docker_flatten(struct import_ctx *c, int layoutfd, json_t *doc, struct vs_error *err)
{
	if (json_array_size(doc) != 1)
		return vs_error_set(err, EINVAL,
				    "manifest.json: %zu images in one archive (save one image)",
				    json_array_size(doc));
	json_t *layers = json_object_get(json_array_get(doc, 0), "Layers");
	int r = 0;
	for (size_t i = 0; i < json_array_size(layers) && r == 0; i++) {
		const char *raw = json_string_value(json_array_get(layers, i));
		cleanup_free char *rel = image_clean_path(raw, err);
		if (!rel || !*rel)
			return vs_error_wrap(err, "layer %zu \"%.200s\"", i + 1, raw);
		const char *leaf;
		cleanup_close int dfd = image_open_parent(layoutfd, rel, false, &leaf, err);
		if (dfd < 0)
			return vs_error_wrap(err, "layer %zu \"%.200s\"", i + 1, raw);
		cleanup_close int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		r = fd < 0 ? vs_error_sys(err, errno, "open") : apply_layer(c, fd, err);
		if (r < 0)
			r = vs_error_wrap(err, "layer %zu \"%.200s\"", i + 1, raw);
	}
	return r;
}

/* An OCI image layout has "oci-layout" and "index.json" at its top. */
static bool is_oci_layout(int dirfd_)
{
	struct stat a, b;
	return fstatat(dirfd_, "oci-layout", &a, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(a.st_mode) &&
	       fstatat(dirfd_, "index.json", &b, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(b.st_mode);
}

static int import_archive(struct import_ctx *c, const char *path, const char **kind,
			  struct vs_error *err)
{
	{
		cleanup_archive_read struct archive *a = archive_open_tar();
		if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK)
			return archive_err(a, EINVAL, OPEN_FAILED, err);
		int r = extract_stream(c, a, PASS_ALL, err);
		if (r < 0)
			return r;
	}
	json_t *docker = NULL;
	if (is_oci_layout(c->dstfd))
		*kind = "oci-archive";
	else if ((docker = docker_manifest(c->dstfd)))
		*kind = "docker-archive";
	else
		return 0;

	/* What we unpacked is the layout: move it aside, flatten into a fresh
	 * rootfs, drop the layout. All inside the staging dir. */
	struct image_stage *st = c->st;
	cleanup_free char *layout = vs_xasprintf("%s/layout", st->tmp);
	if (rename(st->rootfs, layout) < 0) {
		json_decref(docker);
		return vs_error_sys(err, errno, "rename %s", st->rootfs);
	}
	cleanup_close int layoutfd = st->rootfd;
	st->rootfd = -1;
	int r = 0;
	if (mkdir(st->rootfs, 0755) < 0 || chmod(st->rootfs, 0755) < 0 ||
	    (image_can_chown() && chown(st->rootfs, 0, 0) < 0))
		r = vs_error_sys(err, errno, "mkdir %s", st->rootfs);
	if (r == 0) {
		st->rootfd = open(st->rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (st->rootfd < 0)
			r = vs_error_sys(err, errno, "open %s", st->rootfs);
	}
	if (r == 0) {
		c->dstfd = st->rootfd;
		c->lim.total = 0; /* the layout's blobs do not count against the rootfs */
		r = docker ? docker_flatten(c, layoutfd, docker, err)
			   : oci_flatten(c, layoutfd, err);
		if (r < 0)
			vs_error_wrap(err, docker ? "docker image" : "OCI image");
	}
	json_decref(docker);
	if (r < 0)
		return r;
	return vs_rm_rf(layout, err);
}

/* ---- directories -------------------------------------------------------- */

static int copy_data(int src, int dst, uint64_t size, struct vs_error *err)
{
	char buf[65536];
	uint64_t done = 0;
	while (done < size) {
		size_t want = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
		ssize_t n = read(src, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vs_error_sys(err, errno, "read");
		if (n == 0)
			break; /* shrank while we copied: take what is there */
		int r = vs_write_all(dst, buf, (size_t)n);
		if (r < 0)
			return vs_error_sys(err, -r, "write");
		done += (uint64_t)n;
	}
	return 0;
}

static int copy_tree(struct import_ctx *c, int sfd, int dfd, const char *prefix, int depth,
		     struct vs_error *err)
{
	if (depth > MAX_DIR_DEPTH)
		return vs_error_set(err, ELOOP, "%s: deeper than %d directories", prefix,
				    MAX_DIR_DEPTH);
	cleanup_closedir DIR *d = vs_opendirat(sfd, ".", 0);
	if (!d)
		return vs_error_sys(err, errno, "%s: open", *prefix ? prefix : ".");
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		cleanup_free char *rel = *prefix ? vs_xasprintf("%s/%s", prefix, n) : vs_xstrdup(n);
		struct stat sb;
		if (fstatat(sfd, n, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			return vs_error_sys(err, errno, "%s: stat", rel);
		int r = 0;
		if (S_ISDIR(sb.st_mode)) {
			if (sb.st_dev == c->stage_dev && sb.st_ino == c->stage_ino)
				return vs_error_set(err, ELOOP, "%s: is the image being built",
						    rel);
			cleanup_close int s2 =
			    openat(sfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s2 < 0)
				return vs_error_sys(err, errno, "%s: open", rel);
			if (mkdirat(dfd, n, 0700) < 0)
				return vs_error_sys(err, errno, "%s: mkdir", rel);
			cleanup_close int d2 =
			    openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (d2 < 0)
				return vs_error_sys(err, errno, "%s: open copy", rel);
			r = copy_tree(c, s2, d2, rel, depth + 1, err);
			if (r < 0)
				return r;
			r = finish_fd(d2, sb.st_mode, &sb.st_mtim, err);
		} else if (S_ISREG(sb.st_mode)) {
			r = image_limits_add(&c->lim, (uint64_t)sb.st_size, err);
			if (r < 0)
				return vs_error_wrap(err, "%s", rel);
			cleanup_close int s2 = openat(sfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (s2 < 0)
				return vs_error_sys(err, errno, "%s: open", rel);
			cleanup_close int d2 = openat(
			    dfd, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (d2 < 0)
				return vs_error_sys(err, errno, "%s: create", rel);
			r = copy_data(s2, d2, (uint64_t)sb.st_size, err);
			if (r == 0)
				r = finish_fd(d2, sb.st_mode, &sb.st_mtim, err);
		} else if (S_ISLNK(sb.st_mode)) {
			char target[PATH_MAX];
			ssize_t len = readlinkat(sfd, n, target, sizeof(target) - 1);
			if (len < 0)
				return vs_error_sys(err, errno, "%s: readlink", rel);
			target[len] = '\0';
			cleanup_free char *link = NULL;
			r = check_symlink(c, rel, target, &link, err);
			if (r == 0 && symlinkat(link, dfd, n) < 0)
				r = vs_error_sys(err, errno, "symlink");
			if (r == 0 && image_can_chown() &&
			    fchownat(dfd, n, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
				r = vs_error_sys(err, errno, "chown");
		} else {
			r = refuse_type(sb.st_mode & S_IFMT, err);
		}
		if (r < 0)
			return S_ISDIR(sb.st_mode) ? r : vs_error_wrap(err, "%s", rel);
		c->entries++;
	}
	if (errno)
		return vs_error_sys(err, errno, "%s: readdir", *prefix ? prefix : ".");
	return 0;
}

static int import_dir(struct import_ctx *c, const char *path, struct vs_error *err)
{
	cleanup_close int sfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0)
		return vs_error_sys(err, errno, "open");
	struct stat sb;
	if (fstat(c->st->rootfd, &sb) < 0)
		return vs_error_sys(err, errno, "stat");
	c->stage_dev = sb.st_dev;
	c->stage_ino = sb.st_ino;
	return copy_tree(c, sfd, c->st->rootfd, "", 0, err);
}

int image_import(const char *root, const char *name, const char *path, struct vs_error *err)
{
	return image_import_ex(root, name, path, 0, err);
}

int image_import_ex(const char *root, const char *name, const char *path, unsigned flags,
		    struct vs_error *err)
{
	int r = vs_check_name("image", name, err);
	if (r < 0)
		return r;
	if (!path || !*path)
		return vs_error_set(err, EINVAL, "image %s: import: no path given", name);
	struct stat sb;
	if (stat(path, &sb) < 0)
		return vs_error_sys(err, errno, "image %s: import %s", name, path);
	/* Directories may hold archives too (OCI layouts): load it either way. */
	if ((r = archive_dl_load(err)) < 0)
		return vs_error_wrap(err, "image %s: import %s", name, path);

	cleanup_stage struct image_stage st;
	r = image_stage_begin(&st, root, name, err);
	if (r < 0)
		return r;
	struct import_ctx c = {.st = &st, .dstfd = st.rootfd, .flags = flags};
	const char *kind = "archive";
	r = image_limits_init(&c.lim, err);
	if (r == 0)
		r = S_ISDIR(sb.st_mode) ? import_dir(&c, path, err)
					: import_archive(&c, path, &kind, err);
	import_ctx_free(&c);
	if (r < 0)
		return vs_error_wrap(err, "image %s: import %s", name, path);

	cleanup_free char *abs = realpath(path, NULL);
	char source[PATH_MAX + 16];
	snprintf(source, sizeof(source), "%s:%s", S_ISDIR(sb.st_mode) ? "dir" : kind,
		 abs ? abs : path);
	return image_stage_commit(&st, source, err);
}
