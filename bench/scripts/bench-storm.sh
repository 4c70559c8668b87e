#!/usr/bin/env bash
# Memory per idle connection after a reconnect storm against the same connections opened at the
# bench's pace, in one run, rounds alternating (paced, storm, paced, storm, ...).
#
#   bench/scripts/bench-storm.sh [CONNECTIONS] [ROUNDS] [EXTRA WSGATE FLAGS...]
#
# Every connection takes the five @trade streams of the idle demo market (bench/config/idle.json:
# no trades, so only connections cost). "paced" opens them at 2,000 per second; "storm" at
# 1,000,000 per second, i.e. all at once, as after a node restart. Extra flags go to every
# wsgate run (e.g. `--max-handshakes 100000` for no handshake bound). Needs `make build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-10000}
rounds=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
source bench/scripts/fanout-workload.sh
fanout_workload "$connections" idle

run() {
  local label=$1 ramp=$2
  shift 2
  echo "== round $round: $label (ramp $ramp/s) =="
  ./target/release/wsgate serve --listen 127.0.0.1:9200 --admin-listen 127.0.0.1:9201 \
      --config "$config" --mappers-dir target/mappers "$@" 2>>"${STORM_LOG:-/dev/null}" &
  local gateway=$!
  wait_port 9200
  "${bench[@]}" --url ws://127.0.0.1:9200 --gateway-pid "$gateway" --ramp-per-sec "$ramp" \
      --connect-timeout 30s --retries 8 || true
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}

for round in $(seq "$rounds"); do
  run paced 2000 "$@"
  run storm 1000000 "$@"
done
