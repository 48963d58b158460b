/*
 * vslice-nodemgr - the node manager: registers this node with a registry,
 * runs the slivers assigned to it and reports their state, logs and results
 * (docs/cluster-api.md; the work is in lib/node/nodemgr*.c). Slivers never
 * depend on this process: stopping it (SIGTERM, SIGINT) stops polling and
 * reporting, and a restarted node manager adopts them again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vslice/nodemgr.h"
#include "vslice/slice.h"
#include "vslice/sliver.h"
#include "vslice/units.h"
#include "vslice/util.h"
#include "vslice_version.h"

#define EXIT_USAGE 125
#define EXIT_FAIL  1

static const char help[] =
    "usage: vslice-nodemgr --registry URL --name NODE --token TOKEN [options]\n\n"
    "Register this node with a vslice registry and run the slivers it assigns here:\n"
    "create and start each assigned sliver (detached), destroy the ones it made that are\n"
    "no longer assigned, and report their state, logs and result files (at once when a\n"
    "sliver changes, and every heartbeat).\n"
    "The last assignments are cached under ROOT/nodemgr, so slivers keep running while\n"
    "the registry is away. SIGTERM/SIGINT stop the node manager, not the slivers.\n\n"
    "  --registry URL     the registry, e.g. http://registry:7480\n"
    "  --name NODE        this node's name ([A-Za-z0-9][A-Za-z0-9._-]{0,62})\n"
    "  --token TOKEN      a node token (vsn_...); or the environment's VSLICE_TOKEN\n"
    "  --ca FILE          the CA (PEM) an https:// registry's certificate must chain to\n"
    "                     (default: $VSLICE_CA, else the system's CAs)\n"
    "  --root DIR         state root (default $VSLICE_ROOT or /var/lib/vslice)\n"
    "  --cgroup-parent P  cgroup parent of the slivers (default $VSLICE_CGROUP_PARENT,\n"
    "                     else the one recorded in ROOT, else vslice-NODE)\n"
    "  --label K=V        a node label the scheduler matches (repeatable)\n"
    "  --heartbeat DUR    seconds between status reports (default: the registry's)\n"
    "  --cpus N           cpus offered (default: this machine's)\n"
    "  --memory SIZE      memory offered, e.g. 8G (default: this machine's)\n"
    "  --default-memory SIZE  memory limit of a sliver whose manifest sets none\n"
    "                     (default: 1G, or half of --memory if that is less; 0: none)\n"
    "  --default-pids N   pids limit of a sliver whose manifest sets none\n"
    "                     (default: 1024; 0: none)\n"
    "  --default-disk SIZE  disk limit of a sliver whose manifest sets none: its files\n"
    "                     in an ext4 image of SIZE, 16M to 16T (default: 0, none)\n"
    "  --listen ADDR:PORT the node manager's API: GET /v1/status (no token) and\n"
    "                     PUT /v1/transfers/ID (a migration's stream to this node,\n"
    "                     with its one-time transfer token), e.g. 10.0.0.2:7481\n"
    "  --advertise URL    the URL other nodes reach --listen at, sent to the registry\n"
    "                     (default: http(s)://ADDR:PORT of --listen; needed when ADDR\n"
    "                     is 0.0.0.0 or ::, else this node is no migration target)\n"
    "  --tls-cert FILE    serve --listen over HTTPS with this PEM certificate (chain,\n"
    "                     leaf first; sources verify it against their --ca)\n"
    "  --tls-key FILE     ... and this PEM private key (both or neither)\n"
    "  --overlay-local ADDR  this node's IPv4 address between the nodes: bridged\n"
    "                     slivers of every node share one L2 segment over VXLAN\n"
    "                     from here (default: $VSLICE_OVERLAY_LOCAL; none: this\n"
    "                     node gets no bridged slivers in a cluster with an overlay)\n"
    "  --overlay-vni N    the cluster's VXLAN id, the same on every node (default:\n"
    "                     $VSLICE_OVERLAY_VNI; both or neither)\n"
    "  -v, --verbose      log more (every poll, every decision)\n"
    "  -h, --help         this text\n\n"
    "One node manager per root and per cgroup parent: a second one on the same\n"
    "ROOT or cgroup parent refuses to start (give each its own ROOT; the parent is\n"
    "derived from --name), and so does one whose --listen port is in use.\n"
    "Test hook: VSLICE_FAULT=nodemgr.create:N or nodemgr.destroy:N SIGKILLs the node\n"
    "manager right after step N of a sliver's create or destroy (docs/cluster.md);\n"
    "migrate.out:N / migrate.in:N after step N of a migration, migrate.flip:N flips\n"
    "byte N of a stream received (docs/migration.md).\n";

static const char *node_name = "-";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
	char buf[512], shown[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vslice-nodemgr: %s (see: vslice-nodemgr --help)\n",
		vs_printable(buf, shown, sizeof(shown)));
	return EXIT_USAGE;
}

static void log_line(void *arg, enum nodemgr_log_level level, const char *line)
{
	/* UTC with milliseconds: the log is all an operator has to order events. */
	struct timespec ts;
	struct tm tm;
	char when[32] = "";
	clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ vslice-nodemgr %s: %s\n", when, ts.tv_nsec / 1000000, node_name,
		line);
}

static uint64_t machine_memory(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb = 0;
	char line[256];
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

/* Read a PEM file given with option (--tls-cert, --tls-key) into *pem;
 * on failure one line naming the option (exit code returned). key: want a
 * private key. */
static int read_pem(const char *option, const char *path, bool key, char **pem)
{
	struct vs_error err;
	char p[256];
	if (vs_read_file(path, 1u << 20, pem, NULL, &err) < 0)
		return usage("%s: %s", option, err.msg);
	bool ok = key ? strstr(*pem, "-----BEGIN ") && strstr(*pem, "PRIVATE KEY-----")
		      : strstr(*pem, "-----BEGIN CERTIFICATE-----") != NULL;
	if (!ok)
		return usage("%s: %s is not a PEM %s", option, vs_printable(path, p, sizeof(p)),
			     key ? "private key" : "certificate");
	return 0;
}

static struct nodemgr *running;

static void on_signal(int sig)
{
	if (running)
		nodemgr_stop(running);
}

int main(int argc, char **argv)
{
	enum {
		OPT_REGISTRY = 256,
		OPT_NAME,
		OPT_TOKEN,
		OPT_ROOT,
		OPT_LABEL,
		OPT_HEARTBEAT,
		OPT_CPUS,
		OPT_MEMORY,
		OPT_LISTEN,
		OPT_CA,
		OPT_CGROUP_PARENT,
		OPT_DEFAULT_MEMORY,
		OPT_DEFAULT_PIDS,
		OPT_DEFAULT_DISK,
		OPT_ADVERTISE,
		OPT_TLS_CERT,
		OPT_TLS_KEY,
		OPT_OVERLAY_LOCAL,
		OPT_OVERLAY_VNI
	};
	static const struct option longopts[] = {
	    {"registry", required_argument, NULL, OPT_REGISTRY},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"token", required_argument, NULL, OPT_TOKEN},
	    {"root", required_argument, NULL, OPT_ROOT},
	    {"label", required_argument, NULL, OPT_LABEL},
	    {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
	    {"cpus", required_argument, NULL, OPT_CPUS},
	    {"memory", required_argument, NULL, OPT_MEMORY},
	    {"listen", required_argument, NULL, OPT_LISTEN},
	    {"ca", required_argument, NULL, OPT_CA},
	    {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
	    {"default-memory", required_argument, NULL, OPT_DEFAULT_MEMORY},
	    {"default-pids", required_argument, NULL, OPT_DEFAULT_PIDS},
	    {"default-disk", required_argument, NULL, OPT_DEFAULT_DISK},
	    {"advertise", required_argument, NULL, OPT_ADVERTISE},
	    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
	    {"overlay-local", required_argument, NULL, OPT_OVERLAY_LOCAL},
	    {"overlay-vni", required_argument, NULL, OPT_OVERLAY_VNI},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct nodemgr_opts o = {.log = log_line,
				 .default_pids = NODEMGR_DEFAULT_PIDS,
				 .default_disk = NODEMGR_DEFAULT_DISK};
	bool default_memory_set = false;
	const char *listen = NULL, *cgroup_parent = NULL, *tls_cert = NULL, *tls_key = NULL;
	const char *overlay_local = NULL, *overlay_vni = NULL;
	cleanup_free char *cert_pem = NULL, *key_pem = NULL;
	/* Freed on every return (usage errors and --help too: the ASan build checks leaks). */
	cleanup_free char **labels = vs_xcalloc((size_t)argc + 1, sizeof(char *));
	size_t nlabels = 0;
	struct vs_error err;
	uint64_t v;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+vh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_REGISTRY:
			o.registry = optarg;
			break;
		case OPT_NAME:
			o.name = optarg;
			break;
		case OPT_TOKEN:
			o.token = optarg;
			break;
		case OPT_ROOT:
			o.root = optarg;
			break;
		case OPT_LABEL: {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg)
				return usage("--label \"%s\": use KEY=VALUE", optarg);
			labels[nlabels++] = optarg;
			break;
		}
		case OPT_HEARTBEAT:
			if (vs_parse_duration(optarg, &v, &err) < 0 || v == 0 || v > 3600)
				return usage("--heartbeat \"%s\": use a duration from 1s to 1h",
					     optarg);
			o.heartbeat_secs = (unsigned)v;
			break;
		case OPT_CPUS:
			if (vs_parse_cpus(optarg, &v, &err) < 0)
				return usage("--cpus: %s", err.msg);
			o.cpus = (double)v / 1000.0;
			break;
		case OPT_MEMORY:
			if (vs_parse_size(optarg, &v, &err) < 0 || v == 0)
				return usage("--memory \"%s\": use a size such as 8G", optarg);
			o.memory = v;
			break;
		case OPT_LISTEN:
			listen = optarg;
			break;
		case OPT_CA:
			o.ca_file = optarg;
			break;
		case OPT_CGROUP_PARENT:
			cgroup_parent = optarg;
			break;
		case OPT_ADVERTISE:
			o.advertise = optarg;
			break;
		case OPT_TLS_CERT:
			tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			tls_key = optarg;
			break;
		case OPT_OVERLAY_LOCAL: {
			struct in_addr ia;
			if (inet_pton(AF_INET, optarg, &ia) != 1 || ia.s_addr == 0)
				return usage("--overlay-local \"%s\": use this node's IPv4 "
					     "address on the network between the nodes",
					     optarg);
			overlay_local = optarg;
			break;
		}
		case OPT_OVERLAY_VNI: {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n < 1 ||
			    n > 16777215)
				return usage("--overlay-vni \"%s\": use a number from 1 to "
					     "16777215 (the cluster's VXLAN id)",
					     optarg);
			overlay_vni = optarg;
			break;
		}
		case OPT_DEFAULT_MEMORY:
			/* The manifest's own minimum: a smaller limit cannot run anything. */
			if (vs_parse_size(optarg, &v, &err) < 0 || (v > 0 && v < (4u << 20)))
				return usage("--default-memory \"%s\": use a size of at least 4M "
					     "(e.g. 512M), or 0 for none",
					     optarg);
			o.default_memory = v;
			default_memory_set = true;
			break;
		case OPT_DEFAULT_PIDS: {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || n > 4194304)
				return usage("--default-pids \"%s\": use a number from 1 to "
					     "4194304, or 0 for none",
					     optarg);
			o.default_pids = n;
			break;
		}
		case OPT_DEFAULT_DISK:
			/* What resources.disk takes (the image's own bounds). */
			if (vs_parse_size(optarg, &v, &err) < 0 ||
			    (v > 0 && (v < SLIVER_DISK_MIN || v > SLIVER_DISK_MAX)))
				return usage("--default-disk \"%s\": use a size from 16M to 16T "
					     "(e.g. 10G), or 0 for none",
					     optarg);
			o.default_disk = v;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		case 'V':
			printf("vslice-nodemgr %s\n", VSLICE_VERSION);
			return 0;
		default:
			return usage("unknown option or missing value: \"%s\"",
				     argv[optind - 1] ? argv[optind - 1] : "");
		}
	}
	if (optind < argc)
		return usage("unexpected argument \"%s\"", argv[optind]);
	if (!o.token)
		o.token = getenv("VSLICE_TOKEN");
	if (!o.ca_file)
		o.ca_file = getenv("VSLICE_CA");
	if (!o.registry)
		return usage("missing --registry URL");
	if (strncmp(o.registry, "http://", 7) && strncmp(o.registry, "https://", 8))
		return usage("--registry \"%s\": use an http:// or https:// URL", o.registry);
	if (!o.name)
		return usage("missing --name NODE");
	if (!nodemgr_node_name_valid(o.name))
		return usage("--name \"%s\": use [A-Za-z0-9][A-Za-z0-9._-]{0,62}", o.name);
	if (!o.token || !o.token[0])
		return usage("missing --token TOKEN (or VSLICE_TOKEN)");
	if (listen && nodemgr_listen_check(listen, &err) < 0)
		return usage("%s", err.msg);
	if (!tls_cert != !tls_key)
		return usage("%s", tls_cert ? "--tls-cert needs --tls-key FILE (its private key)"
					    : "--tls-key needs --tls-cert FILE (its certificate)");
	if (!overlay_local != !overlay_vni)
		return usage("%s", overlay_local ? "--overlay-local needs --overlay-vni N"
						 : "--overlay-vni needs --overlay-local ADDR");
	/* The overlay's settings are netcfg's (VSLICE_OVERLAY_*): the slivers'
	 * network set-up below reads them from the environment. */
	if (overlay_local && (setenv("VSLICE_OVERLAY_LOCAL", overlay_local, 1) < 0 ||
			      setenv("VSLICE_OVERLAY_VNI", overlay_vni, 1) < 0))
		return usage("--overlay-local: %s", strerror(errno));
	if ((tls_cert || o.advertise) && !listen)
		return usage("%s needs --listen ADDR:PORT",
			     tls_cert ? "--tls-cert" : "--advertise");
	int rp;
	if (tls_cert && ((rp = read_pem("--tls-cert", tls_cert, false, &cert_pem)) ||
			 (rp = read_pem("--tls-key", tls_key, true, &key_pem))))
		return rp;
	o.tls_cert_pem = cert_pem;
	o.tls_key_pem = key_pem;
	if (listen) {
		cleanup_free char *url = NULL;
		if (nodemgr_advertise_url(listen, 1, o.advertise, cert_pem != NULL, &url, &err) < 0)
			return usage("%s", err.msg);
	}
	if (!o.root)
		o.root = slice_default_root();
	if (!o.cpus) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o.cpus = n > 0 ? (double)n : 1.0;
	}
	if (!o.memory)
		o.memory = machine_memory();
	if (!default_memory_set) {
		o.default_memory = NODEMGR_DEFAULT_MEMORY;
		if (o.memory / 2 < o.default_memory && o.memory / 2 >= (4u << 20))
			o.default_memory = o.memory / 2;
	}
	o.labels = labels;
	o.listen = listen;
	node_name = o.name;

	/* One cgroup parent per node manager on a machine: derived from the
	 * node unless given. Everything below (slivers, the lock) reads it
	 * from the environment, as slicectl does. */
	cleanup_free char *parent = NULL;
	if (nodemgr_cgroup_parent(o.root, o.name,
				  cgroup_parent ? cgroup_parent : getenv("VSLICE_CGROUP_PARENT"),
				  &parent, &err) < 0)
		return usage("%s%s", cgroup_parent ? "--cgroup-parent: " : "VSLICE_CGROUP_PARENT: ",
			     err.msg);
	setenv("VSLICE_CGROUP_PARENT", parent, 1);

	struct nodemgr *nm;
	if (nodemgr_new(&o, &nm, &err) < 0) {
		char m[VS_ERROR_MAX];
		fprintf(stderr, "vslice-nodemgr: %s\n", vs_printable(err.msg, m, sizeof(m)));
		return EXIT_FAIL;
	}
	running = nm;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int r = nodemgr_run(nm, &err);
	if (r < 0) {
		char m[VS_ERROR_MAX];
		fprintf(stderr, "vslice-nodemgr: %s\n", vs_printable(err.msg, m, sizeof(m)));
	}
	nodemgr_free(nm);
	return r < 0 ? EXIT_FAIL : 0;
}
