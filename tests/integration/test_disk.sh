#!/usr/bin/env bash
# --disk SIZE (manifest resources.disk): the slice's files live in its own
# ext4 image, loop-mounted only inside the slice; the kernel refuses writes
# past the size (ENOSPC) and the host file system never holds more than it.
. "$(dirname "$0")/lib.sh"
need_busybox_image

# The loop devices backed by a file (from sysfs: no mount on the host to see).
loops_of() { grep -lsx "$1" /sys/block/loop*/loop/backing_file | wc -l; }
# wait_loops FILE N: up to 10 s for N loop devices to be backed by FILE.
wait_loops() {
	local i
	for i in $(seq 100); do
		[ "$(loops_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
export -f loops_of wait_loops

# A write past the limit fails inside with ENOSPC; the host holds at most SIZE.
vs run -d --disk 32M k1 -- sh -c 'dd if=/dev/zero of=/root/big bs=1M count=64; echo "dd=$?"; sleep 600' >/dev/null
img=$VSLICE_ROOT/slices/k1/disk.img
check "the write ended (dd reported)" bash -c "for i in \$(seq 100); do vs logs k1 | grep -q '^dd=' && exit 0; sleep 0.1; done; exit 1"
log=$(vs logs k1)
check "--disk 32M: writing 64M fails inside (dd exit != 0)" bash -c "grep -q '^dd=[1-9]' <<<'$log'"
check "--disk 32M: ... with ENOSPC" grep -q 'No space left on device' <<<"$log"
kb=$(du -sk "$VSLICE_ROOT/slices/k1" | awk '{print $1}')
check "--disk 32M: the slice's state dir holds at most 32M on the host (${kb}K)" test "$kb" -le $((32 * 1024 + 64))
check "--disk 32M: the image is the size asked for" test "$(stat -c %s "$img")" = $((32 << 20))
check "--disk 32M: the slice's files are not in a host upper dir" test ! -e "$VSLICE_ROOT/slices/k1/upper"
expect_eq "--disk: df inside shows the slice's own file system" 1 "$(vs exec k1 -- df -k / | awk 'NR==2 {print ($2 <= 32768 && $2 >= 16384)}')"
check "--disk: deleting frees space inside" bash -c "vs exec k1 -- rm /root/big && vs exec k1 -- dd if=/dev/zero of=/root/again bs=1M count=8 2>/dev/null"
check "--disk: one loop device backs the image" wait_loops "$img" 1
check "--disk: nothing is mounted on the host" bash -c "! grep -q '$VSLICE_ROOT' /proc/self/mountinfo"
check "--disk: the image is root's, 0600" test "$(stat -c '%U %a' "$img")" = "root 600"

# The files outlive a stop; a start right after the stop gets the same files.
vs exec k1 -- sh -c 'echo kept > /root/keep'
vs stop --timeout 1 k1
check "stop: the loop device is freed (autoclear)" wait_loops "$img" 0
vs start k1
expect_eq "start again: the files are still there" kept "$(vs exec k1 -- cat /root/keep)"
vs stop --timeout 1 k1
vs start k1
expect_eq "stop and start at once: still one loop device, same files" "1 kept" "$(loops_of "$img") $(vs exec k1 -- cat /root/keep)"
vs destroy --force k1
check "destroy: the loop device is freed" wait_loops "$img" 0
check "destroy: the image is gone" test ! -e "$img"

# run --rm with --disk: an image without a journal, gone with the slice.
expect_eq "run --rm --disk: works" hello "$(vs run --rm --disk 16M k2 -- sh -c 'echo hello > /tmp/x; cat /tmp/x')"
check "run --rm --disk: nothing left" test ! -e "$VSLICE_ROOT/slices/k2"
check "run --rm --disk: no loop device left" bash -c "! grep -qs '$VSLICE_ROOT/slices/k2/' /sys/block/loop*/loop/backing_file"

# Without --disk nothing changes: upper on the host, no image.
vs create k3 >/dev/null
check "no --disk: no image, upper dir on the host" test ! -e "$VSLICE_ROOT/slices/k3/disk.img" -a -d "$VSLICE_ROOT/slices/k3/upper"
vs destroy k3

# Checkpoint of a --disk slice is refused and the slice keeps running.
vs run -d --disk 16M k4 -- sleep 600 >/dev/null
out=$(vs checkpoint k4 --output "$VSLICE_ROOT/ck4" 2>&1)
expect_eq "checkpoint of a --disk slice is refused" 125 "$?"
echo "    ($out)"
expect_eq "... and the slice still runs" running "$(vs list | awk '$1=="k4"{print $2}')"
vs destroy --force k4

# A manifest's resources.disk becomes the slice's disk limit.
mkdir -p "$VSLICE_ROOT/mf"
cat >"$VSLICE_ROOT/mf/d.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "k5", "resources": {"disk": "16M"},
 "run": {"command": "dd if=/dev/zero of=/root/f bs=1M count=40 2>&1 | grep -o 'No space left'"}}
EOF
expect_eq "manifest resources.disk is enforced" "No space left" "$(vs submit --wait "$VSLICE_ROOT/mf/d.json" 2>/dev/null | grep -o 'No space left' | head -1)"
vs destroy --force k5 >/dev/null 2>&1

# Bad sizes: one line naming the field, nothing made.
for bad in 1M lots 0 -5 17T; do
	err=$(vs create --disk "$bad" kx 2>&1 >/dev/null)
	rc=$?
	check "--disk $bad refused naming --disk (rc $rc: $err)" bash -c "test $rc = 125 && test \$(printf '%s\n' \"\$1\" | grep -c .) = 1 && grep -q -- --disk <<<\"\$1\" && test ! -e '$VSLICE_ROOT/slices/kx'" _ "$err"
done
finish
