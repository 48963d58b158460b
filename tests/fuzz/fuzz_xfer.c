/*
 * fuzz_xfer.c - slice_fs_receive (lib/node/slice_xfer.c) on arbitrary bytes.
 *
 * A slice "fz" is laid out by hand in a private root (spec.json, state.json,
 * upper/ holding one file, log). Inputs whose first byte is odd are taken as
 * the archive alone and framed here with a correct trailer, so mutations
 * of the archive reach the swap; the others are the whole stream as sent.
 * After each input: nothing staged is left, nothing appeared outside the
 * slice's directory, and a failed receive left upper/ and the log as they
 * were (a successful one replaced them: the next input starts from there).
 */
#include <dirent.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vslice/slice_xfer.h"
#include "vslice/util.h"

static char sandbox[] = "/tmp/vs-fuzz-xfer-XXXXXX";
static char *root, *sdir, *upper, *logp;

static void remove_sandbox(void)
{
	struct vs_error err;
	vs_rm_rf(sandbox, &err);
}

static void put(const char *path, const char *text)
{
	struct vs_error err;
	if (vs_write_file_atomic(path, text, strlen(text), 0600, &err) < 0)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (!mkdtemp(sandbox))
		abort();
	atexit(remove_sandbox);
	root = vs_xasprintf("%s/root", sandbox);
	sdir = vs_xasprintf("%s/slices/fz", root);
	upper = vs_xasprintf("%s/upper", sdir);
	logp = vs_xasprintf("%s/log", sdir);
	struct vs_error err;
	if (vs_mkdir_p(upper, 0755, &err) < 0)
		abort();
	cleanup_free char *spec = vs_xasprintf("%s/spec.json", sdir);
	put(spec, "{\"argv\": [\"/bin/sh\"], \"cpu_millis\": 0, \"created\": 1, \"env\": [],"
		  " \"expires\": 0, \"hostname\": \"fz\", \"id_base\": 2000000000,"
		  " \"image\": \"busybox\", \"lifetime_secs\": 0, \"memory_bytes\": 0,"
		  " \"name\": \"fz\", \"net\": \"none\", \"pids_max\": 0, \"policy\": \"default\","
		  " \"restart_max\": 0, \"timeout_secs\": 0, \"version\": 1, \"workdir\": \"/\"}");
	cleanup_free char *state = vs_xasprintf("%s/state.json", sdir);
	put(state, "{\"exit_code\": -1, \"exit_reason\": \"\", \"finished\": 0, \"idmapped\": true,"
		   " \"pid\": 0, \"pid_starttime\": 0, \"restarts\": 0, \"started\": 0,"
		   " \"status\": \"created\", \"version\": 1}");
	cleanup_free char *keep = vs_xasprintf("%s/keep", upper);
	put(keep, "kept\n");
	put(logp, "old output\n");
	return 0;
}

/* A fingerprint of upper/ (names, sizes, modes; one level deep is enough
 * to see a swap) and of the log. */
static void fingerprint(struct sha256_ctx *h)
{
	sha256_init(h);
	DIR *d = opendir(upper);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		sha256_update(h, strlen(de->d_name), (const uint8_t *)de->d_name);
		sha256_update(h, sizeof(st.st_ino), (const uint8_t *)&st.st_ino);
		sha256_update(h, sizeof(st.st_mode), (const uint8_t *)&st.st_mode);
	}
	if (d)
		closedir(d);
	struct stat st;
	if (stat(upper, &st) == 0)
		sha256_update(h, sizeof(st.st_ino), (const uint8_t *)&st.st_ino);
	if (stat(logp, &st) == 0) {
		sha256_update(h, sizeof(st.st_ino), (const uint8_t *)&st.st_ino);
		sha256_update(h, sizeof(st.st_size), (const uint8_t *)&st.st_size);
	}
}

static size_t count_entries(const char *dir, const char *const *allow)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		bool ok = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
		for (const char *const *a = allow; *a && !ok; a++)
			ok = !strcmp(de->d_name, *a);
		if (!ok) {
			fprintf(stderr, "fuzz_xfer: unexpected %s/%s\n", dir, de->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

static void write_frame(int fd, struct sha256_ctx *h, const uint8_t *p, uint32_t n)
{
	uint8_t hdr[4] = {n >> 24, n >> 16, n >> 8, n};
	sha256_update(h, 4, hdr);
	sha256_update(h, n, p);
	if (write(fd, hdr, 4) != 4 || (n && write(fd, p, n) != (ssize_t)n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-xfer", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size > 0 && (data[0] & 1)) {
		struct sha256_ctx h;
		sha256_init(&h);
		sha256_update(&h, 8, (const uint8_t *)"VSXFER\0\1");
		if (write(fd, "VSXFER\0\1", 8) != 8)
			abort();
		for (size_t off = 1; off < size; off += 4096)
			write_frame(fd, &h, data + off, size - off < 4096 ? size - off : 4096);
		write_frame(fd, &h, NULL, 0);
		uint8_t d[SHA256_DIGEST_SIZE];
		sha256_digest(&h, sizeof(d), d);
		if (write(fd, d, sizeof(d)) != sizeof(d))
			abort();
	} else if (size > 0 && write(fd, data, size) != (ssize_t)size) {
		abort();
	}
	lseek(fd, 0, SEEK_SET);
	struct sha256_ctx before, after;
	fingerprint(&before);
	struct vs_error err;
	int r = slice_fs_receive(root, "fz", fd, NULL, NULL, &err);
	close(fd);
	if (r < 0 && (err.msg[0] == '\0' || err.code <= 0))
		abort(); /* a failure must say why */
	fingerprint(&after);
	uint8_t a[SHA256_DIGEST_SIZE], b[SHA256_DIGEST_SIZE];
	sha256_digest(&before, sizeof(a), a);
	sha256_digest(&after, sizeof(b), b);
	if (r < 0 && memcmp(a, b, sizeof(a)) != 0) {
		fprintf(stderr, "fuzz_xfer: a failed receive changed the slice: %s\n", err.msg);
		abort();
	}
	static const char *const in_slice[] = {"spec.json", "state.json", "upper", "log", "lock",
					       NULL};
	static const char *const in_root[] = {"slices", NULL};
	static const char *const in_slices[] = {"fz", NULL};
	static const char *const in_sandbox[] = {"root", NULL};
	cleanup_free char *slices = vs_xasprintf("%s/slices", root);
	if (count_entries(sdir, in_slice) || count_entries(slices, in_slices) ||
	    count_entries(root, in_root) || count_entries(sandbox, in_sandbox))
		abort();
	return 0;
}
