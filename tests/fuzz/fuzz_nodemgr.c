/*
 * fuzz_nodemgr.c - what a node manager reads from the network and its own
 * state dir: an assignments answer (from the registry, or its on-disk
 * cache) and a sliver record. Arbitrary bytes must parse or be refused
 * with an error, never crash; whatever parses must hold only valid slice
 * names, at most once each, and records must round-trip.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vslice/nodemgr.h"
#include "vslice/units.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	if (!j)
		return 0;
	struct vs_error err;
	struct nodemgr_assignment *a = NULL;
	size_t n = 0;
	long long index;
	if (nodemgr_assignments_parse(j, &a, &n, &index, &err) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (!vs_name_valid(a[i].slice))
				abort();
			for (size_t k = 0; k < i; k++)
				if (!strcmp(a[i].slice, a[k].slice))
					abort();
			size_t sl = strlen(a[i].sha256);
			if (sl != 0 && sl != 64)
				abort();
		}
		nodemgr_assignments_free(a, n);
	} else if (a) {
		abort();
	}
	struct nodemgr_record r;
	if (nodemgr_record_from_json(j, &r, &err) == 0) {
		json_t *back = nodemgr_record_to_json(&r);
		struct nodemgr_record r2;
		if (!back || nodemgr_record_from_json(back, &r2, &err) != 0)
			abort();
		if (strcmp(r.slice, r2.slice) || r.phase != r2.phase || r.expires != r2.expires ||
		    r.log_offset != r2.log_offset || r.results_done != r2.results_done)
			abort();
		nodemgr_record_free(&r2);
		json_decref(back);
		nodemgr_record_free(&r);
	}
	json_decref(j);
	return 0;
}
