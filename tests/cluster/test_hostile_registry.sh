#!/usr/bin/env bash
# slicectl does not trust the registry with its file system: a registry that
# lies (tests/cluster/hostile_registry.py) names nodes and result paths with
# ../, absolute paths and control characters, lists a path through a symlink
# planted in DIR, and sends bytes that do not match the sha256 it listed.
# `slicectl results` must write only DIR/n1/ok.txt, nothing outside DIR,
# keep no file whose checksum failed, and exit 125. No root needed.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/vslice-hostile.XXXXXX)
. "$REPO/tests/lib/procs.sh"
pass=0 fail=0
PY=
cleanup() { kill_child "$PY"; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
check() {
	local d=$1
	shift
	if "$@"; then echo "ok - $d"; pass=$((pass + 1)); else echo "not ok - $d"; fail=$((fail + 1)); fi
}
coproc REG { exec python3 "$REPO/tests/cluster/hostile_registry.py"; }
PY=$REG_PID
read -r PORT <&"${REG[0]}"
mkdir -p "$T/work/out/n1" "$T/victim"
ln -s "$T/victim" "$T/work/out/n1/link"
before=$(find "$T" | sort)
"$REPO/build/slicectl" --registry "http://127.0.0.1:$PORT" --token t results x "$T/work/out" >"$T/stdout" 2>"$T/stderr"
rc=$?
cat "$T/stderr"
check "results exits 125 against a lying registry" test "$rc" = 125
check "the honest file is copied" test "$(cat "$T/work/out/n1/ok.txt" 2>/dev/null)" = "good result"
check "nothing written through the planted symlink" test -z "$(ls -A "$T/victim")"
check "no file whose sha256 lied is kept" test ! -e "$T/work/out/n1/lies.txt"
after=$(find "$T" | sort)
new=$(comm -13 <(echo "$before") <(echo "$after") | grep -v -e "^$T/work/out/n1/ok.txt$" -e "^$T/work/out/SHA256SUMS$" -e "^$T/stdout$" -e "^$T/stderr$")
check "no other path was created anywhere (got: ${new:-none})" test -z "$new"
check "the refused node names are reported" grep -q 'evil' "$T/stderr"
check "the listed sums are only for what was kept" test "$(wc -l <"$T/work/out/SHA256SUMS")" = 1
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
