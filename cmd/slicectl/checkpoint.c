/*
 * checkpoint.c - slicectl checkpoint / restore (strong mobility, one node):
 * options and printing; the work is slice_checkpoint/slice_restore
 * (lib/node/slice_ckpt.c).
 *
 *   slicectl checkpoint NAME --output DIR|- [--leave-running]
 *                      [--precopy [--rounds N] [--min-pages N] [--max-bytes SIZE]]
 *   slicectl restore NAME --input DIR|-
 *
 * DIR holds checkpoint.img - one stream (docs/checkpoint.md) - and
 * stats.json / restore-stats.json. "-" is the stream itself on stdout /
 * stdin (a pipe, a socket, a file), so
 *   slicectl checkpoint c1 --output - | slicectl restore c2 --input -
 * moves a slice; stats then only go to stderr with --verbose.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slicectl.h"
#include "vslice/ckpt.h"
#include "vslice/slice_ckpt.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define CKPT_HELP                                                                                  \
	"usage: slicectl checkpoint NAME --output DIR|- [--leave-running] [--precopy ...]\n"       \
	"Checkpoint a running slice: its processes (memory, registers, files, signals,\n"          \
	"timers...) and its file system delta go to DIR, or as one stream to stdout\n"             \
	"with '-'. Without --leave-running the slice is gone afterwards, only once the\n"          \
	"image is complete (a file: on disk and verified; stdout: written to its end);\n"          \
	"on any failure it runs on untouched.\n"                                                   \
	"  -o, --output DIR|-   where to write the checkpoint (DIR is created)\n"                  \
	"  -l, --leave-running  keep the slice running after the checkpoint\n"                     \
	"  -p, --precopy        copy memory in rounds while the slice runs (write tracking\n"      \
	"                       with userfaultfd + PAGEMAP_SCAN), then freeze for the rest\n"      \
	"      --rounds N       at most N rounds before the freeze (default 8)\n"                  \
	"      --min-pages N    freeze once a round has fewer pages (default 64)\n"                \
	"      --max-bytes SIZE freeze once the rounds wrote SIZE (default: 2x the first)\n"

#define RESTORE_HELP                                                                               \
	"usage: slicectl restore NAME --input DIR|-\n"                                             \
	"Restore a slice from a checkpoint (DIR, or the stream on stdin with '-') under\n"         \
	"NAME (the same or another name); a stopped slice of that name is replaced. Its\n"         \
	"processes carry on where they were.\n"                                                    \
	"  -i, --input DIR|-    the checkpoint directory, or '-' for stdin\n"

static void print_round(void *arg, unsigned round, const struct ckpt_round_stats *rs)
{
	(void)arg;
	fprintf(stderr,
		"pre-copy round %u: %" PRIu64
		" pages, %.2f MiB in %.1f ms, dirty rate %.2f MiB/s\n",
		round, rs->pages, rs->bytes / 1048576.0, rs->ns / 1e6, rs->dirty_bps / 1048576.0);
}

static void print_stats(struct ctl *ctl, const char *dir, const char *file,
			const struct ckpt_stats *st)
{
	if (dir) {
		cleanup_free char *p = vs_xasprintf("%s/%s", dir, file);
		struct vs_error e;
		if (ckpt_stats_write_json(p, st, &e) < 0)
			fprintf(stderr, "slicectl: warning: %s\n", e.msg);
	}
	if (ctl->verbose) {
		char line[1024];
		ckpt_stats_format(st, line, sizeof(line));
		fprintf(stderr, "%s\n", line);
		if (st->nr_rounds)
			fprintf(stderr,
				"pre-copy: %u rounds in %.1f ms; frozen round %u: %" PRIu64
				" pages; frozen %.2f ms; stream %.2f MiB\n",
				st->nr_rounds, st->precopy_ns / 1e6, st->nr_rounds,
				st->pages_written, st->frozen_ns / 1e6,
				st->bytes_written / 1048576.0);
	}
}

int cmd_checkpoint(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"leave-running", no_argument, NULL, 'l'},
	    {"precopy", no_argument, NULL, 'p'},
	    {"rounds", required_argument, NULL, 'R'},
	    {"min-pages", required_argument, NULL, 'M'},
	    {"max-bytes", required_argument, NULL, 'B'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	if (ctl_want_help(argc, argv, CKPT_HELP))
		return 0;
	const char *out = NULL;
	struct slice_checkpoint_opts o = {.on_round = print_round};
	struct vs_error err;
	vs_error_clear(&err);
	int c;
	while ((c = getopt_long(argc, argv, "o:lpv", opts, NULL)) != -1) {
		char *end = NULL;
		if (c == 'o') {
			out = optarg;
		} else if (c == 'l') {
			o.leave_running = true;
		} else if (c == 'p') {
			o.precopy = true;
		} else if (c == 'R' || c == 'M') {
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || !*optarg || *end || optarg[0] == '-' || v == 0 ||
			    (c == 'R' && v > CKPT_MAX_ROUNDS - 1))
				return ctl_usage("checkpoint",
						 c == 'R' ? "--rounds: need a number from 1 to 31"
							  : "--min-pages: need a positive number");
			if (c == 'R')
				o.max_rounds = (unsigned)v;
			else
				o.min_pages = v;
		} else if (c == 'B') {
			if (vs_parse_size(optarg, &o.max_bytes, &err) < 0 || !o.max_bytes)
				return ctl_usage("checkpoint",
						 "--max-bytes: need a size (e.g. 512M)");
		} else if (c == 'v')
			ctl->verbose++;
		else
			return ctl_usage("checkpoint", "unknown option");
	}
	if (optind != argc - 1 || !out)
		return ctl_usage("checkpoint", "need NAME and --output DIR|-");
	const char *name = argv[optind];
	o.verbose = ctl->verbose > 0;
	if (!ctl->verbose)
		o.on_round = NULL;
	if (!o.precopy && (o.max_rounds || o.min_pages || o.max_bytes))
		return ctl_usage("checkpoint", "--rounds, --min-pages, --max-bytes need --precopy");
	bool to_stdout = strcmp(out, "-") == 0;
	if (to_stdout && isatty(STDOUT_FILENO)) {
		vs_error_set(&err, EINVAL, "--output -: stdout is a terminal");
		return ctl_fail("checkpoint", name, &err);
	}
	cleanup_free char *img_path = NULL;
	cleanup_close int fd = -1;
	if (!to_stdout) {
		if (vs_mkdir_p(out, 0700, &err) < 0)
			return ctl_fail("checkpoint", name, &err);
		img_path = vs_xasprintf("%s/checkpoint.img", out);
		fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			vs_error_sys(&err, errno, "%s", img_path);
			return ctl_fail("checkpoint", name, &err);
		}
	}
	struct ckpt_stats stats;
	if (slice_checkpoint(ctl->root, name, to_stdout ? STDOUT_FILENO : fd, &o, &stats, &err) <
	    0) {
		if (img_path)
			unlink(img_path);
		return ctl_fail("checkpoint", name, &err);
	}
	print_stats(ctl, to_stdout ? NULL : out, "stats.json", &stats);
	return 0;
}

static void warn_timens(void *arg, const struct vs_error *why)
{
	fprintf(stderr,
		"slicectl: restore %s: warning: %s; monotonic clocks will not continue from the "
		"checkpoint\n",
		(const char *)arg, why->msg);
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
		return ctl_usage("restore", "need NAME and --input DIR|-");
	const char *name = argv[optind];
	struct vs_error err;
	vs_error_clear(&err);
	bool from_stdin = strcmp(in, "-") == 0;
	cleanup_close int fd = -1;
	if (!from_stdin) {
		cleanup_free char *img_path = vs_xasprintf("%s/checkpoint.img", in);
		fd = open(img_path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			vs_error_sys(&err, errno, "%s", img_path);
			return ctl_fail("restore", name, &err);
		}
	}
	struct slice_restore_opts o = {
	    .verbose = ctl->verbose > 0, .warn = warn_timens, .warn_arg = (void *)name};
	struct ckpt_stats stats;
	if (slice_restore(ctl->root, name, from_stdin ? STDIN_FILENO : fd, &o, &stats, &err) < 0)
		return ctl_fail("restore", name, &err);
	print_stats(ctl, from_stdin ? NULL : in, "restore-stats.json", &stats);
	return 0;
}
