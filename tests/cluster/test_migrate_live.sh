#!/usr/bin/env bash
# Live and pre-copy migration between two nodes (issue 12), as root: a
# registry and two node managers on network-namespace hosts
# (tests/cluster/lib.sh). The workload is a busybox counter whose count
# lives only in the shell's memory (i=$((i+1))): after a migration the log
# on the target must count on from where the source was, not from 1.
#   - precopy node1 -> node2, then live node2 -> node1: committed, one
#     sliver running, the count continues, the summary shows the rounds and
#     the downtime, the record has the stats;
#   - faults, in both modes (the slice must end running on exactly one node
#     with its count intact, i.e. continuing on the surviving node):
#     the target killed mid-stream (VSLICE_FAULT=migrate.in:4), the stream
#     corrupted (migrate.flip:N), the link cut while the source is frozen
#     (the target's veth down with the stream's tail held back), the target
#     out of memory (node2's cgroup parent limited to 4 MiB: the restored
#     counter, 6 MB of shell memory, cannot fit).
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s --lost-after 20 --migration-timeout 30
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
for k in 1 2; do vc_enroll_node $k; done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes enroll and are ready" wait_for 30 nodes_ready
TOKEN=$ALICE

vc_start_node_env() { # NAME VAR=VALUE...
	local name=$1 k=${1#node}
	shift
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name \
		env "$@" nsenter --net=/run/netns/$VC_PFX-$name "$NODEMGR" --registry "$REGISTRY_URL" \
		--name "$name" --token "$NODE_TOKEN" --heartbeat 1s --listen "$VC_NET.1$k:7481" \
		>>"$VC_TMP/$name.log" 2>&1 &
	eval "VC_NODE_PID_$name=$!"
	VC_PIDS+=("$!")
}
node_pid() { eval "echo \$VC_NODE_PID_$1"; }
died() {
	local pid i
	pid=$(node_pid "$1")
	for i in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && return 1
	wait "$pid" 2>/dev/null
	return 0
}
reg_count() { grep -c "registered with" "$VC_TMP/$1.log"; }
registered() { [ "$(reg_count "$1")" -gt "$2" ]; }
restart_node() { # NAME [VAR=VALUE...]
	local name=$1 before
	shift
	vc_stop_node "$name"
	before=$(reg_count "$name")
	eval "NODE_TOKEN=\$NODE${name#node}_TOKEN"
	vc_start_node_env "$name" "$@"
	wait_for 30 registered "$name" "$before" && wait_for 30 api_up "$name"
}
# The node manager's --listen API answers (the transfer endpoint is up).
api_up() { in_reg curl -sf -o /dev/null "http://$VC_NET.1${1#node}:7481/v1/status"; }

COUNTER='i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i; sleep 0.1; done'
# The last count in the slice's log on NODE (through the registry).
last_count() { vsc logs "$1" --node "$2" 2>/dev/null | grep -E '^[0-9]+$' | tail -1; }
first_count() { vsc logs "$1" --node "$2" 2>/dev/null | grep -E '^[0-9]+$' | head -1; }
# The count right now, from the slice's own /tmp/n on NODE.
count_now() { vs_node "$2" exec "$1" -- cat /tmp/n 2>>"$VC_TMP/exec.log"; }
has_count() { [ -n "$(count_now "$1" "$2")" ]; }
# The count, read again until the exec answers (at most 10 s).
count_wait() {
	local i v
	for i in $(seq 50); do
		v=$(count_now "$1" "$2")
		[ -n "$v" ] && { echo "$v"; return 0; }
		sleep 0.2
	done
	return 1
}
counting() { [ "${2:-0}" -gt 0 ] 2>/dev/null && [ "$(last_count "$1" "$3")" -gt "$2" ] 2>/dev/null; }
new_slice() { # NAME: a counter on node1, counted past 20
	vsc create --node node1 --image busybox "$1" -- sh -c "$COUNTER" >/dev/null
	past() { [ "$(last_count "$1" node1)" -ge 20 ] 2>/dev/null; }
	wait_for 60 past "$1"
}
settled() { # SLICE NODE: running on NODE alone (registry and nodes agree)
	local s=$1 on=$2 off
	[ "$on" = node1 ] && off=node2 || off=node1
	[ "$(vc_running_on "$s")" = "$on" ] &&
		[ "$(vc_local_running "$on" "$s")" = 1 ] &&
		[ ! -e "$VC_TMP/$off/root/slices/$s" ] &&
		[ ! -e "$VC_TMP/$off/root/nodemgr/slivers/$s.json" ]
}

# --- precopy node1 -> node2 ----------------------------------------------------
check "l1: a counter runs on node1" new_slice l1
out=$(vsc migrate l1 --to node2 --mode precopy 2>&1)
expect_eq "migrate l1 --to node2 --mode precopy: exit 0" 0 "$?"
echo "$out" | sed 's/^/# /'
check "... a line per round" has "$out" '^  round 1: [0-9]* pages'
check "... the frozen round" has "$out" '^  frozen: [0-9]* pages'
check "... the summary with the downtime" has "$(echo "$out" | tail -1)" \
	'^migrated l1 node1 -> node2 (precopy): .* in .* s, downtime .* s$'
id=$(vc_api GET "/v1/migrations?slice=l1" | jq -r '.migrations[0].id')
expect_eq "... committed" committed "$(vc_migration_field "$id" phase)"
check "... the record has the rounds" test "$(vc_migration "$id" | jq '.stats.rounds | length')" -ge 1
check "... and a downtime" test "$(vc_migration_field "$id" downtime_ms)" -ge 0
check "one sliver, running on node2" wait_for 30 settled l1 node2
# over plain http the stream is the upgraded connection itself (pages
# spliced in and out of the socket), not a PUT's body
check "... the stream came on the upgraded connection" \
	grep -q "transfer $id: receiving sliver l1 from node1 (on the connection)" "$VC_TMP/node2.log"
has_first() { [ -n "$(first_count "$1" "$2")" ]; }
wait_for 30 has_first l1 node2
first=$(first_count l1 node2)
echo "# node2's log starts at $first"
check "the log on node2 counts on from where node1 was (not from 1)" test "${first:-0}" -gt 20
check "its count can be read on node2" wait_for 30 has_count l1 node2
n=$(count_wait l1 node2)
check "... and goes on counting" wait_for 30 counting l1 "$n" node2

# --- live node2 -> node1 -------------------------------------------------------
before=$(last_count l1 node2)
out=$(vsc migrate l1 --to node1 --mode live 2>&1)
expect_eq "migrate l1 --to node1 --mode live: exit 0" 0 "$?"
echo "$out" | sed 's/^/# /'
check "... the summary with the downtime" has "$(echo "$out" | tail -1)" \
	'^migrated l1 node2 -> node1 (live): .* in .* s, downtime .* s$'
check "one sliver, running on node1" wait_for 30 settled l1 node1
wait_for 30 has_first l1 node1
first=$(first_count l1 node1)
echo "# node1's log starts at $first (node2 had reached $before)"
check "the log on node1 counts on (past what node2 had logged)" test "${first:-0}" -gt "${before:-0}"
vsc migrations l1 --json >/dev/null
expect_eq "slicectl migrations --json: both with stats" 2 \
	"$(vsc migrations l1 --json | jq '[.migrations[] | select(.stats.freeze_ms != null)] | length')"
vsc destroy l1 >/dev/null

# --- the source never runs after its dump ----------------------------------------
# migrate.hold:MS holds node1's sender for MS right after its dump has ended,
# before anything else: the slice must be frozen there already. Were it to
# run on, what it did after the dump would never reach node2 (lost at the
# commit) while the world had seen it (seen twice: node2 repeats it).
freezer_state() { # SLICE: FROZEN or THAWED, as node1's cgroup says
	local v1=/sys/fs/cgroup/freezer/$VC_PFX-node1/$1 v2=/sys/fs/cgroup/$VC_PFX-node1/$1
	if [ -d /sys/fs/cgroup/freezer ]; then
		cat "$v1/freezer.state"
	else
		grep -q '^frozen 1' "$v2/cgroup.events" && echo FROZEN || echo THAWED
	fi
}
local_last() { vs_node node1 logs "$1" 2>/dev/null | grep -E '^[0-9]+$' | tail -1; }
held() { grep -q "migration $1: held 3000 ms after the dump" "$VC_TMP/node1.log"; }
migrate() { vc_api POST "/v1/slices/$1/migrations" -d "{\"to\": \"$2\", \"mode\": \"$3\"}" | jq -r .id; }
restart_node node1 VSLICE_FAULT=migrate.hold:3000
for mode in precopy live; do
	s=hd$mode
	check "hold $mode: a counter runs on node1" new_slice $s
	id=$(migrate $s node2 $mode)
	check "hold $mode: node1's sender holds right after the dump" wait_for 60 held "$id"
	fz=$(freezer_state $s)
	a=$(local_last $s)
	sleep 1
	b=$(local_last $s)
	expect_eq "hold $mode: ... the slice is frozen there" FROZEN "$fz"
	expect_eq "hold $mode: ... its count does not move (was $a)" "$a" "$b"
	check "hold $mode: the migration finishes" vc_wait_finished "$id" 120
	expect_eq "hold $mode: ... committed" committed "$(vc_migration_field "$id" phase)"
	check "hold $mode: running on node2 alone" wait_for 30 settled $s node2
	wait_for 30 has_first $s node2
	first=$(first_count $s node2)
	check "hold $mode: node2's log goes on past node1's last line ($b): $first" test "${first:-0}" -gt "${b:-0}"
	vsc destroy $s >/dev/null
done
restart_node node1

# --- faults, in both modes ---------------------------------------------------
# A counter holding 6 MB in the shell's memory, so the stream takes a while.
BIGCOUNTER='x=$(head -c 6000000 /dev/zero | tr "\0" a); i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i; sleep 0.1; done'
big_slice() {
	vsc create --node node1 --image busybox "$1" -- sh -c "$BIGCOUNTER" >/dev/null
	past() { [ "$(last_count "$1" node1)" -ge 20 ] 2>/dev/null; }
	wait_for 60 past "$1"
}
# Ends on node1 alone, its memory intact: the count went on (it never
# started again from 1: one "1" in its log) past where it was.
intact() { # CASE SLICE ID COUNT_BEFORE
	local what=$1 s=$2 id=$3 before=$4 n
	check "$what: the migration finishes" vc_wait_finished "$id" 120
	expect_eq "$what: ... aborted" aborted "$(vc_migration_field "$id" phase)"
	check "$what: running on node1 alone, nothing left on node2" wait_for 90 settled "$s" node1
	went_on() { [ "$(count_now "$1" node1)" -gt "$2" ] 2>/dev/null; }
	check "$what: the count went on from where it was ($before)" wait_for 30 went_on "$s" "$before" ||
		vs_node node1 list
	n=$(count_wait "$s" node1)
	expect_eq "$what: ... never restarted (one \"1\" in its log)" 1 \
		"$(vsc logs "$s" --node node1 2>/dev/null | grep -cx 1)"
	check "$what: ... and goes on counting" wait_for 30 counting "$s" "$n" node1
	echo "# $what: $(vc_migration "$id" | jq -c '{phase, reason}')"
}
LANDEV=$VC_PFX-h12 # node2's veth, on the lan side
# node2_memory LIMIT|max: the memory limit of node2's cgroup parent, which
# every sliver there (and so every restore) is under.
node2_memory() {
	local v1=/sys/fs/cgroup/memory/$VC_PFX-node2 v2=/sys/fs/cgroup/$VC_PFX-node2
	if [ -d /sys/fs/cgroup/memory ]; then
		mkdir -p "$v1"
		echo "${1/max/-1}" >"$v1/memory.limit_in_bytes"
	else
		echo "$1" >"$v2/memory.max"
	fi
}
frozen_on1() { vs_node node1 list 2>/dev/null | awk -v n="$1" '$1 == n && $2 == "frozen"' | grep -q .; }
k=0
for mode in precopy live; do
	k=$((k + 1))
	s=tk$k
	check "tk $mode: slice ready" big_slice $s
	restart_node node2 VSLICE_FAULT=migrate.in:4
	before=$(count_wait $s node1)
	id=$(migrate $s node2 $mode)
	check "tk $mode: the target's node manager dies mid-stream" died node2
	restart_node node2
	intact "target killed ($mode)" $s "$id" "$before"
	vsc destroy $s >/dev/null

	s=sc$k
	check "sc $mode: slice ready" big_slice $s
	restart_node node2 VSLICE_FAULT=migrate.flip:3000000
	before=$(count_wait $s node1)
	id=$(migrate $s node2 $mode)
	intact "stream corrupted ($mode)" $s "$id" "$before"
	check "sc $mode: ... the reason is the target's" has "$(vc_migration_field "$id" reason)" "target node2"
	restart_node node2
	vsc destroy $s >/dev/null

	s=lc$k
	check "lc $mode: slice ready" big_slice $s
	check "lc $mode: node2's transfer API is up" wait_for 30 api_up node2
	ip netns exec "$VC_NS_LAN" tc qdisc add dev "$LANDEV" root tbf rate 8mbit burst 64kb latency 1s
	before=$(count_wait $s node1)
	id=$(migrate $s node2 $mode)
	check "lc $mode: the source freezes (the stream's tail still to go)" wait_for 60 frozen_on1 $s
	ip -n "$VC_NS_LAN" link set "$LANDEV" down
	check "lc $mode: given up while the link is down" vc_wait_finished "$id" 90
	ip -n "$VC_NS_LAN" link set "$LANDEV" up
	ip netns exec "$VC_NS_LAN" tc qdisc del dev "$LANDEV" root
	intact "link cut while frozen ($mode)" $s "$id" "$before"
	vsc destroy $s >/dev/null

	s=om$k
	check "om $mode: slice ready" big_slice $s
	node2_memory 4M
	before=$(count_wait $s node1)
	id=$(migrate $s node2 $mode)
	intact "target out of memory ($mode)" $s "$id" "$before"
	check "om $mode: ... the reason is the target's restore" \
		has "$(vc_migration_field "$id" reason)" "target node2: receiving the stream"
	node2_memory max
	vsc destroy $s >/dev/null
done

# --- no --mode: pre-copy, or cold where the checkpointer refuses ---------------
# A --disk slice (its own file system) is refused by the checkpointer up
# front: the source says so before anything stops and slicectl goes cold.
vsc create --node node1 --image busybox --disk 64M d1 -- sh -c "$COUNTER" >/dev/null
past_d1() { [ "$(last_count d1 node1)" -ge 5 ] 2>/dev/null; }
check "d1: a --disk counter runs on node1" wait_for 60 past_d1
vsc migrate d1 --to node2 --mode live >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate d1 --mode live: exit 1 (aborted)" 1 "$?"
check "... saying it cannot be checkpointed" grep -q "aborted: source node1: cannot be checkpointed" "$VC_TMP/e"
expect_eq "... and d1 still runs on node1" 1 "$(vc_local_running node1 d1)"
expect_eq "... its log has one \"1\"" 1 "$(vsc logs d1 --node node1 2>/dev/null | grep -cx 1)"
out=$(vsc migrate d1 --to node2 2>"$VC_TMP/e")
expect_eq "migrate d1 (no --mode): exit 0" 0 "$?"
check "... says why it goes cold" grep -q "cannot be checkpointed.*; migrating it cold instead" "$VC_TMP/e"
check "... and went cold" has "$(echo "$out" | tail -1)" '^migrated d1 node1 -> node2 (cold): '
check "d1 runs on node2 alone" wait_for 30 settled d1 node2
vsc destroy d1 >/dev/null

# --- preconditions: a target on another kernel release -------------------------
# Each node manager registers its kernel release (label vslice.kernel); node2
# says another one here: live and pre-copy are refused before anything stops.
vc_stop_node node2
before=$(reg_count node2)
NODE_TOKEN=$NODE2_TOKEN vc_start_node node2 --heartbeat 1s --listen "$VC_NET.12:7481" \
	--label vslice.kernel=0.0-test
check "node2 back, saying kernel 0.0-test" wait_for 30 registered node2 "$before"
kernel_of() { TOKEN=$ADMIN vc_api GET /v1/nodes | jq -r ".nodes[] | select(.name == \"$1\") | .labels[\"vslice.kernel\"]"; }
expect_eq "... the registry has node1's own release" "$(uname -r)" "$(kernel_of node1)"
expect_eq "... and node2's" 0.0-test "$(kernel_of node2)"
check "k1: a counter runs on node1" new_slice k1
vsc migrate k1 --to node2 --mode live >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate k1 --mode live to another kernel: exit 125" 125 "$?"
expect_eq "... one line, suggesting --mode cold" \
	"slicectl: migrate k1: node node2 runs kernel 0.0-test, node node1 $(uname -r): a live migration needs the same kernel release; use --mode cold" \
	"$(cat "$VC_TMP/e")"
expect_eq "... nothing recorded, k1 runs on node1" "node1" "$(vc_running_on k1)"
vsc destroy k1 >/dev/null
finish
