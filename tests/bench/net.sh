#!/bin/bash
# Networking benchmarks (part of `make bench`; alone: `sudo bash tests/bench/net.sh`).
# One run, side by side, on network namespaces of this run only:
#   veth     two plain network namespaces on a veth pair (the floor)
#   bridge   two --net bridge slices on one node (veth -> bridge -> veth)
#   overlay  two --net bridge slices on two nodes joined by a veth underlay
#            (veth -> bridge -> VXLAN -> underlay -> VXLAN -> bridge -> veth)
# For each: TCP throughput of one flow (iperf3, BENCH_NET_SECS seconds,
# BENCH_NET_REPS runs, median) and round-trip time (busybox ping, 200 echoes 5 ms
# apart: min / avg). iperf3 and ping run from the host in the slices'
# network namespaces (nsenter --net): the path measured is the slices'. The
# throughput runs go round-robin (one run of every path per round, each
# round starting one path further on, every other round backwards), so a
# burst of load from elsewhere
# lands on every path alike; a path's share of veth is also given per round
# (median, min-max), and the CPU time iperf3's two ends were charged per GB
# (its cpu_utilization_percent; softirq work the kernel ran in some other
# task's time is not in it), which moves less with load than Gbit/s do.
# BENCH_NET_BEFORE=/path/to/an/older/slicectl adds bridge_before and
# overlay_before: the same two paths on nodes of their own set up by that
# build (its tables, its devices), in the same rounds.
# BENCH_NET_NOFAST=1 adds bridge_nofast and overlay_nofast: the same build
# with VSLICE_NET_FASTPATH=0 (every frame through the bridge, as before the
# fast path of lib/netcfg/fast.c) on nodes of their own, in the same rounds.
# BENCH_NET_BRNF=0|1 sets net.bridge.bridge-nf-call-iptables in the nodes'
# namespaces (the run's own); unset, they keep the kernel's default (1 in a
# new namespace once br_netfilter is loaded: bridged IPv4 then also meets
# the IPv4 hooks). net.md says which it was.
# BENCH_NET_NICE=-10 runs both iperf3 ends at that nice level on every path
# (a loaded machine's other work then takes less of their CPU; 0 by default).
# Then the set-up cost: `slicectl run --rm NAME -- /bin/true` with --net
# none, --net bridge and --net bridge,ip= with the overlay (hyperfine,
# BENCH_NET_RUNS runs each), while one bridged slice keeps each node's
# bridge up (the per-slice cost, not the first slice's bridge and tables).
# BENCH_NET_BEFORE also adds its --net bridge and overlay rows to the same
# hyperfine run (before/after in the same minute).
# Then none/bridge(/before) round-robin (BENCH_NET_ROUNDS, 20 by default) and
# the set-up's phases (VSLICE_TRACE points net.*, phases.py,
# BENCH_NET_PHASES runs, 20 by default, 0: none) for --net bridge.
# Results: $BENCH_OUT/net.json (merged into results.json under "net") and
# $BENCH_OUT/net.md. The EXIT trap destroys the slices and namespaces.
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/tests/bench
OUT=${BENCH_OUT:-$REPO/build/bench}
RES=$OUT/results.json
SLICECTL=${SLICECTL:-$REPO/build/slicectl}
PEERS=$REPO/build/tests/integration/tools/netpeers
SECS=${BENCH_NET_SECS:-4}
REPS=${BENCH_NET_REPS:-5}
RUNS=${BENCH_NET_RUNS:-30}
BEFORE=${BENCH_NET_BEFORE:-}
PHASE_RUNS=${BENCH_NET_PHASES:-20}
BRNF_SET=${BENCH_NET_BRNF:-}
NOFAST=${BENCH_NET_NOFAST:-}
NICE=${BENCH_NET_NICE:-0}
die() {
	echo "net bench: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
for c in iperf3 hyperfine nsenter python3 busybox; do
	command -v $c >/dev/null || die "$c is needed (make deps)"
done
[ -x "$PEERS" ] || make -C "$REPO" -s build/tests/integration/tools/netpeers || die "no netpeers"
mkdir -p "$OUT"

ID=$(($$ % 200 + 20))
for _ in $(seq 200); do
	ip netns add "vb$ID-p1" 2>/dev/null && break
	ID=$(((ID - 20 + 1) % 200 + 20))
done
T=$(mktemp -d /tmp/vslice-netbench.XXXXXX)
chmod 0755 "$T"
U=10.216.$ID
VNI=$((5000 + ID))
# Nodes: n (plain bridge) and a, b (overlay, on one veth underlay) run
# $SLICECTL; with BENCH_NET_BEFORE, m (plain) and c, d (overlay, their own
# underlay) run that build; with BENCH_NET_NOFAST, o (plain) and e, f
# (overlay) run $SLICECTL without the fast path.
declare -A HOSTNUM=([n]=10 [a]=11 [b]=12 [m]=10 [c]=13 [d]=14 [o]=10 [e]=15 [f]=16)
declare -A BIN=([n]=$SLICECTL [a]=$SLICECTL [b]=$SLICECTL [m]=$BEFORE [c]=$BEFORE [d]=$BEFORE
	[o]=$SLICECTL [e]=$SLICECTL [f]=$SLICECTL)
HOSTS="n a b"
[ -n "$BEFORE" ] && HOSTS="$HOSTS m c d"
[ -n "$NOFAST" ] && HOSTS="$HOSTS o e f"

on() { # HOST CMD...: in the host's namespace with its root (a-d: overlay on)
	local h=$1
	shift
	local ov=()
	case $h in a | b | c | d | e | f) ov=(VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.${HOSTNUM[$h]}) ;; esac
	case $h in o | e | f) ov+=(VSLICE_NET_FASTPATH=0) ;; esac
	env VSLICE_ROOT=$T/$h/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-$h VSLICE_BRIDGE=vbb$ID \
		"${ov[@]}" nsenter --net=/run/netns/vb$ID-$h "$@"
}
vsh() {
	local h=$1
	shift
	on "$h" "${BIN[$h]}" "$@"
}
cleanup() {
	local h s
	set +e
	for h in $HOSTS; do
		[ -d "$T/$h/root/slices" ] || continue
		for s in $(vsh $h list -q 2>/dev/null); do vsh $h destroy --force "$s" >/dev/null 2>&1; done
		on $h "$PEERS" set >/dev/null 2>&1
		for d in /sys/fs/cgroup/vslice-netbench-$$-$h /sys/fs/cgroup/*/vslice-netbench-$$-$h; do
			[ -d "$d" ] && rmdir "$d" 2>/dev/null
		done
	done
	for h in p1 p2 $HOSTS; do ip netns del vb$ID-$h 2>/dev/null; done
	case "$T" in /tmp/vslice-netbench.*) rm -rf --one-file-system "$T" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The floor: two namespaces on a veth pair.
ip netns add vb$ID-p2
ip -n vb$ID-p1 link add eth0 type veth peer name eth0 netns vb$ID-p2
for i in 1 2; do
	ip -n vb$ID-p$i addr add 10.218.$ID.$i/24 dev eth0
	ip -n vb$ID-p$i link set eth0 up
	ip -n vb$ID-p$i link set lo up
done
for h in $HOSTS; do
	ip netns add vb$ID-$h
	ip -n vb$ID-$h link set lo up
	[ -n "$BRNF_SET" ] && { on $h sysctl -qw net.bridge.bridge-nf-call-iptables="$BRNF_SET" ||
		die "bridge-nf-call-iptables on $h"; }
	mkdir -p "$T/$h/root"
	chmod 0755 "$T/$h" "$T/$h/root"
	vsh $h image build busybox >/dev/null || die "image build on $h"
done
underlay() { # HOST1 HOST2: a veth pair between them, addresses from HOSTNUM
	ip -n vb$ID-$1 link add eth0 type veth peer name eth0 netns vb$ID-$2
	for h in "$1" "$2"; do
		ip -n vb$ID-$h addr add $U.${HOSTNUM[$h]}/24 dev eth0
		ip -n vb$ID-$h link set eth0 up
	done
}
# bridged NODE: two slices s1, s2 on it
bridged() {
	vsh $1 run -d --net bridge s1 -- sleep 100000 >/dev/null || die "slice s1 on $1"
	vsh $1 run -d --net bridge s2 -- sleep 100000 >/dev/null || die "slice s2 on $1"
}
# overlaid NODE1 NODE2: slice x1 (10.213.0.11) on NODE1, x2 (.12) on NODE2
overlaid() {
	underlay $1 $2
	vsh $1 run -d --net bridge,ip=10.213.0.11 x1 -- sleep 100000 >/dev/null || die "slice x1 on $1"
	vsh $2 run -d --net bridge,ip=10.213.0.12 x2 -- sleep 100000 >/dev/null || die "slice x2 on $2"
	on $1 "$PEERS" set 10.213.0.12@$U.${HOSTNUM[$2]} || die "peers on $1"
	on $2 "$PEERS" set 10.213.0.11@$U.${HOSTNUM[$1]} || die "peers on $2"
}
bridged n
overlaid a b
if [ -n "$BEFORE" ]; then
	bridged m
	overlaid c d
fi
if [ -n "$NOFAST" ]; then
	bridged o
	overlaid e f
fi
pid_of() { vsh "$1" show --json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
ip_of() { vsh "$1" exec "$2" -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
# Each path: client namespace, server namespace, server address.
declare -A NSC NSS IPS
PATHS=(veth bridge overlay)
NSC[veth]=/run/netns/vb$ID-p1 NSS[veth]=/run/netns/vb$ID-p2 IPS[veth]=10.218.$ID.2
path_slices() { # PLAIN_NODE OVERLAY_NODE1 OVERLAY_NODE2 SUFFIX
	NSC[bridge$4]=/proc/$(pid_of $1 s1)/ns/net NSS[bridge$4]=/proc/$(pid_of $1 s2)/ns/net
	IPS[bridge$4]=$(ip_of $1 s2)
	NSC[overlay$4]=/proc/$(pid_of $2 x1)/ns/net NSS[overlay$4]=/proc/$(pid_of $3 x2)/ns/net
	IPS[overlay$4]=10.213.0.12
}
path_slices n a b ""
if [ -n "$BEFORE" ]; then
	path_slices m c d _before
	PATHS+=(bridge_before overlay_before)
fi
if [ -n "$NOFAST" ]; then
	path_slices o e f _nofast
	PATHS+=(bridge_nofast overlay_nofast)
fi
# Whether bridged IPv4 goes through the IPv4 hooks (and so conntrack and
# table inet vslice) on the nodes: the kernel's br_netfilter setting.
BRNF=$(on n cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo absent)

# one_run NS_CLIENT NS_SERVER IP: "bits/s CPU-ms-per-GB" of one iperf3 run
one_run() {
	local spid
	nice -n "$NICE" nsenter --net="$2" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
	spid=$!
	for _ in $(seq 50); do
		nsenter --net="$2" ss -ltn 2>/dev/null | grep -q ':5201 ' && break
		sleep 0.1
	done
	nice -n "$NICE" nsenter --net="$1" iperf3 -c "$3" -p 5201 -t "$SECS" -J 2>/dev/null |
		python3 -c '
import json, sys
e = json.load(sys.stdin)["end"]
bps, cpu = e["sum_received"]["bits_per_second"], e["cpu_utilization_percent"]
# CPU-seconds per second (host + remote, %/100) over GB per second
print(int(bps), round(1000 * (cpu["host_total"] + cpu["remote_total"]) / 100 / (bps / 8e9), 1))' ||
		echo 0 0
	wait $spid 2>/dev/null
}
# rtt NS_CLIENT IP: "min avg" in ms
rtt() {
	nsenter --net="$1" busybox ping -q -c 200 -i 0.005 -W 2 "$2" |
		awk -F'[/ =]+' '/^round-trip/ {print $5, $6}'
}

declare -A RT
for p in "${PATHS[@]}"; do
	nsenter --net="${NSC[$p]}" busybox ping -q -c 3 -W 2 "${IPS[$p]}" >/dev/null || die "$p: no ping to ${IPS[$p]}"
	: >"$T/tp.$p"
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
np=${#PATHS[@]}
for r in $(seq "$REPS"); do
	for k in $(seq 0 $((np - 1))); do
		# each round starts one path further on, every other one backwards:
		# no path always follows the same one (a run leaves work behind it:
		# socket teardown, freed buffers)
		[ $((r % 2)) = 0 ] && k=$((np - 1 - k))
		p=${PATHS[$(((r - 1 + k) % np))]}
		echo "$r $(one_run "${NSC[$p]}" "${NSS[$p]}" "${IPS[$p]}")" >>"$T/tp.$p"
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for p in "${PATHS[@]}"; do
	RT[$p]=$(rtt "${NSC[$p]}" "${IPS[$p]}")
	echo "# $p: round bit/s CPU-ms/GB: $(tr '\n' ';' <"$T/tp.$p"); rtt min/avg ms: ${RT[$p]}"
done
printf '%s\n' "${PATHS[@]}" >"$T/paths"
for p in "${PATHS[@]}"; do echo "$p ${RT[$p]}"; done >"$T/rtt"

# Set-up cost per slice: the bridges stay up (s1/s2, a1, b1 run).
before_rows=()
if [ -n "$BEFORE" ]; then
	before_rows=(-n bridge_before "$(printf '%q ' env VSLICE_ROOT=$T/n/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-n \
		VSLICE_BRIDGE=vbb$ID nsenter --net=/run/netns/vb$ID-n "$BEFORE" run --rm --net bridge hb -- /bin/true)"
		-n overlay_before "$(printf '%q ' env VSLICE_ROOT=$T/a/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-a \
			VSLICE_BRIDGE=vbb$ID VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.11 \
			nsenter --net=/run/netns/vb$ID-a "$BEFORE" run --rm --net bridge,ip=10.213.0.50 ho -- /bin/true)")
fi
echo "# set-up: load $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine -N --runs "$RUNS" --warmup 3 --export-json "$T/setup.json" "${before_rows[@]}" \
	-n none "$(printf '%q ' env VSLICE_ROOT=$T/n/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-n \
		nsenter --net=/run/netns/vb$ID-n "$SLICECTL" run --rm --net none hn -- /bin/true)" \
	-n bridge "$(printf '%q ' env VSLICE_ROOT=$T/n/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-n \
		VSLICE_BRIDGE=vbb$ID nsenter --net=/run/netns/vb$ID-n "$SLICECTL" run --rm --net bridge hb -- /bin/true)" \
	-n overlay "$(printf '%q ' env VSLICE_ROOT=$T/a/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-a \
		VSLICE_BRIDGE=vbb$ID VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.11 \
		nsenter --net=/run/netns/vb$ID-a "$SLICECTL" run --rm --net bridge,ip=10.213.0.50 ho -- /bin/true)" \
	>"$T/hyperfine.txt" 2>&1 || {
	cat "$T/hyperfine.txt"
	die "hyperfine"
}

# The same commands round-robin (BENCH_NET_ROUNDS rounds, 20 by default, 0:
# none): on a loaded machine a burst of load then lands on every row alike
# (hyperfine runs each command's runs in a row).
ROUNDS=${BENCH_NET_ROUNDS:-20}
rr_cmds=(none "$(printf '%q ' env VSLICE_ROOT=$T/n/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-n \
	nsenter --net=/run/netns/vb$ID-n "$SLICECTL" run --rm --net none rn -- /bin/true)"
	bridge "$(printf '%q ' env VSLICE_ROOT=$T/n/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-n \
		VSLICE_BRIDGE=vbb$ID nsenter --net=/run/netns/vb$ID-n "$SLICECTL" run --rm --net bridge rb -- /bin/true)")
[ -n "$BEFORE" ] && rr_cmds+=(bridge_before "$(printf '%q ' env VSLICE_ROOT=$T/n/root \
	VSLICE_CGROUP_PARENT=vslice-netbench-$$-n VSLICE_BRIDGE=vbb$ID nsenter --net=/run/netns/vb$ID-n \
	"$BEFORE" run --rm --net bridge rb -- /bin/true)")
# Each run with VSLICE_TRACE=1: besides the wall time, the start alone
# (trace points start .. start.done: what `run -d` waits for; issue 13's
# "adds to a start"), in rounds.json under "<row>.start".
python3 - "$ROUNDS" "$T/rounds.json" "${rr_cmds[@]}" <<'EOF2'
import json, os, subprocess, sys, time
rounds, out, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
cmds = list(zip(args[::2], args[1::2]))
t = {k: [] for k, _ in cmds}
t.update({k + ".start": [] for k, _ in cmds})
env = dict(os.environ, VSLICE_TRACE="1")
for i in range(rounds + 2 if rounds else 0):
    for k, c in cmds:
        t0 = time.monotonic()
        p = subprocess.run(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if i < 2:
            continue
        t[k].append((time.monotonic() - t0) * 1e3)
        at = {}
        for l in p.stderr.decode(errors="replace").splitlines():
            w = l.split()
            if len(w) == 4 and w[0] == "vslice-trace":
                at.setdefault(w[3], float(w[2]))
        if "start" in at and "start.done" in at:
            t[k + ".start"].append(at["start.done"] - at["start"])
json.dump(t, open(out, "w"))
EOF2

# Where a bridged start's network time goes (ms per VSLICE_TRACE interval).
: >"$T/phases.txt"
if [ "$PHASE_RUNS" -gt 0 ]; then
	on n python3 "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$SLICECTL" run --rm --net bridge hp -- /bin/true 2>/dev/null |
		grep -E '^\| (net\.|destroy\.net)' >"$T/phases.txt"
fi

python3 - "$OUT/net.json" "$OUT/net.md" "$T/setup.json" "$SECS" "$REPS" "$RUNS" "$T/phases.txt" "$T/rounds.json" \
	"$T" "$LOAD_BEFORE" "$LOAD_AFTER" "$BRNF" "$NICE" <<'EOF'
import json, statistics, sys
out_json, out_md, setup, secs, reps, runs, phases, rounds, tdir, load0, load1, brnf, nice = sys.argv[1:14]
paths = open(tdir + "/paths").read().split()
runs_of = {p: {} for p in paths}  # path -> round -> (bits/s, CPU ms per GB)
for p in paths:
    for l in open("%s/tp.%s" % (tdir, p)):
        r, bps, cpu = l.split()
        runs_of[p][int(r)] = (int(bps), float(cpu))
rt = {}
for l in open(tdir + "/rtt"):
    w = l.split()
    rt[w[0]] = [float(x) for x in w[1:]]
h = {r["command"]: r for r in json.load(open(setup))["results"]}
res = {"paths": {}, "setup_ms": {}, "secs": int(secs), "reps": int(reps), "runs": int(runs),
       "load_tp": [load0, load1], "bridge_nf_call_iptables": brnf, "nice": int(nice)}
for p in paths:
    rr = [runs_of[p][r] for r in sorted(runs_of[p])]
    ok = [b for b, _ in rr if b > 0]
    cpu = [c for b, c in rr if b > 0]
    res["paths"][p] = {"gbit_runs": [round(b / 1e9, 3) for b, _ in rr],
                       "gbit_median": round(statistics.median(ok) / 1e9, 3) if ok else 0,
                       "cpu_ms_per_gb_median": round(statistics.median(cpu), 1) if cpu else None,
                       "rtt_min_ms": rt.get(p, [None])[0], "rtt_avg_ms": (rt.get(p, []) + [None, None])[1]}
v = res["paths"]["veth"]["gbit_median"] or 1
for p in paths[1:]:
    q = res["paths"][p]
    q["of_veth"] = round(q["gbit_median"] / v, 3)
    # the same round's runs: a burst of load from elsewhere hits both
    per = [runs_of[p][r][0] / runs_of["veth"][r][0] for r in runs_of[p]
           if runs_of["veth"].get(r, (0,))[0] > 0 and runs_of[p][r][0] > 0]
    if per:
        q["of_veth_rounds"] = [round(x, 3) for x in per]
        q["of_veth_round_median"] = round(statistics.median(per), 3)
setups = [n for n in ["none", "bridge", "overlay", "bridge_before", "overlay_before"] if n in h]
for n in setups:
    t = h[n]["times"]
    res["setup_ms"][n] = {"median": round(statistics.median(t) * 1e3, 2), "mean": round(h[n]["mean"] * 1e3, 2)}
for n in setups[1:]:
    d = res["setup_ms"][n]["median"] - res["setup_ms"]["none"]["median"]
    res["setup_ms"][n]["added_median"] = round(d, 2)
    res["setup_ms"][n]["share_of_start"] = round(d / res["setup_ms"][n]["median"], 3)
json.dump(res, open(out_json, "w"), indent=1)
with open(out_md, "w") as f:
    f.write("Throughput: %s rounds of %s s, round-robin; load %s before, %s after; "
            "bridge-nf-call-iptables on the nodes: %s; iperf3 nice %s\n\n" % (reps, secs, load0, load1, brnf, nice))
    f.write("| path | TCP Gbit/s: median (runs) | of veth: medians | of veth: per round, median [min-max] "
            "| CPU ms per GB (iperf3 ends) | RTT min / avg ms |\n|---|---:|---:|---:|---:|---:|\n")
    for p in paths:
        r = res["paths"][p]
        rounds_col = "-"
        if "of_veth_rounds" in r:
            rounds_col = "%.0f%% [%.0f-%.0f%%]" % (r["of_veth_round_median"] * 100,
                                                min(r["of_veth_rounds"]) * 100, max(r["of_veth_rounds"]) * 100)
        f.write("| %s | %.2f (%s) | %s | %s | %s | %s / %s |\n" % (
            p, r["gbit_median"], ", ".join("%.2f" % x for x in r["gbit_runs"]),
            "%.0f%%" % (r["of_veth"] * 100) if "of_veth" in r else "-", rounds_col,
            r["cpu_ms_per_gb_median"], r["rtt_min_ms"], r["rtt_avg_ms"]))
    f.write("\n| `run --rm ... /bin/true` | median ms | mean ms | added (median) | share of the start |\n|---|---:|---:|---:|---:|\n")
    labels = {"none": "--net none", "bridge": "--net bridge", "overlay": "--net bridge,ip= (overlay)",
              "bridge_before": "--net bridge (BENCH_NET_BEFORE)", "overlay_before": "--net bridge,ip= (BENCH_NET_BEFORE)"}
    for n in setups:
        label = labels[n]
        s = res["setup_ms"][n]
        f.write("| %s | %.1f | %.1f | %s | %s |\n" % (label, s["median"], s["mean"],
                "%+.1f ms" % s["added_median"] if "added_median" in s else "-",
                "%.0f%%" % (s["share_of_start"] * 100) if "share_of_start" in s else "-"))
    rr = json.load(open(rounds))
    if rr.get("none"):
        res["rounds_ms"] = {k: round(statistics.median(v), 2) for k, v in rr.items() if v}
        f.write("\n| round-robin, %d rounds | whole `run --rm`: median ms | added | the start alone "
                "(start .. start.done): median (p90) | added |\n|---|---:|---:|---:|---:|\n" % len(rr["none"]))
        base, sbase = statistics.median(rr["none"]), statistics.median(rr.get("none.start") or [0])
        for k, v in rr.items():
            if k.endswith(".start") or not v:
                continue
            sv = sorted(rr.get(k + ".start") or [])
            f.write("| %s | %.1f | %+.1f | %s | %s |\n" % (
                k, statistics.median(v), statistics.median(v) - base,
                "%.2f (%.2f)" % (statistics.median(sv), sv[int(0.9 * (len(sv) - 1))]) if sv else "-",
                "%+.2f" % (statistics.median(sv) - sbase) if sv else "-"))
    # Issue 13's targets, judged on the per-round ratio (the A/A noise of a
    # ratio of medians is several times that of the per-round median,
    # docs/benchmarks.md §6) and on the start alone.
    f.write("\nIssue 13's targets: ")
    verdict = []
    for p, want in (("bridge", 0.90), ("overlay", 0.70)):
        q = res["paths"].get(p, {})
        if "of_veth_round_median" in q:
            got = q["of_veth_round_median"]
            verdict.append("%s %.0f%% of veth (target %.0f%%): %s" % (p, got * 100, want * 100,
                           "MET" if got >= want else "MISS"))
    if rr.get("bridge.start") and rr.get("none.start"):
        d = statistics.median(rr["bridge.start"]) - statistics.median(rr["none.start"])
        res["bridge_adds_to_start_ms"] = round(d, 2)
        verdict.append("--net bridge adds %.2f ms to a start (target 2 ms): %s" % (d, "MET" if d <= 2 else "MISS"))
    f.write("; ".join(verdict) + ".\n")
    rows = [l.strip() for l in open(phases) if l.strip()]
    if rows:
        res["phases"] = {r.split("|")[1].strip(): float(r.split("|")[2]) for r in rows}
        f.write("\n| `--net bridge` step (VSLICE_TRACE) | median ms | mean | p90 | runs |\n|---|---:|---:|---:|---:|\n")
        f.write("\n".join(rows) + "\n")
json.dump(res, open(out_json, "w"), indent=1)
print(open(out_md).read())
EOF
[ -f "$RES" ] && python3 "$BENCH_DIR/benchlib.py" merge "$RES" net "$OUT/net.json"
exit 0
