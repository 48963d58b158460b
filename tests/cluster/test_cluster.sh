#!/usr/bin/env bash
# Cluster mode end to end, as root: a registry and three node managers, each
# host in its own network namespace (tests/cluster/lib.sh), real slivers on
# every node. Experiments are submitted as manifests through slicectl and
# checked on the nodes themselves (slice dirs, cgroups) as well as through
# the API.
. "$(dirname "$0")/lib.sh"

M=$VC_TMP/manifests
mkdir -p "$M"
not() { ! "$@" 2>/dev/null; }
has() { echo "$1" | grep -q -- "$2"; }
node_has() { vs_node "$1" list -q | grep -qx "$2"; }

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
check "admin token printed by init" test -n "$ADMIN"
NODE_TOKEN=$(vsc token create --role node)
check "node enrollment token" test -n "$NODE_TOKEN"
ALICE=$(vsc user create alice)
BOB=$(vsc user create bob)
check "user tokens" test -n "$ALICE" -a -n "$BOB" -a "$ALICE" != "$BOB"

vc_add_node node1 1 --label region=eu --heartbeat 1s
NODE1_TOKEN=$NODE_TOKEN
NODE_TOKEN=$(TOKEN=$ADMIN vsc token create --role node)
vc_add_node node2 2 --label region=eu --heartbeat 1s
NODE2_TOKEN=$NODE_TOKEN
NODE_TOKEN=$(TOKEN=$ADMIN vsc token create --role node)
vc_add_node node3 3 --label region=us --heartbeat 1s
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes enroll and are ready" wait_for 20 nodes_ready
vsc nodes

TOKEN=$ALICE
# --- an experiment on two nodes picked by label -----------------------------
cat >"$M/hello.json" <<'EOF'
{
  "apiVersion": "vslice/v1",
  "slice": "hello_eu",
  "nodes": { "count": 2, "labels": { "region": "eu" } },
  "network": "host",
  "resources": { "memory": "64M", "pids": 64 },
  "files": [ { "path": "/opt/run.sh", "mode": "0755",
               "content": "#!/bin/sh\nmkdir -p /results/sub\necho \"hello from $(hostname)\"\nip -4 addr show eth0 | grep -o 'inet [0-9.]*' > /results/addr.txt\necho data > /results/sub/x\n" } ],
  "run": { "command": ["/opt/run.sh"], "timeout": "1m" },
  "results": ["/results/addr.txt", "/results/sub", "/results/missing"]
}
EOF
out=$(vsc submit --wait "$M/hello.json" 2>&1)
rc=$?
echo "$out"
expect_eq "submit --wait on 2 nodes exits 0" 0 "$rc"
check "submit prints the slice name first" test "$(echo "$out" | head -1)" = hello_eu
check "progress names node1" has "$out" '^\[node1\]'
check "progress names node2" has "$out" '^\[node2\]'
check "node1's output is streamed" has "$out" '^\[node1\] | hello from hello-eu'
check "node2's output is streamed" has "$out" '^\[node2\] | hello from hello-eu'
check "submit: no node3 sliver" not has "$out" node3
st=$(vsc status hello_eu)
echo "$st"
expect_eq "status: two slivers exited 0" 2 "$(echo "$st" | awk '$2 == "exited" && $3 == "0"' | wc -l)"
check "status: none on the us node" not has "$st" node3
rm -rf "$VC_TMP/out"
vsc results hello_eu "$VC_TMP/out"
rc=$?
expect_eq "results exit 125: one result path is missing" 125 "$rc"
check "results of node1 copied" test -f "$VC_TMP/out/node1/results/addr.txt"
check "results of node2 copied" test -f "$VC_TMP/out/node2/results/sub/x"
expect_eq "each sliver ran in its node's network (node1)" "inet $VC_NET.11" "$(cat "$VC_TMP/out/node1/results/addr.txt" 2>/dev/null)"
expect_eq "each sliver ran in its node's network (node2)" "inet $VC_NET.12" "$(cat "$VC_TMP/out/node2/results/addr.txt" 2>/dev/null)"
check "SHA256SUMS verifies" sh -c "cd '$VC_TMP/out' && sha256sum --quiet -c SHA256SUMS"
expect_eq "logs --node shows one sliver's output" "hello from hello-eu" "$(vsc logs hello_eu --node node2)"
check "the sliver really exists on node1" node_has node1 hello_eu
check "the sliver really exists on node2" node_has node2 hello_eu
check "... and not on node3" not node_has node3 hello_eu

# --- isolation between users, and roles -------------------------------------
TOKEN=$BOB
check "bob cannot see alice's slice" not vsc status hello_eu
check "bob cannot destroy alice's slice" not vsc destroy hello_eu
expect_eq "bob's list is empty" "" "$(vsc list -q)"
check "bob cannot create tokens" not vsc token create --role admin
code=$(in_reg curl -s -o /dev/null -w '%{http_code}' "$REGISTRY_URL/v1/slices")
expect_eq "no token: 401" 401 "$code"
code=$(in_reg curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NODE_TOKEN" \
	-X PUT --data-binary x "$REGISTRY_URL/v1/slices/hello_eu/slivers/node1/log?offset=0")
expect_eq "node3's token cannot write node1's sliver log: 403" 403 "$code"
TOKEN=$ALICE

# --- refusals name the field and change nothing -----------------------------
sed -e 's/"count": 2/"count": 3/' -e 's/hello_eu/too_many/' "$M/hello.json" >"$M/too_many.json"
err=$(vsc submit "$M/too_many.json" 2>&1)
rc=$?
echo "$err"
expect_eq "3 eu nodes wanted, 2 exist: exit 125" 125 "$rc"
check "... the error names .nodes.count" has "$err" '\.nodes\.count'
check "... and no slice was made" not has "$(vsc list -q)" too_many
vsc submit "$M/hello.json" >/dev/null 2>&1
expect_eq "the same name twice: exit 125" 125 "$?"

# --- a failing run, named nodes, restarts -----------------------------------
cat >"$M/fail.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "fails", "nodes": { "names": ["node3"] },
  "run": { "command": "echo trying; exit 3", "restart": "on-failure", "restart_limit": 1 } }
EOF
vsc submit --wait "$M/fail.json"
rc=$?
expect_eq "a run that exits 3 makes submit --wait exit 3" 3 "$rc"
st=$(vsc status fails | awk '$1 == "node3"')
expect_eq "status: exited 3 on node3 after 1 restart" "exited 3 1" "$(echo "$st" | awk '{print $2, $3, $5}')"
cat >"$M/slow.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "slow", "nodes": { "names": ["node1"] },
  "run": { "command": ["/bin/sleep", "100"], "timeout": "1s" } }
EOF
vsc submit --wait "$M/slow.json" >/dev/null 2>&1
expect_eq "a run past its timeout: submit --wait exits 124" 124 "$?"
expect_eq "status says timeout" "exited 124 timeout" "$(vsc status slow | awk '$1 == "node1" {print $2, $3, $4}')"
vsc destroy slow

# --- destroy removes the slivers from every node ----------------------------
vsc destroy hello_eu
gone() { ! node_has node1 hello_eu && ! node_has node2 hello_eu; }
check "destroy: slivers gone from node1 and node2" wait_for 15 gone
check "destroy: no cgroup left on node1" not ls -d /sys/fs/cgroup/*/"$VC_PFX"-node1/hello_eu
check "destroy: the registry forgot it" not has "$(vsc list -q)" hello_eu

# --- slivers outlive their node manager and the registry ---------------------
cat >"$M/long.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "long", "nodes": { "names": ["node2"] },
  "run": { "command": ["/bin/sleep", "1000"] } }
EOF
vsc submit "$M/long.json" >/dev/null
running() { vsc status long | awk '$1 == "node2" && $2 == "running"' | grep -q .; }
check "a long run is running on node2" wait_for 20 running
vc_stop_node node2
vc_stop_registry
check "node manager and registry stopped: the sliver still runs" has "$(vs_node node2 show long)" running
vc_start_registry --heartbeat 1s
NODE_TOKEN=$NODE2_TOKEN vc_start_node node2 --label region=eu --heartbeat 1s
check "after both restart, the registry sees it running again" wait_for 20 running
vsc destroy long

# --- the node manager only touches its own slices ----------------------------
vs_node node1 image build busybox >/dev/null 2>&1
vs_node node1 create mine --image busybox -- /bin/sleep 100 >/dev/null
sleep 3
check "a slice made by hand on a node is left alone" node_has node1 mine
vs_node node1 destroy --force mine >/dev/null

# --- a rogue node: what its token must not do --------------------------------
cat >"$M/target.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "target", "nodes": { "names": ["node1"] },
  "run": { "command": ["/bin/sleep", "1000"] }, "results": ["/r"] }
EOF
vsc submit "$M/target.json" >/dev/null
# as_node TOKEN METHOD PATH [curl args]: the HTTP status the registry answers
as_node() {
	local tok=$1 m=$2 p=$3
	shift 3
	in_reg curl -s -o /dev/null -w '%{http_code}' --path-as-is -X "$m" \
		-H "Authorization: Bearer $tok" "$@" "$REGISTRY_URL$p"
}
SUM_X=$(printf x | sha256sum | cut -c1-64)
SUM_Y=$(printf y | sha256sum | cut -c1-64)
expect_eq "node3 cannot read node1's assignments" 403 "$(as_node "$NODE_TOKEN" GET /v1/nodes/node1/assignments)"
expect_eq "node3 cannot re-register as node1" 403 "$(as_node "$NODE_TOKEN" PUT /v1/nodes/node1 --data '{"cpus":1,"memory":1}')"
expect_eq "node3 cannot upload results for a sliver it does not run" 403 \
	"$(as_node "$NODE_TOKEN" PUT /v1/slices/target/slivers/node3/results/r -H "X-Vslice-Sha256: $SUM_X" --data-binary x)"
expect_eq "node3 cannot submit slices" 403 "$(as_node "$NODE_TOKEN" POST /v1/slices --data-binary @"$M/target.json")"
code=$(as_node "$NODE1_TOKEN" PUT /v1/slices/target/slivers/node1/results/../../../etc/passwd -H "X-Vslice-Sha256: $SUM_X" --data-binary x)
check "node1 cannot upload a result outside the slice with ../ (got $code)" test "$code" = 400 -o "$code" = 404
code=$(as_node "$NODE1_TOKEN" PUT /v1/slices/target/slivers/node1/results/r/%2e%2e/%2e%2e/x -H "X-Vslice-Sha256: $SUM_X" --data-binary x)
check "... nor with %2e%2e (got $code)" test "$code" = 400 -o "$code" = 404
expect_eq "an upload whose sha256 does not match is refused" 400 \
	"$(as_node "$NODE1_TOKEN" PUT /v1/slices/target/slivers/node1/results/r -H "X-Vslice-Sha256: $SUM_Y" --data-binary x)"
as_node "$NODE_TOKEN" POST /v1/nodes/node3/status --data '{"slivers":[{"slice":"target","state":"exited","exit_code":0}]}' >/dev/null
expect_eq "a status report for a slice not assigned to the node changes nothing" "" "$(vsc status target | awk '$1 == "node3"')"
vsc destroy target

# --- create and run from options, like local mode -------------------------------
out=$(vsc run --rm --node node1 --memory 32M r1 -- /bin/sh -c 'echo hi from r1; exit 7' 2>&1)
expect_eq "run --rm through the registry exits with the command's code" 7 "$?"
check "... and shows its output" has "$out" '^\[node1\] | hi from r1'
check "... and --rm deletes the slice" not has "$(vsc list -q)" '^r1$'
vsc create --nodes 2 --env X=1 c1 -- /bin/sleep 100 >/dev/null
c1_running() { [ "$(vsc status c1 | awk '$2 == "running"' | wc -l)" -eq 2 ]; }
check "create --nodes 2: two slivers run" wait_for 20 c1_running
vsc destroy c1
vsc run --hostname h r2 -- /bin/true >/dev/null 2>&1
expect_eq "run --hostname in cluster mode: 125" 125 "$?"
"$SLICECTL" --root "$VC_TMP/nowhere" run --nodes 2 r3 -- /bin/true >/dev/null 2>&1
expect_eq "run --nodes 2 in local mode: 125" 125 "$?"

# --- a binary file of 1 MiB (the most one file may be) travels as base64 -----
head -c $((1 << 20)) /dev/urandom >"$M/blob.bin"
BLOB_SUM=$(sha256sum "$M/blob.bin" | cut -c1-64)
cat >"$M/blob.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "blob", "nodes": { "names": ["node2"] },
  "files": [ { "path": "/data/blob.bin", "source": "blob.bin" } ],
  "run": { "command": "sha256sum /data/blob.bin | cut -c1-64 > /r.txt" }, "results": ["/r.txt"] }
EOF
vsc submit --wait "$M/blob.json" >/dev/null
expect_eq "a 1 MiB binary file reaches the sliver" 0 "$?"
rm -rf "$VC_TMP/blobout"
vsc results blob "$VC_TMP/blobout" >/dev/null 2>&1
expect_eq "... its sha256 inside the sliver is the one here" "$BLOB_SUM" "$(cat "$VC_TMP/blobout/node2/r.txt" 2>/dev/null)"
vsc destroy blob

# --- renew: the registry's record and the running sliver both move ----------
cat >"$M/renewme.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "renewme", "lifetime": "4s", "nodes": { "names": ["node3"] },
  "run": { "command": ["/bin/sleep", "1000"] } }
EOF
vsc submit "$M/renewme.json" >/dev/null
renew_running() { vsc status renewme | awk '$1 == "node3" && $2 == "running"' | grep -q .; }
check "renewme runs on node3" wait_for 20 renew_running
check "renew through the registry" has "$(vsc renew renewme --lifetime 1h)" "^renewme: expires"
sleep 6
check "the renewed sliver outlives its first lifetime" has "$(vs_node node3 show renewme)" running
vsc destroy renewme

# --- lifetime: the registry expires slices, the nodes remove them ------------
cat >"$M/short.json" <<'EOF'
{ "apiVersion": "vslice/v1", "slice": "short", "lifetime": "3s", "nodes": { "names": ["node1"] },
  "run": { "command": ["/bin/sleep", "1000"] } }
EOF
vsc submit "$M/short.json" >/dev/null
expired() { ! node_has node1 short; }
check "an expired slice is removed from its node" wait_for 20 expired

finish
