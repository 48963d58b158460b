/*
 * vslice-registry - the cluster registry (docs/cluster-api.md).
 *
 *   vslice-registry init --db PATH
 *   vslice-registry [--listen ADDR:PORT] --db PATH [--tls-cert FILE --tls-key FILE]
 *                   [--heartbeat 10s] [--lost-after 3] [--migration-timeout 60]
 *
 * Serving runs in libvslice's registry threads; this thread only waits for
 * SIGTERM/SIGINT (sigwait) and then stops the server cleanly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "vslice/netaddr.h"
#include "vslice/registry.h"
#include "vslice/units.h"
#include "vslice/util.h"

#define EXIT_VSLICE 125

static const char usage[] =
    "usage: vslice-registry init --db PATH\n"
    "       vslice-registry [--listen ADDR:PORT] --db PATH [--tls-cert FILE --tls-key FILE]\n"
    "                       [--heartbeat 10s] [--lost-after 3] [--threads N]\n"
    "                       [--per-address-limit N] [--migration-timeout SECS]\n"
    "\n"
    "  init             create the database and print the first admin token (last line)\n"
    "  --db PATH        the SQLite database (blobs go to PATH.d/)\n"
    "  --listen A:P     address to serve on (default " REGISTRY_DEFAULT_LISTEN "; port 0: any)\n"
    "  --tls-cert FILE  serve HTTPS with this PEM certificate (chain, leaf first)\n"
    "  --tls-key FILE   ... and this PEM private key (both or neither; without them\n"
    "                   tokens travel in clear text: keep such a registry on loopback)\n"
    "  --heartbeat D    seconds between node status reports (default 10s)\n"
    "  --lost-after N   heartbeats missed before a node is unknown (default 3)\n"
    "  --threads N      HTTP worker threads (default 4)\n"
    "  --per-address-limit N\n"
    "                   connections one client address (IPv6: its /64) may hold until\n"
    "                   it has shown a node or admin token (default 64; 0: no limit)\n"
    "  --migration-timeout SECS\n"
    "                   abort a running migration none of whose nodes reported for\n"
    "                   this long (default 60)\n";

static int fail(const char *what, const struct vs_error *err)
{
	char m[VS_ERROR_MAX];
	fprintf(stderr, "vslice-registry: %s%s%s\n", what ? what : "", what ? ": " : "",
		vs_printable(err->msg, m, sizeof(m)));
	return EXIT_VSLICE;
}

static int bad_usage(const char *fmt, const char *arg)
{
	char a[128];
	fprintf(stderr, "vslice-registry: ");
	fprintf(stderr, fmt, arg ? vs_printable(arg, a, sizeof(a)) : "");
	fprintf(stderr, " (see: vslice-registry --help)\n");
	return EXIT_VSLICE;
}

static int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *db = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			db = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			return bad_usage("init: unknown option or missing value%s", "");
		}
	}
	if (!db || optind != argc)
		return bad_usage("init: expected --db PATH%s", "");
	struct vs_error err;
	cleanup_free char *token = NULL;
	if (registry_init_db(db, &token, &err) < 0)
		return fail("init", &err);
	printf("vslice-registry: created %s (blobs in %s.d/)\n", db, db);
	printf("admin token (shown once; keep it):\n%s\n", token);
	return 0;
}

/* Read a PEM file given with option (--tls-cert, --tls-key) into *pem;
 * on failure one line naming the option. key: want a private key. */
static int read_pem(const char *option, const char *path, bool key, char **pem)
{
	struct vs_error err;
	char p[256];
	if (vs_read_file(path, 1u << 20, pem, NULL, &err) < 0) {
		vs_error_wrap(&err, "%s", option);
		return fail(NULL, &err);
	}
	/* A certificate file holds CERTIFICATE blocks; a key file one of
	 * "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"... */
	bool ok = key ? strstr(*pem, "-----BEGIN ") && strstr(*pem, "PRIVATE KEY-----")
		      : strstr(*pem, "-----BEGIN CERTIFICATE-----") != NULL;
	if (!ok) {
		fprintf(stderr, "vslice-registry: %s: %s is not a PEM %s (no \"-----BEGIN %s\")\n",
			option, vs_printable(path, p, sizeof(p)),
			key ? "private key" : "certificate",
			key ? "... PRIVATE KEY-----" : "CERTIFICATE-----");
		return EXIT_VSLICE;
	}
	return 0;
}

/* Loopback: 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. Anything else (0.0.0.0
 * included) can be reached from elsewhere. */
static bool is_loopback(const char *listen)
{
	struct sockaddr_storage ss;
	struct vs_error err;
	if (vs_parse_listen(listen, &ss, &err) < 0)
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);

	static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
					     {"listen", required_argument, NULL, 'l'},
					     {"heartbeat", required_argument, NULL, 'b'},
					     {"lost-after", required_argument, NULL, 'L'},
					     {"threads", required_argument, NULL, 't'},
					     {"per-address-limit", required_argument, NULL, 'P'},
					     {"migration-timeout", required_argument, NULL, 'M'},
					     {"tls-cert", required_argument, NULL, 'c'},
					     {"tls-key", required_argument, NULL, 'k'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *db = NULL, *listen = REGISTRY_DEFAULT_LISTEN;
	const char *tls_cert = NULL, *tls_key = NULL;
	struct registry_opts ro = {0};
	struct vs_error err;
	uint64_t v;
	char *end;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			db = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 'c':
			tls_cert = optarg;
			break;
		case 'k':
			tls_key = optarg;
			break;
		case 'b':
			if (vs_parse_duration(optarg, &v, &err) < 0 || v == 0 || v > 3600)
				return bad_usage("--heartbeat: \"%s\" is not a duration (1s to 1h)",
						 optarg);
			ro.heartbeat_secs = (unsigned)v;
			break;
		case 'L':
		case 't':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || v == 0 || v > 1000)
				return bad_usage(
				    c == 'L' ? "--lost-after: \"%s\" is not a count (1 to 1000)"
					     : "--threads: \"%s\" is not a count (1 to 1000)",
				    optarg);
			if (c == 'L')
				ro.lost_after = (unsigned)v;
			else
				ro.threads = (unsigned)v;
			break;
		case 'P':
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || v > 1000000)
				return bad_usage("--per-address-limit: \"%s\" is not a count (0 to "
						 "1000000; 0: no limit)",
						 optarg);
			ro.per_address_limit = v ? (unsigned)v : REGISTRY_NO_ADDRESS_LIMIT;
			break;
		case 'M':
			if (vs_parse_duration(optarg, &v, &err) < 0 || v == 0 || v > 86400)
				return bad_usage(
				    "--migration-timeout: \"%s\" is not a duration (1s "
				    "to 1d)",
				    optarg);
			ro.migration_timeout_secs = (unsigned)v;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			return bad_usage("unknown option or missing value%s", "");
		}
	}
	if (optind != argc)
		return bad_usage("unexpected argument \"%s\"", argv[optind]);
	if (!db)
		return bad_usage("--db PATH is required%s", "");
	if (tls_cert && !tls_key)
		return bad_usage("--tls-cert needs --tls-key FILE (its private key)%s", "");
	if (tls_key && !tls_cert)
		return bad_usage("--tls-key needs --tls-cert FILE (its certificate)%s", "");
	/* Read before anything starts: a bad file is one line and exit 125.
	 * The key stays in memory for the process's life (MHD holds it). */
	cleanup_free char *cert_pem = NULL, *key_pem = NULL;
	if (tls_cert && read_pem("--tls-cert", tls_cert, false, &cert_pem))
		return EXIT_VSLICE;
	if (tls_key && read_pem("--tls-key", tls_key, true, &key_pem))
		return EXIT_VSLICE;

	/* Block the signals before any thread starts, so only sigwait sees them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* One connection per node manager's long-poll: take every fd we may. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}

	struct registry *reg = NULL;
	if (registry_open(db, &ro, &reg, &err) < 0)
		return fail(NULL, &err);
	if (registry_serve_tls(reg, listen, cert_pem, key_pem, &err) < 0) {
		registry_close(reg);
		return fail(NULL, &err);
	}
	cleanup_free char *shown = vs_xstrdup(listen);
	char *colon = strrchr(shown, ':');
	if (colon)
		*colon = '\0';
	fprintf(stderr, "vslice-registry: listening on %s:%u (db %s)%s\n", shown,
		registry_port(reg), db, cert_pem ? ", https" : "");
	if (!cert_pem && !is_loopback(listen))
		fprintf(stderr,
			"vslice-registry: warning: serving plain HTTP on %s:%u: tokens travel in "
			"clear text (give --tls-cert FILE --tls-key FILE)\n",
			shown, registry_port(reg));
	int sig = 0;
	sigwait(&set, &sig);
	fprintf(stderr, "vslice-registry: %s, stopping\n", strsignal(sig));
	registry_close(reg);
	return 0;
}
