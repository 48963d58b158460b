#!/usr/bin/env bash
# Cold migration's file system stream (lib/node/slice_xfer.c) against
# `tar c | tar x` over the same veth link, in the same run.
#
# Two network namespaces (the "hosts" A and B, 10.215.N.1 and .2 on one veth
# pair) share this machine's file system. For each size (default 10, 100 and
# 1024 MiB: 40% of the bytes in files of 1-64 KiB, 100 to a directory, 60%
# in four large files), a slice's upper dir is filled, then REPS times each,
# alternating:
#   tar        tar -C UPPER -cf - .  in A  ->  tar -C EMPTYDIR -xf -  in B
#   tar+sync   the same, then sync -f EMPTYDIR (the data on disk, as the stream's receiver has it)
#   stream     xfer send ROOT SRC   in A  ->  xfer recv ROOT DST   in B
#              (slice_fs_send | slice_fs_receive: sha256 verified, staged,
#              one syncfs, swapped in; DST a fresh slice from the same image)
# Both cross the link through tests/bench/tcprelay (the command's stdout or
# stdin is the TCP socket: no relay process copies bytes). Wall time from the
# listener's start to the receiver's exit; `sync` between runs, no deletion
# until a size is done (see below). Prints a
# markdown table of medians (and writes it to $BENCH_OUT/migrate.md).
#   MIGRATE_SIZES="10 100 1024"  MIGRATE_REPS=3  bash tests/bench/migrate.sh
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SLICECTL=${SLICECTL:-$REPO/build/slicectl}
XFER=$REPO/build/tests/xfer/xfer
OUT=${BENCH_OUT:-$REPO/build/bench}
SIZES=${MIGRATE_SIZES:-10 100 1024}
REPS=${MIGRATE_REPS:-3}
die() {
	echo "migrate.sh: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$OUT/bin"
make -s -C "$REPO" build/tests/xfer/xfer >/dev/null || die "cannot build the xfer tool"
RELAY=$OUT/bin/tcprelay
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$RELAY" "$REPO/tests/bench/tcprelay.c" ||
	die "cannot build tests/bench/tcprelay.c"

export VSLICE_ROOT
VSLICE_ROOT=$(mktemp -d /tmp/vslice-migbench.XXXXXX)
chmod 0755 "$VSLICE_ROOT"
export VSLICE_CGROUP_PARENT=vslice-migbench-$$
NA=vsmiga-$$
NB=vsmigb-$$
NET=10.215.$(($$ % 250 + 1))
IPA=$NET.1
IPB=$NET.2
cleanup() {
	set +e
	for n in $("$SLICECTL" list -q 2>/dev/null); do "$SLICECTL" destroy --force "$n" >/dev/null 2>&1; done
	ip netns del "$NA" 2>/dev/null
	ip netns del "$NB" 2>/dev/null
	# the slices' cgroup parent (empty once they are destroyed)
	rmdir /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT" 2>/dev/null
	case "$VSLICE_ROOT" in /tmp/vslice-migbench.*) rm -rf --one-file-system "$VSLICE_ROOT" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NA" && ip netns add "$NB" || die "ip netns add"
ip link add vsmig$$a netns "$NA" type veth peer name vsmig$$b netns "$NB" || die "veth"
ip -n "$NA" addr add "$IPA/30" dev vsmig$$a
ip -n "$NB" addr add "$IPB/30" dev vsmig$$b
for n in "$NA" "$NB"; do
	ip -n "$n" link set lo up
	ip -n "$n" link set "vsmig$$$([ "$n" = "$NA" ] && echo a || echo b)" up
done
ip netns exec "$NA" busybox ping -c 1 -W 2 "$IPB" >/dev/null || die "no link between $IPA and $IPB"
"$SLICECTL" image build busybox >/dev/null || die "image build"

now() { printf '%s' "$EPOCHREALTIME"; }
# pair SENDCMD RECVCMD: seconds from the listener's start to the receiver's exit.
pair() {
	local port=$((20000 + RANDOM % 20000)) t0 t1 pid rc=0
	t0=$(now)
	ip netns exec "$NB" "$RELAY" listen "$IPB" "$port" -- sh -c "$2" &
	pid=$!
	ip netns exec "$NA" "$RELAY" connect "$IPB" "$port" -- sh -c "$1" || rc=1
	wait "$pid" || rc=1
	t1=$(now)
	[ "$rc" = 0 ] || return 1
	awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=()
for mib in $SIZES; do
	src=src$mib
	"$SLICECTL" create --image busybox "$src" >/dev/null || die "create $src"
	base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id_base"])' "$VSLICE_ROOT/slices/$src/spec.json")
	files=$(python3 "$REPO/tests/bench/fill_upper.py" "$VSLICE_ROOT/slices/$src/upper/data" "$mib" "$base") ||
		die "fill $src"
	upper=$VSLICE_ROOT/slices/$src/upper
	sync
	# one untimed pass each, so every timed one reads from the page cache alike
	"$XFER" send "$VSLICE_ROOT" "$src" 2>/dev/null >/dev/null
	tar -C "$upper" -cf - . >/dev/null
	t_tar=() t_sync=() t_xfer=()
	stream_bytes=0
	# Every run writes into a fresh place and nothing is deleted until the
	# size is done: on an ext4 without a journal (this VM's root) a new
	# inode skips those freed in the last ~30 s, one by one, so a run right
	# after a big rm -rf pays for it (up to 2x here), whichever kind it is.
	for rep in $(seq "$REPS"); do
		d=$VSLICE_ROOT/tarcopy-$mib-$rep
		mkdir "$d" "$d.s"; sync
		t_tar+=("$(pair "tar -C '$upper' -cf - ." "tar -C '$d' -xf -")") || die "tar run failed"
		sync
		t_sync+=("$(pair "tar -C '$upper' -cf - ." "tar -C '$d.s' -xf - && sync -f '$d.s'")") || die "tar+sync run failed"
		dst=dst$mib-$rep
		"$SLICECTL" create --image busybox "$dst" >/dev/null || die "create $dst"
		sync
		t_xfer+=("$(pair "'$XFER' send '$VSLICE_ROOT' '$src' 2>/dev/null" "'$XFER' recv '$VSLICE_ROOT' '$dst' 2>'$OUT/migrate-recv.stats'")") ||
			die "stream run failed: $(cat "$OUT/migrate-recv.stats")"
		read -r stream_bytes _ <"$OUT/migrate-recv.stats"
		echo "  $mib MiB run $rep: tar ${t_tar[-1]} s, tar+sync ${t_sync[-1]} s, stream ${t_xfer[-1]} s" >&2
	done
	mt=$(printf '%s\n' "${t_tar[@]}" | median)
	ms=$(printf '%s\n' "${t_sync[@]}" | median)
	mx=$(printf '%s\n' "${t_xfer[@]}" | median)
	rows+=("$(awk -v m="$mib" -v f="$files" -v t="$mt" -v s="$ms" -v x="$mx" -v b="$stream_bytes" 'BEGIN {
		printf "| %d MiB | %d | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f |", m, f, t, s, x, b / 1048576 * 1 / x, x / t, x / s }')")
	for rep in $(seq "$REPS"); do "$SLICECTL" destroy --force "dst$mib-$rep" >/dev/null; done
	"$SLICECTL" destroy --force "$src" >/dev/null
	rm -rf "$VSLICE_ROOT"/tarcopy-*
	[ "$mib" = "${SIZES##* }" ] || sleep 35 # (see above)
done
{
	echo "Cold migration file system stream vs tar over a veth ($(date -u '+%F %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), medians of $REPS)"
	echo
	echo "| upper dir | files | tar c \\| tar x (s) | + sync -f (s) | stream (s) | stream MiB/s | stream / tar | stream / tar+sync |"
	echo "|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} | tee "$OUT/migrate.md"
