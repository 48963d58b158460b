#!/usr/bin/env bash
# The warm pool (VSLICE_POOL, lib/runtime/pool.c): size 0 is off; a filled
# pool's sandboxes are claimed by create/run and each is used once (never
# back in the pool, never by two slices, also when runs start at once); a
# slice from the pool is isolated like a cold one; destroy, a drain and a
# filler killed half way leave no cgroup, mount, nsfs bind mount or id range
# behind (compared with a snapshot taken before the first pooled start).
. "$(dirname "$0")/lib.sh"

POOL=$VSLICE_ROOT/pool
IDR=${VSLICE_IDRANGE_DIR:-/var/lib/vslice/idranges}

# Our pool's left-overs only: other suites run beside us.
pool_cleanup() {
	local f
	for f in "$POOL"/*/ns/* "$POOL"/.x-*/ns/* "$VSLICE_ROOT"/slices/*/ns/*; do
		[ -e "$f" ] && umount -l "$f" 2>/dev/null
	done
	vs_cleanup
}
trap pool_cleanup EXIT

# What the pool may leave: cgroups under our parent, mounts and nsfs mounts
# under our root, id range claims owned by paths under our root.
snapshot() {
	{
		echo "# cgroups"
		find /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT" -mindepth 1 -type d 2>/dev/null | sort
		echo "# mounts"
		awk -v r="$VSLICE_ROOT/" 'index($5, r) == 1 {print $5, $9}' /proc/self/mountinfo | sort
		echo "# nsfs"
		awk -v r="$VSLICE_ROOT/" '$9 == "nsfs" && index($5, r) == 1' /proc/self/mountinfo | wc -l
		echo "# id ranges"
		grep -lsF "$VSLICE_ROOT/" "$IDR"/[0-9]* 2>/dev/null | sort
	}
}

# Wait until no filler and no remover of a destroyed slice's files runs
# (their flocks; a remover drops a pooled slice's kept namespaces).
settle() {
	[ ! -e "$POOL/fill.lock" ] || flock "$POOL/fill.lock" true
	[ ! -e "$VSLICE_ROOT/slices/.rm.lock" ] || flock "$VSLICE_ROOT/slices/.rm.lock" true
}
ready_entries() { for e in "$POOL"/e*; do [ -e "$e/ready" ] && basename "$e"; done; }
nsfs_count() { awk -v r="$VSLICE_ROOT/" '$9 == "nsfs" && index($5, r) == 1' /proc/self/mountinfo | wc -l; }
pool_cgroups() { find /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT" -maxdepth 1 -name 'pool@*' -type d 2>/dev/null | wc -l; }
# The net namespace inodes of the ready entries (unique while they live);
# with names: "INODE ENTRY".
pool_netns() { for e in $(ready_entries); do stat -L -c %i "$POOL/$e/ns/net"; done | sort; }
pool_netns_named() { for e in $(ready_entries); do echo "$(stat -L -c %i "$POOL/$e/ns/net") $e"; done; }
pid1_of() { vs show "$1" --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -1; }
ns_of() { stat -L -c %i "/proc/$1/ns/$2"; }

need_busybox_image
BASE=$(snapshot)

# ---- size 0: off
VSLICE_POOL=0 vs run --rm --image busybox p0 -- true
settle
expect_eq "VSLICE_POOL=0: no pool entries" "" "$(ready_entries)"
expect_eq "VSLICE_POOL=0: no nsfs bind mounts" 0 "$(nsfs_count)"
expect_eq "VSLICE_POOL=0: no pool cgroups" 0 "$(pool_cgroups)"
out=$(VSLICE_POOL=x vs run --rm --image busybox p1 -- true 2>&1)
check "VSLICE_POOL=x is refused, naming the variable" grep -q "VSLICE_POOL" <<<"$out"
check "  ... and nothing was made" test ! -e "$VSLICE_ROOT/slices/p1"

# ---- the node's setting, pool/size, when VSLICE_POOL is not set
mkdir -p "$POOL"
echo lots >"$POOL/size"
out=$(vs create --image busybox p3 -- true 2>&1)
check "pool/size that is not a number is refused, naming the file" grep -q "$POOL/size" <<<"$out"
check "  ... and nothing was made" test ! -e "$VSLICE_ROOT/slices/p3"

# ---- a pool of 3 (of the kind a create asks for: busybox, overlay not volatile)
echo 3 >"$POOL/size"
vs create --image busybox p2 -- true >/dev/null
vs destroy p2
settle
expect_eq "filled to 3 ready sandboxes (pool/size 3)" 3 "$(ready_entries | wc -l)"
rm "$POOL/size"
export VSLICE_POOL=3
expect_eq "3 x 5 nsfs bind mounts" 15 "$(nsfs_count)"
nh=$(ls -d /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT" | wc -l)
expect_eq "one pool cgroup per entry and hierarchy" $((3 * nh)) "$(pool_cgroups)"

# ---- a slice from the pool is the sandbox it claimed, isolated like a cold one
before=$(pool_netns)
named=$(pool_netns_named)
vs run -d --image busybox --memory 64M w1 -- sleep 1000 >/dev/null
p=$(pid1_of w1)
n1=$(ns_of "$p" net)
e1=$(awk -v n="$n1" '$1 == n {print $2}' <<<"$named")
check "w1's net namespace was a pool sandbox's ($e1)" grep -qx "$n1" <<<"$before"
check "w1's net namespace is not the host's" test "$n1" != "$(ns_of $$ net)"
expect_eq "w1's hostname" w1 "$(vs exec w1 -- hostname)"
check "w1's uid map is its own range" grep -Eq '^ *0 +[0-9]{5,} +65536$' <<<"$(vs exec w1 -- cat /proc/self/uid_map)"
check "w1 has lo up" grep -q "UP" <<<"$(vs exec w1 -- ip link show lo)"
st=$(vs exec w1 -- cat /proc/self/status)
check "w1: seccomp filter on" grep -Eq '^Seccomp:[[:space:]]+2' <<<"$st"
check "w1: no_new_privs" grep -Eq '^NoNewPrivs:[[:space:]]+1' <<<"$st"
cold=$(VSLICE_POOL=0 vs run --rm --image busybox c1 -- cat /proc/self/status)
expect_eq "w1's capabilities are a cold slice's" "$(grep ^CapBnd <<<"$cold")" "$(grep ^CapBnd <<<"$st")"
mem=$(cat /sys/fs/cgroup/memory/"$VSLICE_CGROUP_PARENT"/w1/memory.limit_in_bytes 2>/dev/null)
expect_eq "w1's memory limit is on its (renamed) cgroup" $((64 << 20)) "$mem"
check "w1's cgroup holds its PID 1" grep -qx "$p" /sys/fs/cgroup/pids/"$VSLICE_CGROUP_PARENT"/w1/cgroup.procs
expect_eq "started: w1's kept namespaces are unmounted" "" "$(awk -v r="$VSLICE_ROOT/slices/w1/" 'index($5, r) == 1' /proc/self/mountinfo)"
settle
after=$(pool_netns)
check "w1's sandbox is no longer in the pool" bash -c "! grep -qx '$n1' <<<'$after'"

# ---- claimed once: a second slice never gets w1's sandbox, also after w1 is gone
vs run -d --image busybox w2 -- sleep 1000 >/dev/null
n2=$(ns_of "$(pid1_of w2)" net)
check "w2's sandbox is not w1's" test "$n1" != "$n2"
vs destroy --force w1 w2 >/dev/null
settle
check "w1's sandbox ($e1) is gone with w1, not back in the pool" test -n "$e1" -a ! -e "$POOL/$e1"
expect_eq "the pool is full again, with other sandboxes" 3 "$(ready_entries | grep -vcx "$e1")"

# ---- concurrent claims: 3 runs at once, 3 ready sandboxes, 3 different ones
settle
for i in 1 2 3; do vs run -d --image busybox k$i -- sleep 1000 >/dev/null & done
wait
ks=""
for i in 1 2 3; do ks+="$(ns_of "$(pid1_of k$i)" net)"$'\n'; done
expect_eq "3 concurrent runs got 3 different net namespaces" 3 "$(sort -u <<<"$ks" | grep -c .)"
us=""
for i in 1 2 3; do us+="$(ns_of "$(pid1_of k$i)" user)"$'\n'; done
expect_eq "... and 3 different user namespaces" 3 "$(sort -u <<<"$us" | grep -c .)"
# each a pool sandbox (the refill may finish a new one before the last claim)
fromp=0
for i in 1 2 3; do [ -e "$VSLICE_ROOT/slices/k$i/sandbox" ] && fromp=$((fromp + 1)); done
expect_eq "... all 3 from the pool" 3 "$fromp"
vs destroy --force k1 k2 k3 >/dev/null

# ---- a claimed sandbox that never starts: destroy drops its bind mounts
settle
vs create --image busybox n1 -- true >/dev/null
check "created from the pool: kept namespaces wait under the slice" test -e "$VSLICE_ROOT/slices/n1/ns/net"
vs destroy n1
settle
expect_eq "destroy of a never-started pooled slice: pool's bind mounts only" $((3 * 5)) "$(nsfs_count)"

# ---- a name in use: refused, no sandbox spent
vs create --image busybox u1 -- true >/dev/null
settle
pre=$(ready_entries)
out=$(vs create --image busybox u1 -- true 2>&1)
check "a second create of a name is refused" grep -q "name in use" <<<"$out"
expect_eq "... and took no sandbox" "$pre" "$(ready_entries)"
check "... and left the first slice whole" test -e "$VSLICE_ROOT/slices/u1/spec.json"
vs destroy u1
settle

# ---- run --rm wants a volatile overlay: not one of these; the pool follows
claimed=$(VSLICE_TRACE=1 vs run --rm --image busybox v1 -- true 2>&1 | grep -c " create.claimed$")
expect_eq "run --rm took none of the non-volatile sandboxes (cold start)" 0 "$claimed"
settle
check "the refill replaced them with volatile ones" bash -c 'for e in "$0"/e*; do grep -q "^busybox+volatile " "$e/sandbox" || exit 1; done' "$POOL"
expect_eq "... 3 of them" 3 "$(ready_entries | wc -l)"
claimed=$(VSLICE_TRACE=1 vs run --rm --image busybox v2 -- true 2>&1 | grep -c " create.claimed$")
expect_eq "the next run --rm is a warm one" 1 "$claimed"
settle
# a warm run --rm keeps its sandbox's namespaces mounted until its destroy,
# whose remover drops them (off the start's path)
expect_eq "after a warm run --rm: only the pool's bind mounts" $((3 * 5)) "$(nsfs_count)"
# ... and if that destroy never comes (slicectl killed), the next start of
# the slice drops them and starts cold, in namespaces of its own
"$SLICECTL" run --rm --image busybox kr -- sleep 60 >/dev/null 2>&1 & # (not vs: $! is slicectl)
krun=$!
for _ in $(seq 100); do [ "$(vs show --json kr 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null)" = running ] && break; sleep 0.05; done
krn=$(ns_of "$(pid1_of kr)" net)
kill -9 $krun
wait $krun 2>/dev/null
vs kill kr >/dev/null 2>&1
for _ in $(seq 100); do [ "$(vs show --json kr | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = exited ] && break; sleep 0.05; done
check "killed run --rm: its kept namespaces are still there" test "$(stat -L -c %i "$VSLICE_ROOT/slices/kr/ns/net" 2>/dev/null)" = "$krn"
out=$(VSLICE_TRACE=1 vs start kr 2>&1)
check "killed run --rm, started again: cold (no kept namespaces joined)" bash -c "! grep -q ' start.kept_ns\$' <<<'$out'"
check "... in a net namespace of its own" test "$(ns_of "$(pid1_of kr)" net)" != "$krn"
expect_eq "... and the kept ones unmounted" "" "$(awk -v r="$VSLICE_ROOT/slices/kr/" 'index($5, r) == 1' /proc/self/mountinfo)"
vs destroy --force kr >/dev/null
settle

# ---- a filler killed half way, then the pool switched off: nothing left
VSLICE_POOL=40 vs run --rm --image busybox f1 -- true
killed=0
for _ in $(seq 500); do
	# once it has made at least one sandbox of the 40 (3 were there)
	[ "$(ls -d "$POOL"/e* 2>/dev/null | wc -l)" -gt 3 ] || { sleep 0.01; continue; }
	for p in $(pgrep -x vslice-pool); do
		if grep -qxz "VSLICE_ROOT=$VSLICE_ROOT" "/proc/$p/environ" 2>/dev/null; then
			kill -9 "$p" 2>/dev/null && killed=$((killed + 1))
		fi
	done
	[ "$killed" -gt 0 ] && break
	sleep 0.02
done
check "a filler was killed half way" test "$killed" -gt 0
sleep 0.3
VSLICE_POOL=2 vs run --rm --image busybox f2 -- true
settle
notready=$(for e in "$POOL"/e*; do [ -e "$e" ] && [ ! -e "$e/ready" ] && echo "$e"; done)
expect_eq "the next filler removed the killed one's half-made sandbox" "" "$notready"
expect_eq "... and filled to 2" 2 "$(ready_entries | wc -l)"
VSLICE_POOL=0 vs run --rm --image busybox f3 -- true
settle
expect_eq "VSLICE_POOL=0 drains the pool" "" "$(ls "$POOL" | grep -v lock)"
expect_eq "nothing left: cgroups, mounts, nsfs bind mounts, id ranges as before" "$BASE" "$(snapshot)"
# destroy removes a slice's files in the background (slices/.rm-*)
for _ in $(seq 300); do ls -d "$VSLICE_ROOT"/slices/.rm-* >/dev/null 2>&1 || break; sleep 0.1; done
expect_eq "destroyed slices' files are gone (background removal, 30 s margin)" "" "$(ls -d "$VSLICE_ROOT"/slices/.rm-* 2>/dev/null)"

finish
