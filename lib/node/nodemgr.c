/*
 * nodemgr.c - vslice-nodemgr: the node side of docs/cluster-api.md. This
 * file is the daemon's life; nodemgr_int.h says which file does what.
 *
 * Two threads, each with its own HTTP client:
 *   poller (nodemgr_poll.c): registers the node (retrying with backoff, 1 s
 *     doubling to 30 s, while the registry is unreachable), then long-polls
 *     the node's assignments; every successful answer is cached atomically
 *     at <root>/nodemgr/assignments.json and handed to the main loop.
 *   main (nodemgr_run, here): reconciles desired (assignments) with actual
 *     (slices under the root) on every new answer and every heartbeat
 *     (nodemgr_reconcile.c); each heartbeat it also reports the slivers'
 *     states, uploads new log bytes and, for slivers that exited, their
 *     result files (nodemgr_upload.c). Between heartbeats it waits on the
 *     poller's wake-ups and on a pidfd per running sliver, so a run's end is
 *     reported at once.
 *
 * The desired set only ever comes from a successful answer or the cache: an
 * unreachable registry never looks like "nothing assigned", so a partition
 * destroys nothing. Slivers never depend on this process (they are detached
 * slices); stopping it stops polling and reporting, nothing else.
 *
 * Ownership of slices: a record in <root>/nodemgr/slivers/NAME.json, written
 * before the slice is created, plus the origin experiment_create recorded
 * ("registry URL", node = ours). A slice without both is never touched -
 * except the one a record's intent ("creating", "destroying") explains: the
 * half-made or half-removed slice a SIGKILL left (nodemgr_decide).
 *
 * Steps of a create (nodemgr_actions.c), numbered as the test hook
 * VSLICE_FAULT=nodemgr.create:N counts them (it SIGKILLs the process right
 * after step N):
 *   1 record "creating" saved    2 slice made (dir, id range, cgroup, spec)
 *   3 files placed               4 experiment.json written (the slice is ours)
 *   5 slice started              6 record "created" saved
 * and of a destroy (nodemgr.destroy:N):
 *   1 record "destroying" saved  2 slice removed   3 record removed
 *
 * One node manager per root and per cgroup parent: both are flock'ed for
 * the daemon's life (nodemgr_new), so two nodes on one machine never share
 * slices, records or a slice's cgroup.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "nodemgr_int.h"
#include "vslice/slice.h"
#include "vslice/units.h"
#include "vslice/util.h"

/* --- log, wake-ups, the fault hook -------------------------------- */

void nm_log(struct nodemgr *nm, enum nodemgr_log_level level, const char *fmt, ...)
{
	if (!nm->o.log || (level == NODEMGR_LOG_DEBUG && !nm->o.verbose))
		return;
	char buf[2048], shown[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nm->o.log(nm->o.log_arg, level, vs_printable(buf, shown, sizeof(shown)));
}

void nm_wake(struct nodemgr *nm)
{
	uint64_t one = 1;
	ssize_t r = write(nm->wake_fd, &one, sizeof(one));
	(void)r;
}

void nodemgr_stop(struct nodemgr *nm)
{
	atomic_store(&nm->stop, true);
	nm_wake(nm);
}

bool nm_nap_ms(struct nodemgr *nm, unsigned ms)
{
	for (unsigned left = ms; left > 0;) {
		if (atomic_load(&nm->stop))
			return false;
		unsigned step = left < 200 ? left : 200;
		nanosleep(&(struct timespec){.tv_nsec = (long)step * 1000 * 1000}, NULL);
		left -= step;
	}
	return !atomic_load(&nm->stop);
}

bool nm_nap(struct nodemgr *nm, unsigned secs)
{
	return nm_nap_ms(nm, secs * 1000);
}

int nodemgr_fault_parse(const char *value, const char **op, unsigned *step, struct vs_error *err)
{
	static const char *const ops[] = {"nodemgr.create",	 "nodemgr.destroy", "migrate.out",
					  "migrate.in",		 "migrate.flip",    "migrate.delay",
					  "nodemgr.fetch_delay", "migrate.hold"};
	*op = NULL;
	*step = 0;
	if (!value || (strncmp(value, "nodemgr.", 8) && strncmp(value, "migrate.", 8)))
		return 0; /* unset, or another component's hook */
	const char *colon = strchr(value, ':');
	for (size_t i = 0; colon && i < VS_ARRAY_SIZE(ops); i++) {
		if (strlen(ops[i]) != (size_t)(colon - value) ||
		    strncmp(value, ops[i], strlen(ops[i])))
			continue;
		char *end;
		errno = 0;
		unsigned long n = strtoul(colon + 1, &end, 10);
		/* flip: a byte offset from 0; delay: ms, up to a minute; the
		 * others: a step from 1 */
		bool flip = !strcmp(ops[i], "migrate.flip");
		bool delay = !strcmp(ops[i], "migrate.delay") ||
			     !strcmp(ops[i], "nodemgr.fetch_delay") ||
			     !strcmp(ops[i], "migrate.hold");
		unsigned long max = flip ? UINT_MAX : delay ? 60000 : 100;
		if (colon[1] < '0' || colon[1] > '9' || errno || *end || (!flip && n == 0) ||
		    n > max)
			break;
		*op = ops[i];
		*step = (unsigned)n;
		return 0;
	}
	return vs_error_set(
	    err, EINVAL,
	    "VSLICE_FAULT \"%s\": use nodemgr.create:N, nodemgr.destroy:N, "
	    "migrate.out:N, migrate.in:N (N >= 1), migrate.flip:OFFSET or "
	    "migrate.delay:MS, migrate.hold:MS, nodemgr.fetch_delay:MS (a test hook)",
	    value);
}

long long nm_fault_flip_offset(struct nodemgr *nm)
{
	if (!nm->fault_op || strcmp(nm->fault_op, "migrate.flip"))
		return -1;
	return nm->fault_step;
}

unsigned nm_fault_delay_ms(struct nodemgr *nm, const char *op)
{
	if (!nm->fault_op || strcmp(nm->fault_op, op))
		return 0;
	return nm->fault_step;
}

/* The test hook (VSLICE_FAULT): die at once, as a power cut or the OOM
 * killer would, right after step `step` of op. */
void nm_fault_point(struct nodemgr *nm, const char *op, unsigned step)
{
	if (!nm->fault_op || strcmp(nm->fault_op, op) || nm->fault_step != step)
		return;
	nm_log(nm, NODEMGR_LOG_INFO, "VSLICE_FAULT: SIGKILL after step %u of %s", step, op);
	kill(getpid(), SIGKILL);
}

/* --- the node's facts, registered as labels ------------------------ */

/*
 * What a live or pre-copy migration needs the target to share with the
 * source (the registry compares them: lib/registry/api_migrations.c,
 * "Preconditions"; vslice.kernel is added at registration). A label given
 * with --label wins: tests fake a node that differs that way.
 *
 * vslice.vdso: the [vvar], [vvar_vclock] and [vdso] mappings of this
 * process in address order with their sizes (what the restorer checks:
 * lib/checkpoint/restore.c, check_vdso) and the first 16 hex digits of the
 * sha256 of the vDSO's text (restored processes hold pointers into it).
 */
static char *vdso_fact(void)
{
	cleanup_fclose FILE *f = fopen("/proc/self/maps", "re");
	char line[4096 + 128], out[256] = "";
	size_t off = 0;
	unsigned long prev_end = 0, vdso_lo = 0, vdso_hi = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		const char *name = strchr(line, '[');
		if (!name || sscanf(line, "%lx-%lx", &s, &e) != 2)
			continue;
		size_t nl = strcspn(name, "]\n");
		if (strncmp(name, "[vvar", 5) != 0 && strncmp(name, "[vdso]", 6) != 0)
			continue;
		if (off && s != prev_end && off < sizeof(out))
			off += (size_t)snprintf(out + off, sizeof(out) - off, ", gap %#lx",
						s - prev_end);
		if (off < sizeof(out))
			off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%.*s %#lx",
						off ? ", " : "", (int)nl - 1, name + 1, e - s);
		prev_end = e;
		if (strncmp(name, "[vdso]", 6) == 0) {
			vdso_lo = s;
			vdso_hi = e;
		}
	}
	if (!off)
		return NULL;
	if (vdso_hi > vdso_lo && off < sizeof(out)) {
		char sha[VS_SHA256_HEX];
		vs_sha256_buf((const void *)vdso_lo, vdso_hi - vdso_lo, sha);
		snprintf(out + off, sizeof(out) - off, ", text %.16s", sha);
	}
	return vs_xstrdup(out);
}

/*
 * vslice.cpu: the CPU's instruction-set features, named as the kernel
 * names them in /proc/cpuinfo. On x86 only the extensions user code can
 * detect (cpuid) and use - glibc's ifuncs pick memcpy and friends by them
 * once, at start - not the kernel's own bookkeeping flags (constant_tsc,
 * hypervisor, ...), which no process depends on; elsewhere every feature
 * listed.
 */
static const char x86_user_features[] =
    " cx8 cmov mmx fxsr sse sse2 syscall nx mmxext rdtscp lm 3dnowext 3dnow pni pclmulqdq"
    " ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm abm sse4a"
    " misalignsse 3dnowprefetch xop fma4 tbm fsgsbase bmi1 hle avx2 bmi2 erms rtm avx512f"
    " avx512dq rdseed adx avx512ifma clflushopt clwb avx512pf avx512er avx512cd sha_ni"
    " avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 clzero avx512vbmi"
    " pku waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg"
    " avx512_vpopcntdq rdpid cldemote movdiri movdir64b avx512_vp2intersect fsrm serialize"
    " tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 avx_ifma avx_vnni_int8 avx_ne_convert"
    " cmpccxadd prefetchiti sha512 sm3 sm4 avx_vnni_int16 fzrm fsrs fsrc ";

static bool x86_user_feature(const char *w, size_t len)
{
	char key[64];
	if (len + 3 > sizeof(key))
		return false;
	snprintf(key, sizeof(key), " %.*s ", (int)len, w);
	return strstr(x86_user_features, key) != NULL;
}

static char *cpu_fact(void)
{
	cleanup_fclose FILE *f = fopen("/proc/cpuinfo", "re");
	cleanup_free char *line = NULL;
	size_t cap = 0;
	while (f && getline(&line, &cap, f) > 0) {
		bool x86 = strncmp(line, "flags", 5) == 0;
		if (!x86 && strncmp(line, "Features", 8) != 0)
			continue;
		const char *p = strchr(line, ':');
		if (!p)
			continue;
		size_t n = 0, off = 0;
		char *out = vs_xcalloc(strlen(p) + 1, 1);
		for (p++; *p;) {
			p += strspn(p, " \t\n");
			size_t wl = strcspn(p, " \t\n");
			if (wl && (!x86 || x86_user_feature(p, wl))) {
				off +=
				    (size_t)sprintf(out + off, "%s%.*s", n ? " " : "", (int)wl, p);
				n++;
			}
			p += wl;
		}
		return out;
	}
	return NULL;
}

/* nm->labels, with the facts the operator did not set with --label. */
static void add_fact(char ***labels, size_t *n, const char *key, char *value)
{
	size_t kl = strlen(key);
	for (size_t i = 0; value && i < *n; i++)
		if (!strncmp((*labels)[i], key, kl) && (*labels)[i][kl] == '=') {
			free(value);
			return;
		}
	if (!value)
		return;
	*labels = vs_xrealloc(*labels, (*n + 2) * sizeof(char *));
	(*labels)[(*n)++] = vs_xasprintf("%s=%s", key, value);
	(*labels)[*n] = NULL;
	free(value);
}

/* --- one node manager per root and per cgroup parent --------------- */

/*
 * flock path for nm's life and write who holds it into it; a lock another
 * process holds: -EBUSY (kind busy), err says who ("what" names the object).
 * The file may be unlinked by its holder on the way out (the cgroup lock
 * is): a lock taken on a file no longer at path is let go and taken again.
 */
static int hold_lock(struct nodemgr *nm, const char *path, const char *what, int *out,
		     struct vs_error *err)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return vs_error_sys(err, errno, "%s: lock %s", what, path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK)
				return vs_error_sys(err, errno, "%s: lock %s", what, path);
			char who[256] = "", shown[256];
			ssize_t n = pread(fd, who, sizeof(who) - 1, 0);
			who[n > 0 ? n : 0] = '\0';
			who[strcspn(who, "\n")] = '\0';
			vs_error_set(err, EBUSY, "%s: another vslice-nodemgr holds it (%s)", what,
				     who[0] ? vs_printable(who, shown, sizeof(shown)) : path);
			return vs_error_kind(err, VS_EK_BUSY);
		}
		struct stat held, now;
		if (fstat(fd, &held) < 0)
			return vs_error_sys(err, errno, "%s: stat %s", what, path);
		if (stat(path, &now) < 0 || now.st_ino != held.st_ino || now.st_dev != held.st_dev)
			continue; /* unlinked by the holder we waited for: lock the new one */
		cleanup_free char *me =
		    vs_xasprintf("pid %ld, node %s, root %s\n", (long)getpid(), nm->name, nm->root);
		if (ftruncate(fd, 0) < 0 || pwrite(fd, me, strlen(me), 0) < 0)
			return vs_error_sys(err, errno, "%s: write %s", what, path);
		*out = steal_fd(&fd);
		return 0;
	}
	return vs_error_set(err, EAGAIN, "%s: lock %s: replaced again and again", what, path);
}

/*
 * Two node managers with one cgroup parent would put their slivers of one
 * slice into one cgroup (shared limits and freezer; the second fails). The
 * parent is what cgroup_open will use ($VSLICE_CGROUP_ROOT and
 * $VSLICE_CGROUP_PARENT, defaults /sys/fs/cgroup and vslice); the lock is a
 * machine-wide file named after it, under NODEMGR_RUN_DIR (tmpfs: gone at
 * boot, like the cgroups). A second node manager on one machine needs a
 * VSLICE_CGROUP_PARENT of its own.
 */
#define NODEMGR_RUN_DIR "/run/vslice/nodemgr"
static int lock_cgroup_parent(struct nodemgr *nm, struct vs_error *err)
{
	const char *croot = getenv("VSLICE_CGROUP_ROOT");
	const char *parent = getenv("VSLICE_CGROUP_PARENT");
	if (!croot || !*croot)
		croot = "/sys/fs/cgroup";
	if (!parent || !*parent)
		parent = "vslice";
	while (*parent == '/')
		parent++;
	size_t plen = strlen(parent), clen = strlen(croot);
	while (plen > 0 && parent[plen - 1] == '/')
		plen--;
	while (clen > 1 && croot[clen - 1] == '/')
		clen--;
	cleanup_free char *key = vs_xasprintf("%.*s\n%.*s", (int)clen, croot, (int)plen, parent);
	char sha[VS_SHA256_HEX];
	vs_sha256_buf(key, strlen(key), sha);
	int r = vs_mkdir_p(NODEMGR_RUN_DIR, 0700, err);
	if (r < 0)
		return r;
	cleanup_free char *path = vs_xasprintf("%s/cgroup-%.16s.lock", NODEMGR_RUN_DIR, sha);
	cleanup_free char *what =
	    vs_xasprintf("cgroup parent %.*s/%.*s", (int)clen, croot, (int)plen, parent);
	r = hold_lock(nm, path, what, &nm->cgroup_lock, err);
	if (r == 0)
		nm->cgroup_lock_path = steal_pointer(&path);
	if (r == -EBUSY) {
		size_t l = strlen(err->msg);
		snprintf(err->msg + l, sizeof(err->msg) - l,
			 "; give each node manager on a machine its own VSLICE_CGROUP_PARENT "
			 "(or none: each then gets vslice-NODE)");
	}
	return r;
}

/* A cgroup parent as cgroup_open takes it: '/'-separated components of
 * [A-Za-z0-9_.@-], none starting with '.', no empty one. */
/* Record the parent this node manager's slivers use (its locked one), for
 * slicectl on this root and the next start (nodemgr_cgroup_parent). Only
 * once both locks are held: a node manager refused at start must not
 * change what the running one recorded. */
static int record_cgroup_parent(struct nodemgr *nm, struct vs_error *err)
{
	const char *parent = getenv("VSLICE_CGROUP_PARENT");
	if (!parent || !*parent)
		parent = "vslice"; /* cgroup_open's default */
	while (*parent == '/')
		parent++;
	cleanup_free char *want = vs_xasprintf("%s", parent);
	for (size_t n = strlen(want); n > 0 && want[n - 1] == '/'; n--)
		want[n - 1] = '\0';
	cleanup_free char *had = nodemgr_root_cgroup_parent(nm->root);
	if (had && !strcmp(had, want))
		return 0;
	cleanup_free char *path = vs_xasprintf("%s/" CGROUP_PARENT_FILE, nm->root);
	cleanup_free char *text = vs_xasprintf("%s\n", want);
	return vs_write_file_atomic(path, text, strlen(text), 0644, err);
}

static int lock_root(struct nodemgr *nm, struct vs_error *err)
{
	cleanup_free char *path = vs_xasprintf("%s/lock", nm->dir);
	cleanup_free char *what = vs_xasprintf("root %s", nm->root);
	return hold_lock(nm, path, what, &nm->root_lock, err);
}

/* --- the daemon ---------------------------------------------------- */

bool nodemgr_node_name_valid(const char *s)
{
	return vs_node_name_valid(s) && strlen(s) < NODEMGR_NODE_NAME_MAX;
}

int nodemgr_new(const struct nodemgr_opts *o, struct nodemgr **out, struct vs_error *err)
{
	*out = NULL;
	if (!nodemgr_node_name_valid(o->name))
		return vs_error_set(err, EINVAL,
				    "node name \"%s\": use [A-Za-z0-9][A-Za-z0-9._-]{0,62}",
				    o->name ? o->name : "");
	if (o->listen) {
		int r = nodemgr_listen_check(o->listen, err);
		if (r < 0)
			return r;
	}
	if (!o->tls_cert_pem != !o->tls_key_pem)
		return vs_error_set(err, EINVAL, "--tls-cert and --tls-key: give both or neither");
	if (o->advertise || o->tls_cert_pem) {
		cleanup_free char *url = NULL;
		if (!o->listen)
			return vs_error_set(err, EINVAL, "%s: needs --listen ADDR:PORT",
					    o->advertise ? "--advertise" : "--tls-cert");
		int r =
		    nodemgr_advertise_url(o->listen, 1, o->advertise, o->tls_cert_pem, &url, err);
		if (r < 0)
			return r;
	}
	struct nodemgr *nm = vs_xcalloc(1, sizeof(*nm));
	nm->o = *o;
	nm->registry = vs_xstrdup(o->registry);
	nm->name = vs_xstrdup(o->name);
	nm->token = vs_xstrdup(o->token);
	nm->root = vs_xstrdup(o->root);
	nm->listen = o->listen ? vs_xstrdup(o->listen) : NULL;
	nm->o.listen = nm->listen;
	nm->ca_file = o->ca_file ? vs_xstrdup(o->ca_file) : NULL;
	nm->o.ca_file = nm->ca_file;
	nm->tls_cert_pem = o->tls_cert_pem ? vs_xstrdup(o->tls_cert_pem) : NULL;
	nm->tls_key_pem = o->tls_key_pem ? vs_xstrdup(o->tls_key_pem) : NULL;
	nm->o.tls_cert_pem = nm->tls_cert_pem;
	nm->o.tls_key_pem = nm->tls_key_pem;
	nm->o.advertise = NULL; /* nm->url, once the API listens */
	size_t nl = 0;
	while (o->labels && o->labels[nl])
		nl++;
	nm->labels = vs_xcalloc(nl + 1, sizeof(char *));
	for (size_t i = 0; i < nl; i++)
		nm->labels[i] = vs_xstrdup(o->labels[i]);
	add_fact(&nm->labels, &nl, "vslice.vdso", vdso_fact());
	add_fact(&nm->labels, &nl, "vslice.cpu", cpu_fact());
	nm->dir = vs_xasprintf("%s/nodemgr", nm->root);
	nm->slivers_dir = vs_xasprintf("%s/slivers", nm->dir);
	nm->cache_path = vs_xasprintf("%s/assignments.json", nm->dir);
	nm->origin = vs_xasprintf("registry %s", nm->registry);
	nm->wake_fd = -1;
	nm->root_lock = nm->cgroup_lock = -1;
	pthread_mutex_init(&nm->mu, NULL);
	pthread_cond_init(&nm->job_cv, NULL);
	if (o->advertise)
		nm->url = vs_xstrdup(o->advertise);
	atomic_store(&nm->heartbeat, o->heartbeat_secs ? o->heartbeat_secs : 10);
	int r = http_client_init(&nm->hc, nm->registry, nm->token, nm->ca_file, err);
	nm->hc_ready = r == 0;
	if (r == 0) {
		nm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (nm->wake_fd < 0)
			r = vs_error_sys(err, errno, "eventfd");
	}
	if (r == 0)
		r = nodemgr_fault_parse(getenv("VSLICE_FAULT"), &nm->fault_op, &nm->fault_step,
					err);
	/* The overlay (VSLICE_OVERLAY_*, from --overlay-local/--overlay-vni). */
	if (r == 0 && (r = netcfg_node_config(&nm->net, err)) == 0)
		nm->overlay = nm->net.vni != 0;
	if (r == 0)
		r = vs_mkdir_p(nm->slivers_dir, 0700, err);
	/* Both locks before any record is read: what another node manager
	 * writes is not ours to act on. */
	if (r == 0)
		r = lock_root(nm, err);
	if (r == 0)
		r = lock_cgroup_parent(nm, err);
	if (r == 0)
		r = record_cgroup_parent(nm, err);
	if (r == 0)
		r = nm_records_load(nm, err);
	if (r < 0) {
		nodemgr_free(nm);
		return r;
	}
	struct vs_error cerr;
	if (nm_cache_load(nm, &cerr) < 0)
		nm_log(nm, NODEMGR_LOG_INFO, "ignoring the assignments cache: %s", cerr.msg);
	*out = nm;
	return 0;
}

/*
 * Wait up to timeout_ms for the poll thread or nodemgr_stop (nm->wake_fd)
 * and for the PID 1 of every running sliver (a pidfd each), so a run's end
 * is reported at once, not a heartbeat later. *ended: some sliver's run
 * ended (or was found gone). -errno only if poll() itself fails.
 */
static int wait_for_work(struct nodemgr *nm, int timeout_ms, bool *ended, struct vs_error *err)
{
	size_t nfds = 1;
	struct pollfd *p = vs_xcalloc(nm->nslivers + 1, sizeof(*p));
	size_t *who = vs_xcalloc(nm->nslivers + 1, sizeof(*who));
	p[0] = (struct pollfd){.fd = nm->wake_fd, .events = POLLIN};
	for (size_t i = 0; i < nm->nslivers; i++) {
		struct nm_sliver *sv = &nm->slivers[i];
		if (sv->r.phase != NODEMGR_CREATED || sv->busy ||
		    strcmp(sv->last_state, "running") || sv->end_seen)
			continue;
		if (sv->pidfd < 0) {
			pid_t pid = slice_pid1(nm->root, sv->r.slice);
			sv->pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
		}
		if (sv->pidfd < 0) {
			/* Reported running, already gone: once, not in a loop. */
			sv->end_seen = true;
			*ended = true;
			continue;
		}
		who[nfds] = i;
		p[nfds++] = (struct pollfd){.fd = sv->pidfd, .events = POLLIN};
	}
	int pr = poll(p, nfds, *ended ? 0 : timeout_ms);
	int perr = errno;
	for (size_t k = 1; pr > 0 && k < nfds; k++)
		if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
			struct nm_sliver *sv = &nm->slivers[who[k]];
			nm_close_pidfd(sv);
			sv->end_seen = true;
			*ended = true;
		}
	free(who);
	free(p);
	if (pr < 0 && perr != EINTR)
		return vs_error_sys(err, perr, "poll");
	return 0;
}

int nodemgr_run(struct nodemgr *nm, struct vs_error *err)
{
	nm_log(nm, NODEMGR_LOG_INFO, "starting (registry %s, root %s, %zu sliver record%s)",
	       nm->registry, nm->root, nm->nslivers, nm->nslivers == 1 ? "" : "s");
	char dmem[32] = "none", dpids[32] = "none", ddisk[32] = "none";
	if (nm->o.default_memory)
		snprintf(dmem, sizeof(dmem), "%lluM",
			 (unsigned long long)(nm->o.default_memory >> 20));
	if (nm->o.default_pids)
		snprintf(dpids, sizeof(dpids), "%llu", (unsigned long long)nm->o.default_pids);
	if (nm->o.default_disk)
		snprintf(ddisk, sizeof(ddisk), "%lluM",
			 (unsigned long long)(nm->o.default_disk >> 20));
	nm_log(nm, NODEMGR_LOG_INFO,
	       "default limits of a sliver whose manifest sets none: memory %s, pids %s, disk %s",
	       dmem, dpids, ddisk);
	if (nm->fault_op)
		nm_log(nm, NODEMGR_LOG_INFO, "test hook armed: VSLICE_FAULT=%s:%u", nm->fault_op,
		       nm->fault_step);
	/* Signals go to the main thread only (its poll() is what they wake). */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	/* And SIGPIPE in the threads: a stream's pipe whose other end gave up
	 * is an EPIPE to handle, not a reason to die (the API's connection
	 * threads inherit this mask; the jobs block it themselves). */
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int r = nm->o.listen ? nm_status_api_start(nm, err) : 0;
	if (r < 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return r;
	}
	r = pthread_create(&nm->poller, NULL, nm_poller_main, nm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return vs_error_sys(err, r, "starting the poll thread");
	nm->poller_started = true;

	nm_reconcile(nm);
	uint64_t next_tick = vs_now_ns();
	bool was_registered = false;
	while (!atomic_load(&nm->stop)) {
		uint64_t now = vs_now_ns();
		bool registered = atomic_load(&nm->registered);
		if (registered && !was_registered)
			next_tick = now; /* report at once, not a heartbeat later */
		was_registered = registered;
		if (now >= next_tick) {
			nm_reconcile(nm);
			nm_heartbeat(nm);
			now = vs_now_ns();
			next_tick = now + (uint64_t)atomic_load(&nm->heartbeat) * 1000000000ull;
		}
		int timeout_ms = (int)((next_tick - now) / 1000000) + 1;
		bool ended = false;
		if ((r = wait_for_work(nm, timeout_ms, &ended, err)) < 0)
			return r;
		if (ended)
			next_tick = vs_now_ns(); /* a sliver's run ended: report now */
		uint64_t v;
		while (read(nm->wake_fd, &v, sizeof(v)) > 0)
			;
		if (atomic_load(&nm->stop))
			break;
		nm->changed = false;
		nm_jobs_reap(nm); /* migrations that ended: their slivers are the loop's again */
		if (nm->changed || nm_images_reap(nm))
			next_tick = vs_now_ns(); /* an image fetched: its sliver is made now */
		pthread_mutex_lock(&nm->mu);
		json_t *answer = nm->answer;
		nm->answer = NULL;
		pthread_mutex_unlock(&nm->mu);
		if (answer) {
			struct vs_error aerr;
			if (nm_take_answer(nm, answer, &aerr) < 0)
				nm_log(nm, NODEMGR_LOG_INFO, "%s", aerr.msg);
			json_decref(answer);
			nm->changed = false;
			nm_reconcile(nm);
			if (nm->changed) /* new, removed or failed slivers: report now */
				next_tick = vs_now_ns();
		}
	}
	pthread_mutex_lock(&nm->mu);
	bool refused = nm->refused;
	if (refused)
		*err = nm->refused_err;
	pthread_mutex_unlock(&nm->mu);
	if (refused)
		return -err->code;
	nm_log(nm, NODEMGR_LOG_INFO, "stopping (its %zu sliver%s keep%s running)", nm->nslivers,
	       nm->nslivers == 1 ? "" : "s", nm->nslivers == 1 ? "s" : "");
	return 0;
}

void nodemgr_free(struct nodemgr *nm)
{
	if (!nm)
		return;
	atomic_store(&nm->stop, true);
	if (nm->cgroup_lock >= 0) {
		/* The main loop is done: let go of the parent now, before waiting
		 * for the poller (which may be left to the exit). Unlinked while
		 * held, so a node manager waiting on this file retries (hold_lock),
		 * and files under /run do not pile up, one per parent ever used. */
		unlink(nm->cgroup_lock_path);
		close(nm->cgroup_lock);
		nm->cgroup_lock = -1;
	}
	nm_status_api_stop(nm);
	if (nm_jobs_running(nm))
		return; /* a migration thread still uses nm: left to the exit (its record
			 * says where it stood) */
	if (nm->poller_started) {
		/* The poller may sit in a long-poll for up to a minute: give it a
		 * moment, then leave it (and what it uses) to the process exit. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 300 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(nm->poller, NULL, &ts) != 0)
			return;
	}
	if (nm->hc_ready)
		http_client_free(&nm->hc);
	if (nm->wake_fd >= 0)
		close(nm->wake_fd);
	if (nm->root_lock >= 0)
		close(nm->root_lock);
	free(nm->cgroup_lock_path);
	if (nm->answer)
		json_decref(nm->answer);
	nodemgr_assignments_free(nm->desired, nm->ndesired);
	nm_images_free(nm);
	free(nm->peers);
	for (size_t i = 0; i < nm->nslivers; i++) {
		nm_close_pidfd(&nm->slivers[i]);
		nodemgr_record_free(&nm->slivers[i].r);
	}
	free(nm->slivers);
	vs_strv_free(nm->labels);
	free(nm->registry);
	free(nm->name);
	free(nm->token);
	free(nm->ca_file);
	free(nm->root);
	free(nm->listen);
	free(nm->dir);
	free(nm->slivers_dir);
	free(nm->cache_path);
	free(nm->origin);
	free(nm->status_text);
	free(nm->url);
	free(nm->tls_cert_pem);
	free(nm->tls_key_pem);
	nm_jobs_free(nm);
	pthread_cond_destroy(&nm->job_cv);
	pthread_mutex_destroy(&nm->mu);
	free(nm);
}
