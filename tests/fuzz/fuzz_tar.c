/*
 * fuzz_tar.c - image_import on arbitrary bytes. The input is written to a
 * file and imported into a private root; afterwards the root must hold
 * nothing but that file and an empty images/ (no staging dir left behind),
 * and the sandbox around the root must be untouched (nothing written
 * outside it). Sizes are capped so a declared-huge entry costs nothing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vslice/image.h"
#include "vslice/util.h"

static char sandbox[] = "/tmp/vs-fuzz-tar-XXXXXX";
static char *root, *input;

/* Number of entries in dir other than "." and ".." (and except `allow`). */
static size_t count_entries(const char *dir, const char *allow1, const char *allow2)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((allow1 && !strcmp(de->d_name, allow1)) ||
		    (allow2 && !strcmp(de->d_name, allow2)))
			continue;
		fprintf(stderr, "fuzz_tar: unexpected %s/%s\n", dir, de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static void remove_sandbox(void)
{
	struct vs_error err;
	vs_rm_rf(sandbox, &err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (!mkdtemp(sandbox))
		abort();
	atexit(remove_sandbox);
	root = vs_xasprintf("%s/root", sandbox);
	input = vs_xasprintf("%s/in.tar", root);
	if (mkdir(root, 0700) < 0)
		abort();
	setenv("VSLICE_IMAGE_MAX_ENTRY", "1M", 1);
	setenv("VSLICE_IMAGE_MAX_TOTAL", "4M", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vs_error err;
	if (vs_write_file_atomic(input, data, size, 0600, &err) < 0)
		abort();
	/* Odd sizes also exercise the absolute-symlink rewrite. */
	unsigned flags = size % 2 ? IMAGE_IMPORT_RELATIVIZE_SYMLINKS : 0;
	if (image_import_ex(root, "fz", input, flags, &err) == 0) {
		struct image_info info;
		if (image_get(root, "fz", &info, &err) < 0 || image_rm(root, "fz", &err) < 0) {
			fprintf(stderr, "fuzz_tar: %s\n", err.msg);
			abort();
		}
	} else if (err.msg[0] == '\0' || err.code <= 0) {
		abort(); /* a failure must say why */
	}
	cleanup_free char *images = vs_xasprintf("%s/images", root);
	if (count_entries(images, NULL, NULL) || count_entries(root, "in.tar", "images") ||
	    count_entries(sandbox, "root", NULL))
		abort();
	return 0;
}
