/* seccomp_caps: a seccomp filter, no_new_privs and a reduced capability set
 * are the same after restore (and the filter still acts). */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include "zdtm.h"

static int status_val(const char *key, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			snprintf(out, n, "%s", line + strlen(key));
			fclose(f);
			return 0;
		}
	if (f)
		fclose(f);
	return -1;
}

int main(void)
{
	test_init();
	CHECK(prctl(PR_CAPBSET_DROP, 21 /* CAP_SYS_ADMIN */) == 0 || errno == EPERM, "capbset drop");
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "nnp");
	/* getppid -> EPERM (errno 1), everything else allowed */
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { 4, f };
	CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp");
	CHECK(syscall(SYS_getppid) == -1 && errno == EPERM, "filter not active");
	char bnd[64], eff[64], nnp[64], sc[64];
	status_val("CapBnd:", bnd, sizeof(bnd));
	status_val("CapEff:", eff, sizeof(eff));
	test_daemon();
	test_waitsig();
	char b2[64], e2[64];
	status_val("CapBnd:", b2, sizeof(b2));
	status_val("CapEff:", e2, sizeof(e2));
	status_val("NoNewPrivs:", nnp, sizeof(nnp));
	status_val("Seccomp:", sc, sizeof(sc));
	CHECK(!strcmp(bnd, b2), "CapBnd %s -> %s", bnd, b2);
	CHECK(!strcmp(eff, e2), "CapEff %s -> %s", eff, e2);
	CHECK(atoi(nnp) == 1, "no_new_privs lost");
	CHECK(atoi(sc) == 2, "seccomp mode %s", sc);
	errno = 0;
	CHECK(syscall(SYS_getppid) == -1 && errno == EPERM, "filter lost after restore");
	pass();
}
