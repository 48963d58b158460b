/*
 * ckpt_int.h - the checkpoint stream's records and the helpers the dump and
 * restore halves share. x86_64 only.
 *
 * Stream = magic "VSCKPT\r\n", u32 version, u32 flags, then sections
 *     u32 type | u32 zero | u64 len | payload[len] | u32 crc32c(type,len,payload)
 * and a final CK_SEC_END whose payload (struct ck_end) counts the sections
 * and chains their CRCs, so truncation and reordering are caught. Records
 * are the C structs below (natural alignment, little endian, explicit pads),
 * followed by a variable tail where the struct says so. docs/checkpoint.md.
 */
#ifndef VSLICE_CKPT_INT_H
#define VSLICE_CKPT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vslice/ckpt.h"
#include "vslice/error.h"

#define CK_MAGIC "VSCKPT\r\n"
/* 2: ck_proc.securebits, VMA madvise flags, ppid 0 = top level.
 * 3: pages only in page rounds (CK_SEC_ROUND + CK_SEC_PAGES) after every
 *    other section, so a restore can apply them as they arrive. */
#define CK_VERSION 3
/* Stream flag: the stream opens with page rounds written while the tree
 * ran (a pre-copy, dirty.c), before the HEADER; their pages are applied
 * first, clipped to the final vmas (docs/checkpoint.md, "Pre-copy"). */
#define CK_FLAG_PRECOPY 1u

enum ck_sec {
	CK_SEC_HEADER = 1,
	CK_SEC_PROC = 2,
	CK_SEC_THREAD = 3, /* + xstate bytes */
	CK_SEC_VMA = 4,
	CK_SEC_PAGES = 5, /* + page bytes */
	CK_SEC_FILE = 6,
	CK_SEC_FD = 7,
	CK_SEC_DATA = 8, /* + bytes */
	CK_SEC_EPOLL = 9,
	CK_SEC_SIGINFO = 10,
	CK_SEC_TIMER = 11,
	CK_SEC_SECCOMP = 12, /* + sock_filter insns */
	CK_SEC_EXTRA = 13,   /* + opaque bytes */
	CK_SEC_FSENTRY = 14, /* file system delta: one inode + path/link/xattrs */
	CK_SEC_FSDATA = 15,  /* + content bytes of the preceding regular FSENTRY */
	CK_SEC_ROUND = 16,   /* starts a page round: the PAGES sections up to the
			      * next ROUND or END; every other section is before
			      * the first ROUND (version 3) */
	CK_SEC_END = 0x7fff,
};

#define CK_PATH 1024

struct ck_header {
	int64_t mono_ns, boot_ns, real_ns;
	uint64_t vvar_size, vclock_size, vdso_size;
	uint32_t root_pid;
	uint32_t nr_procs;
	char name[64];
	char kernel[72];
};

enum ck_proc_state { CK_ALIVE = 0, CK_ZOMBIE = 1 };

struct ck_sigact {
	uint64_t handler, flags, restorer, mask;
};

struct ck_proc {
	int32_t pid, ppid, pgid, sid; /* innermost pid namespace; ppid 0: a child of
				       * the slice's PID 1 (the root and every
				       * process reparented to PID 1) */
	int32_t state, exit_status;   /* exit_status: wait(2) status */
	int32_t nr_threads;
	uint32_t umask;
	uint32_t personality;
	int32_t pdeathsig;
	int32_t dumpable, subreaper;
	int32_t no_new_privs, seccomp_mode;
	uint32_t nr_seccomp;
	uint32_t auxv_len;
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv[80];
	struct ck_sigact sigact[64]; /* index = signo - 1 */
	uint64_t rlim[16][2];
	int64_t itimer[3][4]; /* interval sec,usec, value sec,usec */
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	uint32_t uid[4], gid[4]; /* real, effective, saved, fs */
	uint32_t ngroups;
	uint32_t groups[32];
	uint32_t securebits; /* PR_GET_SECUREBITS */
	uint32_t pad_proc;
	char comm[16];
	char cwd[CK_PATH];
	char exe[CK_PATH];
};

struct ck_thread {
	int32_t pid, tid;
	uint64_t regs[27]; /* struct user_regs_struct */
	uint64_t sigmask;
	uint64_t tid_address;
	uint64_t robust_list, robust_len;
	uint64_t rseq_addr, rseq_flags;
	uint32_t rseq_len, rseq_sig;
	uint64_t ss_sp, ss_size;
	int32_t ss_flags;
	uint32_t xstate_len; /* bytes following the record */
	char comm[16];
};

enum ck_vma_kind {
	CK_VMA_ANON = 1,   /* private anonymous (incl. heap, stack) */
	CK_VMA_FILE = 2,   /* private file mapping: COWed pages in the image */
	CK_VMA_SHARED = 3, /* shared anonymous / shared memfd: content in DATA(shm) */
	CK_VMA_VVAR = 4,
	CK_VMA_VCLOCK = 5,
	CK_VMA_VDSO = 6,
	CK_VMA_FILE_SHARED = 7, /* MAP_SHARED of a regular file: mapped again */
	CK_VMA_SYSV = 8,	/* addition: a SysV shm attach, shm_id = the segment's id */
};

#define CK_VMA_F_GROWSDOWN 1u
#define CK_VMA_F_HEAP	   2u
#define CK_VMA_F_STACK	   4u
/* madvise state (smaps VmFlags), re-applied with madvise() on restore */
#define CK_VMA_F_DONTFORK  0x10u  /* dc: MADV_DONTFORK */
#define CK_VMA_F_DONTDUMP  0x20u  /* dd: MADV_DONTDUMP */
#define CK_VMA_F_WIPEONFRK 0x40u  /* wf: MADV_WIPEONFORK */
#define CK_VMA_F_HUGEPAGE  0x80u  /* hg: MADV_HUGEPAGE */
#define CK_VMA_F_NOHUGE	   0x100u /* nh: MADV_NOHUGEPAGE */
#define CK_VMA_F_MERGEABLE 0x200u /* mg: MADV_MERGEABLE */
#define CK_VMA_F_SEQ	   0x400u /* sr: MADV_SEQUENTIAL */
#define CK_VMA_F_RANDOM	   0x800u /* rr: MADV_RANDOM */
#define CK_VMA_F_KNOWN	   0xff7u

struct ck_vma {
	int32_t pid;
	uint32_t kind;
	uint64_t start, end, pgoff;
	uint32_t prot, flags;
	uint64_t shm_id; /* CK_VMA_SHARED: id of the DATA(shm) object */
	char path[CK_PATH];
};

struct ck_round {
	uint32_t round; /* strictly increasing; a later round's pages override */
	uint32_t pad;
};

struct ck_pages {
	int32_t pid;
	uint32_t pad;
	uint64_t addr, len; /* len bytes follow */
};

enum ck_file_kind {
	CK_F_REG = 1, /* regular file by path; ghost if DATA(ghost) present */
	CK_F_DIR = 2,
	CK_F_CHR = 3,  /* /dev/null, zero, full, random, urandom */
	CK_F_PIPE = 4, /* anonymous pipe end; DATA(pipe) = buffered bytes */
	CK_F_FIFO = 5, /* named pipe end */
	CK_F_UNIX = 6, /* unix socket */
	CK_F_EVENTFD = 7,
	CK_F_EPOLL = 8,
	CK_F_TIMERFD = 9,
	CK_F_SIGNALFD = 10,
	CK_F_INOTIFY = 11, /* fd-level addition: watches in CK_SEC_INOTIFY */
	CK_F_INET = 12,	   /* fd-level addition: TCP/UDP socket, CK_SEC_INET */
	CK_F_MEMFD = 13,   /* addition: memfd_create; content in DATA(shm) u[3] */
};

struct ck_file {
	uint32_t id, kind;
	uint32_t flags; /* open file status flags (O_ACCMODE, O_APPEND, O_NONBLOCK...) */
	uint32_t mode;	/* st_mode */
	uint64_t pos;
	uint64_t ino;	   /* pipe/socket inode: pairs ends */
	uint64_t peer_ino; /* unix: peer socket inode, 0 = none */
	uint64_t size;	   /* reg: st_size at dump */
	uint64_t rdev;
	uint32_t sk_type, sk_state; /* unix: SOCK_*, TCP_* style state */
	uint32_t sk_backlog, pipe_size;
	uint32_t ghost; /* 1: unlinked, content in DATA(ghost) */
	uint32_t sk_shutdown;
	uint32_t external; /* 1: outside the tree's mounts (e.g. the slice log):
			    * restored from the restorer's own fd ext_fd */
	int32_t ext_fd;
	uint64_t u[4];	   /* eventfd: count, semaphore; signalfd: mask;
			    * timerfd: clockid, ticks, settime flags */
	int64_t tv[4];	   /* timerfd: it_value sec,nsec, it_interval sec,nsec */
	int32_t owner_pid; /* epoll: the process that re-adds the targets */
	uint32_t sk_name_len;
	char sk_name[112]; /* unix: bound address (sun_path bytes, may start with NUL) */
	char path[CK_PATH];
};

struct ck_fd {
	int32_t pid, fd;
	uint32_t file_id;
	uint32_t cloexec;
};

enum ck_data_kind {
	CK_D_GHOST = 1,	     /* content of an unlinked regular file */
	CK_D_PIPE = 2,	     /* bytes buffered in a pipe / fifo */
	CK_D_SKQUEUE = 3,    /* bytes queued to a unix stream socket (id = file) */
	CK_D_SKDGRAM = 4,    /* one datagram queued to a unix dgram socket */
	CK_D_SHM = 5,	     /* shared anonymous memory object */
	CK_D_TCP_SEND = 6,   /* fd-level: a TCP socket's send queue (sent + unsent) */
	CK_D_TCP_RECV = 7,   /* fd-level: a TCP socket's receive queue */
	CK_D_SYSV_SHM = 8,   /* SysV shared memory content (id = ipc id) */
	CK_D_SYSV_MSG = 9,   /* one SysV message: u64 mtype + text (id = ipc id, off = index) */
	CK_D_SYSV_SEM = 10,  /* SysV semaphore values, u16 each (id = ipc id) */
	CK_D_UDP_DGRAM = 11, /* one datagram queued to a UDP socket: ck_udp_dgram + payload
				(id = file, off = index) */
};

/* Where a datagram queued to a UDP socket came from and went to (the
 * restore sends it again from there, through a raw socket). */
struct ck_udp_dgram {
	uint16_t family;	  /* AF_INET or AF_INET6: the addresses below */
	uint16_t sport;		  /* network order */
	uint8_t src[16], dst[16]; /* IPv4: the first 4 bytes */
};

struct ck_data {
	uint32_t kind, pad;
	uint64_t id; /* file id / shm id */
	uint64_t off;
	uint64_t len; /* len bytes follow */
};

struct ck_epoll {
	uint32_t file_id;
	int32_t tfd;
	uint32_t events;
	uint32_t target_id; /* fd-level: the target's file id, 0 = unknown */
	uint64_t data;
};

/* --- fd-level additions (files.c), additive to version 1 ---------------
 * Fields of struct ck_file that a kind did not use before now carry:
 *   CK_F_REG ghost (unlinked): u[0] uid, u[1] gid (the slice's user ns),
 *     u[2] st_dev at dump (ghosts with equal (u[2], ino) are one inode),
 *     u[3] CK_FILE_F_* flags; tv[] atime sec,nsec, mtime sec,nsec.
 *   CK_F_UNIX: u[0] CK_UX_F_* flags; with CK_UX_F_OWNER, u[1] uid, u[2] gid
 *     (the slice's user ns), u[3] mode of the bound socket file.
 *   CK_F_MEMFD: path = the memfd's name, u[0] uid, u[1] gid, u[2] seals
 *     (F_GET_SEALS), u[3] id of its DATA(shm) object (= ck_vma.shm_id of
 *     a shared mapping of it).
 * struct ck_epoll: target_id = the target's file id (0: unknown, re-added by the
 * owner through the fd number, as version 1 writers did).
 * Records in a CK_SEC_LOCK section: one held lock each; in a
 * CK_SEC_INOTIFY section: one watch of an inotify file each; in a
 * CK_SEC_INET section: a TCP socket (listener, bound, connection inside
 * the tree) or a UDP socket; in a CK_SEC_SYSV section: one SysV IPC object
 * of the tree's ipc namespace. */
#define CK_FILE_F_OWNER	  1u /* ghost: u[0], u[1], tv[] are valid */
#define CK_UX_F_NAME_GONE 1u /* bound path no longer names this socket */
#define CK_UX_F_OWNER	  2u /* u[1..3]: owner and mode of the socket file */
#define CK_SEC_LOCK	  32
#define CK_SEC_INOTIFY	  33
#define CK_SEC_INET	  34
#define CK_SEC_SYSV	  35
#define CK_INET_OPTS	  24

enum ck_lock_kind {
	CK_LOCK_POSIX = 1, /* fcntl F_SETLK: owned by the process pid */
	CK_LOCK_OFD = 2,   /* F_OFD_SETLK: owned by the open file */
	CK_LOCK_FLOCK = 3, /* flock(2): owned by the open file */
};

struct ck_lock {
	int32_t pid;	  /* POSIX: the owner; taken through its fd */
	int32_t fd;	  /* POSIX: fd number in pid; else -1 */
	uint32_t file_id; /* the open file it was taken through */
	uint32_t kind;	  /* enum ck_lock_kind */
	uint32_t type;	  /* F_RDLCK or F_WRLCK */
	uint32_t pad;
	int64_t start, len; /* len 0: to end of file */
};

struct ck_inotify {
	uint32_t file_id; /* the CK_F_INOTIFY file */
	int32_t wd;	  /* watch descriptor, recreated with this number */
	uint32_t mask;	  /* as inotify_add_watch got it (incl. IN_ONESHOT...) */
	uint32_t pad;
	char path[CK_PATH]; /* the watched inode, in the slice's root */
};

struct ck_inet {
	uint32_t file_id; /* the CK_F_INET file */
	int32_t family, type, protocol;
	uint32_t state;	  /* TCP_LISTEN or TCP_CLOSE (TCP); 7 for UDP */
	uint32_t backlog; /* listeners */
	uint32_t local_len, peer_len;
	uint8_t local[28]; /* getsockname (sockaddr_in/in6); len 0: unbound */
	uint8_t peer[28];  /* UDP getpeername; len 0: not connected */
	uint32_t nopts, pad;
	struct ck_sockopt {
		int32_t level, name, value, pad;
	} opt[CK_INET_OPTS]; /* int options that differ from a new socket's */
	/* established TCP inside the tree (TCP_REPAIR); queues in DATA */
	uint32_t snd_seq, rcv_seq; /* TCP_QUEUE_SEQ: after the send / receive queue */
	uint32_t outq_len, unsent_len, inq_len;
	uint32_t mss, snd_wscale, rcv_wscale;
	uint32_t tcpi_options; /* TCPI_OPT_TIMESTAMPS, _SACK, _WSCALE */
	uint32_t timestamp;
	uint32_t window[5]; /* struct tcp_repair_window */
	uint32_t pad2;
};

enum ck_sysv_kind { CK_SYSV_SHM = 1, CK_SYSV_MSG = 2, CK_SYSV_SEM = 3 };

struct ck_sysv {
	uint32_t kind; /* enum ck_sysv_kind */
	int32_t id;    /* recreated with this id (kernel.*_next_id) */
	int32_t key;
	uint32_t mode;	      /* permission bits */
	uint32_t uid, gid;    /* owner, in the slice's user ns */
	uint64_t size;	      /* shm: bytes; sem: semaphores; msg: max queue bytes */
	uint32_t nitems, pad; /* msg: messages */
};

struct ck_siginfo {
	int32_t pid, tid;
	uint32_t shared, pad;
	uint8_t info[128];
};

struct ck_timer {
	int32_t pid, id, clockid, notify, signo, tid;
	uint64_t sigval;
	int64_t val_sec, val_nsec, int_sec, int_nsec;
};

struct ck_seccomp {
	int32_t pid;
	uint32_t index;		/* 0 = first installed */
	uint32_t nr_insns, pad; /* nr_insns * 8 bytes follow */
};

/* One entry of the slice's overlay upper dir, parents before children.
 * Tail: path (relative, no "..", NUL), symlink target (NUL), then xattrs
 * as repeated { name NUL, u32 len, value }. */
struct ck_fsentry {
	uint32_t mode, uid, gid;		/* uid/gid: host ids, shifted on restore */
	uint32_t path_len, link_len, xattr_len; /* incl. NULs */
	uint64_t rdev, size;
	int64_t mtime_sec, mtime_nsec;
};

struct ck_fsdata {
	uint64_t entry; /* index of its FSENTRY */
	uint64_t off;
};

struct ck_end {
	uint32_t nr_sections;
	uint32_t chain_crc; /* crc32c over every section's crc, in order */
	uint64_t total_len; /* bytes before the END section */
};

/* --- image (parsed) -------------------------------------------------- */

struct ck_blob {
	const uint8_t *p;
	uint64_t len;
};

struct ck_thread_r {
	struct ck_thread t;
	const uint8_t *xstate;
};
struct ck_pages_r {
	struct ck_pages h;
	const uint8_t *data;
};
struct ck_data_r {
	struct ck_data h;
	const uint8_t *data;
};
struct ck_seccomp_r {
	struct ck_seccomp h;
	const uint8_t *insns;
};

#define CK_VEC(T)                                                                                  \
	struct {                                                                                   \
		T *v;                                                                              \
		size_t n, cap;                                                                     \
	}

/* Where the sections come from: a buffer (ckpt_image_parse: everything is
 * parsed at once, page runs point into it) or an fd read as it arrives
 * (ckpt_image_read_fd: sections up to the first page round; the page
 * rounds and the END record are consumed by the restore, memory.c). */
struct ck_reader {
	int fd;		    /* -1: buffer */
	const uint8_t *buf; /* buffer mode */
	size_t buf_len;
	uint64_t off;		  /* bytes consumed */
	uint32_t chain;		  /* crc32c over every finished section's crc */
	uint32_t nsec;		  /* sections finished */
	uint32_t crc;		  /* running crc of the section being read */
	uint32_t type;		  /* section being read (have_head) */
	uint64_t left;		  /* its payload bytes not read yet */
	bool have_head;		  /* a section head was read, its trailer not yet */
	bool in_rounds;		  /* the first ROUND was seen */
	bool done;		  /* END read and verified */
	int64_t round;		  /* current round, -1 before the first */
	uint32_t flags;		  /* stream flags (CK_FLAG_*) */
	uint64_t read_ns, crc_ns; /* time in read(2) and in checksums */
};

struct ckpt_image {
	CK_VEC(void *) chunks; /* payloads read from an fd (ours to free) */
	struct ck_reader rd;
	struct ck_header hdr;
	CK_VEC(struct ck_proc) procs;
	CK_VEC(struct ck_thread_r) threads;
	CK_VEC(struct ck_vma) vmas;
	CK_VEC(struct ck_pages_r) pages;
	CK_VEC(struct ck_file) files;
	CK_VEC(struct ck_fd) fds;
	CK_VEC(struct ck_data_r) data;
	CK_VEC(struct ck_epoll) epolls;
	CK_VEC(struct ck_siginfo) siginfos;
	CK_VEC(struct ck_timer) timers;
	CK_VEC(struct ck_seccomp_r) seccomps;
	struct ck_blob extra;
	struct ck_fsentry_r {
		struct ck_fsentry h;
		const char *path, *link;
		const uint8_t *xattrs;
	} * fs;
	size_t fs_n, fs_cap;
	struct ck_fsdata_r {
		struct ck_fsdata h;
		const uint8_t *data;
		uint64_t len;
	} * fsd;
	size_t fsd_n, fsd_cap;
	uint32_t fs_id_base;
	uint32_t nr_sections;
	/* MAP_SHARED page inherited by every restore stub (forked, never
	 * exec'd): the first stub that fails leaves its error here, so the
	 * host reports the cause rather than "stub died". */
	struct ck_errbox {
		int claimed;
		char msg[VS_ERROR_MAX + 64];
	} * errbox;
	CK_VEC(struct ck_lock) locks;	   /* fd-level: CK_SEC_LOCK */
	CK_VEC(struct ck_inotify) inotify; /* fd-level: CK_SEC_INOTIFY */
	CK_VEC(struct ck_inet) inets;	   /* fd-level: CK_SEC_INET */
	CK_VEC(struct ck_sysv) sysv;	   /* fd-level: CK_SEC_SYSV */
	struct ck_spool *spool;		   /* pre-copy rounds (spool.c), or NULL */
	bool spool_discard;		   /* verify only: pre-copy pages checked, not kept */
};

#define ck_vec_push(vec, val)                                                                      \
	do {                                                                                       \
		if ((vec)->n == (vec)->cap) {                                                      \
			(vec)->cap = (vec)->cap ? (vec)->cap * 2 : 16;                             \
			(vec)->v = ck_xrealloc((vec)->v, (vec)->cap * sizeof(*(vec)->v));          \
		}                                                                                  \
		(vec)->v[(vec)->n++] = (val);                                                      \
	} while (0)

void *ck_xrealloc(void *p, size_t n);

/* --- writer ------------------------------------------------------------ */

struct ck_writer {
	int fd;
	uint8_t *buf;
	size_t used, cap;
	uint64_t total;
	uint32_t nr_sections;
	uint32_t chain;
};

uint32_t ck_crc32c(uint32_t crc, const void *p, size_t len);
/* The same CRC by the byte table, never the instruction (tests). */
uint32_t ck_crc32c_sw(uint32_t crc, const void *p, size_t len);
int ck_writer_open(struct ck_writer *w, int fd, struct vs_error *err);
/* One section = rec (fixed part) + data (tail). */
int ck_write_section(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
		     const void *data, size_t dlen, struct vs_error *err);
/* A section's CRC (over its head, rec and data). */
uint32_t ck_section_crc(uint32_t type, const void *rec, size_t rlen, const void *data, size_t dlen);
/* As ck_write_section with the CRC computed already (ck_section_crc),
 * written with one writev straight from data (no copy into the buffer)
 * when nothing is buffered. The page rounds' writer thread uses it: it
 * must be the only user of w meanwhile. */
int ck_write_section_direct(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
			    const void *data, size_t dlen, uint32_t crc, struct vs_error *err);
/* As ck_write_section_direct, the data vmspliced into the pipe w writes
 * to with SPLICE_F_GIFT (ck_writer_is_pipe): the pipe holds references
 * to data's pages, not a copy, so the caller gives them away - it must
 * never write them again (drop them: MADV_DONTNEED) - and data must be
 * whole pages of an anonymous mapping. Head, record and CRC are copied. */
int ck_write_section_gift(struct ck_writer *w, uint32_t type, const void *rec, size_t rlen,
			  void *data, size_t dlen, uint32_t crc, struct vs_error *err);
/* w writes into a pipe (ck_write_section_gift applies). */
bool ck_writer_is_pipe(const struct ck_writer *w);
/* Write out what is buffered: the fd has every byte written so far (no
 * END record). */
int ck_writer_sync(struct ck_writer *w, struct vs_error *err);
/* If fd is a pipe, make its buffer big (best effort): see image.c. */
void ck_pipe_grow(int fd);
int ck_writer_close(struct ck_writer *w, struct vs_error *err);
/* ck_writer_open with stream flags (CK_FLAG_*) in the stream head. */
int ck_writer_open_flags(struct ck_writer *w, int fd, uint32_t flags, struct vs_error *err);
/* A writer that continues a stream another writer began and synced
 * (the pre-copy's rounds): no stream head; counters carried on so the
 * END record covers the whole stream. */
int ck_writer_continue(struct ck_writer *w, int fd, uint64_t total, uint32_t nr_sections,
		       uint32_t chain, struct vs_error *err);
void ck_writer_free(struct ck_writer *w);

const struct ck_proc *ck_image_proc(const struct ckpt_image *img, pid_t pid);

/* --- streamed page rounds (image.c) ---------------------------------------
 * After ckpt_image_read_fd the reader stands before the first page round.
 * ck_stream_next_pages reads the next PAGES record (through ROUND markers,
 * checked in order) and checks it against the vmas: 1 = *pg filled, its
 * pg->len payload bytes to be read with ck_stream_payload (all of them) and
 * the section closed with ck_stream_section_end (its CRC); 0 = the END
 * record was read and matches everything before it. Until 0 nothing read
 * is verified: the caller must be able to throw it away. */
int ck_stream_next_pages(struct ckpt_image *img, struct ck_pages *pg, uint32_t *round,
			 struct vs_error *err);
int ck_stream_payload(struct ckpt_image *img, void *buf, size_t n, struct vs_error *err);
int ck_stream_section_end(struct ckpt_image *img, struct vs_error *err);
/* Does a page run lie in a vma of its process that takes pages? */
bool ck_pages_inside(const struct ckpt_image *img, const struct ck_pages *pg);

/* --- memory (memory.c) ----------------------------------------------------
 * Dump: the vma pass records every range whose pages may go in the stream
 * (ck_memset_add); a page round then writes the pages a predicate picks,
 * as CK_SEC_ROUND + CK_SEC_PAGES runs. A single dump is one round of the
 * present pages; a pre-copy writes round 0 of everything present while the
 * tree runs and later rounds of what was written since (the tracking that
 * feeds such a predicate is not here). Restore: rounds are applied in
 * order into the stopped, re-mapped processes, later rounds overriding. */
struct ck_memrange {
	pid_t hpid;
	int32_t vpid;
	uint64_t start, end;
	uint32_t kind;	/* CK_VMA_ANON or CK_VMA_FILE */
	bool all_pages; /* a private mapping of a deleted file: every page */
	bool readable;	/* process_vm_readv works; else /proc/pid/mem */
};

struct ck_memset {
	CK_VEC(struct ck_memrange) r;
};

/* Which pages of a range go into a round. pm = the page's /proc/pid/pagemap
 * entry. */
typedef bool (*ck_page_pred)(void *arg, const struct ck_memrange *r, uint64_t addr, uint64_t pm);
/* Present or swapped pages the process owns (for a private file mapping:
 * only its copied-on-write ones). */
bool ck_pred_present(void *arg, const struct ck_memrange *r, uint64_t addr, uint64_t pm);

void ck_memset_add(struct ck_memset *ms, const struct ck_memrange *r);
void ck_memset_free(struct ck_memset *ms);
int ck_mem_write_round(struct ck_writer *w, const struct ck_memset *ms, uint32_t round,
		       ck_page_pred pred, void *arg, struct ckpt_stats *st, struct vs_error *err);

/* Host pid of the process with image pid vpid, 0 if none (restore.c);
 * *uffd = a userfaultfd registered over its anonymous vmas (missing
 * pages: filled with UFFDIO_COPY), or -1. */
typedef pid_t (*ck_hpid_of)(void *arg, int32_t vpid, int *uffd);
/* Apply every page round of img (the parsed vector, or the rest of the
 * stream up to its verified END) into the processes hpid_of names. */
int ck_mem_restore(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err);
/* Write len bytes at addr of a stopped restored process (hpid, image pid
 * vpid): UFFDIO_COPY through uffd (from hpid_of) where pages are missing,
 * process_vm_writev where they are there or uffd < 0. Any writer into a
 * restored process must come through here while its uffd is registered:
 * process_vm_writev cannot fault a page in under it. */
int ck_mem_fill(int uffd, pid_t hpid, int32_t vpid, uint64_t addr, const void *data, size_t len,
		struct vs_error *err);

/* --- ptrace / injection ------------------------------------------------ */

struct ck_task {
	pid_t hpid; /* host tid */
	bool seized;
};

struct ck_inject {
	pid_t tid;	 /* host tid of the stopped thread that executes */
	uint64_t gadget; /* address of "syscall; int3" */
	uint64_t saved[27];
	bool have_saved;
	uint64_t *counter;
};

int ck_seize(pid_t tid, bool exitkill, struct vs_error *err);
/* Wait for the seized thread to report its PTRACE_INTERRUPT stop. */
int ck_wait_stop(pid_t tid, struct vs_error *err);
/* Returns the syscall's raw result (-4095..-1 = -errno), or CK_EINJECT
 * when the injection itself failed (err filled). */
#define CK_EINJECT (-(1L << 40))
long ck_syscall(struct ck_inject *in, long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
		uint64_t a5, uint64_t a6, struct vs_error *err);
int ck_getregs(pid_t tid, uint64_t regs[27], struct vs_error *err);
int ck_setregs(pid_t tid, const uint64_t regs[27], struct vs_error *err);

/* user_regs_struct indices */
enum {
	R_R15,
	R_R14,
	R_R13,
	R_R12,
	R_RBP,
	R_RBX,
	R_R11,
	R_R10,
	R_R9,
	R_R8,
	R_RAX,
	R_RCX,
	R_RDX,
	R_RSI,
	R_RDI,
	R_ORIG_RAX,
	R_RIP,
	R_CS,
	R_EFLAGS,
	R_RSP,
	R_SS,
	R_FS_BASE,
	R_GS_BASE,
	R_DS,
	R_ES,
	R_FS,
	R_GS,
};

/* Bounded copy; false if src did not fit (dst is then truncated). */
static inline bool ck_copy(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	while (src[n] && n + 1 < size) {
		dst[n] = src[n];
		n++;
	}
	dst[n] = 0;
	return src[n] == 0;
}

/* Write the tree under root (an overlay upper dir) as FSENTRY/FSDATA. */
int ck_fs_dump(struct ck_writer *w, const char *root, struct vs_error *err);

/* --- sessions and process groups (pstree.c) ------------------------------ */

struct ck_pnode {
	int32_t pid, ppid, sid, pgid; /* ppid 0: a child of PID 1 */
	bool zombie;
};

enum ck_paction {
	CK_PA_NONE = 0,	 /* keep what was inherited */
	CK_PA_SETSID,	 /* setsid() */
	CK_PA_PGID_SELF, /* setpgid(0, 0) */
	CK_PA_PGID_JOIN, /* setpgid(0, pgid) */
};

/* One fork (or the root's own action when pid == creator), in order. */
struct ck_pstep {
	int32_t creator;   /* the process that forks it */
	int32_t pid;	   /* set_tid */
	int32_t parent;	   /* its parent afterwards (0: PID 1): who reaps a helper */
	bool clone_parent; /* CLONE_PARENT: a sibling of its creator */
	bool helper;	   /* placeholder for a gone leader: exits once its members exist */
	int action;	   /* enum ck_paction, done by the new process first */
	int32_t pgid;	   /* CK_PA_PGID_JOIN */
	int32_t node;	   /* index into the table, -1 for helpers */
};

/* Plan how to recreate sessions/groups of the table (root first among the
 * children of PID 1, which start in top_sid/top_pgid). *out: malloc'ed
 * steps. -ENOTSUP ("pid N: reason", N in *bad_pid if not NULL) when the
 * tree cannot be rebuilt. */
int ck_pstree_plan(const struct ck_pnode *n, size_t nn, int32_t root, int32_t top_sid,
		   int32_t top_pgid, struct ck_pstep **out, size_t *nout, int32_t *bad_pid,
		   struct vs_error *err);

/* --- pre-copy (dirty.c, spool.c) -------------------------------------------
 * Dump side: ckpt_dump with o->precopy continues the stream the pre-copy
 * began (ck_precopy_writer) and ends with its frozen round, which writes
 * what changed since the last running round, what was never sent, and
 * what was sent but is gone now (ck_precopy_final_round).
 * Restore side: the pre-copy rounds of a stream are held in a spool
 * (anonymous memory of the restorer in 2 MiB chunks per process and
 * address, with a bitmap of the pages written) until the records are
 * known; ck_spool_apply writes what lies inside each process's final
 * private vmas, before the rounds that follow the records. */
struct ckpt_precopy;
int ck_precopy_writer(struct ckpt_precopy *pc, struct ck_writer *w, struct vs_error *err);
int ck_precopy_final_round(struct ckpt_precopy *pc, struct ck_writer *w, const struct ck_memset *ms,
			   struct ckpt_stats *st, struct vs_error *err);

/* uffd.c: the kernel half of the tracking. ck_uffd_make: a userfaultfd
 * (WP_ASYNC set up) in hpid's mm, made by a step of one of its threads and
 * taken into *out. ck_uffd_arm: register [s, e) in write-protect mode and
 * protect it (-errno). ck_uffd_scan: PAGEMAP_SCAN of [s, e) on
 * pagemap_fd - the pages written since, into bits (one per page from s),
 * protected again; -EPERM if part of it is not registered. */
int ck_uffd_probe(struct vs_error *err);
int ck_uffd_make(pid_t hpid, int32_t vpid, int *out, struct vs_error *err);
int ck_uffd_arm(int uffd, uint64_t s, uint64_t e);
int ck_uffd_scan(int pagemap_fd, uint64_t s, uint64_t e, uint8_t *bits, uint64_t *count);
/* A pagemap entry that is a uffd-wp pte marker, not a page. */
bool ck_pm_uffd_marker(uint64_t pm);
/* A zombie (or gone) task. */
bool ck_task_zombie(pid_t hpid);

#define CK_SPOOL_ADDR_MAX (1ull << 47)
#define CK_SPOOL_PIECE	  (4u << 20)
struct ck_spool;
int ck_spool_new(struct ck_spool **out, struct vs_error *err);
int ck_spool_put(struct ck_spool *sp, int32_t pid, uint64_t addr, const void *buf, size_t len,
		 struct vs_error *err);
/* Where up to want bytes of pid's pages at addr go (the pages count as
 * written from now): *dst, *n <= want (the rest of its 2 MiB chunk). addr
 * and want: whole pages below CK_SPOOL_ADDR_MAX, else EBADMSG. */
int ck_spool_at(struct ck_spool *sp, int32_t pid, uint64_t addr, size_t want, uint8_t **dst,
		size_t *n, struct vs_error *err);
/* A spool of 64 MiB and more is unmapped by a detached thread (the caller
 * does not wait for it); a smaller one at once. */
void ck_spool_free(struct ck_spool *sp);
int ck_spool_apply(struct ckpt_image *img, ck_hpid_of hpid_of, void *arg, struct ckpt_stats *st,
		   struct vs_error *err);

/* small /proc helpers */
int ck_read_small(const char *path, char *buf, size_t len);
int ck_nspid(pid_t hpid, pid_t *nspid);

#endif
