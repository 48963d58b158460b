#!/usr/bin/env bash
# Checkpoint tests: build the harness and every tests/checkpoint/*.c (static),
# run each through dump -> kill -> restore -> SIGTERM -> PASS.
# Usage: tests/checkpoint/run.sh [-k] [TEST...]   (-k: keep work dirs)
set -u
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "checkpoint tests need root"; echo "0 passed, 1 failed"; exit 1; }
keep=0
[ "${1:-}" = -k ] && { keep=1; shift; }
B=build/tests/checkpoint
mkdir -p "$B"
CFLAGS="-std=gnu11 -D_GNU_SOURCE -Iinclude -g -O1 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-nonliteral"
H=$B/ckpt-harness
srcs="tests/checkpoint/harness/ckpt-harness.c lib/checkpoint/*.c lib/core/*.c"
if [ ! -x "$H" ] || [ -n "$(find tests/checkpoint/harness lib/checkpoint lib/core include -newer "$H" -name '*.[ch]' | head -1)" ]; then
	gcc $CFLAGS ${CKPT_SAN:-} -o "$H" $srcs -lnettle || { echo "0 passed, 1 failed"; exit 1; }
fi
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	for f in tests/checkpoint/*.c; do tests+=("$(basename "$f" .c)"); done
fi
work=$(mktemp -d /tmp/vslice-ckpt-XXXXXX)
trap '[ $keep = 1 ] || rm -rf "$work"' EXIT
pass=0; fail=0; failed=()
for t in "${tests[@]}"; do
	src=tests/checkpoint/$t.c
	bin=$B/$t
	if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ tests/checkpoint/zdtm.h -nt "$bin" ]; then
		gcc -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -static -pthread -o "$bin" "$src" || { fail=$((fail+1)); failed+=("$t(build)"); continue; }
	fi
	d=$work/$t; mkdir -p "$d"
	opts=()
	[ -f tests/checkpoint/$t.opts ] && read -r -a opts < tests/checkpoint/$t.opts
	start=$(date +%s%N)
	if timeout 60 "$H" "${opts[@]}" $d "$PWD/$bin" > "$d/harness.log" 2>&1; then
		pass=$((pass+1))
		printf "PASS %-20s %s\n" "$t" "$(grep '^cycle' "$d/harness.log" | tail -1 | sed 's/^cycle [0-9]*: //' | cut -c1-150)"
	else
		fail=$((fail+1)); failed+=("$t")
		echo "FAIL $t"; sed 's/^/    /' "$d/harness.log" | tail -20
	fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
