#!/usr/bin/env bash
# The README's quick start, followed literally: every command of the fenced
# block under "## Use" and of the experiment lines after it is read from
# README.md itself and run as written, from the repository root, as a
# newcomer would type it. A trailing "# text" on a command is what the
# README promises it prints: the output must contain it (a comment that
# describes instead, like "# cpu, memory, ...", is kept as a description:
# see promised()). A quick start that needs knowledge not on the page fails
# here.
#
# The commands write to fixed paths (/tmp/out): they run in a private mount
# namespace whose /tmp is a fresh directory, so the host's /tmp is untouched
# (the test's VSLICE_ROOT therefore lives in /var/tmp; each command enters
# the repository before /tmp is covered, so a checkout under /tmp works).
VSLICE_TEST_ROOT=$(mktemp -d /var/tmp/vslice-qs-root.XXXXXX)
export VSLICE_TEST_ROOT
. "$(dirname "$0")/lib.sh"
cd "$VS_REPO"
readme=$VS_REPO/README.md

# The "## Use" section's first fenced block, one command per line.
use_block=$(awk '/^## Use/{s=1} s&&/^```/{n++; if(n==2) exit; next} s&&n==1' "$readme")
# The experiment commands: backticked `build/slicectl ...` spans in the
# paragraph after the block (before "### Cluster mode").
exp_cmds=$(awk '/^## Use/{s=1} /^### Cluster mode/{s=0} s' "$readme" |
	awk '/^```/{f=!f; next} !f' | grep -o '`build/slicectl [^`]*`' | tr -d '`')
check "README has a Use block" test -n "$use_block"
check "README names the experiment commands" test -n "$exp_cmds"

qs_root=$(mktemp -d /var/tmp/vslice-qs-tmp.XXXXXX)
chmod 1777 "$qs_root"
trap 'vs_cleanup; rm -rf --one-file-system "$qs_root" "$VSLICE_TEST_ROOT"' EXIT

# "# a1" promises output; "# cpu, memory, pids, TLP" lists what is shown.
promised() { # comment command-output
	local c=$1 out=$2 w
	[ -z "$c" ] && return 0
	if [[ $c == *,* ]]; then
		for w in ${c//,/ }; do grep -qi -- "$w" <<<"$out" || return 1; done
		return 0
	fi
	grep -qF -- "$c" <<<"$out"
}

run_lines() { # text with one command per line
	local line cmd comment out rc
	while IFS= read -r line; do
		[ -z "${line// /}" ] && continue
		cmd=${line%%#*}
		comment=""
		[[ $line == *"#"* ]] && comment=$(sed 's/^[^#]*#[[:space:]]*//; s/[[:space:]]*$//' <<<"$line")
		cmd=$(sed 's/[[:space:]]*$//' <<<"$cmd")
		# A checkout under /tmp (CI clones there) stays visible (PATH).
		out=$(unshare -m --propagation private bash -c \
			'cd "$1" && case "$1" in /tmp/?*) mkdir -p "$QS${1#/tmp}" &&
				mount --bind "$1" "$QS${1#/tmp}" ;; esac &&
			mount --rbind "$QS" /tmp && eval "$2"' \
			_ "$VS_REPO" "$cmd" 2>&1)
		rc=$?
		check "quick start: $cmd (exit $rc)" test "$rc" = 0 || echo "$out" | sed 's/^/    /' | tail -5
		[ -n "$comment" ] && check "quick start: $cmd prints '$comment'" promised "$comment" "$out"
	done <<<"$1"
}
# /tmp inside the quick start is $qs_root, the same for every command.
export QS=$qs_root
run_lines "$use_block"
run_lines "$exp_cmds"
# README's cluster block is a part of docs/cluster.md's quick start, which
# tests/cluster/test_quickstart.sh runs as written: each of its commands
# (continuations joined) must be one of the doc's, word for word.
joined() { awk '{ if (sub(/\\$/, "")) { buf = buf $0; next } print buf $0; buf = "" }'; }
readme_cluster=$(awk '/^### Cluster mode/{s=1} s&&/^```/{n++; if(n==2) exit; next} s&&n==1' "$readme" | joined)
doc_block=$(awk '/^## Quick start \(one machine, or three\)/{s=1} s&&/^```/{n++; if(n==2) exit; next} s&&n==1' docs/cluster.md | joined)
check "README has a cluster block" test -n "$readme_cluster"
while IFS= read -r line; do
	[ -z "${line// /}" ] && continue
	check "README cluster line is in docs/cluster.md's quick start: ${line:0:80}" \
		grep -qxF -- "$line" <<<"$doc_block"
done <<<"$readme_cluster"

# The man page's local examples (its EXAMPLES up to the cluster part, which
# tests/cluster/test_quickstart.sh runs), slicectl from build/.
man_local=$(awk '/^\.SH EXAMPLES/{s=1; next} s&&/^\.fi/{exit} s&&!/^\.nf/' docs/slicectl.1 |
	sed '/^export VSLICE_REGISTRY/,$d' | sed 's/\\-/-/g')
check "the man page has local examples" test -n "$man_local"
# On a root of its own: the man page starts with `image build busybox`.
man_root=$(mktemp -d /var/tmp/vslice-qs-man.XXXXXX)
VSLICE_ROOT=$man_root PATH=$VS_REPO/build:$PATH run_lines "$man_local"
for s in $(VSLICE_ROOT=$man_root vs list -q 2>/dev/null); do VSLICE_ROOT=$man_root vs destroy --force "$s" >/dev/null; done
rm -rf --one-file-system "$man_root"
# `sudo make run` is deps + build + this script: the main job, on this root.
out=$(bash tests/run-example.sh 2>&1)
check "make run's main job (tests/run-example.sh) succeeds" test "$?" = 0 || echo "$out" | tail -5
check "... and prints the experiment's result" grep -q "Hello from vslice" <<<"$out"
check "results landed in the quick start's /tmp/out" test -n "$(find "$qs_root/out" -type f 2>/dev/null)"
check "nothing from the quick start is left running" test -z "$(vs list -q | grep -vx hello)"
finish
