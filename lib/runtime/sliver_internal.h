/* Internal to lib/runtime: the pieces of sliver_spawn in separate files. */
#ifndef VSLICE_SLIVER_INTERNAL_H
#define VSLICE_SLIVER_INTERNAL_H

#include "vslice/sliver.h"

/* Status messages from launcher / P1 / workload to the caller, on a pipe. */
/* MSG_EXEC_FAILED: execve itself failed (code 127 not found, 126 denied);
 * MSG_WORKDIR_FAILED: the workload could not enter its workdir (code 126). */
enum sliver_msg_kind {
	MSG_PID = 1,
	MSG_ERROR,
	MSG_EXEC_FAILED,
	MSG_COPY_FALLBACK,
	MSG_WORKDIR_FAILED,
	MSG_ERROR_TIMENS, /* MSG_ERROR of kind VS_EK_TIMENS */
	MSG_NET_READY,	  /* launcher: the slice's netns exists (net_setup) */
	MSG_ROOTFS_READY, /* launcher: the slice's root is mounted (net_files) */
	MSG_NET_CANCELED, /* launcher: the caller's network set-up failed */
};
struct sliver_msg {
	int kind;
	int code;
	char text[VS_ERROR_MAX];
};
void sliver_send(int fd, int kind, int code, const char *text);
/* The caller's answer on the ack socket (--net bridge) is one byte: '1'
 * (the network and the /etc files are done) or '0'. */

/* rootfs.c: in the launcher (host root, private mount ns): id-mapped image +
 * overlay at c->rootfs. *idmapped false when the chowned copy was used. */
int rootfs_mount_overlay(const struct sliver_config *c, int userns_fd, bool *idmapped,
			 struct vs_error *err);
/* disk.c: in the launcher, before rootfs_mount_overlay: attach c->disk_image
 * to a loop device, mount it at c->disk_mnt, make c->upper and c->work. */
int rootfs_mount_disk(const struct sliver_config *c, struct vs_error *err);
/* rootfs.c: in P1 (slice root, own mount ns): proc, sys, dev, masks, pivot_root. */
int rootfs_enter(const struct sliver_config *c, struct vs_error *err);

/* init.c: P1's life after rootfs_enter; never returns. */
__attribute__((noreturn)) void init_main(const struct sliver_config *c, int status_fd);

/* init.c: the workload side: stdio, session, caps, NNP, seccomp, execve;
 * failures are reported on status_fd (-1: none). Never returns. */
__attribute__((noreturn)) void workload_exec(const struct sliver_workload *p, int status_fd);

/* sliver.c, shared with pool.c: a user namespace mapping 0..count-1 to
 * base.. (returns an fd to it; netns != NULL: *netns an fd to a new network
 * namespace owned by it, and ready_fd >= 0: joined, and as soon as it is
 * open, the id maps written, a NETLINK_ROUTE socket made in it goes to the
 * caller on ack_fd and MSG_NET_READY naming the namespace's fd on
 * ready_fd);
 * setgroups/setresgid/setresuid(0) inside it; lo up in the current network
 * namespace. */
int sliver_make_userns(uint32_t base, uint32_t count, struct vs_error *err);
int sliver_make_userns_net(uint32_t base, uint32_t count, int *netns, int ready_fd, int ack_fd,
			   struct vs_error *err);
int sliver_become_root(struct vs_error *err);
int sliver_loopback_up(struct vs_error *err);

/* Close every fd except those listed (and -1 entries are ignored). */
void close_fds_except(const int *keep, size_t n);

#endif
