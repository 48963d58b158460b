#!/usr/bin/env bash
# The cluster API over TLS, on 127.0.0.1 (no network namespaces): a throwaway
# CA and a server certificate for 127.0.0.1 (IP SAN) and registry.test; the
# registry serving HTTPS; slicectl and curl verifying it with --ca /
# VSLICE_CA and refusing it without (one "not trusted" line, exit 125); a
# plain http:// URL to the TLS port failing clearly; a node manager with --ca
# registering over https; and the registry's one-line refusals of bad
# --tls-cert / --tls-key. Root only for the node manager part.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
REG=$REPO/build/vslice-registry
CTL=$REPO/build/slicectl
NODEMGR=$REPO/build/vslice-nodemgr
. "$REPO/tests/lib/procs.sh"
T=$(mktemp -d /tmp/vslice-tls.XXXXXX)
CG=vslice-tlstest-$$
PID=
NM_PID=
fails=0
passes=0
cleanup() {
	kill_child -TERM "$NM_PID" "$PID"
	[ -n "$NM_PID" ] && wait "$NM_PID" 2>/dev/null
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	# the node manager's (empty) cgroup parent, if it made one
	for d in /sys/fs/cgroup/$CG /sys/fs/cgroup/*/$CG; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf --one-file-system "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ok() { echo "ok - $1"; passes=$((passes + 1)); }
ko() { echo "not ok - $1"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else ko "$what"; fi; }
# one_line FILE: exactly one line
one_line() { test "$(wc -l <"$1")" -eq 1; }

for tool in openssl curl; do
	if ! command -v $tool >/dev/null; then
		echo "$tool not found: skipping"
		echo "0 passed, 0 failed"
		exit 0
	fi
done

# --- a CA, a server certificate it signed, and a second, unrelated CA -------
mkca() { # mkca NAME
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$T/$1.key" -out "$T/$1.pem" -days 2 -subj "/CN=vslice $1" 2>/dev/null
}
mkca ca && mkca otherca
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$T/srv.key" \
	-out "$T/srv.csr" -subj "/CN=registry.test" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:registry.test" "basicConstraints=CA:FALSE" \
	"extendedKeyUsage=serverAuth" >"$T/ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-out "$T/srv.pem" -days 2 -extfile "$T/ext" 2>/dev/null
check "throwaway CA and server certificate" test -s "$T/srv.pem" -a -s "$T/otherca.pem"

ADMIN=$("$REG" init --db "$T/r.db" | tail -1)

# --- refusals at start: one line, exit 125, naming the option ---------------
refuse() { # refuse WHAT PATTERN ARGS...: exit 125, one line matching PATTERN
	local what=$1 pat=$2
	shift 2
	"$REG" --listen 127.0.0.1:0 --db "$T/r.db" "$@" >/dev/null 2>"$T/refuse"
	local rc=$?
	if [ $rc -eq 125 ] && one_line "$T/refuse" && grep -q -- "$pat" "$T/refuse"; then
		ok "$what"
	else
		ko "$what (rc $rc: $(cat "$T/refuse"))"
	fi
}
refuse "--tls-cert without --tls-key: 125, one line" "--tls-cert needs --tls-key" \
	--tls-cert "$T/srv.pem"
refuse "--tls-key without --tls-cert: 125, one line" "--tls-key needs --tls-cert" \
	--tls-key "$T/srv.key"
refuse "a missing --tls-cert file: 125, names the option" "^vslice-registry: --tls-cert: .*No such file" \
	--tls-cert "$T/nope.pem" --tls-key "$T/srv.key"
refuse "a missing --tls-key file: 125, names the option" "^vslice-registry: --tls-key: .*No such file" \
	--tls-cert "$T/srv.pem" --tls-key "$T/nope.key"
refuse "a key given as --tls-cert: not a PEM certificate" "--tls-cert: .*not a PEM certificate" \
	--tls-cert "$T/srv.key" --tls-key "$T/srv.key"
refuse "a certificate given as --tls-key: not a PEM private key" "--tls-key: .*not a PEM private key" \
	--tls-cert "$T/srv.pem" --tls-key "$T/srv.pem"
refuse "a key that does not fit the certificate" "--tls-cert/--tls-key: .*do not match" \
	--tls-cert "$T/srv.pem" --tls-key "$T/ca.key"

# --- the plain-HTTP warning ------------------------------------------------
"$REG" --listen 0.0.0.0:0 --db "$T/r.db" 2>"$T/plain" &
PID=$!
for _ in $(seq 50); do grep -q "listening on" "$T/plain" && break; sleep 0.1; done
kill -TERM $PID
wait $PID
PID=
check "plain HTTP on 0.0.0.0 warns: tokens travel in clear text" \
	grep -q "warning: .*tokens travel in clear text" "$T/plain"
"$REG" --listen 127.0.0.1:0 --db "$T/r.db" 2>"$T/plain" &
PID=$!
for _ in $(seq 50); do grep -q "listening on" "$T/plain" && break; sleep 0.1; done
kill -TERM $PID
wait $PID
PID=
check "plain HTTP on loopback does not warn" bash -c "! grep -q 'clear text' '$T/plain'"

# --- the registry over HTTPS -------------------------------------------------
"$REG" --listen 127.0.0.1:0 --db "$T/r.db" --heartbeat 1s --tls-cert "$T/srv.pem" \
	--tls-key "$T/srv.key" 2>"$T/err" &
PID=$!
for _ in $(seq 50); do grep -q "listening on" "$T/err" && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\) .*/\1/p' "$T/err")
check "registry listens with TLS (listening line names https)" \
	grep -q "listening on 127.0.0.1:$PORT (db $T/r.db), https" "$T/err"
U=https://127.0.0.1:$PORT

check "slicectl --ca ca.pem nodes" "$CTL" -q --registry "$U" --ca "$T/ca.pem" --token "$ADMIN" nodes
"$CTL" --registry "$U" --token "$ADMIN" nodes >/dev/null 2>"$T/noca"
rc=$?
check "without --ca: exit 125" test $rc -eq 125
check "without --ca: one line" one_line "$T/noca"
check "without --ca: \"not trusted\" with the hint and curl's reason" grep -q \
	"registry $U: the registry's certificate is not trusted (give its CA with --ca FILE or VSLICE_CA): SSL certificate problem" \
	"$T/noca"
"$CTL" --registry "$U" --ca "$T/otherca.pem" --token "$ADMIN" nodes >/dev/null 2>"$T/other"
rc=$?
check "another CA: exit 125, not trusted" bash -c "[ $rc -eq 125 ] && grep -q 'not trusted' '$T/other'"
check "VSLICE_CA works" env VSLICE_CA="$T/ca.pem" "$CTL" -q --registry "$U" --token "$ADMIN" nodes
check "--ca beats VSLICE_CA" env VSLICE_CA="$T/otherca.pem" "$CTL" -q --registry "$U" \
	--ca "$T/ca.pem" --token "$ADMIN" nodes
"$CTL" --registry "$U" --ca "$T/nope.pem" --token "$ADMIN" nodes >/dev/null 2>"$T/noca2"
rc=$?
check "a missing --ca file: 125, one line naming --ca" \
	bash -c "[ $rc -eq 125 ] && [ \$(wc -l <'$T/noca2') -eq 1 ] && grep -q -- '--ca: .*No such file' '$T/noca2'"
"$CTL" --registry "$U" --ca "$T/srv.key" --token "$ADMIN" nodes >/dev/null 2>"$T/noca3"
check "a --ca file without a certificate: 125" test $? -eq 125
"$CTL" --registry "https://localhost:$PORT" --ca "$T/ca.pem" --token "$ADMIN" nodes \
	>/dev/null 2>"$T/host"
rc=$?
check "a host name the certificate does not name: 125" test $rc -eq 125
check "... in one line" one_line "$T/host"
check "... saying the name does not match" \
	grep -q "certificate does not match the name localhost (its subjectAltName" "$T/host" ||
	cat "$T/host"
check "... and not to give a CA" bash -c "! grep -q 'give its CA' '$T/host'"
"$CTL" --registry "http://127.0.0.1:$PORT" --token "$ADMIN" nodes >/dev/null 2>"$T/http"
rc=$?
check "http:// to the TLS port: 125, one line suggesting https://" \
	bash -c "[ $rc -eq 125 ] && [ \$(wc -l <'$T/http') -eq 1 ] && grep -q 'https://' '$T/http'"
check "curl --cacert ca.pem /v1/health" \
	bash -c "curl -sfS --cacert '$T/ca.pem' '$U/v1/health' | grep -q '\"ok\":true'"
check "curl via the DNS name (SAN registry.test)" \
	bash -c "curl -sfS --cacert '$T/ca.pem' --resolve registry.test:$PORT:127.0.0.1 \
		https://registry.test:$PORT/v1/health | grep -q '\"ok\":true'"
check "curl without the CA fails" bash -c "! curl -sf '$U/v1/health' >/dev/null 2>&1"
check "TLS 1.1 is refused" bash -c "! curl -sf --cacert '$T/ca.pem' --tlsv1.1 --tls-max 1.1 \
	--ciphers 'DEFAULT@SECLEVEL=0' '$U/v1/health' >/dev/null 2>&1"

# --- a user's token over https, a submit -------------------------------------
ALICE=$("$CTL" --registry "$U" --ca "$T/ca.pem" --token "$ADMIN" user create alice 2>/dev/null |
	grep -o 'vsu_[0-9a-f]*' | head -1)
check "user create over https" test -n "$ALICE"

# A long-poll (a suspended TLS connection) answered by a submit, then a log
# uploaded in one 1 MiB body and read back: streamed both ways over TLS.
call() { # call METHOD TOKEN PATH [curl args...]
	local m=$1 tok=$2 p=$3
	shift 3
	curl -s --cacert "$T/ca.pem" -X "$m" -H "Authorization: Bearer $tok" "$@" "$U$p"
}
N1=$("$CTL" --registry "$U" --ca "$T/ca.pem" --token "$ADMIN" token create --role node \
	2>/dev/null | grep -o 'vsn_[0-9a-f]*' | head -1)
call PUT "$N1" /v1/nodes/n1 -d '{"cpus":1,"memory":1073741824,"labels":{"tls":"yes"}}' >/dev/null
IDX=$(call GET "$N1" /v1/nodes/n1/assignments | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"])')
call GET "$N1" "/v1/nodes/n1/assignments?index=$IDX&wait=20s" >"$T/poll" &
POLL=$!
sleep 0.3
call POST "$ALICE" /v1/slices -o /dev/null -w '%{http_code}' -d \
	'{"apiVersion":"vslice/v1","slice":"t1","nodes":{"count":1,"labels":{"tls":"yes"}},"run":{"command":["/bin/true"]}}' \
	>"$T/submit"
check "submit over https" grep -q 201 "$T/submit"
wait $POLL
check "a long-poll over TLS answered by the submit" grep -q '"slice":"t1"' "$T/poll"
head -c $((1 << 20)) /dev/urandom | base64 -w 100 >"$T/log"
call PUT "$N1" '/v1/slices/t1/slivers/n1/log?offset=0' -H 'Expect:' --data-binary @"$T/log" \
	-o /dev/null -w '%{http_code}' >"$T/put"
check "1 MiB log upload over https" grep -q 204 "$T/put"
"$CTL" --registry "$U" --ca "$T/ca.pem" --token "$ALICE" logs t1 --node n1 >"$T/log.back" 2>&1
check "slicectl logs reads it back intact over https" cmp -s "$T/log" "$T/log.back"

# --- a node manager with --ca --------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	NODE_TOKEN=$("$CTL" --registry "$U" --ca "$T/ca.pem" --token "$ADMIN" token create \
		--role node 2>/dev/null | grep -o 'vsn_[0-9a-f]*' | head -1)
	mkdir -p "$T/root"
	VSLICE_ROOT=$T/root VSLICE_CGROUP_PARENT=$CG "$NODEMGR" --registry "$U" \
		--ca "$T/ca.pem" --name tlsnode --token "$NODE_TOKEN" --heartbeat 1s \
		>"$T/nm.log" 2>&1 &
	NM_PID=$!
	ready() {
		"$CTL" --registry "$U" --ca "$T/ca.pem" --token "$ADMIN" nodes 2>/dev/null |
			grep -q '^tlsnode  *ready'
	}
	for _ in $(seq 100); do ready && break; sleep 0.1; done
	check "node manager --ca registers over https and shows ready" ready
	kill -TERM $NM_PID
	wait $NM_PID
	check "node manager exits 0 on SIGTERM" test $? -eq 0
	NM_PID=
	VSLICE_ROOT=$T/root VSLICE_CGROUP_PARENT=$CG timeout 10 "$NODEMGR" --registry "$U" \
		--name tlsnode --token "$NODE_TOKEN" --heartbeat 1s >"$T/nm2.log" 2>&1 &
	NM_PID=$!
	for _ in $(seq 50); do grep -q "not trusted" "$T/nm2.log" && break; sleep 0.1; done
	check "node manager without --ca logs \"not trusted\"" grep -q "not trusted" "$T/nm2.log"
	kill -TERM $NM_PID 2>/dev/null
	wait $NM_PID 2>/dev/null
	NM_PID=
	VSLICE_ROOT=$T/root VSLICE_CGROUP_PARENT=$CG "$NODEMGR" --registry "$U" \
		--ca "$T/nope.pem" --name tlsnode --token "$NODE_TOKEN" >/dev/null 2>"$T/nm3.log"
	rc=$?
	check "node manager --ca with a missing file: fails at start, naming --ca" \
		bash -c "[ $rc -ne 0 ] && grep -q -- '--ca: ' '$T/nm3.log'"
else
	echo "skip - node manager over https (needs root)"
fi

kill -TERM $PID
wait $PID
check "registry (TLS) exits 0 on SIGTERM" test $? -eq 0
PID=

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
