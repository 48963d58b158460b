#!/usr/bin/env python3
"""Helpers for tests/bench/run.sh (python3 standard library only).

  benchlib.py oci-config SPEC_IN PROFILE OUT [--no-seccomp] [--userns HOSTID]
                         [--cgroups-path P] [--args ARG...]
      runc's `runc spec` config -> the benchmark bundle's config.json, with
      linux.seccomp converted from a Docker-format (or OCI-format) profile.
  benchlib.py start-report HYPERFINE_JSON RESULTS_JSON [COMMANDS_TSV]
      median/mean/p90 per command and the ratios against the targets.
  benchlib.py samples NAME FILE RESULTS_JSON
      summary (median/mean/p90/min/max) of one number per line (unit in NAME).
  benchlib.py uss ROOT RESULTS_JSON
      USS/PSS of each running slice's PID 1 and of its workload.
  benchlib.py phases PERF_SCRIPT_TXT RESULTS_JSON
      per-phase times of `slicectl run --rm ... /bin/true` from a perf trace
      (perf script -F comm,pid,tid,time,event,trace; see run.sh run_phases).
  benchlib.py meminfo-delta BEFORE AFTER N RESULTS_JSON
      where the host memory of N slices went (/proc/meminfo deltas per slice).
  benchlib.py merge RESULTS_JSON KEY JSON_FILE
      results[KEY] = contents of JSON_FILE
  benchlib.py get RESULTS_JSON KEY.PATH
"""
import json
import math
import os
import platform
import sys

# Docker's default capability set: what moby resolves a profile's
# includes/excludes.caps against for a default `docker run`.
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x",
          "ppc64le": "ppc64le", "riscv64": "riscv64"}
SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
             "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM", "s390x": "SCMP_ARCH_S390X",
             "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64"}


def docker_to_oci(prof, arch, caps):
    """Resolve a Docker-format profile for one arch and capability set the way
    moby's profiles/seccomp.setupSeccomp does (minKernel taken as satisfied)."""
    native = SCMP_ARCH[arch]
    if "archMap" in prof:
        arches = [native]
        for m in prof.get("archMap") or []:
            if m.get("architecture") == native:
                arches += m.get("subArchitectures") or []
    else:
        arches = prof.get("architectures") or [native]
    rules = []
    for r in prof.get("syscalls", []):
        inc, exc = r.get("includes") or {}, r.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(c in caps for c in inc["caps"]):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if exc.get("caps") and any(c in caps for c in exc["caps"]):
            continue
        names = r.get("names") or ([r["name"]] if r.get("name") else [])
        out = {"names": names, "action": r["action"]}
        if r.get("args"):
            out["args"] = r["args"]
        if r.get("errnoRet") is not None:
            out["errnoRet"] = r["errnoRet"]
        rules.append(out)
    sc = {"defaultAction": prof["defaultAction"], "architectures": arches, "syscalls": rules}
    if prof.get("defaultErrnoRet") is not None:
        sc["defaultErrnoRet"] = prof["defaultErrnoRet"]
    return sc


def oci_config(argv):
    spec_in, profile, out = argv[0], argv[1], argv[2]
    rest = argv[3:]
    cfg = json.load(open(spec_in))
    arch = GOARCH.get(platform.machine(), "amd64")
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    # Docker's default capability set, as `docker run` gives (runc spec has 3 caps)
    for k in ("bounding", "effective", "permitted"):
        cfg["process"].setdefault("capabilities", {})[k] = list(DOCKER_DEFAULT_CAPS)
    seccomp = True
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--no-seccomp":
            seccomp = False
        elif a == "--userns":
            host = int(rest[i + 1])
            i += 1
            cfg["linux"]["namespaces"].append({"type": "user"})
            cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
            cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
        elif a == "--cgroups-path":
            cfg["linux"]["cgroupsPath"] = rest[i + 1]
            i += 1
        elif a == "--args":
            cfg["process"]["args"] = rest[i + 1:]
            break
        i += 1
    info = {"namespaces": [n["type"] for n in cfg["linux"]["namespaces"]],
            "capabilities": cfg["process"]["capabilities"].get("bounding", [])}
    if seccomp:
        sc = docker_to_oci(json.load(open(profile)), arch, DOCKER_DEFAULT_CAPS)
        cfg["linux"]["seccomp"] = sc
        info["seccomp"] = {"profile": profile, "rules": len(sc["syscalls"]),
                           "names": sum(len(r["names"]) for r in sc["syscalls"]),
                           "architectures": sc["architectures"],
                           "resolved_for_caps": "docker default set"}
    else:
        cfg["linux"].pop("seccomp", None)
    json.dump(cfg, open(out, "w"), indent=2)
    json.dump(info, sys.stdout)
    print()


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def median(v):
    s = sorted(v)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def summary(vals):
    s = sorted(vals)
    return {"n": len(s), "median": median(s), "mean": sum(s) / len(s) if s else float("nan"),
            "p90": pct(s, 90), "min": s[0] if s else None, "max": s[-1] if s else None}


def load_results(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}


def save_results(path, res):
    tmp = path + ".tmp"
    json.dump(res, open(tmp, "w"), indent=2, sort_keys=True)
    os.replace(tmp, path)


def start_report(argv):
    hf, resf = argv[0], argv[1]
    data = json.load(open(hf))
    full = {}
    if len(argv) > 2:
        for line in open(argv[2]):
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                full[k] = v
    res = load_results(resf)
    rows = {}
    print("| tool | command | median ms | mean ms | p90 ms | min ms | max ms | runs | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in data["results"]:
        name = r["command"]
        times = [t * 1000.0 for t in r["times"]]
        s = summary(times)
        s["command"] = full.get(name, name)
        s["failed_runs"] = sum(1 for c in (r.get("exit_codes") or []) if c != 0)
        s["exit_codes_nonzero"] = sorted(set(c for c in (r.get("exit_codes") or []) if c != 0))
        rows[name] = s
        print("| %s | `%s` | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %s |" % (
            name, s["command"], s["median"], s["mean"], s["p90"], s["min"], s["max"], s["n"],
            ("%d (exit %s)" % (s["failed_runs"], ",".join(map(str, s["exit_codes_nonzero"]))))
            if s["failed_runs"] else "0"))
    res["start"] = rows
    ratios = {}
    v = rows.get("vslice")
    if v:
        for other, target, how in (("runc", 0.25, "<="), ("unshare", 2.5, "<=")):
            o = rows.get(other)
            if o:
                q = v["median"] / o["median"]
                ratios["vslice/" + other] = {"ratio": q, "target": target, "met": q <= target}
        b = rows.get("bwrap")
        if b:
            ratios["vslice/bwrap"] = {"ratio": v["median"] / b["median"]}
    w, b = rows.get("vslice-warm"), rows.get("bwrap")
    if w and b:
        # issue 15: a start from a filled warm pool at most bwrap --unshare-all's
        q = w["median"] / b["median"]
        ratios["vslice-warm/bwrap"] = {"ratio": q, "target": 1.0, "met": q <= 1.0}
    if w:
        for other, target in (("runc", 0.25), ("unshare", 2.5)):
            o = rows.get(other)
            if o:
                ratios["vslice-warm/" + other] = {"ratio": w["median"] / o["median"]}
    res["start_ratios"] = ratios
    print()
    for k, r in ratios.items():
        if "target" in r:
            print("%s median ratio %.2f (target <= %.2f): %s" % (
                k, r["ratio"], r["target"], "MET" if r["met"] else "MISSED"))
        else:
            print("%s median ratio %.2f" % (k, r["ratio"]))
    save_results(resf, res)


def samples(argv):
    name, f, resf = argv[0], argv[1], argv[2]
    vals = [float(x) for x in open(f).read().split()]
    s = summary(vals)
    res = load_results(resf)
    res.setdefault("samples", {})[name] = s
    save_results(resf, res)
    print("%-36s median %9.1f  mean %9.1f  p90 %9.1f  max %9.1f  (n=%d)" % (
        name, s["median"], s["mean"], s["p90"], s["max"], s["n"]))


def rollup(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        return None
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def stat_fields(pid):
    """/proc/PID/stat fields as numbered in proc(5): {22: starttime, 23: vsize, ...}."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            txt = fh.read()
    except OSError:
        return {}
    rest = txt[txt.rindex(")") + 2:].split()
    return {i + 3: v for i, v in enumerate(rest)}


def uss(argv):
    root, resf = argv[0], argv[1]
    sd = os.path.join(root, "slices")
    pid1_uss, pid1_pss, pid1_rss, wl_uss, wl_pss = [], [], [], [], []
    dead, nslices = [], 0
    st_ok = st_vsize = 0
    for name in sorted(os.listdir(sd)):
        try:
            st = json.load(open(os.path.join(sd, name, "state.json")))
        except (OSError, ValueError):
            continue
        nslices += 1
        pid = int(st.get("pid") or 0)
        f = stat_fields(pid) if pid > 0 else {}
        rec = str(st.get("pid_starttime"))
        st_ok += f.get(22) == rec
        st_vsize += f.get(23) == rec
        r = rollup(pid) if pid > 0 else None
        if not r:
            dead.append(name)
            continue
        pid1_uss.append(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0))
        pid1_pss.append(r.get("Pss", 0))
        pid1_rss.append(r.get("Rss", 0))
        for c in children(pid):
            rc = rollup(c)
            if rc:
                wl_uss.append(rc.get("Private_Clean", 0) + rc.get("Private_Dirty", 0))
                wl_pss.append(rc.get("Pss", 0))
    out = {"slices": nslices, "alive_pid1": len(pid1_uss), "dead": dead[:20], "n_dead": len(dead),
           "pid1_uss_kib": summary(pid1_uss), "pid1_pss_kib": summary(pid1_pss),
           "pid1_rss_kib": summary(pid1_rss),
           "workload_uss_kib": summary(wl_uss), "workload_pss_kib": summary(wl_pss),
           "workloads": len(wl_uss),
           # state.json pid_starttime against /proc/PID/stat field 22 (starttime)
           # and field 23 (vsize): what slicectl's liveness check compares with
           "pid_starttime_matches_field22": st_ok, "pid_starttime_matches_field23_vsize": st_vsize}
    res = load_results(resf)
    res.setdefault("density", {})["memory"] = out
    save_results(resf, res)
    u = out["pid1_uss_kib"]
    p = out["pid1_pss_kib"]
    print("slices with a live PID 1: %d of %d" % (out["alive_pid1"], nslices))
    print("state.json pid_starttime equals /proc/PID/stat field 22 (starttime) for %d, field 23 (vsize) for %d" % (
        st_ok, st_vsize))
    print("PID 1 USS KiB: mean %.1f, median %.1f, max %s (target <= 300)" % (u["mean"], u["median"], u["max"]))
    print("PID 1 PSS KiB: mean %.1f, max %s; RSS KiB mean %.1f" % (p["mean"], p["max"], out["pid1_rss_kib"]["mean"]))
    w = out["workload_uss_kib"]
    print("workload (sleep) USS KiB: mean %.1f, max %s; PSS mean %.1f" % (w["mean"], w["max"], out["workload_pss_kib"]["mean"]))


PHASES = [
    ("startup_create", "slicectl exec, parse, write spec/state (fsyncs), fork launcher"),
    ("cgroup_attach", "first write to a v1 cgroup.procs (RCU grace period when idle)"),
    ("sliver_setup", "user/pid/mnt/net/... namespaces, idmapped overlay, /dev /proc /sys, pivot_root, caps, seccomp, exec"),
    ("workload", "/bin/true runs"),
    ("pid1_exit", "PID 1 exits: namespace, overlayfs and netns teardown, until slicectl acts"),
    ("destroy_exit", "--rm: destroy (cgroups, upper dir, state), slicectl exits"),
]


def phases(argv):
    txt, resf = argv[0], argv[1]
    ev = []
    for line in open(txt):
        # "comm pid/tid time: event: trace" (perf script -F comm,pid,tid,time,event,trace)
        try:
            head, event, trace = line.split(": ", 2)
        except ValueError:
            continue
        hp = head.split()
        if len(hp) < 3:
            continue
        try:
            t = float(hp[-1])
            ids = hp[-2].split("/")
            pid, tid = int(ids[0]), int(ids[-1])
        except ValueError:
            continue
        comm = " ".join(hp[:-2])
        ev.append((t, pid, tid, comm, event.strip(), trace.strip()))
    ev.sort()
    runs, cur = [], None
    for t, pid, tid, comm, e, tr in ev:
        if e == "sched:sched_process_exec" and tr.startswith("filename=") and \
                "slicectl" in os.path.basename(tr.split()[0]):
            cur = {"main": pid, "t0": t, "fsync": 0.0, "last_write": {}, "_fs": None}
            runs.append(cur)
            continue
        if cur is None:
            continue
        if e == "syscalls:sys_enter_write":
            cur["last_write"][tid] = t
        elif e == "cgroup:cgroup_attach_task" and "a2" not in cur and pid != cur["main"] \
                and "dst_level=1 " not in tr:
            # the launcher's move into the slice's own cgroup (not a helper
            # thread of slicectl touching the parent cgroup)
            cur["a2"] = t
            cur["a1"] = cur["last_write"].get(tid, t)
        elif e == "cgroup:cgroup_attach_task" and "h1" not in cur and pid == cur["main"]:
            # a slicectl thread moving into the parent cgroup to start the
            # grace period early: when did it start it?
            cur["h1"] = cur["last_write"].get(tid, t)
        elif e == "sched:sched_process_exec" and "filename=/bin/true" in tr and "x" not in cur:
            cur["x"] = t
        elif e == "sched:sched_process_exit" and comm == "true" and "x" in cur and "e" not in cur:
            cur["e"] = t
        elif e == "sched:sched_process_exit" and comm.startswith("vslice-init") and "e" in cur and "p1" not in cur:
            cur["p1"] = t
        elif e in ("syscalls:sys_enter_rmdir", "syscalls:sys_enter_unlinkat") and pid == cur["main"] \
                and "p1" in cur and "d" not in cur:
            cur["d"] = t
        elif e == "syscalls:sys_enter_fsync" and pid == cur["main"]:
            cur["_fs"] = t
        elif e == "syscalls:sys_exit_fsync" and pid == cur["main"] and cur["_fs"] is not None:
            cur["fsync"] += t - cur["_fs"]
            cur["_fs"] = None
        elif e == "sched:sched_process_exit" and tid == cur["main"] and "d" in cur and "end" not in cur:
            cur["end"] = t
    keys = ["t0", "a1", "a2", "x", "e", "p1", "d", "end"]
    good = [r for r in runs if all(k in r for k in keys)]
    per = {name: [] for name, _ in PHASES}
    per["total"], per["fsync_total"] = [], []
    for r in good:
        ms = lambda a, b: (r[b] - r[a]) * 1000.0
        per["startup_create"].append(ms("t0", "a1"))
        per["cgroup_attach"].append(ms("a1", "a2"))
        per["sliver_setup"].append(ms("a2", "x"))
        per["workload"].append(ms("x", "e"))
        per["pid1_exit"].append(ms("e", "d"))
        per["destroy_exit"].append(ms("d", "end"))
        per["total"].append(ms("t0", "end"))
        per["fsync_total"].append(r["fsync"] * 1000.0)
        if "h1" in r:
            per.setdefault("gp_head_start", []).append(ms("h1", "a1"))
    out = {"runs_traced": len(runs), "runs_complete": len(good),
           "phases_ms": {k: summary(v) for k, v in per.items() if v},
           "descriptions": dict(PHASES)}
    res = load_results(resf)
    res["phases"] = out
    save_results(resf, res)
    print("%d of %d traced runs complete" % (len(good), len(runs)))
    print("| phase | median ms | mean ms | p90 ms | what |")
    print("|---|---:|---:|---:|---|")
    for name, desc in PHASES + [("total", "exec of slicectl to its exit (under tracing)"),
                                ("fsync_total", "fsync(2) time of slicectl, whole run (in the phases above)"),
                                ("gp_head_start", "how much earlier a slicectl helper thread's attach to the parent cgroup started the grace period")]:
        if name in out["phases_ms"]:
            s = out["phases_ms"][name]
            print("| %s | %.2f | %.2f | %.2f | %s |" % (name, s["median"], s["mean"], s["p90"], desc))


def meminfo_delta(argv):
    def load(f):
        out = {}
        for line in open(f):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
        return out
    a, b, n, resf = load(argv[0]), load(argv[1]), max(1, int(argv[2])), argv[3]
    keys = ["MemAvailable", "MemFree", "AnonPages", "Shmem", "Cached", "Slab", "SReclaimable", "SUnreclaim",
            "KernelStack", "PageTables", "Percpu", "VmallocUsed"]
    d = {k: (a[k] - b[k]) if k in ("MemAvailable", "MemFree") else (b[k] - a[k]) for k in keys if k in a and k in b}
    per = {k: round(v / n, 1) for k, v in d.items()}
    res = load_results(resf)
    res.setdefault("density", {})["meminfo_delta_kib"] = {"total": d, "per_slice": per, "slices": n}
    save_results(resf, res)
    print("host memory per slice (KiB, /proc/meminfo delta / %d): %s" % (
        n, ", ".join("%s %.0f" % (k, v) for k, v in per.items())))


def merge(argv):
    resf, key, f = argv[0], argv[1], argv[2]
    res = load_results(resf)
    cur = res
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = json.load(open(f))
    save_results(resf, res)


def get(argv):
    cur = load_results(argv[0])
    for p in argv[1].split("."):
        cur = cur[p]
    print(cur if not isinstance(cur, float) else "%.3f" % cur)


if __name__ == "__main__":
    cmds = {"oci-config": oci_config, "start-report": start_report, "samples": samples,
            "uss": uss, "phases": phases, "meminfo-delta": meminfo_delta, "merge": merge, "get": get}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.stderr.write(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]](sys.argv[2:])
