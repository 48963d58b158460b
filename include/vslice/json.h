/*
 * json.h - the cleanup attribute for jansson's json_t, spelled once for every
 * module that keeps JSON values. The helper itself is jansson's own
 * json_decrefp() (next to json_t, in <jansson.h>; NULL is fine), the one
 * behind json_auto_t; this only gives it the project's cleanup_* name. The
 * other cleanup attributes are in util.h, which stays free of jansson
 * (lib/core needs only libc).
 *
 *   cleanup_json json_t *j = json_loads(...);   decref'd at scope end (NULL ok)
 *
 * Hand the reference on with steal_pointer(&j).
 */
#ifndef VSLICE_JSON_H
#define VSLICE_JSON_H

#include <jansson.h>

#define cleanup_json __attribute__((cleanup(json_decrefp)))

#endif
