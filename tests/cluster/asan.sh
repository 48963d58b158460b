#!/usr/bin/env bash
# tests/cluster/test_cluster.sh with the registry and node manager built with
# ASan+UBSan (make cluster-asan builds them): any sanitizer report in the
# daemons' logs (kept: VC_KEEP_LOGS) fails it, leaks included (at exit).
set -u
cd "$(dirname "$0")/../.."
echo "== tests/cluster/test_cluster.sh with ASan+UBSan daemons"
out=$(mktemp /tmp/vslice-cluster-asan.XXXXXX)
trap 'rm -f "$out"' EXIT
ASAN_OPTIONS=detect_leaks=1 VC_KEEP_LOGS=1 \
	VSLICE_TEST_REGISTRY=build/asan/vslice-registry VSLICE_TEST_NODEMGR=build/asan/vslice-nodemgr \
	bash tests/cluster/test_cluster.sh >"$out" 2>&1
rc=$?
grep -E "^not ok" "$out"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
if grep -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$out"; then
	echo "sanitizer reports in the daemons' logs (above)"
	rc=1
fi
p=$(echo "$line" | awk '{print $1}')
f=$(echo "$line" | awk '{print $3}')
[ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
echo "${p:-0} passed, ${f:-0} failed"
exit $rc
