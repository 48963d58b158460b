/*
 * e07_syscalls: kernel attack surface the default policy denies. Each call
 * is made with valid arguments, so outside a slice it succeeds (run it on
 * the host to see); inside, any failure counts as blocked.
 * keyctl/add_key/request_key, bpf, perf_event_open, userfaultfd,
 * io_uring_setup, and (info) what errno seccomp answers.
 */
#include "escape.h"
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void closeret(long fd)
{
	if (fd >= 0)
		close((int)fd);
}

int main(void)
{
	esc_init();
	expect_fail("keyctl(GET_KEYRING_ID, session, create)",
		    syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
	expect_fail("keyctl(JOIN_SESSION_KEYRING)",
		    syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "vslice-escape"));
	expect_fail("add_key(user, process keyring)",
		    syscall(SYS_add_key, "user", "vslice-escape", "x", 1, KEY_SPEC_PROCESS_KEYRING));
	expect_fail("request_key(user)",
		    syscall(SYS_request_key, "user", "vslice-escape", NULL, KEY_SPEC_PROCESS_KEYRING));

	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_ARRAY;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = 1;
	long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a));
	expect_fail("bpf(BPF_MAP_CREATE)", fd);
	closeret(fd);
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	a.insns = (uintptr_t)prog;
	a.insn_cnt = 2;
	a.license = (uintptr_t) "GPL";
	fd = syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	expect_fail("bpf(BPF_PROG_LOAD socket filter)", fd);
	closeret(fd);

	struct perf_event_attr pa;
	memset(&pa, 0, sizeof(pa));
	pa.type = PERF_TYPE_SOFTWARE;
	pa.size = sizeof(pa);
	pa.config = PERF_COUNT_SW_TASK_CLOCK;
	pa.disabled = 1;
	pa.exclude_kernel = 1;
	pa.exclude_hv = 1;
	fd = syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0);
	expect_fail("perf_event_open(self, task clock)", fd);
	closeret(fd);
	pa.type = PERF_TYPE_HARDWARE;
	pa.config = PERF_COUNT_HW_CPU_CYCLES;
	fd = syscall(SYS_perf_event_open, &pa, -1, 0, -1, 0);
	expect_fail("perf_event_open(all processes, cpu 0)", fd);
	closeret(fd);

	fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	expect_fail("userfaultfd(UFFD_USER_MODE_ONLY)", fd);
	closeret(fd);
	fd = syscall(SYS_userfaultfd, O_CLOEXEC);
	expect_fail("userfaultfd()", fd);
	closeret(fd);

	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	fd = syscall(SYS_io_uring_setup, 4, &p);
	expect_fail("io_uring_setup(4)", fd);
	if (fd >= 0) {
		expect_fail("io_uring_enter", syscall(SYS_io_uring_enter, (int)fd, 0, 0, 0, NULL, 0));
		close((int)fd);
	}
	expect_denied("io_uring_register(fd -1): EBADF means it got past the policy",
		      syscall(SYS_io_uring_register, -1, IORING_REGISTER_PROBE, NULL, 0));
	return esc_finish();
}
