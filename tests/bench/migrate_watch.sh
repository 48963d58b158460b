#!/usr/bin/env bash
# Migration with a client watching (issue 13 "Migration with a client
# watching"): a UDP service in a bridged slice keeps its overlay address
# while it moves node1 -> node2 (and back), and a client outside it sends a
# request every 10 ms and records each latency; the plot is latency over
# time with the migration's freeze and resume marked (the course's picture
# of migration downtime).
#
# Hosts (tests/cluster/lib.sh, as tests/cluster/test_net_cluster.sh sets
# them up): network namespaces reg (10.219.X.1: the registry, slicectl),
# node1 and node2 (.11, .12), each node manager with the VXLAN overlay
# (--overlay-local its address, --overlay-vni), so a bridged slice has a
# cluster address in 10.213.0.0/16 that it keeps when it migrates.
#   srv  the service: tests/bench/reqecho (a UDP echo, port 7000) in a
#        bridged slice on node1;
#   cli  the client: tests/bench/reqwatch in another bridged slice, on
#        node1, run with `slicectl exec` (WATCH_CLIENT=slice, the default);
#        its requests go over node1's bridge while srv is on node1 and over
#        the overlay once srv is on node2. WATCH_CLIENT=host runs it in
#        node1's host namespace instead (it reaches srv while srv is on
#        node1 only: see docs/benchmarks.md section 11).
# For each mode in WATCH_MODES ("live precopy"): the client starts, the
# migration is asked for WATCH_LEAD s later (1.5), the client runs
# WATCH_SECS s in all (6) at one request per WATCH_INTERVAL ms (10), a
# request without an echo within WATCH_TIMEOUT ms (500) is a gap. A
# migration that aborts is tried again, up to WATCH_TRIES (10) times; every
# attempt is kept in the table.
# Writes $BENCH_OUT/migrate_watch.md (per attempt: the record's times, the
# gap the client saw, requests lost, latencies), migrate_watch-MODE-N.dat
# (send time, latency or -1) and migrate_watch.png (gnuplot). Fails when no
# migration of a mode committed (nothing measured).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../cluster/lib.sh"
VC_NET=10.219.$VC_ID
REGISTRY_URL=http://$VC_NET.1:7480

OUT=${BENCH_OUT:-$VC_REPO/build/bench}
MODES=${WATCH_MODES:-live precopy}
CLIENT=${WATCH_CLIENT:-slice}
LEAD=${WATCH_LEAD:-1.5}
SECS=${WATCH_SECS:-6}
IVAL=${WATCH_INTERVAL:-10}
TMO=${WATCH_TIMEOUT:-500}
TRIES=${WATCH_TRIES:-10}
PORT=7000
BIN=$VC_REPO/build/bench/bin
FAILED=0

die() {
	echo "migrate_watch.sh: $*" >&2
	VS_FAIL=1
	exit 1
}
mw_cleanup() {
	local rc=$?
	mkdir -p "$OUT/migrate_watch-logs"
	cp "$VC_TMP"/*.log "$OUT/migrate_watch-logs/" 2>/dev/null
	vc_cleanup
	exit "$rc"
}
trap mw_cleanup EXIT

# A node's own slicectl in its host's network namespace (a bridged slice's
# network is torn down in the namespace it was made in).
vs_node() {
	local name=$1
	shift
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name \
		nsenter --net=/run/netns/$VC_PFX-$name "$SLICECTL" "$@"
}

[ "$(id -u)" = 0 ] || die "run as root"
case $CLIENT in slice | host) ;; *) die "WATCH_CLIENT: slice or host, not \"$CLIENT\"" ;; esac
mkdir -p "$OUT"
make -s -C "$VC_REPO" bench-bins >/dev/null || die "make bench-bins failed"
command -v gnuplot >/dev/null || die "gnuplot is needed for the plot (make deps: gnuplot-nox)"

# --- the cluster ------------------------------------------------------------
echo "migrate_watch.sh: hosts $VC_PFX-{reg,node1,node2} on $VC_NET.0/24, files in $VC_TMP" >&2
VNI=$((7000 + VC_ID))
vc_setup_net
vc_start_registry --heartbeat 1s --migration-timeout 120 >/dev/null || die "registry did not start"
TOKEN=$ADMIN
ALICE=$(vsc user create alice) || die "user create"
for k in 1 2; do
	mkdir -p "$VC_TMP/node$k"
	VSLICE_ROOT=$VC_TMP/node$k/root "$SLICECTL" image build busybox >/dev/null 2>&1 ||
		die "image build on node$k"
	for p in reqecho reqwatch; do
		install -m 0755 "$BIN/$p" "$VC_TMP/node$k/root/images/busybox/rootfs/bin/$p" ||
			die "cannot put $p into node$k's image"
	done
	NODE_TOKEN=$(vsc token create --role node) || die "token create"
	vc_add_node node$k $k --heartbeat 1s --listen "$VC_NET.1$k:7481" \
		--overlay-local "$VC_NET.1$k" --overlay-vni $VNI
done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
wait_for 60 nodes_ready || die "the two nodes did not become ready"

TOKEN=$ALICE
manifest() { # NAME COMMAND-JSON
	printf '{"apiVersion": "vslice/v1", "slice": "%s", "nodes": {"names": ["node1"]}, "network": "bridge", "run": {"command": %s}}\n' "$1" "$2" >"$VC_TMP/$1.json"
	vsc submit "$VC_TMP/$1.json" >/dev/null || die "submit $1"
}
on() { [ "$(vc_running_on "$1")" = "$2" ]; }
manifest srv "[\"/bin/reqecho\", \"$PORT\"]"
[ "$CLIENT" = slice ] && manifest cli '["sleep", "1000000"]'
wait_for 60 on srv node1 || die "srv does not run on node1"
[ "$CLIENT" = slice ] && { wait_for 60 on cli node1 || die "cli does not run on node1"; }
ADDR=$(vc_api GET /v1/slices/srv | jq -r '.slivers[0].address')
[ -n "$ADDR" ] && [ "$ADDR" != null ] || die "srv has no address"
echo "migrate_watch.sh: srv at $ADDR:$PORT, client: $CLIENT" >&2

# watch SECONDS: the client's lines (Unix ms, latency ms or -1) on stdout
watch() {
	if [ "$CLIENT" = slice ]; then
		vs_node node1 exec cli -- /bin/reqwatch "$ADDR" "$PORT" "$1" "$IVAL" "$TMO"
	else
		nsenter --net="/run/netns/$VC_PFX-node1" "$BIN/reqwatch" "$ADDR" "$PORT" "$1" "$IVAL" "$TMO"
	fi
}
answers() { watch 1 | awk '$2 >= 0' | grep -q .; }
wait_for 30 answers || die "the client gets no echo from srv at $ADDR:$PORT before any migration"

# --- the runs -----------------------------------------------------------------
ROWS=$OUT/migrate_watch.rows
: >"$ROWS"
where=node1
for mode in $MODES; do
	ok=0
	for try in $(seq "$TRIES"); do
		to=node2
		[ "$where" = node2 ] && to=node1
		dat=$OUT/migrate_watch-$mode-$try.dat
		load=$(cut -d' ' -f1 /proc/loadavg)
		watch "$SECS" >"$dat" &
		wpid=$!
		sleep "$LEAD"
		t0=$(date +%s%3N)
		vsc migrate srv --to "$to" --mode "$mode" --json >"$OUT/migrate_watch-$mode-$try.out" 2>"$OUT/migrate_watch-$mode-$try.err"
		mrc=$?
		wait "$wpid" || echo "migrate_watch.sh: the client exited with an error" >&2
		id=$(jq -r '.id // empty' "$OUT/migrate_watch-$mode-$try.out" 2>/dev/null)
		[ -n "$id" ] || id=$(vsc migrations srv --json | jq -r '.migrations | max_by(.updated_ms) | .id')
		rec='{}'
		for _ in $(seq 20); do
			rec=$(vsc migrations srv --json | jq -c --arg id "$id" '.migrations[] | select(.id == $id)')
			[ "$(jq -r '.finished and (.phase == "aborted" or .stats.freeze_ms != null)' <<<"$rec")" = true ] && break
			sleep 0.5
		done
		echo "$rec" >"$OUT/migrate_watch-$mode-$try.json"
		phase=$(jq -r .phase <<<"$rec")
		# the attempt's row: record times relative to the migration request, what the client saw
		python3 - "$dat" "$OUT/migrate_watch-$mode-$try.json" "$mode" "$try" "$where" "$to" "$t0" "$load" "$IVAL" >>"$ROWS" <<'PY'
import json, sys
dat, recf, mode, tr, frm, to, t0, load, ival = sys.argv[1:]
t0, ival = int(t0), int(ival)
rec = json.load(open(recf))
pts3 = [(int(a), float(b), int(c)) for a, b, c in (l.split() for l in open(dat) if l.strip())]
pts = [(t, l) for t, l, _ in pts3]
def rel(k):
    v = rec.get(k)
    return None if v is None else v - t0
lost = [t for t, l in pts if l < 0]
ok = [l for t, l in pts if l >= 0]
# which copy answered: the source's tag is the one answering before the request
before = [c for t, l, c in pts3 if t < t0 and l >= 0]
src = max(set(before), key=before.count) if before else 0
# echoes from the source's copy that arrived after the target's copy started: two copies ran at once
late = sum(1 for t, l, c in pts3 if rec.get("started_ms") and t + l > rec["started_ms"] and l >= 0 and c == src) \
    if rec.get("phase") == "committed" else 0
tgt = sum(1 for t, l, c in pts3 if l >= 0 and c != src)
# the longest run of requests without an echo: the gap the client saw
gap, run, start, gstart = 0, 0, None, None
for t, l in pts:
    if l < 0:
        if run == 0: start = t
        run += 1
        if run > gap: gap, gstart = run, start
    else:
        run = 0
ok.sort()
pct = lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] if ok else None
print(json.dumps(dict(mode=mode, attempt=int(tr), frm=frm, to=to, phase=rec.get("phase"), reason=rec.get("reason", ""),
    stopped=rel("stopped_ms"), restored=rel("restored_ms"), committed=rel("committed_ms"), started=rel("started_ms"),
    downtime=rec.get("downtime_ms"), freeze=(rec.get("stats") or {}).get("freeze_ms"), total=rec.get("total_ms"),
    sent=len(pts), lost=len(lost), gap_ms=gap * ival, gap_start=None if gstart is None else gstart - t0,
    p50=pct(0.5), p99=pct(0.99), max=ok[-1] if ok else None, load=float(load), t0=t0, dat=dat,
    src_tag=src, by_target=tgt, source_after_freeze=late)))
PY
		echo "  $mode try $try $where -> $to: $phase (exit $mrc) $(tail -1 "$ROWS" | jq -r '"downtime \(.downtime) ms, freeze \(.freeze) ms; client: \(.lost) of \(.sent) lost, \(.by_target) answered by the target, \(.source_after_freeze) by the source after the target started, longest gap \(.gap_ms) ms, p50 \(.p50) ms, max \(.max) ms"') $(jq -r .reason <<<"$rec")" >&2
		if [ "$phase" = committed ]; then
			ok=1
			where=$to
			wait_for 60 on srv "$where" || die "srv does not run on $where after the migration"
			break
		fi
		wait_for 60 on srv "$where" || die "srv runs nowhere after an aborted migration"
		sleep 2
	done
	[ "$ok" = 1 ] || {
		FAILED=1
		echo "migrate_watch.sh: no $mode migration of srv committed in $TRIES tries" >&2
	}
done

# --- table and plot -------------------------------------------------------------
python3 - "$ROWS" "$OUT" "$CLIENT" "$IVAL" "$TMO" <<'PY' | tee "$OUT/migrate_watch.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, client, ival, tmo = sys.argv[2:]
print(f"Migration with a client watching: a UDP echo in a bridged slice, a request every {ival} ms from "
      f"{'another bridged slice on node1' if client == 'slice' else 'node1’s host namespace'}, "
      f"a request without an echo within {tmo} ms lost (times in ms from the migration request)")
print()
print("| mode | try | from -> to | phase | freeze at | started at | downtime (record) | freeze (dump) | longest gap at the client | lost / sent | answered by the target / by the source after the target started | latency p50 / p99 / max (ms) | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
f = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
for r in rows:
    print(f"| {r['mode']} | {r['attempt']} | {r['frm']} -> {r['to']} | {r['phase']}{' (' + r['reason'] + ')' if r['phase'] != 'committed' else ''} | "
          f"{f(r['stopped'])} | {f(r['started'])} | {f(r['downtime'])} | {f(r['freeze'])} | "
          f"{r['gap_ms']} ms (from {f(r['gap_start'])}) | {r['lost']} / {r['sent']} | {r['by_target']} / {r['source_after_freeze']} | {f(r['p50'])} / {f(r['p99'])} / {f(r['max'])} | {r['load']:.1f} |")
# gnuplot script: one panel per mode, the committed attempt (else the last)
modes = []
for r in rows:
    if r["mode"] not in modes: modes.append(r["mode"])
with open(f"{out}/migrate_watch.gp", "w") as g:
    n = max(1, len(modes))
    g.write(f'set terminal pngcairo size 1400,{400 * n} font ",10"\n')
    g.write(f'set output "{out}/migrate_watch.png"\n')
    g.write(f'set multiplot layout {n},2 title "a request every {ival} ms to a slice that migrates (UDP echo over the VXLAN overlay; left: the whole run, right: around the freeze)"\n')
    g.write('set grid\nset logscale y\nset yrange [0.01:2000]\nset xlabel "time since the migration request (s)"\nset ylabel "latency (ms)"\nset key top right\n')
    for m in modes:
        rs = [r for r in rows if r["mode"] == m]
        r = next((x for x in rs if x["phase"] == "committed"), rs[-1])
        t0, st = r["t0"], r["src_tag"]
        marks = [("stopped", "frozen", "red", "right", -0.5), ("started", "running on " + r["to"], "dark-green", "left", 0.5)]
        if r["phase"] != "committed":
            marks = [("stopped", "frozen (aborted, thawed)", "red", "right", -0.5)]
        xs = [r[k] / 1000 for k, *_ in marks if r[k] is not None]
        for zoom in (False, True):
            g.write("unset arrow\nunset label\nset autoscale x\n")
            if zoom and xs:
                g.write(f"set xrange [{min(xs) - 0.25}:{max(xs) + 0.35}]\n")
            for k, txt, col, just, off in marks:
                if r[k] is not None:
                    x = r[k] / 1000
                    g.write(f'set arrow from {x},0.01 to {x},2000 nohead lc rgb "{col}" dt 2 lw 2\n')
                    g.write(f'set label "{txt}" at {x},{600 if col == "red" else 300} {just} offset {off},0 tc rgb "{col}"\n')
            g.write(f'set label "lost (no echo in {tmo} ms)" at graph 0.01,0.97 tc rgb "red"\n')
            g.write(f'set title "{m} {r["frm"]} -> {r["to"]}: {r["phase"]}, downtime {f(r["downtime"])} ms, '
                    f'client gap {r["gap_ms"]} ms, {r["lost"]}/{r["sent"]} lost{" (zoom)" if zoom else ""}"\n')
            g.write(f'plot "{r["dat"]}" using (($1 - {t0}) / 1000.0):($2 >= 0 && $3 == {st} ? $2 : 1/0) with points pt 7 ps 0.5 lc rgb "blue" title "answered by the copy on {r["frm"]}", '
                    f'"" using (($1 - {t0}) / 1000.0):($2 >= 0 && $3 != {st} ? $2 : 1/0) with points pt 7 ps 0.5 lc rgb "dark-green" title "answered by the copy on {r["to"]}", '
                    f'"" using (($1 - {t0}) / 1000.0):($2 < 0 ? 1500 : 1/0) with points pt 2 ps 0.7 lc rgb "red" title "lost"\n')
    g.write("unset multiplot\n")
PY
gnuplot "$OUT/migrate_watch.gp" || { FAILED=1; echo "migrate_watch.sh: gnuplot failed" >&2; }
echo "migrate_watch.sh: $OUT/migrate_watch.md, $OUT/migrate_watch.png" >&2
[ "$FAILED" = 0 ] || exit 1
