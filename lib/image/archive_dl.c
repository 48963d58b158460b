/*
 * archive_dl.c - resolve libarchive at run time (see archive_dl.h).
 */
#define ARCHIVE_DL_IMPL
#include <dlfcn.h>
#include <errno.h>

#include "archive_dl.h"

#define ARCHIVE_DL_DEFINE(f) __typeof__(f) *archive_dl_##f;
ARCHIVE_DL_FUNCS(ARCHIVE_DL_DEFINE)
#undef ARCHIVE_DL_DEFINE

int archive_dl_load(struct vs_error *err)
{
	static void *lib;
	if (lib)
		return 0;
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return vs_error_set(err, ENOENT, "libarchive: %s (apt-get install libarchive13)",
				    dlerror());
#define ARCHIVE_DL_RESOLVE(f)                                                                      \
	if (!(archive_dl_##f = (__typeof__(f) *)dlsym(h, #f))) {                                   \
		dlclose(h);                                                                        \
		return vs_error_set(err, ENOSYS, "libarchive: no symbol %s", #f);                  \
	}
	ARCHIVE_DL_FUNCS(ARCHIVE_DL_RESOLVE)
#undef ARCHIVE_DL_RESOLVE
	lib = h;
	return 0;
}
