#!/usr/bin/env bash
# The cost of serving two dialects of one stream: one wsgate node, CONNECTIONS clients on the
# demo market's BTCUSDT trades, rounds alternating between one dialect (A: every client speaks
# Binance, `btcusdt@trade`) and two (B: half of them speak Binance, half HashKey's v2 public
# streams, topic `trade` of BTCUSDT, the `hashkey:btcusdt@trade` stream that its own mapper
# feeds from the same upstream trades), so a machine's drift over the run weighs on both alike.
#
#   bench/scripts/bench-dialects.sh [CONNECTIONS] [TAKERS_PER_SEC] [ROUNDS]
#
# Both rounds run two wsgate-bench processes at once, CONNECTIONS/2 connections each (in A both
# are Binance clients), so the clients are the same but for the dialect of the second half. The
# node serves bench/config/dialects.json (trades-1.json with the HashKey trade stream and its
# mapping, in both rounds) at TAKERS_PER_SEC taker orders a second per symbol. Each round
# prints a line per half (delivered msg/s, lost ids, p50 and p99, the generator's CPU) and one
# for the node (delivered msg/s of both halves, its CPU over the first half's window and per
# delivered message); the last lines are the means over the rounds. HashKey pushes stamp the
# event in milliseconds, so the HashKey half's latency reads up to 1 ms high (0.5 ms on
# average). Needs `cargo build --release --bin wsgate --bin wsgate-bench`, `make mappers` and
# `jq`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-4000}
rate=${2:-8}
rounds=${3:-3}
half=$(( connections / 2 ))
source bench/scripts/fanout-workload.sh   # wait_port
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config=$work/dialects.json
jq --argjson rate "$rate" '.datasource[0].properties.trades_per_sec = $rate' \
  bench/config/dialects.json > "$config"
bench=(./target/release/wsgate-bench --url ws://127.0.0.1:9100 --connections "$half"
       --streams btcusdt@trade --duration 20s --warmup 5s --quiet)

# One half's line from its JSON report: label, dialect, file.
half_line() {
  jq -r --arg round "$1" --arg dialect "$2" '
    def ms: . / 1000 | . * 10 | round / 10 | tostring + " ms";
    "  \($round) \($dialect): \(.connections.subscribed)/\(.connections.target) subscribed, " +
    "\(.messages.per_sec | round) msg/s, lost \(.messages.lost), " +
    "p50 \(.latency_us.p50 | ms), p99 \(.latency_us.p99 | ms), " +
    "generator CPU \(.bench.cpu_per_proc_core_share * 100 | round)%"' "$3"
}

# One round: LABEL and the second half's --subscribe mode (url = Binance, hashkey = HashKey).
round() {
  local label=$1 second=$2 dialect=binance
  [ "$second" = hashkey ] && dialect=hashkey
  echo "== round $round: $label (binance + $dialect, $half connections each) =="
  target/release/wsgate serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
      --config "$config" --mappers-dir target/mappers 2>/dev/null &
  local gateway=$!
  wait_port 9100
  "${bench[@]}" --subscribe url --gateway-pid "$gateway" --json "$work/first.json" \
      > "$work/first.log" 2>&1 &
  local first=$!
  "${bench[@]}" --subscribe "$second" --gateway-pid "$gateway" --json "$work/second.json" \
      > "$work/second.log" 2>&1 &
  local second_pid=$!
  wait "$first" || true
  wait "$second_pid" || true
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
  if [ ! -s "$work/first.json" ] || [ ! -s "$work/second.json" ]; then
    cat "$work/first.log" "$work/second.log"
    return
  fi
  half_line "$label" binance "$work/first.json"
  half_line "$label" "$dialect" "$work/second.json"
  jq -rs --arg round "$label" '
    (.[0].messages.per_sec + .[1].messages.per_sec) as $rate
    | (.[0].gateway.cpu_window_s / .[0].messages.window_s) as $cpu
    | "  \($round) node: \($rate | round) msg/s delivered, CPU \($cpu * 100 | round)% of a core, " +
      "\($cpu / $rate * 1e6 * 100 | round / 100) µs per message" +
      "\t\($round)\t\($rate)\t\($cpu)\t\(.[0].latency_us.p50)\t\(.[0].latency_us.p99)" +
      "\t\(.[1].latency_us.p50)\t\(.[1].latency_us.p99)"' \
    "$work/first.json" "$work/second.json" | tee -a "$work/rounds.tsv" | cut -f1
  jq -r '.warnings[], .problems[]' "$work/first.json" "$work/second.json" | sort -u | sed 's/^/  note: /'
}

for round in $(seq "$rounds"); do
  round A-one-dialect url
  round B-two-dialects hashkey
done

echo "== means over $rounds rounds =="
awk -F'\t' '
  { n[$2]++; r[$2] += $3; c[$2] += $4; a50[$2] += $5; a99[$2] += $6; b50[$2] += $7; b99[$2] += $8 }
  END {
    for (k in n)
      printf "  %s: %.0f msg/s, node CPU %.0f%%, first half p50 %.1f ms p99 %.1f ms, second half p50 %.1f ms p99 %.1f ms\n",
        k, r[k] / n[k], c[k] / n[k] * 100, a50[k] / n[k] / 1e3, a99[k] / n[k] / 1e3, b50[k] / n[k] / 1e3, b99[k] / n[k] / 1e3
  }' "$work/rounds.tsv" | sort
