/* Internal to lib/node. */
#ifndef VSLICE_NODE_INTERNAL_H
#define VSLICE_NODE_INTERNAL_H

#include "vslice/slice.h"

int slice_net_parse(const char *s, enum slice_net *out);
/* Serialized with json_dumps: caller frees. NULL only on allocation failure. */
char *spec_to_json(const struct slice_spec *s);
char *state_to_json(const struct slice_state *st);
/* dirname: the slice directory's name, which .name must equal. */
int spec_from_json(const char *text, const char *dirname, struct slice_spec *s,
		   struct vs_error *err);
int state_from_json(const char *text, struct slice_state *st, struct vs_error *err);

#endif
