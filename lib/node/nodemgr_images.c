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
 *                       hashed as it streams in and cut off past the size
 *                       the registry announced, its SHA-256 checked against
 *                       the digest, and only then imported (lib/image/import.c, every rule of a
 *                       local import) as the local image "sha256-<first
 *                       52 hex digits>[-r]" ("-r": symlinks relativized);
 *   anything else       a local image of that name (an admin's
 *                       `slicectl image import` on this node), as before;
 *                       also when the registry cannot be asked (down, 5xx).
 *
 * The cache is by digest: a name re-imported with new content has a new
 * digest, so the next sliver fetches it anew, while slivers made from the
 * old one keep theirs. After each fetch the cache is trimmed to its bound
 * (cache_trim: oldest unused first). A blob whose bytes do not hash to the
 * digest is thrown away and the sliver fails, naming the image and both
 * digests: no sliver starts from it, and nothing of it stays on the node.
 *
 * The name prefix carries 208 bits of the digest (image names stop at 63
 * characters): finding two archives that share it is as hard as breaking
 * SHA-256's collision resistance.
 *
 * A new sliver's fetch runs in a thread of its own (struct nm_fetch, one
 * per digest at a time, with its own HTTP client): a blob of gigabytes
 * takes minutes, and the main loop must keep its heartbeats (or the
 * registry counts the node lost), its other slivers and its migrations
 * going meanwhile. nm_image_ensure answers -EINPROGRESS until the fetch
 * is over; the thread wakes the main loop when it is, and the next
 * reconcile makes the sliver (or fails it with the fetch's error). A
 * migration's copy fetches in the main thread, as before (it is waited for).
 * The thread touches nothing of nm: it has copies of what it needs and a
 * dup of the wake eventfd, so a node manager that stops mid-fetch leaves it
 * to the process exit. Everything else here: main thread only (nm->hc).
 */
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/image.h"
#include "vslice/regclient.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define DIGEST_PREFIX "sha256:"

/*
 * The download's sink: the HTTP client writes the body into a pipe; this
 * thread hashes each chunk as it writes it to the temp file, and stops
 * writing (but keeps draining, so the writer never meets a closed pipe)
 * past max, the size the registry announced.
 */
struct sink {
	int in, out;
	uint64_t n, max;
	bool over;
	int err; /* errno of a failed read/write, 0 */
	struct sha256_ctx h;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	char buf[65536];
	for (;;) {
		ssize_t r = read(k->in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0 && !k->err)
				k->err = errno;
			break;
		}
		if (k->over || k->err || k->n + (uint64_t)r > k->max) {
			k->over = k->over || k->n + (uint64_t)r > k->max;
			continue;
		}
		sha256_update(&k->h, (size_t)r, (const uint8_t *)buf);
		int w = vs_write_all(k->out, buf, (size_t)r);
		if (w < 0)
			k->err = -w;
		k->n += (uint64_t)r;
	}
	return NULL;
}

/* GET the blob hex into fd (at most max bytes), hashing it on the way:
 * got is the sha256 of what was written. */
static int fetch_blob(struct http_client *hc, const char *image, const char *hex, int fd,
		      uint64_t max, char got[VS_SHA256_HEX], struct vs_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vs_error_sys(err, errno, "image %s: pipe", image);
	struct sink k = {.in = p[0], .out = fd, .max = max};
	sha256_init(&k.h);
	pthread_t t;
	int e = pthread_create(&t, NULL, sink_main, &k);
	if (e) {
		close(p[0]);
		close(p[1]);
		return vs_error_sys(err, e, "image %s: thread", image);
	}
	long status = 0;
	int r = regclient_image_blob_get(hc, hex, p[1], &status, err);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	if (r < 0)
		return vs_error_wrap(err, "image %s: fetching sha256:%s", image, hex);
	if (k.over)
		return vs_error_set(err, EFBIG,
				    "image %s: fetching sha256:%s: more than the %llu bytes the "
				    "registry announced",
				    image, hex, (unsigned long long)max);
	if (k.err)
		return vs_error_sys(err, k.err, "image %s: writing the blob", image);
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(&k.h, sizeof(d), d);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(got + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/*
 * The cache's bound: while the fetched images ("sha256-*") hold more than
 * $VSLICE_NODE_IMAGE_CACHE bytes (default 8G), remove the oldest one no
 * slice here uses (keep: the one just fetched). One in use is never
 * removed, so the cache may stay over the bound by what slivers use.
 */
#define NODE_IMAGE_CACHE_DEFAULT (8ull << 30)

static void cache_trim(struct nodemgr *nm, const char *keep)
{
	uint64_t cap = NODE_IMAGE_CACHE_DEFAULT;
	const char *v = getenv("VSLICE_NODE_IMAGE_CACHE");
	struct vs_error err;
	if (v && *v && vs_parse_size(v, &cap, &err) < 0) {
		nm_log(nm, NODEMGR_LOG_INFO, "VSLICE_NODE_IMAGE_CACHE: %s (cache not trimmed)",
		       err.msg);
		return;
	}
	struct image_info *all = NULL;
	size_t n = 0;
	if (image_list(nm->root, &all, &n, &err) < 0)
		return;
	uint64_t held = 0;
	for (size_t i = 0; i < n; i++)
		if (!strncmp(all[i].name, "sha256-", 7))
			held += all[i].size;
	while (held > cap) {
		size_t oldest = n;
		for (size_t i = 0; i < n; i++) {
			if (strncmp(all[i].name, "sha256-", 7) || !strcmp(all[i].name, keep) ||
			    slice_image_in_use(nm->root, all[i].name))
				continue;
			if (oldest == n || all[i].created < all[oldest].created)
				oldest = i;
		}
		if (oldest == n)
			break;
		if (image_rm(nm->root, all[oldest].name, &err) < 0) {
			nm_log(nm, NODEMGR_LOG_INFO, "image cache: %s", err.msg);
			break;
		}
		nm_log(nm, NODEMGR_LOG_INFO, "image cache: removed %s (unused, oldest)",
		       all[oldest].name);
		held -= all[oldest].size;
		all[oldest].name[0] = '\0'; /* not a candidate any more */
	}
	free(all);
}

/* Fetch the blob hex (size bytes) into a temp file below <root>/images,
 * check it and import it as local. Any thread (its own hc). */
static int fetch_import(struct http_client *hc, const char *root, const char *image,
			const char *hex, uint64_t size, const char *local, unsigned flags,
			struct vs_error *err)
{
	cleanup_free char *dir = vs_xasprintf("%s/images", root);
	if (vs_mkdir_p(dir, 0700, err) < 0)
		return vs_error_wrap(err, "image %s", image);
	cleanup_free char *tmp = vs_xasprintf("%s/.tmp-fetch-XXXXXX", dir);
	cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return vs_error_sys(err, errno, "image %s: %s", image, tmp);
	char got[VS_SHA256_HEX] = "";
	int r = fetch_blob(hc, image, hex, fd, size, got, err);
	if (r == 0 && strcmp(got, hex) != 0) {
		r = vs_error_set(err, EBADMSG,
				 "image %s: checksum mismatch: the registry names sha256:%s, the "
				 "bytes fetched are sha256:%s; not used",
				 image, hex, got);
		vs_error_kind(err, VS_EK_REFUSED);
	}
	if (r == 0) {
		r = image_import_ex(root, local, tmp, flags, err);
		if (r == -EEXIST)
			r = 0; /* made meanwhile: the same digest, the same content */
		else if (r < 0)
			vs_error_wrap(err, "image %s (sha256:%s)", image, hex);
	}
	unlink(tmp);
	return r;
}

/* --- fetches in the background ------------------------------------ */

struct nm_fetch {
	struct nm_fetch *next; /* nm->fetches (main thread) */
	pthread_mutex_t mu;
	bool done;	  /* under mu: r and err are set */
	bool orphaned;	  /* under mu: the node manager is gone; the thread frees */
	uint64_t seen_ns; /* main thread: when nm_images_reap saw it done (0: not yet) */
	int r;
	struct vs_error err;
	/* The thread's own copies: */
	char image[128], hex[VS_SHA256_HEX], local[64];
	uint64_t size;
	unsigned flags, delay_ms;
	char *root, *registry, *token, *ca_file;
	int wake_fd; /* a dup of nm->wake_fd */
};

static void fetch_free(struct nm_fetch *f)
{
	pthread_mutex_destroy(&f->mu);
	free(f->root);
	free(f->registry);
	free(f->token);
	free(f->ca_file);
	if (f->wake_fd >= 0)
		close(f->wake_fd);
	free(f);
}

static void *fetch_main(void *arg)
{
	struct nm_fetch *f = arg;
	struct vs_error err;
	struct http_client hc;
	if (f->delay_ms) /* the test hook nodemgr.fetch_delay:MS: a slow link */
		nanosleep(&(struct timespec){.tv_sec = f->delay_ms / 1000,
					     .tv_nsec = (long)(f->delay_ms % 1000) * 1000000},
			  NULL);
	int r = http_client_init(&hc, f->registry, f->token, f->ca_file, &err);
	if (r == 0) {
		r = fetch_import(&hc, f->root, f->image, f->hex, f->size, f->local, f->flags, &err);
		http_client_free(&hc);
	}
	pthread_mutex_lock(&f->mu);
	f->r = r;
	f->err = err;
	f->done = true;
	bool orphaned = f->orphaned;
	if (!orphaned) {
		uint64_t one = 1;
		if (write(f->wake_fd, &one, sizeof(one)) < 0) {
			/* the counter is full: the loop is awake anyway */
		}
	}
	pthread_mutex_unlock(&f->mu);
	if (orphaned)
		fetch_free(f);
	return NULL;
}

static struct nm_fetch *fetch_find(struct nodemgr *nm, const char *local)
{
	for (struct nm_fetch *f = nm->fetches; f; f = f->next)
		if (!strcmp(f->local, local))
			return f;
	return NULL;
}

/* Start fetching hex as local in a thread: -EINPROGRESS (kind VS_EK_BUSY)
 * when it runs, another error when it could not start. */
static int fetch_start(struct nodemgr *nm, const char *image, const char *hex, uint64_t size,
		       const char *local, unsigned flags, struct vs_error *err)
{
	struct nm_fetch *f = vs_xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	snprintf(f->image, sizeof(f->image), "%s", image);
	snprintf(f->hex, sizeof(f->hex), "%s", hex);
	snprintf(f->local, sizeof(f->local), "%s", local);
	f->size = size;
	f->flags = flags;
	f->delay_ms = nm_fault_delay_ms(nm, "nodemgr.fetch_delay");
	f->root = vs_xstrdup(nm->root);
	f->registry = vs_xstrdup(nm->registry);
	f->token = vs_xstrdup(nm->token);
	f->ca_file = nm->ca_file ? vs_xstrdup(nm->ca_file) : NULL;
	f->wake_fd = fcntl(nm->wake_fd, F_DUPFD_CLOEXEC, 0);
	if (f->wake_fd < 0) {
		int e = errno;
		fetch_free(f);
		return vs_error_sys(err, e, "image %s: fetching sha256:%s", image, hex);
	}
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&t, &at, fetch_main, f);
	pthread_attr_destroy(&at);
	if (e) {
		fetch_free(f);
		return vs_error_sys(err, e, "image %s: fetching sha256:%s: a thread", image, hex);
	}
	f->next = nm->fetches;
	nm->fetches = f;
	nm_log(nm, NODEMGR_LOG_INFO, "image %s: fetching sha256:%s (%llu bytes) as %s", image, hex,
	       (unsigned long long)size, local);
	vs_error_set(err, EINPROGRESS, "image %s: being fetched", image);
	vs_error_kind(err, VS_EK_BUSY);
	return -EINPROGRESS;
}

/* f is over: its outcome is taken (0, or its error in err), f is freed. */
static int fetch_take(struct nodemgr *nm, struct nm_fetch *f, struct vs_error *err)
{
	for (struct nm_fetch **pp = &nm->fetches; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	int r = f->r;
	if (r < 0) {
		*err = f->err;
	} else {
		nm_log(nm, NODEMGR_LOG_INFO, "image %s: fetched sha256:%s, imported as %s",
		       f->image, f->hex, f->local);
		cache_trim(nm, f->local);
	}
	fetch_free(f);
	return r;
}

bool nm_images_reap(struct nodemgr *nm)
{
	bool any = false;
	uint64_t now = vs_now_ns();
	for (struct nm_fetch **pp = &nm->fetches; *pp;) {
		struct nm_fetch *f = *pp;
		pthread_mutex_lock(&f->mu);
		bool done = f->done;
		pthread_mutex_unlock(&f->mu);
		if (done && !f->seen_ns) {
			f->seen_ns = now;
			any = true;
		}
		/* A success is taken now; a failure waits for the sliver that
		 * asked (its reconcile), a minute at most. */
		if (done && (f->r == 0 || now - f->seen_ns > 60 * 1000000000ull)) {
			struct vs_error err;
			fetch_take(nm, f, &err); /* unlinks f from *pp */
			continue;
		}
		pp = &f->next;
	}
	return any;
}

void nm_images_free(struct nodemgr *nm)
{
	while (nm->fetches) {
		struct nm_fetch *f = nm->fetches;
		nm->fetches = f->next;
		pthread_mutex_lock(&f->mu);
		bool done = f->done;
		f->orphaned = true;
		pthread_mutex_unlock(&f->mu);
		if (done)
			fetch_free(f);
	}
}

int nm_image_ensure(struct nodemgr *nm, const char *image, bool wait, char local[64],
		    struct vs_error *err)
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
	if (r < 0 && (status == 0 || status >= 500) &&
	    image_get(nm->root, image, &info, &ierr) == 0) {
		/* The registry unreachable or failing: a local image of that
		 * name serves, as before images were at the registry. */
		nm_log(nm, NODEMGR_LOG_INFO,
		       "image %s: asking the registry: %s (using the local one)", image, err->msg);
		return 0;
	}
	if (r < 0)
		return vs_error_wrap(err, "image %s: asking the registry", image);
	const char *digest = json_string_value(json_object_get(img, "digest"));
	if (!digest || strncmp(digest, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 ||
	    !vs_sha256_hex_valid(digest + strlen(DIGEST_PREFIX)))
		return vs_error_set(err, EPROTO,
				    "image %s: the registry's digest is not sha256:HEX", image);
	const char *hex = digest + strlen(DIGEST_PREFIX);
	unsigned flags = json_is_true(json_object_get(img, "relative_symlinks"))
			     ? IMAGE_IMPORT_RELATIVIZE_SYMLINKS
			     : 0;
	json_int_t size = json_integer_value(json_object_get(img, "size"));
	if (size <= 0)
		return vs_error_set(err, EPROTO,
				    "image %s: the registry's size is not a byte count", image);
	snprintf(local, 64, "sha256-%.52s%s", hex, flags ? "-r" : "");
	struct nm_fetch *f = fetch_find(nm, local);
	if (f) {
		pthread_mutex_lock(&f->mu);
		bool done = f->done;
		pthread_mutex_unlock(&f->mu);
		if (done && fetch_take(nm, f, err) < 0)
			return -err->code;
		if (!done) {
			vs_error_set(err, wait ? EBUSY : EINPROGRESS,
				     "image %s: sha256:%s is being fetched on node %s; retry once "
				     "that is over",
				     image, hex, nm->name);
			vs_error_kind(err, VS_EK_BUSY);
			return -err->code;
		}
	}
	if (image_get(nm->root, local, &info, &ierr) == 0)
		return 0; /* cached */
	if (!wait)
		return fetch_start(nm, image, hex, (uint64_t)size, local, flags, err);
	nm_log(nm, NODEMGR_LOG_INFO, "image %s: fetching sha256:%s (%llu bytes) as %s", image, hex,
	       (unsigned long long)size, local);
	r = fetch_import(&nm->hc, nm->root, image, hex, (uint64_t)size, local, flags, err);
	if (r == 0)
		cache_trim(nm, local);
	return r;
}
