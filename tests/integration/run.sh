#!/usr/bin/env bash
# Runs every integration suite (tests/integration/test_*.sh, tests/cluster/
# test_*.sh, escape/run.sh, tests/checkpoint/run.sh) as root, VS_TEST_JOBS
# at a time (default 3: most of a suite's time is spent waiting on slivers,
# not on a CPU), longest first, and sums their "N passed, N failed" lines.
# Every suite keeps its own VSLICE_ROOT, cgroup parent and network
# namespaces (named from its pid), so suites never share state. A suite's
# output is printed whole when it ends, so lanes never interleave.
#   VS_TEST_JOBS=1 bash tests/integration/run.sh      one at a time
#   bash tests/integration/run.sh tests/cluster/test_tls.sh ...   only these
set -u
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "integration tests need root (real slivers): sudo make test"
	exit 1
fi
jobs_max=${VS_TEST_JOBS:-3}
# Longest first, so the slow ones do not start last.
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
	for t in tests/integration/escape/run.sh tests/checkpoint/run.sh \
		tests/integration/test_*.sh tests/cluster/test_*.sh; do
		[ -f "$t" ] && suites+=("$t")
	done
fi
out=$(mktemp -d /tmp/vslice-integration.XXXXXX)
trap 'rm -rf "$out"' EXIT

run_one() { # suite index
	local t=${suites[$1]} d=$out/$1 t0
	t0=$(date +%s)
	timeout 900 bash "$t" >"$d.log" 2>&1
	echo $? >"$d.rc"
	echo $(($(date +%s) - t0)) >"$d.secs"
}

total_pass=0
total_fail=0
failed=()
report() { # suite index
	local t=${suites[$1]} d=$out/$1 line p f rc
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
done_idx=()
while [ $next -lt ${#suites[@]} ] || [ ${#running[@]} -gt 0 ]; do
	while [ $next -lt ${#suites[@]} ] && [ ${#running[@]} -lt "$jobs_max" ]; do
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
[ ${#failed[@]} -gt 0 ] && echo "failing suites: ${failed[*]}"
echo "integration: $total_pass passed, $total_fail failed in $(($(date +%s) - t_all)) s ($jobs_max at a time)"
[ "$total_fail" -eq 0 ]
