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

# A manifest's files go into the image and its results come out of it, by
# the same code as for a plain slice (openat/O_NOFOLLOW from the upper dir),
# with the image mounted only for the while (a detached mount, in no mount
# namespace). leftovers: loop devices and mounts of anything under our root
# (sysfs and losetup name the backing file even once it is deleted).
leftovers() {
	{
		grep -s "$VSLICE_ROOT/" /sys/block/loop*/loop/backing_file
		losetup -a 2>/dev/null | grep -F "$VSLICE_ROOT/"
		grep -F "$VSLICE_ROOT" /proc/self/mountinfo
	} | wc -l
}
export -f leftovers
cat >"$VSLICE_ROOT/mf/f.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "k6", "resources": {"disk": "16M"},
 "files": [{"path": "/opt/exp/in.txt", "content": "payload-6\n", "mode": "0640"},
           {"path": "/tmp/t.txt", "content": "t\n"}],
 "run": {"command": "stat -c 'in %u:%g %a' /opt/exp/in.txt; stat -c 'opt %u:%g %a' /opt/exp; stat -c 'tmp %a' /tmp; mkdir -p /results/d/e && cat /opt/exp/in.txt > /results/out.txt && seq 1 5000 > /results/d/e/n.txt"},
 "results": ["/results/out.txt", "/results/d", "/results/none"]}
EOF
out=$(vs submit --wait "$VSLICE_ROOT/mf/f.json" 2>&1)
expect_eq "manifest files + resources.disk: submit --wait succeeds" 0 "$?"
echo "$out" | sed 's/^/    /'
check "files: the file is in the slice, owned by its root, with its mode" grep -q '| in 0:0 640$' <<<"$out"
check "files: a parent dir made for it is the slice root's, 0755" grep -q '| opt 0:0 755$' <<<"$out"
check "files: a parent dir the image has keeps its mode (/tmp 1777)" grep -q '| tmp 1777$' <<<"$out"
check "files: nothing of the slice on the host (no upper dir)" test ! -e "$VSLICE_ROOT/slices/k6/upper"
vs results k6 "$VSLICE_ROOT/r6" >/dev/null 2>"$VSLICE_ROOT/r6.err"
expect_eq "results of a --disk slice: exit 125 (only /results/none is missing)" 125 "$?"
check "results: the missing path is named" grep -q '/results/none: not found' "$VSLICE_ROOT/r6.err"
expect_eq "results: the file comes back" payload-6 "$(cat "$VSLICE_ROOT/r6/local/results/out.txt" 2>/dev/null)"
expect_eq "results: a directory comes back recursively" "$(seq 1 5000 | sha256sum)" "$(sha256sum <"$VSLICE_ROOT/r6/local/results/d/e/n.txt" 2>/dev/null)"
check "results: checksums verify (2 files)" bash -c "cd '$VSLICE_ROOT/r6' && test \$(wc -l <SHA256SUMS) = 2 && sha256sum -c --quiet SHA256SUMS"
expect_eq "files/results: no loop device or mount left" 0 "$(leftovers)"
vs start k6 >/dev/null
check "start after results: the slice runs again, same files" bash -c "for i in \$(seq 100); do vs logs k6 2>/dev/null | grep -c '^in 0:0 640' | grep -qx 2 && exit 0; sleep 0.1; done; exit 1"
vs destroy --force k6 >/dev/null

# A hostile slice: symlinks in its results must not be followed out of it.
cat >"$VSLICE_ROOT/mf/h.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "k7", "resources": {"disk": "16M"},
 "run": {"command": "mkdir -p /results/d && ln -s /etc/shadow /results/abs && ln -s ../../../../../../../../etc/shadow /results/rel && ln -s /etc/shadow /results/d/in && echo fine > /results/d/ok"},
 "results": ["/results/abs", "/results/rel", "/results/d"]}
EOF
vs submit --wait "$VSLICE_ROOT/mf/h.json" >/dev/null 2>&1
vs results k7 "$VSLICE_ROOT/r7" >/dev/null 2>"$VSLICE_ROOT/r7.err"
check "hostile results in a --disk slice: no host file copied" bash -c "! grep -rqs 'root:' '$VSLICE_ROOT/r7'"
check "... the symlink inside a directory is skipped, named" grep -q '/results/d/in: a symlink, skipped' "$VSLICE_ROOT/r7.err"
expect_eq "... the slice's own file still comes back" fine "$(cat "$VSLICE_ROOT/r7/local/results/d/ok" 2>/dev/null)"
expect_eq "... no loop device or mount left" 0 "$(leftovers)"
vs destroy --force k7 >/dev/null

# Results of a running --disk slice: read through the loop device it already
# has (one file system per image, never a second loop device on it).
vs run -d --disk 16M k8 -- sh -c 'mkdir /results; echo live > /results/x; sleep 600' >/dev/null
check "a running --disk slice wrote its result" bash -c "for i in \$(seq 100); do vs exec k8 -- cat /results/x 2>/dev/null | grep -q live && exit 0; sleep 0.1; done; exit 1"
vs results k8 "$VSLICE_ROOT/r8" /results/x >/dev/null 2>&1
expect_eq "results of a running --disk slice" live "$(cat "$VSLICE_ROOT/r8/local/results/x" 2>/dev/null)"
expect_eq "... still one loop device on its image" 1 "$(loops_of "$VSLICE_ROOT/slices/k8/disk.img")"
expect_eq "... and the slice still runs and writes" "running again" "$(vs list | awk '$1=="k8"{print $2}') $(vs exec k8 -- sh -c 'echo again > /results/y; cat /results/y')"
vs destroy --force k8 >/dev/null
check "... destroy: no loop device or mount left" bash -c "for i in \$(seq 100); do [ \$(leftovers) = 0 ] && exit 0; sleep 0.1; done; exit 1"

# A file that cannot be placed: create fails naming it (the image was
# mounted then), and leaves nothing.
cat >"$VSLICE_ROOT/mf/bad.json" <<'EOF'
{"apiVersion": "vslice/v1", "slice": "k9", "resources": {"disk": "16M"},
 "files": [{"path": "/opt/a", "content": "a"}, {"path": "/etc", "content": "x"}],
 "run": {"command": "true"}}
EOF
err=$(vs submit "$VSLICE_ROOT/mf/bad.json" 2>&1 >/dev/null)
expect_eq "a file that cannot be placed in a --disk slice: submit fails" 125 "$?"
check "... naming it ($err)" grep -q 'files\[1\]: /etc: is a directory in image busybox' <<<"$err"
check "... no slice left" test ! -e "$VSLICE_ROOT/slices/k9"
expect_eq "... no loop device or mount left" 0 "$(leftovers)"

# Bad sizes: one line naming the field, nothing made.
for bad in 1M lots 0 -5 17T; do
	err=$(vs create --disk "$bad" kx 2>&1 >/dev/null)
	rc=$?
	check "--disk $bad refused naming --disk (rc $rc: $err)" bash -c "test $rc = 125 && test \$(printf '%s\n' \"\$1\" | grep -c .) = 1 && grep -q -- --disk <<<\"\$1\" && test ! -e '$VSLICE_ROOT/slices/kx'" _ "$err"
done
finish
