#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/fuzz_*.c, built by `make fuzz-bins`:
# clang, ASan+UBSan, against the library) for SECONDS each on their corpus.
# Usage: tests/fuzz/run.sh [SECONDS] [NAME...]   (default 10 s, every target)
# Prints one "N passed, N failed" line, as the integration suites do. An input
# counts as hung after 30 s (make test runs them niced beside other suites).
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
shift || true
out=build/fuzz
make -s --no-print-directory fuzz-bins >/dev/null || { echo "fuzz: build failed"; echo "0 passed, 1 failed"; exit 1; }
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do names+=("$(basename "$f" .c)"); done
fi
pass=0; fail=0
for n in "${names[@]}"; do
	bin="$out/$n"
	corpus="$out/corpus-$n"; mkdir -p "$corpus"
	seeds="tests/fuzz/seeds/${n#fuzz_}"
	args=("$corpus"); [ -d "$seeds" ] && args+=("$seeds")
	echo "== $n: ${secs}s"
	if "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=0 "${args[@]}" \
		>"$out/$n.log" 2>&1; then
		pass=$((pass + 1)); tail -n 1 "$out/$n.log"
	else
		fail=$((fail + 1)); tail -n 30 "$out/$n.log"
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
