#!/usr/bin/env python3
"""Many slicectl calls, PAR at a time: rate and per-call latency as they pile up.

    starts.py PAR N PREFIX OUT.json -- CMD... {} ...

Runs CMD N times with {} replaced by PREFIX + a 4-digit index (1..N), at most
PAR at once (PAR=1: one after another), and prints, per hundred calls in the
order they were issued, the rate and the median and p90 latency, then the
totals: calls/s overall, median and p90 latency, and the median of the last
hundred over the first hundred (issue 15: "flat per-start cost"). A failed
call is counted and its stderr kept; the run goes on. Stdlib only.
"""
import json
import subprocess
import sys
import threading
import time


def pct(v, p):
    v = sorted(v)
    if not v:
        return 0.0
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def main():
    par, n, prefix, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    lat = [None] * n
    done_at = [None] * n
    errors = []
    nxt = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            name = "%s%04d" % (prefix, i + 1)
            argv = [a.replace("{}", name) for a in cmd]
            t0 = time.monotonic()
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            t1 = time.monotonic()
            lat[i] = (t1 - t0) * 1000.0
            done_at[i] = t1
            if p.returncode != 0:
                with lock:
                    errors.append("%s: exit %d: %s" % (name, p.returncode,
                                                       p.stderr.decode(errors="replace").strip()[-300:]))

    t_start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(par)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_end = time.monotonic()
    total = t_end - t_start
    batches = []
    prev = t_start
    print("| calls | rate /s | median ms | p90 ms |")
    print("|---|---:|---:|---:|")
    for b in range(0, n, 100):
        v = lat[b:b + 100]
        end = max(done_at[b:b + 100])
        # rate of a hundred: from when the previous hundred's last call ended
        rate = len(v) / max(end - prev, 1e-9)
        prev = max(prev, end)
        batches.append({"first": b + 1, "last": b + len(v), "rate": rate, "median_ms": pct(v, 50),
                        "p90_ms": pct(v, 90)})
        print("| %d-%d | %.1f | %.1f | %.1f |" % (b + 1, b + len(v), rate, pct(v, 50), pct(v, 90)))
    res = {
        "par": par, "n": n, "command": cmd, "secs": total, "rate": n / total,
        "median_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "mean_ms": sum(lat) / n, "max_ms": max(lat),
        "failures": len(errors), "errors": errors[:20], "batches": batches,
        "last_over_first_median": batches[-1]["median_ms"] / batches[0]["median_ms"] if batches else None,
    }
    print("| **all %d** | **%.1f** | %.1f | %.1f |" % (n, res["rate"], res["median_ms"], res["p90_ms"]))
    print()
    print("%d calls, %d at a time, in %.2f s: %.1f/s; median %.1f ms, p90 %.1f ms; last hundred's median / "
          "first's = %.2f; %d failed" % (n, par, total, res["rate"], res["median_ms"], res["p90_ms"],
                                         res["last_over_first_median"] or 0, len(errors)))
    for e in errors[:5]:
        print("  " + e)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
