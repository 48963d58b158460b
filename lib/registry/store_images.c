/*
 * store_images.c - the images table and the blobs it refers to (issue 14).
 *
 * An image the registry holds is the archive a user uploaded, kept as it
 * came, once per content: "<db>.d/images/sha256/<digest>", where digest is
 * the SHA-256 of its bytes (64 lowercase hex digits, computed by the
 * registry while it streamed in, never taken from the client). A row names
 * name -> digest, size, owner, created and the import flags the nodes use.
 * Several names may share a digest; a blob goes when the last row referring
 * to it does (a replace, an rm); a blob or temp file a crash left without
 * its row goes when the registry next opens the database. Digests reach a path only after
 * api_images.c checked them as hex, names are vs_name_valid: neither can
 * climb out of images/sha256/.
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"
#include "vslice/util.h"

#define IMAGE_COLS "name, digest, size, owner, created, flags"

static void image_row(sqlite3_stmt *s, struct store_image *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", store_col_text(s, 0));
	snprintf(out->digest, sizeof(out->digest), "%s", store_col_text(s, 1));
	out->size = sqlite3_column_int64(s, 2);
	snprintf(out->owner, sizeof(out->owner), "%s", store_col_text(s, 3));
	out->created = sqlite3_column_int64(s, 4);
	out->flags = (unsigned)sqlite3_column_int64(s, 5);
}

int store_image_get(struct registry *reg, const char *name, struct store_image *out,
		    struct vs_error *err)
{
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT " IMAGE_COLS " FROM images WHERE name = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return vs_error_set(err, ENOENT, "image %s: not at the registry", name);
	if (rc != SQLITE_ROW)
		return store_db_error(reg, "read image", err);
	image_row(s, out);
	return 0;
}

int store_images_list(struct registry *reg, struct store_image **out, size_t *n,
		      struct vs_error *err)
{
	*out = NULL;
	*n = 0;
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg, "SELECT " IMAGE_COLS " FROM images ORDER BY name", err);
	if (!s)
		return -err->code;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		image_row(s, store_push((void **)out, &cap, n, sizeof(**out)));
	if (rc != SQLITE_DONE) {
		free(*out);
		*out = NULL;
		*n = 0;
		return store_db_error(reg, "list images", err);
	}
	return 0;
}

int store_image_put(struct registry *reg, const struct store_image *in, char old[65],
		    struct vs_error *err)
{
	struct store_image cur;
	struct vs_error ignored;
	old[0] = '\0';
	if (store_image_get(reg, in->name, &cur, &ignored) == 0)
		memcpy(old, cur.digest, 65);
	cleanup_stmt sqlite3_stmt *s = store_prep(
	    reg, "INSERT OR REPLACE INTO images(" IMAGE_COLS ") VALUES (?, ?, ?, ?, ?, ?)", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, in->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, in->digest, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, in->size);
	sqlite3_bind_text(s, 4, in->owner, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 5, in->created);
	sqlite3_bind_int64(s, 6, in->flags);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "insert image", err);
	return 0;
}

int store_image_delete(struct registry *reg, const char *name, char digest[65],
		       struct vs_error *err)
{
	struct store_image cur;
	int r = store_image_get(reg, name, &cur, err);
	if (r < 0)
		return r;
	memcpy(digest, cur.digest, 65);
	cleanup_stmt sqlite3_stmt *s = store_prep(reg, "DELETE FROM images WHERE name = ?", err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_db_error(reg, "delete image", err);
	return 0;
}

int store_image_user(struct registry *reg, const char *image, char **slice, struct vs_error *err)
{
	*slice = NULL;
	/* The manifest is the text submitted (JSON, checked by manifest_parse
	 * when the slice was made); its .image names the image. */
	cleanup_stmt sqlite3_stmt *s =
	    store_prep(reg,
		       "SELECT name FROM slices WHERE json_valid(manifest) AND"
		       " json_extract(manifest, '$.image') = ? ORDER BY name LIMIT 1",
		       err);
	if (!s)
		return -err->code;
	sqlite3_bind_text(s, 1, image, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*slice = store_col_dup(s, 0);
	else if (rc != SQLITE_DONE)
		return store_db_error(reg, "find slices of image", err);
	return 0;
}

char *store_image_blob_path(struct registry *reg, const char *digest)
{
	return vs_xasprintf("%s/images/sha256/%s", reg->store.blob_dir, digest);
}

int store_image_digest_used(struct registry *reg, const char *digest, struct vs_error *err)
{
	return store_row_exists(reg, "SELECT 1 FROM images WHERE digest = ? LIMIT 1", digest, err);
}

void store_image_blob_gc(struct registry *reg, const char *digest)
{
	if (!digest || !*digest)
		return;
	struct vs_error err;
	int used = store_image_digest_used(reg, digest, &err);
	if (used != 0)
		return; /* referred to, or unknown: keep it */
	cleanup_free char *p = store_image_blob_path(reg, digest);
	unlink(p);
}

/* At open: what a crash left, between an upload's temp file and its row. */
void store_images_sweep(struct registry *reg)
{
	struct vs_error err;
	const char *sub[] = {"images/sha256", "tmp"};
	for (size_t k = 0; k < VS_ARRAY_SIZE(sub); k++) {
		cleanup_free char *dir = vs_xasprintf("%s/%s", reg->store.blob_dir, sub[k]);
		cleanup_closedir DIR *d = opendir(dir);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			bool drop;
			if (e->d_name[0] == '.')
				continue;
			if (k == 1)
				drop = !strncmp(e->d_name, "image-", 6); /* an upload cut short */
			else
				drop = strlen(e->d_name) != 64 ||
				       store_image_digest_used(reg, e->d_name, &err) == 0;
			if (drop)
				unlinkat(dirfd(d), e->d_name, 0);
		}
	}
}
