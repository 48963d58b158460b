#!/usr/bin/env bash
# Checkpoint speed of the frozen path: a process with MiB of dirty
# anonymous memory (tests/checkpoint/harness/dirtymem.c) is checkpointed
# and restored, REPS times per size, two ways:
#   harness   the standalone harness (tests/checkpoint/harness): dump to a
#             file in BENCH_DIR, restore from it
#   slicectl  a real slice (busybox + dirtymem): `slicectl checkpoint
#             --output DIR` (DIR in BENCH_DIR), `slicectl restore --input
#             DIR`, and `slicectl checkpoint --output - | slicectl restore
#             --input -` (the pipe: dump and restore at once)
# and prints medians: the memory phase of dump, pipe transfer and restore
# in GiB/s with where the time went (read / crc / write, see ckpt_stats in
# include/vslice/ckpt.h), plus freeze and frozen times.
# Usage: tests/bench/ckpt.sh [MiB...] (default 256 1024)
#   REPS=3  BENCH_DIR=/dev/shm  SLICECTL=build/slicectl  CKPT_BENCH_JSON=file
#   CKPT_BENCH_SLICES=0 skips the slicectl part.
set -u
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(256 1024)
reps=${REPS:-3}
S=${SLICECTL:-build/slicectl}
B=build/tests/checkpoint
mkdir -p "$B"
CFLAGS="-std=gnu11 -D_GNU_SOURCE -Iinclude -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter"
gcc $CFLAGS -o $B/ckpt-harness-O2 tests/checkpoint/harness/ckpt-harness.c lib/checkpoint/*.c lib/core/*.c -lnettle -pthread || exit 1
gcc -std=gnu11 -D_GNU_SOURCE -O1 -static -o $B/dirtymem tests/checkpoint/harness/dirtymem.c || exit 1
gcc -O2 -Wall -Wextra -Werror -o $B/memspeed tests/bench/memspeed.c || exit 1
work=$(mktemp -d "${BENCH_DIR:-/dev/shm}/vslice-ckpt-bench-XXXXXX")
chmod 755 "$work"
rows=$work/rows.jsonl
own_root=""
cleanup() {
	if [ -n "$own_root" ]; then # only the slices of our own root
		for n in $(VSLICE_ROOT=$own_root "$S" list -q 2>/dev/null); do
			VSLICE_ROOT=$own_root "$S" destroy --force "$n" >/dev/null 2>&1
		done
		rm -rf "$own_root"
		for c in /sys/fs/cgroup/*/"$VSLICE_CGROUP_PARENT"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# one JSON line per measurement: {"how","mib","what", stats...}
# (a build before the phase timers has no memrestore_time_ns: its whole
# restore_time_ns stands in, an upper bound)
row() { python3 -c 'import json,sys; d=json.load(open(sys.argv[4])) if sys.argv[4] else {}; d.setdefault("memrestore_time_ns", d.get("restore_time_ns", float("nan"))); d.update(how=sys.argv[1], mib=int(sys.argv[2]), what=sys.argv[3]); print(json.dumps(d))' "$@" >>"$rows"; }
# the -v line of slicectl as JSON (the stream path writes no stats file)
vline() {
	python3 - "$1" "$2" <<'PY'
import json, re, sys
txt = open(sys.argv[1]).read()
want = sys.argv[2]
out = {}
for l in txt.splitlines():
    if want == "restore" and l.startswith("restore "):
        m = re.search(r"restore ([\d.]+) ms .* memory ([\d.]+) ms, [\d.]+ GiB/s: read ([\d.]+) ms, crc ([\d.]+) ms, write ([\d.]+) ms", l)
        p = re.search(r"(\d+) pages written", l)
        if m:
            out = {"restore_time_ns": float(m[1]) * 1e6, "memrestore_time_ns": float(m[2]) * 1e6,
                   "mem_read_time_ns": float(m[3]) * 1e6, "mem_crc_time_ns": float(m[4]) * 1e6,
                   "mem_write_time_ns": float(m[5]) * 1e6, "pages_written": int(p[1])}
        elif p:  # a build before the phase timers: the whole restore
            m = re.search(r"restore ([\d.]+) ms", l)
            out = {"restore_time_ns": float(m[1]) * 1e6, "pages_written": int(p[1])}
    if want == "dump" and l.startswith("procs "):
        m = re.search(r"freeze ([\d.]+) ms frozen ([\d.]+) ms dump ([\d.]+) ms \(memory ([\d.]+) ms, [\d.]+ GiB/s: read ([\d.]+) ms, crc ([\d.]+) ms, write ([\d.]+) ms\) \| pages scanned \d+ written (\d+)", l)
        if m:
            out = {"freezing_time_ns": float(m[1]) * 1e6, "frozen_time_ns": float(m[2]) * 1e6,
                   "dump_time_ns": float(m[3]) * 1e6, "memdump_time_ns": float(m[4]) * 1e6,
                   "mem_read_time_ns": float(m[5]) * 1e6, "mem_crc_time_ns": float(m[6]) * 1e6,
                   "mem_write_time_ns": float(m[7]) * 1e6, "pages_written": int(m[8])}
        else:  # a build before the phase timers
            m = re.search(r"freeze ([\d.]+) ms frozen ([\d.]+) ms dump ([\d.]+) ms \(memory ([\d.]+) ms, [\d.]+ MiB/s\) \| pages scanned \d+ written (\d+)", l)
            if m:
                out = {"freezing_time_ns": float(m[1]) * 1e6, "frozen_time_ns": float(m[2]) * 1e6,
                       "dump_time_ns": float(m[3]) * 1e6, "memdump_time_ns": float(m[4]) * 1e6,
                       "pages_written": int(m[5])}
print(json.dumps(out))
PY
}

# CPU seconds (user + sys) a command used: less at the mercy of other load
# on the machine than the wall clock. cpu FILE CMD...
cpu() { python3 -c 'import resource,subprocess,sys; r=subprocess.run(sys.argv[2:]); u=resource.getrusage(resource.RUSAGE_CHILDREN); open(sys.argv[1],"w").write("%.4f" % (u.ru_utime + u.ru_stime)); sys.exit(r.returncode)' "$@"; }
# add {"cpu_s": ...} to the last row
addcpu() { python3 -c 'import json,sys; L=open(sys.argv[1]).read().splitlines(); d=json.loads(L[-1]); d["cpu_s"]=float(open(sys.argv[2]).read()); L[-1]=json.dumps(d); open(sys.argv[1],"w").write("\n".join(L)+"\n")' "$rows" "$1"; }

# what the machine copies right now (a shared VM slows down several times
# when its host is busy): printed with the results
# (and whether transparent huge pages can be had: a dump into a pipe
# vmsplices its pages only then - docs/checkpoint.md, "The memory path")
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
probe() { echo "{\"how\": \"machine\", \"mib\": 0, \"what\": \"$1\", \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"thp\": \"${thp:-none}\", $($B/memspeed | sed 's/^{//')" >>"$rows"; }
probe before
# --- harness ---------------------------------------------------------------
for mib in "${sizes[@]}"; do
	for i in $(seq "$reps"); do
		d=$work/h$mib-$i; mkdir -p "$d"
		if ! CKPT_RUN_MS=50 timeout 300 $B/ckpt-harness-O2 "$d" "$PWD/$B/dirtymem" "$mib" >"$d/h.log" 2>&1; then
			echo "harness $mib MiB run $i failed:"; cat "$d/h.log"; exit 1
		fi
		row harness "$mib" cycle "$d/stats.json"
		[ -f "$d/restore-stats.json" ] && row harness "$mib" restore "$d/restore-stats.json"
		rm -f "$d/img"
	done
done

# --- slicectl ----------------------------------------------------------------
if [ -x "$S" ] && [ "${CKPT_BENCH_SLICES:-1}" != 0 ]; then
	export VSLICE_ROOT VSLICE_CGROUP_PARENT=vslice-ckpt-bench-$$
	VSLICE_ROOT=$(mktemp -d /tmp/vslice-ckpt-bench-root-XXXXXX)
	own_root=$VSLICE_ROOT
	chmod 755 "$VSLICE_ROOT"
	"$S" image build busybox >/dev/null 2>&1 || { echo "slicectl image build busybox failed"; exit 1; }
	for mib in "${sizes[@]}"; do
		n=cb$mib
		"$S" create --image busybox "$n" -- /ckpt-test "$mib" >/dev/null || exit 1
		up=$VSLICE_ROOT/slices/$n/upper
		install -m 0755 $B/dirtymem "$up/ckpt-test" && chown --reference="$up" "$up/ckpt-test"
		"$S" start "$n" >/dev/null || exit 1
		for _ in $(seq 600); do "$S" logs "$n" 2>/dev/null | grep -q READY && break; sleep 0.1; done
		"$S" logs "$n" 2>/dev/null | grep -q READY || { echo "slice $n never READY"; exit 1; }
		for i in $(seq "$reps"); do
			d=$work/s$mib-$i
			cpu "$work/c1" "$S" checkpoint "$n" --leave-running --output "$d" >/dev/null || { echo "checkpoint $n failed"; exit 1; }
			row slicectl "$mib" dump "$d/stats.json"; addcpu "$work/c1"
			cpu "$work/c2" "$S" restore "$n-r" --input "$d" >/dev/null || { echo "restore $n-r failed"; exit 1; }
			row slicectl "$mib" restore "$d/restore-stats.json"; addcpu "$work/c2"
			"$S" destroy --force "$n-r" >/dev/null
			rm -rf "$d"
			cpu "$work/c3" "$S" -v checkpoint "$n" --leave-running --output - 2>"$work/pd.log" |
				cpu "$work/c4" "$S" -v restore "$n-p" --input - >"$work/pr.log" 2>&1 || { echo "pipe $n failed"; cat "$work/pd.log" "$work/pr.log"; exit 1; }
			vline "$work/pd.log" dump >"$work/pd.json"
			vline "$work/pr.log" restore >"$work/pr.json"
			row slicectl "$mib" pipe-dump "$work/pd.json"; addcpu "$work/c3"
			row slicectl "$mib" pipe-restore "$work/pr.json"; addcpu "$work/c4"
			"$S" destroy --force "$n-p" >/dev/null
		done
		"$S" destroy --force "$n" >/dev/null
	done
fi
probe after
[ -n "${CKPT_BENCH_JSON:-}" ] && cp "$rows" "$CKPT_BENCH_JSON"

python3 - "$rows" "$reps" "${BENCH_DIR:-/dev/shm}" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
reps, where = sys.argv[2], sys.argv[3]
def med(rs, k):
    v = [r[k] for r in rs if k in r]
    return st.median(v) if v else float("nan")
def gib(rs, k):
    t = med(rs, k)
    return med(rs, "pages_written") * 4096 / 2**30 / (t / 1e9) if t > 0 else float("nan")
def parts(rs):
    return "read %6.1f  crc %5.1f  write %6.1f ms" % (med(rs, "mem_read_time_ns") / 1e6,
        med(rs, "mem_crc_time_ns") / 1e6, med(rs, "mem_write_time_ns") / 1e6)
print(f"checkpoint speed of the frozen path, medians of {reps} runs (files in {where}):")
for r in rows:
    if r["how"] == "machine":
        print(f"  machine {r['what']:6}: load {r['load']}, memcpy {r['memcpy_gib_s']} GiB/s, "
              f"process_vm_readv {r['process_vm_readv_gib_s']} GiB/s (4 MiB pieces, best of 3), "
              f"THP {r.get('thp', '?')}")
print(f"{'path':9} {'MiB':>5} {'phase':22} {'ms':>8} {'GiB/s':>6}   where the time went (threads overlap)")
def cpus(rs):
    c = med(rs, "cpu_s")
    return "" if c != c else "   [whole command: %.0f ms CPU]" % (c * 1e3)
for how in ("harness", "slicectl"):
    for mib in sorted({r["mib"] for r in rows if r["how"] == how and r["mib"]}):
        g = lambda w: [r for r in rows if r["how"] == how and r["mib"] == mib and r["what"] == w]
        if how == "harness":
            c, r = g("cycle"), g("restore") or g("cycle")
            print(f"{how:9} {mib:5} {'dump (to file)':22} {med(c,'memdump_time_ns')/1e6:8.1f} {gib(c,'memdump_time_ns'):6.2f}   {parts(c)}")
            print(f"{'':9} {'':5} {'restore (from file)':22} {med(r,'memrestore_time_ns')/1e6:8.1f} {gib(r,'memrestore_time_ns'):6.2f}   {parts(r)}")
            print(f"{'':9} {'':5} {'freeze / frozen':22} {med(c,'freezing_time_ns')/1e6:8.2f} / {med(c,'frozen_time_ns')/1e6:.1f} ms")
            continue
        d, r, pd, pr = g("dump"), g("restore"), g("pipe-dump"), g("pipe-restore")
        print(f"{how:9} {mib:5} {'dump (to file)':22} {med(d,'memdump_time_ns')/1e6:8.1f} {gib(d,'memdump_time_ns'):6.2f}   {parts(d)}{cpus(d)}")
        print(f"{'':9} {'':5} {'restore (from file)':22} {med(r,'memrestore_time_ns')/1e6:8.1f} {gib(r,'memrestore_time_ns'):6.2f}   {parts(r)}{cpus(r)}")
        print(f"{'':9} {'':5} {'pipe: dump side':22} {med(pd,'memdump_time_ns')/1e6:8.1f} {gib(pd,'memdump_time_ns'):6.2f}   {parts(pd)}{cpus(pd)}")
        print(f"{'':9} {'':5} {'pipe: transfer+restore':22} {med(pr,'memrestore_time_ns')/1e6:8.1f} {gib(pr,'memrestore_time_ns'):6.2f}   {parts(pr)}{cpus(pr)}")
        print(f"{'':9} {'':5} {'freeze / frozen (file)':22} {med(d,'freezing_time_ns')/1e6:8.2f} / {med(d,'frozen_time_ns')/1e6:.1f} ms (frozen includes the fsync + read-back check)")
PY
