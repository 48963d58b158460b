#!/usr/bin/env bash
# slicectl cp (lib/node/slice_files.c) on local slices: files and trees in
# and out of a running and a stopped slice, byte for byte with modes,
# mtimes and owners as the slice's root sees them; refusals (a "..", an
# absolute symlink to the host's /etc/shadow, a symlink in a middle
# component, a missing slice, an unwritable destination, a full --disk)
# each one line on stderr with nothing changed on the host and nothing
# half-written in the slice.
. "$(dirname "$0")/lib.sh"
need_busybox_image
R=$VSLICE_ROOT
T=$(mktemp -d /tmp/vslice-cp.XXXXXX)
RO=$T/ro
cleanup_cp() {
	mountpoint -q "$RO" 2>/dev/null && umount "$RO"
	mountpoint -q "$T/loop/in" 2>/dev/null && umount "$T/loop/in"
	rm -rf "$T"
	vs_cleanup
}
trap cleanup_cp EXIT

base_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id_base"])' "$R/slices/$1/spec.json"; }
# listing DIR: every entry below DIR with type, mode, size, mtime, link target.
listing() { (cd "$1" && find . -mindepth 1 -printf '%P %y %m %s %T@ %l\n' | sort); }
# in_slice NAME: a listing of /tmp/tree inside the slice (run there).
slice_listing() { vs exec "$1" -- sh -c 'cd /tmp/tree && find . | sort | while read -r f; do [ "$f" = . ] || stat -c "%n %F %a %s %Y %u:%g" "$f"; done'; }
# refused DESC WHY CMD...: exit 125 and exactly one line on stderr, saying WHY.
refused() {
	local desc=$1 why=$2 out rc
	shift 2
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	check "$desc: refused (exit $rc: $out)" test "$rc" = 125 -a "$(printf '%s\n' "$out" | wc -l)" = 1 \
		-a -n "$(printf '%s' "$out" | grep -F -- "$why")"
}
# no_staging NAME DIR: nothing named .vslice-cp-* left in DIR of the slice.
no_staging() { ! vs exec "$1" -- ls -a "$2" | grep -q '^\.vslice-cp-'; }

vs run -d --image busybox cpr -- sleep 100000 >/dev/null
vs create --image busybox cps -- sleep 100000 >/dev/null
BASE=$(base_of cps)

# --- files, running -------------------------------------------------------
head -c 300000 /dev/urandom >"$T/small"
chmod 640 "$T/small"
touch -d '2001-02-03 04:05:06' "$T/small"
check "file in (running)" vs cp "$T/small" cpr:/tmp/small
expect_eq "file in: same bytes" "$(sha256sum <"$T/small")" "$(vs exec cpr -- cat /tmp/small | sha256sum)"
expect_eq "file in: mode, mtime, owner root" "640 981173106 0:0" \
	"$(vs exec cpr -- stat -c '%a %Y %u:%g' /tmp/small)"
check "file out (running)" vs cp cpr:/tmp/small "$T/small.out"
check "file out: same bytes" cmp "$T/small" "$T/small.out"
expect_eq "file out: mode and mtime" "640 981173106" "$(stat -c '%a %Y' "$T/small.out")"
check "file into an existing directory keeps its name" vs cp "$T/small" cpr:/tmp
mkdir "$T/outdir"
check "file out into a directory" vs cp cpr:/tmp/small "$T/outdir/"
check "  ... is there under its name" cmp "$T/small" "$T/outdir/small"
echo replaced >"$T/repl"
check "an existing file is replaced" vs cp "$T/repl" cpr:/tmp/small
expect_eq "  ... with the new bytes" replaced "$(vs exec cpr -- cat /tmp/small)"

# Owners: host ids as the slice sees them; ids beyond its range become root.
echo o >"$T/owned"
chown 1234:5678 "$T/owned"
vs cp "$T/owned" cpr:/tmp/owned
expect_eq "owner 1234:5678 kept inside the slice" "1234:5678" "$(vs exec cpr -- stat -c '%u:%g' /tmp/owned)"
chown 70000:70000 "$T/owned"
vs cp "$T/owned" cpr:/tmp/owned2
expect_eq "owner outside the range becomes the slice's root" "0:0" "$(vs exec cpr -- stat -c '%u:%g' /tmp/owned2)"
# Out of the slice, a set-uid file loses the bit on the host.
vs exec cpr -- sh -c 'cp /bin/busybox /tmp/suid && chmod 4755 /tmp/suid'
vs cp cpr:/tmp/suid "$T/suid"
expect_eq "set-uid dropped on the way out" 755 "$(stat -c '%a' "$T/suid")"

# --- 10 MiB ---------------------------------------------------------------
head -c $((10 << 20)) /dev/urandom >"$T/big"
check "10 MiB in (running)" vs cp "$T/big" cpr:/tmp/big
check "10 MiB out (running)" vs cp cpr:/tmp/big "$T/big.out"
check "10 MiB byte for byte" cmp "$T/big" "$T/big.out"

# --- a tree, running --------------------------------------------------------
mkdir -p "$T/tree/a/b" "$T/tree/empty"
echo one >"$T/tree/a/one"
head -c 70000 /dev/urandom >"$T/tree/a/b/two"
printf '#!/bin/sh\necho x\n' >"$T/tree/a/run.sh"
ln -s b/two "$T/tree/a/link"
ln -s /etc/passwd "$T/tree/abs"
chmod 700 "$T/tree/a/b"
chmod 755 "$T/tree/a/run.sh"
chmod 1777 "$T/tree/empty"
chmod 604 "$T/tree/a/one"
touch -h -d '2010-01-01 00:00:01' "$T/tree/a/link"
touch -d '2011-01-01 00:00:01' "$T/tree/a/b" "$T/tree/a" "$T/tree/empty"
check "tree in (running)" vs cp "$T/tree" cpr:/tmp/
expect_eq "tree in: names, types, modes, sizes, mtimes" \
	"$(cd "$T/tree" && find . -mindepth 1 | sort | while read -r f; do stat -c '%n %F %a %s %Y 0:0' "$f"; done)" \
	"$(slice_listing cpr)"
check "tree out (running)" vs cp cpr:/tmp/tree "$T/tree.out"
expect_eq "tree out: the same listing" "$(listing "$T/tree")" "$(listing "$T/tree.out")"
check "tree out: same bytes" cmp "$T/tree/a/b/two" "$T/tree.out/a/b/two"
refused "a directory over an existing one" "exists there" vs cp "$T/tree" cpr:/tmp/
expect_eq "  ... which is unchanged" "$(cd "$T/tree" && find . -mindepth 1 | sort | while read -r f; do stat -c '%n %F %a %s %Y 0:0' "$f"; done)" \
	"$(slice_listing cpr)"
check "  ... and nothing staged" no_staging cpr /tmp

# A directory inside itself (a bind mount): copied once, not for ever.
mkdir -p "$T/loop/in"
echo f >"$T/loop/f"
mount --bind "$T/loop" "$T/loop/in"
check "a tree that contains itself (bind mount) is copied once" timeout 60 "$SLICECTL" cp "$T/loop" cpr:/tmp/
umount "$T/loop/in"
expect_eq "  ... its file, and the loop left out" "f" "$(vs exec cpr -- sh -c 'cat /tmp/loop/f; ls /tmp/loop/in 2>/dev/null')"

# --- stopped ----------------------------------------------------------------
check "file in (stopped, never started)" vs cp "$T/small" cps:/small
check "10 MiB in (stopped)" vs cp "$T/big" cps:/tmp/big
check "tree in (stopped)" vs cp "$T/tree" cps:/tmp/
expect_eq "stopped: lands in the upper dir, owned by the slice's root" "$BASE:$BASE" \
	"$(stat -c '%u:%g' "$R/slices/cps/upper/tmp/big")"
check "10 MiB out (stopped)" vs cp cps:/tmp/big "$T/big.stopped"
check "10 MiB stopped byte for byte" cmp "$T/big" "$T/big.stopped"
check "a file of the image out (stopped)" vs cp cps:/etc/passwd "$T/passwd"
check "  ... as the image has it" cmp "$T/passwd" "$R/images/busybox/rootfs/etc/passwd"
vs start cps >/dev/null
expect_eq "started afterwards, the slice sees the tree" "$(slice_listing cpr)" "$(slice_listing cps)"
expect_eq "  ... and the 10 MiB file" "$(sha256sum <"$T/big")" "$(vs exec cps -- cat /tmp/big | sha256sum)"
vs stop cps >/dev/null 2>&1

# --- refusals ---------------------------------------------------------------
SHADOW_BEFORE=$(sha256sum </etc/shadow)
HOSTDIR=$T/hostdir
mkdir -p "$HOSTDIR"
echo canary >"$HOSTDIR/canary"
HOST_BEFORE=$(listing "$HOSTDIR")
vs exec cpr -- sh -c "ln -s /etc/shadow /tmp/shadow; ln -s $HOSTDIR /tmp/mid; ln -s ../../../../../../../.. /tmp/up"
refused "../ escape in" "leaves the slice's root" vs cp "$T/small" "cpr:/../../../../$HOSTDIR/canary"
refused "../ escape out" "leaves the slice's root" vs cp "cpr:/../../../../$HOSTDIR/canary" "$T/esc1"
refused "absolute symlink to /etc/shadow, out" "leaves the slice's root" vs cp cpr:/tmp/shadow "$T/esc2"
refused "absolute symlink to /etc/shadow, in" "leaves the slice's root" vs cp "$T/small" cpr:/tmp/shadow
refused "symlink in a middle component, in" "leaves the slice's root" vs cp "$T/small" cpr:/tmp/mid/canary
refused "symlink in a middle component, out" "leaves the slice's root" vs cp cpr:/tmp/mid/canary "$T/esc3"
refused "relative symlink climbing out" "leaves the slice's root" vs cp "$T/small" cpr:/tmp/up/etc/x
refused "a magic link (/proc/1/root)" "/proc/1/root/tmp/x:" vs cp "$T/small" cpr:/proc/1/root/tmp/x
refused "the host's /proc/sys through the slice's /proc" "core_pattern" vs cp "$T/small" cpr:/proc/sys/kernel/core_pattern
refused "nonexistent slice" "no such slice" vs cp "$T/small" nosuchslice:/tmp/x
refused "a missing parent in the slice" "No such file" vs cp "$T/small" cpr:/no/such/dir/x
mkdir -p "$RO"
mount -t tmpfs -o ro,size=1m tmpfs "$RO"
refused "unwritable destination on the host" "Read-only file system" vs cp cpr:/tmp/small "$RO/x"
refused "unwritable destination in the slice" "Read-only file system" vs cp "$T/small" cpr:/sys/x
expect_eq "  /etc/shadow unchanged" "$SHADOW_BEFORE" "$(sha256sum </etc/shadow)"
expect_eq "  host dir unchanged" "$HOST_BEFORE" "$(listing "$HOSTDIR")"
check "  nothing came out" test ! -e "$T/esc1" -a ! -e "$T/esc2" -a ! -e "$T/esc3" -a -z "$(ls -A "$RO")"
check "  nothing half-written in the slice" no_staging cpr /tmp
# The stopped slice resolves the same way (its overlay, not the host).
mkdir -p "$R/slices/cps/upper/tmp"
ln -sfn "$HOSTDIR" "$R/slices/cps/upper/tmp/mid"
refused "stopped: symlink in a middle component" "leaves the slice's root" vs cp "$T/small" cps:/tmp/mid/canary
expect_eq "  host dir unchanged" "$HOST_BEFORE" "$(listing "$HOSTDIR")"

# A full --disk: ENOSPC, and nothing of the copy left in the slice.
vs run -d --image busybox --disk 16M cpd -- sleep 100000 >/dev/null
head -c $((24 << 20)) /dev/urandom >"$T/huge"
refused "more than the slice's --disk holds" "No space left" vs cp "$T/huge" cpd:/tmp/huge
check "  nothing of it left" test -z "$(vs exec cpd -- ls -A /tmp)"
vs exec cpd -- rm /etc/group
vs stop cpd >/dev/null 2>&1
check "stopped --disk slice: file in (into its disk image)" vs cp "$T/small" cpd:/tmp/small
check "  and out" vs cp cpd:/tmp/small "$T/small.disk"
check "  byte for byte" cmp "$T/small" "$T/small.disk"
refused "stopped: a file of the image it deleted stays deleted" "No such file" vs cp cpd:/etc/group "$T/group"
check "  no loop device or mount left" test -z "$(losetup -a | grep -F "$R/slices/cpd/")"

check "--help" sh -c "\"$SLICECTL\" cp --help | grep -q 'usage: slicectl cp'"
refused "both sides on the host" "neither SRC nor DST" vs cp "$T/small" "$T/x"
finish
