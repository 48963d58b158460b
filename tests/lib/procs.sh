# Sourced by the test scripts (bash).
#
# kill_child [-SIG] PID...: signal each PID that is still a child of this
# shell (default SIGTERM). A recorded pid whose process has ended may be
# another process's by now: pids wrap at /proc/sys/kernel/pid_max (32768 on
# the 2-core test machine, a few minutes of make test), and other suites
# run beside this one. A suite's cleanup that signalled every pid it ever
# started killed a node manager of another suite that way.
kill_child() {
	local sig=-TERM p ppid
	case "${1:-}" in -*) sig=$1; shift ;; esac
	for p in "$@"; do
		[ -n "$p" ] || continue
		ppid=$(sed -n 's/^[0-9]* (.*) [A-Za-z] \([0-9]*\) .*/\1/p' "/proc/$p/stat" 2>/dev/null)
		[ "$ppid" = "$BASHPID" ] && kill "$sig" "$p" 2>/dev/null
	done
	return 0
}
