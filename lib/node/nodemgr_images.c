/*
 * nodemgr_images.c - the image a sliver needs, made present on this node
 * before the sliver is made (issue 14; docs/cluster.md, "Images in a
 * cluster").
 *
 *   busybox             built from the host's static busybox if missing
 *                       (every node has it; the registry refuses the name);
 *   an image the        fetched on first use with the node token: GET
 *   registry holds      /v1/images/NAME for its digest, then the blob
 *                       (GET /v1/images/sha256:HEX) into a temp file in
 *                       <root>/images (.tmp-fetch-*, skipped by image_list),
 *                       its SHA-256 checked against the digest, and only
 *                       then imported (lib/image/import.c, every rule of a
 *                       local import) as the local image "sha256-<first
 *                       52 hex digits>[-r]" ("-r": symlinks relativized);
 *   anything else       a local image of that name (an admin's
 *                       `slicectl image import` on this node), as before.
 *
 * The cache is by digest: a name re-imported with new content has a new
 * digest, so the next sliver fetches it anew, while slivers made from the
 * old one keep theirs. A blob whose bytes do not hash to the digest is
 * thrown away and the sliver fails, naming the image and both digests: no
 * sliver starts from it, and nothing of it stays on the node.
 *
 * The name prefix carries 208 bits of the digest (image names stop at 63
 * characters): finding two archives that share it is as hard as breaking
 * SHA-256's collision resistance. Main thread only (nm->hc).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/image.h"
#include "vslice/regclient.h"
#include "vslice/util.h"

#define DIGEST_PREFIX "sha256:"

static bool hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* Fetch the blob hex into a temp file below <root>/images, check it and
 * import it as local. */
static int fetch_import(struct nodemgr *nm, const char *image, const char *hex, const char *local,
			unsigned flags, struct vs_error *err)
{
	cleanup_free char *dir = vs_xasprintf("%s/images", nm->root);
	if (vs_mkdir_p(dir, 0700, err) < 0)
		return vs_error_wrap(err, "image %s", image);
	cleanup_free char *tmp = vs_xasprintf("%s/.tmp-fetch-XXXXXX", dir);
	cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "image %s: %s", image, tmp);
	long status = 0;
	int r = regclient_image_blob_get(&nm->hc, hex, fd, &status, err);
	char got[VS_SHA256_HEX] = "";
	if (r < 0)
		vs_error_wrap(err, "image %s: fetching sha256:%s", image, hex);
	else if ((r = vs_sha256_fd(fd, got)) < 0)
		vs_error_sys(err, -r, "image %s: reading %s", image, tmp);
	else if (strcmp(got, hex) != 0) {
		r = vs_error_set(err, EBADMSG,
				 "image %s: checksum mismatch: the registry names sha256:%s, the "
				 "bytes fetched are sha256:%s; not used",
				 image, hex, got);
		vs_error_kind(err, VS_EK_REFUSED);
	}
	if (r == 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "image %s: fetched sha256:%s, importing as %s", image,
		       hex, local);
		r = image_import_ex(nm->root, local, tmp, flags, err);
		if (r == -EEXIST)
			r = 0; /* made meanwhile: the same digest, the same content */
		else if (r < 0)
			vs_error_wrap(err, "image %s (sha256:%s)", image, hex);
	}
	unlink(tmp);
	return r;
}

int nm_image_ensure(struct nodemgr *nm, const char *image, char local[64], struct vs_error *err)
{
	struct image_info info;
	struct vs_error ierr;
	snprintf(local, 64, "%s", image);
	if (!strcmp(image, "busybox")) {
		if (image_get(nm->root, image, &info, &ierr) != -ENOENT)
			return 0;
		nm_log(nm, NODEMGR_LOG_INFO, "building image busybox");
		int r = image_build_busybox(nm->root, NULL, NULL, err);
		if (r < 0 && r != -EEXIST)
			return vs_error_wrap(err, "building image busybox");
		return 0;
	}
	cleanup_json json_t *img = NULL;
	long status = 0;
	int r = regclient_image_get(&nm->hc, image, &img, &status, err);
	if (r == -ENOENT && status == 404) {
		/* Not at the registry: a local image of that name, or nothing. */
		if (image_get(nm->root, image, &info, err) == 0)
			return 0;
		return vs_error_set(err, ENOENT,
				    "image %s: not at the registry (import it with: slicectl "
				    "image import %s SRC) and not on node %s",
				    image, image, nm->name);
	}
	if (r < 0)
		return vs_error_wrap(err, "image %s: asking the registry", image);
	const char *digest = json_string_value(json_object_get(img, "digest"));
	if (!digest || strncmp(digest, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 ||
	    !hex64(digest + strlen(DIGEST_PREFIX)))
		return vs_error_set(err, EPROTO,
				    "image %s: the registry's digest is not sha256:HEX", image);
	const char *hex = digest + strlen(DIGEST_PREFIX);
	unsigned flags = json_is_true(json_object_get(img, "relative_symlinks"))
			     ? IMAGE_IMPORT_RELATIVIZE_SYMLINKS
			     : 0;
	snprintf(local, 64, "sha256-%.52s%s", hex, flags ? "-r" : "");
	if (image_get(nm->root, local, &info, &ierr) == 0)
		return 0; /* cached */
	return fetch_import(nm, image, hex, local, flags, err);
}
