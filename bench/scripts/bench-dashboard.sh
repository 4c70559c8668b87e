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
# Then the node's CPU per refresh is measured directly at CONNECTIONS idle connections. Each
# round prints wsgate-bench's summary line (its gateway CPU is the node's), labelled
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

# CPU ticks (user + system) of process $1; ticks per second.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# The node's CPU per refresh, directly: CONNECTIONS idle subscribed connections (so the node
# does little else), then 300 refreshes back to back, against a quiet stretch as long.
refresh_cost() {
  target/release/wsgate serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
      --config bench/config/idle.json --mappers-dir target/mappers 2>/dev/null &
  local gateway=$!
  wait_port 9100
  local idle=(./target/release/wsgate-bench --url ws://127.0.0.1:9100 --connections "$connections"
              --streams btcusdt@trade,ethusdt@trade,solusdt@trade,bnbusdt@trade,xrpusdt@trade
              --streams-per-conn 5 --idle --duration 120s --warmup 1s
              --procs $(( (connections + 7999) / 8000 )) --source-ips 127.0.0.2-127.0.0.60 --quiet)
  "${idle[@]}" > /dev/null 2>&1 &
  local load=$!
  until [ "$(curl -sf http://127.0.0.1:9101/metrics | awk '/^wsgate_connections /{print $2}')" = "$connections" ]; do sleep 0.5; done
  sleep 2
  local t0 c0 t1 c1 c2 n=300
  t0=$(date +%s%N); c0=$(cpu_ticks "$gateway")
  for _ in $(seq "$n"); do
    curl -sf "${auth[@]}" "$admin/api/v1/cluster" > /dev/null
    curl -sf "${auth[@]}" "$admin/api/v1/metrics" > /dev/null
  done
  t1=$(date +%s%N); c1=$(cpu_ticks "$gateway")
  sleep "$(awk -v ns=$(( t1 - t0 )) 'BEGIN{print ns/1e9}')"
  c2=$(cpu_ticks "$gateway")
  awk -v busy=$(( c1 - c0 )) -v quiet=$(( c2 - c1 )) -v n=$n -v hz="$hz" -v ms=$(( (t1 - t0) / 1000000 )) 'BEGIN {
    printf "refresh cost at %d idle connections: %d refreshes in %d ms took %.0f ms of node CPU, a quiet stretch as long %.0f ms: %.2f ms CPU per refresh\n",
      '"$connections"', n, ms, busy * 1000 / hz, quiet * 1000 / hz, (busy - quiet) * 1000 / hz / n }'
  kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}

first_load
refresh_cost
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
