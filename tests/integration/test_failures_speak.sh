#!/usr/bin/env bash
# Failure paths that say what happened (issue 14), on this machine's real
# cgroups (v1 here; v2 against the fake tree in tests/unit/test_cgroup.c):
#   - a run killed by the OOM killer, its --timeout, its --lifetime, or that
#     failed because --pids refused a fork says so on stderr (`run`) and in
#     `show` / `status`; an OOM of an earlier run is not blamed on the next;
#   - `shell NAME </dev/null` and `exec -t` without a terminal do not hang;
#   - slicectl run by a user other than root says "needs root", in one line.
. "$(dirname "$0")/lib.sh"
need_busybox_image

# run_err NAME OPTIONS... -- CMD: RC and ERR (stderr) of a foreground run --rm.
run_err() {
	ERR=$(vs run --rm "$@" 2>&1 >/dev/null)
	RC=$?
}
wait_for_cmd() { # SECONDS COMMAND...
	local i t=$1
	shift
	for i in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
	return 1
}
has() { grep -q -- "$2" <<<"$1" || { echo "    got: $1" | head -3; false; }; }

# 50 MB into a shell variable under an 8M limit: the kernel's OOM killer.
HOG='x=$(head -c 50000000 /dev/zero | tr "\0" a); echo survived'

run_err oom1 --memory 8M -- sh -c "$HOG"
expect_eq "OOM: run exits 137" 137 "$RC"
check "OOM: run says the OOM killer killed it, naming --memory" \
	has "$ERR" "slicectl: run oom1: killed by the OOM killer: the slice reached its memory limit (--memory) (exit 137)"

run_err to1 --timeout 1s -- sleep 30
expect_eq "timeout: run exits 124" 124 "$RC"
check "timeout: run says so, naming --timeout" has "$ERR" "slicectl: run to1: killed: the run took longer than its --timeout (exit 124)"

run_err lt1 --lifetime 2s -- sleep 30
expect_eq "lifetime: run exits 137" 137 "$RC"
check "lifetime: run says so, naming --lifetime" has "$ERR" "slicectl: run lt1: killed: the slice's lifetime ended (--lifetime"

run_err pid1 --pids 3 -- sh -c 'sleep 2 & sleep 2 & sleep 2 & sleep 2 & wait'
check "pids: the run fails" test "$RC" -ne 0
check "pids: run says the process limit refused a fork, naming --pids" \
	has "$ERR" "slicectl: run pid1: failed after the process limit (--pids) refused a fork"

run_err ok1 --memory 64M --pids 64 -- true
expect_eq "an ordinary run: exit 0" 0 "$RC"
check "... and no word about limits" test -z "$ERR"

# show and status of a detached slice: the reason and its sentence. The
# second run of the same slice exits 1 by itself: its OOM-free end must not
# be blamed on the first run's OOM (the cgroup's counter is cumulative).
vs create --memory 8M oomd -- sh -c "test -f /ran && exit 1; touch /ran; $HOG" >/dev/null
vs start oomd
ended() { vs show oomd | grep -q '^state  *exited'; }
check "OOM (detached): the slice ends" wait_for_cmd 30 ended
out=$(vs show oomd)
check "show: exit_reason oom with the sentence" has "$out" "exit_reason    oom: killed by the OOM killer"
out=$(vs --json show oomd)
check "show --json: exit_reason \"oom\"" has "$out" '"exit_reason": "oom"'
check "show --json: times stay epoch seconds" bash -c "grep -Eq '\"started\": [0-9]{10}' <<<'$out'"
check "show: times in ISO 8601 UTC" bash -c "vs show oomd | grep -Eq '^started +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z \\(.* ago\\)$'"
vs start oomd
sleep 0.5
check "the second run ends" wait_for_cmd 30 ended
out=$(vs show oomd)
check "the second run (exit 1, no OOM) is not blamed on the first run's OOM" has "$out" "exit_reason    exited"
vs destroy --force oomd >/dev/null

# shell and exec -t without a terminal: plain stdio instead of a pty that
# never sees the end of its input.
vs run -d tt -- sleep 300 >/dev/null
timeout 30 "$SLICECTL" shell tt </dev/null >/dev/null 2>"$VSLICE_ROOT/sh.err"
RC=$?
check "shell NAME </dev/null ends (does not hang)" test "$RC" != 124
expect_eq "... with the shell's exit 0" 0 "$RC"
check "... saying it runs without a pty" grep -q "slicectl: shell tt: stdin is not a terminal: running without a pty" "$VSLICE_ROOT/sh.err"
out=$(echo 'echo in-$(hostname); exit 3' | timeout 30 "$SLICECTL" shell tt 2>/dev/null)
RC=$?
check "a script piped into shell runs in the slice" test "$out" = "in-tt"
expect_eq "... and its exit code comes back" 3 "$RC"
out=$(timeout 30 "$SLICECTL" exec -t tt -- echo hi </dev/null 2>/dev/null)
RC=$?
expect_eq "exec -t without a terminal runs (exit 0)" 0 "$RC"
expect_eq "... and prints" hi "$out"
if command -v script >/dev/null; then
	out=$(timeout 30 script -qec "$SLICECTL exec -t tt -- sh -c 'test -t 0 && echo tty'" /dev/null </dev/null | tr -d '\r' | grep -o 'tty$' | head -1)
	check "exec -t on a terminal still gets a pty" test "$out" = tty
fi
vs destroy --force tt >/dev/null

# Not root: one line that says so, not some file's error.
if id nobody >/dev/null 2>&1; then
	for verb in "list" "run --rm a -- true" "image list" "destroy x"; do
		err=$(cd / && setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env VSLICE_ROOT="$VSLICE_ROOT" "$SLICECTL" $verb 2>&1 >/dev/null)
		rc=$?
		check "non-root '$verb': exit 125, one line saying it needs root" \
			bash -c "[ $rc -eq 125 ] && [ \$(wc -l <<<'$err') -eq 1 ] && grep -q '^slicectl: ${verb%% *}: needs root' <<<'$err'" ||
			echo "    got: $err"
	done
	out=$(cd "$VS_REPO" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$SLICECTL" validate docs/examples/hello.json 2>&1)
	check "non-root validate still works (no root needed)" has "$out" "ok (slice hello"
fi
finish
