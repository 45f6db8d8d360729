#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each
# (default 15s) and prints how long each ran.
#
# A target that finds a failing input writes it to its package's
# testdata/fuzz directory: that is a real finding, and fails the run (the
# input then fails plain `go test` too, until fixed). A target that fails
# without writing one failed in the fuzzing engine itself (a worker that
# did not answer in time on a loaded machine, seen once in CI): its whole
# output is printed and it is run once more; failing again fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-15s}
status=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# inputs is how many inputs a target's testdata holds (0 without any).
inputs() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		corpus="$dir/testdata/fuzz/$target"
		for try in 1 2; do
			echo "fuzz: $pkg $target for $fuzztime"
			before=$(inputs "$corpus")
			if go test -run=NONE -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$out" 2>&1; then
				tail -3 "$out"
				break
			fi
			after=$(inputs "$corpus")
			cat "$out"
			if [ "$after" -gt "$before" ] || [ "$try" = 2 ]; then
				echo "fuzz: $pkg $target FAILED"
				status=1
				break
			fi
			echo "fuzz: $pkg $target failed without a failing input (the engine, not the code): once more"
		done
	done
done
exit $status
