#!/usr/bin/env python3
"""Fill a slice's upper dir for the migration benchmarks: DIR MIB ID_BASE.

The migration benchmarks' data set (migrate.sh, migrate_cluster.sh): 40% of the bytes in files of
1-64 KiB (100 to a directory), 60% in four large files, owned by the slice's
mapped root (ID_BASE). Deterministic file sizes (seeded by MIB); the bytes
are slices of one 8 MiB random pool. Prints the number of files.
"""
import os
import random
import sys

top, mib, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(mib)
pool = os.urandom(8 << 20)
total = mib << 20
small, n = 0, 0
os.makedirs(top)


def put(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(left, 4 << 20)
            off = rnd.randrange(0, len(pool) - k + 1)
            f.write(pool[off:off + k])
            left -= k
    os.chown(path, base, base)


while small < total * 0.4:
    d = "%s/d%04d" % (top, n // 100)
    if n % 100 == 0:
        os.makedirs(d)
        os.chown(d, base, base)
    size = rnd.randint(1 << 10, 64 << 10)
    put("%s/f%06d" % (d, n), size)
    small += size
    n += 1
for i in range(4):
    put("%s/large%d" % (top, i), int(total * 0.15))
os.chown(top, base, base)
print(n + 4)
