#!/usr/bin/env bash
# Runs every unit test (tests/unit/test_*.c, built by make): plain, or with
# --asan the ASan+UBSan builds (leak checks at exit). One "N passed, N failed"
# line (a test binary each) at the end, as the integration suites print.
set -u
cd "$(dirname "$0")/../.."
dir=build/tests tag=""
if [ "${1:-}" = --asan ]; then
	dir=build/asan/tests tag=" (asan+ubsan)"
	export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
fi
pass=0 fail=0 failed=()
for src in tests/unit/test_*.c; do
	t=$dir/$(basename "$src" .c)
	echo "== $t$tag"
	if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$t"); fi
done
[ $fail -gt 0 ] && echo "failing: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
