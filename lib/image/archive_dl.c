/*
 * archive_dl.c - resolve libarchive at run time (see archive_dl.h).
 */
#define ARCHIVE_DL_IMPL
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "archive_dl.h"

#define ARCHIVE_DL_DEFINE(f) __typeof__(f) *archive_dl_##f;
ARCHIVE_DL_FUNCS(ARCHIVE_DL_DEFINE)
#undef ARCHIVE_DL_DEFINE

static int load_rc;
static struct vs_error load_err;

static void load(void)
{
	struct vs_error *err = &load_err;
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_rc = vs_error_set(err, ENOENT, "libarchive: %s (apt-get install libarchive13)",
				       dlerror());
		return;
	}
#define ARCHIVE_DL_RESOLVE(f)                                                                      \
	if (!(archive_dl_##f = (__typeof__(f) *)dlsym(h, #f))) {                                   \
		dlclose(h);                                                                        \
		load_rc = vs_error_set(err, ENOSYS, "libarchive: no symbol %s", #f);               \
		return;                                                                            \
	}
	ARCHIVE_DL_FUNCS(ARCHIVE_DL_RESOLVE)
#undef ARCHIVE_DL_RESOLVE
}

/* Once per process, also when threads ask at once (the node manager
 * migrates several slices in parallel); a failure is kept and repeated. */
int archive_dl_load(struct vs_error *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, load);
	if (load_rc < 0)
		*err = load_err;
	return load_rc;
}
