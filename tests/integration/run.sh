#!/usr/bin/env bash
# Runs every integration suite (tests/integration/test_*.sh, escape/run.sh,
# tests/checkpoint/run.sh) as root and sums their "N passed, N failed" lines.
set -u
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "integration tests need root (real slivers): sudo make test"
	exit 1
fi
total_pass=0
total_fail=0
failed=()
for t in tests/integration/test_*.sh tests/cluster/test_*.sh tests/integration/escape/run.sh tests/checkpoint/run.sh; do
	[ -f "$t" ] || continue
	echo "=== $t"
	t0=$(date +%s)
	out=$(mktemp)
	timeout 600 bash "$t" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	rm -f "$out"
	echo "=== $t: $(($(date +%s) - t0)) s"
	p=$(echo "$line" | awk '{print $1}')
	f=$(echo "$line" | awk '{print $3}')
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	[ "$f" -ne 0 ] && failed+=("$t")
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
done
[ ${#failed[@]} -gt 0 ] && echo "failing suites: ${failed[*]}"
echo "integration: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
