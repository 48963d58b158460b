#!/usr/bin/env python3
"""What --net bridge adds to a start, two builds side by side in one run.

    net_setup_ab.py ROUNDS OLD_SLICECTL NEW_SLICECTL      (run by net_setup_ab.sh)

Round-robin, ROUNDS rounds (+2 warm-up rounds not counted) of
`run --rm --net none` and `run --rm --net bridge`, old and new build in turn
(the order rotates each round), each with VSLICE_TRACE=1 as phases.py reads
it. The environment (VSLICE_ROOT, VSLICE_BRIDGE, the node's network
namespace) is the caller's. Prints, per build: wall time of each mode
(median, p90), the difference bridge - none (medians), the same for
spans between trace points (SPANS: the start alone, what `run -d` waits
for; the spawn; the destroy), and the table of the
net.* / destroy.net / L.netlo steps (median, p90 ms), and the load average
before and after.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phases import one_run, pct  # noqa: E402


# Spans of a start (trace points): the start alone (what `run -d` waits
# for), the spawn (launcher and host set-up up to PID 1), the destroy.
SPANS = [("start", "start.done"), ("start.spawn", "spawn.pid1"), ("destroy", "destroy.done")]

# Who waits for whom in a bridged start (z - a, median; signed: below zero
# the other side was the late one). The launcher's barrier points and the
# caller's message points exist from session 9 on ("-" for older builds).
WAITS = [
    ("net.nft", "spawn.net_ready", "caller idle: host half done, waiting for the launcher's netns"),
    ("spawn.net_ready", "net.veth", "caller: veth (one request + the fdb entry)"),
    ("spawn.net_ready", "net.slice_side", "caller: veth, caps, lo + eth0 (session 9 on)"),
    ("L.userns", "L.barrier", "launcher: mounts, unshare, hostname (beside the caller)"),
    ("spawn.rootfs_ready", "net.etc", "caller: /etc files"),
    ("L.barrier", "L.ack", "launcher waits at the barrier for the (first) answer"),
    ("L.ack", "L.eth0", "launcher: eth0 from inside (before session 9)"),
    ("L.barrier", "L.netlo", "launcher at the barrier, in all"),
]


def main():
    rounds, old, new = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    env = dict(os.environ, VSLICE_TRACE="1")
    builds = [("old", old), ("new", new)]
    modes = [("none", ["--net", "none"], "an"), ("bridge", ["--net", "bridge"], "ab")]
    wall = {(b, m): [] for b, _ in builds for m, _, _ in modes}
    span = {(b, m, a): [] for b, _ in builds for m, _, _ in modes for a, _ in SPANS}
    steps = {b: {} for b, _ in builds}
    waits = {(b, a, z): [] for b, _ in builds for a, z, _ in WAITS}
    order = {b: [] for b, _ in builds}
    fails = 0
    load0 = open("/proc/loadavg").read().split()[:3]
    jobs = [(b, exe, m, args, name) for b, exe in builds for m, args, name in modes]
    for i in range(rounds + 2):
        k = i % len(jobs)
        for b, exe, m, args, name in jobs[k:] + jobs[:k]:
            rc, pts = one_run([exe, "run", "--rm"] + args + [name, "--", "/bin/true"], env)
            if rc != 0:
                fails += 1
                continue
            if i < 2:
                continue
            wall[(b, m)].append(pts[-1][0] - pts[0][0])
            at = {lb: t for t, lb in pts}
            for a, z in SPANS:
                if a in at and z in at:
                    span[(b, m, a)].append(at[z] - at[a])
            if m != "bridge":
                continue
            for a, z, _ in WAITS:
                if a in at and z in at:
                    waits[(b, a, z)].append(at[z] - at[a])
            for (ta, _), (tb, lb) in zip(pts, pts[1:]):
                if not (lb.startswith("net.") or lb.startswith("destroy.") or lb in ("L.netlo", "L.eth0")):
                    continue
                if lb not in steps[b]:
                    steps[b][lb] = []
                    order[b].append(lb)
                steps[b][lb].append(tb - ta)
    load1 = open("/proc/loadavg").read().split()[:3]
    print("load average before: %s, after: %s; %d rounds; %d failed runs" %
          (" ".join(load0), " ".join(load1), rounds, fails))
    print()
    print("| `run --rm ... /bin/true` | old median ms (p90) | new median ms (p90) |")
    print("|---|---:|---:|")
    for m, _, _ in modes:
        print("| --net %s | %.2f (%.2f) | %.2f (%.2f) |" %
              (m, pct(wall[("old", m)], 50), pct(wall[("old", m)], 90),
               pct(wall[("new", m)], 50), pct(wall[("new", m)], 90)))
    add = {b: pct(wall[(b, "bridge")], 50) - pct(wall[(b, "none")], 50) for b, _ in builds}
    print("| added by bridge (median - median) | %+.2f | %+.2f |" % (add["old"], add["new"]))
    for a, z in SPANS:
        for m, _, _ in modes:
            o, n = span[("old", m, a)], span[("new", m, a)]
            print("| %s .. %s, --net %s | %.2f (%.2f) | %.2f (%.2f) |" %
                  (a, z, m, pct(o, 50), pct(o, 90), pct(n, 50), pct(n, 90)))
        add = {b: pct(span[(b, "bridge", a)], 50) - pct(span[(b, "none", a)], 50) for b, _ in builds}
        print("| %s .. %s: added by bridge | %+.2f | %+.2f |" % (a, z, add["old"], add["new"]))
    print()
    print("| step (bridge start) | old median (p90) | new median (p90) |")
    print("|---|---:|---:|")
    labels = order["old"] + [lb for lb in order["new"] if lb not in order["old"]]
    for lb in labels:
        cells = []
        for b, _ in builds:
            v = steps[b].get(lb)
            cells.append("%.2f (%.2f)" % (pct(v, 50), pct(v, 90)) if v else "-")
        print("| %s | %s | %s |" % (lb, cells[0], cells[1]))
    print()
    print("| who waits (bridge start, z - a) | old median (p90) | new median (p90) |")
    print("|---|---:|---:|")
    for a, z, what in WAITS:
        cells = []
        for b, _ in builds:
            v = waits[(b, a, z)]
            cells.append("%.2f (%.2f)" % (pct(v, 50), pct(v, 90)) if v else "-")
        print("| %s .. %s: %s | %s | %s |" % (a, z, what, cells[0], cells[1]))


if __name__ == "__main__":
    main()
