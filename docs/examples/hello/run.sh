#!/bin/sh
# Runs inside the slice "hello" (docs/examples/hello.json): writes a greeting,
# the slice's hostname and the time to /results/hello.txt, which
# `slicectl results hello DIR` copies out.
set -eu
mkdir -p /results
{
	echo "${GREETING:-Hello}, world!"
	echo "node: $(uname -n)"
	echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
} > /results/hello.txt
cat /results/hello.txt
