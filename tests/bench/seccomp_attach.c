/*
 * seccomp_attach.c - what one seccomp filter attach costs, for a policy
 * compiled as libseccomp's linear chain against the binary tree vslice
 * installs (issue 15; docs/benchmarks.md 7c), with an allow-all filter as the
 * floor.
 *
 *   build/bench/seccomp_attach [ROUNDS [POLICY]]     (make build/bench/seccomp_attach)
 *
 * POLICY is a builtin name or a JSON file (default "default"), compiled with
 * seccomp_policy_compile_layout() for caps_default_mask(). Each round runs
 * the variants in a new shuffled order; each sample forks a fresh child that
 * sets NO_NEW_PRIVS and times one seccomp_bpf_install() (the call the
 * workload makes before execve) with CLOCK_MONOTONIC. Prints median, p10,
 * p90 and mean in microseconds, the tree/linear ratio of the medians, and
 * the load average (absolute numbers under load mean little; the ratio does).
 * No root needed.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vslice/caps.h"
#include "vslice/seccomp_policy.h"
#include "vslice/util.h"

struct variant {
	const char *name;
	struct seccomp_bpf bpf;
	double *us;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* One attach in a fresh child; the child reports its time through a pipe. */
static int one_attach(const struct variant *v, double *us)
{
	int p[2];
	if (pipe(p) < 0)
		return -errno;
	pid_t c = fork();
	if (c < 0)
		return -errno;
	if (c == 0) {
		close(p[0]);
		volatile unsigned sum = 0;
		for (size_t i = 0; i < v->bpf.len; i++)
			sum += v->bpf.insns[i].k; /* fault the pages in before timing */
		double d = -1;
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
			double t0 = now_us();
			int r = seccomp_bpf_install(&v->bpf);
			double t1 = now_us();
			d = r == 0 ? t1 - t0 : -1;
		}
		_exit(write(p[1], &d, sizeof(d)) == sizeof(d) ? 0 : 1);
	}
	close(p[1]);
	double d = -1;
	ssize_t n = read(p[0], &d, sizeof(d));
	close(p[0]);
	waitpid(c, NULL, 0);
	if (n != sizeof(d) || d < 0)
		return -EIO;
	*us = d;
	return 0;
}

/* The 1/5/15-minute load averages, "?" if unreadable. */
static void loadavg(char *buf, size_t size)
{
	double l[3];
	FILE *f = fopen("/proc/loadavg", "r");
	if (f && fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]) == 3)
		snprintf(buf, size, "%.2f %.2f %.2f", l[0], l[1], l[2]);
	else
		snprintf(buf, size, "?");
	if (f)
		fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
	double k = (n - 1) * p / 100.0;
	int f = (int)k, c = f + 1 < n ? f + 1 : n - 1;
	return v[f] + (v[c] - v[f]) * (k - (double)f);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 500;
	const char *policy = argc > 2 ? argv[2] : "default";
	if (rounds < 1 || argc > 3) {
		fprintf(stderr, "usage: %s [ROUNDS [POLICY]]\n", argv[0]);
		return 2;
	}
	cleanup_free char *owned = NULL;
	const char *text = seccomp_policy_builtin(policy);
	size_t len = text ? strlen(text) : 0;
	struct vs_error err = {0};
	if (!text) {
		if (vs_read_file(policy, 0, &owned, &len, &err) < 0) {
			fprintf(stderr, "seccomp_attach: %s\n", err.msg);
			return 1;
		}
		text = owned;
	}

	static struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct variant v[] = {
	    {.name = "linear (before)"},
	    {.name = "binary tree (vslice)"},
	    {.name = "allow-all (floor)", .bpf = {.insns = &allow, .len = 1}},
	};
	enum seccomp_layout layouts[] = {SECCOMP_LAYOUT_LINEAR, SECCOMP_LAYOUT_AUTO};
	for (int i = 0; i < 2; i++)
		if (seccomp_policy_compile_layout(text, len, caps_default_mask(), layouts[i],
						  &v[i].bpf, &err) < 0 ||
		    v[i].bpf.unconfined) {
			fprintf(stderr, "seccomp_attach: policy %s: %s\n", policy,
				v[i].bpf.unconfined ? "unconfined, nothing to attach" : err.msg);
			return 1;
		}
	int nv = (int)VS_ARRAY_SIZE(v), order[VS_ARRAY_SIZE(v)];
	for (int i = 0; i < nv; i++) {
		v[i].us = vs_xmalloc((size_t)rounds * sizeof(double));
		order[i] = i;
	}

	char load0[32], load1[32];
	loadavg(load0, sizeof(load0));
	srand((unsigned)getpid());
	for (int r = -3; r < rounds; r++) { /* 3 warm-up rounds, not kept */
		for (int i = nv - 1; i > 0; i--) {
			int j = rand() % (i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (int i = 0; i < nv; i++) {
			double us = 0;
			int e = one_attach(&v[order[i]], &us);
			if (e < 0) {
				fprintf(stderr, "seccomp_attach: %s: attach failed (%s)\n",
					v[order[i]].name, strerror(-e));
				return 1;
			}
			if (r >= 0)
				v[order[i]].us[r] = us;
		}
	}
	loadavg(load1, sizeof(load1));

	printf("policy %s, %d rounds interleaved, one attach per sample (us); load %s -> %s\n\n",
	       policy, rounds, load0, load1);
	printf("| filter | insns | median | p10 | p90 | mean |\n|---|---:|---:|---:|---:|---:|\n");
	double med[VS_ARRAY_SIZE(v)];
	for (int i = 0; i < nv; i++) {
		double sum = 0;
		for (int r = 0; r < rounds; r++)
			sum += v[i].us[r];
		qsort(v[i].us, (size_t)rounds, sizeof(double), cmp_double);
		med[i] = pct(v[i].us, rounds, 50);
		printf("| %s | %zu | %.1f | %.1f | %.1f | %.1f |\n", v[i].name, v[i].bpf.len,
		       med[i], pct(v[i].us, rounds, 10), pct(v[i].us, rounds, 90), sum / rounds);
		free(v[i].us);
	}
	printf("\ntree / linear (medians): %.2f\n", med[1] / med[0]);
	seccomp_bpf_free(&v[0].bpf);
	seccomp_bpf_free(&v[1].bpf);
	return 0;
}
