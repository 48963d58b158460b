#!/usr/bin/env bash
# Live and pre-copy migration between two nodes (issue 12 "Benchmark"):
# downtime and total time against memory size and against dirty rate, for
# `--mode live` (stop-and-copy) and `--mode precopy`.
#
# Hosts (tests/cluster/lib.sh, as migrate_cluster.sh uses them): network
# namespaces reg (10.218.X.1: the registry, slicectl), node1 and node2
# (.11, .12: a vslice-nodemgr each, --listen on its address), joined by
# veths to a bridge in a namespace of its own: the stream goes node to
# node over veth -> bridge -> veth.
#
# The workload: tests/bench/memload (built static by `make bench-bins`,
# copied into both nodes' busybox image as /bin/memload) in a slice made
# through the registry on node1 (--memory MIB + 256 MiB): MIB MiB of random
# data, RATE MiB/s of page writes (random pages, every 10 ms). For each case
# (MIB, RATE) one slice, then for each mode MIGLIVE_REPS migrations, back and
# forth between the nodes. Each is `slicectl migrate NAME --to OTHER --mode
# M --json`; the numbers are the migration record's (`slicectl migrations
# NAME --json`): rounds and bytes per round, the frozen round, freeze time,
# downtime (the source's freeze to the target's start), total, stream bytes;
# and the CPU both node managers spent on it (with the reaped dump child:
# /proc/PID/stat before and after), the figure to compare builds by on a
# shared, loaded box.
# After each migration the slice must run on the target and tick on.
#
# Cases: memory size MIGLIVE_SIZES (MiB, "64 128 256 512 1024") at
# MIGLIVE_SIZE_RATE MiB/s (4), dirty rate MIGLIVE_RATES (MiB/s, "0 4 32
# 128") at MIGLIVE_RATE_SIZE MiB (512); a case in both series runs once.
# Targets of issue 12, PASS/MISS each (a miss does not fail the bench; a
# migration that fails, or a record without its numbers, does):
#   live downtime <= 150 ms + 1 s per GiB (each size, median);
#   precopy downtime <= 50 ms at 512 MiB, 4 MiB/s;
#   precopy stream <= 1.5x the memory size at 512 MiB, 4 MiB/s.
# Writes $BENCH_OUT/migrate_live.tsv (every migration), migrate_live.md
# (tables, targets), migrate_live.png (gnuplot: downtime and total against
# size and against rate), migrate_live-*.json (the records) and the daemons'
# logs. Everything is removed on exit (lib.sh's trap).
#   MIGLIVE_SIZES="64 128" MIGLIVE_RATES="0 32" MIGLIVE_RATE_SIZE=128 bash tests/bench/migrate_live.sh
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../cluster/lib.sh"
VC_NET=10.218.$VC_ID
REGISTRY_URL=http://$VC_NET.1:7480

OUT=${BENCH_OUT:-$VC_REPO/build/bench}
SIZES=${MIGLIVE_SIZES-64 128 256 512 1024}
SIZE_RATE=${MIGLIVE_SIZE_RATE:-4}
RATES=${MIGLIVE_RATES-0 4 32 128}
RATE_SIZE=${MIGLIVE_RATE_SIZE:-512}
MODES=${MIGLIVE_MODES:-live precopy}
REPS=${MIGLIVE_REPS:-1}
HB=${MIGLIVE_HEARTBEAT:-1s}
BIN=$VC_REPO/build/bench/bin
FAILED=0

die() {
	echo "migrate_live.sh: $*" >&2
	VS_FAIL=1 # vc_cleanup shows the daemons' logs
	exit 1
}
ml_cleanup() {
	local rc=$?
	mkdir -p "$OUT/migrate_live-logs"
	cp "$VC_TMP"/*.log "$OUT/migrate_live-logs/" 2>/dev/null
	vc_cleanup
	exit "$rc"
}
trap ml_cleanup EXIT

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$OUT"
make -s -C "$VC_REPO" bench-bins >/dev/null || die "make bench-bins failed"
command -v gnuplot >/dev/null || die "gnuplot is needed for the plot (make deps: gnuplot-nox)"

other() { [ "$1" = node1 ] && echo node2 || echo node1; }
# CPU (ms) of both node managers so far, with their reaped children (the
# dump): the work a migration costs, which the load of a shared box does
# not change the way it changes the downtime (compare builds by it)
nm_cpu_ms() {
	local t=0 pid st
	for k in 1 2; do
		eval "pid=\$VC_NODE_PID_node$k"
		st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		st=${st##*) }
		t=$((t + $(awk '{print $12 + $13 + $14 + $15}' <<<"$st")))
	done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}
on() { [ "$(vc_running_on "$1")" = "$2" ]; }
last_tick() { vsc logs "$1" --node "$2" 2>/dev/null | awk '$1 == "tick" {t = $2} END {print t + 0}'; }
ready() { vsc logs "$1" --node node1 2>/dev/null | grep -q '^READY'; }
ticks_past() { [ "$(last_tick "$1" "$2")" -gt "$3" ]; }

# --- the cluster ------------------------------------------------------------
echo "migrate_live.sh: hosts $VC_PFX-{reg,node1,node2} on $VC_NET.0/24, files in $VC_TMP" >&2
vc_setup_net
vc_start_registry --heartbeat "$HB" --migration-timeout 300 >/dev/null || die "registry did not start"
TOKEN=$ADMIN
ALICE=$(vsc user create alice) || die "user create"
for k in 1 2; do
	mkdir -p "$VC_TMP/node$k"
	vs_node node$k image build busybox >/dev/null 2>&1 || die "image build on node$k"
	# the workload in the image of both nodes (the restore maps the same file)
	install -m 0755 "$BIN/memload" "$VC_TMP/node$k/root/images/busybox/rootfs/bin/memload" ||
		die "cannot put memload into node$k's image"
	NODE_TOKEN=$(vsc token create --role node) || die "token create"
	vc_add_node node$k $k --heartbeat "$HB" --listen "$VC_NET.1$k:7481"
done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
wait_for 60 nodes_ready || die "the two nodes did not become ready"

# --- the cases --------------------------------------------------------------
cases=()
for m in $SIZES; do cases+=("$m $SIZE_RATE"); done
for r in $RATES; do cases+=("$RATE_SIZE $r"); done
mapfile -t cases < <(printf '%s\n' "${cases[@]}" | awk 'NF && !seen[$0]++')

TSV=$OUT/migrate_live.tsv
printf 'mib\trate\tmode\trep\tfrom\tto\tok\trounds\tround_bytes\tprecopy_ms\tfrozen_bytes\tfreeze_ms\tdowntime_ms\ttotal_ms\tstream_bytes\twall_ms\tstopped_to_restored_ms\trestored_to_committed_ms\tcommitted_to_started_ms\tload1\tnm_cpu_ms\n' >"$TSV"
LOADS=$OUT/migrate_live.load
: >"$LOADS"
T0=$(date -u '+%F %H:%M')
for c in "${cases[@]}"; do
	read -r mib rate <<<"$c"
	s=ml$mib-$rate
	# sh waits for the program to be put into its upper dir, then becomes it
	TOKEN=$ALICE vsc create --node node1 --image busybox --memory $((mib + 256))M "$s" -- \
		/bin/memload "$mib" "$rate" >/dev/null || die "create $s"
	wait_for 60 on "$s" node1 || die "$s does not run on node1"
	wait_for $((60 + mib / 8)) ready "$s" ||
		die "$s: memload did not say READY; its log: $(vsc logs "$s" --node node1 2>&1 | tail -5)"
	sleep 2 # the writers at their rate
	where=node1
	for mode in $MODES; do
		for rep in $(seq "$REPS"); do
			to=$(other "$where")
			tick=$(last_tick "$s" "$where")
			load=$(cut -d' ' -f1 /proc/loadavg)
			echo "$load" >>"$LOADS"
			cpu0=$(nm_cpu_ms)
			t0=$EPOCHREALTIME
			TOKEN=$ALICE vsc migrate "$s" --to "$to" --mode "$mode" --json >"$OUT/migrate_live-$s-$mode-$rep.out" 2>"$OUT/migrate_live-$s-$mode-$rep.err"
			mrc=$?
			t1=$EPOCHREALTIME
			cpu=$(($(nm_cpu_ms) - cpu0))
			wall=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%d", (a - b) * 1000 }')
			# the record as `slicectl migrations` has it (the source's frozen
			# report may land just after the target's "started")
			id=$(jq -r '.id // empty' "$OUT/migrate_live-$s-$mode-$rep.out" 2>/dev/null)
			[ -n "$id" ] || id=$(TOKEN=$ALICE vsc migrations "$s" --json | jq -r '.migrations | max_by(.updated_ms) | .id')
			rec='{}'
			for _ in $(seq 20); do
				rec=$(TOKEN=$ALICE vsc migrations "$s" --json | jq -c --arg id "$id" '.migrations[] | select(.id == $id)')
				[ "$(jq -r '.stats.freeze_ms != null and .downtime_ms != null' <<<"$rec")" = true ] && break
				sleep 0.5
			done
			echo "$rec" >"$OUT/migrate_live-$s-$mode-$rep.json"
			line=$(jq -r '[(.phase == "committed" and .stats.freeze_ms != null and .downtime_ms != null),
				(.stats.rounds // [] | length),
				(.stats.rounds // [] | if length == 0 then "-" else map(.bytes | tostring) | join(",") end),
				.stats.precopy_ms, .stats.frozen_bytes, .stats.freeze_ms, .downtime_ms, .total_ms,
				.stats.stream_bytes, (.restored_ms - .stopped_ms), (.committed_ms - .restored_ms),
				(.started_ms - .committed_ms)] | map(tostring) | @tsv' <<<"$rec" 2>/dev/null)
			read -r ok nr rb pcms fb fz dt tot sb s2r r2c c2s <<<"$line"
			if [ "$mrc" != 0 ] || [ "$ok" != true ]; then
				FAILED=1
				echo "  $mib MiB @ $rate MiB/s $mode $where -> $to: FAILED (exit $mrc): $(tail -2 "$OUT/migrate_live-$s-$mode-$rep.err" | tr '\n' ' ') reason: $(jq -r .reason <<<"$rec")" >&2
				printf '%s\t%s\t%s\t%s\t%s\t%s\tno\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\t%s\t%s\n' "$mib" "$rate" "$mode" "$rep" \
					"$where" "$to" "$wall" "$load" "$cpu" >>"$TSV"
				# where does it run now? go on from there, if anywhere
				wait_for 30 on "$s" "$where" || { wait_for 30 on "$s" "$to" && where=$to; } ||
					die "$s runs nowhere after a failed migration"
				continue
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\tyes\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mib" "$rate" \
				"$mode" "$rep" "$where" "$to" "$nr" "$rb" "$pcms" "$fb" "$fz" "$dt" "$tot" "$sb" "$wall" \
				"$s2r" "$r2c" "$c2s" "$load" "$cpu" >>"$TSV"
			echo "  $mib MiB @ $rate MiB/s $mode $where -> $to: downtime $dt ms (freeze $fz), total $tot ms," \
				"$nr rounds [$rb], stream $((sb / 1048576)) MiB; stopped->restored $s2r, restored->committed $r2c," \
				"committed->started $c2s ms; node managers' CPU $cpu ms; load $load" >&2
			where=$to
			wait_for 60 on "$s" "$where" || die "$s does not run on $where after the migration"
			# it runs on: its ticks go on past where they were (memory intact, no restart)
			wait_for 30 ticks_past "$s" "$where" "$tick" || {
				FAILED=1
				echo "  $s: no tick after $tick on $where after the migration" >&2
			}
		done
	done
	TOKEN=$ALICE vsc destroy "$s" >/dev/null || die "destroy $s"
	gone() { [ -z "$(vs_node node1 list -q 2>/dev/null)$(vs_node node2 list -q 2>/dev/null)" ]; }
	wait_for 60 gone || echo "migrate_live.sh: $s still on a node 60 s after destroy" >&2
done

# --- tables, targets, plot --------------------------------------------------
python3 - "$TSV" "$OUT" "$SIZE_RATE" "$RATE_SIZE" "$REPS" "$T0" "$LOADS" "$SIZES" "$RATES" <<'PY' | tee "$OUT/migrate_live.md"
import csv, statistics as st, sys
tsv, out, size_rate, rate_size, reps, t0, loads = sys.argv[1:8]
sizes = [int(x) for x in sys.argv[8].split()]
rates = [int(x) for x in sys.argv[9].split()]
size_rate, rate_size = int(size_rate), int(rate_size)
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
ld = [float(x) for x in open(loads).read().split()]
def med(mib, rate, mode, key):
    v = [float(r[key]) for r in rows if int(r["mib"]) == mib and int(r["rate"]) == rate
         and r["mode"] == mode and r["ok"] == "yes"]
    return st.median(v) if v else None
def failed(mib, rate, mode):
    return sum(1 for r in rows if int(r["mib"]) == mib and int(r["rate"]) == rate and r["mode"] == mode and r["ok"] != "yes")
def f(v, d=0, scale=1.0):
    return "-" if v is None else f"{v / scale:.{d}f}"
print(f"Live and pre-copy migration between two network-namespace hosts over veth "
      f"({t0}, medians of {reps}; load average (1 min) at the migrations "
      f"{min(ld) if ld else 0:.1f}-{max(ld) if ld else 0:.1f})")
print()
print("| memory | dirty rate | mode | downtime (ms) | freeze (ms) | total (s) | rounds | bytes per round (MiB) | frozen round (MiB) | stream / memory | stopped -> restored / -> committed / -> started (ms) | node managers' CPU (ms) | failed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
cases = []
for m in sizes: cases.append((m, size_rate))
for r in rates: cases.append((rate_size, r))
seen = set()
for mib, rate in cases:
    if (mib, rate) in seen: continue
    seen.add((mib, rate))
    for mode in ("live", "precopy"):
        ok = [r for r in rows if int(r["mib"]) == mib and int(r["rate"]) == rate and r["mode"] == mode and r["ok"] == "yes"]
        if not ok and not failed(mib, rate, mode): continue
        dt = med(mib, rate, mode, "downtime_ms")
        mr = sorted(ok, key=lambda r: float(r["downtime_ms"]))[len(ok) // 2] if ok else None
        rb = "-" if not mr or mr["round_bytes"] in ("", "-") else ", ".join(f"{int(b) / 1048576:.1f}" for b in mr["round_bytes"].split(","))
        sb = med(mib, rate, mode, "stream_bytes")
        print(f"| {mib} MiB | {rate} MiB/s | {mode} | {f(dt)} | {f(med(mib, rate, mode, 'freeze_ms'))} | "
              f"{f(med(mib, rate, mode, 'total_ms'), 2, 1000)} | {mr['rounds'] if mr else '-'} | {rb} | "
              f"{f(med(mib, rate, mode, 'frozen_bytes'), 1, 1048576)} | "
              f"{'-' if sb is None else f'{sb / (mib * 1048576):.2f}'} | "
              f"{f(med(mib, rate, mode, 'stopped_to_restored_ms'))} / {f(med(mib, rate, mode, 'restored_to_committed_ms'))} / "
              f"{f(med(mib, rate, mode, 'committed_to_started_ms'))} | {f(med(mib, rate, mode, 'nm_cpu_ms'))} | "
              f"{failed(mib, rate, mode)} |")
print()
print("Targets (issue 12):")
print()
def verdict(v, lim):
    return "NOT MEASURED" if v is None else ("PASS" if v <= lim else "MISS")
for mib in sizes:
    lim = 150 + 1000 * mib / 1024
    v = med(mib, size_rate, "live", "downtime_ms")
    print(f"- live downtime at {mib} MiB ({size_rate} MiB/s) <= {lim:.0f} ms: {f(v)} ms: {verdict(v, lim)}")
v = med(512, 4, "precopy", "downtime_ms")
print(f"- precopy downtime at 512 MiB, 4 MiB/s <= 50 ms: {f(v)} ms: {verdict(v, 50)}")
v = med(512, 4, "precopy", "stream_bytes")
ratio = None if v is None else v / (512 * 1048576)
print(f"- precopy stream at 512 MiB, 4 MiB/s <= 1.5x memory: {'-' if ratio is None else f'{ratio:.2f}'}x: {verdict(ratio, 1.5)}")
# the plot's data: one file per series
with open(f"{out}/migrate_live-size.dat", "w") as d:
    d.write("# mib live_downtime_ms precopy_downtime_ms live_total_s precopy_total_s target_ms precopy_freeze_ms\n")
    for mib in sizes:
        d.write(f"{mib} {f(med(mib, size_rate, 'live', 'downtime_ms'))} {f(med(mib, size_rate, 'precopy', 'downtime_ms'))} "
                f"{f(med(mib, size_rate, 'live', 'total_ms'), 3, 1000)} {f(med(mib, size_rate, 'precopy', 'total_ms'), 3, 1000)} "
                f"{150 + 1000 * mib / 1024:.0f} {f(med(mib, size_rate, 'precopy', 'freeze_ms'))}\n")
with open(f"{out}/migrate_live-rate.dat", "w") as d:
    d.write("# rate live_downtime_ms precopy_downtime_ms live_total_s precopy_total_s precopy_freeze_ms\n")
    for r in rates:
        d.write(f"{r} {f(med(rate_size, r, 'live', 'downtime_ms'))} {f(med(rate_size, r, 'precopy', 'downtime_ms'))} "
                f"{f(med(rate_size, r, 'live', 'total_ms'), 3, 1000)} {f(med(rate_size, r, 'precopy', 'total_ms'), 3, 1000)} "
                f"{f(med(rate_size, r, 'precopy', 'freeze_ms'))}\n")
PY
# a row of two panels per series that has cases (MIGLIVE_SIZES or MIGLIVE_RATES may be "")
nrows=0
[ -n "${SIZES// /}" ] && nrows=$((nrows + 1))
[ -n "${RATES// /}" ] && nrows=$((nrows + 1))
{
	cat <<EOF
set terminal pngcairo size 1200,$((400 * (nrows > 0 ? nrows : 1))) font ",10"
set output "$OUT/migrate_live.png"
set datafile missing "-"
set key top left
set grid
set yrange [0:*]
set multiplot layout $nrows,2 title "vslice live migration between two hosts over veth ($T0 UTC; 2-core VM, shared)"
EOF
	[ -n "${SIZES// /}" ] && cat <<EOF
set xlabel "memory (MiB), dirtied at $SIZE_RATE MiB/s"
set ylabel "downtime (ms)"
set logscale x 2
set xrange [32:2048]
set title "downtime against memory size"
plot "$OUT/migrate_live-size.dat" using 1:2 with linespoints lw 2 title "live (stop-and-copy)", \
     "" using 1:3 with linespoints lw 2 title "precopy", \
     "" using 1:7 with linespoints dt 3 lw 2 lc rgb "dark-green" title "precopy: source frozen for its dump", \
     "" using 1:6 with lines dt 2 lc rgb "gray40" title "target: 150 ms + 1 s/GiB (live)"
set ylabel "total (s)"
set title "total migration time against memory size"
plot "$OUT/migrate_live-size.dat" using 1:4 with linespoints lw 2 title "live", \
     "" using 1:5 with linespoints lw 2 title "precopy"
unset logscale x
EOF
	[ -n "${RATES// /}" ] && cat <<EOF
set xrange [-8:136]
set xlabel "dirty rate (MiB/s), $RATE_SIZE MiB"
set ylabel "downtime (ms)"
set title "downtime against dirty rate"
plot "$OUT/migrate_live-rate.dat" using 1:2 with linespoints lw 2 title "live (stop-and-copy)", \
     "" using 1:3 with linespoints lw 2 title "precopy", \
     "" using 1:6 with linespoints dt 3 lw 2 lc rgb "dark-green" title "precopy: source frozen for its dump"
set ylabel "total (s)"
set title "total migration time against dirty rate"
plot "$OUT/migrate_live-rate.dat" using 1:4 with linespoints lw 2 title "live", \
     "" using 1:5 with linespoints lw 2 title "precopy"
EOF
	echo "unset multiplot"
} >"$OUT/migrate_live.gp"
if [ "$nrows" -gt 0 ]; then
	gnuplot "$OUT/migrate_live.gp" || { FAILED=1; echo "migrate_live.sh: gnuplot failed" >&2; }
fi
echo "migrate_live.sh: $TSV, $OUT/migrate_live.md, $OUT/migrate_live.png" >&2
[ "$FAILED" = 0 ] || exit 1
