#!/usr/bin/env bash
# Cold migration between two nodes (issue 11, acceptance), as root: a
# registry and two node managers, each on its own network-namespace host
# (tests/cluster/lib.sh), the node managers' --listen APIs on their hosts'
# addresses so the stream goes node to node over the bridge.
#   - a busybox slice that writes /keep once and prints it every second is
#     moved node1 -> node2: one sliver, running on node2; its log on node2
#     shows the same /keep value (the file system moved, and the log with
#     it); node1 holds nothing of it any more; the migration record says
#     committed, with bytes and downtime;
#   - the transfer endpoint as an attacker sees it (any host on the lan):
#     no token, a wrong token, a replayed token, an id not open, a body on
#     the status route: refused, and the transfer still works afterwards;
#   - the same over HTTPS (--tls-cert/--tls-key, the source verifying the
#     target against the cluster CA), and a source without that CA refuses.
. "$(dirname "$0")/lib.sh"

not() { ! "$@" 2>/dev/null; }
has() { echo "$1" | grep -q -- "$2"; }
# The first line of the slice's log on NODE through the registry.
first_log() { vsc logs "$1" --node "$2" 2>/dev/null | head -1; }
log_has() { vsc logs "$1" --node "$2" 2>/dev/null | grep -c -- "$3"; }

vc_setup_net
# A stopped node manager is not "lost" for 20 s: the transfer tests below
# hold a migration open while its source is down.
check "registry starts" vc_start_registry --heartbeat 1s --lost-after 20 --migration-timeout 60
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
for k in 1 2; do vc_enroll_node $k; done
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 2 ]; }
check "two nodes enroll and are ready" wait_for 30 nodes_ready
url2=$(vc_api GET /v1/nodes | jq -r '.nodes[] | select(.name == "node2") | .url')
expect_eq "node2 registered its --listen address as its url" "http://$VC_NET.12:7481" "$url2"

TOKEN=$ALICE
vsc create --node node1 --image busybox m1 -- sh -c \
	'[ -f /keep ] || date +%s%N > /keep; while :; do cat /keep; sleep 1; done' >/dev/null
on1() { [ "$(vc_running_on m1)" = node1 ] && [ -n "$(first_log m1 node1)" ]; }
check "m1 runs on node1 and logs its /keep value" wait_for 30 on1
KEEP=$(first_log m1 node1)
check "... a value" test -n "$KEEP"

# --- the migration --------------------------------------------------------
out=$(vsc migrate m1 --to node2 --mode cold 2>&1)
expect_eq "slicectl migrate m1 --to node2 --mode cold: exit 0" 0 "$?"
echo "$out" | tail -1
check "... ends with one summary line" has "$(echo "$out" | tail -1)" \
	'^migrated m1 node1 -> node2 (cold): .* in .* s, downtime .* s$'
id=$(vc_api GET "/v1/migrations?slice=m1" | jq -r '.migrations[0].id')
check "... a migration record" has "$id" '^mg_'
check "... finished" vc_wait_finished "$id" 60
expect_eq "... committed" committed "$(vc_migration_field "$id" phase)"
check "... bytes moved are counted" test "$(vc_migration_field "$id" bytes)" -gt 0
check "... with a downtime" test "$(vc_migration_field "$id" downtime_ms)" -gt 0
on2() { [ "$(vc_running_on m1)" = node2 ]; }
check "status: one sliver, running on node2" wait_for 30 on2
expect_eq "... and only that one" 1 "$(vsc status m1 | awk 'NR > 1 || $1 ~ /^node/' | grep -c '^node')"
same() { [ "$(log_has m1 node2 "$KEEP")" -ge 2 ]; }
check "logs --node node2 show the same /keep value, again and again" wait_for 30 same
expect_eq "... the log came along (its first line is the one node1 wrote)" "$KEEP" "$(first_log m1 node2)"
expect_eq "node2 runs it" 1 "$(vc_local_running node2 m1)"
check "node1 holds nothing of it (slice, record)" \
	test ! -e "$VC_TMP/node1/root/slices/m1" -a ! -e "$VC_TMP/node1/root/nodemgr/slivers/m1.json"
expect_eq "the /keep file is the same on node2" "$KEEP" \
	"$(vs_node node2 exec m1 -- cat /keep 2>/dev/null)"

# --- the transfer endpoint, as any host on the lan sees it -----------------
# A migration back, held open: node2 (the source) is stopped first, so node1
# makes its copy and waits for the PUT that node2 would send.
vc_stop_node node2
id2=$(vc_api POST /v1/slices/m1/migrations -d '{"to": "node1"}' | jq -r .id)
check "a second migration (node2 -> node1) while node2's node manager is down" has "$id2" '^mg_'
open1() { grep -q "migration $id2 from node2: copy made, transfer open" "$VC_TMP/node1.log"; }
check "node1 opens the transfer" wait_for 30 open1
T=http://$VC_NET.11:7481/v1/transfers/$id2
put() { in_reg curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @- "$@"; }
expect_eq "PUT without a token: 401" 401 "$(echo x | put "$T")"
expect_eq "PUT with a wrong token: 403" 403 \
	"$(echo x | put -H "Authorization: Bearer vst_$(printf '%064d' 0)" "$T")"
expect_eq "PUT to an id not open here: 503 (try again)" 503 \
	"$(echo x | put -H "Authorization: Bearer vst_$(printf '%064d' 0)" \
		"http://$VC_NET.11:7481/v1/transfers/mg_0123456789abcdef")"
# The same checks on the upgraded transfer (live and pre-copy over http).
upg() { in_reg curl -s -o /dev/null -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: vslice-transfer' "$@"; }
expect_eq "GET Upgrade: vslice-transfer without a token: 401" 401 "$(upg "$T")"
expect_eq "... with a wrong token: 403" 403 "$(upg -H "Authorization: Bearer vst_$(printf '%064d' 0)" "$T")"
expect_eq "GET without the Upgrade: 405" 405 "$(in_reg curl -s -o /dev/null -w '%{http_code}' "$T")"
expect_eq "PUT to a malformed id: 404" 404 "$(echo x | put "http://$VC_NET.11:7481/v1/transfers/..%2f")"
expect_eq "a body on the status route: 413" 413 "$(echo x | put "http://$VC_NET.11:7481/v1/status")"
# The real token is the source's (its assignments, with its node token): a
# replay after a PUT that used it is refused, and garbage with it is not
# taken for a sliver.
tok=$(TOKEN=$NODE2_TOKEN vc_api GET /v1/nodes/node2/assignments | jq -r '.slivers[] | select(.slice == "m1") | .migrate_out.token')
check "... the source's assignment carries the token" has "$tok" '^vst_'
code=$(head -c 100000 /dev/urandom | put -H "Authorization: Bearer $tok" "$T")
expect_eq "PUT with the token and a body that is no stream: 422" 422 "$code"
expect_eq "... the same token again: 409 (one use)" 409 "$(echo x | put -H "Authorization: Bearer $tok" "$T")"
expect_eq "... and on an upgraded transfer: 409" 409 "$(upg -H "Authorization: Bearer $tok" "$T")"
check "... the migration is aborted, saying why" vc_wait_finished "$id2" 30
expect_eq "... aborted" aborted "$(vc_migration_field "$id2" phase)"
check "... the reason names the target's check" has "$(vc_migration_field "$id2" reason)" "target node1"
gone1() { [ ! -e "$VC_TMP/node1/root/slices/m1" ]; }
check "... node1 removed its copy" wait_for 20 gone1
vc_start_node node2 --heartbeat 1s --listen "$VC_NET.12:7481"
check "node2 comes back; m1 still runs there, with its data" wait_for 30 on2
expect_eq "... the same /keep" "$KEEP" "$(vs_node node2 exec m1 -- cat /keep 2>/dev/null)"

# --- 300 connections at once from one host -----------------------------------
# They stay open, silent: node1's API takes 16 from one address (a thread
# each) and closes the rest; another host is still answered.
in_reg python3 -c '
import socket, sys, time
held = []
for i in range(300):
    try:
        held.append(socket.create_connection((sys.argv[1], 7481), timeout=2))
    except OSError:
        pass
time.sleep(8)
' "$VC_NET.11" &
FLOOD=$!
sleep 4
pid1=$(eval "echo \$VC_NODE_PID_node1")
threads=$(ls "/proc/$pid1/task" | wc -l)
check "300 silent sockets from one host: node1 runs $threads threads (< 40)" test "$threads" -lt 40
check "... and still answers another host" \
	nsenter --net="/run/netns/$VC_PFX-node2" curl -sf -m 5 "http://$VC_NET.11:7481/v1/status" -o /dev/null
wait "$FLOOD"

# --- three at once: node drain --migrate --parallel 3 --------------------------
# Three slices leave node1 together: three PUTs at once to node2's API.
for d in d1 d2 d3; do
	vsc create --node node1 --image busybox "$d" -- sh -c \
		"[ -f /keep ] || echo $d-\$(date +%s%N) >/keep; while :; do cat /keep; sleep 1; done" >/dev/null
done
d_on1() { [ "$(vc_running_on d1) $(vc_running_on d2) $(vc_running_on d3)" = "node1 node1 node1" ]; }
check "d1..d3 run on node1" wait_for 30 d_on1
for d in d1 d2 d3; do eval "K_$d=\$(vs_node node1 exec $d -- cat /keep 2>/dev/null)"; done
out=$(TOKEN=$ADMIN vsc node drain node1 --migrate --parallel 3 2>&1)
expect_eq "node drain node1 --migrate --parallel 3: exit 0" 0 "$?"
echo "$out" | sed 's/^/# /'
d_on2() { [ "$(vc_running_on d1) $(vc_running_on d2) $(vc_running_on d3)" = "node2 node2 node2" ]; }
check "... d1..d3 run on node2" wait_for 30 d_on2
for d in d1 d2 d3; do
	eval "k=\$K_$d"
	expect_eq "... $d has its /keep ($k)" "$k" "$(vs_node node2 exec $d -- cat /keep 2>/dev/null)"
	vsc destroy "$d" >/dev/null
done
check "... node1 holds none of them" test -z "$(vs_node node1 list -q 2>/dev/null)"
TOKEN=$ADMIN vsc node undrain node1 >/dev/null

# --- the same over HTTPS ----------------------------------------------------
# A cluster CA, a certificate per node for its address; node1 back on HTTPS.
vc_pki 2
vc_stop_node node1
vc_stop_node node2
NODE_TOKEN=$NODE1_TOKEN vc_start_node node1 --heartbeat 1s --listen "$VC_NET.11:7481" \
	--tls-cert "$P/n1.pem" --tls-key "$P/n1.key" --ca "$P/ca.pem"
NODE_TOKEN=$NODE2_TOKEN vc_start_node node2 --heartbeat 1s --listen "$VC_NET.12:7481" \
	--tls-cert "$P/n2.pem" --tls-key "$P/n2.key" --ca "$P/ca.pem"
https1() { [ "$(TOKEN=$ADMIN vc_api GET /v1/nodes | jq -r '.nodes[] | select(.name == "node1") | .url')" = "https://$VC_NET.11:7481" ]; }
check "node1 registers an https:// url" wait_for 30 https1
check "m1 still runs on node2" wait_for 30 on2
id3=$(vc_api POST /v1/slices/m1/migrations -d '{"to": "node1"}' | jq -r .id)
check "migrate node2 -> node1 over HTTPS" vc_wait_finished "$id3" 60
expect_eq "... committed" committed "$(vc_migration_field "$id3" phase)"
back1() { [ "$(vc_running_on m1)" = node1 ]; }
check "... m1 runs on node1" wait_for 30 back1
expect_eq "... with the same /keep" "$KEEP" "$(vs_node node1 exec m1 -- cat /keep 2>/dev/null)"
check "status API over HTTPS, verified with the CA" \
	in_reg curl -sf --cacert "$P/ca.pem" "https://$VC_NET.11:7481/v1/status" -o /dev/null
# node1 again, without the CA: it cannot verify node2 and must not send.
vc_stop_node node1
before=$(grep -c "registered with" "$VC_TMP/node1.log")
NODE_TOKEN=$NODE1_TOKEN vc_start_node node1 --heartbeat 1s --listen "$VC_NET.11:7481" \
	--tls-cert "$P/n1.pem" --tls-key "$P/n1.key"
ready1() { [ "$(grep -c "registered with" "$VC_TMP/node1.log")" -gt "$before" ]; }
check "node1 restarts without --ca" wait_for 30 ready1
id4=$(vc_api POST /v1/slices/m1/migrations -d '{"to": "node2"}' | jq -r .id)
check "a source without the cluster CA: the migration ends" vc_wait_finished "$id4" 60
expect_eq "... aborted" aborted "$(vc_migration_field "$id4" phase)"
check "... because the target's certificate is not trusted" \
	has "$(vc_migration_field "$id4" reason)" "not trusted"
check "... and m1 runs on node1 again" wait_for 30 back1
expect_eq "... with the same /keep" "$KEEP" "$(vs_node node1 exec m1 -- cat /keep 2>/dev/null)"

# --- bad options: one line naming the option, exit 125 ------------------------
bad() { # DESCRIPTION NEEDLE OPTIONS...
	local what=$1 needle=$2 out rc
	shift 2
	out=$(VSLICE_ROOT=$VC_TMP/nowhere "$NODEMGR" --registry "$REGISTRY_URL" --name x --token t \
		"$@" 2>&1)
	rc=$?
	expect_eq "$what: exit 125" 125 "$rc"
	check "... one line naming $needle" test "$(echo "$out" | wc -l)" = 1 -a -n "$(echo "$out" | grep -F -- "$needle")"
}
bad "--advertise ftp://" --advertise --listen 127.0.0.1:0 --advertise ftp://x
bad "--advertise https:// without TLS" --advertise --listen 127.0.0.1:0 --advertise https://x:1
bad "--advertise without --listen" --advertise --advertise http://x:1
bad "--tls-cert without --tls-key" --tls-cert --listen 127.0.0.1:0 --tls-cert "$P/n1.pem"
bad "--tls-cert that is not PEM" --tls-cert --listen 127.0.0.1:0 --tls-cert /etc/hostname \
	--tls-key "$P/n1.key"
finish
