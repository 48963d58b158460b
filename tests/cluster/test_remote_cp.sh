#!/usr/bin/env bash
# slicectl cp in cluster mode (issue 14, acceptance): a registry and three
# node managers on their own network-namespace hosts, the nodes' --listen
# APIs on HTTPS with certificates from a test cluster CA. A user copies a
# 10 MiB file into a sliver on another node and back out byte for byte,
# and a tree both ways, through a "cp" ticket and the node's
# /v1/slivers/NAME/files route. Refused, with nothing left in the sliver:
# a path that leaves the slice's root, a wrong ticket, no ticket, a ticket
# for another verb, a used ticket, another user's slice, a tar stream
# whose entries climb out.
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }
T=$VC_TMP/files
mkdir -p "$T"

# A cluster CA and a certificate per node for its address.
vc_pki 3

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
BOB=$(vsc user create bob)
vc_add_tls_nodes 3
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes enroll and are ready" wait_for 60 nodes_ready

TOKEN=$ALICE
vsc create --node node2 --image busybox f1 -- sleep 100000 >/dev/null
on2() { [ "$(vc_running_on f1)" = node2 ]; }
check "f1 runs on node2" wait_for 60 on2
cpa() { TOKEN=$ALICE vsc --ca "$P/ca.pem" cp "$@"; }
# refused DESC WHY CMD...: exit 125 and exactly one line on stderr, saying WHY.
refused() {
	local desc=$1 why=$2 out rc
	shift 2
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	check "$desc: refused (exit $rc: $out)" test "$rc" = 125 -a "$(printf '%s\n' "$out" | wc -l)" = 1 \
		-a -n "$(printf '%s' "$out" | grep -F -- "$why")"
}
no_staging() { ! vs_node node2 exec f1 -- ls -a /tmp | grep -q '^\.vslice-cp-'; }

# --- 10 MiB in and out, across the lan, over HTTPS ---------------------------
head -c $((10 << 20)) /dev/urandom >"$T/big"
check "cp a 10 MiB file into f1 (on node2)" cpa "$T/big" f1:/tmp/big
expect_eq "... the sliver has the same bytes" "$(sha256sum <"$T/big")" \
	"$(vs_node node2 exec f1 -- cat /tmp/big | sha256sum)"
check "cp it back out" cpa f1:/tmp/big "$T/big.out"
check "... byte for byte" cmp "$T/big" "$T/big.out"
check "NAME@NODE:/path says the same" cpa "f1@node2:/tmp/big" "$T/big.out2"
check "... byte for byte" cmp "$T/big" "$T/big.out2"
mkdir -p "$T/tree/a/b"
echo one >"$T/tree/a/one"
head -c 5000 /dev/urandom >"$T/tree/a/b/two"
ln -s b/two "$T/tree/a/link"
chmod 710 "$T/tree/a/b"
check "a tree in" cpa "$T/tree" f1:/tmp/
check "... and out" cpa f1:/tmp/tree "$T/tree.out"
expect_eq "... the same names, modes and sizes" \
	"$(cd "$T/tree" && find . | sort | xargs stat -c '%n %F %a %s')" \
	"$(cd "$T/tree.out" && find . | sort | xargs stat -c '%n %F %a %s')"

# A user who is not root on their own machine: the copy is theirs.
mkdir -m 0777 "$T/user"
as_user() { in_reg setpriv --reuid 65534 --regid 65534 --clear-groups env TMPDIR="$T/user" \
	"$SLICECTL" --registry "$REGISTRY_URL" --token "$ALICE" --ca "$P/ca.pem" "$@"; }
check "cp out as a user who is not root" as_user cp f1:/tmp/tree "$T/user/"
expect_eq "... the files are that user's" "65534" "$(stat -c '%u' "$T/user/tree/a/b/two")"
check "... byte for byte" cmp "$T/tree/a/b/two" "$T/user/tree/a/b/two"
check "cp in as that user" as_user cp "$T/user/tree/a/one" f1:/tmp/one-by-user

# --- refusals --------------------------------------------------------------
vs_node node2 exec f1 -- sh -c 'ln -s /etc/shadow /tmp/shadow; ln -s /etc /tmp/mid'
refused "a path escape (..)" "leaves the slice's root" cpa "$T/big" "f1:/../../../../etc/vslice-cp-escape"
refused "an absolute symlink to /etc/shadow" "leaves the slice's root" cpa f1:/tmp/shadow "$T/shadow"
refused "a symlink in a middle component" "leaves the slice's root" cpa "$T/big" f1:/tmp/mid/vslice-cp-escape
check "... nothing on node2's host" test ! -e /etc/vslice-cp-escape -a ! -e "$T/shadow"
check "... nothing half-written in the sliver" no_staging
cpb() { TOKEN=$BOB vsc --ca "$P/ca.pem" cp "$@"; }
refused "another user's slice" "no such slice" cpb "$T/big" f1:/tmp/bob
check "... nothing came of it" test -z "$(vs_node node2 exec f1 -- ls /tmp/bob 2>/dev/null)"
refused "a missing file" "No such file" cpa f1:/tmp/nosuch "$T/nosuch"

# The route itself, as any host on the lan sees it.
URL=https://$VC_NET.12:7481/v1/slivers/f1/files
code() { in_reg curl -s --cacert "$P/ca.pem" -o /dev/null -w '%{http_code}' "$@"; }
ticket() { TOKEN=$ALICE vc_api POST /v1/slices/f1/tickets -d "{\"verb\": \"$1\"}" | jq -r .ticket; }
expect_eq "GET without a ticket: 401" 401 "$(code "$URL?path=/tmp/big")"
expect_eq "GET with a wrong ticket: 403" 403 \
	"$(code -H "Authorization: Bearer vtk_$(printf '%064d' 0)" "$URL?path=/tmp/big")"
expect_eq "PUT with a wrong ticket: 403" 403 \
	"$(echo x | code -X PUT --data-binary @- -H "Authorization: Bearer vtk_$(printf '%064d' 0)" "$URL?path=/tmp/w")"
tk=$(ticket stats)
expect_eq "a ticket for another verb (stats): 403" 403 \
	"$(code -H "Authorization: Bearer $tk" "$URL?path=/tmp/big")"
tk=$(ticket cp)
expect_eq "a cp ticket: 200" 200 "$(code -H "Authorization: Bearer $tk" "$URL?path=/tmp/big")"
expect_eq "... used twice: 403" 403 "$(code -H "Authorization: Bearer $tk" "$URL?path=/tmp/big")"
# A tar whose second entry climbs out of the first.
python3 - "$T/evil.tar" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    d = tarfile.TarInfo("x"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    f = tarfile.TarInfo("x/../../../../etc/vslice-cp-evil"); f.size = 4
    t.addfile(f, io.BytesIO(b"evil"))
EOF
tk=$(ticket cp)
expect_eq "a tar entry that climbs out: 400" 400 \
	"$(code -X PUT --data-binary @"$T/evil.tar" -H "Authorization: Bearer $tk" "$URL?path=/tmp/")"
check "... nothing of it anywhere" test ! -e /etc/vslice-cp-evil -a -z "$(vs_node node2 exec f1 -- ls /tmp/x 2>/dev/null)"
check "... nothing staged" no_staging
tk=$(ticket cp)
expect_eq "an escaping path in the query: 403" 403 \
	"$(code -X PUT --data-binary @"$T/evil.tar" -H "Authorization: Bearer $tk" "$URL?path=/../../../../tmp")"
check "the copy still works afterwards" cpa f1:/tmp/big "$T/big.out3"
check "... byte for byte" cmp "$T/big" "$T/big.out3"
finish
