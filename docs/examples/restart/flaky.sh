#!/bin/sh
# Fails until attempt number $1, then succeeds. The counter lives in the
# slice's root file system, which persists across restarts of the run.
set -eu
need=${1:-3}
mkdir -p /results
n=$(( $(cat /results/attempts.txt 2>/dev/null | wc -l) + 1 ))
echo "attempt $n at $(date -u '+%H:%M:%S')" >> /results/attempts.txt
if [ "$n" -lt "$need" ]; then
	echo "attempt $n failed (succeeds at $need)" >&2
	exit 1
fi
echo "attempt $n succeeded"
