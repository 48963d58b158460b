#!/usr/bin/env python3
"""Phase table of a slice start from VSLICE_TRACE=1 (include/vslice/trace.h).

    phases.py RUNS SLICECTL [ARGS...]     e.g. phases.py 40 build/slicectl run --rm --image busybox b -- /bin/true

Runs the command RUNS times one after another with VSLICE_TRACE=1. Every
process of a start writes "vslice-trace PID MS LABEL" (CLOCK_MONOTONIC) to
stderr; this script adds "exec" (just before it starts slicectl, same clock)
and "exit" (slicectl reaped), sorts each run's points by time and prints, per
interval between consecutive points, the median, mean and p90 in ms, and the
total. An interval is named after the point that ends it ("L.userns": from
the previous point to the user namespace being made).

PHASES_WAIT_LOCK=FILE: before each run, wait until FILE can be flock'ed
(the pool's fill.lock: the warm pool is full again), outside the timing.
"""
import fcntl
import os
import subprocess
import sys
import time


def pct(v, p):
    v = sorted(v)
    if not v:
        return 0.0
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def wait_lock(path):
    if not path:
        return
    try:
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
    except OSError:
        pass


def one_run(argv, env):
    wait_lock(os.environ.get("PHASES_WAIT_LOCK"))
    t0 = time.monotonic() * 1000.0
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    t1 = time.monotonic() * 1000.0
    pts = [(t0, "exec")]
    for line in p.stderr.splitlines():
        f = line.split()
        if len(f) == 4 and f[0] == "vslice-trace":
            pts.append((float(f[2]), f[3]))
    pts.append((t1, "exit"))
    pts.sort()
    return p.returncode, pts


def main():
    runs = int(sys.argv[1])
    argv = sys.argv[2:]
    env = dict(os.environ, VSLICE_TRACE="1")
    order, iv, totals, fails = [], {}, [], 0
    for _ in range(runs):
        rc, pts = one_run(argv, env)
        if rc != 0:
            fails += 1
            continue
        totals.append(pts[-1][0] - pts[0][0])
        for (ta, _), (tb, lb) in zip(pts, pts[1:]):
            if lb not in iv:
                iv[lb] = []
                order.append(lb)
            iv[lb].append(tb - ta)
    print("| phase (ends at) | median ms | mean ms | p90 ms | seen |")
    print("|---|---:|---:|---:|---:|")
    for lb in order:
        v = iv[lb]
        print("| %s | %.2f | %.2f | %.2f | %d |" % (lb, pct(v, 50), sum(v) / len(v), pct(v, 90), len(v)))
    if totals:
        print("| **total** | **%.2f** | %.2f | %.2f | %d |" % (pct(totals, 50), sum(totals) / len(totals),
                                                            pct(totals, 90), len(totals)))
    if fails:
        print("\n%d of %d runs failed" % (fails, runs))


if __name__ == "__main__":
    main()
