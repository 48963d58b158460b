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
libs="$(pkg-config --libs libseccomp libcap jansson libarchive nettle libmicrohttpd sqlite3 libnl-3.0 libnl-route-3.0 libnftables) -ldl -pthread"
cflags=(-std=gnu11 -D_GNU_SOURCE -Iinclude -Ibuild/gen $(pkg-config --cflags-only-I libnl-3.0) -g -O1 -fno-sanitize-recover=undefined)
# The library once, instrumented for the fuzzers; each target only links it.
newest_hdr=$(ls -t include/vslice/*.h lib/*/*.h | head -1)
objs=()
mkdir -p "$out/obj"
for src in lib/*/*.c build/gen/policies.c; do
	o="$out/obj/$(echo "$src" | tr / _).o"
	if [ ! -e "$o" ] || [ "$src" -nt "$o" ] || [ "$newest_hdr" -nt "$o" ]; then
		clang "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$o" &
	fi
	objs+=("$o")
	# two compilers at a time on this 2-core machine
	[ "$(jobs -rp | wc -l)" -lt 2 ] || wait -n
done
wait
pass=0; fail=0
for f in tests/fuzz/fuzz_*.c; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .c)
	bin="$out/$n"
	if [ ! -x "$bin" ] || [ -n "$(find "$f" "${objs[@]}" -newer "$bin" | head -1)" ]; then
		clang "${cflags[@]}" -fsanitize=fuzzer,address,undefined -o "$bin" "$f" "${objs[@]}" \
			build/gen/init_blob.S $libs
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
