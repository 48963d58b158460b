#!/usr/bin/env bash
# The registry's half of cold migration (issue 11), on 127.0.0.1 with curl
# playing the node managers (real node tokens, no node manager, no root):
# every refusal with its status and slicectl's exit 125, the transitions and
# their idempotency, who sees the transfer token and its hash, the node
# token's view of a migrating slice, reports only from the two nodes and
# only the phases their role sends, the abort/commit race (a report after an
# abort gets 409 "aborted", an abort after a commit 409 "committed"), DELETE
# aborting, capacity counted on the target, 20 concurrent creates giving one
# 201, slicectl migrate/migrations/node drain --migrate driven by a
# background "node" script, then a restart with --migration-timeout 3: the
# record and the token survive, the timer aborts a silent migration and one
# whose target is lost.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
REG=${VSLICE_TEST_REGISTRY:-$REPO/build/vslice-registry}
SLICECTL=${VSLICE_TEST_SLICECTL:-$REPO/build/slicectl}
T=$(mktemp -d /tmp/vslice-regmig.XXXXXX)
. "$REPO/tests/lib/procs.sh"
PID=
BG=()
fails=0
passes=0
cleanup() {
	kill_child "${BG[@]}" "$PID"
	wait 2>/dev/null
	[ $fails -ne 0 ] && cat "$T/err"
	rm -rf "$T"
}
trap cleanup EXIT
ok() { echo "ok - $1"; passes=$((passes + 1)); }
ko() { echo "not ok - $1"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else ko "$what"; fi; }
# is ACTUAL EXPECTED: equal, else say what came
is() { [ "$1" = "$2" ] || { echo "# got \"$1\", want \"$2\""; return 1; }; }

start() {
	: >"$T/err"
	"$REG" --listen 127.0.0.1:0 --db "$T/r.db" --heartbeat 3s --lost-after 3 "$@" 2>"$T/err" &
	PID=$!
	for _ in $(seq 100); do grep -q "listening on" "$T/err" && break; sleep 0.1; done
	PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\) .*/\1/p' "$T/err")
	U=http://127.0.0.1:$PORT
}
# SIGTERM; with VSLICE_TEST_REGISTRY=build/asan/vslice-registry this also
# checks that no sanitizer spoke (leaks make the exit code non-zero)
stop() {
	kill -TERM "$PID"
	wait "$PID"
	local rc=$?
	PID=
	check "the registry stops cleanly (exit 0, no sanitizer report)" bash -c "test $rc -eq 0 && ! grep -q 'Sanitizer\|runtime error' '$T/err'"
}
# call METHOD TOKEN PATH [curl args...]: the body, then the status on its own line
call() {
	local m=$1 tok=$2 p=$3
	shift 3
	curl -s -X "$m" ${tok:+-H "Authorization: Bearer $tok"} -w '\n%{http_code}' "$@" "$U$p"
}
status() { call "$@" | tail -1; }
body() { call "$@" | sed '$d'; }
# py EXPR: evaluate EXPR with d = the JSON on stdin
py() { python3 -c "import json,sys,hashlib; d=json.load(sys.stdin); print($1)"; }
ctl() { local tok=$1; shift; "$SLICECTL" --registry "$U" --token "$tok" "$@"; }

ADMIN=$("$REG" init --db "$T/r.db" | tail -1)
start
ALICE=$(body POST "$ADMIN" /v1/users -d '{"name":"alice"}' | py 'd["token"]')
BOB=$(body POST "$ADMIN" /v1/users -d '{"name":"bob"}' | py 'd["token"]')
declare -A TOK
for n in n1 n2 n3 n4 n5 n6; do
	TOK[$n]=$(body POST "$ADMIN" /v1/tokens -d "{\"role\":\"node\",\"node\":\"$n\"}" | py 'd["token"]')
done
reg() { # NODE MEMORY [url]
	local extra=
	[ -n "${3:-}" ] && extra=",\"url\":\"$3\""
	status PUT "${TOK[$1]}" "/v1/nodes/$1" -d "{\"cpus\":4,\"memory\":$2$extra}"
}
GiB=1073741824
check "n1 registers with a url" test "$(reg n1 $((4 * GiB)) http://10.9.0.1:7481)" = 200
check "n2 registers with a url" test "$(reg n2 $GiB http://10.9.0.2:7481)" = 200
check "n3 registers with a url" test "$(reg n3 $((4 * GiB)) https://10.9.0.3:7481)" = 200
check "n4 registers without a url" test "$(reg n4 $((4 * GiB)))" = 200
check "n5 registers (256 MiB)" test "$(reg n5 $((GiB / 4)) http://10.9.0.5:7481)" = 200
check "n6 registers with a url" test "$(reg n6 $((4 * GiB)) http://10.9.0.6:7481)" = 200
check "a url with userinfo is refused (400, names .url)" bash -c "curl -s -X PUT -H 'Authorization: Bearer ${TOK[n6]}' -d '{\"cpus\":1,\"memory\":1,\"url\":\"http://a@b:1\"}' '$U/v1/nodes/n6' | grep -q '.url'"
check "... and ftp:// too" test "$(status PUT "${TOK[n6]}" /v1/nodes/n6 -d '{"cpus":1,"memory":1,"url":"ftp://x:1"}')" = 400
check "GET /v1/nodes shows the url" bash -c "curl -s -H 'Authorization: Bearer $ADMIN' '$U/v1/nodes' | python3 -c 'import json,sys; d={n[\"name\"]: n for n in json.load(sys.stdin)[\"nodes\"]}; assert d[\"n2\"][\"url\"] == \"http://10.9.0.2:7481\" and \"url\" not in d[\"n4\"]'"
# The played nodes stay alive (the registry's lost window is 9 s here): one
# curl a second for all of them, light on a loaded machine.
alive() {
	local n args=()
	for n in "$@"; do
		[ ${#args[@]} -gt 0 ] && args+=(--next)
		args+=(-s -o /dev/null -X POST -H "Authorization: Bearer ${TOK[$n]}" -d '{"slivers":[]}' "$U/v1/nodes/$n/status")
	done
	while :; do
		curl "${args[@]}"
		sleep 1
	done
}
alive n1 n2 n3 n4 n5 n6 &
BG+=($!)

slice() { # OWNER-TOKEN NAME NODES-JSON [extra manifest fields]
	status POST "$1" /v1/slices -d "{\"apiVersion\":\"vslice/v1\",\"slice\":\"$2\",\"nodes\":{\"names\":$3},\"run\":{\"command\":[\"/bin/true\"]}${4:-}}"
}
check "alice's m1 on n1 (768 MiB)" test "$(slice "$ALICE" m1 '["n1"]' ',"resources":{"memory":"768M"}')" = 201
check "alice's m3 on n1 (768 MiB)" test "$(slice "$ALICE" m3 '["n1"]' ',"resources":{"memory":"768M"}')" = 201
check "alice's mm on n1 and n3" test "$(slice "$ALICE" mm '["n1","n3"]')" = 201
check "alice's md on n1 (image debian)" test "$(slice "$ALICE" md '["n1"]' ',"image":"debian"')" = 201
check "bob's b1 on n1" test "$(slice "$BOB" b1 '["n1"]')" = 201
status POST "$ADMIN" /v1/nodes/n3/drain >/dev/null

# --- refusals: nothing recorded, one line each, slicectl exits 125 ----------
mig() { # TOKEN SLICE BODY: status
	status POST "$1" "/v1/slices/$2/migrations" -d "$3"
}
err() { body POST "$1" "/v1/slices/$2/migrations" -d "$3" | py 'd["error"]'; }
check "bob migrating alice's m1: 404" test "$(mig "$BOB" m1 '{"to":"n2"}')" = 404
check "... 'slice m1: not found'" test "$(err "$BOB" m1 '{"to":"n2"}')" = "slice m1: not found"
check "an unknown slice: 404" test "$(mig "$ALICE" nope '{"to":"n2"}')" = 404
check "a node token cannot ask for a migration (403)" test "$(mig "${TOK[n1]}" m1 '{"to":"n2"}')" = 403
check "unknown target: 404 'node n9 is not registered'" test "$(err "$ALICE" m1 '{"to":"n9"}')" = "node n9 is not registered"
check "mode live is a mode: the checks apply (409 drained)" test "$(err "$ALICE" m1 '{"to":"n3","mode":"live"}')" = "node n3 is drained"
check "mode precopy too" test "$(err "$ALICE" m1 '{"to":"n3","mode":"precopy"}')" = "node n3 is drained"
check "mode foo: 400 naming mode" bash -c "curl -s -H 'Authorization: Bearer $ALICE' -d '{\"mode\":\"foo\"}' '$U/v1/slices/m1/migrations' | grep -q 'mode: '"
check "an unknown field: 400" test "$(mig "$ALICE" m1 '{"to":"n2","speed":9}')" = 400
check "a bad node name: 400" test "$(mig "$ALICE" m1 '{"to":"../x"}')" = 400
check "not JSON: 400" test "$(mig "$ALICE" m1 '{')" = 400
check "target drained: 409" test "$(err "$ALICE" m1 '{"to":"n3"}')" = "node n3 is drained"
check "target without a url: 409" bash -c "test '$(mig "$ALICE" m1 '{"to":"n4"}')' = 409 && curl -s -H 'Authorization: Bearer $ALICE' -d '{\"to\":\"n4\"}' '$U/v1/slices/m1/migrations' | grep -q 'node n4 has no transfer url'"
check "target already hosts it (the source): 409" test "$(err "$ALICE" m1 '{"to":"n1"}')" = "node n1 already hosts a sliver of m1"
check "target lacks capacity: 409 naming free and asked" test "$(err "$ALICE" m1 '{"to":"n5"}')" = "node n5 lacks capacity: 256 MiB memory free, 768 MiB asked"
check "target lacks the image: 409" test "$(err "$ALICE" md '{"to":"n2"}')" = "node n2 lacks image debian"
check "two slivers and no from: 400" test "$(mig "$ALICE" mm '{"to":"n2"}')" = 400
check "from a node without a sliver of it: 409" test "$(err "$ALICE" m1 '{"to":"n2","from":"n2"}')" = "node n2 hosts no sliver of m1"
"$SLICECTL" --registry "$U" --token "$ALICE" migrate m1 --to n3 >"$T/out" 2>"$T/e"
check "slicectl migrate to a drained node exits 125" test $? -eq 125
check "... with one line naming the slice and the node" bash -c "test \$(wc -l <'$T/e') -eq 1 && grep -qx 'slicectl: migrate m1: node n3 is drained' '$T/e'"
ctl "$BOB" migrate m1 --to n2 >/dev/null 2>"$T/e"
check "slicectl migrate of another's slice exits 125" test $? -eq 125
ctl "$ALICE" migrate m1 --to n2 --mode warp >/dev/null 2>"$T/e"
check "slicectl migrate --mode warp exits 125" test $? -eq 125
check "no migration was recorded by the refusals" test "$(body GET "$ADMIN" /v1/migrations | py 'len(d["migrations"])')" = 0
check "slicectl migrate --help needs no registry" bash -c "'$SLICECTL' migrate --help | grep -q 'migrate NAME'"
check "slicectl migrations --help" bash -c "'$SLICECTL' migrations --help | grep -q 'migrations \[NAME\]'"
check "slicectl node --help names --migrate" bash -c "'$SLICECTL' node --help | grep -q -- '--migrate'"

# --- one migration, by hand: m1 n1 -> n2 ------------------------------------
M=$(body POST "$ALICE" /v1/slices/m1/migrations -d '{"to":"n2"}')
ID=$(echo "$M" | py 'd["id"]')
check "201: phase prepared, id mg_ + 16 hex" bash -c "echo '$M' | python3 -c 'import json,sys,re; d=json.load(sys.stdin); assert d[\"phase\"] == \"prepared\" and re.fullmatch(\"mg_[0-9a-f]{16}\", d[\"id\"]) and d[\"from\"] == \"n1\" and d[\"to\"] == \"n2\" and d[\"mode\"] == \"cold\" and not d[\"finished\"]'"
check "the user never sees a token or its hash" bash -c "! echo '$M' | grep -q 'vst_\|token'"
check "a second migrate of m1: 409 naming the running one" test "$(err "$ALICE" m1 '{"to":"n6"}')" = "a migration of m1 is already running ($ID)"
OUT=$(body GET "${TOK[n1]}" /v1/nodes/n1/assignments | py 'json.dumps([s["migrate_out"] for s in d["slivers"] if s["slice"] == "m1"][0])')
TOKEN=$(echo "$OUT" | py 'd["token"]')
check "the source's assignment: migrate_out {id, to, url, token, mode}" bash -c "echo '$OUT' | python3 -c 'import json,sys,re; d=json.load(sys.stdin); assert d[\"id\"] == \"$ID\" and d[\"to\"] == \"n2\" and d[\"url\"] == \"http://10.9.0.2:7481\" and d[\"mode\"] == \"cold\" and re.fullmatch(\"vst_[0-9a-f]{64}\", d[\"token\"])'"
SHA=$(printf %s "$TOKEN" | sha256sum | cut -c1-64)
IN=$(body GET "${TOK[n2]}" /v1/nodes/n2/assignments | py 'json.dumps([s for s in d["slivers"] if s["slice"] == "m1"][0])')
check "the target's assignment: an entry with migrate_in {id, from, token_sha256, mode}" bash -c "echo '$IN' | python3 -c 'import json,sys; d=json.load(sys.stdin); m=d[\"migrate_in\"]; assert m == {\"id\": \"$ID\", \"from\": \"n1\", \"token_sha256\": \"$SHA\", \"mode\": \"cold\"} and len(d[\"manifest_sha256\"]) == 64 and d[\"expires\"] > 0'"
check "the target's view of the migration has token_sha256, no token" test "$(body GET "${TOK[n2]}" "/v1/migrations/$ID" | py 'd.get("token_sha256") == "'"$SHA"'" and "token" not in d')" = True
check "the source's view has neither" test "$(body GET "${TOK[n1]}" "/v1/migrations/$ID" | py '"token_sha256" in d or "token" in d')" = False
check "the owner's and the admin's view have neither" test "$(body GET "$ALICE" "/v1/migrations/$ID" | py '"token_sha256" in d')$(body GET "$ADMIN" "/v1/migrations/$ID" | py '"token_sha256" in d')" = FalseFalse
check "another user cannot see it (404)" test "$(status GET "$BOB" "/v1/migrations/$ID")" = 404
check "... at once, also asked as a 20 s long-poll (a refusal is never parked)" bash -c "s=\$(date +%s); c=\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $BOB' '$U/v1/migrations/$ID?index=999999&wait=20s'); test \$c = 404 && test \$((\$(date +%s) - s)) -lt 10"
check "another node cannot see it (404)" test "$(status GET "${TOK[n6]}" "/v1/migrations/$ID")" = 404
check "a malformed id: 400" test "$(status GET "$ALICE" /v1/migrations/mg_zz)" = 400
check "no other node's assignments mention it" bash -c "! curl -s -H 'Authorization: Bearer ${TOK[n6]}' '$U/v1/nodes/n6/assignments' | grep -q '$ID'"
check "the target reads the slice while it migrates in (manifest, no slivers)" test "$(body GET "${TOK[n2]}" /v1/slices/m1 | py 'd["manifest"]["slice"] == "m1" and d["slivers"] == []')" = True
check "another node cannot (403)" test "$(status GET "${TOK[n6]}" /v1/slices/m1)" = 403
check "capacity: m3 (768 MiB) cannot go to n2 while m1 migrates there" test "$(err "$ALICE" m3 '{"to":"n2"}')" = "node n2 lacks capacity: 256 MiB memory free, 768 MiB asked"
rep() { # NODE-TOKEN-OF ID BODY: status
	status POST "${TOK[$1]}" "/v1/migrations/$2/report" -d "$3"
}
check "a user cannot report (403)" test "$(status POST "$ALICE" "/v1/migrations/$ID/report" -d '{"node":"n1","phase":"aborted"}')" = 403
check "another node cannot report (403)" test "$(rep n6 "$ID" '{"node":"n6","phase":"aborted"}')" = 403
check "the source cannot speak for the target (403)" test "$(rep n1 "$ID" '{"node":"n2","phase":"restored"}')" = 403
check "the source never reports restored (403)" test "$(rep n1 "$ID" '{"node":"n1","phase":"restored"}')" = 403
check "the source never reports started (403)" test "$(rep n1 "$ID" '{"node":"n1","phase":"started"}')" = 403
check "an unknown phase: 400" test "$(rep n1 "$ID" '{"node":"n1","phase":"done"}')" = 400
check "negative bytes: 400" test "$(rep n1 "$ID" '{"node":"n1","phase":"transferring","bytes":-1}')" = 400
check "restored before the source stopped: 409 phase prepared" test "$(body POST "${TOK[n2]}" "/v1/migrations/$ID/report" -d '{"node":"n2","phase":"restored"}' | py 'd["phase"]')" = prepared
check "started before the commit: 409" test "$(rep n2 "$ID" '{"node":"n2","phase":"started"}')" = 409
check "the source: transferring (200, stopped_ms = at_ms)" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID/report" -d '{"node":"n1","phase":"transferring","at_ms":1795000000000}' | py 'd["phase"] + str(d["stopped_ms"])')" = transferring1795000000000
check "... the same again: 200, nothing moves" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID/report" -d '{"node":"n1","phase":"transferring","at_ms":1795000009999}' | py 'd["stopped_ms"]')" = 1795000000000
check "progress: bytes" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID/report" -d '{"node":"n1","phase":"transferring","bytes":4096,"stats":{"files":3}}' | py 'str(d["bytes"]) + json.dumps(d["stats"])')" = '4096{"files": 3}'
check "the target's keepalive while receiving: 200" test "$(rep n2 "$ID" '{"node":"n2","phase":"transferring","bytes":2048}')" = 200
REV=$(curl -s "$U/v1/health" | py 'd["revision"]')
C=$(body POST "${TOK[n2]}" "/v1/migrations/$ID/report" -d '{"node":"n2","phase":"restored","bytes":8192}')
check "the target: restored -> 200 committed (one step)" test "$(echo "$C" | py 'd["phase"] + str(d["bytes"]) + str(d["restored_ms"] > 0 and d["committed_ms"] > 0)')" = committed8192True
check "... the revision moved" test "$(curl -s "$U/v1/health" | py 'd["revision"]')" -gt "$REV"
check "the sliver row is on n2 now, pending" test "$(body GET "$ALICE" /v1/slices/m1 | py '[(v["node"], v["state"], v["log_size"]) for v in d["slivers"]]')" = "[('n2', 'pending', 0)]"
check "n1's assignments no longer hold m1" test "$(body GET "${TOK[n1]}" /v1/nodes/n1/assignments | py '[s["slice"] for s in d["slivers"] if s["slice"] == "m1"]')" = "[]"
check "n2's is a plain entry now" test "$(body GET "${TOK[n2]}" /v1/nodes/n2/assignments | py '[sorted(s) for s in d["slivers"] if s["slice"] == "m1"]')" = "[['expires', 'manifest_sha256', 'slice']]"
check "the log of m1 on n1 is gone (404)" test "$(status GET "$ALICE" /v1/slices/m1/slivers/n1/log)" = 404
check "restored again: 200 (idempotent)" test "$(rep n2 "$ID" '{"node":"n2","phase":"restored"}')" = 200
check "an abort after the commit: 409 phase committed (roll forward)" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID/report" -d '{"node":"n1","phase":"aborted","reason":"PUT failed"}' | py 'd["phase"]')" = committed
S=$(body POST "${TOK[n2]}" "/v1/migrations/$ID/report" -d '{"node":"n2","phase":"started","at_ms":1795000002100}')
check "started: finished, downtime = start - stop" test "$(echo "$S" | py 'str(d["finished"]) + str(d["downtime_ms"]) + str(d["total_ms"] >= 0)')" = True2100True
check "started again: 200, the first time stays" test "$(body POST "${TOK[n2]}" "/v1/migrations/$ID/report" -d '{"node":"n2","phase":"started","at_ms":1795000009000}' | py 'd["downtime_ms"]')" = 2100
check "the source may still read the finished record" test "$(status GET "${TOK[n1]}" "/v1/migrations/$ID")" = 200

# --- aborts ------------------------------------------------------------------
ID3=$(body POST "$ALICE" /v1/slices/m3/migrations -d '{"to":"n6"}' | py 'd["id"]')
rep n1 "$ID3" '{"node":"n1","phase":"transferring"}' >/dev/null
check "the source aborts: 200 aborted, the reason names it" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID3/report" -d '{"node":"n1","phase":"aborted","reason":"link down"}' | py 'd["phase"] + "/" + d["reason"] + "/" + str(d["finished"])')" = "aborted/source n1: link down/True"
check "... again: 200 (idempotent)" test "$(rep n1 "$ID3" '{"node":"n1","phase":"aborted"}')" = 200
check "the target's restored after the abort: 409 phase aborted" test "$(body POST "${TOK[n6]}" "/v1/migrations/$ID3/report" -d '{"node":"n6","phase":"restored"}' | py 'd["phase"]')" = aborted
check "... the sliver stays on n1" test "$(body GET "$ALICE" /v1/slices/m3 | py '[v["node"] for v in d["slivers"]]')" = "['n1']"
check "n6 has no entry for m3 any more" test "$(body GET "${TOK[n6]}" /v1/nodes/n6/assignments | py '[s for s in d["slivers"] if s["slice"] == "m3"]')" = "[]"
check "... nor may it read the slice (403)" test "$(status GET "${TOK[n6]}" /v1/slices/m3)" = 403
ID4=$(body POST "$ALICE" /v1/slices/m3/migrations -d '{"to":"n6"}' | py 'd["id"]')
check "a new migration of m3 after the abort: 201" test -n "$ID4"
check "the target aborts: reason names it" test "$(body POST "${TOK[n6]}" "/v1/migrations/$ID4/report" -d '{"node":"n6","phase":"aborted","reason":"disk full"}' | py 'd["reason"]')" = "target n6: disk full"
check "... then the source's transferring: 409 aborted (it does not stop)" test "$(body POST "${TOK[n1]}" "/v1/migrations/$ID4/report" -d '{"node":"n1","phase":"transferring"}' | py 'd["phase"]')" = aborted
# no --to: ready, undrained, with a url, without a sliver of it; least used
# (n5 and n6 hold nothing that asks for memory), then by name
check "slice b1 (bob): n5 is the registry's pick (no --to)" test "$(body POST "$BOB" /v1/slices/b1/migrations -d '{}' | py 'd["to"]')" = n5
check "DELETE of b1 aborts its migration" test "$(status DELETE "$BOB" /v1/slices/b1)" = 204
check "... the record stays: aborted, 'slice deleted'" test "$(body GET "$BOB" "/v1/migrations?slice=b1" | py 'd["migrations"][0]["phase"] + "/" + d["migrations"][0]["reason"]')" = "aborted/slice deleted"

# --- lists ---------------------------------------------------------------------
check "alice lists her migrations, newest first" test "$(body GET "$ALICE" /v1/migrations | py '[m["id"] for m in d["migrations"]] == ["'"$ID4"'", "'"$ID3"'", "'"$ID"'"]')" = True
check "?slice=m1" test "$(body GET "$ALICE" "/v1/migrations?slice=m1" | py '[m["id"] for m in d["migrations"]]')" = "['$ID']"
check "bob sees only his" test "$(body GET "$BOB" /v1/migrations | py '[m["slice"] for m in d["migrations"]]')" = "['b1']"
check "the admin sees all" test "$(body GET "$ADMIN" /v1/migrations | py 'len(d["migrations"])')" = 4
check "a node token cannot list (403)" test "$(status GET "${TOK[n1]}" /v1/migrations)" = 403
ctl "$ALICE" migrations m1 >"$T/list"
check "slicectl migrations m1: a header and the row" bash -c "head -1 '$T/list' | grep -q '^ID *SLICE *FROM *TO *MODE *PHASE *BYTES *TOTAL *DOWNTIME *REASON' && grep -q '^$ID *m1 *n1 *n2 *cold *committed *8.0 KiB .* 2.10 *-$' '$T/list'"
check "slicectl migrations --json" test "$(ctl "$ALICE" migrations --json | py 'len(d["migrations"])')" = 3

# --- 20 creates at once: one 201 ------------------------------------------------
check "c1 on n1" test "$(slice "$ALICE" c1 '["n1"]')" = 201
pids=()
for i in $(seq 20); do
	curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $ALICE" -d '{"to":"n6"}' "$U/v1/slices/c1/migrations" >"$T/c.$i" &
	pids+=($!)
done
wait "${pids[@]}"
check "20 concurrent creates: exactly one 201, 19 409" test "$(cat "$T"/c.* | sort | uniq -c | tr -s ' ' | tr '\n' ,)" = " 1 201, 19 409,"
check "... one running migration of c1 recorded" test "$(body GET "$ALICE" "/v1/migrations?slice=c1" | py 'len(d["migrations"])')" = 1
C1=$(body GET "$ALICE" "/v1/migrations?slice=c1" | py 'd["migrations"][0]["id"]')
rep n1 "$C1" '{"node":"n1","phase":"aborted","reason":"test"}' >/dev/null
check "c2 on n1" test "$(slice "$ALICE" c2 '["n1"]')" = 201
# 300 more, 100 connections at a time
python3 - "$U" "$ALICE" >"$T/burst" <<'PY'
import sys, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
u, tok = sys.argv[1], sys.argv[2]
def one(_):
    r = urllib.request.Request(u + "/v1/slices/c2/migrations", data=b'{"to":"n6"}',
                               headers={"Authorization": "Bearer " + tok})
    try:
        return urllib.request.urlopen(r, timeout=120).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
with ThreadPoolExecutor(100) as ex:
    for st in ex.map(one, range(300)):
        print(st)
PY
check "300 creates, 100 at a time: one 201, the rest 409" test "$(sort "$T/burst" | uniq -c | tr -s ' ' | tr '\n' ,)" = " 1 201, 299 409,"
check "... and the registry still answers at once" test "$(status GET "" /v1/health)" = 200
C2=$(body GET "$ALICE" "/v1/migrations?slice=c2" | py 'd["migrations"][0]["id"]')
rep n1 "$C2" '{"node":"n1","phase":"aborted","reason":"test"}' >/dev/null

# --- slicectl migrate, a background "node" playing both ends -----------------
# play SLICE [abort REASON]: wait for the migrate_out of SLICE at n1, then act
# as source and target: transferring (at_ms), progress, restored, started.
play() {
	local slice=$1 mode=${2:-} reason=${3:-} id= to= i t
	for i in $(seq 100); do
		read -r id to < <(curl -s -H "Authorization: Bearer ${TOK[n1]}" "$U/v1/nodes/n1/assignments" |
			python3 -c "import json,sys; d=json.load(sys.stdin); o=[s['migrate_out'] for s in d['slivers'] if s['slice']=='$slice' and 'migrate_out' in s]; print(o[0]['id'], o[0]['to']) if o else print('')")
		[ -n "$id" ] && break
		sleep 0.1
	done
	[ -n "$id" ] || return 1
	t=$(($(date +%s%3N)))
	r() { curl -s -o /dev/null -H "Authorization: Bearer ${TOK[$1]}" -d "$2" "$U/v1/migrations/$id/report"; }
	r n1 "{\"node\":\"n1\",\"phase\":\"transferring\",\"at_ms\":$t}"
	sleep 1.2
	r n1 '{"node":"n1","phase":"transferring","bytes":1048576}'
	sleep 1.2
	if [ "$mode" = abort ]; then
		r n1 "{\"node\":\"n1\",\"phase\":\"aborted\",\"reason\":\"$reason\"}"
		return 0
	fi
	r "$to" "{\"node\":\"$to\",\"phase\":\"restored\",\"bytes\":3145728}"
	r "$to" "{\"node\":\"$to\",\"phase\":\"started\",\"at_ms\":$((t + 2500))}"
}
check "m7 on n1" test "$(slice "$ALICE" m7 '["n1"]')" = 201
play m7 &
P=$!
ctl "$ALICE" migrate m7 --to n6 --mode cold >"$T/out" 2>"$T/e"
rc=$?
wait $P
check "slicectl migrate m7: exit 0" test $rc -eq 0
check "... a plain line per phase (not a terminal)" bash -c "grep -q '^m7: transferring' '$T/out' && grep -q '^m7: committed' '$T/out'"
check "... and one summary line with bytes, time and downtime" grep -Eq '^migrated m7 n1 -> n6 \(cold\): 3.0 MiB in [0-9]+\.[0-9]{2} s, downtime 2.50 s$' "$T/out"
check "... nothing on stderr" test ! -s "$T/e"
check "m8 on n1" test "$(slice "$ALICE" m8 '["n1"]')" = 201
play m8 abort "disk full on the way" &
P=$!
ctl "$ALICE" migrate m8 --to n6 --mode cold --json >"$T/out" 2>"$T/e"
rc=$?
wait $P
check "slicectl migrate m8 aborted: exit 1" test $rc -eq 1
check "... 'slicectl: migrate m8: aborted: REASON'" grep -qx 'slicectl: migrate m8: aborted: source n1: disk full on the way' "$T/e"
check "... --json printed the final object" test "$(py 'd["phase"]' <"$T/out")" = aborted
check "m9 on n1" test "$(slice "$ALICE" m9 '["n1"]')" = 201
play m9 &
P=$!
script -qec "'$SLICECTL' --registry '$U' --token '$ALICE' migrate m9 --to n6 --mode cold" /dev/null >"$T/tty" </dev/null
wait $P
check "on a terminal: one progress line rewritten with \\r (phase; bytes and rate once known), no plain lines" python3 -c "
import re, sys
t = open(sys.argv[1], encoding='utf-8', errors='replace', newline='').read()
assert re.search(r'\rm9 n1 -> n6: transferring, ', t), repr(t)
assert re.search(r'\rm9 n1 -> n6: (transferring|committed), [0-9.]+ [KMG]iB, [0-9.]+ [KMG]?i?B/s', t), repr(t)
assert not re.search(r'^m9: ', t, re.M), repr(t)" "$T/tty"
check "... then the summary line" grep -q '^migrated m9 n1 -> n6 (cold): 3.0 MiB in' "$T/tty"

# --- node drain --migrate -------------------------------------------------------
check "d1 on n5" test "$(slice "$ALICE" d1 '["n5"]')" = 201
check "d2 on n5" test "$(slice "$ALICE" d2 '["n5"]')" = 201
# drain n5: a player per slice, as the node managers would
playn5() {
	local id to i
	for i in $(seq 200); do
		curl -s -H "Authorization: Bearer ${TOK[n5]}" "$U/v1/nodes/n5/assignments" |
			python3 -c "import json,sys; [print(s['migrate_out']['id'], s['migrate_out']['to']) for s in json.load(sys.stdin)['slivers'] if 'migrate_out' in s]" >"$T/outs"
		while read -r id to; do
			grep -qx "$id" "$T/done" 2>/dev/null && continue
			echo "$id" >>"$T/done"
			curl -s -o /dev/null -H "Authorization: Bearer ${TOK[n5]}" -d '{"node":"n5","phase":"transferring"}' "$U/v1/migrations/$id/report"
			curl -s -o /dev/null -H "Authorization: Bearer ${TOK[$to]}" -d "{\"node\":\"$to\",\"phase\":\"restored\",\"bytes\":10}" "$U/v1/migrations/$id/report"
			curl -s -o /dev/null -H "Authorization: Bearer ${TOK[$to]}" -d "{\"node\":\"$to\",\"phase\":\"started\"}" "$U/v1/migrations/$id/report"
		done <"$T/outs"
		sleep 0.2
	done
}
playn5 &
P=$!
ctl "$ADMIN" node drain n5 --migrate --parallel 2 >"$T/out" 2>"$T/e"
rc=$?
kill $P 2>/dev/null
wait $P 2>/dev/null
check "node drain n5 --migrate: exit 0" test $rc -eq 0
check "... a line per slice, then drained" bash -c "grep -q '^n5 drained' '$T/out' && grep -q '^d1: moved to n' '$T/out' && grep -q '^d2: moved to n' '$T/out' && grep -q '^n5 drained: 2 slices moved' '$T/out'"
check "... n5 hosts nothing now and is drained" test "$(body GET "$ADMIN" /v1/nodes | py '[(n["slivers"], n["state"]) for n in d["nodes"] if n["name"] == "n5"]')" = "[(0, 'drained')]"
# drain n1 once every node with a url is drained: nothing can move
status POST "$ADMIN" /v1/nodes/n6/drain >/dev/null
status POST "$ADMIN" /v1/nodes/n2/drain >/dev/null
ctl "$ADMIN" node drain n1 --migrate >"$T/out" 2>"$T/e"
rc=$?
check "node drain n1 --migrate where nothing can take them: exit 1" test $rc -eq 1
check "... the slices that could not move, with the reason" bash -c "grep -q '^m3: cannot move: no node can take slice m3' '$T/out' && grep -q '^not moved from n1:' '$T/out' && grep -q '^  m3: no node can take slice m3: node n2 is drained' '$T/out'"
check "... nothing was recorded for them" test "$(body GET "$ADMIN" "/v1/migrations?slice=mm" | py 'len(d["migrations"])')" = 0
status POST "$ADMIN" /v1/nodes/n6/undrain >/dev/null
status POST "$ADMIN" /v1/nodes/n2/undrain >/dev/null
status POST "$ADMIN" /v1/nodes/n1/undrain >/dev/null

# --- restarts: the record and the token stay; the timer -------------------------
check "r1 on n1" test "$(slice "$ALICE" r1 '["n1"]')" = 201
IDR=$(body POST "$ALICE" /v1/slices/r1/migrations -d '{"to":"n6"}' | py 'd["id"]')
TOKR=$(body GET "${TOK[n1]}" /v1/nodes/n1/assignments | py '[s["migrate_out"]["token"] for s in d["slivers"] if s["slice"] == "r1"][0]')
restart() { # [registry options]: the same database, the played nodes follow
	stop
	start "$@"
	kill "${BG[0]}"
	wait "${BG[0]}" 2>/dev/null
	alive ${ALIVE:-n1 n2 n3 n4 n5 n6} &
	BG=($!)
}
restart
check "after a restart the record is there, still prepared" test "$(body GET "$ALICE" "/v1/migrations/$IDR" | py 'd["phase"]')" = prepared
check "... the source gets the same token again" test "$(body GET "${TOK[n1]}" /v1/nodes/n1/assignments | py '[s["migrate_out"]["token"] for s in d["slivers"] if s["slice"] == "r1"][0]')" = "$TOKR"
check "... the finished ones too" test "$(body GET "$ALICE" "/v1/migrations/$ID" | py 'd["phase"] + str(d["downtime_ms"])')" = committed2100
rep n1 "$IDR" '{"node":"n1","phase":"transferring"}' >/dev/null
# again with a 3 s timeout: counted from the registry's start, then it fires
restart --migration-timeout 3
waitphase() { # ID PHASE SECS
	local i
	for i in $(seq $(($3 * 10))); do
		[ "$(body GET "$ADMIN" "/v1/migrations/$1" | py 'd["phase"]')" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
check "a migration with no report for 3 s is aborted by the timer" waitphase "$IDR" aborted 30
check "... reason 'no report for 3 s in phase transferring'" is "$(body GET "$ADMIN" "/v1/migrations/$IDR" | py 'd["reason"]')" "no report for 3 s in phase transferring"
check "... the target's restored after it: 409 aborted" test "$(body POST "${TOK[n6]}" "/v1/migrations/$IDR/report" -d '{"node":"n6","phase":"restored"}' | py 'd["phase"]')" = aborted
check "... the sliver stays on n1" test "$(body GET "$ALICE" /v1/slices/r1 | py '[v["node"] for v in d["slivers"]]')" = "['n1']"
# the target goes silent (the default timeout again, so only the loss can
# end it): "node n2 lost"
ALIVE="n1 n3 n4 n5 n6" restart
check "r2 on n1" test "$(slice "$ALICE" r2 '["n1"]')" = 201
IDL=$(body POST "$ALICE" /v1/slices/r2/migrations -d '{"to":"n2"}' | py 'd["id"]')
check "r2 -> n2 while n2 is still ready: 201" test -n "$IDL"
rep n1 "$IDL" '{"node":"n1","phase":"transferring"}' >/dev/null
check "the target lost: aborted by the timer" waitphase "$IDL" aborted 60
check "... reason 'node n2 lost'" is "$(body GET "$ADMIN" "/v1/migrations/$IDL" | py 'd["reason"]')" "node n2 lost"
check "a lost node is refused as a target (409 not ready)" bash -c "curl -s -H 'Authorization: Bearer $ALICE' -d '{\"to\":\"n2\"}' '$U/v1/slices/r2/migrations' | grep -q 'node n2 is not ready'"

stop
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
