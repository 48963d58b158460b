#!/usr/bin/env bash
# Crash safety of a migration's steps (issue 11), as root: a registry and two
# node managers on network-namespace hosts (tests/cluster/lib.sh). For every
# step of lib/node/nodemgr_migrate.c's lists (but the mid-stream ones,
# test_migrate_faults.sh's), the source's or the target's node manager is
# SIGKILLed right after it (VSLICE_FAULT=migrate.out:N / migrate.in:N) while
# a slice moves node1 -> node2; the registry settles the migration (the
# surviving side's reports, or the dead node seen lost); the dead node
# manager is restarted without the hook and finds its intent in its record.
# Then the slice runs on exactly the node the registry's record says
# (committed: node2, aborted: node1), on no other, with its /keep value, and
# nothing of it is left on the other node.
. "$(dirname "$0")/lib.sh"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s --migration-timeout 30
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
for k in 1 2; do vc_enroll_node $k; done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes enroll and are ready" wait_for 30 nodes_ready
TOKEN=$ALICE

start_node_env() { # NAME [VAR=VALUE...]
	local name=$1 k=${1#node}
	shift
	eval "local tok=\$NODE${k}_TOKEN"
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name \
		env "$@" nsenter --net=/run/netns/$VC_PFX-$name "$NODEMGR" --registry "$REGISTRY_URL" \
		--name "$name" --token "$tok" --heartbeat 1s --listen "$VC_NET.1$k:7481" \
		>>"$VC_TMP/$name.log" 2>&1 &
	eval "VC_NODE_PID_$name=$!"
	VC_PIDS+=("$!")
}
# registered NAME N: the node manager's log has more than N registrations.
reg_count() { grep -c "registered with" "$VC_TMP/$1.log"; }
registered() { [ "$(reg_count "$1")" -gt "$2" ]; }
died() {
	local pid i
	eval "pid=\$VC_NODE_PID_$1"
	for i in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && return 1
	wait "$pid" 2>/dev/null
	return 0
}
settled() { # SLICE ON
	local s=$1 on=$2 off
	[ "$on" = node1 ] && off=node2 || off=node1
	[ "$(vc_running_on "$s")" = "$on" ] && [ "$(vc_local_running "$on" "$s")" = 1 ] &&
		[ ! -e "$VC_TMP/$off/root/slices/$s" ] &&
		[ ! -e "$VC_TMP/$off/root/nodemgr/slivers/$s.json" ]
}

# side step expected-phase expected-node
cases="in:1 aborted node1
in:2 aborted node1
in:3 aborted node1
in:5 aborted node1
in:6 committed node2
in:7 committed node2
in:8 committed node2
out:1 aborted node1
out:2 aborted node1
out:3 aborted node1
out:5 committed node2
out:6 committed node2"
n=0
while read -r hook phase on; do
	n=$((n + 1))
	s=c$n
	# MIGRATE_CRASH_CASES="in:7 out:2": only these (to look at one)
	[ -n "${MIGRATE_CRASH_CASES:-}" ] && ! [[ " $MIGRATE_CRASH_CASES " == *" $hook "* ]] && continue
	[ "${hook%%:*}" = in ] && victim=node2 || victim=node1
	vsc create --node node1 --image busybox "$s" -- sh -c \
		'[ -f /keep ] || date +%s%N >/keep; while :; do cat /keep; sleep 1; done' >/dev/null
	ready() { [ -n "$(vsc logs "$1" --node node1 2>/dev/null | head -1)" ]; }
	wait_for 30 ready "$s"
	keep=$(vsc logs "$s" --node node1 | head -1)
	vc_stop_node "$victim"
	before=$(reg_count "$victim")
	start_node_env "$victim" "VSLICE_FAULT=migrate.$hook"
	wait_for 30 registered "$victim" "$before"
	id=$(vc_api POST "/v1/slices/$s/migrations" -d '{"to": "node2"}' | jq -r .id)
	check "migrate.$hook: the $victim node manager dies at that step" died "$victim"
	# Committed is final, but "finished" needs the target's "started".
	decided() { case $(vc_migration_field "$1" phase) in committed | aborted) return 0 ;; esac; return 1; }
	check "migrate.$hook: the registry settles the migration" wait_for 60 decided "$id"
	expect_eq "migrate.$hook: ... $phase" "$phase" "$(vc_migration_field "$id" phase)"
	before=$(reg_count "$victim")
	start_node_env "$victim"
	check "migrate.$hook: ... and finishes it once $victim is back" vc_wait_finished "$id" 60
	check "migrate.$hook: after the restart $s runs on $on alone, nothing left elsewhere" \
		wait_for 60 settled "$s" "$on"
	expect_eq "migrate.$hook: ... with its /keep" "$keep" \
		"$(vs_node "$on" exec "$s" -- cat /keep 2>/dev/null)"
	echo "# migrate.$hook: $(vc_migration "$id" | jq -c '{phase, reason}')"
	vsc destroy "$s" >/dev/null
	wait_for 30 registered "$victim" "$before"
done <<<"$cases"
finish
