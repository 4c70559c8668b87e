#!/usr/bin/env bash
# A cluster run on one machine: NODES wsgate nodes (each its own process, so each under the
# 20,000-open-files limit) on their own Redis and NATS, the demo market consumed by the node the
# cluster assigns it to and fanned out to every node over NATS, and wsgate-bench holding
# CONNECTIONS subscribed connections spread over all nodes and several bench processes.
#
#   bench/scripts/bench-cluster.sh CONNECTIONS NODES TAKERS_PER_SEC [idle]
#
# TAKERS_PER_SEC picks bench/config/trades-<rate>.json (0.2 or 1; 5 fills per taker order).
# STREAMS_PER_CONN (default 5) of the five @trade streams per connection.
# Reports the bench's latency table, each node's RSS, and each node's delivered messages.
# Needs `make build` first (release binaries of the workspace and target/mappers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
connections=${1:-100000}
nodes=${2:-6}
rate=${3:-0.2}
mode=${4:-}
config=bench/config/trades-$rate.json
[ "$mode" = idle ] && config=bench/config/idle.json
redis_port=6390
nats_port=4232
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

redis-server --port "$redis_port" --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
/usr/sbin/nats-server -p "$nats_port" -js -sd "$work/js" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"; wait_port "$nats_port"

urls=()
node_pids=()
for i in $(seq 1 "$nodes"); do
  port=$((9200 + i)); admin=$((9300 + i))
  ./target/release/wsgate serve --node-id "node-$i" \
      --redis "redis://127.0.0.1:$redis_port" --nats "nats://127.0.0.1:$nats_port" \
      --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
      --config "$config" --mappers-dir target/mappers --max-connections 19000 \
      >"$work/node-$i.log" 2>&1 &
  pids+=($!); node_pids+=($!)
  urls+=("ws://127.0.0.1:$port")
done
for i in $(seq 1 "$nodes"); do wait_port $((9200 + i)); done
sleep 3   # ownership settles: one node consumes the demo market

streams=btcusdt@trade,ethusdt@trade,solusdt@trade,bnbusdt@trade,xrpusdt@trade
procs=$(( (connections + 14999) / 15000 ))
bench=(./target/release/wsgate-bench --url "$(IFS=,; echo "${urls[*]}")"
       --connections "$connections" --streams "$streams" --streams-per-conn "${STREAMS_PER_CONN:-5}"
       --duration 30s --warmup 10s --procs "$procs" --ramp-per-sec 4000
       --source-ips 127.0.0.2-127.0.0.250 --quiet
       --gateway-pid "$(IFS=,; echo "${node_pids[*]}")")
[ "$mode" = idle ] && bench+=(--idle)
"${bench[@]}" || true

echo "== per node =="
for i in $(seq 1 "$nodes"); do
  pid=${node_pids[$((i - 1))]}
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  metrics=$(curl -s "127.0.0.1:$((9300 + i))/metrics")
  conns=$(echo "$metrics" | awk '$1 == "wsgate_connections" {print $2}')
  out=$(echo "$metrics" | awk '$1 == "wsgate_messages_out_total" {print $2}')
  consumed=$(echo "$metrics" | awk '/^wsgate_source_events_total/ {s += $2} END {print s + 0}')
  echo "node-$i rss_kib=$rss connections=$conns messages_out=$out upstream_events=$consumed"
done
