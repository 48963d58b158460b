/*
 * nodeapi.h - the paths of a node manager's --listen API (docs/cluster-api.md,
 * "The node API"), spelled once: for its clients (slicectl's remote verbs
 * with a registry ticket; a migration's source, node to node) and for the
 * node manager's own router (nodemgr_api.c, nodemgr_files.c, nodemgr_xfer.c).
 */
#ifndef VSLICE_NODEAPI_H
#define VSLICE_NODEAPI_H

#define NODEAPI_SLIVERS	  "/v1/slivers/"   /* + NAME/{stats,freeze,thaw,logs,exec,files} */
#define NODEAPI_TRANSFERS "/v1/transfers/" /* + migration ID */
#define NODEAPI_STATUS	  "/v1/status"

/* NODEAPI_SLIVERS + slice (escaped as one segment) + "/" + what + query
 * (NULL: none; given with its "?"). Caller frees. */
char *nodeapi_sliver_path(const char *slice, const char *what, const char *query);
/* NODEAPI_TRANSFERS + id (escaped). Caller frees. */
char *nodeapi_transfer_path(const char *id);

#endif
