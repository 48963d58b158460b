#!/usr/bin/env bash
# `make run`: the main job on this machine's local default (/var/lib/vslice,
# or $VSLICE_ROOT): build the busybox image, run an isolated slice, then the
# example experiment docs/examples/hello.json end to end and print its result.
set -euo pipefail
cd "$(dirname "$0")/.."
ctl=build/slicectl
if [ "$(id -u)" != 0 ]; then
	echo "make run needs root (slices are real containers): sudo make run" >&2
	exit 1
fi
step() { printf '\n== %s\n' "$*"; }

step "image: busybox (from the host's busybox-static)"
$ctl image list -q | grep -qx busybox || $ctl image build busybox
$ctl image list

step "a slice: every isolation layer on, 0.5 cpu, 64M, 64 pids, default seccomp policy"
$ctl destroy --force demo >/dev/null 2>&1 || true
$ctl run --rm --cpus 0.5 --memory 64M --pids 64 demo -- sh -c '
	echo "hostname:    $(hostname)"
	echo "whoami:      $(id -u) (uid_map: $(tr -s " " < /proc/self/uid_map))"
	echo "pid 1:       $(cat /proc/1/comm)"
	grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status | sed "s/^/status:      /"
	echo "network:     $(ls /sys/class/net | tr "\n" " ")"'

if $ctl validate --help >/dev/null 2>&1; then
	step "experiment: docs/examples/hello.json"
	$ctl destroy --force hello >/dev/null 2>&1 || true
	$ctl validate docs/examples/hello.json
	$ctl submit --wait docs/examples/hello.json
	out=$(mktemp -d /tmp/vslice-hello.XXXXXX)
	$ctl results hello "$out"
	for f in $(find "$out" -type f | sort); do
		echo "--- ${f#$out/}"
		cat "$f"
	done
	$ctl destroy --force hello
	rm -rf "$out"
fi
step "done"
