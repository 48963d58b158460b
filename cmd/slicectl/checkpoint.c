/*
 * checkpoint.c - slicectl checkpoint / restore (strong mobility, one node).
 *
 *   slicectl checkpoint NAME --output DIR [--leave-running]
 *   slicectl restore NAME --input DIR
 *
 * DIR holds checkpoint.img - one stream (docs/checkpoint.md) with the
 * process tree, the slice spec (extra blob) and the overlay upper dir (the
 * slice's file system delta, read while the tree is stopped) - and
 * stats.json. The slice's PID 1 is not checkpointed: restore starts a fresh
 * one and has it create the workload with its old pid, running the restore
 * stub (slice_start_opts.workload_fn) inside the set-up slice.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/cgroup.h"
#include "vslice/ckpt.h"
#include "vslice/slice.h"
#include "vslice/util.h"

#define CKPT_HELP                                                                                  \
	"usage: slicectl checkpoint NAME --output DIR [--leave-running]\n"                         \
	"Checkpoint a running slice: its processes (memory, registers, files, signals,\n"          \
	"timers...) and its file system delta go to DIR. Without --leave-running the\n"            \
	"slice is gone afterwards (only once the image is on disk and verified); on any\n"         \
	"failure it runs on untouched.\n"                                                          \
	"  -o, --output DIR     where to write the checkpoint (created)\n"                         \
	"  -l, --leave-running  keep the slice running after the checkpoint\n"

#define RESTORE_HELP                                                                               \
	"usage: slicectl restore NAME --input DIR\n"                                               \
	"Restore a slice from a checkpoint under NAME (the same or another name); a\n"             \
	"stopped slice of that name is replaced. Its processes carry on where they were.\n"        \
	"  -i, --input DIR      the checkpoint directory\n"

static void print_stats(struct ctl *ctl, const char *dir, const char *file,
			const struct ckpt_stats *st)
{
	cleanup_free char *p = vs_xasprintf("%s/%s", dir, file);
	struct vs_error e;
	if (ckpt_stats_write_json(p, st, &e) < 0)
		fprintf(stderr, "slicectl: warning: %s\n", e.msg);
	if (ctl->verbose) {
		char line[1024];
		ckpt_stats_format(st, line, sizeof(line));
		fprintf(stderr, "%s\n", line);
	}
}

struct verify_arg {
	int fd;
	const char *path;
};

/* While the tree is still stopped: the image must be on disk (fsync) and
 * read back whole (every CRC, every record) before the slice may die. */
static int verify_image(void *arg, struct vs_error *err)
{
	const struct verify_arg *v = arg;
	if (fsync(v->fd) < 0)
		return vs_error_sys(err, errno, "%s: fsync", v->path);
	cleanup_close int rfd = open(v->path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return vs_error_sys(err, errno, "%s: read back", v->path);
	struct ckpt_image *img = NULL;
	if (ckpt_image_read_fd(rfd, &img, err) < 0)
		return vs_error_wrap(err, "%s: verify", v->path);
	ckpt_image_free(img);
	return 0;
}

int cmd_checkpoint(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"leave-running", no_argument, NULL, 'l'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	if (ctl_want_help(argc, argv, CKPT_HELP))
		return 0;
	const char *out = NULL;
	bool leave = false;
	int c;
	while ((c = getopt_long(argc, argv, "o:lv", opts, NULL)) != -1) {
		if (c == 'o')
			out = optarg;
		else if (c == 'l')
			leave = true;
		else if (c == 'v')
			ctl->verbose++;
		else
			return ctl_usage("checkpoint", "unknown option");
	}
	if (optind != argc - 1 || !out)
		return ctl_usage("checkpoint", "need NAME and --output DIR");
	const char *name = argv[optind];
	struct vs_error err;
	vs_error_clear(&err);
	struct slice_spec spec = {0};
	struct slice_state st;
	if (slice_load(ctl->root, name, &spec, &st, &err) < 0)
		return ctl_fail("checkpoint", name, &err);
	slice_spec_free(&spec);
	if (st.status != SLICE_RUNNING || st.pid <= 0) {
		vs_error_set(&err, EINVAL, "is not running (%s)", slice_status_name(st.status));
		return ctl_fail("checkpoint", name, &err);
	}
	/* the workload tree hangs under the slice's PID 1 */
	char path[96], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", st.pid, st.pid);
	int fdc = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fdc >= 0 ? read(fdc, buf, sizeof(buf) - 1) : -1;
	if (fdc >= 0)
		close(fdc);
	pid_t workload = n > 0 ? (buf[n] = 0, atoi(buf)) : 0;
	if (workload <= 0) {
		vs_error_set(&err, ESRCH, "has no workload process under its PID 1 (%d)", st.pid);
		return ctl_fail("checkpoint", name, &err);
	}
	if (vs_mkdir_p(out, 0700, &err) < 0)
		return ctl_fail("checkpoint", name, &err);
	cleanup_free char *dir = slice_dir(ctl->root, name);
	cleanup_free char *spec_path = vs_xasprintf("%s/spec.json", dir);
	cleanup_free char *spec_text = NULL;
	size_t spec_len = 0;
	if (vs_read_file(spec_path, 0, &spec_text, &spec_len, &err) < 0)
		return ctl_fail("checkpoint", name, &err);
	cleanup_free char *img_path = vs_xasprintf("%s/checkpoint.img", out);
	cleanup_close int fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		vs_error_sys(&err, errno, "%s", img_path);
		return ctl_fail("checkpoint", name, &err);
	}
	struct cgroup *cg = NULL;
	const char *freezer = NULL;
	if (cgroup_open(NULL, NULL, name, &cg, &err) == 0)
		freezer = cgroup_path(cg, "freezer");
	cleanup_free char *upper = vs_xasprintf("%s/upper", dir);
	struct ckpt_dump_opts o = {
	    .root_pid = workload,
	    .init_pid = st.pid,
	    .freezer_dir = freezer,
	    .out_fd = fd,
	    .leave_running = leave,
	    .name = name,
	    .extra = spec_text,
	    .extra_len = spec_len + 1,
	    .verbose = ctl->verbose > 0,
	    .fs_root = upper,
	    .while_stopped = verify_image,
	};
	struct verify_arg va = {fd, img_path};
	o.while_stopped_arg = &va;
	struct ckpt_stats stats;
	int r = ckpt_dump(&o, &stats, &err);
	if (cg)
		cgroup_free(cg);
	if (r < 0) {
		unlink(img_path);
		return ctl_fail("checkpoint", name, &err);
	}
	print_stats(ctl, out, "stats.json", &stats);
	if (!leave) {
		/* the tree is dead; PID 1 follows: the slice is gone */
		for (int i = 0; i < 200 && kill(st.pid, 0) == 0; i++) {
			struct timespec ts = {0, 10000000};
			nanosleep(&ts, NULL);
		}
		if (slice_destroy(ctl->root, name, true, &err) < 0)
			return ctl_fail("checkpoint", name, &err);
	}
	return 0;
}

static int restore_stub_main(void *arg)
{
	struct vs_error err;
	vs_error_clear(&err);
	ckpt_restore_stub(arg, &err);
	fprintf(stderr, "slicectl restore: %s\n", err.msg);
	return EXIT_VSLICE;
}

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int cmd_restore(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"input", required_argument, NULL, 'i'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	if (ctl_want_help(argc, argv, RESTORE_HELP))
		return 0;
	const char *in = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "i:v", opts, NULL)) != -1) {
		if (c == 'i')
			in = optarg;
		else if (c == 'v')
			ctl->verbose++;
		else
			return ctl_usage("restore", "unknown option");
	}
	if (optind != argc - 1 || !in)
		return ctl_usage("restore", "need NAME and --input DIR");
	const char *name = argv[optind];
	struct vs_error err;
	vs_error_clear(&err);
	cleanup_free char *img_path = vs_xasprintf("%s/checkpoint.img", in);
	cleanup_close int fd = open(img_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		vs_error_sys(&err, errno, "%s", img_path);
		return ctl_fail("restore", name, &err);
	}
	struct ckpt_image *img = NULL;
	if (ckpt_image_read_fd(fd, &img, &err) < 0)
		return ctl_fail("restore", name, &err);
	size_t elen = 0;
	const char *etext = ckpt_image_extra(img, &elen);
	if (!etext || !elen || etext[elen - 1] != 0) {
		ckpt_image_free(img);
		vs_error_set(&err, EINVAL, "%s: no slice spec in the checkpoint", img_path);
		return ctl_fail("restore", name, &err);
	}
	struct slice_spec spec = {0};
	if (slice_spec_parse(etext, ckpt_image_name(img), &spec, &err) < 0) {
		ckpt_image_free(img);
		vs_error_wrap(&err, "slice spec in %s", img_path);
		return ctl_fail("restore", name, &err);
	}
	uint32_t old_base = spec.id_base;
	snprintf(spec.name, sizeof(spec.name), "%s", name);
	/* a stopped slice of that name is replaced; a running one is not */
	struct slice_spec cur;
	struct slice_state cst;
	if (slice_load(ctl->root, name, &cur, &cst, &err) == 0) {
		slice_spec_free(&cur);
		if (cst.status == SLICE_RUNNING || cst.status == SLICE_FROZEN) {
			slice_spec_free(&spec);
			ckpt_image_free(img);
			vs_error_set(&err, EBUSY,
				     "is running; destroy it first or restore under another name");
			return ctl_fail("restore", name, &err);
		}
		if (slice_destroy(ctl->root, name, true, &err) < 0)
			goto fail_early;
	}
	if (slice_create(ctl->root, &spec, &err) < 0)
		goto fail_early;
	{
		cleanup_free char *dir = slice_dir(ctl->root, name);
		cleanup_free char *upper = vs_xasprintf("%s/upper", dir);
		if (ckpt_image_extract_fs(img, upper, old_base, spec.id_base, &err) < 0)
			goto fail_created;
	}
	struct slice_start_opts so = {
	    .stdin_fd = -1,
	    .stdout_fd = -1,
	    .stderr_fd = -1,
	    .workload_fn = restore_stub_main,
	    .workload_arg = img,
	    .workload_pid = ckpt_image_root_pid(img),
	    .monotonic_offset_ns = ckpt_image_monotonic_ns(img) - now_ns(CLOCK_MONOTONIC),
	    .boottime_offset_ns = ckpt_image_boottime_ns(img) - now_ns(CLOCK_BOOTTIME),
	};
	uint64_t t0 = vs_now_ns();
	if (slice_start(ctl->root, name, &so, &err) < 0) {
		/* A kernel without time namespaces (or one refusing the offsets):
		 * restore without clock offsets rather than not at all, and say so. */
		if (err.kind != VS_EK_TIMENS)
			goto fail_created;
		fprintf(stderr,
			"slicectl: restore %s: warning: %s; monotonic clocks will not "
			"continue from the checkpoint\n",
			name, err.msg);
		so.monotonic_offset_ns = so.boottime_offset_ns = 0;
		vs_error_clear(&err);
		if (slice_start(ctl->root, name, &so, &err) < 0)
			goto fail_created;
	}
	struct slice_spec s2;
	struct slice_state st;
	if (slice_load(ctl->root, name, &s2, &st, &err) < 0)
		goto fail_created;
	slice_spec_free(&s2);
	pid_t root_hpid;
	struct ckpt_stats stats = {0};
	if (ckpt_find_child_nspid(st.pid, ckpt_image_root_pid(img), 10000, &root_hpid, &err) < 0 ||
	    ckpt_restore_finish(img, root_hpid, 30000, &stats, &err) < 0) {
		/* the stubs' own error beats "no child with pid N" / "stub died" */
		const char *why = ckpt_image_restore_error(img);
		if (why)
			vs_error_set(&err, ECHILD, "%s", why);
		goto fail_created;
	}
	stats.restore_ns = vs_now_ns() - t0;
	print_stats(ctl, in, "restore-stats.json", &stats);
	slice_spec_free(&spec);
	ckpt_image_free(img);
	return 0;
fail_created : {
	struct vs_error e2;
	slice_destroy(ctl->root, name, true, &e2);
}
fail_early:
	slice_spec_free(&spec);
	ckpt_image_free(img);
	return ctl_fail("restore", name, &err);
}
