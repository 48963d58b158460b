#!/usr/bin/env bash
# End-to-end latency of an experiment in cluster mode, as root: a registry
# and one node manager (each in its own network namespace, tests/cluster/
# lib.sh), DEFAULT heartbeats (10 s), and `slicectl submit --wait` of a
# manifest that runs /bin/true on one node, timed from the command's start
# to its exit. Side by side in the same run: the same manifest in local
# mode (no registry, no node manager), the floor of what cluster mode adds
# to. Prints a table; BENCH_E2E_RUNS=10 runs each.
set -u
. "$(cd "$(dirname "$0")" && pwd)/../cluster/lib.sh"
RUNS=${BENCH_E2E_RUNS:-10}
ms() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) * 1000))" "$1"; }
stats() { python3 -c "
import statistics, sys
v = sorted(float(x) for x in sys.argv[1:])
print('%.1f %.1f %.1f' % (statistics.median(v) * 1000, v[0] * 1000, v[-1] * 1000))" "$@"; }

vc_setup_net
vc_start_registry || exit 1
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
vc_add_node node1 1
for _ in $(seq 100); do vsc nodes | grep -q ' ready ' && break; sleep 0.1; done
M=$VC_TMP/m.json
mk() { printf '{"apiVersion": "vslice/v1", "slice": "%s", "nodes": {"count": 1}, "run": {"command": ["/bin/true"]}}\n' "$1" >"$M"; }
mk warm
vsc submit --wait "$M" >/dev/null && vsc destroy warm # the node builds its image once
cluster=()
for i in $(seq "$RUNS"); do
	mk "e$i"
	t0=$(date +%s.%N)
	vsc submit --wait "$M" >/dev/null || { echo "cluster run $i failed"; exit 1; }
	t1=$(date +%s.%N)
	cluster+=("$(echo "$t1 - $t0" | bc)")
	vsc destroy "e$i"
done
# Local mode, same manifest (nodes: count 1 is the local node), same machine,
# in a root and cgroup parent that vc_cleanup removes like a node's.
VC_NODES+=(local)
mkdir -p "$VC_TMP/local/root"
vs_local() { VSLICE_ROOT=$VC_TMP/local/root VSLICE_CGROUP_PARENT=$VC_PFX-local "$SLICECTL" "$@"; }
vs_local image build busybox >/dev/null
local_t=()
for i in $(seq "$RUNS"); do
	mk "l$i"
	t0=$(date +%s.%N)
	vs_local submit --wait "$M" >/dev/null || { echo "local run $i failed"; exit 1; }
	t1=$(date +%s.%N)
	local_t+=("$(echo "$t1 - $t0" | bc)")
	vs_local destroy --force "l$i" >/dev/null
done
read -r cm cmin cmax <<<"$(stats "${cluster[@]}")"
read -r lm lmin lmax <<<"$(stats "${local_t[@]}")"
echo "=== cluster end to end: submit --wait of /bin/true, $RUNS runs each, $(date -u +%FT%TZ), git $(git -C "$VC_REPO" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| mode | median ms | min ms | max ms |"
echo "|---|---:|---:|---:|"
echo "| local (slicectl submit --wait, no daemon) | $lm | $lmin | $lmax |"
echo "| cluster: registry + 1 node manager, default 10 s heartbeat, netns hosts | $cm | $cmin | $cmax |"
