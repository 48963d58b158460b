#!/usr/bin/env bash
# Remote verbs on slivers, part 1 (issue 14): the registry's tickets and the
# node managers' /v1/slivers/NAME/... routes, as root, on test hosts
# (tests/cluster/lib.sh): a registry and two node managers whose --listen
# APIs serve HTTPS with certificates from a throwaway cluster CA.
#   - slicectl stats / freeze / thaw NAME --node N reach the sliver on its
#     node (a ticket from the registry, the node verified against --ca); the
#     frozen state shows in the remote stats and on the node itself;
#   - slicectl logs -f NAME --node N prints the output live and ends when
#     the sliver stops;
#   - refusals, with curl at the node's API: no ticket (401), a wrong
#     ticket, an expired one, one for another verb, one for another node, a
#     replayed one (403 each, one message); another user's slice (404 at
#     issue, like a slice that does not exist); 429 once a user holds 64
#     open tickets; slicectl without the cluster CA refuses the node.
# The registry runs with VSLICE_TEST_TICKET_TTL=6 (tickets live 6 s, not 30)
# so an expired ticket can be shown without a long wait.
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }
TTL=6

vc_setup_net
VSLICE_TEST_TICKET_TTL=$TTL
export VSLICE_TEST_TICKET_TTL
check "registry starts (tickets live $TTL s)" vc_start_registry --heartbeat 1s
unset VSLICE_TEST_TICKET_TTL
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
BOB=$(vsc user create bob)

vc_pki 2
vc_add_tls_nodes 2
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes with HTTPS APIs enroll and are ready" wait_for 30 nodes_ready

# slicectl as alice, verifying the nodes against the cluster CA.
TOKEN=$ALICE
vr() { vsc --ca "$P/ca.pem" "$@"; }
vsc create --node node2 --image busybox r1 -- sh -c 'while :; do echo tick; sleep 1; done' >/dev/null
running() { [ "$(vc_running_on "$1")" = "$2" ] && [ "$(vc_local_running "$2" "$1")" = 1 ]; }
check "r1 runs on node2" wait_for 30 running r1 node2

# --- stats, freeze, thaw --------------------------------------------------
out=$(vr stats r1 --node node2 --json 2>&1)
expect_eq "stats r1 --node node2 --json: exit 0" 0 "$?"
expect_eq "... the sliver's stats (name)" r1 "$(echo "$out" | jq -r .name)"
check "... with its processes counted" test "$(echo "$out" | jq -r .pids)" -ge 1
expect_eq "... not frozen" false "$(echo "$out" | jq -r .frozen)"
out=$(vr stats r1 2>&1)
check "stats r1 (one sliver: no --node needed), text" has "$out" '^frozen   no'
expect_eq "freeze r1 --node node2: exit 0" 0 "$(vr freeze r1 --node node2 >/dev/null 2>&1; echo $?)"
expect_eq "... remote stats say frozen" true "$(vr stats r1 --node node2 --json | jq -r .frozen)"
expect_eq "... and so does node2 itself" true "$(vs_node node2 stats r1 --json | jq -r .frozen)"
expect_eq "thaw r1 --node node2: exit 0" 0 "$(vr thaw r1 --node node2 >/dev/null 2>&1; echo $?)"
expect_eq "... remote stats say not frozen" false "$(vr stats r1 --node node2 --json | jq -r .frozen)"
expect_eq "... node2 agrees" false "$(vs_node node2 stats r1 --json | jq -r .frozen)"
out=$(vr stats r1 --node node1 2>&1)
expect_eq "stats r1 --node node1 (no sliver there): exit 125" 125 "$?"
check "... one line naming the slice and node" has "$out" 'slice r1 has no sliver on node node1'
out=$(vsc stats r1 --node node2 2>&1)
expect_eq "stats without the cluster CA: exit 125" 125 "$?"
check "... says the node's certificate is not trusted" has "$out" 'not trusted'
expect_eq "... one line" 1 "$(echo "$out" | wc -l)"

# --- logs -f ----------------------------------------------------------------
vsc create --node node1 --image busybox r2 -- sh -c 'echo start; sleep 8; echo done' >/dev/null
check "r2 runs on node1" wait_for 30 running r2 node1
vr logs -f r2 --node node1 >"$VC_TMP/follow.out" 2>&1 &
fpid=$!
live() { grep -q start "$VC_TMP/follow.out" && kill -0 $fpid && ! grep -q done "$VC_TMP/follow.out"; }
check "logs -f r2 --node node1 prints 'start' while r2 still runs" wait_for 20 live
ended() { ! kill -0 $fpid; }
check "... and ends when r2 stops" wait_for 60 ended
wait $fpid
expect_eq "... exit 0" 0 "$?"
expect_eq "... the whole output, once" "start done" "$(tr '\n' ' ' <"$VC_TMP/follow.out" | sed 's/ $//')"
expect_eq "logs -f of a sliver that has stopped: its output, at once" "start done" \
	"$(in_reg timeout 30 "$SLICECTL" --registry "$REGISTRY_URL" --token "$TOKEN" --ca "$P/ca.pem" \
		logs -f r2 --node node1 2>&1 | tr '\n' ' ' | sed 's/ $//')"
# Silent for longer than a follow answer lasts (the node ends it after 20 s
# without output; slicectl asks again from where it was, with a new ticket).
vsc create --node node2 --image busybox r3 -- sh -c 'echo a; sleep 28; echo b' >/dev/null
check "r3 runs on node2" wait_for 30 running r3 node2
out=$(in_reg timeout 90 "$SLICECTL" --registry "$REGISTRY_URL" --token "$TOKEN" --ca "$P/ca.pem" \
	logs -f r3 --node node2 2>&1)
expect_eq "logs -f across 28 s of silence: every line once, then the end" "a b" \
	"$(echo "$out" | tr '\n' ' ' | sed 's/ $//')"

# --- refusals at the node's API ----------------------------------------------
N1=https://$VC_NET.11:7481
N2=https://$VC_NET.12:7481
# code URL [TICKET]: the HTTP status of a GET with that ticket.
code() {
	in_reg curl -s --cacert "$P/ca.pem" -o /dev/null -w '%{http_code}' \
		${2:+-H "Authorization: Bearer $2"} "$1"
}
# ticket SLICE VERB NODE: a new ticket, as $TOKEN.
ticket() { vc_api POST "/v1/slices/$1/tickets" -d "{\"verb\": \"$2\", \"node\": \"$3\"}" | jq -r .ticket; }

expect_eq "no ticket: 401" 401 "$(code "$N2/v1/slivers/r1/stats")"
expect_eq "a user token instead of a ticket: 401" 401 "$(code "$N2/v1/slivers/r1/stats" "$ALICE")"
expect_eq "a wrong ticket: 403" 403 "$(code "$N2/v1/slivers/r1/stats" "vtk_$(printf '%064d' 7)")"
t=$(ticket r1 stats node2)
check "a ticket is vtk_ + 64 hex" has "$t" '^vtk_[0-9a-f]\{64\}$'
expect_eq "... used once: 200" 200 "$(code "$N2/v1/slivers/r1/stats" "$t")"
expect_eq "... replayed: 403" 403 "$(code "$N2/v1/slivers/r1/stats" "$t")"
t=$(ticket r1 freeze node2)
expect_eq "a ticket for freeze used for stats: 403" 403 "$(code "$N2/v1/slivers/r1/stats" "$t")"
t=$(ticket r1 stats node2)
expect_eq "node2's ticket shown to node1: 403" 403 "$(code "$N1/v1/slivers/r1/stats" "$t")"
t=$(ticket r2 stats node1)
expect_eq "a ticket for r2 used on r1's route: 403" 403 "$(code "$N1/v1/slivers/r1/stats" "$t")"
t=$(ticket r1 stats node2)
sleep $((TTL + 2))
expect_eq "an expired ticket: 403" 403 "$(code "$N2/v1/slivers/r1/stats" "$t")"
body=$(in_reg curl -s --cacert "$P/ca.pem" -H "Authorization: Bearer $t" "$N2/v1/slivers/r1/stats")
expect_eq "... one message for every refusal" '{"error":"sliver r1: ticket refused"}' "$body"
check "the registry's log says why (expired)" grep -q "ticket refused: expired" "$VC_TMP/registry.log"
check "... and for the replay (already used)" grep -q "ticket refused: already used" "$VC_TMP/registry.log"
check "... and for node1 (bound to another node)" grep -q "node node1: ticket refused: bound to another node" "$VC_TMP/registry.log"

st() { vc_api POST "/v1/slices/$1/tickets" -o /dev/null -w '%{http_code}' -d "$2"; }
expect_eq "bob asks a ticket for alice's r1: 404" 404 "$(TOKEN=$BOB st r1 '{"verb": "stats"}')"
expect_eq "... as for a slice that does not exist" 404 "$(st nosuch '{"verb": "stats"}')"
msg=$(TOKEN=$BOB vc_api POST /v1/slices/r1/tickets -d '{"verb": "stats"}' | jq -r .error)
expect_eq "... with the same message" "slice r1: not found" "$msg"
expect_eq "a verb tickets do not name: 400" 400 "$(st r1 '{"verb": "destroy"}')"
expect_eq "an unknown field: 400" 400 "$(st r1 '{"verb": "stats", "user": "bob"}')"
expect_eq "a node with no sliver of r1: 409" 409 "$(st r1 '{"verb": "stats", "node": "node1"}')"
expect_eq "a node token cannot ask for tickets: 403" 403 "$(TOKEN=$NODE_TOKEN st r1 '{"verb": "stats"}')"
expect_eq "a user token cannot redeem: 403" 403 \
	"$(vc_api POST /v1/tickets/redeem -o /dev/null -w '%{http_code}' -d "{\"ticket\": \"$(ticket r1 stats node2)\"}")"

# --- the cap ----------------------------------------------------------------
sleep $((TTL + 1)) # every earlier ticket has expired
# The 64 in one curl process (one kept-alive connection): a loop of 64
# processes could outlast the 6 s tickets on a loaded machine, and the
# first ones would expire before the 65th is asked for.
urls=$(for i in $(seq 64); do printf '%s ' "$REGISTRY_URL/v1/slices/r1/tickets"; done)
# shellcheck disable=SC2086
codes=$(in_reg curl -s -X POST -H "Authorization: Bearer $TOKEN" -d '{"verb": "stats"}' \
	-w '\n%{http_code}\n' $urls | grep -xE '[0-9]{3}' | sort | uniq -c | awk '{print $2 "x" $1}')
expect_eq "64 open tickets for alice: all 201" "201x64" "$codes"
expect_eq "the 65th: 429" 429 "$(st r1 '{"verb": "stats"}')"
check "... saying why" has "$(vc_api POST /v1/slices/r1/tickets -d '{"verb": "stats"}' | jq -r .error)" "64 tickets open"
expect_eq "bob is not held up by alice's tickets (his own slice)" 0 \
	"$(TOKEN=$BOB vsc create --node node1 --image busybox b1 -- sleep 600 >/dev/null 2>&1; echo $?)"
TOKEN=$BOB check "b1 runs on node1" wait_for 30 running b1 node1
expect_eq "... bob's ticket: 201" 201 "$(TOKEN=$BOB st b1 '{"verb": "stats"}')"
# They were issued over a few seconds and expire as they were issued: wait
# for all of them (each try that succeeds takes a place again).
sleep $((TTL + 1))
expect_eq "alice gets tickets again once hers have expired" 201 "$(st r1 '{"verb": "stats"}')"
check "slicectl stats works again" vr stats r1 --node node2

# --- a follower that stops reading -------------------------------------------
# r4 writes 64 MiB of output at once; a client asks to follow it and reads
# nothing. The node reads the log only as the client takes it: its memory
# does not grow by the log's size, and it still answers others meanwhile.
vsc create --node node1 --image busybox r4 -- sh -c 'yes 0123456789abcdef | head -c 67108864; sleep 600' >/dev/null
check "r4 runs on node1" wait_for 30 running r4 node1
big() { [ "$(stat -c %s "$VC_TMP/node1/root/slices/r4/log" 2>/dev/null || echo 0)" -ge 67108864 ]; }
check "... and has written its 64 MiB" wait_for 60 big
rss() { awk '/^VmRSS/ {print $2}' "/proc/$VC_NODE_PID_node1/status"; }
before=$(rss)
t=$(ticket r4 logs node1)
in_reg python3 -c '
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection((sys.argv[1], 7481)), server_hostname=sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(("GET /v1/slivers/r4/logs?follow=1 HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n" % sys.argv[3]).encode())
s.recv(100)     # the answer has begun
time.sleep(10)  # ... and is not read
open(sys.argv[4], "w").write("held\n")
' "$VC_NET.11" "$P/ca.pem" "$t" "$VC_TMP/held" &
hpid=$!
held() { [ -s "$VC_TMP/held" ]; }
mid=0
for i in $(seq 8); do sleep 1; r=$(rss); [ "$r" -gt "$mid" ] && mid=$r; done
check "node1 still answers stats while the follower sits" vr stats r4 --node node1
wait $hpid
check "... the follower held its connection for 10 s" held
grew=$(((mid - before) / 1024))
echo "# node1 RSS: $before kB before, at most $mid kB while the follower sat (+$grew MiB)"
check "node1's memory grew by less than 16 MiB (the log: 64 MiB)" test "$grew" -lt 16

finish
