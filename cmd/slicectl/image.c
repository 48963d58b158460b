/*
 * image.c - slicectl image build | import | list | rm: in the local image
 * store, or (cluster mode, cmd_image_cluster) at the registry.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/http.h"
#include "vslice/image.h"
#include "vslice/json.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

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

/* ---- cluster mode: images at the registry (docs/cluster.md, "Images in a cluster") ---- */

const char cluster_image_help[] =
    "usage: slicectl image import [--relative-symlinks] [--replace] NAME ARCHIVE\n"
    "       slicectl image list [-q]\n"
    "       slicectl image rm NAME...\n\n"
    "In cluster mode images live at the registry, stored by the sha256 of the archive.\n"
    "A slice naming one (run --image NAME, .image) may go to any node: each node fetches\n"
    "it on first use, checks its sha256 and imports it under the same rules as a local\n"
    "import; a sliver never starts from bytes that do not match.\n"
    "  import   an OCI archive (podman save, skopeo, docker save) or a rootfs tarball;\n"
    "           checked here first as a local import would, then uploaded (streamed).\n"
    "           --replace: replace your own image of that name (refused while a slice\n"
    "           names it)\n"
    "  list     every image of the cluster (everyone may list and run them)\n"
    "  rm       yours (or any, as admin); refused while a slice names it\n";

/* Import path into a scratch store, as the nodes will: a bad archive is
 * refused here, with the local import's message, before any upload. */
static int image_check_local(const char *name, const char *path, unsigned flags,
			     struct vs_error *err)
{
	const char *tmpdir = getenv("TMPDIR");
	cleanup_free char *root =
	    vs_xasprintf("%s/slicectl-image-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(root))
		return vs_error_sys(err, errno, "scratch dir %s", root);
	int r = image_import_ex(root, name, path, flags, err);
	struct vs_error rerr;
	vs_rm_rf(root, &rerr);
	return r;
}

static int image_import_cluster(struct ctl *ctl, struct http_client *hc, int argc, char **argv)
{
	unsigned flags = 0;
	bool replace = false;
	int i = 2;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--relative-symlinks"))
			flags |= IMAGE_IMPORT_RELATIVIZE_SYMLINKS;
		else if (!strcmp(argv[i], "--replace"))
			replace = true;
		else
			return ctl_usage("image import", "unknown option \"%s\"", argv[i]);
	}
	if (argc - i != 2)
		return ctl_usage("image import",
				 "usage: slicectl image import [--relative-symlinks] "
				 "[--replace] NAME ARCHIVE");
	const char *name = argv[i], *path = argv[i + 1];
	struct vs_error err;
	if (vs_check_name("image", name, &err) < 0)
		return ctl_fail("image import", NULL, &err);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		vs_error_sys(&err, errno, "%s", path);
		return ctl_fail("image import", name, &err);
	}
	if (!S_ISREG(st.st_mode)) {
		vs_error_set(&err, EINVAL,
			     "%s: not an archive file (in cluster mode images are uploaded as "
			     "archives; for a directory: tar -C DIR -cf rootfs.tar .)",
			     path);
		return ctl_fail("image import", name, &err);
	}
	long status = 0;
	if (regclient_image_upload_check(hc, name, (uint64_t)st.st_size, replace, &status, &err) <
	    0)
		return ctl_fail("image import", status ? NULL : name, &err);
	if (image_check_local(name, path, flags, &err) < 0)
		return ctl_fail("image import", NULL, &err);
	cleanup_json json_t *resp = NULL;
	if (regclient_image_upload(hc, name, fd, (uint64_t)st.st_size, replace, flags != 0, &resp,
				   &status, &err) < 0)
		return ctl_fail("image import", status ? NULL : name, &err);
	if (ctl->json) {
		char *s = json_dumps(resp, JSON_INDENT(2));
		printf("%s\n", s ? s : "{}");
		free(s);
	} else if (!ctl->quiet) {
		printf("%s %s\n", name, json_string_value(json_object_get(resp, "digest")));
	}
	return 0;
}

static int image_list_cluster(struct ctl *ctl, struct http_client *hc, bool quiet)
{
	cleanup_json json_t *resp = NULL;
	long status = 0;
	struct vs_error err;
	if (regclient_image_list(hc, &resp, &status, &err) < 0)
		return ctl_fail("image list", NULL, &err);
	json_t *arr = json_object_get(resp, "images");
	if (ctl->json) {
		char *s = json_dumps(arr ? arr : json_array(), JSON_INDENT(2));
		printf("%s\n", s ? s : "[]");
		free(s);
		return 0;
	}
	if (!quiet)
		printf("%-20s %-19s %-10s %-20s %s\n", "NAME", "DIGEST", "SIZE", "CREATED",
		       "OWNER");
	size_t k;
	json_t *v;
	json_array_foreach(arr, k, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		if (!name)
			continue;
		if (quiet) {
			printf("%s\n", name);
			continue;
		}
		const char *digest = json_string_value(json_object_get(v, "digest"));
		const char *owner = json_string_value(json_object_get(v, "owner"));
		time_t created = (time_t)json_integer_value(json_object_get(v, "created"));
		char sz[32], when[32];
		struct tm tm;
		gmtime_r(&created, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(sz, sizeof(sz), "%.1fM",
			 (double)json_integer_value(json_object_get(v, "size")) / (1 << 20));
		printf("%-20s %-19.19s %-10s %-20s %s\n", name, digest ? digest : "", sz, when,
		       owner ? owner : "");
	}
	return 0;
}

int cmd_image_cluster(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2)
		return ctl_usage("image", "which? (import, list, rm)");
	if (ctl_want_help(argc - 1, argv + 1, cluster_image_help))
		return 0;
	const char *sub = argv[1];
	bool list = !strcmp(sub, "list") || !strcmp(sub, "ls");
	if (strcmp(sub, "import") && !list && strcmp(sub, "rm")) {
		if (!strcmp(sub, "build"))
			return ctl_usage("image",
					 "build: in cluster mode every node builds busybox "
					 "itself (image import uploads others)");
		return ctl_usage("image", "unknown subcommand \"%s\"", sub);
	}
	__attribute__((cleanup(http_client_freep))) struct http_client hc;
	int r = cluster_connect(ctl, "image", &hc);
	if (r)
		return r;
	if (!strcmp(sub, "import"))
		return image_import_cluster(ctl, &hc, argc, argv);
	if (list) {
		bool quiet = ctl->quiet;
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "-q"))
				return ctl_usage("image list", "unexpected \"%s\"", argv[i]);
			quiet = true;
		}
		return image_list_cluster(ctl, &hc, quiet);
	}
	if (argc < 3)
		return ctl_usage("image rm", "missing image NAME");
	int rc = 0;
	for (int i = 2; i < argc; i++) {
		struct vs_error err;
		long status = 0;
		if (vs_check_name("image", argv[i], &err) < 0 ||
		    regclient_image_rm(&hc, argv[i], &status, &err) < 0)
			rc = ctl_fail("image rm", status ? NULL : argv[i], &err);
		else if (!ctl->quiet)
			printf("%s\n", argv[i]);
	}
	return rc;
}
