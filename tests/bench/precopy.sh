#!/usr/bin/env bash
# Pre-copy on one node (issue 12): for slices holding MiB of memory that
# they keep rewriting at R MiB/s (tests/checkpoint/pc_heap, "plain": random
# whole-page rewrites by 3 threads, no drops or remaps), checkpoint with
# --precopy and, as the baseline, without (stop-and-copy), REPS times each
# (--leave-running: the same slice), the stream into a pipe drained by cat.
# Prints per case the rounds, the bytes written against the memory size and
# the freeze time (the tree stopped = the downtime on one node), medians.
# Results: $OUT/precopy.json and $OUT/precopy.md (a table for
# docs/benchmarks.md).
# Usage: tests/bench/precopy.sh [REPS]   (env: PRECOPY_SIZES="256 512",
#        PRECOPY_RATES="0 4 32" in MiB/s)
set -u
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
reps=${1:-3}
S=$PWD/build/slicectl
OUT=${BENCH_OUT:-$PWD/build/bench}
mkdir -p "$OUT"
HEAP=$PWD/build/tests/checkpoint/pc_heap
[ -x "$HEAP" ] || make -s build/tests/checkpoint/pc_heap || exit 1
export VSLICE_ROOT=$(mktemp -d /tmp/vslice-bench-precopy.XXXXXX)
export VSLICE_CGROUP_PARENT=vslice-bench-precopy-$$
cleanup() {
	for n in $("$S" list -q 2>/dev/null); do "$S" destroy --force "$n" >/dev/null 2>&1; done
	for c in /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
	rm -rf --one-file-system "$VSLICE_ROOT"
}
trap cleanup EXIT
"$S" image build busybox >/dev/null 2>&1 || { echo "bench: image build failed"; exit 1; }
rows=$OUT/precopy.rows
: >"$rows"
for mib in ${PRECOPY_SIZES:-256 512}; do
	for rate in ${PRECOPY_RATES:-0 4 32}; do
		n=pb-$mib-$rate
		pps=$((rate * 256)) # 4 KiB pages per second
		"$S" create --image busybox "$n" -- /pc-heap "$mib" "$pps" plain >/dev/null 2>&1 || { echo "create $n failed"; exit 1; }
		up=$VSLICE_ROOT/slices/$n/upper
		install -m 0755 "$HEAP" "$up/pc-heap" && chown --reference="$up" "$up/pc-heap"
		"$S" start "$n" >/dev/null 2>&1 || { echo "start $n failed"; exit 1; }
		for _ in $(seq 600); do "$S" logs "$n" 2>/dev/null | grep -q READY && break; sleep 0.1; done
		sleep 1 # let the writers reach their rate
		for mode in precopy stopcopy; do
			for i in $(seq "$reps"); do
				flags=(--leave-running)
				[ $mode = precopy ] && flags+=(--precopy)
				"$S" -v checkpoint "$n" "${flags[@]}" --output - 2>"$OUT/precopy.err" | cat >/dev/null
				[ "${PIPESTATUS[0]}" = 0 ] || { echo "checkpoint $n $mode failed:"; cat "$OUT/precopy.err"; exit 1; }
				python3 - "$OUT/precopy.err" "$mib" "$rate" "$mode" >>"$rows" <<'PY'
import re, sys, json
t = open(sys.argv[1]).read()
rounds = [dict(pages=int(m[0]), mib=float(m[1]), ms=float(m[2]), dirty=float(m[3]))
          for m in re.findall(r"pre-copy round \d+: (\d+) pages, ([\d.]+) MiB in ([\d.]+) ms, dirty rate ([\d.]+) MiB/s", t)]
frozen = float(re.search(r"frozen ([\d.]+) ms", t).group(1))
total = float(re.search(r"\| ([\d.]+) MiB( \||$)", t, re.M).group(1))  # last on the line since the phase timers
final = int(re.search(r"pages scanned \d+ written (\d+)", t).group(1))
print(json.dumps(dict(mib=int(sys.argv[2]), rate=int(sys.argv[3]), mode=sys.argv[4], rounds=rounds,
                      final_pages=final, frozen_ms=frozen, stream_mib=total)))
PY
			done
		done
		"$S" kill "$n" TERM >/dev/null 2>&1
		for _ in $(seq 300); do "$S" logs "$n" 2>/dev/null | grep -qE "PASS|FAIL" && break; sleep 0.1; done
		"$S" logs "$n" 2>/dev/null | grep -q PASS || echo "warning: $n did not PASS its own check after the runs"
		"$S" destroy --force "$n" >/dev/null 2>&1
	done
done
python3 - "$rows" "$OUT/precopy.json" "$OUT/precopy.md" "$reps" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
reps = sys.argv[4]
cases = sorted({(r["mib"], r["rate"]) for r in rows})
out = ["| memory | dirty rate | pre-copy rounds | pages per round (median run) | bytes written / memory | freeze, pre-copy | freeze, stop-and-copy |",
       "|---|---|---|---|---|---|---|"]
for mib, rate in cases:
    pc = [r for r in rows if r["mib"] == mib and r["rate"] == rate and r["mode"] == "precopy"]
    sc = [r for r in rows if r["mib"] == mib and r["rate"] == rate and r["mode"] == "stopcopy"]
    fz = st.median(r["frozen_ms"] for r in pc)
    med = sorted(pc, key=lambda r: r["frozen_ms"])[len(pc) // 2]
    per = " / ".join(str(x["pages"]) for x in med["rounds"]) + f" / frozen {med['final_pages']}"
    ratio = st.median(r["stream_mib"] / mib for r in pc)
    out.append(f"| {mib} MiB | {rate} MiB/s | {st.median(len(r['rounds']) for r in pc):.0f} | {per} | "
               f"{ratio:.2f}x | {fz:.1f} ms | {st.median(r['frozen_ms'] for r in sc):.1f} ms |")
out.append(f"\nmedians of {reps} runs each; the stream into a pipe drained by cat")
open(sys.argv[3], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
