#!/usr/bin/env bash
# Cold migration end to end (issue 11 "Benchmark"): `slicectl migrate` with
# a registry and two node managers, against `tar c | tar x` of the same upper
# dir over the same link, in the same run; then `slicectl node drain --migrate`
# of 50 small slices.
#
# Hosts (tests/cluster/lib.sh, its helpers as they are): network namespaces
# reg (10.217.X.1: the registry, slicectl), node1 and node2 (.11, .12: a
# vslice-nodemgr each, --listen on its address, its own VSLICE_ROOT), each
# joined by a veth to a bridge in a namespace of its own. Node to node, the
# stream goes veth -> bridge -> veth; the tar copy takes the same way
# (tests/bench/tcprelay: tar's stdout/stdin is the TCP socket itself).
#
# For each size (MIGCL_SIZES, MiB; default 10 100 1024): a slice created on
# node1 through the registry (busybox, `sleep`), its upper dir filled with
# tests/bench/fill_upper.py (migrate.sh's data set), then MIGCL_REPS times:
#   tar        tar -C UPPER -cf - . on the source host -> tar -xf - on the other
#   tar+sync   the same, then sync -f (the data on disk, as the target has it)
#   migrate    slicectl migrate NAME --to OTHER --mode cold --json (wall time,
#              and the migration record: total_ms, downtime_ms, bytes,
#              stopped/restored/committed/started_ms)
# Repetitions go back and forth (node1 -> node2, node2 -> node1, ...).
# Then the drain: MIGCL_DRAIN (50) slices of 1 MiB on node1,
# `slicectl node drain node1 --migrate --parallel P` for each P in
# MIGCL_PARALLEL ("3 8"; 3 is the default), alternating the drained node.
# Writes $BENCH_OUT/migrate_cluster.md (the tables) and .tsv (every run).
# Everything (daemons, slices, namespaces, files) is removed on exit, also on
# failure (tests/cluster/lib.sh's trap, plus our relay).
#   MIGCL_SIZES="10 100 1024" MIGCL_REPS=3 MIGCL_DRAIN=50 bash tests/bench/migrate_cluster.sh
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../cluster/lib.sh"
# Our own address block (lib.sh's default is the tests' 10.231.X).
VC_NET=10.217.$VC_ID
REGISTRY_URL=http://$VC_NET.1:7480

OUT=${BENCH_OUT:-$VC_REPO/build/bench}
SIZES=${MIGCL_SIZES-10 100 1024} # "": no single migrations
REPS=${MIGCL_REPS:-3}
NDRAIN=${MIGCL_DRAIN:-50}
PARS=${MIGCL_PARALLEL:-3 8}
HB=${MIGCL_HEARTBEAT:-1s}
SETTLE=${MIGCL_SETTLE:-35}
RELAY=$OUT/bin/tcprelay
RELAY_PID=
FAILED=0

die() {
	echo "migrate_cluster.sh: $*" >&2
	VS_FAIL=1 # vc_cleanup shows the daemons' logs
	exit 1
}
mc_cleanup() {
	local rc=$?
	[ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null
	# the daemons' logs (UTC ms timestamps: where a migration's time went)
	mkdir -p "$OUT/migrate_cluster-logs"
	cp "$VC_TMP"/*.log "$OUT/migrate_cluster-logs/" 2>/dev/null
	vc_cleanup
	exit "$rc"
}
trap mc_cleanup EXIT

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$OUT/bin"
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$RELAY" "$HERE/tcprelay.c" ||
	die "cannot build tests/bench/tcprelay.c"

now() { printf '%s' "$EPOCHREALTIME"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
in_node() { local n=$1; shift; nsenter --net="/run/netns/$VC_PFX-$n" "$@"; }
addr() { echo "$VC_NET.1${1#node}"; }
# cpu PID: its CPU seconds so far (user + system, its threads and waited-for children)
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat"; }
nm_cpu() { local a b; eval "a=\$VC_NODE_PID_node1 b=\$VC_NODE_PID_node2"; awk -v x="$(cpu "$a")" -v y="$(cpu "$b")" 'BEGIN { printf "%.2f %.2f", x, y }'; }
other() { [ "$1" = node1 ] && echo node2 || echo node1; }

# pair FROM TO SENDCMD RECVCMD: seconds from the listener's start to the receiver's exit.
pair() {
	local port=$((20000 + RANDOM % 20000)) t0 t1 rc=0
	t0=$(now)
	in_node "$2" "$RELAY" listen "$(addr "$2")" "$port" -- sh -c "$4" &
	RELAY_PID=$!
	in_node "$1" "$RELAY" connect "$(addr "$2")" "$port" -- sh -c "$3" || rc=1
	wait "$RELAY_PID" || rc=1
	RELAY_PID=
	t1=$(now)
	[ "$rc" = 0 ] || return 1
	awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }'
}

# --- the cluster ------------------------------------------------------------
echo "migrate_cluster.sh: hosts $VC_PFX-{reg,node1,node2} on $VC_NET.0/24, files in $VC_TMP" >&2
vc_setup_net
vc_start_registry --heartbeat "$HB" --migration-timeout 300 >/dev/null || die "registry did not start"
TOKEN=$ADMIN
ALICE=$(vsc user create alice) || die "user create"
for k in 1 2; do
	mkdir -p "$VC_TMP/node$k"
	vs_node node$k image build busybox >/dev/null 2>&1 || die "image build on node$k"
	NODE_TOKEN=$(vsc token create --role node) || die "token create"
	vc_add_node node$k $k --heartbeat "$HB" --listen "$VC_NET.1$k:7481"
done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
wait_for 60 nodes_ready || die "the two nodes did not become ready"
in_node node1 busybox ping -c 1 -W 2 "$VC_NET.12" >/dev/null || die "no link node1 -> node2"

TSV=$OUT/migrate_cluster.tsv
printf 'size_mib\trep\tfrom\tto\tfiles\ttar_s\ttar_sync_s\tmigrate_wall_s\ttotal_ms\tdowntime_ms\tbytes\tcreated_to_stopped_ms\tstopped_to_restored_ms\trestored_to_committed_ms\tcommitted_to_started_ms\n' >"$TSV"
rows=()
on() { [ "$(vc_running_on "$1")" = "$2" ]; }
for mib in $SIZES; do
	s=mc$mib
	TOKEN=$ALICE vsc create --node node1 --image busybox "$s" -- sleep 1000000 >/dev/null || die "create $s"
	wait_for 60 on "$s" node1 || die "$s does not run on node1"
	where=node1
	sd=$VC_TMP/node1/root/slices/$s
	base=$(jq -r .id_base "$sd/spec.json") || die "no id_base for $s"
	files=$(python3 "$HERE/fill_upper.py" "$sd/upper/data" "$mib" "$base") || die "fill $s"
	sync
	tt=() ts=() tm=() tot=() dt=() rr=()
	for rep in $(seq "$REPS"); do
		to=$(other "$where")
		upper=$VC_TMP/$where/root/slices/$s/upper
		tar -C "$upper" -cf - . >/dev/null # the source's page cache, as the stream finds it
		d=$VC_TMP/tarcopy-$mib-$rep
		mkdir "$d" "$d.s"
		sync
		tt+=("$(pair "$where" "$to" "tar -C '$upper' -cf - ." "tar -C '$d' -xf -")") || die "tar run failed"
		sync
		ts+=("$(pair "$where" "$to" "tar -C '$upper' -cf - ." "tar -C '$d.s' -xf - && sync -f '$d.s'")") ||
			die "tar+sync run failed"
		sync
		read -r c1a c2a <<<"$(nm_cpu)"
		t0=$(now)
		TOKEN=$ALICE vsc migrate "$s" --to "$to" --mode cold --json >"$OUT/migrate_cluster-$mib-$rep.json" ||
			die "slicectl migrate $s --to $to failed: $(cat "$OUT/migrate_cluster-$mib-$rep.json")"
		t1=$(now)
		read -r c1b c2b <<<"$(nm_cpu)"
		nmcpu=$(awk -v a="$c1a" -v b="$c1b" -v c="$c2a" -v d="$c2b" 'BEGIN { printf "node1 %.2f s, node2 %.2f s", b - a, d - c }')
		wall=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
		tm+=("$wall")
		rr+=("$(awk -v w="$wall" -v t="${tt[-1]}" 'BEGIN { printf "%.3f", w / t }')")
		line=$(jq -r '[.total_ms, .downtime_ms, .bytes,
			(.stopped_ms - (.started_ms - .total_ms)), (.restored_ms - .stopped_ms),
			(.committed_ms - .restored_ms), (.started_ms - .committed_ms)] | @tsv' \
			"$OUT/migrate_cluster-$mib-$rep.json") || die "no migration record"
		read -r total down bytes c2s s2r r2c c2st <<<"$line"
		tot+=("$total") dt+=("$down")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mib" "$rep" "$where" "$to" "$files" \
			"${tt[-1]}" "${ts[-1]}" "$wall" "$line" >>"$TSV"
		echo "  $mib MiB run $rep ($where -> $to): tar ${tt[-1]} s, tar+sync ${ts[-1]} s, migrate $wall s" \
			"(record: total $total ms, downtime $down ms, $bytes B; create->stop $c2s, stop->restored $s2r," \
			"restored->committed $r2c, committed->started $c2st ms; node managers' CPU: $nmcpu)" >&2
		where=$to
		wait_for 60 on "$s" "$where" || die "$s does not run on $where after the migration"
	done
	mt=$(printf '%s\n' "${tt[@]}" | median)
	ms=$(printf '%s\n' "${ts[@]}" | median)
	mm=$(printf '%s\n' "${tm[@]}" | median)
	mtot=$(printf '%s\n' "${tot[@]}" | median)
	mdt=$(printf '%s\n' "${dt[@]}" | median)
	mrr=$(printf '%s\n' "${rr[@]}" | median)
	rows+=("$(awk -v m="$mib" -v f="$files" -v t="$mt" -v s="$ms" -v w="$mm" -v tot="$mtot" -v d="$mdt" -v b="$bytes" -v r="$mrr" 'BEGIN {
		printf "| %d MiB | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f |", m, f, t, s, w, tot / 1000, d / 1000, b / 1048576, w / t, w / s, r }')")
	TOKEN=$ALICE vsc destroy "$s" >/dev/null || die "destroy $s"
	rm -rf "$VC_TMP"/tarcopy-*
	# ext4 without a journal: new inodes skip those freed in the last ~30 s
	# (docs/benchmarks.md section 8); the next size must not pay for this one.
	[ "$mib" = "${SIZES##* }" ] || sleep "$SETTLE"
done

# --- drain ------------------------------------------------------------------
drows=()
if [ "$NDRAIN" -gt 0 ]; then
	names=()
	for i in $(seq -w "$NDRAIN"); do
		names+=("dr$i")
		TOKEN=$ALICE vsc create --node node1 --image busybox "dr$i" -- sleep 1000000 >/dev/null ||
			die "create dr$i"
	done
	all_on() { local n; for n in "${names[@]}"; do on "$n" "$1" || return 1; done; }
	wait_for 300 all_on node1 || die "the $NDRAIN drain slices do not all run on node1"
	for n in "${names[@]}"; do
		sd=$VC_TMP/node1/root/slices/$n
		python3 "$HERE/fill_upper.py" "$sd/upper/data" 1 "$(jq -r .id_base "$sd/spec.json")" >/dev/null ||
			die "fill $n"
	done
	sync
	from=node1
	for par in $PARS; do
		to=$(other "$from")
		TOKEN=$ADMIN vsc node undrain "$to" >/dev/null 2>&1
		since=$(date +%s)
		t0=$(now)
		# A drain that leaves slices behind is a result too: kept in the
		# table (the moved column), its log printed; the script fails at the end.
		if ! TOKEN=$ADMIN vsc node drain "$from" --migrate --parallel "$par" >"$OUT/migrate_cluster-drain-$par.log" 2>&1; then
			FAILED=1
			echo "migrate_cluster.sh: node drain $from --parallel $par failed:" >&2
			sed -n '/^not moved/,$p' "$OUT/migrate_cluster-drain-$par.log" >&2
		fi
		t1=$(now)
		wall=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
		TOKEN=$ADMIN vc_api GET /v1/migrations >"$OUT/migrate_cluster-drain-$par.json"
		recs=$(jq -r --arg f "$from" --argjson t "$since" \
			'[.migrations[] | select(.from == $f and .created >= $t and .phase == "committed")]' \
			"$OUT/migrate_cluster-drain-$par.json")
		nmoved=$(jq length <<<"$recs")
		ptot=$(jq -r '.[].total_ms' <<<"$recs" | median)
		pdown=$(jq -r '.[].downtime_ms' <<<"$recs" | median)
		pstop=$(jq -r '.[] | .stopped_ms - (.started_ms - .total_ms)' <<<"$recs" | median)
		echo "  drain $from --parallel $par: $wall s, $nmoved moved, per slice median total $ptot ms, downtime $pdown ms, queued $pstop ms" >&2
		drows+=("$(awk -v n="$NDRAIN" -v f="$from" -v t="$to" -v p="$par" -v w="$wall" -v m="$nmoved" -v pt="$ptot" -v pd="$pdown" -v ps="$pstop" 'BEGIN {
			printf "| %d × 1 MiB | %s -> %s | %d | %.1f | %d | %.2f | %.2f | %.2f |", n, f, t, p, w, m, pt / 1000, pd / 1000, ps / 1000 }')")
		if [ "$nmoved" != "$NDRAIN" ]; then
			FAILED=1
			echo "migrate_cluster.sh: drain $from --parallel $par moved $nmoved of $NDRAIN" >&2
			break # the next drain would not start from one node
		fi
		wait_for 120 all_on "$to" || die "the drained slices do not all run on $to"
		from=$to
	done
	TOKEN=$ADMIN vsc node undrain node1 >/dev/null 2>&1
	TOKEN=$ADMIN vsc node undrain node2 >/dev/null 2>&1
	for n in "${names[@]}"; do TOKEN=$ALICE vsc destroy "$n" >/dev/null 2>&1; done
fi

{
	echo "Cold migration end to end: slicectl migrate vs tar over the same link ($(date -u '+%F %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), medians of $REPS, heartbeat $HB)"
	echo
	echo "| upper dir | files | tar c \\| tar x (s) | + sync -f (s) | slicectl migrate (s) | record total (s) | downtime (s) | MiB moved | migrate / tar | migrate / tar+sync | per run migrate / tar, median |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	[ "${#rows[@]}" -gt 0 ] && printf '%s\n' "${rows[@]}"
	if [ "${#drows[@]}" -gt 0 ]; then
		echo
		echo "| drain | from -> to | --parallel | total (s) | moved | per slice total, median (s) | downtime, median (s) | created -> stopped, median (s) |"
		echo "|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${drows[@]}"
	fi
	echo
	echo "Where each migration's downtime went (the node managers' logs, tests/bench/migrate_logs.py):"
	echo
	python3 "$HERE/migrate_logs.py" "$VC_TMP"
} | tee "$OUT/migrate_cluster.md"
[ "$FAILED" = 0 ] || exit 1
