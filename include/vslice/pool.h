/*
 * pool.h - the warm pool: slice sandboxes made ahead of time.
 *
 * A pooled sandbox is a slice directory in waiting (<root>/pool/eN-PID/:
 * upper/ work/ lower/ rootfs/ as a slice has them) plus what a cold start
 * spends most of its time making: a user namespace with the id map of an id
 * range claimed for it, a private mount namespace (owned by host root)
 * holding the id-mapped image and the overlay, network (lo up), IPC and UTS
 * namespaces owned by that user namespace, and the cgroups (pool@eN-PID,
 * beside the slices' own). The namespaces are kept alive by bind mounts of
 * their nsfs files on <entry>/ns/{user,mnt,net,ipc,uts}: no process waits.
 *
 * create takes one (pool_claim: the entry directory is renamed onto the
 * slice's, its cgroups renamed to the slice's name and limited, its id range
 * handed over), start joins the namespaces (pool_open_ns: the bind mounts
 * are gone once the fds are open), and a detached short-lived process
 * (pool_refill_async) makes new ones until the pool has its size again.
 * An entry is claimed once: nothing of it ever goes back to the pool.
 * The size is VSLICE_POOL or <root>/pool/size (0, the default: off). The pool holds sandboxes
 * of one kind, the last create's: its image, and whether the overlay is
 * "volatile" (run --rm) or not; a create of another kind starts cold and
 * the refill replaces the pool's sandboxes with ones of its kind.
 */
#ifndef VSLICE_POOL_H
#define VSLICE_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "vslice/cgroup.h"
#include "vslice/error.h"

enum pool_ns { POOL_NS_USER, POOL_NS_MNT, POOL_NS_NET, POOL_NS_IPC, POOL_NS_UTS, POOL_NS_COUNT };
extern const char *const pool_ns_names[POOL_NS_COUNT];

#define POOL_SIZE_MAX 256

/* How many sandboxes to keep ready (0 = off, the default): VSLICE_POOL if
 * set, else the node's setting in <root>/pool/size (a number and a
 * newline; none: 0). A value that is not a number from 0 to POOL_SIZE_MAX:
 * -EINVAL, err names the variable or the file. */
int pool_size_setting(const char *root, unsigned *size, struct vs_error *err);

/*
 * Take a ready sandbox of `image` (overlay volatile or not) for the slice
 * `name`: its directory is renamed to slice_dir, which must not exist (the
 * caller holds the root lock: this is the name's reservation), its cgroups
 * become the slice's (cgroup name `name`, limits lim), its id range is
 * handed to slice_dir (fsync'd when durable).
 * 1 and *id_base when one was taken, 0 when none is ready, -EEXIST (err
 * not set) when slice_dir exists, < 0 on other failures (what was taken is
 * given up: the caller removes slice_dir as for any failed create).
 */
int pool_claim(const char *root, const char *image, bool volatile_upper, const char *slice_dir,
	       const char *name, const struct cgroup_limits *lim, bool durable, uint32_t *id_base,
	       struct vs_error *err);

/*
 * At start: open the namespaces kept for a slice made from the pool and
 * check that each is the kind it claims and that net/ipc/uts belong to the
 * user namespace. 1 with fds[] open: the caller drops the bind mounts with
 * pool_release_ns() once the slice runs (the unmount waits for an RCU grace
 * period: not on the way to the workload); 0 for a slice without kept
 * namespaces (never pooled, or started before), < 0 on failure (the bind
 * mounts are dropped: the next start is a cold one).
 */
int pool_open_ns(const char *slice_dir, int fds[POOL_NS_COUNT], struct vs_error *err);

/* Drop the bind mounts of slice_dir/ns (destroy of a slice made from the
 * pool that never started); nothing there is fine. */
void pool_release_ns(const char *slice_dir);

/*
 * Make sandboxes of `image` (rootfs at image_rootfs; overlay volatile or
 * not) until `size` are ready,
 * one filler at a time (another running: return 0 at once; with size 0, wait
 * for it). First it removes
 * what a killed filler left half made and the entries of other images; with
 * size 0 it removes every entry. Used by the detached refill and the tests.
 */
int pool_fill(const char *root, const char *image, bool volatile_upper, const char *image_rootfs,
	      unsigned size, struct vs_error *err);

/* pool_fill in a detached process (double fork, no fds but /dev/null on
 * 0-2 and fill.lock, taken before this returns; its own session, nice 10),
 * which first calls before(arg) if given (the caller's own background work:
 * one process instead of two). True when that process was started; false
 * when nothing was forked (a filler already runs, or an error) and before
 * was not called. Best effort. */
bool pool_refill_async(const char *root, const char *image, bool volatile_upper,
		       const char *image_rootfs, unsigned size, void (*before)(void *), void *arg);

/* Remove every entry, ready or not (waits for a running filler). */
int pool_drain(const char *root, struct vs_error *err);

#endif
