#!/usr/bin/env bash
# A node manager whose token the registry refuses for good stops with one
# clear line (issue 14): unknown (401), revoked by `slicectl node reset`
# (401), bound to another node (403), a user token (403). It keeps retrying
# what may pass: a registry that is down, a name held by another token (409,
# which an admin's reset ends).
. "$(dirname "$0")/lib.sh"

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN

# nm NAME K TOKEN [options]: a node manager on host nodeK (added once).
declare -A HOSTS
nm() {
	local name=$1 k=$2 tok=$3
	shift 3
	if [ -z "${HOSTS[$k]:-}" ]; then
		vc_add_host "$VC_PFX-h$k" $((10 + k))
		HOSTS[$k]=1
		mkdir -p "$VC_TMP/h$k"
	fi
	VSLICE_ROOT=$VC_TMP/h$k/root VSLICE_CGROUP_PARENT=$VC_PFX-h$k \
		nsenter --net=/run/netns/$VC_PFX-h$k "$NODEMGR" --registry "$REGISTRY_URL" \
		--name "$name" --token "$tok" --heartbeat 1s "$@" >"$VC_TMP/h$k.log" 2>&1 &
	NM_PID=$!
	VC_PIDS+=("$NM_PID")
}
# ends_within SECONDS: the last node manager exits by then; RC its status.
ends_within() {
	local i
	for i in $(seq $(($1 * 10))); do
		if ! kill -0 "$NM_PID" 2>/dev/null; then
			wait "$NM_PID"
			RC=$?
			return 0
		fi
		sleep 0.1
	done
	RC=running
	return 1
}
last_line() { grep -v '^\[' "$VC_TMP/h$1.log" | tail -1; }
cleanup_hosts() { for k in "${!HOSTS[@]}"; do ip netns del "$VC_PFX-h$k" 2>/dev/null; done; }
trap 'cleanup_hosts; vc_cleanup' EXIT

# --- unknown token: 401 -------------------------------------------------------
nm nodeA 1 vsn_0000000000000000000000000000000000000000000
check "an unknown token: the node manager stops" ends_within 20
expect_eq "... with exit 1" 1 "$RC"
out=$(last_line 1)
check "... saying the registry refuses the token (401) and it is revoked or unknown" \
	grep -q "vslice-nodemgr: registry $REGISTRY_URL refuses this node's token (401: .*unknown token): the token is revoked or unknown to this registry; stopping" <<<"$out" ||
	echo "    got: $out"
check "... and what to do" grep -q "slicectl token create --role node --node nodeA" <<<"$out"
check "... after one attempt, not a retry loop" test "$(grep -c 'retrying' "$VC_TMP/h1.log")" = 0

# --- revoked while running: 401 on the next poll, then on registering ---------
NT=$(vsc token create --role node)
nm nodeB 2 "$NT"
ready() { vsc nodes | awk '$1 == "nodeB" && $2 == "ready"' | grep -q .; }
check "nodeB registers and is ready" wait_for 30 ready
out=$(vsc node reset nodeB)
check "reset revokes nodeB's token" grep -q 'nodeB reset (1 token revoked)' <<<"$out"
check "a revoked token: the node manager stops" ends_within 60
expect_eq "... with exit 1" 1 "$RC"
check "... saying so" grep -q "refuses this node's token (401" <<<"$(last_line 2)" || last_line 2

# --- bound to another node: 403 ------------------------------------------------
NT=$(vsc token create --role node)
nm nodeC 3 "$NT"
ready() { vsc nodes | awk '$1 == "nodeC" && $2 == "ready"' | grep -q .; }
check "nodeC registers" wait_for 30 ready
C_PID=$NM_PID
nm nodeD 4 "$NT"
check "nodeC's token used for nodeD: the node manager stops" ends_within 20
expect_eq "... with exit 1" 1 "$RC"
out=$(last_line 4)
check "... saying 403, bound to another node" \
	grep -q "refuses this node's token (403: .*bound to node nodeC): the token is not a node token, or bound to another node" <<<"$out" ||
	echo "    got: $out"
check "nodeC runs on" kill -0 "$C_PID"

# --- a user token: 403 ---------------------------------------------------------
UT=$(vsc user create mallory)
nm nodeE 5 "$UT"
check "a user token: the node manager stops (403)" ends_within 20
check "... saying so" grep -q "refuses this node's token (403" <<<"$(last_line 5)" || last_line 5

# --- transient: a name held by another token (409) is retried -----------------
NT2=$(vsc token create --role node)
nm nodeC 6 "$NT2"
sleep 5
check "another token for nodeC's name (409): still retrying after 5 s" kill -0 "$NM_PID"
check "... saying it retries" grep -q "registering failed.*held by another node token.*retrying" "$VC_TMP/h6.log"
kill -TERM "$NM_PID"
wait "$NM_PID" 2>/dev/null

# --- transient: the registry is down ------------------------------------------
vc_stop_registry
NT3=$NT2
nm nodeF 7 "$NT3"
sleep 5
check "registry down: still retrying after 5 s" kill -0 "$NM_PID"
check "registry comes back" vc_start_registry --heartbeat 1s
ready() { vsc nodes | awk '$1 == "nodeF" && $2 == "ready"' | grep -q .; }
check "... and the node manager registers" wait_for 60 ready
finish
