#!/usr/bin/env bash
# What the operator dashboard costs a loaded node: one wsgate binary under bench-fanout.sh's
# workload (CONNECTIONS connections on the five @trade streams, 1 taker a second per symbol),
# rounds alternating between no dashboard and DASHBOARDS dashboards open, each refreshing as the
# dashboard does (GET /api/v1/cluster and /api/v1/metrics every 2 s), so a machine's drift over
# the run weighs on both alike. Before the rounds, the dashboard's first load (its files and a
# first refresh) is timed on the idle node.
#
#   bench/scripts/bench-dashboard.sh [CONNECTIONS] [DASHBOARDS] [ROUNDS]
#
# Each round prints wsgate-bench's summary line (its gateway CPU is the node's), labelled
# `dashboards-0` or `dashboards-N`, and the refreshes the node answered. Needs `make build`,
# `make dashboard` and curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-10000}
dashboards=${2:-10}
rounds=${3:-2}
source bench/scripts/fanout-workload.sh
fanout_workload "$connections" 1
export WSGATE_ADMIN_TOKEN=bench WSGATE_DASHBOARD_DIR=target/dashboard
admin=http://127.0.0.1:9101
auth=(-H "Authorization: Bearer $WSGATE_ADMIN_TOKEN")

# One dashboard: a refresh every 2 s, counted in $1.
refresh_loop() {
  while true; do
    curl -sf "${auth[@]}" "$admin/api/v1/cluster" > /dev/null &&
      curl -sf "${auth[@]}" "$admin/api/v1/metrics" > /dev/null && echo >> "$1"
    sleep 2
  done
}

first_load() {
  target/release/wsgate serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
      --config "$config" --mappers-dir target/mappers 2>/dev/null &
  local gateway=$!
  wait_port 9101; sleep 1
  local start=$(date +%s%N) bytes=0 asset
  bytes=$(( bytes + $(curl -sf "$admin/dashboard/" | wc -c) ))
  for asset in $(curl -sf "$admin/dashboard/" | grep -o '/dashboard/assets/[^"]*'); do
    bytes=$(( bytes + $(curl -sf "$admin$asset" | wc -c) ))
  done
  bytes=$(( bytes + $(curl -sf "${auth[@]}" "$admin/api/v1/cluster" | wc -c) ))
  bytes=$(( bytes + $(curl -sf "${auth[@]}" "$admin/api/v1/metrics" | wc -c) ))
  echo "first load: $bytes bytes in $(( ($(date +%s%N) - start) / 1000000 )) ms (files, then one refresh)"
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}

first_load
for round in $(seq "$rounds"); do
  bench_round dashboards-0 target/release/wsgate "$config"
  counts=$(mktemp)
  ( sleep 1; for _ in $(seq "$dashboards"); do refresh_loop "$counts" & done; wait ) &
  pollers=$!
  bench_round "dashboards-$dashboards" target/release/wsgate "$config"
  pkill -P "$pollers" 2>/dev/null || true; kill "$pollers" 2>/dev/null || true
  echo "refreshes answered: $(wc -l < "$counts")"
  rm -f "$counts"
done
