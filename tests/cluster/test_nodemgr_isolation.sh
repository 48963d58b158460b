#!/usr/bin/env bash
# Several node managers on one machine (issue 9, item 2), as root: a registry
# and one node (tests/cluster/lib.sh), then a second node manager started
# against what the first one holds. Each must refuse to start, at once, with
# one line saying why:
#   - the same root (ROOT/nodemgr/lock is held for the daemon's life);
#   - the same cgroup parent, with a root of its own (the slivers of one
#     slice on two nodes would share a cgroup);
#   - the same --listen port (no SO_REUSEPORT: it would take half the
#     connections of the first one's status API).
# And two node managers with a root, a cgroup parent and a port each both run.
. "$(dirname "$0")/lib.sh"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
STATUS=$VC_NET.11:7481
vc_add_node node1 1 --heartbeat 1s --listen "$STATUS"
ready() { vsc nodes | awk '$1 == "node1" && $2 == "ready"' | grep -q .; }
check "node1 is ready" wait_for 30 ready
status_up() { nsenter --net=/run/netns/$VC_PFX-node1 curl -sf "http://$STATUS/v1/status" >/dev/null; }
check "node1's status API answers" wait_for 30 status_up

# second ROOT PARENT [options]: a second node manager in node1's network;
# OUT gets its output, RC its exit status (124: still running after 10 s).
second() {
	local root=$1 parent=$2
	shift 2
	OUT=$(VSLICE_ROOT=$root VSLICE_CGROUP_PARENT=$parent timeout 10 \
		nsenter --net=/run/netns/$VC_PFX-node1 "$NODEMGR" --registry "$REGISTRY_URL" \
		--name node1b --token "$NODE_TOKEN" "$@" 2>&1)
	RC=$?
	echo "$OUT" | tail -1
}
has() { echo "$1" | grep -q -- "$2"; }

# --- the same root -----------------------------------------------------------
second "$VC_TMP/node1/root" "$VC_PFX-other"
expect_eq "a second node manager on the same root refuses to start (exit 1)" 1 "$RC"
check "... in one line" test "$(echo "$OUT" | wc -l)" = 1
check "... naming the root and the holder" \
	has "$OUT" "root $VC_TMP/node1/root: another vslice-nodemgr holds it (pid $(eval echo \$VC_NODE_PID_node1), node node1"
check "... and leaving node1's records alone" test -d "$VC_TMP/node1/root/nodemgr/slivers"

# --- the same cgroup parent ---------------------------------------------------
mkdir -p "$VC_TMP/other"
second "$VC_TMP/other/root" "$VC_PFX-node1"
expect_eq "a second node manager on the same cgroup parent refuses to start (exit 1)" 1 "$RC"
check "... in one line" test "$(echo "$OUT" | wc -l)" = 1
check "... naming the cgroup parent" has "$OUT" "cgroup parent /sys/fs/cgroup/$VC_PFX-node1: another vslice-nodemgr holds it"
check "... and what to do" has "$OUT" "its own VSLICE_CGROUP_PARENT"
# The same parent spelled with slashes is the same parent.
second "$VC_TMP/other/root" "/$VC_PFX-node1/"
expect_eq "... also spelled /PARENT/" 1 "$RC"

# --- the same --listen port ---------------------------------------------------
second "$VC_TMP/other/root" "$VC_PFX-other" --listen "$STATUS"
expect_eq "a second node manager on a busy --listen port refuses to start (exit 1)" 1 "$RC"
check "... saying the address is in use" has "$(echo "$OUT" | tail -1)" "vslice-nodemgr: status API: --listen $STATUS: address already in use"
check "node1's status API still answers" status_up
# What the status API answers besides GET /v1/status (httpd.h: no bodies).
code() { nsenter --net=/run/netns/$VC_PFX-node1 curl -s -o /dev/null -w '%{http_code}' "$@"; }
expect_eq "status API: another path is 404" 404 "$(code "http://$STATUS/v1/nodes")"
expect_eq "status API: POST is 405" 405 "$(code -X POST "http://$STATUS/v1/status")"
expect_eq "status API: a request body is refused (413)" 413 \
	"$(code -X GET -H 'Content-Type: text/plain' --data-binary x "http://$STATUS/v1/status")"
check "status API: GET / answers the status" bash -c "nsenter --net=/run/netns/$VC_PFX-node1 curl -sf 'http://$STATUS/' | grep -q '\"node\": \"node1\"'"

# --- each with its own: both run -----------------------------------------------
NODE_TOKEN=$(vsc token create --role node)
second "$VC_TMP/other/root" "$VC_PFX-other" --listen "$VC_NET.11:7482" >/dev/null
expect_eq "a node manager with a root, cgroup parent and port of its own runs (killed by timeout)" 124 "$RC"
check "... and registered" has "$OUT" "registered with"
rm -rf --one-file-system "$VC_TMP/other"

# --- no parent given: each derives its own from --name --------------------------
# Two node managers on one machine with nothing but a root each (names
# unique to this run: the derived parent, vslice-NAME, is machine-wide).
TOKEN=$ADMIN
pids=()
for x in a b; do
	n=${VC_PFX}$x
	mkdir -p "$VC_TMP/$x"
	tok=$(vsc token create --role node)
	env -u VSLICE_CGROUP_PARENT VSLICE_ROOT="$VC_TMP/$x/root" nsenter --net="/run/netns/$VC_PFX-node1" \
		"$NODEMGR" --registry "$REGISTRY_URL" --name "$n" --token "$tok" --heartbeat 1s \
		>"$VC_TMP/$x.log" 2>&1 &
	pids+=($!)
	VC_PIDS+=($!)
done
both_ready() { [ "$(vsc nodes | awk -v a="${VC_PFX}a" -v b="${VC_PFX}b" '($1 == a || $1 == b) && $2 == "ready"' | wc -l)" = 2 ]; }
check "two node managers with no cgroup parent given both run" wait_for 30 both_ready ||
	tail -3 "$VC_TMP/a.log" "$VC_TMP/b.log"
for x in a b; do
	expect_eq "node ${VC_PFX}$x recorded its derived parent vslice-${VC_PFX}$x" "vslice-${VC_PFX}$x" \
		"$(cat "$VC_TMP/$x/root/nodemgr/cgroup-parent" 2>/dev/null)"
done
cat >"$VC_TMP/two.json" <<EOF
{"apiVersion": "vslice/v1", "slice": "twin", "nodes": {"names": ["${VC_PFX}a", "${VC_PFX}b"]},
 "run": {"command": ["sleep", "300"]}}
EOF
out=$(vsc submit "$VC_TMP/two.json" 2>&1)
check "a slice on both is submitted" test $? = 0 || echo "    got: $out"
both_running() { [ "$(vsc status twin | grep -c ' running')" = 2 ]; }
check "a slice on both runs" wait_for 60 both_running || vsc status twin
for x in a b; do
	cg=/sys/fs/cgroup/memory/vslice-${VC_PFX}$x/twin
	[ -d /sys/fs/cgroup/memory ] || cg=/sys/fs/cgroup/vslice-${VC_PFX}$x/twin
	check "${VC_PFX}$x's sliver has a cgroup of its own ($cg)" test -n "$(cat "$cg/cgroup.procs" 2>/dev/null)"
	out=$(env -u VSLICE_CGROUP_PARENT VSLICE_ROOT="$VC_TMP/$x/root" "$SLICECTL" list)
	check "slicectl on ${VC_PFX}$x's root (no VSLICE_CGROUP_PARENT) sees its sliver running" \
		grep -Eq '^twin +running' <<<"$out" || echo "    got: $out"
done
vsc destroy twin >/dev/null
gone() { [ ! -d "$VC_TMP/a/root/slices/twin" ] && [ ! -d "$VC_TMP/b/root/slices/twin" ]; }
check "... and both slivers go with the slice" wait_for 60 gone
for p in "${pids[@]}"; do
	kill_child -TERM "$p"
	wait "$p" 2>/dev/null
done
for x in a b; do
	rmdir /sys/fs/cgroup/*/"vslice-${VC_PFX}$x" /sys/fs/cgroup/"vslice-${VC_PFX}$x" 2>/dev/null
	case "$VC_TMP" in /tmp/vslice-cluster.*) rm -rf --one-file-system "$VC_TMP/$x" ;; esac
done
finish
