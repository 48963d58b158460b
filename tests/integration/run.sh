#!/usr/bin/env bash
# Runs every integration suite (tests/integration/test_*.sh, tests/cluster/
# test_*.sh, the escape battery and tests/checkpoint/run.sh, each of the two
# long ones in parts) as root, VS_TEST_JOBS at a time (default 5: most of a
# suite's time is spent waiting on slivers, not on a CPU), longest first, and
# sums their "N passed, N failed" lines. With --all (make test) the unit tests
# (plain and ASan), the cluster test with ASan daemons and the short fuzz runs
# (at nice 10: they take little of the CPU the suites want) are lanes of the same run,
# each making its own build first (ASan, libFuzzer).
# Every suite keeps its own VSLICE_ROOT, cgroup parent and network
# namespaces (named from its pid), so suites never share state. A lane's
# output is printed whole when it ends, so lanes never interleave.
#   VS_TEST_JOBS=1 bash tests/integration/run.sh      one at a time
#   bash tests/integration/run.sh tests/cluster/test_tls.sh ...   only these
set -u
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "integration tests need root (real slivers): sudo make test"
	exit 1
fi
jobs_max=${VS_TEST_JOBS:-5}
all=0
[ "${1:-}" = --all ] && { all=1; shift; }

# A lane: a label, then the command (bash -c). The seconds each took in a
# make test on the 2-core machine, so the long ones start first; a lane not
# named here counts as 10 s.
lanes=()
lane() { lanes+=("$1"$'\t'"$2"); }
declare -A secs=(
	[escape-1]=60 [escape-2]=60 [escape-3]=60 [checkpoint-root]=90 [checkpoint-user]=70
	[tests/cluster/test_migrate_live.sh]=85 [tests/cluster/test_remote.sh]=78
	[tests/cluster/test_remote_exec.sh]=73 [tests/integration/test_xfer.sh]=63
	[tests/cluster/test_abuse.sh]=52 [tests/integration/test_net.sh]=48
	[tests/cluster/test_migrate_faults.sh]=36 [tests/cluster/test_registry_migrations.sh]=32
	[tests/cluster/test_migrate_crash.sh]=26 [tests/integration/test_overlay.sh]=26
	[tests/cluster/test_images.sh]=25 [tests/cluster/test_nodemgr_auth.sh]=18
	[fuzz]=200 [unit-asan]=50 [cluster-asan]=45 [unit]=12
)
if [ $# -gt 0 ]; then
	for t in "$@"; do lane "$t" "bash $t"; done
else
	# The escape battery in three parts (its CPU-hog and bomb checks, 13*,
	# stay in one part, one after another).
	lane escape-1 "ESC_ONLY='escape-0* escape-1[0-2]*' bash tests/integration/escape/run.sh"
	lane escape-2 "ESC_ONLY='escape-13* escape-16* escape-17*' bash tests/integration/escape/run.sh"
	lane escape-3 "ESC_ONLY='escape-14* escape-15*' bash tests/integration/escape/run.sh"
	lane checkpoint-root "CKPT_PASSES=root bash tests/checkpoint/run.sh"
	lane checkpoint-user "CKPT_PASSES=user CKPT_EXTRAS=0 bash tests/checkpoint/run.sh"
	for t in tests/integration/test_*.sh tests/cluster/test_*.sh; do
		[ -f "$t" ] && lane "$t" "bash $t"
	done
	if [ $all = 1 ]; then
		# The ASan and fuzz builds are made here, beside the suites (one
		# make at a time on the same files: the lock).
		asan_make="flock build/.asan.lock make -s --no-print-directory -j2 asan-bins"
		lane unit "bash tests/unit/run.sh"
		lane unit-asan "$asan_make && bash tests/unit/run.sh --asan"
		lane cluster-asan "$asan_make && bash tests/cluster/asan.sh"
		lane fuzz "nice -n 10 make -s --no-print-directory -j2 fuzz-bins && nice -n 10 bash tests/fuzz/run.sh 10"
	fi
fi
# Longest first.
mapfile -t lanes < <(for l in "${lanes[@]}"; do
	printf '%s\t%s\n' "${secs[${l%%$'\t'*}]:-10}" "$l"
done | sort -t$'\t' -k1,1nr -s | cut -f2-)

out=$(mktemp -d /tmp/vslice-integration.XXXXXX)
trap 'rm -rf "$out"' EXIT

run_one() { # lane index
	local cmd=${lanes[$1]#*$'\t'} d=$out/$1 t0
	t0=$(date +%s)
	timeout 900 bash -c "$cmd" >"$d.log" 2>&1
	echo $? >"$d.rc"
	echo $(($(date +%s) - t0)) >"$d.secs"
}

total_pass=0
total_fail=0
failed=()
report() { # lane index
	local t=${lanes[$1]%%$'\t'*} d=$out/$1 line p f rc
	rc=$(cat "$d.rc")
	echo "=== $t"
	cat "$d.log"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$d.log" | tail -1)
	p=$(echo "$line" | awk '{print $1}')
	f=$(echo "$line" | awk '{print $3}')
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	echo "=== $t: $(cat "$d.secs") s, $p passed, $f failed (exit $rc)"
	[ "$f" -ne 0 ] && failed+=("$t")
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
}

t_all=$(date +%s)
next=0
running=()
while [ $next -lt ${#lanes[@]} ] || [ ${#running[@]} -gt 0 ]; do
	while [ $next -lt ${#lanes[@]} ] && [ ${#running[@]} -lt "$jobs_max" ]; do
		run_one $next &
		running+=($next)
		next=$((next + 1))
	done
	wait -n
	still=()
	for i in "${running[@]}"; do
		if [ -f "$out/$i.secs" ]; then report "$i"; else still+=("$i"); fi
	done
	running=("${still[@]}")
done
wait
[ ${#failed[@]} -gt 0 ] && echo "failing: ${failed[*]}"
echo "$([ $all = 1 ] && echo "make test" || echo integration): $total_pass passed, $total_fail failed in $(($(date +%s) - t_all)) s ($jobs_max at a time)"
[ "$total_fail" -eq 0 ]
