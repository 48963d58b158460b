#!/usr/bin/env bash
# Build every tests/fuzz/fuzz_*.c with libFuzzer (clang) + ASan/UBSan against
# the library sources and run each for $1 seconds (default 10) on its corpus.
# Usage: tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
out=build/fuzz
mkdir -p "$out"
make -s build/gen/policies.c build/gen/init_blob.S
libs=$(pkg-config --libs libseccomp libcap jansson libarchive nettle)
srcs=$(ls lib/*/*.c)
pass=0; fail=0
for f in tests/fuzz/fuzz_*.c; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .c)
	bin="$out/$n"
	if [ ! -x "$bin" ] || [ -n "$(find "$f" lib include -newer "$bin" -name '*.[ch]' | head -1)" ]; then
		clang -std=gnu11 -D_GNU_SOURCE -Iinclude -Ibuild/gen -g -O1 \
			-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
			-o "$bin" "$f" $srcs build/gen/policies.c build/gen/init_blob.S $libs
	fi
	corpus="$out/corpus-$n"; mkdir -p "$corpus"
	seeds="tests/fuzz/seeds/${n#fuzz_}"
	args=("$corpus"); [ -d "$seeds" ] && args+=("$seeds")
	echo "== $n: ${secs}s"
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 "${args[@]}" \
		>"$out/$n.log" 2>&1; then
		pass=$((pass + 1)); tail -n 1 "$out/$n.log"
	else
		fail=$((fail + 1)); tail -n 30 "$out/$n.log"
	fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
