/*
 * fuzz_cp.c - the unpacker of `slicectl cp` (slice_files_unpack_at,
 * lib/node/slice_files.c) on arbitrary bytes: a stream fed from a file into
 * an empty target dir in a sandbox. Afterwards the target holds nothing (a
 * refusal or failure, which must say why) or exactly one entry (the copy,
 * under its own name, never a ".vslice-cp-" staging name), and nothing was
 * written anywhere else in the sandbox.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vslice/slice_files.h"
#include "vslice/util.h"

static char sandbox[] = "/tmp/vs-fuzz-cp-XXXXXX";
static char *target, *input;

/* Entries in dir other than "." and ".."; the first one's name in first. */
static size_t entries(const char *dir, char *first, size_t len)
{
	DIR *d = opendir(dir);
	if (!d)
		abort();
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n++ == 0 && first)
			snprintf(first, len, "%s", de->d_name);
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
	target = vs_xasprintf("%s/target", sandbox);
	input = vs_xasprintf("%s/in.tar", sandbox);
	if (mkdir(target, 0700) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vs_error err = {0};
	if (vs_write_file_atomic(input, data, size, 0600, &err) < 0)
		abort();
	int in = open(input, O_RDONLY | O_CLOEXEC);
	int dir = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (in < 0 || dir < 0)
		abort();
	int r = slice_files_unpack_at(dir, in, &err);
	close(in);
	close(dir);
	char name[256] = "";
	size_t n = entries(target, name, sizeof(name));
	if (r < 0 && (err.msg[0] == '\0' || err.code <= 0 || n != 0))
		abort(); /* a failure says why and leaves nothing */
	if (r == 0 && (n != 1 || !strncmp(name, ".vslice-cp-", 11)))
		abort();
	if (entries(sandbox, NULL, 0) != 2) /* target and in.tar only */
		abort();
	if (n) {
		cleanup_free char *p = vs_xasprintf("%s/%s", target, name);
		if (vs_rm_rf(p, &err) < 0)
			abort();
	}
	return 0;
}
