/*
 * idrange.h - each slice's own 65536 host uids/gids, like a Vserver
 * security context: slice root is host uid base, slice uid N is base+N.
 *
 * Ranges are slots: base = IDRANGE_FIRST + slot * IDRANGE_SIZE, far above
 * the /etc/subuid ranges distributions hand out (100000...). A slot is
 * claimed by creating <dir>/<slot> with O_EXCL (so two concurrent creates
 * never get the same one); its content is the owning slice's state dir. The
 * claim dir is machine-wide ($VSLICE_IDRANGE_DIR, default
 * /var/lib/vslice/idranges) even when several VSLICE_ROOTs exist, so no two
 * slices on the machine ever share a range. A claim whose owner directory no
 * longer exists (a crashed test run) is reclaimed once no slot is free.
 */
#ifndef VSLICE_IDRANGE_H
#define VSLICE_IDRANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "vslice/error.h"

#define IDRANGE_SIZE  65536u
#define IDRANGE_FIRST 0x40000000u /* 1073741824 */
#define IDRANGE_SLOTS 16384u	  /* up to 0x80000000 */

const char *idrange_default_dir(void);
/* Lowest clear index in a bitmap of nslots bits, or -1 if all are set. */
long idrange_lowest_free(const uint8_t *bitmap, uint32_t nslots);
/* Claim a range for owner (a path); *base gets the first host id. durable:
 * fsync the claim (skipped for ephemeral slices, which die with the host). */
int idrange_claim(const char *dir, const char *owner, bool durable, uint32_t *base,
		  struct vs_error *err);
/* Hand the claim for base from old_owner to new_owner (a pooled sandbox
 * becoming a slice): the claim file is replaced atomically under the lock.
 * EPERM if base is not old_owner's. */
int idrange_transfer(const char *dir, const char *old_owner, const char *new_owner, uint32_t base,
		     bool durable, struct vs_error *err);
/* True when the claim for base exists and names owner (nothing else may use it). */
bool idrange_owned(const char *dir, const char *owner, uint32_t base);
/* Release the range starting at base if owner still holds it. Missing is fine. */
int idrange_release(const char *dir, const char *owner, uint32_t base, struct vs_error *err);
/* Release every range whose claim names owner, when its base is not known
 * (the owner's record of it is lost: a slice without spec.json). Reads every
 * claim: O(claims), for that rare path only. None is fine. */
int idrange_release_owner(const char *dir, const char *owner, struct vs_error *err);

#endif
