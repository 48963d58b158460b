/*
 * caps.c - capability sets as uint64_t masks: the Docker default, parsing
 * and printing lists of names, and applying a set in the workload.
 *
 * The name table is our own (numbers from linux/capability.h) rather than
 * libcap's cap_from_name(), so parsing is case-insensitive and does not
 * depend on which names the installed libcap knows. Applying uses the kernel
 * interfaces crun uses: PR_CAPBSET_DROP for the bounding set (libcap has no
 * "drop all but" call, and the loop must tolerate EINVAL for capabilities a
 * build knows but the running kernel does not), PR_CAP_AMBIENT_CLEAR_ALL, then
 * libcap's cap_set_proc for permitted/effective/inheritable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "vslice/caps.h"
#include "vslice/util.h"

static const char *const cap_names[] = {
    [CAP_CHOWN] = "CHOWN",
    [CAP_DAC_OVERRIDE] = "DAC_OVERRIDE",
    [CAP_DAC_READ_SEARCH] = "DAC_READ_SEARCH",
    [CAP_FOWNER] = "FOWNER",
    [CAP_FSETID] = "FSETID",
    [CAP_KILL] = "KILL",
    [CAP_SETGID] = "SETGID",
    [CAP_SETUID] = "SETUID",
    [CAP_SETPCAP] = "SETPCAP",
    [CAP_LINUX_IMMUTABLE] = "LINUX_IMMUTABLE",
    [CAP_NET_BIND_SERVICE] = "NET_BIND_SERVICE",
    [CAP_NET_BROADCAST] = "NET_BROADCAST",
    [CAP_NET_ADMIN] = "NET_ADMIN",
    [CAP_NET_RAW] = "NET_RAW",
    [CAP_IPC_LOCK] = "IPC_LOCK",
    [CAP_IPC_OWNER] = "IPC_OWNER",
    [CAP_SYS_MODULE] = "SYS_MODULE",
    [CAP_SYS_RAWIO] = "SYS_RAWIO",
    [CAP_SYS_CHROOT] = "SYS_CHROOT",
    [CAP_SYS_PTRACE] = "SYS_PTRACE",
    [CAP_SYS_PACCT] = "SYS_PACCT",
    [CAP_SYS_ADMIN] = "SYS_ADMIN",
    [CAP_SYS_BOOT] = "SYS_BOOT",
    [CAP_SYS_NICE] = "SYS_NICE",
    [CAP_SYS_RESOURCE] = "SYS_RESOURCE",
    [CAP_SYS_TIME] = "SYS_TIME",
    [CAP_SYS_TTY_CONFIG] = "SYS_TTY_CONFIG",
    [CAP_MKNOD] = "MKNOD",
    [CAP_LEASE] = "LEASE",
    [CAP_AUDIT_WRITE] = "AUDIT_WRITE",
    [CAP_AUDIT_CONTROL] = "AUDIT_CONTROL",
    [CAP_SETFCAP] = "SETFCAP",
    [CAP_MAC_OVERRIDE] = "MAC_OVERRIDE",
    [CAP_MAC_ADMIN] = "MAC_ADMIN",
    [CAP_SYSLOG] = "SYSLOG",
    [CAP_WAKE_ALARM] = "WAKE_ALARM",
    [CAP_BLOCK_SUSPEND] = "BLOCK_SUSPEND",
    [CAP_AUDIT_READ] = "AUDIT_READ",
    [CAP_PERFMON] = "PERFMON",
    [CAP_BPF] = "BPF",
    [CAP_CHECKPOINT_RESTORE] = "CHECKPOINT_RESTORE",
};
_Static_assert(VS_ARRAY_SIZE(cap_names) == CAP_LAST_CAP + 1, "cap_names out of date");

#define CAP_BIT(c) (UINT64_C(1) << (c))
#define CAPS_ALL   ((CAP_LAST_CAP >= 63) ? ~UINT64_C(0) : (CAP_BIT(CAP_LAST_CAP + 1) - 1))

uint64_t caps_default_mask(void)
{
	return CAP_BIT(CAP_CHOWN) | CAP_BIT(CAP_DAC_OVERRIDE) | CAP_BIT(CAP_FSETID) |
	       CAP_BIT(CAP_FOWNER) | CAP_BIT(CAP_MKNOD) | CAP_BIT(CAP_NET_RAW) |
	       CAP_BIT(CAP_SETGID) | CAP_BIT(CAP_SETUID) | CAP_BIT(CAP_SETFCAP) |
	       CAP_BIT(CAP_SETPCAP) | CAP_BIT(CAP_NET_BIND_SERVICE) | CAP_BIT(CAP_SYS_CHROOT) |
	       CAP_BIT(CAP_KILL) | CAP_BIT(CAP_AUDIT_WRITE);
}

int caps_from_name(const char *name)
{
	if (!name)
		return -1;
	if (strncasecmp(name, "CAP_", 4) == 0)
		name += 4;
	for (size_t i = 0; i < VS_ARRAY_SIZE(cap_names); i++)
		if (strcasecmp(name, cap_names[i]) == 0)
			return (int)i;
	return -1;
}

/* One trimmed element: a name, a number 0..63, ALL or NONE. */
static int parse_one(const char *s, size_t n, uint64_t *mask, struct vs_error *err)
{
	char name[64];
	if (n == 0)
		return vs_error_set(err, EINVAL, "capability list: empty element");
	if (n >= sizeof(name))
		return vs_error_set(err, EINVAL, "capability \"%.*s...\": name too long", 32, s);
	memcpy(name, s, n);
	name[n] = '\0';
	if (strcasecmp(name, "ALL") == 0) {
		*mask |= CAPS_ALL;
		return 0;
	}
	if (strcasecmp(name, "NONE") == 0)
		return 0;
	int c = caps_from_name(name);
	if (c < 0 && isdigit((unsigned char)name[0])) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(name, &end, 10);
		if (errno == 0 && *end == '\0' && v <= 63)
			c = (int)v;
	}
	if (c < 0)
		return vs_error_set(err, EINVAL, "capability \"%s\": unknown name", name);
	*mask |= CAP_BIT(c);
	return 0;
}

int caps_parse(const char *list, uint64_t *mask, struct vs_error *err)
{
	uint64_t m = 0;
	if (!list)
		return vs_error_set(err, EINVAL, "capability list: missing");
	const char *p = list;
	/* An all-blank list is the empty set. */
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0') {
		*mask = 0;
		return 0;
	}
	for (;;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		while (n > 0 && isspace((unsigned char)*s)) {
			s++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)s[n - 1]))
			n--;
		int r = parse_one(s, n, &m, err);
		if (r < 0)
			return r;
		if (!end)
			break;
		p = end + 1;
	}
	*mask = m;
	return 0;
}

char *caps_format(uint64_t mask)
{
	if (mask == 0)
		return vs_xstrdup("NONE");
	/* 64 caps * (longest name 18 + comma) fits comfortably. */
	char buf[64 * 24];
	size_t len = 0;
	buf[0] = '\0';
	for (unsigned c = 0; c < 64; c++) {
		if (!(mask & CAP_BIT(c)))
			continue;
		int w;
		if (c < VS_ARRAY_SIZE(cap_names))
			w = snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? "," : "",
				     cap_names[c]);
		else
			w = snprintf(buf + len, sizeof(buf) - len, "%s%u", len ? "," : "", c);
		len += (size_t)w;
	}
	return vs_xstrdup(buf);
}

/* The kernel's highest capability; falls back to libcap's idea, then ours. */
static int last_cap(void)
{
	char buf[16];
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r > 0) {
			buf[r] = '\0';
			long v = strtol(buf, NULL, 10);
			if (v > 0 && v < 64)
				return (int)v;
		}
	}
	cap_value_t m = cap_max_bits();
	if (m > 0 && m <= 64)
		return (int)m - 1;
	return CAP_LAST_CAP;
}

static const char *cap_label(int c, char *buf, size_t n)
{
	if (c >= 0 && (size_t)c < VS_ARRAY_SIZE(cap_names))
		snprintf(buf, n, "CAP_%s", cap_names[c]);
	else
		snprintf(buf, n, "capability %d", c);
	return buf;
}

int caps_apply(uint64_t keep, struct vs_error *err)
{
	char label[40];
	int last = last_cap();

	/*
	 * After PR_SET_KEEPCAPS + setresuid(non-zero) the permitted set survives
	 * but the effective set is empty, and PR_CAPBSET_DROP needs CAP_SETPCAP
	 * in effective: raise effective = permitted first (gains nothing new).
	 */
	cap_t raise = cap_get_proc();
	if (!raise)
		return vs_error_sys(err, errno ? errno : ENOMEM, "capabilities: read current set");
	for (int c = 0; c <= last && c < 64; c++) {
		cap_flag_value_t have = CAP_CLEAR;
		cap_value_t v = (cap_value_t)c;
		if (cap_get_flag(raise, v, CAP_PERMITTED, &have) == 0 && have == CAP_SET)
			(void)cap_set_flag(raise, CAP_EFFECTIVE, 1, &v, CAP_SET);
	}
	(void)cap_set_proc(raise); /* best effort: the drops below report what fails */
	cap_free(raise);

	/* Bounding set first: it needs CAP_SETPCAP, which capset below may drop. */
	for (int c = 0; c <= last; c++) {
		if (keep & CAP_BIT(c))
			continue;
		int in = prctl(PR_CAPBSET_READ, (unsigned long)c, 0, 0, 0);
		if (in < 0 && errno == EINVAL)
			continue;
		if (in == 0)
			continue;
		if (prctl(PR_CAPBSET_DROP, (unsigned long)c, 0, 0, 0) < 0 && errno != EINVAL)
			return vs_error_sys(err, errno, "drop %s from bounding set",
					    cap_label(c, label, sizeof(label)));
	}

	/* Ambient caps would survive execve of a non-root program: none. EINVAL = pre-4.3. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return vs_error_sys(err, errno, "clear ambient capabilities");

	cap_t cur = cap_get_proc();
	if (!cur)
		return vs_error_sys(err, errno, "capabilities: read current set");
	cap_t want = cap_init();
	if (!want) {
		int e = errno ? errno : ENOMEM;
		cap_free(cur);
		return vs_error_sys(err, e, "capabilities: allocate");
	}
	for (int c = 0; c <= last && c < 64; c++) {
		if (!(keep & CAP_BIT(c)))
			continue;
		cap_flag_value_t have = CAP_CLEAR;
		if (cap_get_flag(cur, (cap_value_t)c, CAP_PERMITTED, &have) < 0 || have != CAP_SET)
			continue;
		cap_value_t v = (cap_value_t)c;
		if (cap_set_flag(want, CAP_PERMITTED, 1, &v, CAP_SET) < 0 ||
		    cap_set_flag(want, CAP_EFFECTIVE, 1, &v, CAP_SET) < 0) {
			int e = errno;
			cap_free(want);
			cap_free(cur);
			return vs_error_sys(err, e, "capabilities: set %s",
					    cap_label(c, label, sizeof(label)));
		}
	}
	int r = cap_set_proc(want);
	int e = errno;
	cap_free(want);
	cap_free(cur);
	if (r < 0)
		return vs_error_sys(err, e, "capabilities: capset");
	return 0;
}
