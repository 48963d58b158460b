#!/bin/bash
# --net bridge set-up cost, an older build against this one, in one run:
#   sudo bash tests/bench/net_setup_ab.sh /path/to/old/slicectl [ROUNDS]
# A network namespace of its own as the node, one bridged slice that keeps
# the bridge and tables up (the per-slice cost), then net_setup_ab.py:
# `run --rm --net none|bridge` of both builds round-robin, wall times and
# the net.* steps. Both builds share the node's root (one lease file).
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OLD=${1:?usage: net_setup_ab.sh OLD_SLICECTL [ROUNDS]}
ROUNDS=${2:-30}
NEW=${SLICECTL:-$REPO/build/slicectl}
[ "$(id -u)" = 0 ] || {
	echo "net_setup_ab: run as root" >&2
	exit 1
}
ID=$(($$ % 200 + 20))
for _ in $(seq 200); do
	ip netns add "vba$ID" 2>/dev/null && break
	ID=$(((ID - 20 + 1) % 200 + 20))
done
T=$(mktemp -d /tmp/vslice-netsetup-ab.XXXXXX)
chmod 0755 "$T"
mkdir -p "$T/root"
chmod 0755 "$T/root"
export VSLICE_ROOT=$T/root VSLICE_CGROUP_PARENT=vslice-netsetup-ab-$$ VSLICE_BRIDGE=vbab$ID
on() { nsenter --net=/run/netns/vba$ID "$@"; }
cleanup() {
	set +e
	for s in $("$NEW" list -q 2>/dev/null); do on "$NEW" destroy --force "$s" >/dev/null 2>&1; done
	for d in /sys/fs/cgroup/$VSLICE_CGROUP_PARENT /sys/fs/cgroup/*/$VSLICE_CGROUP_PARENT; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	ip netns del vba$ID 2>/dev/null
	case "$T" in /tmp/vslice-netsetup-ab.*) rm -rf --one-file-system "$T" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip -n vba$ID link set lo up
on "$NEW" image build busybox >/dev/null || exit 1
on "$NEW" run -d --net bridge keep -- sleep 100000 >/dev/null || exit 1
on python3 "$REPO/tests/bench/net_setup_ab.py" "$ROUNDS" "$OLD" "$NEW"
