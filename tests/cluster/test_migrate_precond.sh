#!/usr/bin/env bash
# Preconditions of a migration, checked before anything stops (issue 12;
# the overlay's, issue 13), as root: a registry and two node managers with
# the VXLAN overlay on network-namespace hosts (tests/cluster/lib.sh), and
# fake nodes registered through the API with crafted facts (a node's facts
# are labels; an admin may register a node, the way an operator's --label
# would set them).
#   - every node manager registers its facts: vslice.kernel, vslice.vdso
#     (the [vvar]/[vvar_vclock]/[vdso] layout and the vDSO text's hash),
#     vslice.cpu (instruction-set features); two nodes of one machine agree;
#   - live/precopy to a node whose vDSO differs, or that lacks a CPU feature
#     the source has: 409, one line naming what differs and suggesting
#     --mode cold; nothing recorded, the counter on node1 never stopped;
#     the registry picking the target itself skips such nodes;
#   - an object the checkpointer refuses (a netlink socket, busybox uevent):
#     found on the running slice, the abort names the process and the fd,
#     nothing stopped; without --mode slicectl goes cold, saying why;
#   - a bridged slice (a cluster address) to a node without the overlay:
#     409, one line, in every mode;
#   - between two nodes whose facts agree, precopy goes through and the
#     count goes on from where it was.
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }

VNI=$((7000 + VC_ID))
vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s --lost-after 30 --migration-timeout 30
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
for k in 1 2; do
	vc_enroll_node $k --overlay-local "$VC_NET.1$k" --overlay-vni $VNI
done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes enroll and are ready" wait_for 30 nodes_ready

# --- the facts each node manager registers ------------------------------------
labels_of() { TOKEN=$ADMIN vc_api GET /v1/nodes | jq -c ".nodes[] | select(.name == \"$1\") | .labels"; }
L1=$(labels_of node1)
VDSO1=$(echo "$L1" | jq -r '.["vslice.vdso"]')
CPU1=$(echo "$L1" | jq -r '.["vslice.cpu"]')
echo "# node1: vslice.vdso \"$VDSO1\""
echo "# node1: vslice.cpu \"$CPU1\""
check "node1 registered its vDSO layout and text hash" has "$VDSO1" 'vdso 0x[0-9a-f]*, text [0-9a-f]\{16\}$'
check "node1 registered its CPU features" test -n "$CPU1" -a "$CPU1" != null
if grep -q '^flags' /proc/cpuinfo; then
	check "... x86: instruction sets (sse2), not the kernel's bookkeeping (constant_tsc)" \
		test -n "$(echo " $CPU1 " | grep ' sse2 ')" -a -z "$(echo " $CPU1 " | grep ' constant_tsc ')"
fi
L2=$(labels_of node2)
expect_eq "node2 (the same machine) registered the same facts" \
	"$(echo "$L1" | jq -c '{k: .["vslice.kernel"], v: .["vslice.vdso"], c: .["vslice.cpu"]}')" \
	"$(echo "$L2" | jq -c '{k: .["vslice.kernel"], v: .["vslice.vdso"], c: .["vslice.cpu"]}')"

# A fake target: registered by the admin with node1's facts changed by a
# jq filter; a transfer url nobody listens on (nothing may reach it).
fake_node() { # NAME JQ_FILTER
	local labels
	labels=$(echo "$L1" | jq -c "$2")
	TOKEN=$ADMIN vc_api PUT "/v1/nodes/$1" -d "{\"cpus\": 8, \"memory\": 8589934592,
		\"labels\": $labels, \"images\": [\"busybox\"], \"url\": \"http://$VC_NET.99:7481\"}" >/dev/null
}
TOKEN=$ALICE

COUNTER='i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i; sleep 0.1; done'
last_count() { vsc logs "$1" --node "$2" 2>/dev/null | grep -E '^[0-9]+$' | tail -1; }
first_count() { vsc logs "$1" --node "$2" 2>/dev/null | grep -E '^[0-9]+$' | head -1; }
past() { [ "$(last_count "$1" node1)" -ge "$2" ] 2>/dev/null; }
counting() { [ "$(last_count "$1" "$3")" -gt "$2" ] 2>/dev/null; }
migrations_of() { vc_api GET "/v1/migrations?slice=$1" | jq '.migrations | length'; }
# Nothing stopped: SLICE runs on node1 (registry and node agree), its count
# goes on past where it was, it never started again (one "1" in its log).
untouched() { # WHAT SLICE COUNT_BEFORE
	expect_eq "$1: nothing recorded" 0 "$(migrations_of "$2")"
	expect_eq "$1: ... still running on node1" "node1 1" "$(vc_running_on "$2") $(vc_local_running node1 "$2")"
	check "$1: ... its count went on past $3" wait_for 30 counting "$2" "$3" node1
	expect_eq "$1: ... never restarted (one \"1\" in its log)" 1 \
		"$(vsc logs "$2" --node node1 2>/dev/null | grep -cx 1)"
}

vsc create --node node1 --image busybox c1 -- sh -c "$COUNTER" >/dev/null
check "c1: a counter runs on node1" wait_for 60 past c1 20

# --- another vDSO -----------------------------------------------------------------
fake_node fv '.["vslice.vdso"] |= sub("text [0-9a-f]*$"; "text 0123456789abcdef")'
before=$(last_count c1 node1)
vsc migrate c1 --to fv --mode live >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate c1 --to fv --mode live (another vDSO): exit 125" 125 "$?"
expect_eq "... one line naming both layouts, suggesting --mode cold" \
	"slicectl: migrate c1: node fv's vDSO layout (${VDSO1% text *} text 0123456789abcdef) differs from node node1's ($VDSO1): a live migration maps the same vDSO where it was; use --mode cold" \
	"$(cat "$VC_TMP/e")"
untouched "vdso" c1 "$before"
# The registry picking the target (no --to) skips such a node: with node2
# drained, fv is the only other node, and the answer is its refusal.
TOKEN=$ADMIN vsc node drain node2 >/dev/null
vsc migrate c1 --mode live >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate c1 --mode live (no --to; node2 drained, fv another vDSO): exit 125" 125 "$?"
check "... fv's refusal, not a migration to it" grep -q "node fv's vDSO layout" "$VC_TMP/e" || cat "$VC_TMP/e"
TOKEN=$ADMIN vsc node undrain node2 >/dev/null
untouched "vdso, the registry picking" c1 "$before"

# --- a CPU feature missing --------------------------------------------------------
# The fake lacks node1's first two features.
W1=$(echo "$CPU1" | awk '{print $1}')
W2=$(echo "$CPU1" | awk '{print $2}')
fake_node fc ".[\"vslice.cpu\"] |= (split(\" \") | .[2:] | join(\" \"))"
before=$(last_count c1 node1)
vsc migrate c1 --to fc --mode precopy >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate c1 --to fc --mode precopy (lacks $W1, $W2): exit 125" 125 "$?"
expect_eq "... one line naming the features, suggesting --mode cold" \
	"slicectl: migrate c1: node fc lacks CPU features node node1 has ($W1, $W2): a precopy migration resumes code that may use them; use --mode cold" \
	"$(cat "$VC_TMP/e")"
out=$(vc_api POST /v1/slices/c1/migrations -d '{"to": "fc", "mode": "live"}')
expect_eq "... the 409 says which precondition (for a fallback to cold)" cpu \
	"$(echo "$out" | jq -r .precondition)"
untouched "cpu" c1 "$before"

# --- an object the checkpointer refuses ------------------------------------------
# busybox uevent holds a netlink socket (family 16), which the checkpointer
# does not carry: found on the running slice, before anything stops.
vsc create --node node1 --image busybox u1 -- sh -c "uevent cat & $COUNTER" >/dev/null
check "u1: a counter with a netlink socket runs on node1" wait_for 60 past u1 20
before=$(last_count u1 node1)
vsc migrate u1 --to node2 --mode live >/dev/null 2>"$VC_TMP/e"
expect_eq "migrate u1 --mode live: exit 1 (aborted before anything stopped)" 1 "$?"
echo "# $(cat "$VC_TMP/e")"
check "... naming the process and the fd" \
	grep -q "aborted: source node1: cannot be checkpointed: pid [0-9]* fd [0-9]*: refused: socket family 16" "$VC_TMP/e"
expect_eq "u1: still running on node1" "node1 1" "$(vc_running_on u1) $(vc_local_running node1 u1)"
check "u1: ... its count went on past $before" wait_for 30 counting u1 "$before" node1
expect_eq "u1: ... never restarted" 1 "$(vsc logs u1 --node node1 2>/dev/null | grep -cx 1)"
out=$(vsc migrate u1 --to node2 2>"$VC_TMP/e")
expect_eq "migrate u1 (no --mode): exit 0" 0 "$?"
check "... says why it goes cold" grep -q "cannot be checkpointed: pid [0-9]* fd [0-9]*: .*; migrating it cold instead" "$VC_TMP/e"
check "... and went cold" has "$(echo "$out" | tail -1)" '^migrated u1 node1 -> node2 (cold): '
vsc destroy u1 >/dev/null

# --- a bridged slice to a node without the overlay (issue 13) --------------------
cat >"$VC_TMP/b1.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "b1", "nodes": {"names": ["node1"]},
 "network": "bridge", "run": {"command": ["sleep", "3600"]}}
EOF
vsc submit "$VC_TMP/b1.json" >/dev/null 2>&1
b1_up() { [ "$(vc_running_on b1)" = node1 ]; }
check "b1: a bridged slice runs on node1" wait_for 60 b1_up
A1=$(vc_api GET /v1/slices/b1 | jq -r '.slivers[0].address')
check "b1: ... with a cluster address ($A1)" has "$A1" '^10\.213\.'
fake_node plain '.'
for mode in cold live; do
	vsc migrate b1 --to plain --mode $mode >/dev/null 2>"$VC_TMP/e"
	expect_eq "migrate b1 --to plain --mode $mode (no overlay there): exit 125" 125 "$?"
	expect_eq "... one line naming the node and the address" \
		"slicectl: migrate b1: node plain has no overlay (vslice-nodemgr --overlay-local, --overlay-vni): slice b1's address $A1 would not reach it there" \
		"$(cat "$VC_TMP/e")"
done
expect_eq "b1: nothing recorded" 0 "$(migrations_of b1)"
expect_eq "b1: still running on node1" "node1 1" "$(vc_running_on b1) $(vc_local_running node1 b1)"
vsc destroy b1 >/dev/null

# --- two nodes whose facts agree ---------------------------------------------------
before=$(last_count c1 node1)
out=$(vsc migrate c1 --to node2 --mode precopy 2>&1)
expect_eq "migrate c1 --to node2 --mode precopy (the same facts): exit 0" 0 "$?"
echo "$out" | tail -1 | sed 's/^/# /'
has_first() { [ -n "$(first_count c1 node2)" ]; }
wait_for 30 has_first
check "c1 counts on on node2 from where it was on node1 (past $before)" \
	test "$(first_count c1 node2)" -gt "${before:-0}"

# --- without --mode, a refused precondition goes cold ------------------------------
# node3: a real node manager whose registered CPU features (--label wins over
# what it reads) lack what node2 has: precopy is refused (409, precondition
# "cpu") before anything stops, and slicectl migrates cold instead, saying why.
vc_enroll_node 3 --overlay-local "$VC_NET.13" --overlay-vni $VNI --label vslice.cpu=sse2
node3_ready() { vsc nodes | awk '$1 == "node3" && $2 == "ready"' | grep -q .; }
check "node3 (CPU features: sse2 only) enrolls" wait_for 30 node3_ready
before=$(last_count c1 node2)
out=$(vsc migrate c1 --to node3 2>"$VC_TMP/e")
expect_eq "migrate c1 --to node3 (no --mode; node3 lacks features): exit 0" 0 "$?"
check "... says which precondition failed and that it goes cold" \
	grep -q "^slicectl: migrate c1: node node3 lacks CPU features node node2 has (.*): a precopy migration resumes code that may use them; migrating it cold instead$" "$VC_TMP/e"
check "... and went cold" has "$(echo "$out" | tail -1)" '^migrated c1 node2 -> node3 (cold): '
# The target starts c1 once the registry says committed, and the registry
# learns "running" from its next report: wait for it.
on3() { [ "$(vc_running_on c1)" = node3 ]; }
check "... c1 runs on node3" wait_for 30 on3
vsc destroy c1 >/dev/null
finish
