#!/usr/bin/env bash
# Side-by-side fan-out benchmark: wsgate against the plain tokio-tungstenite baseline
# (bench/src/bin/baseline-fanout.rs), same clients, same machine, one after the other.
#
#   bench/scripts/bench-fanout.sh CONNECTIONS TAKERS_PER_SEC FILLS_PER_TAKER [idle]
#
# wsgate runs the demo market from bench/config/ (idle.json, trades-0.2.json or trades-1.json,
# chosen by TAKERS_PER_SEC); the baseline publishes FILLS_PER_TAKER trades per taker order at the
# same taker rate, symbols staggered the same way. Every connection takes the five @trade streams.
# Needs `make build` first (release binaries of the workspace and target/mappers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-10000}
rate=${2:-1}
fills=${3:-5}
mode=${4:-}
source bench/scripts/fanout-workload.sh
if [ "$mode" = idle ]; then fanout_workload "$connections" idle; else fanout_workload "$connections" "$rate"; fi

echo "== wsgate ($config) =="
./target/release/wsgate serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
    --config "$config" --mappers-dir target/mappers 2>/dev/null &
gateway=$!
wait_port 9100
"${bench[@]}" --url ws://127.0.0.1:9100 --gateway-pid "$gateway" || true
curl -s 127.0.0.1:9101/metrics | grep -E '^wsgate_(socket_writes_total|messages_out_total) ' || true
kill "$gateway"; wait "$gateway" 2>/dev/null || true

if [ "$mode" = idle ]; then baseline_rate=0.001; else baseline_rate=$rate; fi
for buffer in default 8192; do
  echo "== baseline tokio-tungstenite, read buffer $buffer =="
  args=(127.0.0.1:9300 btcusdt,ethusdt,solusdt,bnbusdt,xrpusdt "$baseline_rate" "$fills")
  [ "$buffer" = default ] || args+=("$buffer")
  ./target/release/baseline-fanout "${args[@]}" 2>/dev/null &
  baseline=$!
  wait_port 9300
  "${bench[@]}" --url ws://127.0.0.1:9300 --gateway-pid "$baseline" || true
  kill "$baseline"; wait "$baseline" 2>/dev/null || true
done
