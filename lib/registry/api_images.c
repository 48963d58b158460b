/*
 * api_images.c - images across the cluster (docs/cluster-api.md, "Images"):
 *
 *   PUT    /v1/images/NAME[?replace=1][&relative_symlinks=1]  user, admin
 *          (?check=1: every refusal the upload would meet, no body: 204)
 *   GET    /v1/images                   any token: every image
 *   GET    /v1/images/NAME              any token: one image
 *   GET    /v1/images/sha256:HEX        node, admin: the blob
 *   DELETE /v1/images/NAME              its owner, admin
 *
 * The registry keeps what was uploaded as it came (an OCI or docker-save
 * archive, a rootfs tarball): it never unpacks it. Unpacking untrusted
 * archives is the nodes' job, each under lib/image/import.c's rules, and a
 * multi-architecture OCI index is resolved by each node for its own
 * architecture. The digest is the SHA-256 the registry computed over the
 * bytes while they streamed to a temp file in <db>.d/tmp (never the
 * client's word); the blob is renamed to images/sha256/<digest> and the row
 * written in one step under reg->lock, so a blob is never without its row
 * for longer than that and a concurrent rm cannot collect it in between.
 *
 * Who may do what: images are cluster-wide, as their names are: every
 * token may list them and see their digests, every user may run any of
 * them (a slice's .image). Nodes and admins may download a blob; users do
 * not need to (they upload, and whoever runs a slice sees its files
 * anyway). A name is its uploader's: only they or an admin replace or
 * remove it, and neither happens while a slice names it (409), so a
 * slice's image is the same content for its whole life. Node tokens never
 * upload. "busybox" is built into every node and cannot be uploaded, nor
 * names starting with "sha256-" (the nodes' caches).
 *
 * Disk: an upload declares its size up front (Content-Length, or
 * X-Vslice-Size with a chunked body) and is refused with 413 over the cap
 * ($VSLICE_REGISTRY_IMAGE_MAX, default 4G) before a byte is stored; the
 * bytes that arrive are held to that size. At most REG_IMAGE_UPLOADS run at
 * once (503 beyond), REG_IMAGE_UPLOADS_PER_USER of one user (429: one user
 * trickling bytes cannot hold every place), and one is refused (507)
 * unless the data dir has room for it, every upload in flight, and
 * REG_IMAGE_DISK_MARGIN.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "registry_int.h"
#include "vslice/image.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define REG_IMAGE_MAX_DEFAULT (4ull << 30)
#define REG_IMAGE_DISK_MARGIN (64ull << 20)
#define DIGEST_PREFIX	      "sha256:"

/* The cap on one image's size: $VSLICE_REGISTRY_IMAGE_MAX ("512M", "8G"). */
static int image_max(uint64_t *out, struct vs_error *err)
{
	const char *v = getenv("VSLICE_REGISTRY_IMAGE_MAX");
	*out = REG_IMAGE_MAX_DEFAULT;
	if (!v || !*v)
		return 0;
	if (vs_parse_size(v, out, err) < 0)
		return vs_error_wrap(err, "VSLICE_REGISTRY_IMAGE_MAX");
	return 0;
}

static const char *caller(struct reg_request *req)
{
	return req->role == REGISTRY_ROLE_USER ? req->user : "admin";
}

/* May the caller replace or remove img? false: a holds 403. */
static bool may_change(struct reg_request *req, struct reg_answer *a, const struct store_image *img)
{
	if (req->role == REGISTRY_ROLE_ADMIN ||
	    (req->role == REGISTRY_ROLE_USER && req->user && !strcmp(img->owner, req->user)))
		return true;
	api_error(a, 403, "image %s: owned by %s (only they or an admin may change it)", img->name,
		  img->owner);
	return false;
}

static bool check_name(struct reg_answer *a, const char *name)
{
	char pb[80];
	if (!vs_name_valid(name)) {
		api_error(a, 400, "image \"%s\": invalid name (expected [a-z][a-z0-9_-]{0,62})",
			  vs_printable(name, pb, sizeof(pb)));
		return false;
	}
	if (!strncmp(name, "sha256-", 7)) {
		api_error(a, 400, "image %s: names starting with sha256- are the nodes' caches",
			  name);
		return false;
	}
	if (!strcmp(name, "busybox")) {
		api_error(a, 400,
			  "image busybox: built into every node; upload it under another "
			  "name");
		return false;
	}
	return true;
}

/* May name, which exists, be replaced or removed now? Not while a slice
 * names it: a slice's image stays the content it was placed with for its
 * whole life (a sliver made later, a migration's copy). false: a holds
 * 409/500. */
static bool replaceable(struct reg_request *req, struct reg_answer *a, const char *name)
{
	struct vs_error err;
	cleanup_free char *slice = NULL;
	if (store_image_user(req->reg, name, &slice, &err) < 0) {
		api_db_fail(a, &err);
		return false;
	}
	if (slice) {
		api_error(a, 409,
			  "image %s: in use by slice %s (delete those slices first; see: "
			  "slicectl list)",
			  name, slice);
		return false;
	}
	return true;
}

static json_t *image_json(const struct store_image *img)
{
	cleanup_free char *digest = vs_xasprintf(DIGEST_PREFIX "%s", img->digest);
	return json_pack("{s:s, s:s, s:I, s:s, s:I, s:b}", "name", img->name, "digest", digest,
			 "size", (json_int_t)img->size, "owner", img->owner, "created",
			 (json_int_t)img->created, "relative_symlinks",
			 (img->flags & IMAGE_IMPORT_RELATIVIZE_SYMLINKS) != 0);
}

/* ---- reads and rm (under reg->lock, from api.c's dispatch) ---- */

static void h_list(struct reg_request *req, struct reg_answer *a)
{
	struct store_image *v;
	size_t n;
	struct vs_error err;
	if (store_images_list(req->reg, &v, &n, &err) < 0)
		return api_db_fail(a, &err);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, image_json(&v[i]));
	free(v);
	api_answer_json(a, 200, json_pack("{s:o}", "images", arr));
}

static void h_get(struct reg_request *req, struct reg_answer *a, const char *name)
{
	if (!check_name(a, name))
		return;
	struct store_image img;
	struct vs_error err;
	int r = store_image_get(req->reg, name, &img, &err);
	if (r == -ENOENT)
		return api_error(a, 404, "image %s: not at the registry (see: slicectl image list)",
				 name);
	if (r < 0)
		return api_db_fail(a, &err);
	api_answer_json(a, 200, image_json(&img));
}

static void h_blob(struct reg_request *req, struct reg_answer *a, const char *hex)
{
	if (!api_need_role(req, a, true, false, true))
		return;
	char pb[80];
	if (!vs_sha256_hex_valid(hex))
		return api_error(a, 400,
				 "image blob \"%s\": expected sha256: and 64 lowercase hex digits",
				 vs_printable(hex, pb, sizeof(pb)));
	struct vs_error err;
	int used = store_image_digest_used(req->reg, hex, &err);
	if (used < 0)
		return api_db_fail(a, &err);
	if (!used)
		return api_error(a, 404, "image blob sha256:%s: no image has it", hex);
	cleanup_free char *path = store_image_blob_path(req->reg, hex);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return api_error(a, 500, "image blob sha256:%s: %s: %s", hex, path,
				 strerror(errno));
	a->status = 200;
	a->fd = fd;
	a->content_type = "application/octet-stream";
	api_answer_header(a, "X-Vslice-Sha256", vs_xstrdup(hex));
}

static void h_delete(struct reg_request *req, struct reg_answer *a, const char *name)
{
	if (!api_need_role(req, a, true, true, false) || !check_name(a, name))
		return;
	struct store_image img;
	struct vs_error err;
	int r = store_image_get(req->reg, name, &img, &err);
	if (r == -ENOENT)
		return api_error(a, 404, "image %s: not at the registry (see: slicectl image list)",
				 name);
	if (r < 0)
		return api_db_fail(a, &err);
	if (!may_change(req, a, &img) || !replaceable(req, a, name))
		return;
	char digest[65];
	if (store_begin(req->reg, &err) < 0)
		return api_db_fail(a, &err);
	if (store_image_delete(req->reg, name, digest, &err) < 0) {
		store_rollback(req->reg);
		return api_db_fail(a, &err);
	}
	if (store_commit(req->reg, false, &err) < 0)
		return api_db_fail(a, &err);
	store_image_blob_gc(req->reg, digest);
	a->status = 204;
}

void api_images_dispatch(struct reg_request *req, struct reg_answer *a, const char *method,
			 char *const *seg, size_t nseg)
{
	bool get = !strcmp(method, "GET"), del = !strcmp(method, "DELETE");
	if (nseg == 2 && get)
		return h_list(req, a);
	if (nseg == 3 && get && !strncmp(seg[2], DIGEST_PREFIX, strlen(DIGEST_PREFIX)))
		return h_blob(req, a, seg[2] + strlen(DIGEST_PREFIX));
	if (nseg == 3 && get)
		return h_get(req, a, seg[2]);
	if (nseg == 3 && del)
		return h_delete(req, a, seg[2]);
	api_error(a, 404, "%s %s: no such endpoint", method, req->url);
}

int api_images_sched(struct registry *reg, const char *image, struct sched_node *nodes, size_t n,
		     struct vs_error *err)
{
	if (!image || !vs_name_valid(image) || !strcmp(image, "busybox"))
		return 0;
	struct store_image img;
	int r = store_image_get(reg, image, &img, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		nodes[i].image_fetchable = true;
	return 0;
}

/* ---- the upload (streamed; server.c feeds req->fd and req->sha) ---- */

bool api_image_is_upload(const char *method, const char *url)
{
	static const char pre[] = "/v1/images/";
	return !strcmp(method, "PUT") && !strncmp(url, pre, sizeof(pre) - 1) &&
	       !strchr(url + sizeof(pre) - 1, '/');
}

static bool flag_arg(struct reg_request *req, const char *key)
{
	const char *v = reg_query(req, key);
	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

static bool parse_count(struct reg_answer *a, const char *name, const char *h, const char *v,
			unsigned long long *out)
{
	char *end;
	errno = 0;
	*out = strtoull(v, &end, 10);
	if (errno || *end || end == v || *v == '-' || *v == '+') {
		api_error(a, 400, "image %s: header %s: \"%.40s\" is not a byte count", name, h, v);
		return false;
	}
	return true;
}

/* The size the upload declares: X-Vslice-Size (a chunked body, or a
 * ?check=1 that sends none), else Content-Length; both: they must agree.
 * false: a holds 411/400. */
static bool declared_size(struct reg_request *req, struct reg_answer *a, const char *name,
			  bool check, unsigned long long *out)
{
	const char *xs = reg_header(req, "X-Vslice-Size");
	const char *cl = check ? NULL : reg_header(req, "Content-Length");
	unsigned long long x = 0, c = 0;
	if (!xs && !cl) {
		api_error(a, 411, "image %s: the upload declares no size (%s)", name,
			  check ? "X-Vslice-Size" : "Content-Length or X-Vslice-Size");
		return false;
	}
	if ((xs && !parse_count(a, name, "X-Vslice-Size", xs, &x)) ||
	    (cl && !parse_count(a, name, "Content-Length", cl, &c)))
		return false;
	if (xs && cl && x != c) {
		api_error(a, 400, "image %s: X-Vslice-Size says %llu bytes, Content-Length %llu",
			  name, x, c);
		return false;
	}
	*out = xs ? x : c;
	return true;
}

/* An upload of who's, of size bytes, ends: its place and room are free. */
static void release(struct registry *reg, const char *who, unsigned long long size)
{
	for (size_t i = 0; i < REG_IMAGE_UPLOADS; i++) {
		if (!strcmp(reg->image_uploaders[i], who)) {
			reg->image_uploaders[i][0] = '\0';
			break;
		}
	}
	if (reg->image_uploads)
		reg->image_uploads--;
	reg->image_reserved -= size < reg->image_reserved ? size : reg->image_reserved;
}

/* Refusals that need reg->lock: the owner, replace, uploads in flight, the
 * disk; on success the upload is counted and its size reserved. */
static bool admit(struct reg_request *req, struct reg_answer *a, const char *name,
		  unsigned long long size)
{
	struct registry *reg = req->reg;
	struct store_image img;
	struct vs_error err;
	int r = store_image_get(reg, name, &img, &err);
	if (r < 0 && r != -ENOENT) {
		api_db_fail(a, &err);
		return false;
	}
	if (r == 0 && !may_change(req, a, &img))
		return false;
	if (r == 0 && !flag_arg(req, "replace")) {
		api_error(a, 409,
			  "image %s: already at the registry (replace it with: slicectl "
			  "image import --replace)",
			  name);
		return false;
	}
	if (r == 0 && !replaceable(req, a, name))
		return false;
	const char *who = caller(req);
	size_t mine = 0, free_at = REG_IMAGE_UPLOADS;
	for (size_t i = 0; i < REG_IMAGE_UPLOADS; i++) {
		if (!reg->image_uploaders[i][0])
			free_at = free_at < REG_IMAGE_UPLOADS ? free_at : i;
		else if (!strcmp(reg->image_uploaders[i], who))
			mine++;
	}
	if (mine >= REG_IMAGE_UPLOADS_PER_USER) {
		api_error(a, 429, "image %s: %s has %zu image uploads running; retry once one ends",
			  name, who, mine);
		return false;
	}
	if (free_at == REG_IMAGE_UPLOADS) {
		api_error(a, 503, "image %s: %u image uploads are running; retry later", name,
			  REG_IMAGE_UPLOADS);
		return false;
	}
	struct statvfs vfs;
	if (statvfs(reg->store.blob_dir, &vfs) == 0) {
		unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
		unsigned long long need = reg->image_reserved + size + REG_IMAGE_DISK_MARGIN;
		if (avail < need) {
			api_error(a, 507,
				  "image %s: %llu bytes: the registry's disk has %llu bytes free, "
				  "%llu held for uploads running",
				  name, size, avail, reg->image_reserved);
			return false;
		}
	}
	snprintf(reg->image_uploaders[free_at], sizeof(reg->image_uploaders[free_at]), "%s", who);
	reg->image_uploads++;
	reg->image_reserved += size;
	return true;
}

int api_image_upload_begin(struct reg_request *req, struct reg_answer *a)
{
	const char *name = req->url + strlen("/v1/images/");
	if (!check_name(a, name))
		return -1;
	if (!api_need_role(req, a, true, true, false))
		return -1;
	uint64_t max;
	struct vs_error err;
	if (image_max(&max, &err) < 0) {
		api_error(a, 500, "image %s: %s", name, err.msg);
		return -1;
	}
	bool check = flag_arg(req, "check");
	unsigned long long size;
	if (!declared_size(req, a, name, check, &size))
		return -1;
	if (size > max) {
		api_error(a, 413,
			  "image %s: %llu bytes, larger than the registry's %" PRIu64
			  " (VSLICE_REGISTRY_IMAGE_MAX)",
			  name, size, max);
		return -1;
	}
	pthread_mutex_lock(&req->reg->lock);
	bool ok = admit(req, a, name, size);
	if (ok && check)
		release(req->reg, caller(req), size);
	pthread_mutex_unlock(&req->reg->lock);
	if (!ok)
		return -1;
	if (check) {
		/* Every refusal an upload of that size would meet now, without
		 * the body: a client that sends its body before it reads an
		 * early 413 may lose the answer to a reset connection. */
		a->status = 204;
		return -1;
	}
	req->upload = REG_UPLOAD_IMAGE;
	req->upath = vs_xstrdup(name);
	req->limit = size;
	req->offset = (long long)size; /* what it declared, released at done */
	req->mode = flag_arg(req, "relative_symlinks") ? IMAGE_IMPORT_RELATIVIZE_SYMLINKS : 0;
	req->tmp_path = vs_xasprintf("%s/tmp/image-XXXXXX", req->reg->store.blob_dir);
	req->fd = mkostemp(req->tmp_path, O_CLOEXEC);
	if (req->fd < 0) {
		api_error(a, 500, "image %s: %s: %s", name, req->tmp_path, strerror(errno));
		free(req->tmp_path);
		req->tmp_path = NULL;
		return -1; /* done releases the reservation (req->upload is set) */
	}
	sha256_init(&req->sha);
	return 0;
}

void api_image_upload_finish(struct reg_request *req, struct reg_answer *a)
{
	struct registry *reg = req->reg;
	const char *name = req->upath;
	if (req->received > req->limit)
		return api_error(a, 413, "image %s: more bytes than the %llu declared", name,
				 req->limit);
	if (req->too_big)
		return api_error(a, 500, "image %s: write %s failed", name, req->tmp_path);
	if (req->received != req->limit)
		return api_error(a, 400, "image %s: %llu bytes received, %llu declared", name,
				 req->received, req->limit);
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[65];
	sha256_digest(&req->sha, sizeof(d), d);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	if (fsync(req->fd) < 0)
		return api_error(a, 500, "image %s: fsync %s: %s", name, req->tmp_path,
				 strerror(errno));
	cleanup_free char *blob = store_image_blob_path(reg, hex);
	struct store_image img = {
	    .size = (long long)req->received, .created = reg_now(), .flags = req->mode};
	snprintf(img.name, sizeof(img.name), "%s", name);
	memcpy(img.digest, hex, sizeof(hex));
	snprintf(img.owner, sizeof(img.owner), "%s", caller(req));
	struct vs_error err;
	char old[65];
	pthread_mutex_lock(&reg->lock);
	/* Checked again: another upload of the name may have landed meanwhile. */
	struct store_image cur;
	int r = store_image_get(reg, name, &cur, &err);
	if (r == 0 && !may_change(req, a, &cur)) {
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	if (r == 0 && !flag_arg(req, "replace")) {
		pthread_mutex_unlock(&reg->lock);
		return api_error(a, 409,
				 "image %s: already at the registry (replace it with: "
				 "slicectl image import --replace)",
				 name);
	}
	if (r == 0 && !replaceable(req, a, name)) {
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	if (rename(req->tmp_path, blob) < 0) {
		pthread_mutex_unlock(&reg->lock);
		return api_error(a, 500, "image %s: store blob %s: %s", name, blob,
				 strerror(errno));
	}
	free(req->tmp_path);
	req->tmp_path = NULL;
	r = store_begin(reg, &err);
	if (r >= 0 && (r = store_image_put(reg, &img, old, &err)) < 0)
		store_rollback(reg);
	if (r >= 0)
		r = store_commit(reg, false, &err);
	if (r < 0) {
		store_image_blob_gc(reg, hex);
		pthread_mutex_unlock(&reg->lock);
		return api_db_fail(a, &err);
	}
	if (old[0] && strcmp(old, hex) != 0)
		store_image_blob_gc(reg, old);
	pthread_mutex_unlock(&reg->lock);
	api_answer_json(a, 201, image_json(&img));
}

void api_image_upload_done(struct reg_request *req)
{
	pthread_mutex_lock(&req->reg->lock);
	release(req->reg, caller(req), (unsigned long long)req->offset);
	pthread_mutex_unlock(&req->reg->lock);
}
