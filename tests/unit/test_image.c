/*
 * test_image.c - the image store as a user sees it: busybox build, imports
 * from a directory and from tar / tar.gz / tar.xz written here with
 * libarchive, and every hostile archive refused with nothing left behind.
 * Runs as root or not; ownership checks only run as root.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "vslice/image.h"
#include "vslice/util.h"

static char *make_root(void)
{
	char *root = vs_xstrdup("/tmp/vs-image-test-XXXXXX");
	assert_non_null(mkdtemp(root));
	return root;
}

static void drop_root(char *root)
{
	struct vs_error err;
	assert_int_equal(vs_rm_rf(root, &err), 0);
	free(root);
}

/* Nothing of image name and no staging dir under root/images. */
static void assert_nothing_left(const char *root, const char *name)
{
	cleanup_free char *dir = vs_xasprintf("%s/images/%s", root, name);
	struct stat sb;
	assert_int_equal(lstat(dir, &sb), -1);
	cleanup_free char *images = vs_xasprintf("%s/images", root);
	DIR *d = opendir(images);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strncmp(de->d_name, ".tmp-", 5))
			fail_msg("staging dir left behind: %s", de->d_name);
	}
	closedir(d);
}

struct ent {
	const char *path;
	mode_t type; /* AE_IFREG (default when 0), AE_IFDIR, AE_IFLNK, AE_IFCHR ... */
	mode_t perm; /* 0644 / 0755 when 0 */
	const char *data;
	const char *link;     /* symlink target */
	const char *hardlink; /* hard link target */
	const void *bin;      /* binary data of size bytes */
	int64_t size;	      /* declared size when data is NULL */
};

enum { F_NONE, F_GZIP, F_XZ };

static void write_tar(const char *file, int filter, const struct ent *ents, size_t n)
{
	struct archive *a = archive_write_new();
	assert_non_null(a);
	if (filter == F_GZIP)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	else if (filter == F_XZ)
		assert_int_equal(archive_write_add_filter_xz(a), ARCHIVE_OK);
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, file), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *x = &ents[i];
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, x->path);
		mode_t type = x->type ? x->type : AE_IFREG;
		archive_entry_set_filetype(e, type);
		archive_entry_set_perm(e, x->perm ? x->perm : (type == AE_IFDIR ? 0755 : 0644));
		archive_entry_set_uid(e, 1000);
		archive_entry_set_gid(e, 1000);
		archive_entry_set_mtime(e, 1700000000, 0);
		if (x->link)
			archive_entry_set_symlink(e, x->link);
		if (x->hardlink)
			archive_entry_set_hardlink(e, x->hardlink);
		if (type == AE_IFCHR || type == AE_IFBLK)
			archive_entry_set_rdev(e, makedev(1, 3));
		int64_t size = 0;
		if (type == AE_IFREG && !x->hardlink)
			size = x->data ? (int64_t)strlen(x->data) : x->size;
		archive_entry_set_size(e, size);
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		const void *bytes = x->data ? (const void *)x->data : x->bin;
		if (bytes && size)
			assert_int_equal(archive_write_data(a, bytes, (size_t)size), size);
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static char *rootfs_path(const char *root, const char *name, const char *rel)
{
	return vs_xasprintf("%s/images/%s/rootfs/%s", root, name, rel);
}

static void assert_file(const char *root, const char *name, const char *rel, const char *content,
			mode_t perm)
{
	cleanup_free char *p = rootfs_path(root, name, rel);
	struct stat sb;
	assert_int_equal(lstat(p, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, perm);
	if (geteuid() == 0) {
		assert_int_equal(sb.st_uid, 0);
		assert_int_equal(sb.st_gid, 0);
	}
	if (content) {
		cleanup_free char *got = NULL;
		struct vs_error err;
		assert_int_equal(vs_read_file(p, 0, &got, NULL, &err), 0);
		assert_string_equal(got, content);
	}
}

static void assert_symlink(const char *root, const char *name, const char *rel, const char *target)
{
	cleanup_free char *p = rootfs_path(root, name, rel);
	char buf[PATH_MAX];
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, target);
}

/* ---- busybox ------------------------------------------------------------ */

static void test_busybox_build(void **state)
{
	if (access("/bin/busybox", X_OK) != 0 && access("/usr/bin/busybox", X_OK) != 0)
		skip();
	char *root = make_root();
	struct vs_error err;
	uint64_t t0 = vs_now_ns();
	int r = image_build_busybox(root, "busybox", NULL, &err);
	uint64_t t1 = vs_now_ns();
	if (r < 0)
		fail_msg("build: %s", err.msg);
	print_message("busybox image built in %.1f ms\n", (double)(t1 - t0) / 1e6);

	cleanup_free char *bb = rootfs_path(root, "busybox", "bin/busybox");
	struct stat sb;
	assert_int_equal(stat(bb, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0755);
	assert_symlink(root, "busybox", "bin/sh", "busybox");
	assert_symlink(root, "busybox", "usr/bin/env", "../../bin/busybox");
	/* bin/sh resolves to the image's busybox, not the host's. */
	cleanup_free char *sh = rootfs_path(root, "busybox", "bin/sh");
	struct stat st2;
	assert_int_equal(stat(sh, &st2), 0);
	assert_int_equal(st2.st_ino, sb.st_ino);
	assert_file(root, "busybox", "etc/passwd", NULL, 0644);
	assert_file(root, "busybox", "etc/hosts", NULL, 0644);
	cleanup_free char *tmp = rootfs_path(root, "busybox", "tmp");
	assert_int_equal(stat(tmp, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 01777);

	struct image_info *v = NULL;
	size_t n = 0;
	assert_int_equal(image_list(root, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "busybox");
	assert_true(v[0].size >= 1000000);
	assert_true(v[0].created > 0);
	free(v);

	cleanup_free char *rootfs = NULL;
	assert_int_equal(image_rootfs(root, "busybox", &rootfs, &err), 0);
	cleanup_free char *want = vs_xasprintf("%s/images/busybox/rootfs", root);
	assert_string_equal(rootfs, want);

	/* A second build refuses and leaves the first alone. */
	assert_int_equal(image_build_busybox(root, "busybox", NULL, &err), -EEXIST);
	assert_string_equal(
	    err.msg, "image busybox: already exists (remove it with: slicectl image rm busybox)");

	assert_int_equal(image_rm(root, "busybox", &err), 0);
	assert_nothing_left(root, "busybox");
	assert_int_equal(image_list(root, &v, &n, &err), 0);
	assert_int_equal(n, 0);
	free(v);
	drop_root(root);
}

static void test_busybox_dynamic_refused(void **state)
{
	/* Any dynamically linked binary stands in for a non-static busybox. */
	const char *dyn = access("/bin/ls", R_OK) == 0 ? "/bin/ls" : "/usr/bin/ls";
	char *root = make_root();
	struct vs_error err;
	assert_int_equal(image_build_busybox(root, "bb", dyn, &err), -ENOEXEC);
	assert_non_null(strstr(err.msg, "apt-get install busybox-static"));
	assert_nothing_left(root, "bb");
	drop_root(root);
}

/* ---- store -------------------------------------------------------------- */

static void test_names_and_missing(void **state)
{
	char *root = make_root();
	struct vs_error err;
	assert_int_equal(image_build_busybox(root, "Bad/Name", NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid image name"));
	assert_int_equal(image_import(root, "../x", "/tmp", &err), -EINVAL);
	assert_int_equal(image_rm(root, "nope", &err), -ENOENT);
	assert_string_equal(err.msg, "image nope: no such image (see: slicectl image list)");
	char *p = NULL;
	assert_int_equal(image_rootfs(root, "busybox", &p, &err), -ENOENT);
	assert_string_equal(
	    err.msg, "image busybox: no such image (build it with: slicectl image build busybox)");
	assert_null(p);
	struct image_info info;
	assert_int_equal(image_get(root, "nope", &info, &err), -ENOENT);
	struct image_info *v = NULL;
	size_t n = 5;
	assert_int_equal(image_list(root, &v, &n, &err), 0);
	assert_int_equal(n, 0);
	free(v);
	cleanup_free char *missing = vs_xasprintf("%s/does-not-exist.tar", root);
	assert_int_equal(image_import(root, "x", missing, &err), -ENOENT);
	drop_root(root);
}

/* ---- directory import --------------------------------------------------- */

static void put(const char *dir, const char *rel, const char *content, mode_t mode)
{
	cleanup_free char *p = vs_xasprintf("%s/%s", dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(vs_write_all(fd, content, strlen(content)), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static char *make_src_dir(const char *root)
{
	char *src = vs_xasprintf("%s/src", root);
	struct vs_error err;
	cleanup_free char *sub = vs_xasprintf("%s/usr/bin", src);
	assert_int_equal(vs_mkdir_p(sub, 0755, &err), 0);
	put(src, "usr/bin/tool", "#!/bin/sh\necho hi\n", 0755);
	put(src, "usr/bin/su", "setuid!\n", 04755);
	put(src, "hello", "hello\n", 0640);
	cleanup_free char *up = vs_xasprintf("%s/usr/bin/up", src);
	assert_int_equal(symlink("../../hello", up), 0);
	cleanup_free char *l = vs_xasprintf("%s/usr/bin/t2", src);
	assert_int_equal(symlink("tool", l), 0);
	cleanup_free char *l2 = vs_xasprintf("%s/top", src);
	assert_int_equal(symlink("./usr//bin/tool", l2), 0);
	return src;
}

static void test_import_dir(void **state)
{
	char *root = make_root();
	cleanup_free char *src = make_src_dir(root);
	struct vs_error err;
	if (image_import(root, "fromdir", src, &err) < 0)
		fail_msg("%s", err.msg);
	assert_file(root, "fromdir", "usr/bin/tool", "#!/bin/sh\necho hi\n", 0755);
	assert_file(root, "fromdir", "usr/bin/su", "setuid!\n", 0755);
	assert_file(root, "fromdir", "hello", "hello\n", 0640);
	assert_symlink(root, "fromdir", "usr/bin/t2", "tool");
	assert_symlink(root, "fromdir", "top", "./usr//bin/tool");
	assert_symlink(root, "fromdir", "usr/bin/up", "../../hello");
	struct image_info info;
	assert_int_equal(image_get(root, "fromdir", &info, &err), 0);
	assert_int_equal(info.size, strlen("#!/bin/sh\necho hi\n") + strlen("setuid!\n") + 6);
	assert_non_null(strstr(info.source, src));
	assert_int_equal(image_import(root, "fromdir", src, &err), -EEXIST);
	drop_root(root);
}

static void test_import_dir_hostile(void **state)
{
	struct {
		const char *what;
		const char *expect;
	} cases[] = {
	    {"abs-symlink", "symlink to absolute path"},
	    {"escape-symlink", "leaves the image"},
	    {"fifo", "FIFO"},
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
		char *root = make_root();
		cleanup_free char *src = make_src_dir(root);
		cleanup_free char *p = vs_xasprintf("%s/usr/bin/bad", src);
		if (i == 0)
			assert_int_equal(symlink("/etc/passwd", p), 0);
		else if (i == 1)
			assert_int_equal(symlink("../../..", p), 0);
		else
			assert_int_equal(mkfifo(p, 0644), 0);
		struct vs_error err;
		assert_true(image_import(root, "bad", src, &err) < 0);
		if (!strstr(err.msg, cases[i].expect) || !strstr(err.msg, "usr/bin/bad"))
			fail_msg("%s: unexpected error: %s", cases[i].what, err.msg);
		assert_nothing_left(root, "bad");
		drop_root(root);
	}
}

/* ---- archive import ----------------------------------------------------- */

static const struct ent good[] = {
    {.path = "./", .type = AE_IFDIR},
    {.path = "./bin/", .type = AE_IFDIR},
    {.path = "./bin/app", .perm = 0755, .data = "#!/bin/sh\nexit 0\n"},
    {.path = "./bin/sh", .type = AE_IFLNK, .link = "app"},
    {.path = "./bin/app2", .hardlink = "bin/app"},
    {.path = "etc/motd", .data = "welcome\n"}, /* parent implied */
    {.path = "usr/bin/env", .type = AE_IFLNK, .link = "../../bin/app"},
    {.path = "sbin/su", .perm = 06755, .data = "x"}, /* setuid: cleared */
    {.path = "private", .type = AE_IFDIR, .perm = 0700},
    {.path = "private/key", .perm = 0600, .data = "k"},
};

static void check_good(const char *root, const char *name)
{
	assert_file(root, name, "bin/app", "#!/bin/sh\nexit 0\n", 0755);
	assert_file(root, name, "bin/app2", "#!/bin/sh\nexit 0\n", 0755);
	assert_file(root, name, "etc/motd", "welcome\n", 0644);
	assert_file(root, name, "sbin/su", "x", 0755);
	assert_file(root, name, "private/key", "k", 0600);
	assert_symlink(root, name, "bin/sh", "app");
	assert_symlink(root, name, "usr/bin/env", "../../bin/app");
	cleanup_free char *a = rootfs_path(root, name, "bin/app");
	cleanup_free char *b = rootfs_path(root, name, "bin/app2");
	cleanup_free char *priv = rootfs_path(root, name, "private");
	struct stat sa, sb;
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(b, &sb), 0);
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sa.st_mtime, 1700000000);
	assert_int_equal(stat(priv, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	struct image_info info;
	struct vs_error err;
	assert_int_equal(image_get(root, name, &info, &err), 0);
	/* app counted once despite the hard link. */
	assert_int_equal(info.size, strlen("#!/bin/sh\nexit 0\n") + 8 + 1 + 1);
}

static void import_good(int filter, const char *name)
{
	char *root = make_root();
	cleanup_free char *tar = vs_xasprintf("%s/in.archive", root); /* no telling extension */
	write_tar(tar, filter, good, VS_ARRAY_SIZE(good));
	struct vs_error err;
	if (image_import(root, name, tar, &err) < 0)
		fail_msg("%s", err.msg);
	check_good(root, name);
	struct image_info *v = NULL;
	size_t n = 0;
	assert_int_equal(image_list(root, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, name);
	free(v);
	assert_int_equal(image_rm(root, name, &err), 0);
	assert_nothing_left(root, name);
	drop_root(root);
}

static void test_import_tar(void **state)
{
	import_good(F_NONE, "plain");
}
static void test_import_tar_gz(void **state)
{
	import_good(F_GZIP, "gz");
}
static void test_import_tar_xz(void **state)
{
	import_good(F_XZ, "xz");
}

struct hostile {
	const char *what;
	struct ent bad[3];
	const char *expect;
};

static const struct hostile hostile_cases[] = {
    {"dotdot", {{.path = "../x", .data = "x"}}, "entry \"../x\": path leaves the image"},
    {"absolute", {{.path = "/etc/x", .data = "x"}}, "entry \"/etc/x\": absolute path"},
    {"dotdot-mid", {{.path = "a/../../x", .data = "x"}}, "path leaves the image"},
    {"abs-symlink",
     {{.path = "etc/pw", .type = AE_IFLNK, .link = "/etc/passwd"}},
     "entry \"etc/pw\": symlink to absolute path \"/etc/passwd\""},
    {"escape-symlink",
     {{.path = "a", .type = AE_IFLNK, .link = "../../.."}},
     "entry \"a\": symlink target \"../../..\" leaves the image"},
    {"escape-symlink-deep",
     {{.path = "x/y/z", .type = AE_IFLNK, .link = "../../../etc"}},
     "leaves the image"},
    {"hardlink-dotdot",
     {{.path = "shadow", .hardlink = "../../etc/shadow"}},
     "entry \"shadow\": hard link target \"../../etc/shadow\""},
    {"hardlink-abs",
     {{.path = "shadow", .hardlink = "/etc/shadow"}},
     "hard link to absolute path \"/etc/shadow\""},
    {"chardev", {{.path = "dev/mem", .type = AE_IFCHR}}, "entry \"dev/mem\": character device"},
    {"blockdev", {{.path = "dev/sda", .type = AE_IFBLK}}, "block device"},
    {"fifo", {{.path = "p", .type = AE_IFIFO}}, "FIFO"},
    /* A symlink the archive planted is never written through. */
    {"through-symlink",
     {{.path = "d/l", .type = AE_IFLNK, .link = ".."},
      {.path = "d/l/x", .type = AE_IFLNK, .link = ".."}},
     "not a directory"},
    {"through-symlink-file",
     {{.path = "l", .type = AE_IFLNK, .link = "."}, {.path = "l/f", .data = "x"}},
     "entry \"l/f\": l: not a directory"},
    {"hardlink-to-symlink",
     {{.path = "a/b/l", .type = AE_IFLNK, .link = "../../x"}, {.path = "l2", .hardlink = "a/b/l"}},
     "not a regular file"},
    /* Each link alone stays inside; chained, x escapes on the host. */
    {"dotdot-after-name",
     {{.path = "d/l", .type = AE_IFLNK, .link = ".."},
      {.path = "x", .type = AE_IFLNK, .link = "d/l/.."}},
     "entry \"x\": symlink target \"d/l/..\" has \"..\" after a name"},
    {"oci-no-manifest",
     {{.path = "oci-layout", .data = "{\"imageLayoutVersion\": \"1.0.0\"}"},
      {.path = "index.json", .data = "{\"schemaVersion\": 2, \"manifests\": []}"}},
     "OCI image: no image manifest for linux/"},
};

static void test_import_hostile(void **state)
{
	for (size_t i = 0; i < VS_ARRAY_SIZE(hostile_cases); i++) {
		const struct hostile *h = &hostile_cases[i];
		char *root = make_root();
		cleanup_free char *tar = vs_xasprintf("%s/in.tar", root);
		struct ent ents[5] = {{.path = "ok", .data = "fine\n"}};
		size_t n = 1;
		for (size_t k = 0; k < 3 && h->bad[k].path; k++)
			ents[n++] = h->bad[k];
		ents[n++] = (struct ent){.path = "after", .data = "never\n"};
		write_tar(tar, i % 2 ? F_GZIP : F_NONE, ents, n);
		struct vs_error err;
		int r = image_import(root, "web", tar, &err);
		if (r >= 0)
			fail_msg("%s: imported", h->what);
		if (!strstr(err.msg, h->expect))
			fail_msg("%s: unexpected error: %s", h->what, err.msg);
		if (strncmp(err.msg, "image web: import ", 18))
			fail_msg("%s: error does not name the image: %s", h->what, err.msg);
		assert_nothing_left(root, "web");
		drop_root(root);
	}
}

/* ---- OCI image layouts ------------------------------------------------- */

#define L1 "1111111111111111111111111111111111111111111111111111111111111111"
#define L2 "2222222222222222222222222222222222222222222222222222222222222222"
#define MF "3333333333333333333333333333333333333333333333333333333333333333"

static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	struct vs_error err;
	assert_int_equal(vs_read_file(path, 0, &buf, len, &err), 0);
	return buf;
}

/* An OCI layout tar with two layers: the second whites out and replaces. */
static void write_oci(const char *root, const char *out, const struct ent *l2, size_t nl2)
{
	static const struct ent layer1[] = {
	    {.path = "bin/app", .perm = 0755, .data = "v1"},
	    {.path = "etc/gone", .data = "gone"},
	    {.path = "etc/keep", .data = "old"},
	    {.path = "dir/a", .data = "a"},
	    {.path = "dir/sub/b", .data = "b"},
	    {.path = "tree/x/y", .data = "y"},
	    {.path = "usr/bin/env", .type = AE_IFLNK, .link = "../../bin/app"},
	};
	cleanup_free char *p1 = vs_xasprintf("%s/l1", root);
	cleanup_free char *p2 = vs_xasprintf("%s/l2", root);
	write_tar(p1, F_GZIP, layer1, VS_ARRAY_SIZE(layer1));
	write_tar(p2, F_NONE, l2, nl2);
	size_t n1, n2;
	cleanup_free char *b1 = slurp(p1, &n1);
	cleanup_free char *b2 = slurp(p2, &n2);
	const char *manifest = "{\"schemaVersion\": 2, \"config\": {}, \"layers\": ["
			       "{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", "
			       "\"digest\": \"sha256:" L1 "\"},"
			       "{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", "
			       "\"digest\": \"sha256:" L2 "\"}]}";
	const char *index = "{\"schemaVersion\": 2, \"manifests\": ["
			    "{\"digest\": \"sha256:0000\", \"platform\": "
			    "{\"os\": \"linux\", \"architecture\": \"s390x\"}},"
			    "{\"digest\": \"sha256:" MF "\", \"platform\": "
			    "{\"os\": \"linux\", \"architecture\": \"amd64\"}},"
			    "{\"digest\": \"sha256:" MF "\", \"platform\": "
			    "{\"os\": \"linux\", \"architecture\": \"arm64\"}}]}";
	struct ent layout[] = {
	    {.path = "oci-layout", .data = "{\"imageLayoutVersion\": \"1.0.0\"}"},
	    {.path = "index.json", .data = index},
	    {.path = "blobs/sha256/" MF, .data = manifest},
	    {.path = "blobs/sha256/" L1, .bin = b1, .size = (int64_t)n1},
	    {.path = "blobs/sha256/" L2, .bin = b2, .size = (int64_t)n2},
	};
	write_tar(out, F_NONE, layout, VS_ARRAY_SIZE(layout));
}

static void test_import_oci(void **state)
{
	char *root = make_root();
	cleanup_free char *tar = vs_xasprintf("%s/oci.tar", root);
	const struct ent layer2[] = {
	    {.path = "etc/.wh.gone", .data = ""},
	    {.path = "dir/.wh..wh..opq", .data = ""},
	    {.path = "dir/c", .data = "c"},
	    {.path = "etc/keep", .data = "new"},
	    {.path = "tree", .data = "now a file"}, /* replaces a whole directory */
	    {.path = "bin/app", .perm = 04755, .data = "v2"},
	};
	write_oci(root, tar, layer2, VS_ARRAY_SIZE(layer2));
	struct vs_error err;
	if (image_import(root, "oci", tar, &err) < 0)
		fail_msg("%s", err.msg);
	assert_file(root, "oci", "bin/app", "v2", 0755);
	assert_file(root, "oci", "etc/keep", "new", 0644);
	assert_file(root, "oci", "dir/c", "c", 0644);
	assert_file(root, "oci", "tree", "now a file", 0644);
	assert_symlink(root, "oci", "usr/bin/env", "../../bin/app");
	const char *absent[] = {"etc/gone",	    "etc/.wh.gone", "dir/a",	  "dir/sub",
				"dir/.wh..wh..opq", "oci-layout",   "index.json", "blobs"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(absent); i++) {
		cleanup_free char *p = rootfs_path(root, "oci", absent[i]);
		struct stat sb;
		if (lstat(p, &sb) == 0)
			fail_msg("%s should not be in the image", absent[i]);
	}
	cleanup_free char *layout = vs_xasprintf("%s/images/oci/oci-layout", root);
	struct stat sb;
	assert_int_equal(lstat(layout, &sb), -1);
	struct image_info info;
	assert_int_equal(image_get(root, "oci", &info, &err), 0);
	assert_int_equal(info.size, 2 + 3 + 1 + 10);
	assert_non_null(strstr(info.source, "oci-archive:"));
	drop_root(root);
}

static void test_import_oci_hostile(void **state)
{
	const struct {
		struct ent e;
		const char *expect;
	} cases[] = {
	    {{.path = "../x", .data = "x"},
	     "OCI image: layer 2: entry \"../x\": path leaves the image"},
	    {{.path = "l", .type = AE_IFLNK, .link = "/etc"}, "symlink to absolute path"},
	    {{.path = "dev/null", .type = AE_IFCHR}, "character device"},
	    {{.path = "etc/.wh..", .data = ""}, "bad whiteout"},
	};
	for (size_t i = 0; i < VS_ARRAY_SIZE(cases); i++) {
		char *root = make_root();
		cleanup_free char *tar = vs_xasprintf("%s/oci.tar", root);
		write_oci(root, tar, &cases[i].e, 1);
		struct vs_error err;
		assert_true(image_import(root, "oci", tar, &err) < 0);
		if (!strstr(err.msg, cases[i].expect))
			fail_msg("case %zu: unexpected error: %s", i, err.msg);
		assert_nothing_left(root, "oci");
		drop_root(root);
	}
}

static void test_import_relativize(void **state)
{
	char *root = make_root();
	cleanup_free char *tar = vs_xasprintf("%s/abs.tar", root);
	const struct ent ents[] = {
	    {.path = "etc/localtime", .type = AE_IFLNK, .link = "/usr/share/zoneinfo/UTC"},
	    {.path = "bin/ls", .type = AE_IFLNK, .link = "/bin/busybox"},
	    {.path = "a/b/c", .type = AE_IFLNK, .link = "/../etc/./x//"},
	    {.path = "r", .type = AE_IFLNK, .link = "/"},
	    {.path = "d/r", .type = AE_IFLNK, .link = "/.."},
	    {.path = "rel", .type = AE_IFLNK, .link = "bin/ls"},
	};
	write_tar(tar, F_GZIP, ents, VS_ARRAY_SIZE(ents));
	struct vs_error err;
	assert_int_equal(image_import(root, "abs", tar, &err), -EPERM);
	assert_nothing_left(root, "abs");
	if (image_import_ex(root, "abs", tar, IMAGE_IMPORT_RELATIVIZE_SYMLINKS, &err) < 0)
		fail_msg("%s", err.msg);
	assert_symlink(root, "abs", "etc/localtime", "../usr/share/zoneinfo/UTC");
	assert_symlink(root, "abs", "bin/ls", "../bin/busybox");
	assert_symlink(root, "abs", "a/b/c", "../../etc/x");
	assert_symlink(root, "abs", "r", ".");
	assert_symlink(root, "abs", "d/r", "..");
	assert_symlink(root, "abs", "rel", "bin/ls");

	/* Same for a directory. */
	cleanup_free char *src = make_src_dir(root);
	cleanup_free char *p = vs_xasprintf("%s/usr/bin/abs", src);
	assert_int_equal(symlink("/usr/bin/tool", p), 0);
	assert_int_equal(image_import(root, "absdir", src, &err), -EPERM);
	assert_int_equal(
	    image_import_ex(root, "absdir", src, IMAGE_IMPORT_RELATIVIZE_SYMLINKS, &err), 0);
	assert_symlink(root, "absdir", "usr/bin/abs", "../../usr/bin/tool");
	drop_root(root);
}

static void write_docker(const char *root, const char *out, const char *layer2_path)
{
	const struct ent layer2[] = {
	    {.path = "etc/.wh.gone", .data = ""},
	    {.path = "etc/keep", .data = "new"},
	};
	cleanup_free char *unused = vs_xasprintf("%s/unused.tar", root);
	write_oci(root, unused, layer2, VS_ARRAY_SIZE(layer2)); /* leaves root/l1, root/l2 */
	cleanup_free char *p1 = vs_xasprintf("%s/l1", root);
	cleanup_free char *p2 = vs_xasprintf("%s/l2", root);
	size_t n1, n2;
	cleanup_free char *b1 = slurp(p1, &n1);
	cleanup_free char *b2 = slurp(p2, &n2);
	cleanup_free char *manifest =
	    vs_xasprintf("[{\"Config\": \"cfg.json\", \"RepoTags\": [\"x:latest\"], "
			 "\"Layers\": [\"aaa/layer.tar\", \"%s\"]}]",
			 layer2_path);
	struct ent tar[] = {
	    {.path = "manifest.json", .data = manifest},
	    {.path = "repositories", .data = "{}"},
	    {.path = "cfg.json", .data = "{}"},
	    {.path = "aaa/layer.tar", .bin = b1, .size = (int64_t)n1},
	    {.path = "bbb/layer.tar", .bin = b2, .size = (int64_t)n2},
	};
	write_tar(out, F_GZIP, tar, VS_ARRAY_SIZE(tar));
}

static void test_import_docker_save(void **state)
{
	char *root = make_root();
	cleanup_free char *tar = vs_xasprintf("%s/docker.tar.gz", root);
	write_docker(root, tar, "bbb/layer.tar");
	struct vs_error err;
	if (image_import(root, "dk", tar, &err) < 0)
		fail_msg("%s", err.msg);
	assert_file(root, "dk", "bin/app", "v1", 0755);
	assert_file(root, "dk", "etc/keep", "new", 0644);
	const char *absent[] = {"etc/gone", "manifest.json", "aaa", "cfg.json", "repositories"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(absent); i++) {
		cleanup_free char *p = rootfs_path(root, "dk", absent[i]);
		struct stat sb;
		if (lstat(p, &sb) == 0)
			fail_msg("%s should not be in the image", absent[i]);
	}
	struct image_info info;
	assert_int_equal(image_get(root, "dk", &info, &err), 0);
	assert_non_null(strstr(info.source, "docker-archive:"));

	cleanup_free char *bad = vs_xasprintf("%s/bad.tar.gz", root);
	write_docker(root, bad, "../../etc/passwd");
	assert_true(image_import(root, "dk2", bad, &err) < 0);
	assert_non_null(strstr(err.msg, "docker image: layer 2 \"../../etc/passwd\": path leaves"));
	assert_nothing_left(root, "dk2");
	drop_root(root);
}

static void test_import_size_limits(void **state)
{
	char *root = make_root();
	cleanup_free char *tar = vs_xasprintf("%s/big.tar.gz", root);
	struct ent big[] = {{.path = "small", .data = "x"}, {.path = "huge", .size = 4 << 20}};
	write_tar(tar, F_GZIP, big, VS_ARRAY_SIZE(big));
	struct vs_error err;
	setenv("VSLICE_IMAGE_MAX_ENTRY", "1M", 1);
	assert_int_equal(image_import(root, "big", tar, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "entry \"huge\""));
	assert_non_null(strstr(err.msg, "VSLICE_IMAGE_MAX_ENTRY"));
	assert_nothing_left(root, "big");

	setenv("VSLICE_IMAGE_MAX_ENTRY", "8M", 1);
	setenv("VSLICE_IMAGE_MAX_TOTAL", "2M", 1);
	assert_int_equal(image_import(root, "big", tar, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "VSLICE_IMAGE_MAX_TOTAL"));
	assert_nothing_left(root, "big");

	setenv("VSLICE_IMAGE_MAX_ENTRY", "lots", 1);
	assert_int_equal(image_import(root, "big", tar, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "$VSLICE_IMAGE_MAX_ENTRY"));
	assert_nothing_left(root, "big");

	unsetenv("VSLICE_IMAGE_MAX_ENTRY");
	unsetenv("VSLICE_IMAGE_MAX_TOTAL");
	if (image_import(root, "big", tar, &err) < 0)
		fail_msg("%s", err.msg);
	struct image_info info;
	assert_int_equal(image_get(root, "big", &info, &err), 0);
	assert_int_equal(info.size, (4 << 20) + 1);
	drop_root(root);
}

static void test_import_garbage(void **state)
{
	char *root = make_root();
	struct vs_error err;
	cleanup_free char *g = vs_xasprintf("%s/garbage.tar", root);
	char junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 7 + 3);
	assert_int_equal(vs_write_file_atomic(g, junk, sizeof(junk), 0644, &err), 0);
	assert_true(image_import(root, "junk", g, &err) < 0);
	assert_non_null(strstr(err.msg, "image junk: import"));
	assert_nothing_left(root, "junk");

	cleanup_free char *empty = vs_xasprintf("%s/empty.tar", root);
	assert_int_equal(vs_write_file_atomic(empty, "", 0, 0644, &err), 0);
	assert_true(image_import(root, "junk", empty, &err) < 0);
	assert_nothing_left(root, "junk");

	/* A good archive cut in the middle of a file's data. */
	cleanup_free char *data = vs_xmalloc(200000);
	memset(data, 'a', 199999);
	data[199999] = '\0';
	struct ent ents[] = {{.path = "a", .data = "a"}, {.path = "big", .data = data}};
	for (int filter = F_NONE; filter <= F_GZIP; filter++) {
		cleanup_free char *t = vs_xasprintf("%s/cut%d.tar", root, filter);
		write_tar(t, filter, ents, VS_ARRAY_SIZE(ents));
		struct stat sb;
		assert_int_equal(stat(t, &sb), 0);
		assert_int_equal(truncate(t, sb.st_size / 2), 0);
		assert_true(image_import(root, "cut", t, &err) < 0);
		assert_non_null(strstr(err.msg, "image cut: import"));
		assert_nothing_left(root, "cut");
	}
	drop_root(root);
}

int main(void)
{
	umask(022);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_busybox_build),
	    cmocka_unit_test(test_busybox_dynamic_refused),
	    cmocka_unit_test(test_names_and_missing),
	    cmocka_unit_test(test_import_dir),
	    cmocka_unit_test(test_import_dir_hostile),
	    cmocka_unit_test(test_import_tar),
	    cmocka_unit_test(test_import_tar_gz),
	    cmocka_unit_test(test_import_tar_xz),
	    cmocka_unit_test(test_import_hostile),
	    cmocka_unit_test(test_import_oci),
	    cmocka_unit_test(test_import_oci_hostile),
	    cmocka_unit_test(test_import_relativize),
	    cmocka_unit_test(test_import_docker_save),
	    cmocka_unit_test(test_import_size_limits),
	    cmocka_unit_test(test_import_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
