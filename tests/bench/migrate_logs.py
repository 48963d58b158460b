#!/usr/bin/env python3
"""Per migration, from the node managers' logs (UTC ms timestamps): when the
target opened the transfer, when it took the source's PUT and how long the
receive took, each counted from the source's "stopping it". A PUT taken ~1 s
after the stop is the source's retry after a 503 (transfer not open yet).
Usage: migrate_logs.py DIR (node*.log in it); prints a markdown table and a
summary line."""
import re, sys, glob, datetime, statistics
ev = {}
def t(s): return datetime.datetime.strptime(s[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
pats = [("stop", re.compile(r"sliver (\S+): migrating to \S+ \((mg_\w+)\): stopping it")),
        ("open", re.compile(r"sliver (\S+): migration (mg_\w+) from \S+: copy made, transfer open")),
        ("recv", re.compile(r"transfer (mg_\w+): receiving sliver (\S+)")),
        ("done", re.compile(r"sliver (\S+): received from \S+ \((mg_\w+)\)")),
        ("start", re.compile(r"sliver (\S+): migrated here from \S+ \((mg_\w+)\) and started"))]
for f in glob.glob(sys.argv[1] + "/node*.log"):
    for line in open(f, errors="replace"):
        for k, p in pats:
            m = p.search(line)
            if m:
                g = m.groups()
                mg = g[1] if g[1].startswith("mg_") else g[0]
                sl = g[0] if mg == g[1] else g[1]
                ev.setdefault(mg, {"slice": sl})[k] = t(line)
print("| slice | migration | transfer open after stop (ms) | PUT taken after stop (ms) | receive (ms) | started after stop (ms) |")
print("|---|---|---|---|---|---|")
waits = []
for mg, e in sorted(ev.items(), key=lambda kv: kv[1].get("stop", 0)):
    if not all(k in e for k in ("stop", "open", "recv", "done", "start")):
        print("| %s | %s | incomplete: %s |" % (e["slice"], mg, ",".join(sorted(e))))
        continue
    ms = lambda a, b: (e[a] - e[b]) * 1000
    waits.append(ms("recv", "stop"))
    print("| %s | %s | %.0f | %.0f | %.0f | %.0f |" % (e["slice"], mg, ms("open", "stop"), ms("recv", "stop"), ms("done", "recv"), ms("start", "stop")))
if waits:
    print()
    print("%d migrations: PUT taken after the stop, median %.0f ms; %d of them 900 ms or more "
          "(the source's 1 s retry after a 503)" % (len(waits), statistics.median(waits),
                                                    sum(1 for w in waits if w >= 900)))
