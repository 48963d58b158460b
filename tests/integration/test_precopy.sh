#!/usr/bin/env bash
# Pre-copy on one node (issue 12, docs/checkpoint.md "Pre-copy"): real
# slices checkpointed with --precopy through a pipe into a restore.
#  - the acceptance counter keeps counting after the restore, and -v prints
#    the rounds;
#  - a heap that keeps changing during the rounds (tests/checkpoint/pc_heap:
#    writer threads rewriting and dropping random pages, regions unmapped,
#    re-mapped, grown) restores with every page right (its own check, PASS);
#  - a reader that closes the pipe mid-round fails the checkpoint, the
#    slice runs on unharmed: still counting / still PASSing, and no memory
#    left write-protected (no "uw" in any process's smaps);
#  - with --max-bytes or --rounds the rounds stop where told;
#  - a process with a userfaultfd of its own is refused, naming its fd.
# PRECOPY_REPEAT=N repeats the timing-sensitive cases N times.
. "$(dirname "$0")/lib.sh"
need_busybox_image
HEAP=$VS_REPO/build/tests/checkpoint/pc_heap
[ -x "$HEAP" ] || make -C "$VS_REPO" -s build/tests/checkpoint/pc_heap
REPEAT=${PRECOPY_REPEAT:-1}
log=$(mktemp /tmp/vslice-precopy-log.XXXXXX)
trap 'vs_cleanup; rm -f "$log"' EXIT

readn() { # NAME: the counter (retries while exec races the writer)
	local v=""
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		v=$(vs exec "$1" -- cat /tmp/n 2>/dev/null)
		[ -n "$v" ] && break
		sleep 0.05
	done
	echo "${v:-0}"
}
wait_count() { # NAME MIN: wait (60 s at most) until the counter reached MIN
	local n=0
	for _ in $(seq 600); do
		n=$(readn "$1")
		[ "$n" -ge "$2" ] && break
		sleep 0.1
	done
	echo "$n"
}
pid1() { vs show --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
tree() { # host pids below PID 1 of NAME
	local p1 todo=() all=() c t
	p1=$(pid1 "$1")
	todo=("$p1")
	while [ ${#todo[@]} -gt 0 ]; do
		c=${todo[0]}
		todo=("${todo[@]:1}")
		for t in /proc/"$c"/task/*/children; do
			for k in $(cat "$t" 2>/dev/null); do todo+=("$k"); all+=("$k"); done
		done
	done
	echo "${all[@]}"
}
no_uffd_left() { # NAME: no process of it has uffd-registered memory
	local p
	for p in $(tree "$1"); do
		grep -q 'VmFlags:.* uw' /proc/"$p"/smaps 2>/dev/null && return 1
	done
	return 0
}
diag() { # the checkpoint's messages and the restore's last lines
	sed 's/^/    ckpt: /' "$log.ck" | tail -4
	sed 's/^/    log: /' "$log" | tail -4
}
heap_slice() { # NAME MiB PAGES/S [plain|storm]
	vs create --image busybox "$1" -- /pc-heap "$2" "$3" ${4:-} >>"$log" 2>&1 || return 1
	local up=$VSLICE_ROOT/slices/$1/upper
	install -m 0755 "$HEAP" "$up/pc-heap" && chown --reference="$up" "$up/pc-heap"
	vs start "$1" >>"$log" 2>&1 || return 1
	for _ in $(seq 300); do vs logs "$1" 2>/dev/null | grep -q READY && return 0; sleep 0.1; done
	return 1
}
heap_pass() { # NAME: SIGTERM, then its own check must say PASS
	vs kill "$1" TERM >>"$log" 2>&1
	for _ in $(seq 300); do vs logs "$1" 2>/dev/null | grep -qE "PASS|FAIL" && break; sleep 0.1; done
	vs logs "$1" 2>/dev/null | grep -q PASS
}

for rep in $(seq "$REPEAT"); do
	sfx=""
	[ "$REPEAT" -gt 1 ] && sfx=" (run $rep)"
	# 1. the acceptance counter, through a pipe
	vs run -d --image busybox pc1 -- sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; echo $i; sleep 0.1; done' >>"$log" 2>&1
	n0=$(wait_count pc1 5)
	vs -v checkpoint pc1 --precopy --output - 2>"$log.ck" | vs -v restore pc2 --input - >>"$log" 2>&1
	rcs=("${PIPESTATUS[@]}")
	check "counter: checkpoint --precopy | restore both succeed$sfx" test "${rcs[0]}${rcs[1]}" = 00 || diag
	check "counter: -v prints the pre-copy rounds$sfx" grep -q '^pre-copy round 0: ' "$log.ck"
	check "counter: -v prints the frozen round$sfx" grep -q 'frozen round [0-9]*: [0-9]* pages' "$log.ck"
	n1=0 n2=0
	if vs list -q 2>/dev/null | grep -qx pc2; then
		n1=$(readn pc2)
		n2=$(wait_count pc2 $((n1 + 3)))
	fi
	check "counter: counts on from $n0 (restored at $n1, then $n2)$sfx" test "$n1" -ge "$n0" -a "$n2" -gt "$n1"
	check "counter: the source slice is gone$sfx" bash -c "! vs list -q | grep -qx pc1"
	vs destroy --force pc2 >/dev/null 2>&1

	# 2. a heap that changes during the rounds (threads, drops, remaps)
	if heap_slice ph1 64 2000; then
		vs -v checkpoint ph1 --precopy --output - 2>"$log.ck" | vs -v restore ph2 --input - >>"$log" 2>&1
		rcs=("${PIPESTATUS[@]}")
		check "heap: checkpoint --precopy | restore both succeed$sfx" test "${rcs[0]}${rcs[1]}" = 00 || diag
		check "heap: at least one round after the first$sfx" grep -q '^pre-copy round 1: ' "$log.ck"
		check "heap: every page right after the restore$sfx" heap_pass ph2 || vs logs ph2 2>&1 | tail -3
	else
		check "heap: slice ph1 said READY$sfx" false
	fi
	vs destroy --force ph1 >/dev/null 2>&1
	vs destroy --force ph2 >/dev/null 2>&1

	# 2b. every page read back at once right after the restore, by 16
	# threads (pc_heap "storm"): a heap larger than one spool piece (so
	# the restore's apply workers share it), pages rewritten fast enough
	# that the frozen round carries some (newer than the spooled copy),
	# regions unmapped and re-mapped between the rounds
	if heap_slice ps1 96 4000 storm; then
		vs -v checkpoint ps1 --precopy --output - 2>"$log.ck" | vs -v restore ps2 --input - >>"$log" 2>&1
		rcs=("${PIPESTATUS[@]}")
		check "storm: checkpoint --precopy | restore both succeed$sfx" test "${rcs[0]}${rcs[1]}" = 00 || diag
		check "storm: the frozen round carries pages$sfx" grep -q 'frozen round [0-9]*: [1-9][0-9]* pages' "$log.ck"
		check "storm: 16 threads read every page back right$sfx" heap_pass ps2 || vs logs ps2 2>&1 | tail -3
	else
		check "storm: slice ps1 said READY$sfx" false
	fi
	vs destroy --force ps1 >/dev/null 2>&1
	vs destroy --force ps2 >/dev/null 2>&1

	# 3. the reader goes away in the middle of the first round: the
	# checkpoint fails, the slice runs on, nothing stays armed
	if heap_slice pa1 64 2000; then
		vs checkpoint pa1 --precopy --output - 2>"$log.ck" | head -c 1000000 >/dev/null
		rc=${PIPESTATUS[0]}
		check "abort: the checkpoint fails$sfx" test "$rc" != 0
		check "abort: with EPIPE in the message$sfx" grep -q "Broken pipe" "$log.ck" || diag
		check "abort: the slice still runs$sfx" bash -c "vs list 2>/dev/null | grep -q '^pa1 .*running'"
		check "abort: no memory left registered (no uw in smaps)$sfx" no_uffd_left pa1
		check "abort: its memory is intact (its own check: PASS)$sfx" heap_pass pa1
	else
		check "abort: slice pa1 said READY$sfx" false
	fi
	vs destroy --force pa1 >/dev/null 2>&1
done

# 4. the stop rule: --rounds bounds the rounds, a small --max-bytes stops after the first
vs run -d --image busybox pr1 -- sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done' >>"$log" 2>&1
wait_count pr1 3 >/dev/null
vs -v checkpoint pr1 --leave-running --precopy --rounds 1 --output - 2>"$log.ck" >/dev/null
check "--rounds 1: one round, then the freeze" test "$(grep -c '^pre-copy round' "$log.ck")" = 1
vs -v checkpoint pr1 --leave-running --precopy --max-bytes 4096 --min-pages 1 --output - 2>"$log.ck" >/dev/null
check "--max-bytes 4096: one round, then the freeze" test "$(grep -c '^pre-copy round' "$log.ck")" = 1
check "--leave-running: nothing left armed" no_uffd_left pr1
vs checkpoint pr1 --rounds 2 --output - >/dev/null 2>"$log.ck"
check "--rounds without --precopy: refused" grep -q 'need --precopy' "$log.ck"
vs destroy --force pr1 >/dev/null 2>&1

# 5. a process with a userfaultfd of its own is refused up front, named
# with its fd, and runs on (the default seccomp policy denies userfaultfd
# to slices - our own is made with the filter suspended -, so this slice
# runs unconfined)
HOLD=$VS_REPO/build/tests/integration/helpers/uffd_hold
[ -x "$HOLD" ] || make -C "$VS_REPO" -s build/tests/integration/helpers/uffd_hold
vs create --image busybox --policy unconfined pu1 -- /uffd-hold >>"$log" 2>&1
up=$VSLICE_ROOT/slices/pu1/upper
install -m 0755 "$HOLD" "$up/uffd-hold" && chown --reference="$up" "$up/uffd-hold"
vs start pu1 >>"$log" 2>&1
for _ in $(seq 100); do vs logs pu1 2>/dev/null | grep -q READY && break; sleep 0.1; done
fdn=$(vs logs pu1 2>/dev/null | sed -n 's/^READY fd //p')
vs checkpoint pu1 --precopy --output - 2>"$log.ck" >/dev/null
rc=$?
check "userfaultfd user: refused" test "$rc" != 0
# (the dump's own up-front check names it first: "pid 2 fd 3: refused:
# anon_inode:[userfaultfd]"; the pre-copy's: "uses userfaultfd itself (fd 3)")
check "userfaultfd user: the message names the fd (fd ${fdn:-?})" grep -qE "fd ${fdn:-x}\b.*userfaultfd|userfaultfd itself \(fd ${fdn:-x}\)" "$log.ck" || diag
check "userfaultfd user: still running" bash -c "vs list 2>/dev/null | grep -q '^pu1 .*running'"
vs destroy --force pu1 >/dev/null 2>&1

# 6. processes that exec all the time (six shells running /bin/true in a
# loop): arming a process looks up its syscall gadget only once it is
# stopped; looked up before the seize, a process that exec'd in between
# had the old image's address (SIGSEGV in the injected syscall, or "no
# syscall instruction": 7 of 30 checkpoints failed so)
vs run -d --image busybox px1 -- /bin/sh -c 'for k in 1 2 3 4 5 6; do (while :; do /bin/true; done) & done; wait' >>"$log" 2>&1
bad=0
for i in $(seq 30); do
	rm -rf "$VSLICE_ROOT/px1.ck"
	if ! vs checkpoint px1 --precopy --leave-running --output "$VSLICE_ROOT/px1.ck" >"$log.px" 2>&1; then
		bad=$((bad + 1))
		echo "# exec storm: checkpoint $i: $(tail -1 "$log.px")"
	fi
done
rm -f "$log.px"
expect_eq "exec storm: 30 pre-copy checkpoints, none failed" 0 "$bad"
check "exec storm: still running" bash -c "vs list 2>/dev/null | grep -q '^px1 .*running'"
vs destroy --force px1 >/dev/null 2>&1
rm -rf "$VSLICE_ROOT/px1.ck"
rm -f "$log.ck"
finish
