/* longpoll_bench: HTTP load on vslice-registry with libcurl multi (one
 * thread, one event loop), for tests/bench/registry.sh.
 *
 *   longpoll_bench load URL TOKEN REQFILE CONCURRENCY MAX_SECS
 *       Runs the requests of REQFILE (one a line: METHOD<TAB>PATH<TAB>BODY,
 *       BODY may be empty) in order over CONCURRENCY connections kept alive,
 *       each connection with one request in flight. Stops starting new ones
 *       after MAX_SECS. Prints one JSON object: requests, seconds, per_sec,
 *       p50/p99/max ms (from the request's start to its last byte), and the
 *       count of each HTTP status ("000": no answer, with the first curl error).
 *
 *   longpoll_bench fanout URL TOKEN FIRST N INDEX REGPID BODYFILE SETTLE_SECS GIVEUP_SECS
 *       Parks N long-polls GET /v1/nodes/nNNNNN/assignments?index=INDEX&wait=60s
 *       for nodes FIRST..FIRST+N-1, each on its own connection. Once every
 *       request is on the wire it waits SETTLE_SECS (none may answer in the
 *       meantime), reads VmRSS, Threads and the open fds of REGPID (the
 *       registry), times one GET /v1/health (3 s timeout), then sends
 *       POST /v1/slices with BODYFILE: one commit, which must answer every
 *       poll. Prints one JSON object: the registry's RSS/threads/fds before
 *       and while parked, the health probe, polls answered early (and why),
 *       the submit's latency, and the wake latency of every poll (from the
 *       moment the POST was started to the poll's last byte): p50/p99/max.
 *       Gives up GIVEUP_SECS after the POST ("gave_up": true).
 * Every request carries "Authorization: Bearer TOKEN". Exit 0 when the run
 * happened (the JSON says how it went), 1 on a usage or setup error.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static size_t discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

static void die(const char *msg)
{
	fprintf(stderr, "longpoll_bench: %s\n", msg);
	exit(1);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* status counts: index 0 = no answer, else the HTTP code (< 600) */
static unsigned long codes[600];
static char first_error[CURL_ERROR_SIZE + 64];

static void print_codes(void)
{
	printf("\"status\": {");
	int first = 1;
	for (int i = 0; i < 600; i++) {
		if (!codes[i])
			continue;
		printf("%s\"%03d\": %lu", first ? "" : ", ", i, codes[i]);
		first = 0;
	}
	printf("}, \"first_error\": ");
	json_str(first_error);
}

static void count(CURL *e, CURLcode res, const char *errbuf)
{
	long code = 0;
	if (res == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (code < 0 || code >= 600)
		code = 0;
	codes[code]++;
	if (!first_error[0] && (code == 0 || code >= 300)) {
		if (code == 0)
			snprintf(first_error, sizeof(first_error), "curl: %s",
				 errbuf[0] ? errbuf : curl_easy_strerror(res));
		else
			snprintf(first_error, sizeof(first_error), "HTTP %ld", code);
	}
}

static struct curl_slist *headers(const char *token)
{
	char auth[512];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	return curl_slist_append(h, "Expect:");
}

static void setup(CURL *e, const char *url, const char *method, const char *body,
		  struct curl_slist *h, char *errbuf, void *priv)
{
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, priv);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	errbuf[0] = '\0';
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
}

/* ---------------------------------------------------------------- load -- */

struct req {
	char *method, *path, *body;
};

struct slot {
	CURL *e;
	double t0;
	char err[CURL_ERROR_SIZE];
	char url[1024];
};

static int cmd_load(int argc, char **argv)
{
	if (argc != 7)
		die("usage: load URL TOKEN REQFILE CONCURRENCY MAX_SECS");
	const char *base = argv[2], *token = argv[3];
	int conc = atoi(argv[5]);
	double max_ms = atof(argv[6]) * 1e3;
	if (conc < 1 || max_ms <= 0)
		die("load: bad CONCURRENCY or MAX_SECS");
	FILE *f = fopen(argv[4], "r");
	if (!f)
		die("load: cannot open REQFILE");
	struct req *reqs = NULL;
	size_t nreq = 0, cap = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t len;
	while ((len = getline(&line, &lcap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (!len)
			continue;
		char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		if (!t1)
			die("load: a REQFILE line without a tab");
		*t1 = '\0';
		if (t2)
			*t2 = '\0';
		if (nreq == cap) {
			cap = cap ? 2 * cap : 1024;
			reqs = realloc(reqs, cap * sizeof(*reqs));
			if (!reqs)
				die("out of memory");
		}
		reqs[nreq].method = strdup(line);
		reqs[nreq].path = strdup(t1 + 1);
		reqs[nreq].body = strdup(t2 ? t2 + 1 : "");
		nreq++;
	}
	fclose(f);
	free(line);
	if (!nreq)
		die("load: REQFILE is empty");

	struct curl_slist *h = headers(token);
	CURLM *multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc * 2);
	struct slot *slots = calloc((size_t)conc, sizeof(*slots));
	double *lat = calloc(nreq, sizeof(*lat));
	if (!slots || !lat)
		die("out of memory");
	size_t next = 0, done = 0;
	int running_handles = 0, inflight = 0;
	double start = now_ms();
	for (int i = 0; i < conc && next < nreq; i++) {
		slots[i].e = curl_easy_init();
		snprintf(slots[i].url, sizeof(slots[i].url), "%s%s", base, reqs[next].path);
		setup(slots[i].e, slots[i].url, reqs[next].method, reqs[next].body, h, slots[i].err,
		      &slots[i]);
		next++;
		slots[i].t0 = now_ms();
		curl_multi_add_handle(multi, slots[i].e);
		inflight++;
	}
	while (inflight > 0) {
		curl_multi_perform(multi, &running_handles);
		CURLMsg *msg;
		int q;
		while ((msg = curl_multi_info_read(multi, &q))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct slot *s;
			CURL *e = msg->easy_handle;
			CURLcode res = msg->data.result;
			curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
			lat[done++] = now_ms() - s->t0;
			count(e, res, s->err);
			curl_multi_remove_handle(multi, e);
			inflight--;
			if (next < nreq && now_ms() - start < max_ms) {
				snprintf(s->url, sizeof(s->url), "%s%s", base, reqs[next].path);
				setup(e, s->url, reqs[next].method, reqs[next].body, h, s->err, s);
				next++;
				s->t0 = now_ms();
				curl_multi_add_handle(multi, e);
				inflight++;
			}
		}
		if (inflight > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	double secs = (now_ms() - start) / 1e3;
	qsort(lat, done, sizeof(*lat), cmp_d);
	printf("{\"requests\": %zu, \"of\": %zu, \"concurrency\": %d, \"secs\": %.3f, "
	       "\"per_sec\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, ",
	       done, nreq, conc, secs, secs > 0 ? (double)done / secs : 0, pct(lat, done, 50),
	       pct(lat, done, 99), done ? lat[done - 1] : 0);
	print_codes();
	printf("}\n");
	for (int i = 0; i < conc; i++)
		if (slots[i].e)
			curl_easy_cleanup(slots[i].e);
	curl_multi_cleanup(multi);
	curl_slist_free_all(h);
	return 0;
}

/* -------------------------------------------------------------- fanout -- */

struct poll {
	CURL *e;
	int done;
	double t_done;
	long code;
	char err[CURL_ERROR_SIZE];
	char url[256];
};

static void proc_status(int pid, long *rss_kib, long *threads)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/status", pid);
	*rss_kib = *threads = -1;
	FILE *f = fopen(p, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss_kib = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "Threads:", 8) == 0)
			*threads = strtol(line + 8, NULL, 10);
	}
	fclose(f);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, len = 0, n;
	char tmp[4096];
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("out of memory");
		}
		memcpy(buf + len, tmp, n);
		len += n;
	}
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static long count_fds(int pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/fd", pid);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* One GET /v1/health on a fresh connection: ms, or -1 (err says why). */
static double health_probe(const char *base, char *err)
{
	char url[512];
	snprintf(url, sizeof(url), "%s/v1/health", base);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
	err[0] = '\0';
	double t0 = now_ms();
	CURLcode r = curl_easy_perform(e);
	double t = now_ms() - t0;
	curl_easy_cleanup(e);
	return r == CURLE_OK ? t : -1;
}

static int cmd_fanout(int argc, char **argv)
{
	if (argc != 11)
		die("usage: fanout URL TOKEN FIRST N INDEX REGPID BODYFILE SETTLE_SECS "
		    "GIVEUP_SECS");
	const char *base = argv[2], *token = argv[3];
	int first = atoi(argv[4]), n = atoi(argv[5]), pid = atoi(argv[7]);
	long long index = atoll(argv[6]);
	double settle_ms = atof(argv[9]) * 1e3, giveup_ms = atof(argv[10]) * 1e3;
	long fds0 = count_fds(pid), fds1 = -1;
	char health_err[CURL_ERROR_SIZE] = "";
	double health_ms = -1;
	int gave_up = 0;
	char *body = slurp(argv[8]);
	if (n < 1 || first < 0 || pid < 1 || !body)
		die("fanout: bad arguments (or BODYFILE unreadable)");

	long rss0, thr0, rss1, thr1;
	proc_status(pid, &rss0, &thr0);
	struct curl_slist *h = headers(token);
	CURLM *multi = curl_multi_init();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)n + 16);
	struct poll *polls = calloc((size_t)n, sizeof(*polls));
	if (!polls)
		die("out of memory");
	for (int i = 0; i < n; i++) {
		struct poll *p = &polls[i];
		p->e = curl_easy_init();
		if (!p->e)
			die("curl_easy_init failed");
		snprintf(p->url, sizeof(p->url),
			 "%s/v1/nodes/n%05d/assignments?index=%lld&wait=60s", base, first + i,
			 index);
		setup(p->e, p->url, "GET", NULL, h, p->err, p);
		curl_easy_setopt(p->e, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(p->e, CURLOPT_FORBID_REUSE, 1L);
		curl_multi_add_handle(multi, p->e);
	}
	struct poll submit = {0};
	submit.e = curl_easy_init();
	snprintf(submit.url, sizeof(submit.url), "%s/v1/slices", base);
	setup(submit.e, submit.url, "POST", body, h, submit.err, &submit);

	int running = 0, ndone = 0, early = 0, on_wire = 0;
	long early_codes[600] = {0};
	char early_err[CURL_ERROR_SIZE + 64] = "";
	double t_start = now_ms(), t_wire = 0, t_submit = 0, t_all = 0;
	int phase = 0; /* 0: parking, 1: settling, 2: after the submit */
	while (1) {
		curl_multi_perform(multi, &running);
		CURLMsg *msg;
		int q;
		while ((msg = curl_multi_info_read(multi, &q))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct poll *p;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
			p->done = 1;
			p->t_done = now_ms();
			if (msg->data.result == CURLE_OK)
				curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
						  &p->code);
			if (p == &submit) {
				count(p->e, msg->data.result, p->err);
				continue;
			}
			ndone++;
			if (phase < 2) {
				early++;
				early_codes[p->code >= 0 && p->code < 600 ? p->code : 0]++;
				if (!early_err[0])
					snprintf(early_err, sizeof(early_err), "%s%s",
						 p->code ? "HTTP answer " : "curl: ",
						 p->code ? "before the commit" : p->err);
			} else {
				count(p->e, msg->data.result, p->err);
			}
		}
		double t = now_ms();
		if (phase == 0) {
			on_wire = 0;
			for (int i = 0; i < n; i++) {
				curl_off_t pre = 0;
				if (polls[i].done ||
				    (curl_easy_getinfo(polls[i].e, CURLINFO_PRETRANSFER_TIME_T,
						       &pre) == CURLE_OK &&
				     pre > 0))
					on_wire++;
			}
			if (on_wire == n || t - t_start > 30e3) {
				t_wire = t;
				phase = 1;
			}
		} else if (phase == 1 && t - t_wire >= settle_ms) {
			proc_status(pid, &rss1, &thr1);
			fds1 = count_fds(pid);
			health_ms = health_probe(base, health_err);
			phase = 2;
			t_submit = now_ms();
			curl_multi_add_handle(multi, submit.e);
		} else if (phase == 2 && ndone == n && submit.done) {
			t_all = t;
			break;
		} else if (phase == 2 && t - t_submit > giveup_ms) {
			gave_up = 1;
			break;
		}
		curl_multi_poll(multi, NULL, 0, phase == 2 ? 5 : 50, NULL);
	}
	double *lat = calloc((size_t)n, sizeof(*lat));
	int nl = 0;
	for (int i = 0; i < n; i++)
		if (polls[i].done && polls[i].t_done >= t_submit)
			lat[nl++] = polls[i].t_done - t_submit;
	qsort(lat, (size_t)nl, sizeof(*lat), cmp_d);
	printf("{\"polls\": %d, \"on_wire\": %d, \"park_secs\": %.3f, \"settle_secs\": %.1f, "
	       "\"rss_before_kib\": %ld, \"threads_before\": %ld, \"rss_parked_kib\": %ld, "
	       "\"threads_parked\": %ld, \"fds_before\": %ld, \"fds_parked\": %ld, "
	       "\"health_parked_ms\": %.3f, \"health_parked_error\": ",
	       n, on_wire, (t_wire - t_start) / 1e3, settle_ms / 1e3, rss0, thr0, rss1, thr1, fds0,
	       fds1, health_ms);
	json_str(health_err);
	printf(", \"gave_up\": %s, \"answered_early\": %d, \"early_status\": {",
	       gave_up ? "true" : "false", early);
	int firstc = 1;
	for (int i = 0; i < 600; i++)
		if (early_codes[i]) {
			printf("%s\"%03d\": %ld", firstc ? "" : ", ", i, early_codes[i]);
			firstc = 0;
		}
	printf("}, \"early_error\": ");
	json_str(early_err);
	printf(", \"submit_code\": %ld, \"submit_ms\": %.3f, \"woken\": %d, "
	       "\"wake_p50_ms\": %.3f, \"wake_p99_ms\": %.3f, \"wake_max_ms\": %.3f, "
	       "\"all_answered_ms\": %.3f, ",
	       submit.code, submit.done ? submit.t_done - t_submit : -1.0, nl,
	       pct(lat, (size_t)nl, 50), pct(lat, (size_t)nl, 99), nl ? lat[nl - 1] : 0,
	       t_all ? t_all - t_submit : -1.0);
	print_codes();
	printf("}\n");
	for (int i = 0; i < n; i++) {
		curl_multi_remove_handle(multi, polls[i].e);
		curl_easy_cleanup(polls[i].e);
	}
	curl_multi_remove_handle(multi, submit.e);
	curl_easy_cleanup(submit.e);
	curl_multi_cleanup(multi);
	curl_slist_free_all(h);
	free(polls);
	free(lat);
	free(body);
	return 0;
}

int main(int argc, char **argv)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		die("curl_global_init failed");
	int r;
	if (argc > 1 && strcmp(argv[1], "load") == 0)
		r = cmd_load(argc, argv);
	else if (argc > 1 && strcmp(argv[1], "fanout") == 0)
		r = cmd_fanout(argc, argv);
	else
		die("usage: longpoll_bench load|fanout ... (see the top of longpoll_bench.c)");
	curl_global_cleanup();
	return r;
}
