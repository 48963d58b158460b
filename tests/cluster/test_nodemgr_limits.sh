#!/usr/bin/env bash
# Per-node default limits (issue 9, item 7, node manager half), as root: a
# registry and three nodes (tests/cluster/lib.sh). A sliver whose manifest
# sets no memory or pids limit gets the node's default, read back from its
# cgroup on the node; a manifest's own limits win; 0 turns a default off.
#   node1: --default-memory 48M --default-pids 77
#   node2: the built-in defaults (1G, or half of --memory if less; 1024 pids)
#   node3: --default-memory 0 --default-pids 0 (no defaults)
. "$(dirname "$0")/lib.sh"

M=$VC_TMP/manifests
mkdir -p "$M"
has() { echo "$1" | grep -q -- "$2"; }

# --- bad flags: one line naming the flag, nothing started ----------------------
out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token x --default-memory 1K 2>&1)
expect_eq "--default-memory 1K: usage error (exit 125)" 125 "$?"
check "... one line naming the flag" test "$(echo "$out" | wc -l)" = 1 -a -n "$(echo "$out" | grep -- --default-memory)"
out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token x --default-pids lots 2>&1)
expect_eq "--default-pids lots: usage error (exit 125)" 125 "$?"
check "... one line naming the flag" test "$(echo "$out" | wc -l)" = 1 -a -n "$(echo "$out" | grep -- --default-pids)"
out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token x --default-pids -1 2>&1)
expect_eq "--default-pids -1: usage error (exit 125)" 125 "$?"
help=$("$NODEMGR" --help)
check "--help shows --default-memory" has "$help" "--default-memory SIZE"
check "--help shows --default-pids" has "$help" "--default-pids N"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node1 1 --heartbeat 1s --default-memory 48M --default-pids 77
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node2 2 --heartbeat 1s --memory 64G
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node3 3 --heartbeat 1s --default-memory 0 --default-pids 0
ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes are ready" wait_for 30 ready
TOKEN=$(vsc user create alice)

# cg NODE SLICE CONTROLLER FILE_V1 FILE_V2: a limit from the sliver's cgroup.
cg() {
	local f
	for f in /sys/fs/cgroup/"$3"/"$VC_PFX-$1"/"$2"/"$4" /sys/fs/cgroup/"$VC_PFX-$1"/"$2"/"$5"; do
		[ -f "$f" ] && { cat "$f"; return; }
	done
	echo none
}
mem() { cg "$1" "$2" memory memory.limit_in_bytes memory.max; }
pids() { cg "$1" "$2" pids pids.max pids.max; }
# submit SLICE NODE [RESOURCES-JSON]: a sliver that sleeps, on NODE.
submit() {
	local res=${3:+, \"resources\": $3}
	cat >"$M/$1.json" <<EOF
{ "apiVersion": "vslice/v1", "slice": "$1", "nodes": { "names": ["$2"] }$res,
  "run": { "command": ["/bin/sleep", "1000"] } }
EOF
	vsc submit "$M/$1.json" >/dev/null
}
running() { vsc status "$1" 2>/dev/null | awk -v n="$2" '$1 == n && $2 == "running"' | grep -q .; }
unlimited_mem() { [ "$1" = max ] || [ "$1" -ge $((1 << 40)) ] 2>/dev/null; }

submit nolim1 node1
submit own1 node1 '{ "memory": "32M", "pids": 20 }'
submit memonly1 node1 '{ "memory": "40M" }'
submit nolim2 node2
submit nolim3 node3
for s in nolim1:node1 own1:node1 memonly1:node1 nolim2:node2 nolim3:node3; do
	check "${s%%:*} runs on ${s##*:}" wait_for 60 running "${s%%:*}" "${s##*:}"
done

expect_eq "no limits in the manifest: node1's --default-memory 48M" $((48 << 20)) "$(mem node1 nolim1)"
expect_eq "no limits in the manifest: node1's --default-pids 77" 77 "$(pids node1 nolim1)"
expect_eq "the manifest's own memory limit wins" $((32 << 20)) "$(mem node1 own1)"
expect_eq "the manifest's own pids limit wins" 20 "$(pids node1 own1)"
expect_eq "memory set, pids not: memory is the manifest's" $((40 << 20)) "$(mem node1 memonly1)"
expect_eq "memory set, pids not: pids is the node's default" 77 "$(pids node1 memonly1)"
expect_eq "built-in default memory: 1G" $((1 << 30)) "$(mem node2 nolim2)"
expect_eq "built-in default pids: 1024" 1024 "$(pids node2 nolim2)"
check "defaults off (0): no memory limit" unlimited_mem "$(mem node3 nolim3)"
expect_eq "defaults off (0): no pids limit" max "$(pids node3 nolim3)"
check "node1 logs the defaults it applied" grep -q "sliver nolim1: its manifest sets no memory/pids: node default memory 48M, pids 77" "$VC_TMP/node1.log"
finish
