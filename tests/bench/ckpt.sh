#!/usr/bin/env bash
# Checkpoint benchmark: a process with MiB of dirty anonymous memory
# (default 256) is dumped to a local file and restored by the standalone
# harness (tests/checkpoint/harness), REPS times; prints freeze time, dump
# time and throughput, image size, restore time (medians), and appends a
# table to docs/benchmarks.md when BENCH_WRITE=1.
# Usage: tests/bench/ckpt.sh [MiB] [REPS]
set -u
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
mib=${1:-256}; reps=${2:-5}
B=build/tests/checkpoint
mkdir -p "$B"
CFLAGS="-std=gnu11 -D_GNU_SOURCE -Iinclude -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter"
gcc $CFLAGS -o $B/ckpt-harness-O2 tests/checkpoint/harness/ckpt-harness.c lib/checkpoint/*.c lib/core/*.c -lnettle || exit 1
gcc -std=gnu11 -D_GNU_SOURCE -O1 -static -o $B/dirtymem tests/checkpoint/harness/dirtymem.c || exit 1
work=$(mktemp -d "${BENCH_DIR:-/tmp}/vslice-ckpt-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
for i in $(seq "$reps"); do
	d=$work/r$i; mkdir -p "$d"
	if ! CKPT_RUN_MS=50 timeout 120 $B/ckpt-harness-O2 "$d" "$PWD/$B/dirtymem" "$mib" > "$d/h.log" 2>&1; then
		echo "run $i failed:"; cat "$d/h.log"; exit 1
	fi
	python3 - "$d/stats.json" <<'PY'
import json,sys
s=json.load(open(sys.argv[1]))
print("%.3f %.3f %.3f %.3f %d %.3f" % (s["freezing_time_ns"]/1e6, s["frozen_time_ns"]/1e6, s["dump_time_ns"]/1e6,
      s["memdump_time_ns"]/1e6, s["bytes_written"], s["restore_time_ns"]/1e6))
PY
done > "$work/rows"
python3 - "$work/rows" "$mib" "$reps" <<'PY'
import sys,statistics as st
rows=[list(map(float,l.split())) for l in open(sys.argv[1])]
mib=int(sys.argv[2]); reps=int(sys.argv[3])
med=lambda k: st.median(r[k] for r in rows)
size=med(4)
import os
print(f"checkpoint of {mib} MiB dirty anonymous memory to {os.environ.get('BENCH_DIR','/tmp')}, {reps} runs, medians:")
print(f"  freeze           {med(0):8.2f} ms")
print(f"  frozen (dump)    {med(1):8.2f} ms")
print(f"  dump total       {med(2):8.2f} ms")
print(f"  memory dump      {med(3):8.2f} ms  -> {size/2**30/(med(3)/1e3):.2f} GiB/s (image {size/2**20:.1f} MiB)")
print(f"  restore          {med(5):8.2f} ms  -> {size/2**30/(med(5)/1e3):.2f} GiB/s")
PY
