#!/usr/bin/env bash
# Experiments as manifests, local mode (issue 4): validate, submit --wait,
# status, results with checksums, timeouts, restarts, and hostile manifests
# that must change nothing.
. "$(dirname "$0")/lib.sh"
need_busybox_image
ex=$VS_REPO/docs/examples
tmp=$(mktemp -d /tmp/vslice-exp.XXXXXX)
trap 'rm -rf "$tmp"; vs_cleanup' EXIT

check "validate hello.json" vs validate "$ex/hello.json"
check "submit --wait hello.json exits 0" vs submit --wait "$ex/hello.json"
st=$(vs status --json hello)
check "status: one sliver on node local, exited 0" python3 -c "
import json,sys; d=json.loads(sys.argv[1]); s=d['slivers'][0] if 'slivers' in d else d
assert s['node']=='local' and s['exit_code']==0, d" "$st"
check "results copies the result file" vs results hello "$tmp/out"
check "... to DIR/local/<path>" grep -q "Hello from vslice" "$tmp/out/local/results/hello.txt"
check "... with checksums that verify" bash -c "cd '$tmp/out' && sha256sum -c --quiet SHA256SUMS"
vs destroy --force hello

# Every error at once, each with its JSON path; nothing allocated.
cat >"$tmp/broken.json" <<'J'
{"apiVersion": "vslice/v1", "slice": "Broken Name", "resources": {"memory": "lots", "cpus": -1},
 "run": {"comand": ["true"]}, "netwrk": "none"}
J
out=$(vs validate "$tmp/broken.json" 2>&1)
expect_eq "validate broken.json exits 125" 125 "$?"
for path in .slice .resources.memory .resources.cpus .run.comand .run.command .netwrk; do
	check "broken.json: error at $path" grep -qF -- "$path" <<<"$out"
done
check "unknown keys get a did-you-mean" grep -q 'did you mean "command"' <<<"$out"
vs submit "$tmp/broken.json" >/dev/null 2>&1
expect_eq "submit of a broken manifest exits 125" 125 "$?"
check "... and creates no slice" test -z "$(vs list -q)"

# Timeout, restart on failure.
cat >"$tmp/slow.json" <<'J'
{"apiVersion": "vslice/v1", "slice": "slow", "run": {"command": "sleep 30", "timeout": "1s"}}
J
vs submit --wait "$tmp/slow.json" >/dev/null 2>&1
expect_eq "a run past its timeout is killed: exit 124" 124 "$?"
check "status says timeout" bash -c "vs status slow | grep -q timeout"
vs destroy --force slow
check "restart on-failure demo succeeds" vs submit --wait "$ex/restart.json"
vs destroy --force "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slice"])' "$ex/restart.json")"

# Hostile: a file source that escapes the manifest's directory; a results
# path that is a symlink to a host file.
mkdir -p "$tmp/m"
cat >"$tmp/m/escape.json" <<'J'
{"apiVersion": "vslice/v1", "slice": "esc", "files": [{"path": "/x", "source": "../../../etc/shadow"}],
 "run": {"command": "true"}}
J
vs validate "$tmp/m/escape.json" >/dev/null 2>&1
expect_eq "a file source outside the manifest's dir is refused" 125 "$?"
cat >"$tmp/m/link.json" <<'J'
{"apiVersion": "vslice/v1", "slice": "lnk", "run": {"command": "mkdir -p /results && ln -s /etc/shadow /results/r"},
 "results": ["/results/r"]}
J
vs submit --wait "$tmp/m/link.json" >/dev/null 2>&1
vs results lnk "$tmp/lnk" >/dev/null 2>&1
check "a results symlink never copies a host file" bash -c "! grep -rqs 'root:' '$tmp/lnk'"
vs destroy --force lnk
finish
