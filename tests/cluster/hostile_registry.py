#!/usr/bin/env python3
"""A registry that lies: serves one slice whose result listing tries to make
`slicectl results` write outside its DIR (node names and paths with ../,
absolute paths, paths through a symlink planted in DIR) and files whose
bytes do not match their sha256. Used by test_hostile_registry.sh only.
Prints its port on stdout, then serves until killed."""
import hashlib
import http.server
import json
import sys


def sha(b):
    return hashlib.sha256(b).hexdigest()


GOOD = b"good result\n"
FILES = {
    "/ok.txt": (GOOD, sha(GOOD)),
    "/../../escape-dotdot": (b"x", sha(b"x")),
    "/a/../../../escape-inner": (b"x", sha(b"x")),
    "//etc/escape-abs": (b"x", sha(b"x")),
    "/link/escape-through-symlink": (b"x", sha(b"x")),
    "/lies.txt": (b"what the registry sends\n", sha(b"what the listing promised\n")),
    "/bad\nname": (b"x", sha(b"x")),
}
NODES = ["n1", "../evil", "n1/../../evil2", ".."]


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/v1/slices/x":
            slivers = [{"node": n, "state": "exited", "exit_code": 0, "reason": "exited",
                        "started": 1, "finished": 2, "restarts": 0, "message": "",
                        "results": "complete", "log_size": 0} for n in NODES]
            return self.send(200, {"name": "x", "owner": "u", "state": "succeeded",
                                   "created": 1, "expires": 0, "revision": 1,
                                   "slivers": slivers})
        pre = "/v1/slices/x/slivers/"
        if p.startswith(pre) and p.endswith("/results"):
            files = [{"path": k, "size": len(v[0]), "sha256": v[1], "mode": 420}
                     for k, v in FILES.items()]
            return self.send(200, {"complete": True, "files": files, "missing": []})
        if p.startswith(pre) and "/results/" in p:
            from urllib.parse import unquote
            rel = "/" + unquote(p.split("/results/", 1)[1])
            for k, (data, digest) in FILES.items():
                if k == rel or k.lstrip("/") == rel.lstrip("/"):
                    # the header repeats the listing's (lying) digest
                    return self.send(200, data, "application/octet-stream",
                                     [("X-Vslice-Sha256", digest)])
            return self.send(404, {"error": "no such file"})
        return self.send(404, {"error": "not found: " + p})


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
