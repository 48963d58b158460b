/*
 * ckpt_dirty.h - pre-copy of a running process tree: write tracking
 * without soft-dirty (userfaultfd write-protect in async mode, read and
 * re-armed with the PAGEMAP_SCAN ioctl; Linux >= 6.7) and the page rounds
 * it feeds. docs/checkpoint.md, "Pre-copy: write tracking without
 * soft-dirty".
 *
 *     ckpt_precopy_start()   refuse what cannot be tracked, start the stream
 *     ckpt_precopy_round()   x N while the tree runs: round 0 = everything
 *                            present, then what was written since
 *     ckpt_dump(.precopy=)   freeze: records + the frozen round + END
 *     ckpt_precopy_free()    disarm (always; the tree runs on unharmed)
 *
 * Needs host root (ptrace, pidfd_getfd). A round that fails leaves the
 * stream unusable: free the pre-copy (which disarms every process) and
 * fail the checkpoint; the tree keeps running.
 */
#ifndef VSLICE_CKPT_DIRTY_H
#define VSLICE_CKPT_DIRTY_H

#include <stdbool.h>
#include <sys/types.h>

#include "vslice/ckpt.h"
#include "vslice/error.h"

struct ckpt_precopy_opts {
	bool verbose;
	/* Stop (frozen = true) or restart the whole tree, e.g. its freezer
	 * cgroup; called around registering new memory in a round, so that no
	 * vma changes while it is registered (a registration over part of a
	 * vma splits it, and the process's own mremap of it would then fail).
	 * NULL: registered while the tree runs (that race stays open). */
	int (*freeze)(void *arg, bool frozen, struct vs_error *err);
	void *freeze_arg;
};

/*
 * Start a pre-copy of every process under init_hpid (a slice's PID 1,
 * which is not tracked itself) into out_fd. Refused (VS_EK_REFUSED) when
 * the kernel lacks userfaultfd WP_ASYNC or PAGEMAP_SCAN, or a process
 * uses userfaultfd itself (its fd is named). Nothing is armed yet. o may
 * be NULL.
 */
int ckpt_precopy_start(pid_t init_hpid, int out_fd, const struct ckpt_precopy_opts *o,
		       struct ckpt_precopy **out, struct vs_error *err);

/*
 * One round while the tree runs: re-read every process's vmas, arm the
 * new ones (a userfaultfd made inside each new process by an injected
 * syscall, taken with pidfd_getfd), read and reset the written pages of
 * the armed ones, and write the pages as one page round. *rs filled.
 */
int ckpt_precopy_round(struct ckpt_precopy *pc, struct ckpt_round_stats *rs, struct vs_error *err);

/* Rounds written so far. */
unsigned ckpt_precopy_rounds(const struct ckpt_precopy *pc);

/* Close every userfaultfd (the kernel then unregisters and un-protects
 * all the tracked memory) and free. NULL is fine. */
void ckpt_precopy_free(struct ckpt_precopy *pc);

#endif
