/*
 * spec.c - slice spec.json and state.json: JSON <-> structs.
 *
 * These files sit in a directory root controls, but a bug or a hostile
 * edit must never make slicectl act on something that is not the slice:
 * every field is type-checked and range-checked on load, and a file that
 * fails is refused with the field named, never half-used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "node_internal.h"
#include "vslice/idrange.h"
#include "vslice/json.h"
#include "vslice/reaper.h"
#include "vslice/sliver.h"
#include "vslice/units.h"
#include "vslice/util.h"

const char *slice_status_name(enum slice_status s)
{
	switch (s) {
	case SLICE_CREATED:
		return "created";
	case SLICE_RUNNING:
		return "running";
	case SLICE_FROZEN:
		return "frozen";
	case SLICE_EXITED:
		return "exited";
	default:
		return "unknown";
	}
}

static int status_from_name(const char *s, enum slice_status *out)
{
	for (int i = SLICE_CREATED; i <= SLICE_EXITED; i++)
		if (!strcmp(s, slice_status_name((enum slice_status)i))) {
			*out = (enum slice_status)i;
			return 0;
		}
	return -1;
}

static const char *net_name(enum slice_net n)
{
	return n == SLICE_NET_HOST ? "host" : n == SLICE_NET_BRIDGE ? "bridge" : "none";
}

int slice_net_parse(const char *s, enum slice_net *out)
{
	if (!strcmp(s, "none"))
		*out = SLICE_NET_NONE;
	else if (!strcmp(s, "host"))
		*out = SLICE_NET_HOST;
	else if (!strcmp(s, "bridge"))
		*out = SLICE_NET_BRIDGE;
	else
		return -1;
	return 0;
}

void slice_spec_free(struct slice_spec *spec)
{
	if (!spec)
		return;
	free(spec->policy);
	free(spec->policy_text);
	free(spec->workdir);
	for (char **e = spec->env; e && *e; e++)
		free(*e);
	free(spec->env);
	for (char **a = spec->argv; a && *a; a++)
		free(*a);
	free(spec->argv);
	memset(spec, 0, sizeof(*spec));
}

static json_t *strv_to_json(char **v)
{
	json_t *a = json_array();
	for (; v && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

/* "network": {"egress": bool, "rate_bps": N, "publish": ["8080:80/tcp"...]} */
static json_t *netopts_to_json(const struct netcfg_slice *n)
{
	json_t *pub = json_array();
	for (size_t i = 0; i < n->n_publish; i++)
		json_array_append_new(pub, json_sprintf("%u:%u/%s", n->publish[i].host_port,
							n->publish[i].slice_port,
							n->publish[i].udp ? "udp" : "tcp"));
	json_t *j = json_pack("{s:b, s:I, s:o}", "egress", !n->no_egress, "rate_bps",
			      (json_int_t)n->rate_bps, "publish", pub);
	if (j && n->ip[0])
		json_object_set_new(j, "ip", json_string(n->ip));
	return j;
}

static int netopts_from_json(json_t *o, const char *f, struct netcfg_slice *n, struct vs_error *err)
{
	json_t *eg = json_object_get(o, "egress"), *rate = json_object_get(o, "rate_bps");
	json_t *pub = json_object_get(o, "publish"), *v;
	size_t i;
	if (!json_is_object(o) || !json_is_boolean(eg) || !json_is_integer(rate) ||
	    json_integer_value(rate) < 0 || !json_is_array(pub) ||
	    json_array_size(pub) > NETCFG_PUBLISH_MAX)
		return vs_error_set(err, EINVAL,
				    "%s: .network: expected {egress, rate_bps, publish}", f);
	n->no_egress = !json_is_true(eg);
	n->rate_bps = (uint64_t)json_integer_value(rate);
	/* "ip": a fixed address (--net bridge,ip=), optional */
	json_t *ip = json_object_get(o, "ip");
	struct in_addr in;
	if (ip && (!json_is_string(ip) || strlen(json_string_value(ip)) >= sizeof(n->ip) ||
		   inet_pton(AF_INET, json_string_value(ip), &in) != 1))
		return vs_error_set(err, EINVAL, "%s: .network.ip: expected an IPv4 address", f);
	if (ip)
		snprintf(n->ip, sizeof(n->ip), "%s", json_string_value(ip));
	json_array_foreach(pub, i, v)
	{
		if (!json_is_string(v) ||
		    netcfg_parse_publish(json_string_value(v), &n->publish[i], err) < 0)
			return vs_error_set(err, EINVAL, "%s: .network.publish[%zu]: bad port", f,
					    i);
	}
	n->n_publish = json_array_size(pub);
	return 0;
}

char *spec_to_json(const struct slice_spec *s)
{
	cleanup_json json_t *j = json_pack(
	    "{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:I, s:I, s:I, s:I, "
	    "s:I}",
	    "version", 1, "name", s->name, "image", s->image, "hostname", s->hostname, "policy",
	    s->policy ? s->policy : "default", "workdir", s->workdir ? s->workdir : "/",
	    "cpu_millis", (json_int_t)s->cpu_millis, "memory_bytes", (json_int_t)s->memory_bytes,
	    "pids_max", (json_int_t)s->pids_max, "lifetime_secs", (json_int_t)s->lifetime_secs,
	    "net", net_name(s->net), "env", strv_to_json(s->env), "argv", strv_to_json(s->argv),
	    "timeout_secs", (json_int_t)s->timeout_secs, "restart_max", (json_int_t)s->restart_max,
	    "id_base", (json_int_t)s->id_base, "created", (json_int_t)s->created, "expires",
	    (json_int_t)s->expires);
	if (j && s->ephemeral)
		json_object_set_new(j, "ephemeral", json_true());
	if (j && s->net == SLICE_NET_BRIDGE)
		json_object_set_new(j, "network", netopts_to_json(&s->netopts));
	if (j && s->disk_bytes)
		json_object_set_new(j, "disk_bytes", json_integer((json_int_t)s->disk_bytes));
	if (j && s->log_max_bytes)
		json_object_set_new(j, "log_max_bytes", json_integer((json_int_t)s->log_max_bytes));
	return j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
}

/* Field readers that name the field on error. */
static int get_str(json_t *o, const char *file, const char *key, char *buf, size_t len,
		   struct vs_error *err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return vs_error_set(err, EINVAL, "%s: .%s: expected a string", file, key);
	if (json_string_length(v) >= len || strlen(json_string_value(v)) != json_string_length(v))
		return vs_error_set(err, EINVAL, "%s: .%s: too long or contains NUL", file, key);
	snprintf(buf, len, "%s", json_string_value(v));
	return 0;
}

static int get_u64(json_t *o, const char *file, const char *key, uint64_t max, uint64_t *out,
		   struct vs_error *err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return vs_error_set(err, EINVAL, "%s: .%s: expected an integer 0..%llu", file, key,
				    (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_strv(json_t *o, const char *file, const char *key, char ***out, struct vs_error *err)
{
	json_t *a = json_object_get(o, key);
	if (!json_is_array(a))
		return vs_error_set(err, EINVAL, "%s: .%s: expected an array of strings", file,
				    key);
	size_t n = json_array_size(a);
	char **v = vs_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
			for (size_t k = 0; k < i; k++)
				free(v[k]);
			free(v);
			return vs_error_set(err, EINVAL, "%s: .%s[%zu]: expected a string", file,
					    key, i);
		}
		v[i] = vs_xstrdup(json_string_value(s));
	}
	*out = v;
	return 0;
}

int spec_from_json(const char *text, const char *dirname, struct slice_spec *s,
		   struct vs_error *err)
{
	const char *f = "spec.json";
	json_error_t je;
	memset(s, 0, sizeof(*s));
	cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j))
		return vs_error_set(err, EINVAL, "%s: not a JSON object (line %d: %s)", f,
				    j ? 0 : je.line, j ? "wrong type" : je.text);
	uint64_t v;
	char buf[PATH_MAX];
	int r;
	if ((r = get_str(j, f, "name", s->name, sizeof(s->name), err)) < 0 ||
	    (r = get_str(j, f, "image", s->image, sizeof(s->image), err)) < 0 ||
	    (r = get_str(j, f, "hostname", s->hostname, sizeof(s->hostname), err)) < 0)
		goto fail;
	if (strcmp(s->name, dirname) != 0) {
		r = vs_error_set(err, EINVAL, "%s: .name \"%s\" does not match the slice directory",
				 f, s->name);
		goto fail;
	}
	if (!vs_name_valid(s->image)) {
		r = vs_error_set(err, EINVAL, "%s: .image: invalid image name", f);
		goto fail;
	}
	if ((r = get_str(j, f, "policy", buf, sizeof(buf), err)) < 0)
		goto fail;
	s->policy = vs_xstrdup(buf);
	if ((r = get_str(j, f, "workdir", buf, sizeof(buf), err)) < 0)
		goto fail;
	s->workdir = vs_xstrdup(buf);
	if ((r = get_u64(j, f, "cpu_millis", 4096000, &s->cpu_millis, err)) < 0 ||
	    (r = get_u64(j, f, "memory_bytes", UINT64_MAX >> 1, &s->memory_bytes, err)) < 0 ||
	    (r = get_u64(j, f, "pids_max", 1u << 22, &s->pids_max, err)) < 0 ||
	    (r = get_u64(j, f, "lifetime_secs", UINT32_MAX, &s->lifetime_secs, err)) < 0 ||
	    (r = get_u64(j, f, "timeout_secs", UINT32_MAX, &s->timeout_secs, err)) < 0)
		goto fail;
	if ((r = get_u64(j, f, "restart_max", 1000, &v, err)) < 0)
		goto fail;
	s->restart_max = (unsigned)v;
	if ((r = get_u64(j, f, "id_base", UINT32_MAX, &v, err)) < 0)
		goto fail;
	if (v < IDRANGE_FIRST || (v - IDRANGE_FIRST) % IDRANGE_SIZE ||
	    (v - IDRANGE_FIRST) / IDRANGE_SIZE >= IDRANGE_SLOTS) {
		r = vs_error_set(err, EINVAL, "%s: .id_base: %llu is not a slice id range", f,
				 (unsigned long long)v);
		goto fail;
	}
	s->id_base = (uint32_t)v;
	if ((r = get_u64(j, f, "created", INT64_MAX, &v, err)) < 0)
		goto fail;
	s->created = (time_t)v;
	if ((r = get_u64(j, f, "expires", INT64_MAX, &v, err)) < 0)
		goto fail;
	s->expires = (time_t)v;
	char net[16];
	if ((r = get_str(j, f, "net", net, sizeof(net), err)) < 0)
		goto fail;
	if (slice_net_parse(net, &s->net) < 0) {
		r = vs_error_set(err, EINVAL, "%s: .net: expected none, host or bridge", f);
		goto fail;
	}
	json_t *netopts = json_object_get(j, "network");
	if (netopts && (r = netopts_from_json(netopts, f, &s->netopts, err)) < 0)
		goto fail;
	if ((r = get_strv(j, f, "env", &s->env, err)) < 0 ||
	    (r = get_strv(j, f, "argv", &s->argv, err)) < 0)
		goto fail;
	if (!s->argv[0]) {
		r = vs_error_set(err, EINVAL, "%s: .argv: empty", f);
		goto fail;
	}
	json_t *eph = json_object_get(j, "ephemeral");
	if (eph && !json_is_boolean(eph)) {
		r = vs_error_set(err, EINVAL, "%s: .ephemeral: expected true or false", f);
		goto fail;
	}
	s->ephemeral = eph && json_is_true(eph);
	/* Optional (slices made before --disk have none): 0 or an image size. */
	if (json_object_get(j, "disk_bytes") &&
	    (r = get_u64(j, f, "disk_bytes", SLIVER_DISK_MAX, &s->disk_bytes, err)) < 0)
		goto fail;
	if (s->disk_bytes && s->disk_bytes < SLIVER_DISK_MIN) {
		r = vs_error_set(err, EINVAL, "%s: .disk_bytes: less than the 16M minimum", f);
		goto fail;
	}
	if (json_object_get(j, "log_max_bytes") &&
	    (r = get_u64(j, f, "log_max_bytes", REAPER_LOG_MAX, &s->log_max_bytes, err)) < 0)
		goto fail;
	if (s->log_max_bytes && s->log_max_bytes < REAPER_LOG_MIN) {
		r = vs_error_set(err, EINVAL, "%s: .log_max_bytes: less than the 64K minimum", f);
		goto fail;
	}
	return 0;
fail:
	slice_spec_free(s);
	return r;
}

char *state_to_json(const struct slice_state *st)
{
	cleanup_json json_t *j = json_pack(
	    "{s:i, s:s, s:i, s:I, s:i, s:s, s:i, s:I, s:I, s:b, s:I, s:I}", "version", 1, "status",
	    slice_status_name(st->status), "pid", (int)st->pid, "pid_starttime",
	    (json_int_t)st->pid_starttime, "exit_code", st->exit_code, "exit_reason",
	    st->exit_reason, "restarts", (int)st->restarts, "started", (json_int_t)st->started,
	    "finished", (json_int_t)st->finished, "idmapped", st->idmapped, "oom_kills_base",
	    (json_int_t)st->oom_kills_base, "pids_refused_base", (json_int_t)st->pids_refused_base);
	return j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
}

int state_from_json(const char *text, struct slice_state *st, struct vs_error *err)
{
	const char *f = "state.json";
	json_error_t je;
	memset(st, 0, sizeof(*st));
	cleanup_json json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!j || !json_is_object(j))
		return vs_error_set(err, EINVAL, "%s: not a JSON object", f);
	char status[32];
	uint64_t v;
	int r;
	if ((r = get_str(j, f, "status", status, sizeof(status), err)) < 0)
		return r;
	if (status_from_name(status, &st->status) < 0)
		return vs_error_set(err, EINVAL, "%s: .status: unknown status \"%s\"", f, status);
	if ((r = get_u64(j, f, "pid", 1u << 22, &v, err)) < 0)
		return r;
	st->pid = (pid_t)v;
	if ((r = get_u64(j, f, "pid_starttime", UINT64_MAX >> 1, &st->pid_starttime, err)) < 0)
		return r;
	json_t *ec = json_object_get(j, "exit_code");
	if (!json_is_integer(ec) || json_integer_value(ec) < -1 || json_integer_value(ec) > 255)
		return vs_error_set(err, EINVAL, "%s: .exit_code: expected -1..255", f);
	st->exit_code = (int)json_integer_value(ec);
	if ((r = get_str(j, f, "exit_reason", st->exit_reason, sizeof(st->exit_reason), err)) < 0)
		return r;
	if ((r = get_u64(j, f, "restarts", 1000, &v, err)) < 0)
		return r;
	st->restarts = (unsigned)v;
	if ((r = get_u64(j, f, "started", INT64_MAX, &v, err)) < 0)
		return r;
	st->started = (time_t)v;
	if ((r = get_u64(j, f, "finished", INT64_MAX, &v, err)) < 0)
		return r;
	st->finished = (time_t)v;
	json_t *im = json_object_get(j, "idmapped");
	if (!json_is_boolean(im))
		return vs_error_set(err, EINVAL, "%s: .idmapped: expected true or false", f);
	st->idmapped = json_is_true(im);
	/* Absent in state files written before they existed: 0. */
	if (json_object_get(j, "oom_kills_base") &&
	    (r = get_u64(j, f, "oom_kills_base", INT64_MAX, &st->oom_kills_base, err)) < 0)
		return r;
	if (json_object_get(j, "pids_refused_base") &&
	    (r = get_u64(j, f, "pids_refused_base", INT64_MAX, &st->pids_refused_base, err)) < 0)
		return r;
	if ((st->status == SLICE_RUNNING || st->status == SLICE_FROZEN) &&
	    (st->pid <= 1 || !st->pid_starttime))
		return vs_error_set(err, EINVAL, "%s: .pid: a running slice needs a pid > 1", f);
	return 0;
}

int slice_spec_parse(const char *text, const char *name, struct slice_spec *spec,
		     struct vs_error *err)
{
	return spec_from_json(text, name, spec, err);
}
