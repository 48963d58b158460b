#!/usr/bin/env python3
"""Hostile clients for tests/cluster/test_abuse.sh (each bounded in time).

  abuse_client.py hoard HOST PORT N SRC[,SRC...] HOLD_SECS
      Open N TCP connections to HOST:PORT (source addresses round-robin),
      send nothing. Prints "connected C" once all connects were tried, then
      waits up to HOLD_SECS for the server to close them and prints
      "open O after S s" (O: still open) at the end.
  abuse_client.py bodies HOST PORT TOKEN N SIZE HOLD_SECS
      N connections each POST /v1/slices with Content-Length SIZE, sending
      SIZE-1 bytes (the request never completes). Prints "status CODE" for
      each early answer, then "held H" and sleeps HOLD_SECS (the test reads
      the registry's memory meanwhile, then kills it).
  abuse_client.py readers HOST PORT TOKEN PATH N HOLD_SECS
      N connections each GET PATH and never read the answer (small receive
      buffers). Prints "sent N", then sleeps HOLD_SECS.
  abuse_client.py trickle HOST PORT TOKEN PATH SIZE HOLD_SECS
      One chunked PUT PATH declaring SIZE bytes (X-Vslice-Size) that sends
      two bytes and waits (an upload in flight). Prints "sent" once the
      headers and the bytes are out, "status CODE" for an answer. SIGUSR1
      ends the body there (short of SIZE: the server refuses it); SIGTERM
      drops the connection (a client that dies mid-upload).
"""
import os
import select
import socket
import sys
import time


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hoard(host, port, n, srcs, hold):
    raise_nofile()
    srcs = srcs.split(",")
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((srcs[i % len(srcs)], 0))
        s.settimeout(3)
        try:
            s.connect((host, port))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            s.close()
    print("connected %d" % len(socks), flush=True)
    t0 = time.monotonic()
    open_ = list(socks)
    while open_ and time.monotonic() - t0 < hold:
        r, _, _ = select.select(open_[:1000], [], [], 0.5)
        for s in r:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                open_.remove(s)
                s.close()
    print("open %d after %d s" % (len(open_), int(time.monotonic() - t0)), flush=True)


def bodies(host, port, token, n, size, hold):
    socks = []
    head = ("POST /v1/slices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (token, size))
    chunk = b" " * (1 << 20)
    answered = 0
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(head.encode())
        left = size - 1
        try:
            while left > 0:
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break  # answered early (refused): stop sending
                k = min(left, len(chunk))
                s.sendall(chunk[:k])
                left -= k
        except OSError:
            pass
        socks.append(s)
    time.sleep(1)
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if r:
            try:
                line = s.recv(200).split(b"\r\n")[0].decode(errors="replace")
            except OSError:
                line = "reset"
            print("status %s" % (line.split(" ")[1] if " " in line else line), flush=True)
            answered += 1
    print("held %d" % (len(socks) - answered), flush=True)
    time.sleep(hold)  # the test reads the registry's memory, then kills us
    for s in socks:
        s.close()


def readers(host, port, token, path, n, hold):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (path, token)).encode())
        socks.append(s)
    print("sent %d" % len(socks), flush=True)
    time.sleep(hold)  # the test reads the registry's memory, then kills us
    for s in socks:
        s.close()


def trickle(host, port, token, path, size, hold):
    import signal
    s = socket.create_connection((host, port), timeout=hold)
    s.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "X-Vslice-Size: %d\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nx\n\r\n"
               % (path, token, size)).encode())
    signal.signal(signal.SIGUSR1, lambda *_: s.sendall(b"0\r\n\r\n"))
    print("sent", flush=True)
    deadline = time.time() + hold
    while time.time() < deadline:
        try:
            data = s.recv(4096)
        except InterruptedError:
            continue
        except socket.timeout:
            break
        if not data:
            break
        head = data.split(b"\r\n", 1)[0].split()
        if len(head) > 1 and head[0].startswith(b"HTTP/"):
            print("status " + head[1].decode(), flush=True)
            break
    s.close()


def main():
    a = sys.argv[1:]
    if a[0] == "hoard":
        hoard(a[1], int(a[2]), int(a[3]), a[4], float(a[5]))
    elif a[0] == "bodies":
        bodies(a[1], int(a[2]), a[3], int(a[4]), int(a[5]), float(a[6]))
    elif a[0] == "readers":
        readers(a[1], int(a[2]), a[3], a[4], int(a[5]), float(a[6]))
    elif a[0] == "trickle":
        trickle(a[1], int(a[2]), a[3], a[4], int(a[5]), float(a[6]))
    else:
        sys.exit("unknown mode " + a[0])


if __name__ == "__main__":
    main()
