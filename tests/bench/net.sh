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
# network namespaces (nsenter --net): the path measured is the slices'.
# Then the set-up cost: `slicectl run --rm NAME -- /bin/true` with --net
# none, --net bridge and --net bridge,ip= with the overlay (hyperfine,
# BENCH_NET_RUNS runs each), while one bridged slice keeps each node's
# bridge up (the per-slice cost, not the first slice's bridge and tables).
# BENCH_NET_BEFORE=/path/to/an/older/slicectl adds its --net bridge and
# overlay rows to the same hyperfine run (before/after in the same minute).
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
REPS=${BENCH_NET_REPS:-3}
RUNS=${BENCH_NET_RUNS:-30}
BEFORE=${BENCH_NET_BEFORE:-}
PHASE_RUNS=${BENCH_NET_PHASES:-20}
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
declare -A HOSTNUM=([n]=10 [a]=11 [b]=12)

on() { # HOST CMD...: in the host's namespace with its root (a, b: overlay on)
	local h=$1
	shift
	local ov=()
	[ "$h" != n ] && ov=(VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.${HOSTNUM[$h]})
	env VSLICE_ROOT=$T/$h/root VSLICE_CGROUP_PARENT=vslice-netbench-$$-$h VSLICE_BRIDGE=vbb$ID \
		"${ov[@]}" nsenter --net=/run/netns/vb$ID-$h "$@"
}
vsh() {
	local h=$1
	shift
	on "$h" "$SLICECTL" "$@"
}
cleanup() {
	local h s
	set +e
	for h in n a b; do
		[ -d "$T/$h/root/slices" ] || continue
		for s in $(vsh $h list -q 2>/dev/null); do vsh $h destroy --force "$s" >/dev/null 2>&1; done
		on $h "$PEERS" set >/dev/null 2>&1
		for d in /sys/fs/cgroup/vslice-netbench-$$-$h /sys/fs/cgroup/*/vslice-netbench-$$-$h; do
			[ -d "$d" ] && rmdir "$d" 2>/dev/null
		done
	done
	for h in p1 p2 n a b; do ip netns del vb$ID-$h 2>/dev/null; done
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
# The nodes: n alone (plain bridge), a and b on a veth underlay (overlay).
for h in n a b; do
	ip netns add vb$ID-$h
	ip -n vb$ID-$h link set lo up
	mkdir -p "$T/$h/root"
	chmod 0755 "$T/$h" "$T/$h/root"
	vsh $h image build busybox >/dev/null || die "image build on $h"
done
ip -n vb$ID-a link add eth0 type veth peer name eth0 netns vb$ID-b
for h in a b; do
	ip -n vb$ID-$h addr add $U.${HOSTNUM[$h]}/24 dev eth0
	ip -n vb$ID-$h link set eth0 up
done

vsh n run -d --net bridge s1 -- sleep 100000 >/dev/null || die "slice s1"
vsh n run -d --net bridge s2 -- sleep 100000 >/dev/null || die "slice s2"
vsh a run -d --net bridge,ip=10.213.0.11 a1 -- sleep 100000 >/dev/null || die "slice a1"
vsh b run -d --net bridge,ip=10.213.0.12 b1 -- sleep 100000 >/dev/null || die "slice b1"
on a "$PEERS" set 10.213.0.12@$U.12 || die "peers on a"
on b "$PEERS" set 10.213.0.11@$U.11 || die "peers on b"
pid_of() { vsh "$1" show --json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
ip_of() { vsh "$1" exec "$2" -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
NS_VETH1=/run/netns/vb$ID-p1 NS_VETH2=/run/netns/vb$ID-p2 IP_VETH=10.218.$ID.2
NS_BR1=/proc/$(pid_of n s1)/ns/net NS_BR2=/proc/$(pid_of n s2)/ns/net IP_BR=$(ip_of n s2)
NS_OV1=/proc/$(pid_of a a1)/ns/net NS_OV2=/proc/$(pid_of b b1)/ns/net IP_OV=10.213.0.12

# throughput NS_CLIENT NS_SERVER IP: bits/s of each run, one per line
throughput() {
	local r spid
	for r in $(seq "$REPS"); do
		nsenter --net="$2" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
		spid=$!
		for _ in $(seq 50); do
			nsenter --net="$2" ss -ltn 2>/dev/null | grep -q ':5201 ' && break
			sleep 0.1
		done
		nsenter --net="$1" iperf3 -c "$3" -p 5201 -t "$SECS" -J 2>/dev/null |
			python3 -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' ||
			echo 0
		wait $spid 2>/dev/null
	done
}
# rtt NS_CLIENT IP: "min avg" in ms
rtt() {
	nsenter --net="$1" busybox ping -q -c 200 -i 0.005 -W 2 "$2" |
		awk -F'[/ =]+' '/^round-trip/ {print $5, $6}'
}

declare -A TP RT
for path in veth bridge overlay; do
	case $path in
	veth) c=$NS_VETH1 s=$NS_VETH2 ip=$IP_VETH ;;
	bridge) c=$NS_BR1 s=$NS_BR2 ip=$IP_BR ;;
	overlay) c=$NS_OV1 s=$NS_OV2 ip=$IP_OV ;;
	esac
	nsenter --net="$c" busybox ping -q -c 3 -W 2 "$ip" >/dev/null || die "$path: no ping to $ip"
	TP[$path]=$(throughput "$c" "$s" "$ip" | tr '\n' ' ')
	RT[$path]=$(rtt "$c" "$ip")
	echo "# $path: throughput bit/s: ${TP[$path]}; rtt min/avg ms: ${RT[$path]}"
done

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
python3 - "$ROUNDS" "$T/rounds.json" "${rr_cmds[@]}" <<'EOF2'
import json, subprocess, sys, time
rounds, out, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
cmds = list(zip(args[::2], args[1::2]))
t = {k: [] for k, _ in cmds}
for i in range(rounds + 2 if rounds else 0):
    for k, c in cmds:
        t0 = time.monotonic()
        subprocess.run(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i >= 2:
            t[k].append((time.monotonic() - t0) * 1e3)
json.dump(t, open(out, "w"))
EOF2

# Where a bridged start's network time goes (ms per VSLICE_TRACE interval).
: >"$T/phases.txt"
if [ "$PHASE_RUNS" -gt 0 ]; then
	on n python3 "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$SLICECTL" run --rm --net bridge hp -- /bin/true 2>/dev/null |
		grep -E '^\| (net\.|destroy\.net)' >"$T/phases.txt"
fi

python3 - "$OUT/net.json" "$OUT/net.md" "$T/setup.json" "$SECS" "$REPS" "$RUNS" "$T/phases.txt" "$T/rounds.json" \
	"${TP[veth]}" "${TP[bridge]}" "${TP[overlay]}" "${RT[veth]}" "${RT[bridge]}" "${RT[overlay]}" <<'EOF'
import json, statistics, sys
out_json, out_md, setup, secs, reps, runs, phases, rounds = sys.argv[1:9]
tp = {p: [int(x) for x in sys.argv[9 + i].split()] for i, p in enumerate(["veth", "bridge", "overlay"])}
rt = {p: [float(x) for x in sys.argv[12 + i].split()] for i, p in enumerate(["veth", "bridge", "overlay"])}
h = {r["command"]: r for r in json.load(open(setup))["results"]}
res = {"paths": {}, "setup_ms": {}, "secs": int(secs), "reps": int(reps), "runs": int(runs)}
for p in ["veth", "bridge", "overlay"]:
    med = statistics.median(tp[p]) if tp[p] else 0
    res["paths"][p] = {"gbit_runs": [round(x / 1e9, 3) for x in tp[p]], "gbit_median": round(med / 1e9, 3),
                       "rtt_min_ms": rt[p][0] if rt[p] else None, "rtt_avg_ms": rt[p][1] if len(rt[p]) > 1 else None}
v = res["paths"]["veth"]["gbit_median"] or 1
for p in ["bridge", "overlay"]:
    res["paths"][p]["of_veth"] = round(res["paths"][p]["gbit_median"] / v, 3)
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
    f.write("| path | TCP Gbit/s (median of %s x %s s) | of veth | RTT min / avg ms |\n|---|---:|---:|---:|\n" % (reps, secs))
    for p in ["veth", "bridge", "overlay"]:
        r = res["paths"][p]
        f.write("| %s | %.2f (%s) | %s | %s / %s |\n" % (p, r["gbit_median"], ", ".join("%.2f" % x for x in r["gbit_runs"]),
                "%.0f%%" % (r["of_veth"] * 100) if "of_veth" in r else "-", r["rtt_min_ms"], r["rtt_avg_ms"]))
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
        base = statistics.median(rr["none"])
        res["rounds_ms"] = {k: round(statistics.median(v), 2) for k, v in rr.items() if v}
        f.write("\n| round-robin, %d rounds | median ms | added |\n|---|---:|---:|\n" % len(rr["none"]))
        for k, v in rr.items():
            f.write("| %s | %.1f | %+.1f |\n" % (k, statistics.median(v), statistics.median(v) - base))
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
