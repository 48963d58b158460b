/*
 * nodeapi.c - a node manager's API paths for its clients (include/vslice/nodeapi.h).
 */
#include "vslice/nodeapi.h"

#include "vslice/http.h"
#include "vslice/util.h"

char *nodeapi_sliver_path(const char *slice, const char *what, const char *query)
{
	cleanup_free char *e = http_escape(slice, 0);
	return vs_xasprintf(NODEAPI_SLIVERS "%s/%s%s", e, what, query ? query : "");
}

char *nodeapi_transfer_path(const char *id)
{
	cleanup_free char *e = http_escape(id, 0);
	return vs_xasprintf(NODEAPI_TRANSFERS "%s", e);
}
