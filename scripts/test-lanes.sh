#!/usr/bin/env bash
# Runs the workspace's tests, already built by `make test-build`, in two lanes side by side:
#   A: the end-to-end and devstack tests (tests/tests/*.rs, devstack/tests/*.rs), which spend
#      most of their time waiting on stand-ins, reconcile passes and timeouts (e2e alone keeps
#      a third of two cores busy);
#   B: every library's and binary's unit tests and the other integration tests, then the doc
#      tests.
# `cargo test` runs one test binary after another, so the waits add up; side by side they
# overlap (docs/BENCHMARKS.md, "Seventh round"). Both lanes select the whole workspace, so
# feature resolution, and therefore every artifact, is the one `make test-build` made: nothing
# is rebuilt. Lane B prints as it runs; lane A's output follows it. The exit status is
# non-zero when either lane failed.
#
# usage: scripts/test-lanes.sh <log dir> [args for the test binaries...]
# Until the lanes start, any failure stops the script (a lane list read wrong would skip tests
# silently); the lanes' own exit statuses are collected below.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
logdir=$1
shift

names() { for f in "$@"; do if [ -e "$f" ]; then basename "$f" .rs; fi; done; }
lane_a=$(names tests/tests/*.rs devstack/tests/*.rs)
lane_b=$(names */tests/*.rs */*/tests/*.rs */*/*/tests/*.rs | grep -vxF -f <(printf '%s\n' $lane_a))

meta=$($cargo metadata --format-version 1 --no-deps)
# The binaries with unit tests (`--bins` would also run those with `test = false`, such as the
# CNI host, whose C `main` has no test harness).
bin_objs=$(grep -o '{[^{}]*"kind":\["bin"\][^{}]*}' <<<"$meta")
bins=$(grep '"test":true' <<<"$bin_objs" | sed 's/.*"name":"\([^"]*\)".*/\1/')
# A binary target this pattern did not capture whole would lose its unit tests silently.
if [ "$(grep -o '"kind":\["bin"\]' <<<"$meta" | wc -l)" != "$(grep -c . <<<"$bin_objs")" ]; then
  echo "test-lanes: cannot read every binary target from cargo metadata" >&2
  exit 1
fi

# Every test target is in exactly one lane (a target declared by hand in a Cargo.toml, not a
# file under tests/, would be missed: refuse rather than skip it).
declared=$(grep -o '"kind":\["test"\]' <<<"$meta" | wc -l)
found=$(printf '%s\n' $lane_a $lane_b | sort -u | wc -l)
if [ "$declared" != "$found" ]; then
  echo "test-lanes: cargo declares $declared test targets, the lanes have $found" >&2
  exit 1
fi

targets() { for n in "$@"; do printf -- '--test %s ' "$n"; done; }
bin_targets() { for n in "$@"; do printf -- '--bin %s ' "$n"; done; }
mkdir -p "$logdir"
set +e
# shellcheck disable=SC2046 # one word per test name
$cargo test --workspace --no-fail-fast $(targets $lane_a) -- "$@" >"$logdir/lane-a.log" 2>&1 &
a_pid=$!
# shellcheck disable=SC2046
$cargo test --workspace --no-fail-fast --lib $(bin_targets $bins) $(targets $lane_b) -- "$@"
b=$?
$cargo test --workspace --no-fail-fast --doc -- "$@"
doc=$?
wait "$a_pid"
a=$?
echo "===== lane A (end-to-end and devstack tests), run beside the above ====="
cat "$logdir/lane-a.log"
echo "test-lanes: lane A exit $a, lane B exit $b, doc tests exit $doc"
[ "$a" = 0 ] && [ "$b" = 0 ] && [ "$doc" = 0 ]
