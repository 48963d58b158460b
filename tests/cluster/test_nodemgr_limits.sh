#!/usr/bin/env bash
# Per-node default limits (issue 9, item 7, node manager half), as root: a
# registry and three nodes (tests/cluster/lib.sh). A sliver whose manifest
# sets no memory, pids or disk limit gets the node's default, read back from
# its cgroup and spec.json on the node (and the disk one by filling it from
# inside: ENOSPC); a manifest's own limits win; 0 turns a default off.
#   node1: --default-memory 48M --default-pids 77 --default-disk 32M
#   node2: the built-in defaults (1G, or half of --memory if less; 1024
#          pids; no disk limit)
#   node3: --default-memory 0 --default-pids 0 --default-disk 0 (none)
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
for bad in 1M 17T lots; do
	out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token x --default-disk $bad 2>&1)
	expect_eq "--default-disk $bad: usage error (exit 125)" 125 "$?"
	check "... one line naming the flag and the value" test "$(echo "$out" | wc -l)" = 1 -a -n "$(echo "$out" | grep -F -- "--default-disk \"$bad\"")"
done
help=$("$NODEMGR" --help)
check "--help shows --default-memory" has "$help" "--default-memory SIZE"
check "--help shows --default-pids" has "$help" "--default-pids N"
check "--help shows --default-disk" has "$help" "--default-disk SIZE"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node1 1 --heartbeat 1s --default-memory 48M --default-pids 77 --default-disk 32M
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node2 2 --heartbeat 1s --memory 64G
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node3 3 --heartbeat 1s --default-memory 0 --default-pids 0 --default-disk 0
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
# disk NODE SLICE: the sliver's spec.json disk_bytes (0: none).
disk() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("disk_bytes", 0))' \
		"$VC_TMP/$1/root/slices/$2/spec.json" 2>/dev/null || echo missing
}
# submit SLICE NODE [RESOURCES-JSON]: a sliver that first tries to write
# 48 MiB into its own file system (a disk limit stops it: its dd says so in
# the log), then sleeps, on NODE.
FILL='dd if=/dev/zero of=/fill bs=1M count=48 2>&1; rm -f /fill; echo fill-done; exec sleep 1000'
submit() {
	local res=${3:+, \"resources\": $3}
	cat >"$M/$1.json" <<EOF
{ "apiVersion": "vslice/v1", "slice": "$1", "nodes": { "names": ["$2"] }$res,
  "run": { "command": ["/bin/sh", "-c", "$FILL"] } }
EOF
	vsc submit "$M/$1.json" >/dev/null
}
# log NODE SLICE: the sliver's log on the node.
log() { cat "$VC_TMP/$1/root/slices/$2/log" 2>/dev/null; }
filled() { log "$1" "$2" | grep -q fill-done; }
running() { vsc status "$1" 2>/dev/null | awk -v n="$2" '$1 == n && $2 == "running"' | grep -q .; }
unlimited_mem() { [ "$1" = max ] || [ "$1" -ge $((1 << 40)) ] 2>/dev/null; }

submit nolim1 node1
submit own1 node1 '{ "memory": "32M", "pids": 20, "disk": "64M" }'
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

for s in nolim1:node1 own1:node1 nolim2:node2 nolim3:node3; do
	check "${s%%:*} on ${s##*:} has tried its 48M write" wait_for 60 filled "${s##*:}" "${s%%:*}"
done
expect_eq "no disk limit in the manifest: node1's --default-disk 32M in spec.json" $((32 << 20)) "$(disk node1 nolim1)"
check "... its image is 32M" test "$(stat -c %s "$VC_TMP/node1/root/slices/nolim1/disk.img" 2>/dev/null)" = $((32 << 20))
check "... writing 48M past it fails inside with ENOSPC" grep -q 'No space left on device' "$VC_TMP/node1/root/slices/nolim1/log"
expect_eq "the manifest's own disk limit wins" $((64 << 20)) "$(disk node1 own1)"
check "... and its 48M write fits" bash -c "! grep -q 'No space left' '$VC_TMP/node1/root/slices/own1/log'"
expect_eq "built-in default disk: none" 0 "$(disk node2 nolim2)"
check "... no image, and its 48M write fits" bash -c "test ! -e '$VC_TMP/node2/root/slices/nolim2/disk.img' && ! grep -q 'No space left' '$VC_TMP/node2/root/slices/nolim2/log'"
expect_eq "defaults off (0): no disk limit" 0 "$(disk node3 nolim3)"
check "node1 logs the defaults it applied" grep -q "sliver nolim1: its manifest sets no memory/pids/disk: node default memory 48M, pids 77, disk 32M" "$VC_TMP/node1.log"
check "node1 logs its defaults at start" grep -q "default limits of a sliver whose manifest sets none: memory 48M, pids 77, disk 32M" "$VC_TMP/node1.log"
check "node2 logs no disk default at start" grep -q "memory 1024M, pids 1024, disk none" "$VC_TMP/node2.log"
finish
