/* Bridged networking: what users type (--net, --publish, --net-rate, the
 * node's bridge settings) and the lease file (lib/netcfg/ipam.c). The
 * kernel side is tested in tests/integration/test_net.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/netcfg/netcfg_int.h"
#include "vslice/experiment.h"
#include "vslice/manifest.h"
#include "vslice/util.h"

static void test_mode(void **state)
{
	struct vs_error err;
	bool br;
	struct netcfg_slice o;
	assert_int_equal(netcfg_parse_mode("bridge", &br, &o, &err), 0);
	assert_true(br && !o.no_egress && !o.ip[0]);
	assert_int_equal(netcfg_parse_mode("bridge,no-egress", &br, &o, &err), 0);
	assert_true(br && o.no_egress);
	assert_int_equal(netcfg_parse_mode("none", &br, &o, &err), 0);
	assert_false(br);
	assert_true(netcfg_parse_mode("brige", &br, &o, &err) < 0);
	assert_non_null(strstr(err.msg, "\"brige\""));
	assert_true(netcfg_parse_mode("bridge,no-egres", &br, &o, &err) < 0);
	/* ip=: a fixed address (the overlay's cluster-wide one) */
	assert_int_equal(netcfg_parse_mode("bridge,ip=10.213.0.7", &br, &o, &err), 0);
	assert_true(br && !o.no_egress);
	assert_string_equal(o.ip, "10.213.0.7");
	assert_int_equal(netcfg_parse_mode("bridge,no-egress,ip=10.213.1.2", &br, &o, &err), 0);
	assert_true(br && o.no_egress);
	assert_string_equal(o.ip, "10.213.1.2");
	const char *bad[] = {"bridge,ip=",	   "bridge,ip=10.213.0",  "bridge,ip=10.213.0.256",
			     "bridge,ip=fd00::1",  "bridgeX,ip=10.0.0.2", "host,ip=10.0.0.2",
			     "bridge,ip=1.2.3.4 ", "ip=10.0.0.2"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
		assert_true(netcfg_parse_mode(bad[i], &br, &o, &err) < 0);
		assert_non_null(strstr(err.msg, "network \""));
	}
}

static void test_publish(void **state)
{
	struct vs_error err;
	struct netcfg_publish p;
	assert_int_equal(netcfg_parse_publish("8080:80", &p, &err), 0);
	assert_true(p.host_port == 8080 && p.slice_port == 80 && !p.udp);
	assert_int_equal(netcfg_parse_publish("5353:53/udp", &p, &err), 0);
	assert_true(p.host_port == 5353 && p.slice_port == 53 && p.udp);
	assert_int_equal(netcfg_parse_publish("1:65535/tcp", &p, &err), 0);
	const char *bad[] = {"",	 "80",	       ":80",	  "80:",  "0:80",
			     "80:65536", "80:80/sctp", "80:80/",  "a:80", "80:8 0",
			     "-1:80",	 "123456:80",  "80:80:80"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
		assert_true(netcfg_parse_publish(bad[i], &p, &err) < 0);
		assert_non_null(strstr(err.msg, "publish"));
	}
}

static void test_rate(void **state)
{
	struct vs_error err;
	uint64_t v;
	char buf[32];
	assert_int_equal(netcfg_parse_rate("10mbit", &v, &err), 0);
	assert_int_equal(v, 10000000);
	assert_string_equal(netcfg_format_rate(v, buf, sizeof(buf)), "10mbit");
	assert_int_equal(netcfg_parse_rate("2mbps", &v, &err), 0);
	assert_int_equal(v, 16000000);
	assert_int_equal(netcfg_parse_rate("1gbit", &v, &err), 0);
	assert_string_equal(netcfg_format_rate(v, buf, sizeof(buf)), "1gbit");
	assert_int_equal(netcfg_parse_rate("500kbit", &v, &err), 0);
	assert_int_equal(netcfg_parse_rate("100000", &v, &err), 0);
	assert_int_equal(v, 100000);
	const char *bad[] = {"",     "fast", "10 mbit", "-1mbit", "1.5mbit",
			     "10mb", "mbit", "1bit",	"17gbit", "99999999999999999999gbit"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad); i++) {
		assert_true(netcfg_parse_rate(bad[i], &v, &err) < 0);
		assert_non_null(strstr(err.msg, "rate"));
	}
}

static void test_node_config(void **state)
{
	struct vs_error err;
	struct netcfg_node n;
	unsetenv("VSLICE_BRIDGE");
	unsetenv("VSLICE_BRIDGE_SUBNET");
	assert_int_equal(netcfg_node_config(&n, &err), 0);
	assert_string_equal(n.bridge, NETCFG_DEFAULT_BRIDGE);
	assert_string_equal(n.subnet, NETCFG_DEFAULT_SUBNET);
	const char *bad_subnets[] = {"10.0.0.0",     "10.0.0.1/24",  "10.0.0.0/8",   "10.0.0.0/30",
				     "127.0.0.0/24", "224.1.0.0/24", "10.0.0.0/24x", "fd00::/64"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad_subnets); i++) {
		setenv("VSLICE_BRIDGE_SUBNET", bad_subnets[i], 1);
		assert_true(netcfg_node_config(&n, &err) < 0);
		assert_non_null(strstr(err.msg, "VSLICE_BRIDGE_SUBNET"));
	}
	unsetenv("VSLICE_BRIDGE_SUBNET");
	const char *bad_bridges[] = {"a-name-far-too-long", "br/0", "vsh0", "vsi0", "br 0"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad_bridges); i++) {
		setenv("VSLICE_BRIDGE", bad_bridges[i], 1);
		assert_true(netcfg_node_config(&n, &err) < 0);
		assert_non_null(strstr(err.msg, "VSLICE_BRIDGE"));
	}
	unsetenv("VSLICE_BRIDGE");

	/* The overlay: both variables or neither; its default subnet is a /16. */
	setenv("VSLICE_OVERLAY_VNI", "42", 1);
	setenv("VSLICE_OVERLAY_LOCAL", "10.216.1.11", 1);
	assert_int_equal(netcfg_node_config(&n, &err), 0);
	assert_int_equal(n.vni, 42);
	assert_string_equal(n.underlay, "10.216.1.11");
	assert_string_equal(n.subnet, NETCFG_OVERLAY_SUBNET);
	const char *bad_vnis[] = {"0", "16777216", "-1", "4x", "", " 4"};
	for (size_t i = 0; i < VS_ARRAY_SIZE(bad_vnis); i++) {
		setenv("VSLICE_OVERLAY_VNI", bad_vnis[i], 1);
		assert_true(netcfg_node_config(&n, &err) < 0);
		assert_non_null(strstr(err.msg, "VSLICE_OVERLAY_"));
	}
	setenv("VSLICE_OVERLAY_VNI", "42", 1);
	setenv("VSLICE_OVERLAY_LOCAL", "node-a", 1);
	assert_true(netcfg_node_config(&n, &err) < 0);
	assert_non_null(strstr(err.msg, "VSLICE_OVERLAY_LOCAL \"node-a\""));
	unsetenv("VSLICE_OVERLAY_LOCAL");
	assert_true(netcfg_node_config(&n, &err) < 0);
	assert_non_null(strstr(err.msg, "set both or neither"));
	unsetenv("VSLICE_OVERLAY_VNI");
	assert_int_equal(netcfg_node_config(&n, &err), 0);
	assert_int_equal(n.vni, 0);
}

/* Leases: lowest free address after the gateway, kept across a save/load,
 * freed on release, the subnet full at its size; no leases: no file. */
static void test_leases(void **state)
{
	struct vs_error err;
	char root[] = "/tmp/vslice-unit-netcfg.XXXXXX";
	assert_non_null(mkdtemp(root));
	struct netcfg_node node = {.bridge = "vsbrt"};
	snprintf(node.subnet, sizeof(node.subnet), "10.9.8.0/29");
	int lock = ipam_lock(root, &err);
	assert_true(lock >= 0);
	struct ipam_state st;
	assert_int_equal(ipam_load(root, &node, &st, &err), 0);
	assert_int_equal(st.n, 0);
	struct ipam_lease *l;
	char ip[16];
	const char *names[] = {"s1", "s2", "s3", "s4", "s5"};
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(ipam_alloc(&st, names[i], 0, &l, &err), 0);
		ipam_fmt(l->ip, ip);
		char want[16];
		snprintf(want, sizeof(want), "10.9.8.%zu", i + 2);
		assert_string_equal(ip, want);
	}
	assert_true(ipam_alloc(&st, "s6", 0, &l, &err) < 0); /* .7 is broadcast */
	assert_int_equal(err.kind, VS_EK_LIMIT);
	l = ipam_find(&st, "s2");
	l->want.rate_bps = 10000000;
	l->want.no_egress = true;
	l->want.publish[0] = (struct netcfg_publish){.host_port = 8080, .slice_port = 80};
	l->want.n_publish = 1;
	ipam_release(&st, "s1");
	assert_int_equal(ipam_save(root, &st, &err), 0);
	ipam_state_free(&st);

	/* Another node setting does not move existing leases. */
	snprintf(node.subnet, sizeof(node.subnet), "10.7.0.0/24");
	assert_int_equal(ipam_load(root, &node, &st, &err), 0);
	assert_int_equal(st.n, 4);
	l = ipam_find(&st, "s2");
	assert_non_null(l);
	ipam_fmt(l->ip, ip);
	assert_string_equal(ip, "10.9.8.3");
	assert_true(l->want.no_egress && l->want.rate_bps == 10000000 && l->want.n_publish == 1 &&
		    l->want.publish[0].host_port == 8080);
	assert_int_equal(ipam_alloc(&st, "s6", 0, &l, &err), 0);
	ipam_fmt(l->ip, ip);
	assert_string_equal(ip, "10.9.8.2"); /* s1's, freed */
	/* A fixed address: checked against the subnet and the other leases. */
	uint32_t a;
	assert_true(ipam_slice_addr(&st, "10.9.8.1", "ip=", &a, &err) < 0); /* gateway */
	assert_true(ipam_slice_addr(&st, "10.9.8.7", "ip=", &a, &err) < 0); /* broadcast */
	assert_true(ipam_slice_addr(&st, "10.9.9.2", "ip=", &a, &err) < 0);
	assert_non_null(strstr(err.msg, "ip= 10.9.9.2: not a slice address"));
	assert_int_equal(ipam_slice_addr(&st, "10.9.8.3", "ip=", &a, &err), 0);
	assert_true(ipam_alloc(&st, "s7", a, &l, &err) < 0); /* s2's */
	assert_int_equal(err.kind, VS_EK_BUSY);
	assert_non_null(strstr(err.msg, "held by slice s2"));
	assert_null(ipam_find(&st, "s7"));
	for (size_t i = 0; i < 5; i++)
		ipam_release(&st, i ? names[i] : "s6");
	assert_int_equal(st.n, 0);
	assert_int_equal(ipam_save(root, &st, &err), 0);
	ipam_state_free(&st);
	char *path = vs_xasprintf("%s/net/leases.json", root);
	assert_int_not_equal(access(path, F_OK), 0);

	/* A damaged lease file is refused, not half-read. */
	const char *bad = "{\"bridge\":\"vsbrt\",\"subnet\":\"10.9.8.0/29\",\"forward_was\":-1,"
			  "\"leases\":{\"x\":{\"ip\":\"10.9.8.1\",\"veth\":\"vsh1\",\"ifb\":"
			  "\"vsi1\",\"no_egress\":false,\"rate_bps\":0,\"publish\":[]}}}";
	assert_int_equal(vs_write_file_atomic(path, bad, strlen(bad), 0600, &err), 0);
	assert_true(ipam_load(root, &node, &st, &err) < 0);
	assert_non_null(strstr(err.msg, "bad lease \"x\""));
	free(path);
	close(lock);
	assert_int_equal(vs_rm_rf(root, &err), 0);
}

/* The manifest's .network object reaches the slice spec; errors name the field. */
static void test_manifest_network(void **state)
{
	const char *ok =
	    "{\"apiVersion\": \"vslice/v1\", \"slice\": \"n1\", \"network\": "
	    "{\"mode\": \"bridge,no-egress\", \"publish\": [\"8080:80\", "
	    "\"5353:53/udp\"], \"rate\": \"10mbit\"}, \"run\": {\"command\": \"true\"}}";
	struct manifest *m = NULL;
	struct manifest_errors e = {0};
	struct vs_error err;
	assert_int_equal(manifest_parse(ok, strlen(ok), NULL, &m, &e), 0);
	struct slice_spec spec;
	assert_int_equal(experiment_spec(m, &spec, &err), 0);
	assert_int_equal(spec.net, SLICE_NET_BRIDGE);
	assert_true(spec.netopts.no_egress);
	assert_int_equal(spec.netopts.rate_bps, 10000000);
	assert_int_equal(spec.netopts.n_publish, 2);
	assert_true(spec.netopts.publish[1].udp && spec.netopts.publish[1].host_port == 5353);
	slice_spec_free(&spec);
	manifest_free(m);
	manifest_errors_free(&e);

	const char *bad =
	    "{\"apiVersion\": \"vslice/v1\", \"slice\": \"n1\", \"network\": "
	    "{\"mode\": \"host\", \"publish\": [\"80\", \"8080:80\"], \"rate\": \"fast\"}, "
	    "\"run\": {\"command\": \"true\"}}";
	m = NULL;
	memset(&e, 0, sizeof(e));
	assert_int_equal(manifest_parse(bad, strlen(bad), NULL, &m, &e), -EINVAL);
	assert_null(m);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	manifest_errors_print(&e, f, NULL);
	fclose(f);
	assert_non_null(strstr(text, ".network.publish[0]: publish \"80\""));
	assert_non_null(strstr(text, ".network.rate: rate \"fast\""));
	assert_non_null(strstr(text, "publish and rate need \"mode\": \"bridge\""));
	free(text);
	manifest_errors_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mode),   cmocka_unit_test(test_publish),
	    cmocka_unit_test(test_rate),   cmocka_unit_test(test_node_config),
	    cmocka_unit_test(test_leases), cmocka_unit_test(test_manifest_network),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
