/*
 * stats.c - a slice's usage and its thread-level parallelism.
 *
 * TLP (Flautner et al.): sample how many of the slice's threads are running
 * (state R in /proc/<pid>/task/<tid>/stat) every 10 ms; with c[i] the
 * fraction of samples with exactly i running, TLP = sum(i c[i]) / (1 - c[0]):
 * the average parallelism while the slice is doing anything at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vslice/cgroup.h"
#include "vslice/netcfg.h"
#include "vslice/slice.h"
#include "vslice/util.h"

/* Threads of pid in state R. */
static unsigned running_threads(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	cleanup_closedir DIR *d = opendir(path);
	if (!d)
		return 0;
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char sp[300], buf[512];
		snprintf(sp, sizeof(sp), "%s/stat", de->d_name);
		cleanup_close int fd = openat(dirfd(d), sp, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		char *p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'R')
			n++;
	}
	return n;
}

int slice_stats(const char *root, const char *name, unsigned window_ms, struct slice_stats *st,
		struct vs_error *err)
{
	struct slice_state state;
	memset(st, 0, sizeof(*st));
	int r = slice_load(root, name, NULL, &state, err);
	if (r < 0)
		return r;
	struct cgroup *cg = NULL;
	if ((r = cgroup_open(NULL, NULL, name, &cg, err)) < 0)
		return r;
	struct cgroup_stats a, b;
	if ((r = cgroup_stats(cg, &a, err)) < 0)
		goto out;
	uint64_t t0 = vs_now_ns();
	uint64_t hist[VS_ARRAY_SIZE(st->c)] = {0};
	unsigned samples = window_ms / 10;
	bool running = state.status == SLICE_RUNNING;
	for (unsigned s = 0; running && s < samples; s++) {
		pid_t *pids = NULL;
		size_t n = 0;
		unsigned run = 0;
		struct vs_error ignore;
		if (cgroup_pids(cg, &pids, &n, &ignore) == 0) {
			for (size_t i = 0; i < n; i++)
				run += running_threads(pids[i]);
			free(pids);
		}
		/* The sampler itself never counts: it is not in the slice's cgroup. */
		if (run >= VS_ARRAY_SIZE(hist))
			run = VS_ARRAY_SIZE(hist) - 1;
		hist[run]++;
		if (run > st->max_running)
			st->max_running = run;
		st->samples++;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	uint64_t t1 = vs_now_ns();
	if ((r = cgroup_stats(cg, &b, err)) < 0)
		goto out;
	st->cpu_usage_ns = b.cpu_usage_ns;
	st->memory_current = b.memory_current;
	st->memory_max = b.memory_max;
	st->pids_current = b.pids_current;
	st->pids_max = b.pids_max;
	st->oom_kills = b.oom_kills;
	st->frozen = b.frozen;
	if (t1 > t0 && running)
		st->cpu_percent =
		    100.0 * (double)(b.cpu_usage_ns - a.cpu_usage_ns) / (double)(t1 - t0);
	double busy = 0, weighted = 0;
	for (size_t i = 0; i < VS_ARRAY_SIZE(hist); i++) {
		st->c[i] = st->samples ? (double)hist[i] / st->samples : 0;
		weighted += (double)i * st->c[i];
		if (i > 0)
			busy += st->c[i];
	}
	st->tlp = busy > 0 ? weighted / busy : 0;
out:
	cgroup_free(cg);
	return r;
}

json_t *slice_stats_json(const char *root, const char *name, unsigned window_ms,
			 const struct slice_stats *st)
{
	json_t *hist = json_array();
	for (unsigned i = 0; i <= st->max_running && i < VS_ARRAY_SIZE(st->c); i++)
		json_array_append_new(hist, json_real(st->c[i]));
	json_t *j =
	    json_pack("{s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:b, s:f, s:o, s:i, s:i}", "name",
		      name, "cpu_usage_ns", (json_int_t)st->cpu_usage_ns, "cpu_percent",
		      st->cpu_percent, "memory_bytes", (json_int_t)st->memory_current, "memory_max",
		      (json_int_t)st->memory_max, "pids", (json_int_t)st->pids_current, "pids_max",
		      (json_int_t)st->pids_max, "oom_kills", (json_int_t)st->oom_kills, "frozen",
		      st->frozen, "tlp", st->tlp, "running_fraction", hist, "samples",
		      (int)st->samples, "window_ms", (int)window_ms);
	/* --net bridge: the host end of the slice's veth counts its traffic. */
	struct netcfg_stats ns;
	struct vs_error err;
	if (j && netcfg_stats(root, name, &ns, &err) == 0)
		json_object_set_new(
		    j, "net",
		    json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "ip", ns.ip, "attached",
			      ns.attached, "rx_bytes", (json_int_t)ns.rx_bytes, "rx_packets",
			      (json_int_t)ns.rx_packets, "tx_bytes", (json_int_t)ns.tx_bytes,
			      "tx_packets", (json_int_t)ns.tx_packets, "rate_bps",
			      (json_int_t)ns.rate_bps));
	return j;
}
