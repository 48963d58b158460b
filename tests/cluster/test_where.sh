#!/usr/bin/env bash
# Where am I (issue 14): every sliver knows its slice, its node and its
# peers, in its environment (VSLICE_SLICE, VSLICE_NODE, VSLICE_PEERS) and in
# /etc/vslice/peers, on three nodes of a registry (tests/cluster/lib.sh);
# a local slice knows VSLICE_SLICE and VSLICE_NODE=local; a manifest may
# not set them.
. "$(dirname "$0")/lib.sh"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
for k in 1 2 3; do
	NODE_TOKEN=$(vsc token create --role node)
	vc_add_node "node$k" "$k" --heartbeat 1s
done
ready3() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes ready" wait_for 60 ready3
TOKEN=$(vsc user create alice)

cat >"$VC_TMP/where.json" <<'EOF'
{
  "apiVersion": "vslice/v1",
  "slice": "where",
  "nodes": { "count": 3 },
  "run": { "command": ["/bin/sh", "-c",
    "echo slice=$VSLICE_SLICE node=$VSLICE_NODE peers=$VSLICE_PEERS; grep -v '^#' /etc/vslice/peers | tr '\\n' ' '; echo"] }
}
EOF
out=$(vsc submit --wait "$VC_TMP/where.json" 2>&1)
check "the experiment runs on three nodes" test $? = 0 || echo "$out" | tail -5
for k in 1 2 3; do
	others=$(for j in 1 2 3; do [ $j != $k ] && echo -n "node$j "; done | sed 's/ $//')
	check "node$k: VSLICE_SLICE, VSLICE_NODE and VSLICE_PEERS (the other two)" \
		grep -qF "[node$k] | slice=where node=node$k peers=$others" <<<"$out" ||
		echo "$out" | grep "node$k"
	check "node$k: /etc/vslice/peers lists the three slivers" \
		grep -qF "[node$k] | node1 - node2 - node3 - " <<<"$out"
done

# show: times a person reads (UTC, relative), --json keeps epoch seconds.
out=$(vsc show where)
check "show: created in ISO 8601 UTC and relative" grep -Eq '^created +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z \(.* ago\)$' <<<"$out" ||
	echo "$out" | head -8
check "show: the slice's nodes" grep -q '^nodes  *node1 node2 node3$' <<<"$out"
expect_eq "show: one line per sliver" 3 "$(grep -c '^sliver node[123] *exited 0 (exited), started 20' <<<"$out")"
out=$(vsc --json show where)
check "show --json: epoch seconds" grep -Eq '"created": [0-9]{10}' <<<"$out"

# The manifest may not set what vslice sets.
sed 's/"nodes": { "count": 3 },/"env": { "VSLICE_NODE": "x" },/' "$VC_TMP/where.json" >"$VC_TMP/bad.json"
out=$(vsc submit "$VC_TMP/bad.json" 2>&1)
check "a manifest setting VSLICE_NODE is refused, naming the field" \
	grep -q '\.env\.VSLICE_NODE: set by vslice' <<<"$out" || echo "    got: $out"

# "network": "bridge" validates, and a node manager makes it: the sliver
# gets the node's bridge address (lib/netcfg), like a local slice.
cat >"$VC_TMP/bridge.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "bridged", "nodes": {"names": ["node2"]}, "network": "bridge",
 "run": {"command": ["/bin/sh", "-c", "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'"]}}
EOF
check "a manifest with \"network\": \"bridge\" validates" "$SLICECTL" validate "$VC_TMP/bridge.json"
out=$(vsc submit --wait "$VC_TMP/bridge.json" 2>&1)
check "... and runs bridged on node2 (eth0 has a bridge address)" \
	grep -Eq '^\[node2\] \| inet 10\.213\.0\.[0-9]+$' <<<"$out" || echo "$out" | tail -5
vsc destroy bridged >/dev/null

# Why a sliver ended reaches the registry: an OOM kill says so in
# submit --wait and in status (the reason column).
cat >"$VC_TMP/oom.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "hog", "nodes": {"names": ["node3"]},
 "resources": {"memory": "8M"},
 "run": {"command": ["/bin/sh", "-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo survived"]}}
EOF
out=$(vsc submit --wait "$VC_TMP/oom.json" 2>&1)
check "an OOM-killed sliver: submit --wait says the OOM killer killed it" \
	grep -q '^\[node3\] exited 137 (oom): killed by the OOM killer' <<<"$out" || echo "$out" | tail -4
out=$(vsc status hog)
check "... and status shows reason oom" grep -Eq '^node3 +exited +137 +oom ' <<<"$out" || echo "$out"
vsc destroy hog >/dev/null

# A local slice on a node: its name and node "local".
out=$(vs_node node1 run --rm here -- sh -c 'echo $VSLICE_SLICE $VSLICE_NODE' 2>&1)
expect_eq "a local slice: VSLICE_SLICE and VSLICE_NODE=local" "here local" "$out"
finish
