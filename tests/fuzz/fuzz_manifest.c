/*
 * fuzz_manifest.c - libFuzzer harness for the manifest parser: any input
 * must produce either a manifest or a list of errors, never a crash, a
 * leak, a hang or a read outside the manifest's directory.
 *
 * The manifest directory is a private temp dir holding a small file, a
 * subdirectory, a symlink inside and a symlink out, so files[].source and
 * policy paths exercise the open-beneath code.
 *
 * Built and run by tests/fuzz/run.sh (make fuzz-short / make fuzz), with the
 * seeds in tests/fuzz/seeds/manifest.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vslice/experiment.h"
#include "vslice/manifest.h"
#include "vslice/slice.h"

static char base[64];
static FILE *devnull;

static void put(const char *name, const char *text)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", base, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0)
			abort();
		close(fd);
	}
}

static const char *const made[] = {"in", "out", "run.sh", "policy.json", "sub/data.txt"};

static void cleanup_base(void)
{
	char p[128];
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", base, made[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/sub", base);
	rmdir(p);
	rmdir(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(base, sizeof(base), "/tmp/fuzz_manifest.XXXXXX");
	if (!mkdtemp(base))
		abort();
	char p[128];
	snprintf(p, sizeof(p), "%s/sub", base);
	mkdir(p, 0755);
	put("run.sh", "#!/bin/sh\necho hi\n");
	put("sub/data.txt", "data\n");
	put("policy.json", "{\"defaultAction\": \"SCMP_ACT_ALLOW\"}\n");
	snprintf(p, sizeof(p), "%s/in", base);
	if (symlink("sub/data.txt", p) < 0)
		abort();
	snprintf(p, sizeof(p), "%s/out", base);
	if (symlink("/etc/passwd", p) < 0)
		abort();
	devnull = fopen("/dev/null", "w");
	atexit(cleanup_base);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest *m = NULL;
	struct manifest_errors errs = {0};
	int r = manifest_parse((const char *)data, size, base, &m, &errs);
	if (r == 0) {
		if (!m || errs.n)
			abort();
		struct slice_spec spec;
		struct vs_error err;
		if (experiment_spec(m, &spec, &err) == 0) {
			if (!spec.argv || !spec.argv[0] || !spec.env || !spec.policy)
				abort();
			slice_spec_free(&spec);
		}
		for (size_t i = 0; i < m->nfiles; i++)
			if (!m->files[i].path || !m->files[i].data || m->files[i].mode > 0777)
				abort();
		/* The resolved form (cluster mode) parses without a directory and
		 * carries the very same files. */
		json_t *j = manifest_resolve(m, &err);
		char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
		struct manifest *r2 = NULL;
		struct manifest_errors e2 = {0};
		if (!text || manifest_parse(text, strlen(text), NULL, &r2, &e2) != 0)
			abort();
		if (r2->nfiles != m->nfiles || strcmp(r2->name, m->name))
			abort();
		for (size_t i = 0; i < m->nfiles; i++)
			if (r2->files[i].len != m->files[i].len ||
			    memcmp(r2->files[i].data, m->files[i].data, m->files[i].len))
				abort();
		manifest_free(r2);
		manifest_errors_free(&e2);
		free(text);
		json_decref(j);
		manifest_free(m);
	} else {
		if (m || errs.n == 0)
			abort();
		manifest_errors_print(&errs, devnull, "fuzz.json");
	}
	manifest_errors_free(&errs);
	/* As the registry and node managers parse: no directory to read from. */
	m = NULL;
	struct manifest_errors e3 = {0};
	r = manifest_parse((const char *)data, size, NULL, &m, &e3);
	if ((r == 0) != (m != NULL) || (r != 0 && e3.n == 0))
		abort();
	manifest_free(m);
	manifest_errors_free(&e3);
	return 0;
}
