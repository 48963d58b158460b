/*
 * image.c - slicectl image build | import | list | rm.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slicectl.h"
#include "vslice/image.h"
#include "vslice/slice.h"
#include "vslice/units.h"

static const char image_help[] =
    "usage: slicectl image build busybox [--from PATH]\n"
    "       slicectl image import [--relative-symlinks] NAME PATH\n"
    "       slicectl image list [-q]\n"
    "       slicectl image rm NAME\n\n"
    "Images are read-only root file systems that slices share as the lower\n"
    "layer of their overlay.\n"
    "  build busybox   an image from the host's static busybox (busybox-static)\n"
    "  import          from a directory, a tar (gzip/xz/bzip2/zstd/lz4), an OCI layout or a\n"
    "                  docker-save archive; entries that would land outside the image,\n"
    "                  device nodes and absolute symlinks are refused (setuid bits cleared);\n"
    "                  --relative-symlinks rewrites absolute symlinks to relative ones\n"
    "  rm              refused while a slice uses the image\n";

static int image_list_cmd(struct ctl *ctl, bool quiet)
{
	struct image_info *v = NULL;
	size_t n = 0;
	struct vs_error err;
	if (image_list(ctl->root, &v, &n, &err) < 0)
		return ctl_fail("image list", NULL, &err);
	json_t *arr = ctl->json ? json_array() : NULL;
	if (!ctl->json && !quiet)
		printf("%-20s %-10s %-20s %s\n", "NAME", "SIZE", "CREATED", "SOURCE");
	for (size_t i = 0; i < n; i++) {
		if (ctl->json) {
			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}", "name",
							     v[i].name, "source", v[i].source,
							     "size", (json_int_t)v[i].size,
							     "created", (json_int_t)v[i].created));
		} else if (quiet) {
			printf("%s\n", v[i].name);
		} else {
			char sz[32], when[32];
			struct tm tm;
			gmtime_r(&v[i].created, &tm);
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			snprintf(sz, sizeof(sz), "%.1fM", (double)v[i].size / (1 << 20));
			printf("%-20s %-10s %-20s %s\n", v[i].name, sz, when, v[i].source);
		}
	}
	free(v);
	if (arr) {
		char *s = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", s ? s : "[]");
		free(s);
		json_decref(arr);
	}
	return 0;
}

int cmd_image(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(image_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_VSLICE : 0;
	}
	const char *sub = argv[1];
	if (ctl_want_help(argc - 1, argv + 1, image_help))
		return 0;
	struct vs_error err;
	if (!strcmp(sub, "build")) {
		static const struct option o[] = {{"from", required_argument, NULL, 'f'}, {0}};
		const char *from = NULL;
		int c;
		optind = 0;
		while ((c = getopt_long(argc - 1, argv + 1, "", o, NULL)) != -1) {
			if (c != 'f')
				return ctl_usage("image build", "unknown option");
			from = optarg;
		}
		int rest = argc - 1 - optind;
		if (rest != 1)
			return ctl_usage("image build",
					 "which image? (slicectl image build busybox)");
		const char *what = argv[1 + optind];
		if (strcmp(what, "busybox") != 0)
			return ctl_usage("image build",
					 "\"%s\": only busybox can be built (use image import)",
					 what);
		if (image_build_busybox(ctl->root, "busybox", from, &err) < 0)
			return ctl_fail("image build", what, &err);
		if (!ctl->quiet)
			printf("busybox\n");
		return 0;
	}
	if (!strcmp(sub, "import")) {
		unsigned flags = 0;
		int i = 2;
		if (i < argc && !strcmp(argv[i], "--relative-symlinks")) {
			flags |= IMAGE_IMPORT_RELATIVIZE_SYMLINKS;
			i++;
		}
		if (argc - i != 2)
			return ctl_usage(
			    "image import",
			    "usage: slicectl image import [--relative-symlinks] NAME PATH");
		if (image_import_ex(ctl->root, argv[i], argv[i + 1], flags, &err) < 0)
			return ctl_fail("image import", argv[i], &err);
		if (!ctl->quiet)
			printf("%s\n", argv[i]);
		return 0;
	}
	if (!strcmp(sub, "list") || !strcmp(sub, "ls")) {
		bool quiet = ctl->quiet;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "-q"))
				quiet = true;
			else
				return ctl_usage("image list", "unexpected \"%s\"", argv[i]);
		}
		return image_list_cmd(ctl, quiet);
	}
	if (!strcmp(sub, "rm")) {
		if (argc < 3)
			return ctl_usage("image rm", "missing image NAME");
		int rc = 0;
		for (int i = 2; i < argc; i++) {
			if (vs_check_name("image", argv[i], &err) < 0) {
				rc = ctl_fail("image rm", argv[i], &err);
			} else if (slice_image_in_use(ctl->root, argv[i])) {
				vs_error_set(&err, EBUSY,
					     "in use by a slice (destroy those slices first; see: "
					     "slicectl list)");
				rc = ctl_fail("image rm", argv[i], &err);
			} else if (image_rm(ctl->root, argv[i], &err) < 0) {
				rc = ctl_fail("image rm", argv[i], &err);
			}
		}
		return rc;
	}
	return ctl_usage("image", "unknown subcommand \"%s\"", sub);
}
