#!/usr/bin/env bash
# The cost of per-connection rate limits on the fan-out path: one wsgate binary, the same
# workload, rounds alternating between the config as shipped (every topic with `rate`/`burst`,
# so every delivery takes a token) and the same config with `rate`/`burst` removed (no limiter
# at all), so a machine's drift over the run weighs on both alike.
#
#   bench/scripts/bench-limits.sh [CONNECTIONS] [TAKERS_PER_SEC] [ROUNDS]
#
# The workload is bench-fanout.sh's (bench/config/trades-TAKERS_PER_SEC.json: 0.2, 1 or 8). The
# limits never bite at these rates (1,000 a second per stream and connection against a few
# dozen): what is measured is what checking them costs. Each round prints wsgate-bench's summary
# line, labelled `limits-on` or `limits-off`. Needs `make build` and `jq` (Debian: apt-get install jq).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-10000}
rate=${2:-1}
rounds=${3:-3}
source bench/scripts/fanout-workload.sh
fanout_workload "$connections" "$rate"
unlimited=$(mktemp --suffix=.json)
trap 'rm -f "$unlimited"' EXIT
jq '.topics |= map(del(.rate, .burst))' "$config" > "$unlimited"

for round in $(seq "$rounds"); do
  bench_round limits-on target/release/wsgate "$config"
  bench_round limits-off target/release/wsgate "$unlimited"
done
