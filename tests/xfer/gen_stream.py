#!/usr/bin/env python3
"""Hand-made migration file system streams (lib/node/slice_xfer.c's format)
for tests/integration/test_xfer.sh and the fuzz seeds.

    gen_stream.py CASE > stream       one stream (framed, correct sha256)
    gen_stream.py --list              the case names, hostile ones first

Every case but "ok" is a stream a hostile or broken sender could send: the
receiver must refuse it (kind refused) and leave the slice unchanged. The
framing and the trailer are always right, so what is refused is the content.
"""
import base64
import hashlib
import io
import struct
import sys
import tarfile

MAGIC = b"VSXFER\0\1"


def frame(archive, chunk=65536, extra=b""):
    out = bytearray(MAGIC)
    for i in range(0, len(archive), chunk):
        c = archive[i : i + chunk]
        out += struct.pack(">I", len(c)) + c
    for i in range(0, len(extra), chunk):
        c = extra[i : i + chunk]
        out += struct.pack(">I", len(c)) + c
    out += struct.pack(">I", 0)
    out += hashlib.sha256(out).digest()
    return bytes(out)


def entry(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link="", pax=None, **kw):
    t = tarfile.TarInfo(name)
    t.type = kind
    t.mode = mode
    t.uid, t.gid = uid, gid
    t.mtime = 1700000000
    t.linkname = link
    t.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(t, k, v)
    if pax:
        t.pax_headers = dict(pax)
    return (t, data)


def archive(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for t, data in entries:
            tf.addfile(t, io.BytesIO(data) if t.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def xattr(name, value):
    return {"LIBARCHIVE.xattr." + name: base64.b64encode(value).decode()}


HEAD = [entry("log", data=b"old output\n", mode=0o600), entry("upper", tarfile.DIRTYPE, mode=0o755)]
EVIL = "vslice-xfer-evil"
CAP_V2 = struct.pack("<IIIII", 0x02000001, 0x2000, 0, 0, 0)
CAP_V3_OUT = struct.pack("<IIIIII", 0x03000001, 0x2000, 0, 0, 0, 70000)


def sparse_bomb():
    # GNU sparse 1.0: the map is the start of the entry's data. 3 M regions
    # in 12 MiB of map: libarchive would hold each region in memory.
    n = 3_000_000
    body = (b"%d\n" % n) + b"0\n0\n" * n
    body += b"\0" * (-len(body) % 512)
    pax = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "upper/bomb",
        "GNU.sparse.realsize": "1000000",
    }
    return HEAD + [entry("upper/GNUSparseFile.0/bomb", data=body, pax=pax)]


CASES = {
    "absolute": HEAD + [entry("/tmp/" + EVIL)],
    "absolute-pax": HEAD + [entry("upper/x", pax={"path": "/tmp/" + EVIL})],
    "dotdot": HEAD + [entry("upper/../../../../tmp/" + EVIL)],
    "dot": HEAD + [entry("upper/./x")],
    "empty-component": HEAD + [entry("upper//x")],
    "through-symlink": HEAD
    + [entry("upper/l", tarfile.SYMTYPE, link="/tmp"), entry("upper/l/" + EVIL)],
    "through-symlink-dir": HEAD
    + [
        entry("upper/l", tarfile.SYMTYPE, link="/tmp"),
        entry("upper/l", tarfile.DIRTYPE, mode=0o755),
        entry("upper/l/" + EVIL),
    ],
    "hardlink-dotdot": HEAD + [entry("upper/h", tarfile.LNKTYPE, link="upper/../../../etc/passwd")],
    "hardlink-absolute": HEAD + [entry("upper/h", tarfile.LNKTYPE, link="/etc/passwd")],
    "hardlink-through-symlink": HEAD
    + [entry("upper/l", tarfile.SYMTYPE, link="/etc"), entry("upper/h", tarfile.LNKTYPE, link="upper/l/passwd")],
    "hardlink-log": HEAD + [entry("upper/h", tarfile.LNKTYPE, link="log")],
    "hardlink-dir": HEAD
    + [entry("upper/d", tarfile.DIRTYPE, mode=0o755), entry("upper/h", tarfile.LNKTYPE, link="upper/d")],
    "device-null": HEAD + [entry("upper/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)],
    "device-block": HEAD + [entry("upper/sda", tarfile.BLKTYPE, mode=0o666, devmajor=8, devminor=0)],
    "uid-outside": HEAD + [entry("upper/suid", mode=0o4755, uid=70000)],
    "gid-outside": HEAD + [entry("upper/sgid", mode=0o2755, gid=65536)],
    "uid-host-root": HEAD + [entry("upper/suid", mode=0o4755, uid=(1 << 31))],
    "dir-uid-outside": HEAD + [entry("upper/d", tarfile.DIRTYPE, mode=0o755, uid=100000)],
    "xattr-trusted": HEAD + [entry("upper/x", pax=xattr("trusted.evil", b"1"))],
    "xattr-selinux": HEAD + [entry("upper/x", pax=xattr("security.selinux", b"system_u:object_r:x:s0"))],
    "xattr-origin": HEAD + [entry("upper/x", pax=xattr("trusted.overlay.origin", b"\0\xfb"))],
    "xattr-on-fifo": HEAD + [entry("upper/f", tarfile.FIFOTYPE, pax=xattr("user.x", b"1"))],
    "cap-v2": HEAD + [entry("upper/x", mode=0o755, pax=xattr("security.capability", CAP_V2))],
    "cap-root-outside": HEAD + [entry("upper/x", mode=0o755, pax=xattr("security.capability", CAP_V3_OUT))],
    "outside-upper": HEAD + [entry("etc/" + EVIL)],
    "no-parent": HEAD + [entry("upper/a/b")],
    "not-walk-order": HEAD
    + [entry("upper/a", tarfile.DIRTYPE, mode=0o755), entry("upper/b", tarfile.DIRTYPE, mode=0o755), entry("upper/a/c")],
    "duplicate": HEAD + [entry("upper/x"), entry("upper/x")],
    "duplicate-upper": HEAD + [entry("upper", tarfile.DIRTYPE, mode=0o755)],
    "log-late": [HEAD[1], HEAD[0]],
    "no-log": [HEAD[1], entry("upper/x")],
    "no-upper": [HEAD[0]],
    "upper-not-dir": [HEAD[0], entry("upper")],
    "sparse-bomb": None,
    "after-end": None,
    "ok": HEAD
    + [
        entry("upper/hello", data=b"hello\n", uid=1000, gid=1000),
        entry("upper/d", tarfile.DIRTYPE, mode=0o1777),
        entry("upper/d/link", tarfile.LNKTYPE, link="upper/hello", uid=1000, gid=1000),
        entry("upper/d/sym", tarfile.SYMTYPE, link="../../../../etc/passwd"),
    ],
}


def stream(case):
    if case == "sparse-bomb":
        return frame(archive(sparse_bomb()))
    if case == "after-end":
        return frame(archive(CASES["ok"]), extra=b"\0" * (1 << 20))
    return frame(archive(CASES[case]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
    elif len(sys.argv) == 2 and sys.argv[1] in CASES:
        sys.stdout.buffer.write(stream(sys.argv[1]))
    else:
        sys.exit("usage: gen_stream.py CASE | --list")
