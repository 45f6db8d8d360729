#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each
# (default 15s) and prints how long each ran.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-15s}
status=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $target for $fuzztime"
		if ! go test -run=NONE -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" 2>&1 | tail -3; then
			status=1
		fi
	done
done
exit $status
