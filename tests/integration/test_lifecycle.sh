#!/usr/bin/env bash
# Single-node slices, end to end, as a user would drive them (issue 2):
# identity inside, lifecycle verbs, exit codes, state kept across slicectl
# processes, and nothing left on the host after destroy.
. "$(dirname "$0")/lib.sh"
need_busybox_image

check "image list shows busybox" bash -c "vs image list | grep -q '^busybox '"
expect_eq "hostname is the slice name" a1 "$(vs run --rm --image busybox a1 -- hostname)"
expect_eq "--hostname sets it" web.example "$(vs run --rm --hostname web.example a1b -- hostname)"
expect_eq "uid 0 inside" 0 "$(vs run --rm a2 -- id -u)"
map=$(vs run --rm a2b -- cat /proc/self/uid_map | awk '{print $1, $2, $3}')
set -- $map
check "uid_map maps 0 to a non-zero host range of 65536" test "$1" = 0 -a "$2" -ge 1073741824 -a "$3" = 65536
status=$(vs run --rm a3 -- grep -E 'Seccomp:|NoNewPrivs:|CapEff:|CapBnd:' /proc/self/status | tr -s '\t ' ' ')
check "Seccomp: 2 (filter)" grep -q 'Seccomp: 2' <<<"$status"
check "NoNewPrivs: 1" grep -q 'NoNewPrivs: 1' <<<"$status"
check "CapEff is the default set (Docker's 14)" grep -q 'CapEff: 00000000a80425fb' <<<"$status"
check "CapBnd is the default set" grep -q 'CapBnd: 00000000a80425fb' <<<"$status"
expect_eq "PID 1 is vslice's reaper" vslice-init "$(vs run --rm a4 -- cat /proc/1/comm)"
# The kernel names an execveat(fd) program after the file: PID 1 must be
# exec'd from a file named vslice-init, so its comm is right from its first
# instruction (a hash in the name showed to a workload that looked early).
vs run -d a4b -- sleep 600 >/dev/null
p1=$(vs show --json a4b | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
expect_eq "PID 1 runs a file named vslice-init" vslice-init "$(basename "$(readlink /proc/$p1/exe)")"
# Execute-only: PID 1 is non-dumpable from its exec on (it holds the log).
expect_eq "the cached vslice-init is execute-only" 111 "$(stat -c %a "$(readlink /proc/$p1/exe)")"
vs destroy --force a4b
expect_eq "only the slice's processes are visible" "1 2" "$(vs run --rm a5 -- sh -c 'ls /proc | grep -E "^[0-9]+$" | sort -n | head -2 | tr "\n" " " | sed "s/ $//"')"
expect_eq "only loopback networking" lo "$(vs run --rm a6 -- ls /sys/class/net)"
expect_eq "--env and --workdir" "v1 /tmp" "$(vs run --rm --env K1=v1 --workdir /tmp a7 -- sh -c 'echo $K1 $(pwd)')"
expect_eq "only fds 0 1 2 at exec" "0 1 2 3" "$(vs run --rm a8 -- sh -c 'ls /proc/self/fd | sort -n | tr "\n" " " | sed "s/ $//"')"

# Exit codes: the workload's own, 126/127 for exec failures, 125 for vslice's.
vs run --rm e1 -- sh -c 'exit 7'
expect_eq "run exits with the workload's code" 7 "$?"
vs run --rm e2 -- nosuchcommand 2>/dev/null
expect_eq "command not found is 127" 127 "$?"
vs run --rm e3 -- /etc/passwd 2>/dev/null
expect_eq "not executable is 126" 126 "$?"
vs run --rm e4 -- sh -c 'kill -9 $$'
expect_eq "killed by a signal is 128+n" 137 "$?"
# The exit code comes from the error's kind, not its text: a missing workdir
# whose name looks like an exec message is still vslice's failure (125).
vs run --rm --workdir '/exec "x' e5 -- true 2>/dev/null
expect_eq "a missing workdir is 125 whatever its name" 125 "$?"

# Detached: the slice outlives this slicectl; a new one sees and controls it.
expect_eq "run -d prints the name" d1 "$(vs run -d d1 -- sh -c 'echo started; sleep 600')"
expect_eq "a new slicectl sees it running" running "$(vs show --json d1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
expect_eq "exec runs inside" hi "$(vs exec d1 -- echo hi)"
vs exec d1 -- sh -c 'exit 3'
expect_eq "exec exits with the command's code" 3 "$?"
expect_eq "exec sees the slice's hostname" d1 "$(vs exec d1 -- hostname)"
expect_eq "exec has the same policy" "Seccomp: 2" "$(vs exec d1 -- grep Seccomp: /proc/self/status | tr -s '\t' ' ')"
# (on a terminal: without one, exec -t runs on plain stdio; test_failures_speak.sh)
expect_eq "exec -t gets a terminal" yes "$(script -qec "$SLICECTL exec -t d1 -- sh -c 'test -t 0 && echo yes'" /dev/null </dev/null | tr -d '\r' | grep -o 'yes$' | head -1)"
check "logs show the workload's output" bash -c "for i in \$(seq 30); do vs logs d1 | grep -qx started && exit 0; sleep 0.1; done; exit 1"
fz=/sys/fs/cgroup/freezer/$VSLICE_CGROUP_PARENT/d1/freezer.state
vs freeze d1
expect_eq "freeze: list says frozen" frozen "$(vs list | awk '$1=="d1"{print $2}')"
[ -f "$fz" ] && expect_eq "freeze: the kernel froze the cgroup" FROZEN "$(cat "$fz")"
vs exec d1 -- true 2>/dev/null
expect_eq "exec into a frozen slice is refused" 125 "$?"
vs thaw d1
expect_eq "thaw: running again" running "$(vs list | awk '$1=="d1"{print $2}')"
vs destroy d1 2>/dev/null
expect_eq "destroy of a running slice needs --force" 125 "$?"
vs image rm busybox 2>/dev/null
expect_eq "image rm is refused while a slice uses the image" 125 "$?"
check "... and the image is still there" bash -c "vs image list -q | grep -qx busybox"
vs exec d1 -- sh -c 'echo late-line' >/dev/null
(sleep 1; vs exec d1 -- sh -c 'echo followed > /proc/1/fd/1' 2>/dev/null) &
check "logs -f follows until the slice stops" bash -c "timeout 20 $SLICECTL logs -f d1 > $VSLICE_ROOT/follow.out & sleep 2; $SLICECTL stop --timeout 1 d1; wait; grep -qx started $VSLICE_ROOT/follow.out"
wait
vs start d1 >/dev/null
vs stop --timeout 2 d1
expect_eq "stop: exited" exited "$(vs list | awk '$1=="d1"{print $2}')"
vs start d1
expect_eq "start again: running" running "$(vs list | awk '$1=="d1"{print $2}')"
check "restart keeps the upper layer" bash -c "vs exec d1 -- sh -c 'echo x > /root/keep' && vs stop --timeout 1 d1 && vs start d1 && vs exec d1 -- cat /root/keep | grep -qx x"
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id_base"])' "$VSLICE_ROOT/slices/d1/spec.json")
check "files the slice writes land in its own host id range" test "$(stat -c %u "$VSLICE_ROOT/slices/d1/upper/root/keep")" = "$base"
pids=$(cat /sys/fs/cgroup/pids/$VSLICE_CGROUP_PARENT/d1/cgroup.procs 2>/dev/null | tr '\n' ' ')
vs destroy --force d1
check "destroy: state dir gone" test ! -e "$VSLICE_ROOT/slices/d1"
check "destroy: no cgroup left" bash -c "! ls -d /sys/fs/cgroup/*/$VSLICE_CGROUP_PARENT/d1 2>/dev/null | grep -q ."
# Gone, or a zombie waiting for the host's init to collect it (it holds nothing).
alive() { [ -e /proc/$1/stat ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; }
export -f alive
check "destroy: every process of the slice is gone ($pids)" bash -c "test -n '$pids' && for p in $pids; do ! alive \$p || exit 1; done"
check "destroy: nothing mounted on the host for it" bash -c "! grep -q '$VSLICE_ROOT' /proc/self/mountinfo"
check "destroy: id range released" bash -c "! grep -rqs '$VSLICE_ROOT/slices/d1\$' /var/lib/vslice/idranges"
# A slice whose spec.json is gone (the record of its id range): destroy
# --force still releases the range, found by its owner.
vs create sp1 >/dev/null
check "spec.json gone: the claim exists before" grep -rqs "$VSLICE_ROOT/slices/sp1\$" /var/lib/vslice/idranges
rm -f "$VSLICE_ROOT/slices/sp1/spec.json"
vs destroy --force sp1
check "spec.json gone: destroy --force removes the state dir" test ! -e "$VSLICE_ROOT/slices/sp1"
check "spec.json gone: destroy --force releases the id range" bash -c "! grep -rqs '$VSLICE_ROOT/slices/sp1\$' /var/lib/vslice/idranges"

# Where id-mapped mounts are refused, a chowned copy of the image is used.
VSLICE_IDMAP=off vs run -d cp1 -- sleep 600 >/dev/null
expect_eq "copy fallback: the slice runs" "0 root" "$(vs exec cp1 -- sh -c 'echo $(id -u) $(stat -c %U /bin/busybox)')"
check "copy fallback: show says so" bash -c "vs show cp1 | grep -q 'chowned copy'"
cbase=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id_base"])' "$VSLICE_ROOT/slices/cp1/spec.json")
check "copy fallback: the copy belongs to the slice's ids" test "$(stat -c %u "$VSLICE_ROOT/slices/cp1/lower-copy/bin/busybox")" = "$cbase"
expect_eq "id-mapped by default: show says so" true "$(vs show --json a9 2>/dev/null || vs run -d a9 -- sleep 60 >/dev/null; vs show --json a9 | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["idmapped"]).lower())')"
vs destroy --force cp1 a9

# Stats: TLP of two busy threads is about 2 on this 2-core machine.
vs run -d spin -- sh -c 'while :; do :; done & while :; do :; done' >/dev/null
sleep 0.5
tlp=$(vs stats --json spin | python3 -c 'import json,sys; print(json.load(sys.stdin)["tlp"])')
check "stats: TLP of two spinners is near 2 (got $tlp)" python3 -c "import sys; sys.exit(0 if 1.5 <= $tlp <= 2.05 else 1)"
check "stats --json has cpu, memory, pids" bash -c "vs stats --json --window 50 spin | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"pids\"]>=3 and d[\"memory_bytes\"]>0 and d[\"cpu_usage_ns\"]>0'"
vs destroy --force spin

# Many slices at once; concurrent slicectl calls never corrupt state.
for i in 1 2 3 4 5; do vs run -d c$i -- sleep 600 >/dev/null; done
for i in 1 2 3 4 5; do (vs exec c$i -- true; vs freeze c$i; vs thaw c$i; vs exec c$i -- true) & done
wait
listing=$(vs list)
check "5 slices running after concurrent verbs" test "$(grep -c ' running ' <<<"$listing")" = 5 || echo "$listing"
check "every state.json is valid JSON" bash -c "for f in $VSLICE_ROOT/slices/c*/state.json; do python3 -m json.tool \$f >/dev/null || exit 1; done"
check "slices have distinct id ranges" test "$(cat $VSLICE_ROOT/slices/c*/spec.json | grep -c id_base)" = "$(cat $VSLICE_ROOT/slices/c*/spec.json | grep id_base | sort -u | wc -l)"
vs destroy --force c1 c2 c3 c4 c5
check "list is empty after destroy" test -z "$(vs list -q)"
# Destroys of different slices overlap (only freeing the name is under the
# root lock), and a create of the same name at the same moment either finds
# the name in use or makes a whole new slice: never a mix of old and new.
# (vs create retries while the name is in use.)
rc_dir=$(mktemp -d)
for i in 1 2 3 4; do vs run -d r$i -- sleep 600 >/dev/null; done
# "pid:start time": a pid alone may be another process's by the check
# (a zombie counts as gone: nothing of it runs)
starttime() { sed -n 's/.*) [^Z] //p' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f19; }
old_pids=$(for p in $(cat /sys/fs/cgroup/pids/"$VSLICE_CGROUP_PARENT"/r[1-4]/cgroup.procs); do echo "$p:$(starttime $p)"; done)
for i in 1 2 3 4; do
	vs destroy --force r$i &
	# again and again while the name is in use: the create lands right
	# after the destroy frees the name
	(rc=1
	for _ in $(seq 500); do
		vs create r$i >/dev/null 2>"$rc_dir/r$i.err"
		rc=$?
		[ $rc != 0 ] && grep -q 'name in use' "$rc_dir/r$i.err" || break
	done
	echo $rc >"$rc_dir/r$i.rc") &
done
wait
made=
for i in 1 2 3 4; do
	if [ "$(cat "$rc_dir/r$i.rc")" = 0 ]; then
		made="$made r$i"
		expect_eq "destroy racing create: r$i made anew is a whole created slice" created \
			"$(vs show --json r$i | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
		check "destroy racing create: r$i made anew has its cgroup" test -d /sys/fs/cgroup/pids/"$VSLICE_CGROUP_PARENT"/r$i
		check "destroy racing create: r$i made anew holds its id range" grep -rqs "$VSLICE_ROOT/slices/r$i\$" /var/lib/vslice/idranges
	else
		check "destroy racing create: r$i's create says the name is in use" grep -q 'name in use' "$rc_dir/r$i.err"
		check "destroy racing create: r$i is gone" test ! -e "$VSLICE_ROOT/slices/r$i"
	fi
done
expect_eq "destroy racing create: one id range per slice left" "$(echo $made | wc -w)" \
	"$(grep -rhs "$VSLICE_ROOT/slices/r[1-4]\$" /var/lib/vslice/idranges | wc -l)"
gone_all() { local e; for e in $old_pids; do [ "$(starttime "${e%%:*}")" != "${e#*:}" ] || return 1; done; }
check "destroy racing create: the old slices' processes are gone" gone_all
[ -z "$made" ] || vs destroy --force $made >/dev/null
rm -rf "$rc_dir"
# A cgroup with a cgroup below it (and a process there): destroy takes
# both (its rmdir fails while the child is there: it lists and recurses).
# (v1: a v2 parent with processes cannot have children with processes)
if [ -d /sys/fs/cgroup/pids ]; then
	vs run -d sub1 -- sleep 600 >/dev/null
	subd=/sys/fs/cgroup/pids/"$VSLICE_CGROUP_PARENT"/sub1/inner
	mkdir -p "$subd/deeper"
	sub_pid=$(vs show --json sub1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
	echo "$sub_pid" >"$subd/deeper/cgroup.procs"
	vs destroy --force sub1
	check "destroy: sub-cgroups go with the slice's" test ! -e /sys/fs/cgroup/pids/"$VSLICE_CGROUP_PARENT"/sub1
	check "destroy: the process in the sub-cgroup is gone" bash -c "! alive $sub_pid"
fi
check "list is empty after the racing destroys" test -z "$(vs list -q)"
# --- destroy --force of a frozen slice: it dies without running again ---
# The workload waits on a fifo; the host writes to it while the slice is
# frozen, so the slice would act at once if it ran again: the SIGKILL must
# be pending before the cgroup is thawed.
vs run -d fz1 -- /bin/sh -c ': >/tmp/n; mkfifo /tmp/f; while :; do cat /tmp/f >>/tmp/n; done' >/dev/null
fzp=
for _ in $(seq 100); do
	for p in $(cat /sys/fs/cgroup/freezer/"$VSLICE_CGROUP_PARENT"/fz1/cgroup.procs 2>/dev/null); do
		[ "$(readlink /proc/$p/exe 2>/dev/null)" != "" ] && [ -p /proc/$p/root/tmp/f ] && fzp=$p
	done
	[ -n "$fzp" ] && break
	sleep 0.05
done
vs freeze fz1
exec 8</proc/$fzp/root/tmp/n
exec 7<>/proc/$fzp/root/tmp/f
echo woke >&7
vs destroy --force fz1 >/dev/null
expect_eq "destroy --force of a frozen slice: it never runs again" "" "$(cat <&8)"
exec 8<&- 7<&-
# --- lifetime: it ends the slice; renew moves the end, from the host only ---
has_line() { echo "$1" | grep -q -- "$2"; }
not_ok() { ! "$@" 2>/dev/null; }
vs run -d --lifetime 3s lt1 -- /bin/sleep 100 >/dev/null
vs run -d --lifetime 3s lt2 -- /bin/sleep 100 >/dev/null
# a slice that signals its own PID 1 with the renewal signal, again and again
vs run -d --lifetime 3s lt3 -- /bin/sh -c 'while :; do kill -38 1; sleep 0.05; done' >/dev/null
out=$(vs renew lt1 --lifetime 1h)
check "renew prints the new end" has_line "$out" "^lt1: expires 20"
sleep 4.5
expect_eq "a renewed slice outlives its first lifetime" running "$(vs list | awk '$1 == "lt1" {print $2}')"
expect_eq "an unrenewed one ends at its lifetime" "exited 137 lifetime" "$(vs status lt2 2>/dev/null | awk '$1 == "local" {print $2, $3, $4}')"
expect_eq "the renewal signal from inside the slice extends nothing" "exited 137 lifetime" "$(vs status lt3 2>/dev/null | awk '$1 == "local" {print $2, $3, $4}')"
check "spec.json keeps the renewed end" grep -q '"expires"' "$VSLICE_ROOT/slices/lt1/spec.json"
check "renew of a missing slice fails" not_ok vs renew nosuch --lifetime 1h
check "renew with a bad duration fails" not_ok vs renew lt1 --lifetime soon
vs destroy --force lt1 lt2 lt3 >/dev/null
finish
