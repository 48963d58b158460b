#!/usr/bin/env bash
# Bridged slices across nodes in cluster mode (issue 13): three node
# managers on network-namespace hosts (tests/cluster/lib.sh), each with the
# VXLAN overlay on (--overlay-local its host address, --overlay-vni the
# cluster's id):
#   - nodes register their overlay; a node with another VXLAN id is refused,
#     and a bridged slice is refused on a node without an overlay;
#   - a slice with network "bridge" on node1 and node2: each sliver has its
#     cluster-wide address (from the registry, in 10.213.0.0/16) on eth0,
#     reaches the other by that address, and /etc/vslice/peers shows both;
#   - after a cold migration of node2's sliver to node3 the slice keeps its
#     address there: node1's sliver reaches it on the same address, and it
#     reaches node1's; node2 is left as it was before;
#   - destroy leaves links, routes, fdb, neighbours and nft as they were on
#     every host.
. "$(dirname "$0")/lib.sh"

# A node's own slicectl, inside its host's network namespace (a slice's
# network is torn down in the namespace it was made in: the cleanup's
# destroys must not touch the machine's own network).
vs_node() {
	local name=$1
	shift
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name \
		nsenter --net=/run/netns/$VC_PFX-$name "$SLICECTL" "$@"
}
on_host() { # NODE CMD...: a command in the node's host namespace
	local name=$1
	shift
	nsenter --net=/run/netns/$VC_PFX-$name "$@"
}
snapshot() { # NODE: the host's network as vslice could change it
	on_host "$1" ip -d link | sed 's/ *$//'
	on_host "$1" ip route
	on_host "$1" bridge fdb
	on_host "$1" ip neigh | grep -v ' dev eth0 ' # (the underlay's own ARP)
	on_host "$1" nft list ruleset
}
has() { grep -q -- "$2" <<<"$1"; }
# The address of SLICE's sliver on NODE, as the registry has it.
addr_of() { vc_api GET "/v1/slices/$1" | jq -r ".slivers[] | select(.node == \"$2\") | .address"; }
# The IPv4 address on the sliver's eth0.
eth0_of() { vs_node "$1" exec "$2" -- ip -4 addr show eth0 2>/dev/null | grep -o 'inet [0-9.]*' | cut -d' ' -f2; }
pings() { vs_node "$1" exec "$2" -- ping -c1 -W3 "$3" 2>/dev/null | grep -q '1 packets received'; }
# wait_ping SECS NODE SLICE ADDR: until one ping goes through (the peer
# list reaches a node with its next assignments answer).
wait_ping() {
	local t=$1 i
	shift
	for i in $(seq "$t"); do
		pings "$@" && return 0
		sleep 1
	done
	return 1
}

VNI=$((6000 + VC_ID))
out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token t --overlay-local 10.0.0.1 2>&1)
check "--overlay-local without --overlay-vni is refused ($out)" has "$out" 'overlay-local needs --overlay-vni N'
out=$("$NODEMGR" --registry http://127.0.0.1:1 --name x --token t --overlay-local 10.0.0.1 --overlay-vni 0 2>&1)
check "--overlay-vni 0 is refused ($out)" has "$out" 'overlay-vni "0": use a number from 1 to 16777215'
vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s --lost-after 20 --migration-timeout 60
TOKEN=$ADMIN
for k in 1 2 3; do
	mkdir -p "$VC_TMP/node$k"
	VSLICE_ROOT=$VC_TMP/node$k/root "$SLICECTL" image build busybox >/dev/null 2>&1
	NODE_TOKEN=$(vsc token create --role node)
	vc_add_node node$k $k --heartbeat 1s --listen "$VC_NET.1$k:7481" \
		--overlay-local "$VC_NET.1$k" --overlay-vni $VNI
done
declare -A BEFORE
for k in 1 2 3; do BEFORE[node$k]=$(snapshot node$k); done
ready3() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes with an overlay enroll and are ready" wait_for 60 ready3
ov=$(vc_api GET /v1/nodes | jq -r '.nodes[] | select(.name == "node2") | "\(.overlay.local) \(.overlay.vni)"')
expect_eq "node2 registered its overlay (underlay address, VXLAN id)" "$VC_NET.12 $VNI" "$ov"

# The overlay as an attacker or a misconfigured node sees it.
out=$(vc_api PUT /v1/nodes/odd -d "{\"cpus\": 1, \"memory\": 1000000, \"overlay\": {\"local\": \"$VC_NET.99\", \"vni\": $((VNI + 1))}}")
check "a node with another VXLAN id is refused, naming it ($out)" \
	has "$out" "\.overlay\.vni: $((VNI + 1)) is not the cluster's VXLAN id $VNI"
out=$(vc_api PUT /v1/nodes/odd -d "{\"cpus\": 1, \"memory\": 1000000, \"overlay\": {\"local\": \"$VC_NET.11\", \"vni\": $VNI}}")
check "a node claiming another node's underlay address is refused ($out)" \
	has "$out" "\.overlay\.local: $VC_NET.11 is node node1's underlay address"
out=$(vc_api PUT /v1/nodes/odd -d '{"cpus": 1, "memory": 1000000, "overlay": {"local": "224.0.0.1", "vni": 1}}')
check "a multicast underlay address is refused ($out)" has "$out" '\.overlay\.local: expected'
check "... and neither registered the node" \
	test -z "$(vc_api GET /v1/nodes | jq -r '.nodes[] | select(.name == "odd") | .name')"
vc_api PUT /v1/nodes/plain -d '{"cpus": 1, "memory": 1000000}' >/dev/null
TOKEN=$(vsc user create alice)
cat >"$VC_TMP/plain.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "p1", "nodes": {"names": ["node1", "plain"]},
 "network": "bridge", "run": {"command": ["sleep", "600"]}}
EOF
out=$(vsc submit "$VC_TMP/plain.json" 2>&1)
check "a bridged slice on a node without an overlay is refused, naming it ($out)" \
	has "$out" 'network "bridge": node plain has no overlay (vslice-nodemgr --overlay-local'
sed 's/"names": \["node1", "plain"\]/"count": 4/' "$VC_TMP/plain.json" >"$VC_TMP/four.json"
out=$(vsc submit "$VC_TMP/four.json" 2>&1)
check "a bridged slice wanting more overlay nodes than there are is refused ($out)" \
	has "$out" 'network "bridge" needs 4 nodes with an overlay .*; 3 registered'

# --- a slice across node1 and node2 ----------------------------------------
cat >"$VC_TMP/net.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "net", "nodes": {"names": ["node1", "node2"]},
 "network": "bridge", "run": {"command": ["sleep", "3600"]}}
EOF
out=$(vsc submit "$VC_TMP/net.json" 2>&1)
check "a bridged slice on node1 and node2 is accepted" test $? = 0 || echo "$out"
both() { [ "$(vc_running_on net)" = "node1 node2" ]; }
check "... both slivers run" wait_for 60 both
A1=$(addr_of net node1)
A2=$(addr_of net node2)
check "each sliver has a cluster address in 10.213.0.0/16 ($A1, $A2)" \
	test -n "$(grep -E '^10\.213\.[0-9]+\.[0-9]+$' <<<"$A1")" -a -n "$(grep -E '^10\.213\.[0-9]+\.[0-9]+$' <<<"$A2")"
check "... two different ones" test "$A1" != "$A2"
expect_eq "node1's sliver has its address on eth0" "$A1" "$(eth0_of node1 net)"
expect_eq "node2's sliver has its address on eth0" "$A2" "$(eth0_of node2 net)"
check "node1's sliver reaches node2's by address" wait_ping 30 node1 net "$A2"
check "node2's sliver reaches node1's by address" wait_ping 30 node2 net "$A1"
peers=$(vs_node node1 exec net -- cat /etc/vslice/peers 2>/dev/null | grep -v '^#' | tr '\n' ' ')
expect_eq "/etc/vslice/peers in node1's sliver shows both addresses" "node1 $A1 node2 $A2 " "$peers"
peers=$(vs_node node2 exec net -- cat /etc/vslice/peers 2>/dev/null | grep -v '^#' | tr '\n' ' ')
expect_eq "... and in node2's" "node1 $A1 node2 $A2 " "$peers"
check "node3 (no sliver of it) knows the peers too (its overlay's peers.json)" \
	wait_for 20 grep -q "$A2" "$VC_TMP/node3/root/net/peers.json"

# --- cold migration of node2's sliver to node3 -----------------------------
out=$(vsc migrate net --from node2 --to node3 --mode cold 2>&1)
expect_eq "slicectl migrate net --from node2 --to node3: exit 0" 0 "$?"
check "... migrated ($out)" has "$out" '^migrated net node2 -> node3 (cold)'
moved() { [ "$(vc_running_on net)" = "node1 node3" ]; }
check "the slice runs on node1 and node3" wait_for 60 moved
expect_eq "the moved sliver keeps its address in the registry" "$A2" "$(addr_of net node3)"
expect_eq "... and on its eth0 on node3" "$A2" "$(eth0_of node3 net)"
check "node1's sliver reaches it on the same address" wait_ping 30 node1 net "$A2"
check "... and it reaches node1's" wait_ping 30 node3 net "$A1"
node2_clean() { [ "$(snapshot node2)" = "${BEFORE[node2]}" ]; }
check "node2's network is as it was before (links, routes, fdb, neighbours, nft)" wait_for 30 node2_clean ||
	diff <(echo "${BEFORE[node2]}") <(snapshot node2) | head -20

# --- destroy ---------------------------------------------------------------
vsc destroy net >/dev/null
gone() { [ -z "$(vs_node node1 list -q 2>/dev/null)$(vs_node node3 list -q 2>/dev/null)" ]; }
check "destroy removes both slivers" wait_for 60 gone
for k in 1 2 3; do
	clean() { [ "$(snapshot node$k)" = "${BEFORE[node$k]}" ]; }
	check "node$k: links, routes, fdb, neighbours and nft as they were" wait_for 30 clean ||
		diff <(echo "${BEFORE[node$k]}") <(snapshot node$k) | head -20
	check "node$k: no lease and no peer list left" \
		test ! -s "$VC_TMP/node$k/root/net/peers.json" -a -z "$(grep -o '"10\.213[^"]*"' "$VC_TMP/node$k/root/net/leases.json" 2>/dev/null)"
done
finish
