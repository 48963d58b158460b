#!/bin/bash
# vslice benchmarks (`sudo make bench`): start latency side by side with runc,
# bubblewrap and bare unshare (one hyperfine run), the micro-costs behind it,
# and density (1000 idle slices: start rate, PID 1 USS, host memory, destroy
# rate). Results: build/bench/results.json (+ hyperfine JSON/markdown, logs);
# the write-up with numbers is docs/benchmarks.md.
#
# Everything runs in a private VSLICE_ROOT (/tmp/vslice-bench.XXXXXX) and cgroup
# parent (vslice-bench-$$); the EXIT trap destroys every slice, runc container,
# cgroup and file this script made. Environment knobs:
#   SLICECTL=path        slicectl to measure (default build/slicectl)
#   BENCH_RUNS=100       hyperfine runs per command (5 warm-ups)
#   BENCH_DENSITY=1000   idle slices to start
#   BENCH_DENSITY_MAX_SECS=480   stop starting slices after this long
#   BENCH_SKIP_START=1 / BENCH_SKIP_DENSITY=1   skip a part
#   BENCH_POOL=8         warm pool size for the warm-start row and the warm phase table
#   BENCH_PAR=4          starts (and destroys) at once in the overlapped density run
#   BENCH_PHASE_RUNS=40  runs per phase table (VSLICE_TRACE=1, tests/bench/phases.py)
#   BENCH_BEFORE=path    another slicectl (an older build with the same trace points)
#                        measured beside: a "vslice-before" row and phase table
#   BENCH_SKIP_E2E=1        skip the cluster end-to-end latency (tests/bench/cluster_e2e.sh)
#   BENCH_SKIP_NET=1        skip the networking benchmarks (tests/bench/net.sh: veth,
#                           bridge and overlay throughput/RTT, set-up cost; "net" in
#                           results.json and net.md)
#   BENCH_SKIP_PRECOPY=1    skip pre-copy on one node (tests/bench/precopy.sh:
#                           rounds, bytes, freeze time; precopy.md / precopy.json)
#   BENCH_SKIP_MIGRATE=1    skip the cold-migration stream vs tar (tests/bench/migrate.sh)
#   BENCH_SKIP_MIGRATE_CLUSTER=1  skip slicectl migrate / node drain --migrate end to end
#                           (tests/bench/migrate_cluster.sh; migrate_cluster.md)
#   BENCH_SKIP_MIGRATE_LIVE=1   skip live and pre-copy migration between two hosts
#                           (tests/bench/migrate_live.sh: downtime/total against memory
#                           size and dirty rate; migrate_live.md, .tsv, .png)
#   BENCH_SKIP_MIGRATE_WATCH=1  skip the migration with a client watching
#                           (tests/bench/migrate_watch.sh; migrate_watch.md, .png)
#   BENCH_SKIP_CKPT=1       skip the checkpoint speed of the frozen path
#                           (tests/bench/ckpt.sh 256 1024: dump, pipe transfer,
#                           restore; table in ckpt.txt, rows in ckpt.jsonl)
#   BENCH_SKIP_REGISTRY=1   skip the registry benchmarks (tests/bench/registry.sh:
#                           scheduler, HTTP API, long-poll fan-out; results under
#                           "registry" in results.json and in registry.md)
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/tests/bench
SLICECTL=${SLICECTL:-$REPO/build/slicectl}
OUT=${BENCH_OUT:-$REPO/build/bench}
RUNS=${BENCH_RUNS:-100}
WARMUP=${BENCH_WARMUP:-5}
DENSITY_N=${BENCH_DENSITY:-1000}
DENSITY_MAX_SECS=${BENCH_DENSITY_MAX_SECS:-480}
POOL_N=${BENCH_POOL:-8}
PAR=${BENCH_PAR:-4}
PHASE_RUNS=${BENCH_PHASE_RUNS:-40}
PY=$(command -v python3 || true)

say() { printf '%s\n' "$*"; }
hdr() {
	printf '\n=== %s ===\n' "$*"
	# other load on the machine shows in every number: keep it with the results
	[ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && printf '%s load %s: %s\n' "$(date -u +%T)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$*" >>"$OUT/load.log"
}
die() {
	say "bench: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (sudo make bench)"
[ -x "$SLICECTL" ] || die "no slicectl at $SLICECTL (make, or set SLICECTL=)"
[ -n "$PY" ] || die "python3 is needed for the JSON and statistics helpers"
command -v gcc >/dev/null || die "gcc is needed for the helper programs"

mkdir -p "$OUT" "$OUT/bin"
RES=$OUT/results.json
rm -f "$RES" "$OUT"/*.log "$OUT"/*.txt
export VSLICE_ROOT
VSLICE_ROOT=$(mktemp -d /tmp/vslice-bench.XXXXXX)
# mktemp gives 0700; the slice's mapped root must be able to traverse the root
# to reach its overlay (a 0700 root fails with "bind .../rootfs: Permission denied").
chmod 0755 "$VSLICE_ROOT"
export VSLICE_CGROUP_PARENT=vslice-bench-$$
CGP=$VSLICE_CGROUP_PARENT
RUNC_ROOT=$VSLICE_ROOT/runc-state
# The warm-start row's own root, whose pool/size is the node's pool
# setting: no row runs under `env` (an exec the bwrap and unshare rows
# do not pay), and the cold rows run where no pool is set.
WARM_ROOT=$VSLICE_ROOT/warm
unset VSLICE_POOL
SYSCTL_RESTORE=()

destroy_all_slices() {
	[ -d "$VSLICE_ROOT/slices" ] || return 0
	local names
	names=$(ls "$VSLICE_ROOT/slices" 2>/dev/null)
	[ -n "$names" ] || return 0
	# shellcheck disable=SC2086
	printf '%s\n' $names | xargs -r -n 50 "$SLICECTL" destroy --force >/dev/null 2>&1
}

# The warm pool off and emptied (lib/runtime/pool.c): a run with
# VSLICE_POOL=0 starts a drain, fill.lock is held until it is done.
drain_pool() { # [ROOT]
	local root=${1:-$VSLICE_ROOT}
	[ -d "$root/pool" ] || return 0
	rm -f "$root/pool/size"
	VSLICE_POOL=0 "$SLICECTL" --root "$root" run --rm --image busybox drain -- true >/dev/null 2>&1
	flock "$root/pool/fill.lock" true
}

cleanup() {
	local rc=$? d c p m
	set +e
	trap - EXIT INT TERM
	drain_pool "$WARM_ROOT"
	drain_pool
	# a pool left by a crash: its nsfs bind mounts
	for m in "$VSLICE_ROOT"/pool/*/ns "$VSLICE_ROOT"/pool/*/ns/* "$VSLICE_ROOT"/slices/*/ns \
		"$WARM_ROOT"/pool/*/ns "$WARM_ROOT"/pool/*/ns/* "$WARM_ROOT"/slices/*/ns; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m"
	done
	if command -v runc >/dev/null && [ -d "$RUNC_ROOT" ]; then
		for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
			runc --root "$RUNC_ROOT" delete --force "$c" >/dev/null 2>&1
		done
	fi
	destroy_all_slices
	VSLICE_ROOT=$WARM_ROOT destroy_all_slices
	# Anything left in our cgroups (a crash half way): thaw, kill, rmdir.
	for d in /sys/fs/cgroup/*/"$CGP" /sys/fs/cgroup/"$CGP"; do
		[ -d "$d" ] || continue
		find "$d" -depth -type d 2>/dev/null | while read -r c; do
			[ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state" 2>/dev/null
			for p in $(cat "$c/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
			rmdir "$c" 2>/dev/null || { sleep 0.2; rmdir "$c" 2>/dev/null; }
		done
	done
	# Mounts under our root (none expected on the host side).
	findmnt -rn -o TARGET 2>/dev/null | grep -F "$VSLICE_ROOT/" | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
	case "$VSLICE_ROOT" in /tmp/vslice-bench.*) rm -rf --one-file-system "$VSLICE_ROOT" ;; esac
	for m in "${SYSCTL_RESTORE[@]}"; do
		sysctl -q -w "$m" >/dev/null 2>&1 && say "bench: restored sysctl $m"
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { printf '%s' "$EPOCHREALTIME"; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }

# ---------------------------------------------------------------- machine --
hdr "machine"
cgmode=v2
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ]; then
	if [ -d /sys/fs/cgroup/unified ]; then cgmode=hybrid; else cgmode=v1; fi
fi
runc_v=$(runc --version 2>/dev/null | head -1)
bwrap_v=$(bwrap --version 2>/dev/null | head -1)
{
	printf '{"date": "%s", "nproc": %s, "mem_total_kib": %s, "kernel": "%s", "cgroup_mode": "%s",\n' \
		"$(date -u +%FT%TZ)" "$(nproc)" "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" "$(uname -r)" "$cgmode"
	printf ' "cpu": "%s", "slicectl": "%s", "git": "%s",\n' \
		"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$SLICECTL" \
		"$(git -C "$REPO" describe --always --dirty 2>/dev/null)"
	printf ' "runc": "%s", "bwrap": "%s", "hyperfine": "%s", "unshare": "%s",\n' "$runc_v" "$bwrap_v" \
		"$(hyperfine --version 2>/dev/null)" "$(unshare --version 2>/dev/null | head -1)"
	printf ' "loadavg_at_start": "%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.json"
"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" machine "$OUT/machine.json"
cat "$OUT/machine.json"

# ---------------------------------------------------------------- helpers --
for p in uniqid cgattach exitlat; do
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$OUT/bin/$p" "$BENCH_DIR/$p.c" ||
		die "cannot build tests/bench/$p.c"
done

hdr "image"
"$SLICECTL" image build busybox >/dev/null || die "slicectl image build busybox failed"
ROOTFS=$VSLICE_ROOT/images/busybox/rootfs
[ -x "$ROOTFS/bin/true" ] || die "no $ROOTFS/bin/true after image build"
say "busybox image at $ROOTFS"

# ------------------------------------------------------------ start latency --
run_start_latency() {
	hdr "start latency: vslice vs runc vs bwrap vs unshare (hyperfine, $RUNS runs, $WARMUP warm-ups)"
	local names=() cmds=() preps=() notes=()
	# every command gets a prepare (hyperfine takes one per command or one for all)
	add() { names+=("$1"); cmds+=("$2"); preps+=("${3:-true}"); }
	try() { # NAME CMD [PREPARE]: keep the command only if one run succeeds
		local out
		# shellcheck disable=SC2086
		if out=$($2 2>&1 </dev/null); then
			add "$1" "$2" "${3:-}"
		else
			say "NOTE: $1 left out: \`$2\` failed: $(printf '%s' "$out" | tail -3)"
			notes+=("$1 left out: $(printf '%s' "$out" | tail -1)")
		fi
	}

	# cold: VSLICE_POOL is not set and this root has no pool/size
	try vslice "$SLICECTL run --rm --image busybox b -- /bin/true"
	[ -n "${BENCH_BEFORE:-}" ] &&
		try vslice-before "$BENCH_BEFORE run --rm --image busybox b -- /bin/true"
	# issue 15: a start from a filled warm pool, in a root whose pool/size
	# says so (the prepare waits until the background refill of the
	# previous run is done: fill.lock)
	mkdir -p "$WARM_ROOT/pool"
	chmod 0755 "$WARM_ROOT"
	echo "$POOL_N" >"$WARM_ROOT/pool/size"
	"$SLICECTL" --root "$WARM_ROOT" image build busybox >/dev/null ||
		die "slicectl --root $WARM_ROOT image build busybox failed"
	try vslice-warm "$SLICECTL --root $WARM_ROOT run --rm --image busybox b -- /bin/true" \
		"flock $WARM_ROOT/pool/fill.lock true"

	# runc: bundle with a copy of the same rootfs, `runc spec` + Docker's profile.
	if command -v runc >/dev/null; then
		local B=$VSLICE_ROOT/runc-bundle prof=$REPO/tests/unit/data/docker-default.json src=docker
		if [ ! -f "$prof" ]; then
			prof=$REPO/policies/seccomp/default.json
			src=vslice-default
			say "NOTE: tests/unit/data/docker-default.json missing: runc gets policies/seccomp/default.json"
		fi
		mkdir -p "$B" "$RUNC_ROOT"
		cp -a "$ROOTFS" "$B/rootfs"
		(cd "$B" && runc spec && mv config.json spec.json)
		local idbase=$((4000000000 - 65536)) # a host id range no slice allocation starts near
		local userns=(--userns $idbase) info
		info=$("$PY" "$BENCH_DIR/benchlib.py" oci-config "$B/spec.json" "$prof" "$B/config.json" \
			"${userns[@]}" --cgroups-path "/$CGP/runc")
		if ! runc --root "$RUNC_ROOT" run --bundle "$B" probe-$$ </dev/null >/dev/null 2>"$OUT/runc-probe.log"; then
			say "NOTE: runc refused the user namespace ($(tail -1 "$OUT/runc-probe.log")); running runc without it"
			notes+=("runc without user namespace: $(tail -1 "$OUT/runc-probe.log")")
			userns=()
			info=$("$PY" "$BENCH_DIR/benchlib.py" oci-config "$B/spec.json" "$prof" "$B/config.json" \
				--cgroups-path "/$CGP/runc")
		fi
		printf '{"seccomp_source": "%s", "config": %s}\n' "$src" "$info" >"$OUT/runc-config.json"
		"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" runc_config "$OUT/runc-config.json"
		say "runc bundle: $info"
		try runc "$OUT/bin/uniqid runc --root $RUNC_ROOT run --bundle $B bench-@ID@"
		# the same bundle without seccomp, to show what the profile costs runc
		local B2=$VSLICE_ROOT/runc-bundle-noseccomp
		mkdir -p "$B2"
		cp -a "$ROOTFS" "$B2/rootfs"
		"$PY" "$BENCH_DIR/benchlib.py" oci-config "$B/spec.json" "$prof" "$B2/config.json" --no-seccomp \
			"${userns[@]}" --cgroups-path "/$CGP/runc" >/dev/null
		try runc-noseccomp "$OUT/bin/uniqid runc --root $RUNC_ROOT run --bundle $B2 bench-@ID@"
	else
		say "NOTE: runc is not installed (make deps installs it): no runc numbers"
		notes+=("runc not installed")
	fi

	if command -v bwrap >/dev/null; then
		try bwrap "bwrap --unshare-all --ro-bind $ROOTFS / --proc /proc --dev /dev /bin/true"
	else
		say "NOTE: bwrap is not installed (make deps installs bubblewrap): no bwrap numbers"
		notes+=("bwrap not installed")
	fi
	try unshare "unshare -Urmpfiun --mount-proc /bin/true"
	# references: vslice without seccomp, the uniqid wrapper alone, a plain exec
	try vslice-unconfined "$SLICECTL run --rm --image busybox --policy unconfined b -- /bin/true"
	# what a kernel-enforced disk limit adds: an ext4 image made, loop-attached and mounted
	try vslice-disk "$SLICECTL run --rm --image busybox --disk 64M b -- /bin/true"
	try uniqid-wrapper "$OUT/bin/uniqid /bin/true bench-@ID@"
	# what `env VAR=...` added to the vslice rows before they ran without it
	try env-wrapper "env VSLICE_POOL=0 /bin/true"
	try true "/bin/true"

	local args=() i
	: >"$OUT/commands.tsv"
	for i in "${!names[@]}"; do
		args+=(-n "${names[$i]}" "${cmds[$i]}" --prepare "${preps[$i]}")
		printf '%s\t%s\n' "${names[$i]}" "${cmds[$i]}" >>"$OUT/commands.tsv"
	done
	# -i: a failing run must not abort the whole comparison; failures are
	# counted per tool from the exported exit codes and reported.
	hyperfine -N -i --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/start.json" \
		--export-markdown "$OUT/start-hyperfine.md" "${args[@]}" | tee "$OUT/start-hyperfine.log"
	"$PY" "$BENCH_DIR/benchlib.py" start-report "$OUT/start.json" "$RES" "$OUT/commands.tsv" | tee "$OUT/start.md"
	drain_pool "$WARM_ROOT"
	printf '%s\n' "${notes[@]}" | "$PY" -c 'import json,sys; json.dump([l.strip() for l in sys.stdin if l.strip()], open(sys.argv[1], "w"))' "$OUT/notes.json"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" start_notes "$OUT/notes.json"
}

# --------------------------------------------------------- micro-costs -----
run_micro() {
	hdr "where the time goes: micro-measurements"
	# 1. v1 cgroup attach: first migration after idle waits for an RCU grace period.
	local memcg
	memcg=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ {print $2; exit}' /proc/mounts)
	if [ -n "$memcg" ]; then
		mkdir -p "$memcg/$CGP/attach"
		"$OUT/bin/cgattach" "$memcg/$CGP/attach" 30 100 >"$OUT/cgattach-idle.txt" &&
			"$PY" "$BENCH_DIR/benchlib.py" samples cgattach_v1_after_100ms_idle_us "$OUT/cgattach-idle.txt" "$RES"
		"$OUT/bin/cgattach" "$memcg/$CGP/attach" 30 0 >"$OUT/cgattach-b2b.txt" &&
			"$PY" "$BENCH_DIR/benchlib.py" samples cgattach_v1_back_to_back_us "$OUT/cgattach-b2b.txt" "$RES"
		rmdir "$memcg/$CGP/attach" 2>/dev/null
	else
		say "no v1 memory hierarchy: cgroup attach micro-measurement skipped"
	fi
	# 2. exit of the last process of a mount namespace holding an overlayfs
	local m d=$VSLICE_ROOT/exitlat
	for m in plain overlay volatile; do
		mkdir -p "$d"
		"$OUT/bin/exitlat" $m "$d" 25 >"$OUT/exitlat-$m.txt" &&
			"$PY" "$BENCH_DIR/benchlib.py" samples "mntns_exit_${m}_us" "$OUT/exitlat-$m.txt" "$RES"
		rm -rf "$d"
	done
	# 3. one seccomp attach of the default policy: the linear chain against the
	# binary tree vslice installs, interleaved (docs/benchmarks.md 7c)
	if [ -x "$REPO/build/bench/seccomp_attach" ]; then
		"$REPO/build/bench/seccomp_attach" 300 default >"$OUT/seccomp_attach.md" &&
			cat "$OUT/seccomp_attach.md"
	else
		say "no build/bench/seccomp_attach (make bench-bins): seccomp attach skipped"
	fi
}

# Per-phase times of `slicectl run --rm` from kernel tracepoints (perf is
# optional: linux-perf is not in make deps).
run_phases() {
	hdr "where the time goes: phases of 'slicectl run --rm ... /bin/true' (perf tracepoints, 40 runs back to back)"
	if ! command -v perf >/dev/null || ! perf list 2>/dev/null | grep -q 'cgroup:cgroup_attach_task'; then
		say "perf or its tracepoints are not available: phase breakdown skipped"
		return 0
	fi
	# no -a: only slicectl and its descendants (other slicectl users on the
	# machine would otherwise mix into the trace)
	perf record -q -o "$OUT/phases.perf" \
		-e sched:sched_process_exec -e sched:sched_process_exit -e syscalls:sys_enter_fsync \
		-e syscalls:sys_exit_fsync -e syscalls:sys_enter_write -e cgroup:cgroup_attach_task \
		-e syscalls:sys_enter_rmdir -e syscalls:sys_enter_unlinkat -- \
		bash -c 'for i in $(seq 40); do "$0" run --rm --image busybox b -- /bin/true; done' "$SLICECTL" \
		>/dev/null 2>"$OUT/phases-perf.log" || {
		say "perf record failed ($(tail -1 "$OUT/phases-perf.log")): phase breakdown skipped"
		return 0
	}
	perf script -i "$OUT/phases.perf" -F comm,pid,tid,time,event,trace >"$OUT/phases.txt" 2>/dev/null
	"$PY" "$BENCH_DIR/benchlib.py" phases "$OUT/phases.txt" "$RES" | tee "$OUT/phases.md"
	rm -f "$OUT/phases.perf" "$OUT/phases.txt"
}

# ---------------------------------------------------------------- density --
limits_json() {
	local k f
	printf '{'
	printf '"ulimit_n": "%s", "ulimit_u": "%s"' "$(ulimit -n)" "$(ulimit -u)"
	for k in kernel/pid_max kernel/threads-max user/max_user_namespaces user/max_net_namespaces \
		user/max_pid_namespaces user/max_mnt_namespaces user/max_ipc_namespaces user/max_uts_namespaces \
		user/max_cgroup_namespaces user/max_time_namespaces fs/inotify/max_user_instances \
		fs/inotify/max_user_watches kernel/keys/root_maxkeys kernel/keys/root_maxbytes \
		kernel/keys/maxkeys fs/file-max fs/nr_open; do
		f=/proc/sys/$k
		[ -r "$f" ] && printf ', "%s": "%s"' "$k" "$(cat "$f")"
	done
	printf ', "file_nr": "%s", "procs": %s' "$(cat /proc/sys/fs/file-nr | tr '\t' ' ')" "$(ls -d /proc/[0-9]* | wc -l)"
	printf ', "root_keys": "%s"' "$(awk '$1 == "0:" {print $0}' /proc/key-users 2>/dev/null)"
	printf ', "mem_available_kib": %s' "$(awk '/MemAvailable/ {print $2}' /proc/meminfo)"
	printf ', "num_cgroups": "%s"' "$(awk 'NR > 1 {printf "%s=%s ", $1, $3}' /proc/cgroups)"
	printf '}\n'
}

memavail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }

# Phase tables from VSLICE_TRACE=1 (include/vslice/trace.h): a cold start
# and a start from a filled warm pool, run --rm of /bin/true.
run_trace_phases() {
	hdr "phases of 'slicectl run --rm ... /bin/true', cold and warm (VSLICE_TRACE=1, $PHASE_RUNS runs each)"
	if [ -n "${BENCH_BEFORE:-}" ]; then
		say "before ($BENCH_BEFORE):"
		"$PY" "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$BENCH_BEFORE" run --rm --image busybox b -- /bin/true |
			tee "$OUT/phases-before.md"
	fi
	say "cold (VSLICE_POOL=0):"
	VSLICE_POOL=0 "$PY" "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$SLICECTL" run --rm --image busybox b -- /bin/true |
		tee "$OUT/phases-cold.md"
	say "warm (VSLICE_POOL=$POOL_N, the pool refilled before each run):"
	mkdir -p "$VSLICE_ROOT/pool"
	VSLICE_POOL=$POOL_N PHASES_WAIT_LOCK=$VSLICE_ROOT/pool/fill.lock \
		"$PY" "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$SLICECTL" run --rm --image busybox b -- /bin/true |
		tee "$OUT/phases-warm.md"
	drain_pool
}

# Left in our cgroup parent and state dir (after a destroy: nothing).
leftovers() {
	printf '%s cgroup dirs, %s state dirs' \
		"$(find /sys/fs/cgroup/*/"$CGP" -mindepth 1 -type d 2>/dev/null | wc -l)" \
		"$(ls "$VSLICE_ROOT/slices" 2>/dev/null | wc -l)"
}

run_density() {
	hdr "density: $DENSITY_N idle slices (run -d ... sleep 100000), one after another"
	limits_json >"$OUT/limits-before.json"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.limits_before "$OUT/limits-before.json"
	sync
	sleep 2
	local mem0 mem1 mem2 mem3
	mem0=$(memavail)
	cp /proc/meminfo "$OUT/meminfo-before.txt"
	# cold starts (a pool refill would only compete with the next start for the CPUs)
	VSLICE_POOL=0 "$PY" "$BENCH_DIR/starts.py" 1 "$DENSITY_N" d "$OUT/density-seq.json" -- \
		"$SLICECTL" run -d --image busybox {} -- sleep 100000 | tee "$OUT/density-seq.md"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.sequential "$OUT/density-seq.json"
	local started states
	started=$(ls "$VSLICE_ROOT/slices" | wc -l)
	sleep 3 # let the last workloads settle (exec of sleep, page cache)
	states=$("$SLICECTL" list 2>/dev/null | awk 'NR > 1 {n[$2]++} END {for (s in n) printf "%s=%d ", s, n[s]}')
	say "slicectl list says: $states"
	mem1=$(memavail)
	cp /proc/meminfo "$OUT/meminfo-with-slices.txt"
	"$PY" "$BENCH_DIR/benchlib.py" meminfo-delta "$OUT/meminfo-before.txt" "$OUT/meminfo-with-slices.txt" "$started" "$RES"
	"$PY" "$BENCH_DIR/benchlib.py" uss "$VSLICE_ROOT" "$RES"
	say "host MemAvailable: before $((mem0 / 1024)) MiB, with $started slices $((mem1 / 1024)) MiB: $(((mem0 - mem1) / (started > 0 ? started : 1))) KiB per slice"

	hdr "what grows: phases of a cold run --rm with $started slices running ($PHASE_RUNS runs)"
	VSLICE_POOL=0 "$PY" "$BENCH_DIR/phases.py" "$PHASE_RUNS" "$SLICECTL" run --rm --image busybox b -- /bin/true |
		tee "$OUT/phases-cold-at-$started.md"

	hdr "destroy $started slices, one 'slicectl destroy --force' each, one after another"
	"$PY" "$BENCH_DIR/starts.py" 1 "$started" d "$OUT/destroy-seq.json" -- \
		"$SLICECTL" destroy --force {} | tee "$OUT/destroy-seq.md"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.destroy_sequential "$OUT/destroy-seq.json"
	say "after destroy: $(leftovers) left"
	sleep 2
	mem2=$(memavail)

	hdr "density, overlapped: $DENSITY_N idle slices, $PAR starts at once"
	VSLICE_POOL=0 "$PY" "$BENCH_DIR/starts.py" "$PAR" "$DENSITY_N" o "$OUT/density-par.json" -- \
		"$SLICECTL" run -d --image busybox {} -- sleep 100000 | tee "$OUT/density-par.md"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.overlapped "$OUT/density-par.json"
	say "running after the overlapped starts: $("$SLICECTL" list 2>/dev/null | awk '$2 == "running"' | wc -l)"
	hdr "destroy them, $PAR at once"
	"$PY" "$BENCH_DIR/starts.py" "$PAR" "$DENSITY_N" o "$OUT/destroy-par.json" -- \
		"$SLICECTL" destroy --force {} | tee "$OUT/destroy-par.md"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.destroy_overlapped "$OUT/destroy-par.json"
	sleep 10
	mem3=$(memavail)
	say "after destroy: $(leftovers) left; MemAvailable $(((mem0 - mem2) / 1024)) MiB below the start after the first destroy, $(((mem0 - mem3) / 1024)) MiB after the second (+10 s)"
	printf '{"started_sequential": %s, "list_states": "%s", "mem_available_before_kib": %s, "mem_available_with_slices_kib": %s, "host_mem_per_slice_kib": %s, "mem_available_after_destroy_kib": %s, "mem_available_end_kib": %s, "left": "%s"}\n' \
		"$started" "$states" "$mem0" "$mem1" $(((mem0 - mem1) / (started > 0 ? started : 1))) "$mem2" "$mem3" "$(leftovers)" >"$OUT/density.json"
	"$PY" "$BENCH_DIR/benchlib.py" merge "$RES" density.run "$OUT/density.json"
}

BENCH_T0=$(now)
if [ "${BENCH_SKIP_START:-0}" != 1 ]; then
	run_start_latency
	run_micro
	# run_phases (perf tracepoints) read the launcher's cgroup.procs write
	# and the grace-period thread, both gone; VSLICE_TRACE replaces it.
	[ "${BENCH_PERF_PHASES:-0}" = 1 ] && run_phases
	run_trace_phases
fi
[ "${BENCH_SKIP_DENSITY:-0}" != 1 ] && run_density
REGISTRY_RC=0
if [ "${BENCH_SKIP_REGISTRY:-0}" != 1 ]; then
	hdr "registry (tests/bench/registry.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/registry.sh" || REGISTRY_RC=$?
	[ "$REGISTRY_RC" = 0 ] || say "bench: the registry benchmarks failed (exit $REGISTRY_RC; see above)"
fi
if [ "${BENCH_SKIP_NET:-0}" != 1 ]; then
	hdr "networking (tests/bench/net.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/net.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_E2E:-0}" != 1 ]; then
	hdr "cluster end to end (tests/bench/cluster_e2e.sh)"
	bash "$BENCH_DIR/cluster_e2e.sh" | tee "$OUT/cluster_e2e.md" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_PRECOPY:-0}" != 1 ]; then
	hdr "pre-copy on one node (tests/bench/precopy.sh)"
	BENCH_OUT=$OUT bash "$BENCH_DIR/precopy.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_MIGRATE:-0}" != 1 ]; then
	hdr "cold migration: the file system stream vs tar over a veth (tests/bench/migrate.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/migrate.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_MIGRATE_CLUSTER:-0}" != 1 ]; then
	hdr "cold migration end to end: slicectl migrate and node drain vs tar (tests/bench/migrate_cluster.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/migrate_cluster.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_MIGRATE_LIVE:-0}" != 1 ]; then
	hdr "live and pre-copy migration between two hosts (tests/bench/migrate_live.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/migrate_live.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_MIGRATE_WATCH:-0}" != 1 ]; then
	hdr "migration with a client watching (tests/bench/migrate_watch.sh)"
	BENCH_OUT=$OUT SLICECTL=$SLICECTL bash "$BENCH_DIR/migrate_watch.sh" || REGISTRY_RC=1
fi
if [ "${BENCH_SKIP_CKPT:-0}" != 1 ]; then
	hdr "checkpoint speed of the frozen path (tests/bench/ckpt.sh)"
	SLICECTL=$SLICECTL CKPT_BENCH_JSON=$OUT/ckpt.jsonl bash "$BENCH_DIR/ckpt.sh" 256 1024 | tee "$OUT/ckpt.txt" || REGISTRY_RC=1
fi
hdr "done in $(fsub "$(now)" "$BENCH_T0")s; results in $RES"
[ "$REGISTRY_RC" = 0 ] || exit 1
