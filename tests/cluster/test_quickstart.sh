#!/usr/bin/env bash
# docs/cluster.md's quick start, followed literally: the first fenced block
# under "## Quick start (one machine, or three)" is read from the doc and
# run line by line (continuations joined) in one bash, as root, from the
# repository, with build/ on PATH and no VSLICE_* in the environment. Each
# line must exit 0, and what the doc promises must hold: three node
# managers on one machine with a cgroup parent each, the cluster.json
# experiment measuring on three nodes (and failing when it cannot), results
# in /tmp/out. Then the cluster examples of the man page and the README,
# placeholders filled in, against the same cluster; and a second registry
# on the busy port refuses to start.
#
# The doc writes fixed paths (/etc/vslice, /var/lib/vslice, /tmp/out) and
# listens on 0.0.0.0:7480: it runs in a private mount and network namespace
# in which /etc is an overlay, /var/lib/vslice and /tmp are fresh
# directories (the machine-wide id-range claims stay the real ones), and
# only lo exists. Its cgroup parents (vslice-node1..3) and node manager
# locks are machine-wide, so two runs of this test take turns (flock).
. "$(dirname "$0")/../integration/lib.sh"
trap - EXIT
cd "$VS_REPO"
doc=$VS_REPO/docs/cluster.md

# The block, one logical line per line: comments and blank lines dropped,
# "\" continuations joined.
block=$(awk '/^## Quick start \(one machine, or three\)/{s=1} s&&/^```/{n++; if(n==2) exit; next} s&&n==1' "$doc" |
	awk '{ if (sub(/\\$/, "")) { buf = buf $0; next } print buf $0; buf = "" }' |
	grep -v '^[[:space:]]*\(#.*\)\?$')
check "docs/cluster.md has a quick start block" test -n "$block"

T=$(mktemp -d /var/tmp/vslice-cqs.XXXXXX)
chmod 0755 "$T"
mkdir -p "$T/varlib/idranges" "$T/tmp" "$T/etc-up" "$T/etc-work" "$T/out"
chmod 1777 "$T/tmp"
cleanup() {
	case "$T" in /var/tmp/vslice-cqs.*) rm -rf --one-file-system "$T" ;; esac
	case "$VSLICE_ROOT" in /tmp/vslice-test.*) rm -rf --one-file-system "$VSLICE_ROOT" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The script: each doc line, its output and exit status kept by number.
script=$T/script.sh
{
	echo 'set +e'
	i=0
	while IFS= read -r line; do
		i=$((i + 1))
		printf '%s\n' "$line" >"$T/out/$i.cmd"
		echo "exec >'$T/out/$i.out' 2>&1"
		printf '%s\n' "$line"
		echo "echo \$? >'$T/out/$i.rc'"
	done <<<"$block"
	echo "exec >'$T/out/extra.out' 2>&1"
	# What the quick start promises beyond exit codes, and what it set up
	# that only this namespace can see.
	cat <<'EOF'
for r in /var/lib/vslice /var/lib/vslice/node2 /var/lib/vslice/node3; do
	echo "parent $r $(cat $r/nodemgr/cgroup-parent)"
done
echo "ctl-version $(slicectl --version)"
slicectl --json nodes | grep '"version"' | sed 's/^ */node-/'
vslice-registry --listen 0.0.0.0:7480 --db /var/lib/vslice/registry.db >/dev/null 2>"$QS_T/busy.err"
echo "busy-rc $?"
EOF
	# The probe, run where it cannot measure: nothing listens on port 1.
	echo "probe=\$(python3 -c 'import json,sys; print(json.load(open(\"docs/examples/cluster.json\"))[\"files\"][0][\"content\"])')"
	cat <<'EOF'
env -u VSLICE_REGISTRY slicectl run --rm --net host nomeasure -- sh -c "VSLICE_REGISTRY=https://127.0.0.1:1 VSLICE_NODE=node1 COUNT=3; export VSLICE_REGISTRY VSLICE_NODE COUNT; $probe" >"$QS_T/nomeasure.out" 2>&1
echo "nomeasure-rc $?"
EOF
	# The man page's and the README's cluster examples on this cluster:
	# placeholders filled in, commands as written.
	echo 'export VSLICE_TOKEN=$ALICE'
	awk '/^\.SH EXAMPLES/{s=1} /^\.fi/{s=0} s' docs/slicectl.1 | sed -n '/^export VSLICE_REGISTRY/,$p' |
		sed 's/\\-/-/g; s|https://registry:7480|https://127.0.0.1:7480|; s|VSLICE_TOKEN=vsu_\.\.\.|VSLICE_TOKEN=$ALICE|; s|VSLICE_CA=ca.pem|VSLICE_CA=/etc/vslice/ca.pem|' |
		sed 's/^/man: /' >"$T/man.lines"
	n=0
	while IFS= read -r line; do
		n=$((n + 1))
		printf '%s\n' "${line#man: }" >"$T/out/man$n.cmd"
		echo "exec >'$T/out/man$n.out' 2>&1"
		printf '%s\n' "${line#man: }"
		echo "echo \$? >'$T/out/man$n.rc'"
	done <"$T/man.lines"
	# Stop what the doc started: the node managers first (slivers run on),
	# then the registry; destroy every slice on every root.
	cat <<'EOF'
exec >>"$QS_T/out/extra.out" 2>&1
kill -TERM $(jobs -p) 2>/dev/null
wait
for r in /var/lib/vslice /var/lib/vslice/node2 /var/lib/vslice/node3; do
	for s in $(env -u VSLICE_REGISTRY VSLICE_ROOT=$r slicectl list -q 2>/dev/null); do
		env -u VSLICE_REGISTRY VSLICE_ROOT=$r slicectl destroy --force "$s" >/dev/null
	done
done
EOF
} >"$script"
echo "MAN_N=$(grep -c . "$T/man.lines")" >"$T/man.n"

# Only one run at a time on this machine (names and locks the doc fixes).
exec 9>/run/vslice-test-cluster-quickstart.lock
flock -w 1200 9 || echo "# waited 20 min for another run's lock; going on"
# A run that died left its parents: nothing can be in them (its namespace
# is gone with its processes), so they go.
for k in 1 2 3; do rmdir /sys/fs/cgroup/*/vslice-node$k/* /sys/fs/cgroup/*/vslice-node$k 2>/dev/null; done

QS_T=$T timeout 900 unshare -m -n --propagation private bash -c '
	set -e
	ip link set lo up
	mount --bind /var/lib/vslice/idranges "$QS_T/varlib/idranges"
	mount --rbind "$QS_T/varlib" /var/lib/vslice
	mount -t overlay overlay -o "lowerdir=/etc,upperdir=$QS_T/etc-up,workdir=$QS_T/etc-work" /etc
	# A checkout under /tmp (CI clones there) stays visible in the fresh /tmp.
	case "$1" in /tmp/?*)
		mkdir -p "$QS_T/tmp${1#/tmp}"
		mount --bind "$1" "$QS_T/tmp${1#/tmp}" ;;
	esac
	mount --rbind "$QS_T/tmp" /tmp
	cd "$1"
	set +e
	timeout 700 env -u VSLICE_ROOT -u VSLICE_CGROUP_PARENT -u VSLICE_REGISTRY -u VSLICE_TOKEN \
		-u VSLICE_CA PATH="$1/build:$PATH" QS_T="$QS_T" bash "$QS_T/script.sh"
	rc=$?
	# Whatever is left in this network namespace is ours: the doc'"'"'s daemons
	# if the script timed out, their slivers (--net host). Destroy, then kill.
	me=$(readlink /proc/self/ns/net)
	for r in /var/lib/vslice /var/lib/vslice/node2 /var/lib/vslice/node3; do
		for s in $(VSLICE_ROOT=$r "$1/build/slicectl" list -q 2>/dev/null); do
			VSLICE_ROOT=$r "$1/build/slicectl" destroy --force "$s" >/dev/null 2>&1
		done
	done
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		[ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] && kill -9 "$p" 2>/dev/null
	done
	exit $rc
' _ "$VS_REPO"
check "the quick start finished in time (exit $?)" test -f "$T/out/extra.out"
for k in 1 2 3; do rmdir /sys/fs/cgroup/*/vslice-node$k/* /sys/fs/cgroup/*/vslice-node$k 2>/dev/null; done
flock -u 9

# --- every line exits 0 ----------------------------------------------------------
out_of() { cat "$T/out/$1.out" 2>/dev/null; }
line_no() { grep -lF -- "$1" "$T"/out/[0-9]*.cmd | head -1 | xargs -r basename | sed 's/\.cmd$//'; }
n=$(ls "$T"/out/*.cmd 2>/dev/null | grep -c '/[0-9]*\.cmd$')
for i in $(seq "$n"); do
	rc=$(cat "$T/out/$i.rc" 2>/dev/null || echo "not run")
	check "quick start: $(cut -c1-100 "$T/out/$i.cmd") (exit $rc)" test "$rc" = 0 ||
		out_of "$i" | tail -5 | sed 's/^/    /'
done

# --- what it promises -------------------------------------------------------------
i=$(line_no "slicectl nodes   ")
check "nodes: three node managers on one machine, all ready" \
	test "$(out_of "$i" | grep -c ' ready ')" = 3
i=$(line_no "submit --wait docs/examples/cluster.json")
out=$(out_of "$i")
check "cluster.json: each of the three nodes measured its TCP connect latency" \
	test "$(grep -c '| connect ms min/avg/max [0-9.]*/[0-9.]*/[0-9.]*$' <<<"$out")" = 3 || echo "$out" | tail -8
check "cluster.json: all three slivers ok" grep -q "eu_latency: 3 slivers ok" <<<"$out"
i=$(line_no "slicectl status eu_latency")
check "status: one line per sliver" test "$(out_of "$i" | grep -Ec '^node[123] ')" = 3
i=$(line_no "slicectl logs eu_latency --node node1")
check "logs --node node1: its measurement" grep -q "^node1 -> registry 127.0.0.1:7480: 20 of 20 TCP connects" <<<"$(out_of "$i")"
for k in 1 2 3; do
	check "results: /tmp/out/node$k/results/latency.txt" \
		grep -q "connect ms min/avg/max" "$T/tmp/out/node$k/results/latency.txt"
done
i=$(line_no "run --rm --nodes 3")
check "run --rm --nodes 3: three slivers answer" test "$(out_of "$i" | grep -c '| probe$')" = 3 ||
	out_of "$i" | tail -5
extra=$(cat "$T/out/extra.out" 2>/dev/null)
check "node managers on one machine got a cgroup parent each: vslice-node1..3" \
	bash -c "grep -q '^parent /var/lib/vslice vslice-node1$' <<<'$extra' &&
		grep -q '^parent /var/lib/vslice/node2 vslice-node2$' <<<'$extra' &&
		grep -q '^parent /var/lib/vslice/node3 vslice-node3$' <<<'$extra'" || echo "$extra" | head -5
ver=$(sed -n 's/^ctl-version slicectl //p' <<<"$extra")
check "one version: slicectl --version ($ver) is what the nodes report" \
	test "$(grep -c "^node-\"version\": \"$ver\"" <<<"$extra")" = 3
check "a second registry on the busy port 7480 refuses to start" grep -q '^busy-rc [1-9]' <<<"$extra"
check "... saying the address is in use" grep -q "7480: address already in use" "$T/busy.err" ||
	cat "$T/busy.err"
check "the probe fails the run when it cannot measure (exit 1)" grep -q '^nomeasure-rc 1$' <<<"$extra"
check "... saying so" grep -q "probe: node1 cannot connect to 127.0.0.1:1: no measurement" "$T/nomeasure.out" ||
	cat "$T/nomeasure.out"

# --- the man page's cluster examples ------------------------------------------
. "$T/man.n"
check "the man page has cluster examples" test "$MAN_N" -gt 0
for i in $(seq "$MAN_N"); do
	rc=$(cat "$T/out/man$i.rc" 2>/dev/null || echo "not run")
	check "man page: $(cat "$T/out/man$i.cmd") (exit $rc)" test "$rc" = 0 ||
		tail -5 "$T/out/man$i.out" | sed 's/^/    /'
done
finish
