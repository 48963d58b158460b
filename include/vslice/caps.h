/*
 * caps.h - the capability set a slice keeps (a Docker-like default),
 * applied with libcap in the workload before no_new_privs and seccomp.
 *
 * A capability set is a uint64_t mask: bit N = capability number N
 * (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
 *
 * Ordering in the workload (crun's order; see runtimes.md section 0.5):
 *   1. setresgid/setresuid if the workload runs as a non-zero uid, with
 *      PR_SET_KEEPCAPS set first (otherwise the uid change empties
 *      permitted and caps_apply cannot drop the bounding set: that needs
 *      CAP_SETPCAP; caps_apply re-raises effective from permitted itself);
 *   2. caps_apply(keep);
 *      a non-root uid ends with the kept caps in permitted/effective until
 *      execve, and none after it (inheritable and ambient are empty), as
 *      Docker does for non-root users;
 *   3. prctl(PR_SET_NO_NEW_PRIVS, 1);
 *   4. seccomp_bpf_install() last, right before execve.
 * For uid 0 (in the slice's user namespace), execve gives the new program
 * permitted = effective = the bounding set, so the bounding drop is what
 * really limits root; the capset() part limits the code between caps_apply
 * and execve.
 */
#ifndef VSLICE_CAPS_H
#define VSLICE_CAPS_H

#include <stdint.h>

#include "vslice/error.h"

/* Docker's 14: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
 * SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE. */
uint64_t caps_default_mask(void);

/*
 * "CHOWN,KILL" or "cap_chown, cap_kill" -> mask. Names are
 * case-insensitive, the "CAP_" prefix is optional, blanks around names are
 * ignored, a decimal number 0..63 is accepted for capabilities newer than
 * this build. "ALL" = every capability this build knows (0..CAP_LAST_CAP),
 * "NONE" (or an empty string) = 0; they may be combined with names
 * ("NONE,KILL"). An unknown name or an empty element ("A,,B") is an error
 * (EINVAL) naming the element.
 */
int caps_parse(const char *list, uint64_t *mask, struct vs_error *err);

/*
 * One name ("SYS_ADMIN", "cap_sys_admin", case-insensitive) -> capability
 * number, or -1 if unknown. Used by the seccomp compiler for Docker's
 * includes/excludes.caps.
 */
int caps_from_name(const char *name);

/*
 * Mask -> "CHOWN,KILL,..." in capability-number order, without the CAP_
 * prefix; bits without a name print as their number; 0 prints as "NONE".
 * caps_parse(caps_format(m)) == m. Caller frees.
 */
char *caps_format(uint64_t mask);

/*
 * In the workload, as uid 0 of the slice's user namespace, before NNP and
 * seccomp: drop every capability not in keep from the bounding set (up to
 * /proc/sys/kernel/cap_last_cap; EINVAL for a capability the kernel does
 * not know is tolerated), clear ambient (PR_CAP_AMBIENT_CLEAR_ALL), set
 * effective = permitted = keep & current permitted (a capability the process
 * does not have cannot be gained; it is silently left out), inheritable = 0.
 * libcap allocates a little (cap_init): allocation failure returns -ENOMEM,
 * never aborts. Safe in a forked child of a single-threaded parent. Returns
 * 0 or -errno with err naming the step ("drop CAP_SYS_ADMIN from bounding
 * set: Operation not permitted").
 */
int caps_apply(uint64_t keep, struct vs_error *err);

#endif
