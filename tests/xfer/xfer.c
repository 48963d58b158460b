/*
 * xfer.c - the migration file system stream (lib/node/slice_xfer.c) from a
 * shell, for tests/integration/test_xfer.sh and tests/bench/migrate.sh.
 *
 *   xfer send ROOT NAME      slice_fs_send to stdout
 *   xfer recv ROOT NAME      slice_fs_receive from stdin
 *   xfer list ROOT NAME      the slice's log and upper dir as canonical text
 *                            (owners relative to its id range), to compare two
 *
 * send/recv print "bytes files usecs progress-calls last-progress" on stderr
 * when they succeed, else "xfer: MESSAGE (kind K, errno E)" and exit 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "vslice/slice.h"
#include "vslice/slice_xfer.h"
#include "vslice/util.h"

static const char *kind_name(enum vs_error_kind k)
{
	switch (k) {
	case VS_EK_REFUSED:
		return "refused";
	case VS_EK_BUSY:
		return "busy";
	case VS_EK_LIMIT:
		return "limit";
	default:
		return "none";
	}
}

/* ---- list --------------------------------------------------------------- */

struct inode_seen {
	dev_t dev;
	ino_t ino;
	char *path;
};

struct lister {
	uint32_t base;
	struct inode_seen *seen;
	size_t n, cap;
};

static void rel(const struct lister *l, uid_t id, char *out, size_t n)
{
	if (id >= l->base && id - l->base < 65536)
		snprintf(out, n, "%u", id - l->base);
	else
		snprintf(out, n, "H%u", id);
}

static void print_xattrs(const struct lister *l, const char *procpath)
{
	char list[65536];
	ssize_t n = llistxattr(procpath, list, sizeof(list));
	if (n <= 0)
		return;
	/* sorted: the kernel's order may differ between file systems */
	const char *names[256];
	size_t k = 0;
	for (ssize_t off = 0; off < n && k < 256; off += (ssize_t)strlen(list + off) + 1)
		names[k++] = list + off;
	for (size_t i = 0; i < k; i++)
		for (size_t j = i + 1; j < k; j++)
			if (strcmp(names[j], names[i]) < 0) {
				const char *t = names[i];
				names[i] = names[j];
				names[j] = t;
			}
	for (size_t i = 0; i < k; i++) {
		if (!strcmp(names[i], "trusted.overlay.origin"))
			continue;
		uint8_t v[65536];
		ssize_t vl = lgetxattr(procpath, names[i], v, sizeof(v));
		if (vl < 0)
			continue;
		if (!strcmp(names[i], "security.capability") && vl == 24) {
			uint32_t root;
			memcpy(&root, v + 20, 4);
			char r[32];
			rel(l, root, r, sizeof(r));
			printf(" %s=v3:", names[i]);
			for (int b = 0; b < 20; b++)
				printf("%02x", v[b]);
			printf(":root=%s", r);
			continue;
		}
		printf(" %s=", names[i]);
		for (ssize_t b = 0; b < vl; b++)
			printf("%02x", v[b]);
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_entry(struct lister *l, int dfd, const char *name, const char *path)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		printf("%s: stat failed\n", path);
		return;
	}
	char u[32], g[32];
	rel(l, st.st_uid, u, sizeof(u));
	rel(l, st.st_gid, g, sizeof(g));
	bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == 0;
	if (whiteout) /* the overlay's, whatever their owner */
		snprintf(u, sizeof(u), "-"), snprintf(g, sizeof(g), "-");
	printf("%s %06o %s:%s", path, st.st_mode, u, g);
	if (!whiteout)
		printf(" mtime=%lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	if (S_ISREG(st.st_mode)) {
		printf(" size=%lld", (long long)st.st_size);
		if ((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size)
			printf(" holes");
		int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		char sum[VS_SHA256_HEX] = "?";
		if (fd >= 0) {
			vs_sha256_fd(fd, sum);
			close(fd);
		}
		printf(" sha256=%.16s", sum);
	}
	if (S_ISLNK(st.st_mode)) {
		char t[4096];
		ssize_t n = readlinkat(dfd, name, t, sizeof(t) - 1);
		t[n > 0 ? n : 0] = 0;
		printf(" -> %s", t);
	}
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		printf(" rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
	/* (libarchive never links devices: whiteouts arrive as inodes of their own) */
	if (!S_ISDIR(st.st_mode) && !whiteout && st.st_nlink > 1) {
		const char *first = NULL;
		for (size_t i = 0; i < l->n && !first; i++)
			if (l->seen[i].dev == st.st_dev && l->seen[i].ino == st.st_ino)
				first = l->seen[i].path;
		if (first) {
			printf(" link=%s", first);
		} else {
			if (l->n == l->cap) {
				l->cap = l->cap ? 2 * l->cap : 64;
				l->seen = realloc(l->seen, l->cap * sizeof(*l->seen));
			}
			l->seen[l->n++] = (struct inode_seen){st.st_dev, st.st_ino, strdup(path)};
		}
	}
	char proc[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, name);
	print_xattrs(l, proc);
	printf("\n");
	if (!S_ISDIR(st.st_mode))
		return;
	int c = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = c >= 0 ? fdopendir(c) : NULL;
	if (!d)
		return;
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		names = realloc(names, (n + 1) * sizeof(char *));
		names[n++] = strdup(de->d_name);
	}
	if (n)
		qsort(names, n, sizeof(char *), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, names[i]);
		list_entry(l, dirfd(d), names[i], sub);
		free(names[i]);
	}
	free(names);
	closedir(d);
}

static int list_upper(void *arg, int upper_fd, struct vs_error *err)
{
	int fd = openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "upper");
	list_entry(arg, fd, ".", "upper");
	close(fd);
	return 0;
}

static int list(const char *root, const char *name, struct vs_error *err)
{
	struct slice_spec spec;
	int r = slice_load(root, name, &spec, NULL, err);
	if (r < 0)
		return r;
	struct lister l = {.base = spec.id_base};
	cleanup_free char *d = slice_dir(root, name);
	int dfd = open(d, O_RDONLY | O_DIRECTORY);
	struct stat st;
	if (dfd >= 0 && fstatat(dfd, "log", &st, 0) == 0) {
		int fd = openat(dfd, "log", O_RDONLY);
		char sum[VS_SHA256_HEX] = "?";
		vs_sha256_fd(fd, sum);
		close(fd);
		printf("log size=%lld%s sha256=%.16s\n", (long long)st.st_size,
		       (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size ? " holes" : "", sum);
	} else {
		printf("log none\n");
	}
	if (dfd >= 0)
		close(dfd);
	r = slice_with_upper(root, &spec, false, list_upper, &l, err);
	slice_spec_free(&spec);
	for (size_t i = 0; i < l.n; i++)
		free(l.seen[i].path);
	free(l.seen);
	return r;
}

/* ---- main ---------------------------------------------------------------- */

struct seen_progress {
	uint64_t calls, last;
};

static void on_progress(void *arg, uint64_t bytes)
{
	struct seen_progress *p = arg;
	p->calls++;
	p->last = bytes;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: xfer send|recv|list ROOT NAME\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct vs_error err = {0};
	struct slice_xfer_stats st = {0};
	struct seen_progress seen = {0};
	struct slice_xfer_opts o = {.progress = on_progress, .arg = &seen};
	int r;
	if (!strcmp(argv[1], "send"))
		r = slice_fs_send(argv[2], argv[3], 1, &o, &st, &err);
	else if (!strcmp(argv[1], "recv"))
		r = slice_fs_receive(argv[2], argv[3], 0, &o, &st, &err);
	else if (!strcmp(argv[1], "list"))
		r = list(argv[2], argv[3], &err);
	else
		return 2;
	if (r < 0) {
		fprintf(stderr, "xfer: %s (kind %s, errno %d)\n", err.msg, kind_name(err.kind),
			err.code);
		return 1;
	}
	if (strcmp(argv[1], "list") != 0)
		fprintf(stderr, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
			st.bytes, st.files, st.usecs, seen.calls, seen.last);
	return 0;
}
