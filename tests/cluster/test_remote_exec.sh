#!/usr/bin/env bash
# Remote exec and shell (issue 14), as root: a registry and three node
# managers on network-namespace hosts (tests/cluster/lib.sh), their --listen
# APIs on HTTPS with a cluster CA (as in test_migrate.sh). slicectl runs on
# the registry's host; the slice's sliver is on node2.
#   - exec: stdout and stderr apart, stdin through cat, exit code 7,
#     exec-not-found 127 with the local message, a 5 MiB stdin round trip
#     byte for byte, Ctrl-C (SIGINT) on a non-pty exec ends the command (130);
#   - shell through a pty (script -qec): "echo hi; exit 3" prints hi and
#     exits 3; a pty driven from python: the initial window size and a resize
#     (SIGWINCH) reach `stty size`, Ctrl-C (\003) kills a remote sleep and the
#     shell goes on; without a terminal, shell runs without a pty, no hang;
#   - a client that never reads: the node's memory stays put;
#   - refusals at the node: no ticket (401), a wrong ticket (403), a ticket
#     for another verb or another slice (403), a used ticket (403), a request
#     without Upgrade (426, ticket not spent).
. "$(dirname "$0")/lib.sh"

has() { echo "$1" | grep -q -- "$2"; }

vc_setup_net
check "registry starts" vc_start_registry --heartbeat 1s
TOKEN=$ADMIN
ALICE=$(vsc user create alice)
BOB=$(vsc user create bob)

# A cluster CA and a certificate per node for its address.
vc_pki 3
vc_add_tls_nodes 3
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes enroll and are ready" wait_for 60 nodes_ready

TOKEN=$ALICE
vsc create --node node2 --image busybox rx -- sleep 100000 >/dev/null
vsc create --node node2 --image busybox other -- sleep 100000 >/dev/null
running() { [ "$(vc_running_on rx)" = node2 ] && [ "$(vc_running_on other)" = node2 ]; }
check "rx and other run on node2" wait_for 60 running
# slicectl as alice, with the cluster CA for the node's certificate.
X() { vsc --ca "$P/ca.pem" "$@"; }

# --- exec ---------------------------------------------------------------
out=$(X exec rx -- sh -c 'echo to-out; echo to-err >&2; exit 7' 2>"$VC_TMP/err")
rc=$?
expect_eq "exec on node2: exit code 7" 7 "$rc"
expect_eq "... stdout alone on stdout" to-out "$out"
expect_eq "... stderr alone on stderr" to-err "$(cat "$VC_TMP/err")"
expect_eq "stdin through cat" "hello there" "$(echo "hello there" | X exec rx -- cat)"
expect_eq "--node node2 names the sliver" "rx" "$(X exec --node node2 rx -- hostname)"
out=$(X exec rx -- /no/such/program 2>&1)
rc=$?
expect_eq "exec of a program that is not there: 127" 127 "$rc"
check "... saying so as locally ($out)" has "$out" 'exec rx: exec "/no/such/program": No such file'
out=$(X exec --workdir /tmp rx -- pwd)
expect_eq "--workdir" /tmp "$out"
out=$(X exec --env GREETING=hi rx -- sh -c 'echo $GREETING')
expect_eq "--env" hi "$out"
out=$(X exec --node node1 rx -- true 2>&1)
rc=$?
expect_eq "--node of a node without the sliver: 125" 125 "$rc"
check "... one line" test "$(echo "$out" | wc -l)" = 1

head -c $((5 << 20)) /dev/urandom >"$VC_TMP/big"
t0=$(date +%s%N)
X exec rx -- cat <"$VC_TMP/big" >"$VC_TMP/big.back"
expect_eq "5 MiB through cat: exit 0" 0 "$?"
echo "# 5 MiB round trip over HTTPS: $((($(date +%s%N) - t0) / 1000000)) ms"
check "... back byte for byte" cmp -s "$VC_TMP/big" "$VC_TMP/big.back"
expect_eq "... and counted inside" $((5 << 20)) "$(X exec rx -- wc -c <"$VC_TMP/big" | tr -d ' ')"

# Ctrl-C on a plain exec: slicectl forwards SIGINT, the command dies of it.
# (nsenter execs slicectl: $! is slicectl itself)
nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" --registry "$REGISTRY_URL" --token "$TOKEN" \
	--ca "$P/ca.pem" exec rx -- sh -c 'echo started; exec sleep 300' >"$VC_TMP/int.out" 2>&1 &
pid=$!
started() { grep -q started "$VC_TMP/int.out"; }
check "a remote sleep starts" wait_for 30 started
kill -INT "$pid"
t0=$(date +%s)
wait "$pid"
rc=$?
expect_eq "SIGINT to slicectl exec: the remote command dies of it (130)" 130 "$rc"
check "... at once ($(($(date +%s) - t0)) s)" test $(($(date +%s) - t0)) -lt 20
check "... and no sleep is left on node2" \
	test -z "$(vs_node node2 exec rx -- ps 2>/dev/null | grep 'sleep 300' | grep -v grep)"

# A reader that goes away: the command is hung up, slicectl says 141 (SIGPIPE).
out=$(X exec rx -- yes | head -1)
expect_eq "exec rx -- yes | head -1: y" y "$out"
X exec rx -- yes 2>/dev/null | head -1 >/dev/null
expect_eq "... slicectl exits 141, as the command would have died locally" 141 "${PIPESTATUS[0]}"
# slicectl killed: the node hangs the command up (SIGHUP, then SIGKILL).
nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" --registry "$REGISTRY_URL" --token "$TOKEN" \
	--ca "$P/ca.pem" exec rx -- sh -c 'trap "echo hup >/tmp/hup-mark" HUP; echo ready;
		while :; do sleep 1; done' >"$VC_TMP/hup.out" 2>&1 &
pid=$!
ready() { grep -q ready "$VC_TMP/hup.out"; }
check "a remote loop that traps SIGHUP starts" wait_for 30 ready
kill -KILL "$pid"
marked() { [ "$(vs_node node2 exec rx -- cat /tmp/hup-mark 2>/dev/null)" = hup ]; }
check "slicectl killed: the command gets SIGHUP" wait_for 20 marked
loops() { vs_node node2 exec rx -- ps 2>/dev/null | grep -v grep | grep -q 'while :'; }
gone() { ! loops; }
check "... and, as it ignores it, SIGKILL: nothing left" wait_for 20 gone

# --- shell through a pty ----------------------------------------------------
out=$( (printf 'echo h""i; exit 3\n'; sleep 20) | timeout 60 script -qec \
	"$(printf '%q ' nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" --registry "$REGISTRY_URL" \
		--token "$TOKEN" --ca "$P/ca.pem" shell rx)" /dev/null)
rc=$?
expect_eq "shell through script: exit 3" 3 "$rc"
check "... printed hi" has "$(echo "$out" | tr -d '\r')" '^hi$'
out=$(echo 'echo no-pty-$((40+2))' | timeout 30 nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" \
	--registry "$REGISTRY_URL" --token "$TOKEN" --ca "$P/ca.pem" shell rx 2>&1)
rc=$?
expect_eq "shell without a terminal: runs, exit 0" 0 "$rc"
check "... /bin/sh read stdin ($out)" has "$out" 'no-pty-42'
check "... and said it runs without a pty" has "$out" 'stdin is not a terminal: running without a pty'
timeout 30 nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" --registry "$REGISTRY_URL" \
	--token "$TOKEN" --ca "$P/ca.pem" shell rx </dev/null >/dev/null 2>&1
expect_eq "shell </dev/null: ends (no hang), exit 0" 0 "$?"

# The window size and Ctrl-C, on a pty python drives.
cat >"$VC_TMP/drive_pty.py" <<'PY'
import fcntl, os, pty, select, struct, sys, termios, time
def setsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
setsize(fd, 24, 80)
buf = b""
def wait_for(needle, secs):
    global buf
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                break
            if not d:
                break
            buf += d
        if needle in buf:
            return True
    return False
def say(s):
    os.write(fd, s.encode())
res = {}
say("stty size; echo mark-$((1+1))\n")
res["initial"] = wait_for(b"24 80\r\nmark-2", 30)
setsize(fd, 40, 100)   # SIGWINCH to slicectl, the pty's foreground
time.sleep(1)
say("stty size; echo mark-$((2+2))\n")
res["resize"] = wait_for(b"40 100\r\nmark-4", 30)
say("echo sleeping-$((3+3)); sleep 300; echo after-$((4+4))\n")
res["sleeping"] = wait_for(b"sleeping-6", 30)
time.sleep(1)
t0 = time.time()
say("\x03")
say("echo back-$((5+5))\n")
res["ctrl-c"] = wait_for(b"back-10", 30) and b"after-8" not in buf
res["ctrl-c-secs"] = round(time.time() - t0, 1)
say("exit 5\n")
_, st = os.waitpid(pid, 0)
res["exit"] = os.waitstatus_to_exitcode(st)
print(" ".join("%s=%s" % kv for kv in res.items()))
sys.stderr.write(buf.decode(errors="replace")[-2000:] + "\n")
PY
out=$(timeout 120 python3 "$VC_TMP/drive_pty.py" nsenter --net=/run/netns/$VC_NS_REG "$SLICECTL" \
	--registry "$REGISTRY_URL" --token "$TOKEN" --ca "$P/ca.pem" shell rx 2>"$VC_TMP/pty.log")
echo "# $out"
check "shell on a pty: the initial size (24 80) reaches stty size" has "$out" 'initial=True'
check "... a resize (40 100) too (SIGWINCH)" has "$out" 'resize=True'
check "... Ctrl-C kills the remote sleep, the shell goes on" has "$out" 'ctrl-c=True'
check "... exit 5 is slicectl's code" has "$out" 'exit=5'
[ "$VS_FAIL" -eq 0 ] || tail -20 "$VC_TMP/pty.log"
check "... no sleep 300 left in rx" \
	test -z "$(vs_node node2 exec rx -- ps 2>/dev/null | grep 'sleep 300' | grep -v grep)"

# --- a client that never reads ---------------------------------------------
nm2=$(eval "echo \$VC_NODE_PID_node2")
rss() { awk '/VmRSS/ {print $2}' "/proc/$nm2/status"; }
before=$(rss)
X exec rx -- sh -c 'yes x' | sleep 15 &
slow=$!
sleep 10
after=$(rss)
check "yes into a client that never reads: node2's RSS grows < 8 MiB ($before -> $after kB)" \
	test $((after - before)) -lt 8192
wait "$slow" 2>/dev/null

# --- refusals at the node ----------------------------------------------------
U=https://$VC_NET.12:7481/v1/slivers/rx/exec
try() { # AUTH...: the status of an upgrade request to $U (or another URL in $URL)
	in_reg curl -s -o /dev/null -w '%{http_code}' -m 3 --cacert "$P/ca.pem" \
		-H 'Connection: Upgrade' -H 'Upgrade: vslice-exec/1' "$@" "${URL:-$U}"
}
ticket() { vc_api POST "/v1/slices/$1/tickets" -d "{\"verb\": \"$2\", \"node\": \"node2\"}" | jq -r .ticket; }
expect_eq "no ticket: 401" 401 "$(try)"
expect_eq "a wrong ticket: 403" 403 "$(try -H "Authorization: Bearer vtk_$(printf '%064d' 0)")"
t=$(ticket rx stats)
check "a stats ticket" has "$t" '^vtk_'
expect_eq "a ticket for stats on exec: 403" 403 "$(try -H "Authorization: Bearer $t")"
t=$(ticket other exec)
expect_eq "an exec ticket for another slice: 403" 403 "$(try -H "Authorization: Bearer $t")"
t=$(ticket rx shell)
expect_eq "a shell ticket for exec (no shell=1): 403" 403 "$(try -H "Authorization: Bearer $t")"
t=$(ticket rx exec)
expect_eq "no Upgrade header: 426, before the ticket is spent" 426 \
	"$(in_reg curl -s -o /dev/null -w '%{http_code}' -m 10 --cacert "$P/ca.pem" \
		-H "Authorization: Bearer $t" "$U")"
expect_eq "... the same ticket then switches (101)" 101 "$(try -H "Authorization: Bearer $t")"
expect_eq "... and not twice (one ticket, one command): 403" 403 \
	"$(try -H "Authorization: Bearer $t")"
TOKEN=$BOB
out=$(X exec rx -- true 2>&1)
rc=$?
expect_eq "bob on alice's slice: 125" 125 "$rc"
check "... the registry does not know it for him ($out)" has "$out" 'rx'
TOKEN=$ALICE
expect_eq "exec still works afterwards" ok "$(X exec rx -- echo ok)"
finish
