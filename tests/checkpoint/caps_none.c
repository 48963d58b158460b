/* caps_none: a process that dropped every capability comes back without
 * any (the restorer itself runs with them). */
#include <linux/capability.h>
#include <sys/syscall.h>
#include "zdtm.h"

static void caps(unsigned long long out[3])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	syscall(SYS_capget, &h, d);
	out[0] = d[0].effective | ((unsigned long long)d[1].effective << 32);
	out[1] = d[0].permitted | ((unsigned long long)d[1].permitted << 32);
	out[2] = d[0].inheritable | ((unsigned long long)d[1].inheritable << 32);
}

int main(void)
{
	test_init();
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
	unsigned long long before[3];
	caps(before);
	CHECK(before[0] == 0 && before[1] == 0, "caps not dropped");
	test_daemon();
	test_waitsig();
	unsigned long long after[3];
	caps(after);
	CHECK(after[0] == 0 && after[1] == 0 && after[2] == 0, "caps after restore: eff %llx prm %llx inh %llx",
	      after[0], after[1], after[2]);
	pass();
}
