/*
 * slice_ckpt.h - checkpoint and restore of a whole local slice over a file
 * descriptor (a file, a pipe, a socket): what `slicectl checkpoint/restore`
 * and the node manager (migration) call.
 *
 * The stream (docs/checkpoint.md) holds the workload's process tree, the
 * slice spec (as the EXTRA blob) and the overlay upper dir (the slice's
 * file system delta). The slice's PID 1 is not in it: a restore starts a
 * fresh PID 1 whose workload is created with the old root pid and runs
 * the restore stub inside the set-up slice.
 *
 * Errors: < 0 with err filled. err->kind == VS_EK_REFUSED: refused up front
 * (not running, a --disk slice, state the checkpointer cannot carry), the
 * slice was never stopped. Any other failure of slice_checkpoint leaves the
 * slice running untouched; a failed slice_restore leaves no slice of that
 * name behind (a stopped one it replaced is gone).
 */
#ifndef VSLICE_SLICE_CKPT_H
#define VSLICE_SLICE_CKPT_H

#include <stdbool.h>
#include <stdint.h>

#include "vslice/ckpt.h"
#include "vslice/error.h"

struct slice_checkpoint_opts {
	bool leave_running; /* the slice runs on after the checkpoint */
	/* With leave_running: the slice is left frozen by the checkpoint (its
	 * freezer cgroup; not recorded in its state: the caller records it
	 * with slice_freeze(), or thaws it with the cgroup). */
	bool keep_frozen;
	/* Only what would refuse the slice up front (a --disk slice, state the
	 * checkpointer cannot carry): nothing is stopped or written; 0 if a
	 * checkpoint would not be refused. */
	bool check_only;
	bool verbose; /* checkpointer progress on stderr */
	/* Pre-copy (ckpt_dirty.h): page rounds while the slice runs, then the
	 * frozen round. The rounds stop at max_rounds (0: 8), when a round
	 * (after the first) has fewer than min_pages pages (0: 64), when a
	 * round is no smaller than the one before, or when the rounds wrote
	 * max_bytes (0: twice the first round). */
	bool precopy;
	unsigned max_rounds;
	uint64_t min_pages;
	uint64_t max_bytes;
	/* Called after each running round (may be NULL). */
	void (*on_round)(void *arg, unsigned round, const struct ckpt_round_stats *rs);
	void *on_round_arg;
};

/*
 * Write the running slice `name` to out_fd. Without leave_running the slice
 * is destroyed, but only once the stream is complete: for a regular file
 * (which must be empty: refused otherwise),
 * fsync'ed and read back whole (every CRC, the END record); for a pipe or a
 * socket, every byte up to the END record handed to the kernel. A reader
 * that dies before that fails the checkpoint (EPIPE; SIGPIPE is held off
 * for the call) and the slice runs on; one that dies after it loses the
 * checkpoint. The slice's PID 1 is awaited through a pidfd.
 */
int slice_checkpoint(const char *root, const char *name, int out_fd,
		     const struct slice_checkpoint_opts *o, struct ckpt_stats *st,
		     struct vs_error *err);

struct slice_restore_opts {
	bool verbose;
	/* Called (may be NULL) when the kernel refused time-namespace offsets
	 * (VS_EK_TIMENS) and the slice is restored without them: monotonic
	 * clocks will not continue from the checkpoint. */
	void (*warn)(void *arg, const struct vs_error *why);
	void *warn_arg;
	unsigned timeout_ms; /* wait for the restore stubs; 0 = 30 s */
	/* Leave the restored slice frozen (its freezer cgroup; slice_thaw()
	 * runs it): a migration's target holds it until the commit. The tree
	 * runs for the moment between the restore's detach and the freeze. */
	bool frozen;
	/* Called (may be NULL) right after the slice is created from the
	 * stream's spec, before its processes are restored: e.g. to put a
	 * caller's own file into its directory. A failure fails the restore. */
	int (*created)(void *arg, struct vs_error *err);
	void *created_arg;
};

/*
 * Restore the stream read from in_fd as slice `name` (the same or another
 * name). A stopped slice of that name is replaced, a running one refused
 * (EBUSY, VS_EK_BUSY). The stream is read and verified whole (every CRC,
 * the END record) before anything is created.
 */
int slice_restore(const char *root, const char *name, int in_fd, const struct slice_restore_opts *o,
		  struct ckpt_stats *st, struct vs_error *err);

#endif
