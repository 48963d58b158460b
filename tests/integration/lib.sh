# Sourced by every integration test (bash). Real slivers as root, in a private
# VSLICE_ROOT and cgroup parent, cleaned up on exit even when a test fails.
#
#   . "$(dirname "$0")/lib.sh"      (or ../lib.sh from a subdirectory)
#   check "hostname is the slice name" test "$(vs run --rm --image busybox a1 -- hostname)" = a1
#   finish                          (prints "N passed, N failed", exit status)
set -u
VS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SLICECTL=${SLICECTL:-$VS_REPO/build/slicectl}
export VSLICE_ROOT=${VSLICE_TEST_ROOT:-$(mktemp -d /tmp/vslice-test.XXXXXX)}
export VSLICE_CGROUP_PARENT=${VSLICE_TEST_CGROUP_PARENT:-vslice-test-$$}
VS_PASS=0
VS_FAIL=0
VS_FAILED_NAMES=()

. "$VS_REPO/tests/lib/procs.sh"
vs() { "$SLICECTL" "$@"; }
export SLICECTL
export -f vs

vs_cleanup() {
	local n
	if [ -x "$SLICECTL" ] && [ -d "$VSLICE_ROOT/slices" ]; then
		for n in $("$SLICECTL" list -q 2>/dev/null); do
			"$SLICECTL" destroy --force "$n" >/dev/null 2>&1
		done
	fi
	# The removers of destroyed slices' files (they hold it shared).
	[ ! -e "$VSLICE_ROOT/slices/.rm.lock" ] || flock -w 30 "$VSLICE_ROOT/slices/.rm.lock" true
	# Mounts under our root that a failed test left (a pool entry's ns/,
	# itself a bind mount, and its nsfs files), deepest first.
	local m
	awk -v r="$VSLICE_ROOT/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	# Anything a crashed test left: processes in our cgroups, then the cgroups.
	local d
	for d in /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT" /sys/fs/cgroup/"$VSLICE_CGROUP_PARENT"; do
		[ -d "$d" ] || continue
		[ -f "$d/../freezer.state" ] || true
		find "$d" -depth -mindepth 1 -type d 2>/dev/null | while read -r c; do
			[ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state" 2>/dev/null
			for p in $(cat "$c/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
			rmdir "$c" 2>/dev/null || { sleep 0.2; rmdir "$c" 2>/dev/null; }
		done
		rmdir "$d" 2>/dev/null
	done
	if [ -z "${VSLICE_TEST_ROOT:-}" ]; then
		case "$VSLICE_ROOT" in /tmp/vslice-test.*) rm -rf --one-file-system "$VSLICE_ROOT" ;; esac
	fi
}
trap vs_cleanup EXIT
trap 'exit 130' INT TERM

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then
		VS_PASS=$((VS_PASS + 1))
		echo "ok - $desc"
	else
		VS_FAIL=$((VS_FAIL + 1))
		VS_FAILED_NAMES+=("$desc")
		echo "not ok - $desc"
		return 1
	fi
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
	if [ "$2" = "$3" ]; then
		VS_PASS=$((VS_PASS + 1))
		echo "ok - $1"
	else
		VS_FAIL=$((VS_FAIL + 1))
		VS_FAILED_NAMES+=("$1")
		echo "not ok - $1 (expected '$2', got '$3')"
	fi
}

# The busybox image, built once per root.
# The bridge's fast path (lib/netcfg/fast.c) of the node whose vslice root
# is ROOT, read with bpftool by the ids ROOT/net/fast.json names (other
# tests' nodes have programs and maps of their own).
# vs_fast_prog ROOT: the program's id ("" when none)
vs_fast_prog() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prog"])' "$1/net/fast.json" 2>/dev/null
}
# vs_fast_entry ROOT MAC: "IFINDEX FLAGS RX_PACKETS" of MAC's entry ("" when none)
vs_fast_entry() {
	local map
	map=$(bpftool prog show id "$(vs_fast_prog "$1")" -j 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["map_ids"][0])' 2>/dev/null)
	[ -n "$map" ] || return 0
	bpftool map dump id "$map" -j 2>/dev/null | python3 -c '
import json, sys
want = int.from_bytes(bytes.fromhex(sys.argv[1].replace(":", "")) + b"\0\0", "little")
for e in json.load(sys.stdin):
    if "formatted" in e:
        e = e["formatted"]
    k = e["key"]
    if isinstance(k, list):
        k = int.from_bytes(bytes(int(x, 16) for x in k), "little")
    elif isinstance(k, str):
        k = int(k, 0)
    if k == want:
        v = e["value"]
        print(v["ifindex"], v["flags"], v["rx_packets"])' "$2"
}
# vs_fast_on NETNS_CMD... DEV: whether DEV carries the program at tc ingress
# (NETNS_CMD: how to run a command in the device's network namespace)
vs_fast_on() {
	local dev=${*: -1}
	"${@:1:$#-1}" tc filter show dev "$dev" ingress 2>/dev/null | grep -q ' name vs_fast '
}

need_busybox_image() {
	vs image list -q 2>/dev/null | grep -qx busybox || vs image build busybox >/dev/null
}

finish() {
	echo "$VS_PASS passed, $VS_FAIL failed"
	[ "$VS_FAIL" -eq 0 ]
}
