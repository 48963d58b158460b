#!/usr/bin/env bash
# Crash safety of the node manager (issue 9, item 3), as root: a registry and
# one node (tests/cluster/lib.sh). The node manager is SIGKILLed at every step
# of a sliver's create and destroy by its test hook (VSLICE_FAULT, see
# lib/node/nodemgr.c for the steps), restarted without it, and then:
#   create: exactly one running sliver, one slice dir, one cgroup, one
#           id-range claim; and after the slice is deleted at the registry,
#           nothing at all (dir, cgroup, claim, record);
#   destroy: nothing left at all.
# The id-range claims are counted in a private VSLICE_IDRANGE_DIR.
. "$(dirname "$0")/lib.sh"

M=$VC_TMP/manifests
mkdir -p "$M"
export VSLICE_IDRANGE_DIR=$VC_TMP/idranges
ROOT1=$VC_TMP/node1/root

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
ALICE=$(vsc user create alice)
vc_add_node node1 1 --heartbeat 1s
ready() { vsc nodes | awk '$1 == "node1" && $2 == "ready"' | grep -q .; }
check "node1 is ready" wait_for 30 ready
# The image once, so no step below waits for a build.
vs_node node1 image build busybox >/dev/null 2>&1
TOKEN=$ALICE

# What is on node1 for slice $1: "dirs cgroups claims records running".
# Cgroups: every v1 hierarchy (or the v2 tree) holding the slice's cgroup.
leftovers() {
	local name=$1 dirs=0 cgs=0 claims=0 recs=0 run=0 c
	[ -d "$ROOT1/slices/$name" ] && dirs=1
	for c in /sys/fs/cgroup/*/"$VC_PFX-node1"/"$name" /sys/fs/cgroup/"$VC_PFX-node1"/"$name"; do
		[ -d "$c" ] && cgs=$((cgs + 1))
	done
	[ "$cgs" -gt 0 ] && cgs=1
	claims=$(grep -lx "$ROOT1/slices/$name" "$VSLICE_IDRANGE_DIR"/[0-9]* 2>/dev/null | wc -l)
	[ -f "$ROOT1/nodemgr/slivers/$name.json" ] && recs=1
	vs_node node1 list 2>/dev/null | awk -v n="$name" '$1 == n && $2 == "running"' | grep -q . && run=1
	echo "$dirs $cgs $claims $recs $run"
}
# Everything on node1, whatever the slice: slice dirs and claims.
all_slices() { vs_node node1 list -q 2>/dev/null | wc -l; }
all_claims() { ls "$VSLICE_IDRANGE_DIR" 2>/dev/null | grep -c '^[0-9]*$'; }
# Slice cgroups under node1's parent (the pids hierarchy on v1, else v2).
all_cgroups() {
	local p=/sys/fs/cgroup/pids/$VC_PFX-node1
	[ -d /sys/fs/cgroup/pids ] || p=/sys/fs/cgroup/$VC_PFX-node1
	find "$p" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l
}
all_records() { ls "$ROOT1/nodemgr/slivers" 2>/dev/null | wc -l; }
reg_running() { vsc status "$1" 2>/dev/null | awk '$1 == "node1" && $2 == "running"' | grep -q .; }
all_gone() { [ "$(leftovers "$1")" = "0 0 0 0 0" ]; }
nm_pid() { eval "echo \$VC_NODE_PID_node1"; }
# Wait for the node manager to kill itself; NM_RC: 137 when it died of
# SIGKILL ("alive" if it did not die). Not in $(...): wait needs this shell.
nm_died() {
	local pid i
	pid=$(nm_pid)
	for i in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		NM_RC=alive
		return
	fi
	wait "$pid" 2>/dev/null
	NM_RC=$?
	forget_pid "$pid"
}
# A node manager that is gone leaves lib.sh's list of pids to kill at exit.
forget_pid() {
	local p keep=()
	for p in "${VC_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	VC_PIDS=("${keep[@]}")
}
stop_node1() {
	local pid
	pid=$(nm_pid)
	vc_stop_node node1
	forget_pid "$pid"
}

manifest() {
	cat >"$M/$1.json" <<EOF
{ "apiVersion": "vslice/v1", "slice": "$1", "nodes": { "names": ["node1"] },
  "resources": { "memory": "32M", "pids": 32 },
  "files": [ { "path": "/opt/run.sh", "mode": "0755", "content": "#!/bin/sh\nexec sleep 1000\n" } ],
  "run": { "command": ["/opt/run.sh"] } }
EOF
}

# --- a kill at every step of a create ----------------------------------------
stop_node1
for n in 1 2 3 4 5 6; do
	s=cc$n
	manifest $s
	VSLICE_FAULT=nodemgr.create:$n vc_start_node node1 --heartbeat 1s
	vsc submit "$M/$s.json" >/dev/null
	nm_died
	expect_eq "create step $n: the node manager died of SIGKILL" 137 "$NM_RC"
	vc_start_node node1 --heartbeat 1s
	check "create step $n: after a restart the registry sees it running" wait_for 60 reg_running $s
	expect_eq "create step $n: one dir, one cgroup, one claim, a record, running" \
		"1 1 1 1 1" "$(leftovers $s)"
	expect_eq "create step $n: exactly one slice on the node" 1 "$(all_slices)"
	expect_eq "create step $n: exactly one id-range claim on the node" 1 "$(all_claims)"
	expect_eq "create step $n: exactly one slice cgroup on the node" 1 "$(all_cgroups)"
	# How it rolled forward: a half-made slice is made again; a complete one
	# (experiment.json written) is finished, its run not repeated.
	case $n in
	2 | 3) check "create step $n: the half-made slice was made again" \
		grep -q "sliver $s: assignment changed or half made, re-creating" "$VC_TMP/node1.log" ;;
	4 | 5) check "create step $n: the complete slice was finished, not made again" \
		grep -q "created sliver $s (finished after a restart)" "$VC_TMP/node1.log" ;;
	esac
	vsc destroy $s >/dev/null
	check "create step $n: deleted at the registry, nothing is left" wait_for 60 all_gone $s
	expect_eq "create step $n: no claim, cgroup or record left at all" "0 0 0" \
		"$(all_claims) $(all_cgroups) $(all_records)"
	stop_node1
done

# --- a kill at every step of a destroy ---------------------------------------
for n in 1 2 3; do
	s=cd$n
	manifest $s
	VSLICE_FAULT=nodemgr.destroy:$n vc_start_node node1 --heartbeat 1s
	vsc submit "$M/$s.json" >/dev/null
	check "destroy step $n: the sliver runs" wait_for 60 reg_running $s
	vsc destroy $s >/dev/null
	nm_died
	expect_eq "destroy step $n: the node manager died of SIGKILL" 137 "$NM_RC"
	vc_start_node node1 --heartbeat 1s
	check "destroy step $n: after a restart nothing is left" wait_for 60 all_gone $s
	expect_eq "destroy step $n: no slice on the node" 0 "$(all_slices)"
	expect_eq "destroy step $n: no claim, cgroup or record left" "0 0 0" \
		"$(all_claims) $(all_cgroups) $(all_records)"
	stop_node1
done

# --- a record that lost its log offset -----------------------------------------
# A kill between a log upload and the record's save leaves an offset behind
# the registry's. The next upload is refused (409) with the size the
# registry holds (its answer's "size", regclient_log_upload): the node
# manager resumes from there, and the registry's log has each line once.
cat >"$M/lg.json" <<EOF
{ "apiVersion": "vslice/v1", "slice": "lg", "nodes": { "names": ["node1"] },
  "run": { "command": ["/bin/sh", "-c", "echo first-line; exec sleep 1000"] } }
EOF
offset() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["log_offset"])' \
		"$ROOT1/nodemgr/slivers/lg.json" 2>/dev/null
}
uploaded() { [ "$(offset)" = 11 ]; }
vc_start_node node1 --heartbeat 1s -v
vsc submit "$M/lg.json" >/dev/null
check "log offset: the sliver's line reaches the registry" wait_for 60 uploaded
stop_node1
python3 -c 'import json,sys; p=sys.argv[1]; r=json.load(open(p)); r["log_offset"]=0; json.dump(r, open(p, "w"))' \
	"$ROOT1/nodemgr/slivers/lg.json"
expect_eq "log offset: the record now says 0" 0 "$(offset)"
vc_start_node node1 --heartbeat 1s -v
check "log offset: after a restart the record is back at the registry's 11 bytes" wait_for 60 uploaded
check "... learnt from the 409" grep -q "sliver lg: registry has 11 log bytes" "$VC_TMP/node1.log"
expect_eq "... and the registry has the line once" "first-line" "$(vsc logs lg --node node1)"
vsc destroy lg >/dev/null
check "log offset: deleted, nothing is left" wait_for 60 all_gone lg
stop_node1

# --- the hook itself ---------------------------------------------------------
out=$(VSLICE_ROOT=$VC_TMP/hookroot VSLICE_CGROUP_PARENT=$VC_PFX-hook VSLICE_FAULT=nodemgr.create:x \
	"$NODEMGR" --registry "$REGISTRY_URL" --name hook --token x 2>&1)
expect_eq "a malformed VSLICE_FAULT is refused (exit 1)" 1 "$?"
check "... in one line naming it" test "$(echo "$out" | wc -l)" = 1 -a -n "$(echo "$out" | grep VSLICE_FAULT)"
echo "$out"
finish
