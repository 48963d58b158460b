/*
 * units.c - strict parsers for what users type: sizes ("256M"), durations
 * ("14d"), cpus ("0.5") and names. The whole string must parse; overflow,
 * signs, blanks and empty strings are errors that say what was expected.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vslice/units.h"

/* Leading decimal digits of s into *v; returns chars consumed, 0 on none, -1 on overflow. */
static int parse_digits(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	int n = 0;
	while (isdigit((unsigned char)s[n])) {
		uint64_t d = (uint64_t)(s[n] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
		n++;
	}
	*v = x;
	return n;
}

int vs_parse_size(const char *s, uint64_t *out, struct vs_error *err)
{
	uint64_t v;
	if (!s || !*s)
		return vs_error_set(err, EINVAL, "empty size (use e.g. 256M)");
	int n = parse_digits(s, &v);
	if (n < 0)
		return vs_error_set(err, ERANGE, "size \"%s\" is too large", s);
	if (n == 0)
		return vs_error_set(err, EINVAL, "invalid size \"%s\" (use e.g. 256M)", s);
	const char *u = s + n;
	unsigned shift;
	switch (toupper((unsigned char)*u)) {
	case '\0':
		shift = 0;
		break;
	case 'B':
		shift = 0;
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return vs_error_set(err, EINVAL, "invalid size \"%s\" (use e.g. 256M)", s);
	}
	if (*u && toupper((unsigned char)*u) != 'B') {
		u++;
		/* Accept K, KB, KiB (all binary). */
		if (!strcasecmp(u, "ib") || !strcasecmp(u, "b"))
			u += strlen(u);
	} else if (*u) {
		u++;
	}
	if (*u)
		return vs_error_set(err, EINVAL, "invalid size \"%s\" (use e.g. 256M)", s);
	if (shift && v > (UINT64_MAX >> shift))
		return vs_error_set(err, ERANGE, "size \"%s\" is too large", s);
	*out = v << shift;
	return 0;
}

int vs_parse_duration(const char *s, uint64_t *out_secs, struct vs_error *err)
{
	uint64_t v;
	if (!s || !*s)
		return vs_error_set(err, EINVAL, "empty duration (use e.g. 30s, 10m, 2h, 14d)");
	int n = parse_digits(s, &v);
	if (n < 0)
		return vs_error_set(err, ERANGE, "duration \"%s\" is too large", s);
	if (n == 0)
		return vs_error_set(err, EINVAL,
				    "invalid duration \"%s\" (use e.g. 30s, 10m, 2h, 14d)", s);
	uint64_t mul;
	const char *u = s + n;
	if (!*u || !strcmp(u, "s"))
		mul = 1;
	else if (!strcmp(u, "m"))
		mul = 60;
	else if (!strcmp(u, "h"))
		mul = 3600;
	else if (!strcmp(u, "d"))
		mul = 86400;
	else if (!strcmp(u, "w"))
		mul = 7 * 86400;
	else
		return vs_error_set(err, EINVAL,
				    "invalid duration \"%s\" (use e.g. 30s, 10m, 2h, 14d)", s);
	if (v > UINT64_MAX / mul || v * mul > (uint64_t)INT32_MAX * 16)
		return vs_error_set(err, ERANGE, "duration \"%s\" is too large", s);
	*out_secs = v * mul;
	return 0;
}

int vs_parse_cpus(const char *s, uint64_t *out_millis, struct vs_error *err)
{
	uint64_t whole = 0, frac = 0;
	if (!s || !*s)
		return vs_error_set(err, EINVAL, "empty cpu count (use e.g. 0.5 or 2)");
	int n = parse_digits(s, &whole);
	if (n < 0 || whole > 4096)
		return vs_error_set(err, ERANGE, "cpus \"%s\" is too large (at most 4096)", s);
	const char *p = s + n;
	int nfrac = 0;
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p) && nfrac < 3; p++, nfrac++)
			frac = frac * 10 + (uint64_t)(*p - '0');
		if (nfrac == 0)
			p = s; /* "2." is not a number: force the error below */
		for (int i = nfrac; i < 3; i++)
			frac *= 10;
	}
	if ((n == 0 && nfrac == 0) || *p)
		return vs_error_set(
		    err, EINVAL, "invalid cpus \"%s\" (use e.g. 0.5 or 2, at most 3 decimals)", s);
	uint64_t m = whole * 1000 + frac;
	if (m == 0)
		return vs_error_set(err, EINVAL, "cpus \"%s\" must be more than 0", s);
	*out_millis = m;
	return 0;
}

bool vs_name_valid(const char *s)
{
	if (!s || !(*s >= 'a' && *s <= 'z'))
		return false;
	size_t i = 1;
	for (; s[i]; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
		if (i > 62)
			return false;
	}
	return true;
}

bool vs_node_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

int vs_check_name(const char *what, const char *s, struct vs_error *err)
{
	if (vs_name_valid(s))
		return 0;
	char shown[81];
	vs_printable(s ? s : "", shown, sizeof(shown));
	return vs_error_set(err, EINVAL,
			    "invalid %s name \"%s\" (use [a-z][a-z0-9_-]{0,62}, e.g. site_exp1)",
			    what, shown);
}

const char *vs_printable(const char *s, char *buf, size_t len)
{
	size_t n = 0;
	for (; *s && n + 1 < len; s++)
		buf[n++] = ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f) ? '?' : *s;
	buf[n] = '\0';
	return buf;
}

const char *vs_format_size(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (u < 3 && b >= 1024 && b % 1024 == 0) {
		b /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)b);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)b, units[u]);
	return buf;
}

const char *vs_format_duration(uint64_t s, char *buf, size_t len)
{
	if (s >= 86400 && s % 86400 == 0)
		snprintf(buf, len, "%llud", (unsigned long long)(s / 86400));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
	return buf;
}
