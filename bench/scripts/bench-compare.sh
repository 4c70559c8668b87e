#!/usr/bin/env bash
# Two builds of wsgate under the same fan-out workload, in one run: rounds alternate between
# them (A B A B ...), so a machine's drift over the run weighs on both alike.
#
#   bench/scripts/bench-compare.sh BEFORE_BINARY AFTER_BINARY [CONNECTIONS] [TAKERS_PER_SEC] [ROUNDS]
#
# The workload is bench-fanout.sh's: every connection takes the five @trade streams of the demo
# market in bench/config/trades-TAKERS_PER_SEC.json (0.2, 1 or 8; 8 saturates two cores), or,
# with TAKERS_PER_SEC=idle, no trades at all (bench/config/idle.json: memory per connection).
# BENCH_CONFIG=FILE runs both on FILE instead (e.g. a config without rate limits).
# Each round prints wsgate-bench's summary line, labelled `before` or `after`. Needs
# `make build` (target/release/wsgate-bench and target/mappers) and the two wsgate binaries,
# e.g. one built from an earlier commit in a git worktree.
set -euo pipefail
before=$(realpath "$1")
after=$(realpath "$2")
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${3:-10000}
rate=${4:-1}
rounds=${5:-3}
source bench/scripts/fanout-workload.sh
fanout_workload "$connections" "$rate"
config=${BENCH_CONFIG:-$config}

for round in $(seq "$rounds"); do
  bench_round before "$before" "$config"
  bench_round after "$after" "$config"
done
