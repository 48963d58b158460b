#!/usr/bin/env bash
# Resource limits enforced by the kernel, and bad input that changes nothing.
. "$(dirname "$0")/lib.sh"
need_busybox_image
cg=/sys/fs/cgroup

# --memory: an OOM kills inside the slice only; the host and other slices carry on.
vs run -d bystander -- sleep 600 >/dev/null
vs run --rm --memory 32M m1 -- dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null
expect_eq "--memory 32M: a 200M allocation is OOM-killed (137)" 137 "$?"
expect_eq "the other slice still runs" running "$(vs list | awk '$1=="bystander"{print $2}')"
check "the host can still allocate" dd if=/dev/zero of=/dev/null bs=64M count=1 status=none
vs run -d --memory 48M m2 -- sleep 600 >/dev/null
expect_eq "--memory is the cgroup's limit" $((48 << 20)) "$(cat $cg/memory/$VSLICE_CGROUP_PARENT/m2/memory.limit_in_bytes)"
vs destroy --force m2

# --pids: a fork bomb stops at the limit.
vs run -d --pids 16 p1 -- sh -c '(for i in $(seq 40); do sleep 30 & done) 2>/dev/null; sleep 30' >/dev/null
sleep 1
n=$(cat $cg/pids/$VSLICE_CGROUP_PARENT/p1/pids.current)
check "--pids 16: the fork bomb is held at the limit (pids.current $n)" test "$n" -ge 12 -a "$n" -le 16
vs destroy --force p1
check "the host can still fork" /bin/true

# --cpus: quota enforced (0.5 cpu for 2 s of spinning is ~1 s of cpu time).
vs run -d --cpus 0.5 c1 -- sh -c 'while :; do :; done' >/dev/null
expect_eq "--cpus 0.5 is a 50ms/100ms quota" "50000 100000" "$(cat $cg/cpu/$VSLICE_CGROUP_PARENT/c1/cpu.cfs_quota_us) $(cat $cg/cpu/$VSLICE_CGROUP_PARENT/c1/cpu.cfs_period_us)"
t0=$(date +%s%N)
u0=$(cat $cg/cpuacct/$VSLICE_CGROUP_PARENT/c1/cpuacct.usage)
sleep 2
u1=$(cat $cg/cpuacct/$VSLICE_CGROUP_PARENT/c1/cpuacct.usage)
wall=$((($(date +%s%N) - t0) / 1000000))
ms=$(((u1 - u0) / 1000000))
# The quota is the upper bound (half the wall time, plus one period of
# slack); on a loaded machine the spinner may get less than its quota, so the
# lower bound only says it ran.
check "--cpus 0.5: ${wall} ms of spinning used at most half of it in cpu (${ms} ms)" test "$ms" -ge 100 -a "$ms" -le $((wall / 2 + 100))
vs destroy --force c1

# --timeout and --restart, enforced by the slice's PID 1.
vs run --rm --timeout 1s t1 -- sleep 30
expect_eq "--timeout kills the command: exit 124" 124 "$?"
vs run -d --timeout 1s t2 -- sh -c 'while :; do echo busy; done' >/dev/null
check "--timeout also ends a detached command that writes all the time" bash -c "for i in \$(seq 100); do vs status t2 2>/dev/null | grep -q 'exited *124 *timeout' && exit 0; sleep 0.1; done; vs status t2; exit 1"
vs destroy --force t2
vs run -d --restart 2 r1 -- sh -c 'echo run >> /root/runs; exit 3' >/dev/null
runs_and_code() { vs show --json r1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["restarts"]+1, d["exit_code"])'; }
# (until it has exited: three runs take longer on a loaded machine)
for _ in $(seq 100); do [ "$(runs_and_code | cut -d' ' -f1)" = exited ] && break; sleep 0.1; done
expect_eq "--restart 2: ran 3 times, then exited with its code" "exited 3 3" "$(runs_and_code)"
vs destroy --force r1

# Bad input: one line naming the field, exit 125, nothing created.
bad() {
	local desc=$1 field=$2
	shift 2
	local before err lines
	before=$(ls "$VSLICE_ROOT/slices" 2>/dev/null | sort | tr '\n' ' ')
	err=$(vs "$@" 2>&1 >/dev/null)
	local rc=$?
	lines=$(printf '%s\n' "$err" | grep -c .)
	if [ $rc -eq 125 ] && [ "$lines" -eq 1 ] && grep -q -- "$field" <<<"$err" &&
		[ "$(ls "$VSLICE_ROOT/slices" 2>/dev/null | sort | tr '\n' ' ')" = "$before" ] &&
		! ls -d $cg/*/$VSLICE_CGROUP_PARENT/x1 >/dev/null 2>&1; then
		VS_PASS=$((VS_PASS + 1)); echo "ok - $desc: $err"
	else
		VS_FAIL=$((VS_FAIL + 1)); echo "not ok - $desc (rc $rc, $lines lines): $err"
	fi
}
bad "bad name" 'invalid slice name' create 'Bad Name!'
bad "name too long" 'invalid slice name' create "$(printf 'a%.0s' $(seq 70))"
bad "bad --memory" '--memory' create --memory lots x1
bad "bad --cpus" '--cpus' create --cpus many x1
bad "bad --pids" '--pids' create --pids -3 x1
bad "bad --lifetime" '--lifetime' create --lifetime forever x1
bad "missing image" '--image' create --image nosuch x1
bad "bad policy file" '--policy' create --policy /nonexistent.json x1
echo '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_BOGUS"}]}' > "$VSLICE_ROOT/bad-policy.json"
bad "invalid policy content" 'action' create --policy "$VSLICE_ROOT/bad-policy.json" x1
bad "bad --net" '--net' create --net everything x1
bad "bad --env" '--env' create --env NOEQUALS x1
bad "relative --workdir" '--workdir' create --workdir tmp x1
bad "unknown option" 'unknown option' create --frobnicate x1
bad "run without a command" 'missing command' run x1
bad "name in use" 'name in use' create bystander
expect_eq "the slice whose name was reused is untouched" running "$(vs list | awk '$1=="bystander"{print $2}')"
bad "exec into a missing slice" 'no such slice' exec nosuch -- true
bad "stop a missing slice" 'no such slice' stop nosuch
bad "unknown verb" 'unknown verb' frobnicate
bad "bad --log-size" '--log-size' create --log-size 1K x1
bad "bad --disk" '--disk' create --disk 1M x1

# A create that crashed half way: destroy --force still cleans everything.
mkdir -p "$VSLICE_ROOT/slices/half/upper" $cg/memory/$VSLICE_CGROUP_PARENT/half $cg/pids/$VSLICE_CGROUP_PARENT/half
vs destroy half 2>/dev/null
expect_eq "a half-created slice: plain destroy explains and refuses" 125 "$?"
vs destroy --force half
check "destroy --force removes a half-created slice's dir" test ! -e "$VSLICE_ROOT/slices/half"
check "... and its cgroups" test ! -e $cg/memory/$VSLICE_CGROUP_PARENT/half -a ! -e $cg/pids/$VSLICE_CGROUP_PARENT/half

# A tampered state.json naming a host process: never signalled.
sleep 600 &
sentinel=$!
vs run -d tam -- sleep 600 >/dev/null
st="$VSLICE_ROOT/slices/tam/state.json"
python3 - "$st" "$sentinel" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["pid"] = int(sys.argv[2]); json.dump(d, open(sys.argv[1], "w"))
PY
vs kill tam KILL 2>/dev/null
vs stop --timeout 1 tam 2>/dev/null
check "a forged pid in state.json is never signalled" kill -0 $sentinel
echo garbage > "$st"
vs stop tam 2>/dev/null
expect_eq "garbage state.json is refused (125)" 125 "$?"
check "... and the host process is still alive" kill -0 $sentinel
vs destroy --force tam
check "destroy --force still cleans up a slice with garbage state" test ! -e "$VSLICE_ROOT/slices/tam"
kill $sentinel

# The slice log: the workload writes into a pipe, PID 1 keeps only the log's
# last --log-size bytes on disk (older ones become a hole), so a slice that
# writes endlessly cannot fill the node's disk; offsets keep growing, so
# readers that follow the log by offset go on working.
logsize() { stat -c %s "$VSLICE_ROOT/slices/$1/log"; }
logdisk() { du -k "$VSLICE_ROOT/slices/$1/log" | awk '{print $1}'; }
export -f logsize logdisk
wait_end() { for i in $(seq 300); do vs logs "$1" | tail -1 | grep -qx END && return 0; sleep 0.1; done; return 1; }
vs run -d --log-size 1M lg1 -- sh -c 'yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000; echo; echo END; sleep 600' >/dev/null
check "--log-size 1M: the writer's last line reaches the log" wait_end lg1
check "--log-size 1M: the log's offsets cover all 20 MB written ($(logsize lg1) bytes)" test "$(logsize lg1)" -ge 20000000
check "--log-size 1M: at most ~1M of it on disk ($(logdisk lg1) KiB)" test "$(logdisk lg1)" -le 1300
out=$(vs logs lg1 | wc -c)
# 1M, plus at most one trimming step (1/16) and a block, minus the first partial line.
check "--log-size 1M: logs shows the last ~1M ($out bytes)" test "$out" -ge 1000000 -a "$out" -le $((1048576 + 65536 + 4096))
expect_eq "--log-size 1M: logs starts on a whole line" 0123456789abcdefghijklmnopqrstuvwxyz "$(vs logs lg1 | head -1)"
vs destroy --force lg1
vs run -d lp1 -- sh -c 'echo "out $(stat -L -c %F /proc/self/fd/1) err $(stat -L -c %F /proc/self/fd/2)"; sleep 600' >/dev/null
check "the workload's stdout and stderr are a pipe, never the host file" bash -c "for i in \$(seq 50); do vs logs lp1 | grep -q '^out fifo err fifo' && exit 0; sleep 0.1; done; vs logs lp1; exit 1"
vs destroy --force lp1

# Default cap 16M: a slice writing 40 MB keeps at most ~16M on disk; logs -f
# follows the writer across the trimming to its last line.
vs run -d cap1 -- sh -c 'sleep 1; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 40000000; echo; echo END; sleep 600' >/dev/null
timeout 120 "$SLICECTL" logs -f cap1 >"$VSLICE_ROOT/cap1.follow" &
follower=$!
check "default cap: the writer's last line reaches the log" wait_end cap1
check "default cap: at most ~16M on disk ($(logdisk cap1) KiB)" test "$(logdisk cap1)" -le $((17 * 1024 + 256))
vs stop --timeout 1 cap1 >/dev/null
wait $follower
check "logs -f followed to the last line" bash -c "tail -1 '$VSLICE_ROOT/cap1.follow' | grep -qx END"
vs destroy --force cap1
vs destroy --force bystander
finish
