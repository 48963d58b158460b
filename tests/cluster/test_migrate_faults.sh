#!/usr/bin/env bash
# Cold migration is all-or-nothing (issue 11), as root: a registry and two
# node managers on network-namespace hosts (tests/cluster/lib.sh). Each case
# moves a fresh busybox slice (a /keep value written once, and /big: 64 MiB
# of random bytes, so the stream takes a while) node1 -> node2 and breaks it
# on the way:
#   target killed mid-transfer   VSLICE_FAULT=migrate.in:4 (after 1 MiB in)
#   source killed mid-transfer   VSLICE_FAULT=migrate.out:4 (after 1 MiB out)
#   link cut                     node2's veth down while the (throttled)
#                                stream runs
#   stream corrupted             VSLICE_FAULT=migrate.flip:N on the target
#   target disk full             node2's root on a 40 MiB tmpfs
#   registry restarted           during the (throttled) stream
#   a second migrate at once     two POSTs back to back
#   target slow to open          VSLICE_FAULT=migrate.delay:3000 on the
#                                target: the source's PUTs come while its
#                                transfer is not open (503); the body waits
#                                for "100 Continue", so the 503 arrives as
#                                one (retried), never as "Broken pipe"
# Each ends with the slice running on exactly one node (the registry's
# status and the nodes' own state agree), its /keep and /big intact there,
# nothing of it left on the other node, and the migration record finished,
# saying what happened. The faults are hooks and a throttled link, not
# sleeps: a kill lands mid-transfer because the hook counts bytes.
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }
N1=$VC_TMP/node1/root
N2=$VC_TMP/node2/root
TMPFS=""
fault_cleanup() {
	if [ -n "$TMPFS" ]; then
		vc_stop_node node2
		umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS" 2>/dev/null
	fi
	vc_cleanup
}
trap fault_cleanup EXIT

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s --migration-timeout 30
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
for k in 1 2; do vc_enroll_node $k; done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes enroll and are ready" wait_for 30 nodes_ready
TOKEN=$ALICE

# vc_start_node with an environment: NAME VAR=VALUE...
vc_start_node_env() {
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
# Wait until node NAME's node manager died (its test hook): 0 if it did.
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
# registered NAME N: the node manager's log has more than N registrations
# (a restarted one has registered again: it listens).
reg_count() { grep -c "registered with" "$VC_TMP/$1.log"; }
registered() { [ "$(reg_count "$1")" -gt "$2" ]; }
restart_node() { # NAME [VAR=VALUE...]: stop, start, wait until registered
	local name=$1 before
	shift
	vc_stop_node "$name"
	before=$(reg_count "$name")
	eval "NODE_TOKEN=\$NODE${name#node}_TOKEN"
	vc_start_node_env "$name" "$@"
	wait_for 30 registered "$name" "$before"
}

# A fresh slice on node1 with its data: sets KEEP and BIG (sha256 of /big).
new_slice() {
	local s=$1
	vsc create --node node1 --image busybox --memory 256M "$s" -- sh -c \
		'[ -f /keep ] || { head -c 67108864 /dev/urandom >/big; date +%s%N >/keep; }
		 while :; do cat /keep; sleep 1; done' >/dev/null
	ready_on1() { [ -n "$(vsc logs "$1" --node node1 2>/dev/null | head -1)" ]; }
	wait_for 60 ready_on1 "$s" || return 1
	KEEP=$(vsc logs "$s" --node node1 | head -1)
	BIG=$(vs_node node1 exec "$s" -- sha256sum /big | cut -c1-64)
	[ -n "$KEEP" ] && [ ${#BIG} -eq 64 ]
}
migrate() { vc_api POST "/v1/slices/$1/migrations" -d "{\"to\": \"$2\"}" | jq -r .id; }
# Bytes the registry has been told so far.
bytes_over() { [ "$(vc_migration_field "$1" bytes)" -gt "$2" ] 2>/dev/null; }

# The end state of case $1 (slice $2): running on exactly node $3 (registry
# and node state agree), its data intact there, nothing on the other node,
# the migration $4 finished as $5.
settled() {
	local s=$1 on=$2 off
	[ "$on" = node1 ] && off=node2 || off=node1
	[ "$(vc_running_on "$s")" = "$on" ] &&
		[ "$(vc_local_running "$on" "$s")" = 1 ] &&
		[ ! -e "$VC_TMP/$off/root/slices/$s" ] &&
		[ ! -e "$VC_TMP/$off/root/nodemgr/slivers/$s.json" ]
}
ends() {
	local what=$1 s=$2 on=$3 id=$4 phase=$5
	check "$what: the migration finishes" vc_wait_finished "$id" 90
	expect_eq "$what: ... $phase" "$phase" "$(vc_migration_field "$id" phase)"
	check "$what: running on $on alone (registry and nodes agree), nothing left elsewhere" \
		wait_for 90 settled "$s" "$on"
	expect_eq "$what: /keep intact" "$KEEP" "$(vs_node "$on" exec "$s" -- cat /keep 2>/dev/null)"
	expect_eq "$what: /big intact" "$BIG" \
		"$(vs_node "$on" exec "$s" -- sha256sum /big 2>/dev/null | cut -c1-64)"
	echo "# $what: $(vc_migration "$id" | jq -c '{phase, reason, bytes, downtime_ms}')"
}

# --- the target killed mid-transfer ------------------------------------------
check "tk: slice ready" new_slice tk
restart_node node2 VSLICE_FAULT=migrate.in:4
id=$(migrate tk node2)
check "tk: the target's node manager dies mid-transfer" died node2
check "tk: the source gives up (the connection is gone)" vc_wait_finished "$id" 60
check "tk: the target's half copy is still there while it is down" test -e "$N2/slices/tk"
restart_node node2
ends "target killed" tk node1 "$id" aborted
check "tk: ... the reason is the source's" has "$(vc_migration_field "$id" reason)" "source node1"
vsc destroy tk >/dev/null

# --- the source killed mid-transfer -------------------------------------------
check "sk: slice ready" new_slice sk
restart_node node1 VSLICE_FAULT=migrate.out:4
id=$(migrate sk node2)
check "sk: the source's node manager dies mid-transfer" died node1
check "sk: the target gives up (the stream ended short)" vc_wait_finished "$id" 60
restart_node node1
ends "source killed" sk node1 "$id" aborted
vsc destroy sk >/dev/null

# --- the link cut ------------------------------------------------------------
LANDEV=$VC_PFX-h12 # node2's veth, on the lan side
check "lc: slice ready" new_slice lc
ip netns exec "$VC_NS_LAN" tc qdisc add dev "$LANDEV" root tbf rate 16mbit burst 64kb latency 1s
id=$(migrate lc node2)
check "lc: the stream is under way" wait_for 60 bytes_over "$id" 2000000
ip -n "$VC_NS_LAN" link set "$LANDEV" down
check "lc: the migration is given up while the link is down" vc_wait_finished "$id" 90
ip -n "$VC_NS_LAN" link set "$LANDEV" up
ip netns exec "$VC_NS_LAN" tc qdisc del dev "$LANDEV" root
ends "link cut" lc node1 "$id" aborted
vsc destroy lc >/dev/null

# --- the stream corrupted ----------------------------------------------------
check "sc: slice ready" new_slice sc
restart_node node2 VSLICE_FAULT=migrate.flip:5000000
id=$(migrate sc node2)
ends "stream corrupted" sc node1 "$id" aborted
check "sc: ... the reason is the target's check" has "$(vc_migration_field "$id" reason)" "target node2"
restart_node node2
vsc destroy sc >/dev/null

# --- the target's disk full --------------------------------------------------
check "df: slice ready" new_slice df
vc_stop_node node2
TMPFS=$N2
mount -t tmpfs -o size=40m vslice-test "$N2"
vs_node node2 image build busybox >/dev/null 2>&1
before=$(reg_count node2)
NODE_TOKEN=$NODE2_TOKEN vc_start_node_env node2
check "df: node2 back on a 40 MiB root" wait_for 30 registered node2 "$before"
id=$(migrate df node2)
ends "target disk full" df node1 "$id" aborted
check "df: ... the reason says so" has "$(vc_migration_field "$id" reason)" "space"
vc_stop_node node2
umount "$N2" && TMPFS=""
before=$(reg_count node2)
NODE_TOKEN=$NODE2_TOKEN vc_start_node_env node2
wait_for 30 registered node2 "$before"
vsc destroy df >/dev/null

# --- the registry restarted during the migration -------------------------------
check "rr: slice ready" new_slice rr
ip netns exec "$VC_NS_LAN" tc qdisc add dev "$LANDEV" root tbf rate 32mbit burst 64kb latency 1s
id=$(migrate rr node2)
check "rr: the stream is under way" wait_for 60 bytes_over "$id" 2000000
vc_stop_registry
sleep 3
vc_start_registry --heartbeat 1s --migration-timeout 30
ip netns exec "$VC_NS_LAN" tc qdisc del dev "$LANDEV" root
check "rr: the migration finishes" vc_wait_finished "$id" 90
phase=$(vc_migration_field "$id" phase)
[ "$phase" = committed ] && on=node2 || on=node1
ends "registry restarted ($phase)" rr "$on" "$id" "$phase"
vsc destroy rr >/dev/null

# --- a second migrate of the same slice at once --------------------------------
check "sm: slice ready" new_slice sm
first=$(vc_api POST /v1/slices/sm/migrations -d '{"to": "node2"}' -o /dev/null -w '%{http_code}')
second=$(vc_api POST /v1/slices/sm/migrations -d '{"to": "node2"}')
expect_eq "sm: the first is taken" 201 "$first"
check "sm: the second is refused, naming the running one" has "$second" "already running"
id=$(vc_api GET "/v1/migrations?slice=sm" | jq -r '.migrations[0].id')
ends "second migrate" sm node2 "$id" committed
expect_eq "sm: one migration recorded" 1 "$(vc_api GET "/v1/migrations?slice=sm" | jq '.migrations | length')"

# --- the target slow to open the transfer ---------------------------------------
# Its 503 (transfer not open yet) came, before the fix, while the source was
# already sending the body, and the source saw only "Send failure: Broken
# pipe" (no status) and aborted a migration a retry would have carried.
check "st: slice ready" new_slice st
restart_node node2 VSLICE_FAULT=migrate.delay:3000
id=$(migrate st node2)
# While the source's job holds the sliver, remote verbs that act on it wait:
# exec (harmless before the job starts) is tried until it is refused.
held() { vsc exec --node node1 st -- true 2>&1 | grep -q "^slicectl: exec: sliver st is being migrated ($id): exec waits until it ends$"; }
check "st: exec on the source while the migration holds it: refused (409, one line)" wait_for 20 held
ends "target slow to open" st node2 "$id" committed
check "st: no send failure in the source's log" \
	test "$(grep -c "st: .*Send failure" "$VC_TMP/node1.log")" -eq 0
restart_node node2
vsc destroy st >/dev/null
finish
