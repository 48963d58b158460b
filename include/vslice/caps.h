/*
 * caps.h - the capability set a slice keeps (a Docker-like default),
 * applied with libcap in the workload before no_new_privs and seccomp.
 */
#ifndef VSLICE_CAPS_H
#define VSLICE_CAPS_H

#include <stdint.h>

#include "vslice/error.h"

/* Docker's 14: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
 * SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE. */
uint64_t caps_default_mask(void);
/* "CHOWN,KILL" or "cap_chown,cap_kill" -> mask; unknown name is an error. */
int caps_parse(const char *list, uint64_t *mask, struct vs_error *err);
/* Mask -> "CHOWN,KILL,..." (caller frees). */
char *caps_format(uint64_t mask);
/*
 * In the workload, as uid 0 of the slice's user namespace, before NNP and
 * seccomp: drop every capability not in keep from the bounding set (up to
 * cap_last_cap), clear ambient, set effective = permitted = keep,
 * inheritable = 0. No allocation failures are fatal; returns -errno.
 */
int caps_apply(uint64_t keep, struct vs_error *err);

#endif
