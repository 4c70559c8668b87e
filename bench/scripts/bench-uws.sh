#!/usr/bin/env bash
# wsgate against a uWebSockets fan-out server on one stream, same clients, same machine, rounds
# alternating in one run (wsgate, uWebSockets, wsgate, ...) at each load.
#
#   UWS_BASELINE=/path/to/uws-server bench/scripts/bench-uws.sh [CONNECTIONS] [TAKERS_PER_SEC...]
#   BEFORE=/path/to/older/wsgate bench/scripts/bench-uws.sh [CONNECTIONS] [TAKERS_PER_SEC...]
#
# With BEFORE (a wsgate binary, e.g. an earlier commit's), its rounds come first in each
# alternation, on the same workload; with both BEFORE and UWS_BASELINE, all three alternate.
# Every connection takes `btcusdt@trade` (URL subscription). wsgate serves
# bench/config/one-stream.json (the demo market with BTCUSDT only, `stamp: schedule`, the
# binance_trade mapper, no per-connection rate limit) at TAKERS_PER_SEC taker orders a second;
# the uWebSockets server gets the same taker rate and FILLS trades per taker order (default 3.4,
# the demo market's mean) on the same open-loop schedule. The uWebSockets server is not part of
# this repository: docs/benchmarks.md says what it must do. ROUNDS (default 2), DURATION
# (default 20s) and RAMP (connections per second, default 2000; 1000000 opens them all at once)
# come from the environment. Each round prints one line: delivered msg/s, lost ids, p50/p95/p99,
# the server's CPU (share of one core, and per delivered message) and its RSS growth per
# connection. Needs `cargo build --release --bin wsgate -p wsgate-bench`, `make mappers-rust`
# and `jq`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
uws=${UWS_BASELINE:-}
before=${BEFORE:-}
servers=()
[ -n "$before" ] && servers+=(before)
servers+=(wsgate)
[ -n "$uws" ] && servers+=(uws)
if [ ${#servers[@]} -lt 2 ]; then
  echo "set UWS_BASELINE (a uWebSockets server) and/or BEFORE (another wsgate binary)" >&2
  exit 2
fi
connections=${1:-10000}
shift || true
rates=("${@:-1}")
rounds=${ROUNDS:-2}
fills=${FILLS:-3.4}
source bench/scripts/fanout-workload.sh   # wait_port
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
procs=$(( (connections + 7999) / 8000 ))
bench=(./target/release/wsgate-bench --connections "$connections" --streams btcusdt@trade
       --duration "${DURATION:-20s}" --warmup 5s --procs "$procs" --threads 1
       --ramp-per-sec "${RAMP:-2000}" --source-ips 127.0.0.2-127.0.0.60 --quiet)

# One round's line from its JSON report: load, server, file.
line() {
  jq -r --arg load "$1" --arg server "$2" '
    def ms: . / 1000 | . * 10 | round / 10 | tostring;
    "  \($load) \($server): \(.connections.subscribed)/\(.connections.target) subscribed, " +
    "\(.messages.per_sec | round) msg/s, lost \(.messages.lost), " +
    (if .latency_us then
      "p50/p95/p99 \(.latency_us.p50 | ms)/\(.latency_us.p95 | ms)/\(.latency_us.p99 | ms) ms, "
     else "" end) +
    "CPU \(.gateway.cpu_window_s / .messages.window_s * 100 | round)% " +
    "(\(.gateway.cpu_window_s * 1e6 / ([.messages.delivered, 1] | max) * 1000 | round / 1000) µs/msg), " +
    "RSS \(.gateway.bytes_per_conn | round) B/conn, " +
    "generator CPU \(.bench.cpu_per_proc_core_share * 100 | round)%"' "$3"
}

for rate in "${rates[@]}"; do
  config=$work/one-stream-$rate.json
  jq --argjson rate "$rate" '.datasource[0].properties.trades_per_sec = $rate' \
    bench/config/one-stream.json > "$config"
  for round in $(seq "$rounds"); do
    echo "== $rate takers/s, round $round =="
    for server in "${servers[@]}"; do
      if [ "$server" != uws ]; then
        binary=target/release/wsgate
        [ "$server" = before ] && binary=$before
        "$binary" serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
          --config "$config" --mappers-dir target/mappers 2>/dev/null &
        port=9100
      else
        "$uws" 9400 btcusdt "$rate" "$fills" 2>/dev/null &
        port=9400
      fi
      pid=$!
      wait_port "$port"
      "${bench[@]}" --url "ws://127.0.0.1:$port" --gateway-pid "$pid" \
        --json "$work/round.json" > "$work/round.log" 2>&1 || true
      kill "$pid"; wait "$pid" 2>/dev/null || true
      if [ -s "$work/round.json" ]; then
        line "$rate" "$server" "$work/round.json"
      else
        cat "$work/round.log"
      fi
      rm -f "$work/round.json"
    done
  done
done
