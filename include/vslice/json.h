/*
 * json.h - the cleanup attribute for jansson's json_t, defined once for
 * every module that keeps JSON values. The other cleanup attributes are in
 * util.h, which stays free of jansson (lib/core needs only libc).
 *
 *   cleanup_json json_t *j = json_loads(...);   decref'd at scope end (NULL ok)
 *
 * Hand the reference on with steal_pointer(&j).
 */
#ifndef VSLICE_JSON_H
#define VSLICE_JSON_H

#include <jansson.h>

static inline void vs_json_decrefp(json_t **j)
{
	if (*j)
		json_decref(*j);
}

#define cleanup_json __attribute__((cleanup(vs_json_decrefp)))

#endif
