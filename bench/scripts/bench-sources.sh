#!/usr/bin/env bash
# Upstream sources: throughput and end-to-end latency through one wsgate node, against each
# broker consumed directly (the same-run baseline), with bench/src/bin/source-bench.rs.
#
#   bench/scripts/bench-sources.sh [SOURCE...]   # SOURCE: redis nats jetstream kafka (default: all)
#
# Environment: MESSAGES (throughput runs, default 200000), RATE (latency runs, msg/s, default
# 5000), WARMUP (default 5s), DURATION (measured, default 20s), REPEAT (runs of each, default 1),
# MODES (default "throughput latency");
# KAFKA_SET: space-separated librdkafka consumer properties KEY=VALUE, set on the direct consumer
# and on the gateway's kafka datasource alike (e.g. KAFKA_SET=fetch.wait.max.ms=10);
# WSGATE_BIN and BENCH_BIN override the two binaries (default: target/release/), COMMIT the
# commit the results are labelled with (default: HEAD).
#
# Every run gets a fresh broker of its own on a fixed non-default port of 127.0.0.1
# (redis-server :16379, nats-server -js :14222, tansu :19092 with a one-partition topic), and,
# for the wsgate path, a fresh `wsgate serve` (clients :9110, admin :9111) started with no
# datasource (bench/config/source-idle.json): the benchmark subscribes its WebSocket client, then
# adds the datasource and route through the operator API. The `RESULT` lines are collected in
# target/bench-sources/results.txt; logs are next to it.
#
# Needs: cargo build --release --bin wsgate --bin source-bench; make mappers (for
# target/mappers/binance_trade.wasm); redis-server, nats-server (/usr/sbin or PATH) and, for
# kafka, tansu (~/.cargo/bin/tansu or $WSGATE_TEST_TANSU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory

sources=("$@")
[ ${#sources[@]} -gt 0 ] || sources=(redis nats jetstream kafka)
messages=${MESSAGES:-200000}
rate=${RATE:-5000}
warmup=${WARMUP:-5s}
duration=${DURATION:-20s}
repeat=${REPEAT:-1}
read -r -a modes <<< "${MODES:-throughput latency}"
commit=${COMMIT:-$(git rev-parse --short HEAD)}
kafka_set=()
for property in ${KAFKA_SET:-}; do kafka_set+=(--kafka-set "$property"); done

out=target/bench-sources
mkdir -p "$out"
results=$out/results.txt
bench=${BENCH_BIN:-./target/release/source-bench}
wsgate=${WSGATE_BIN:-./target/release/wsgate}
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
tansu=${WSGATE_TEST_TANSU:-$HOME/.cargo/bin/tansu}
for f in "$bench" "$wsgate" target/mappers/binance_trade.wasm; do
  [ -e "$f" ] || { echo "missing $f (see the header of $0)" >&2; exit 1; }
done

broker_pid=""
gateway_pid=""
scratch=$(mktemp -d)
stop() {
  if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  gateway_pid=""
  broker_pid=""
}
trap 'stop; rm -rf "$scratch"' EXIT

wait_port() {
  for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on :$1" >&2
  return 1
}

# Starts a fresh broker for SOURCE; sets broker_pid and url.
start_broker() {
  local source=$1 log=$2
  rm -rf "${scratch:?}"/*
  case $source in
    redis)
      redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no --dir "$scratch" \
          --daemonize no > "$log" 2>&1 &
      broker_pid=$!; url=redis://127.0.0.1:16379; wait_port 16379 ;;
    nats|jetstream)
      "$nats_server" -a 127.0.0.1 -p 14222 -js -sd "$scratch/js" > "$log" 2>&1 &
      broker_pid=$!; url=nats://127.0.0.1:14222; wait_port 14222 ;;
    kafka)
      [ -x "$tansu" ] || { echo "tansu is not installed ($tansu)" >&2; return 1; }
      "$tansu" broker --listener-url tcp://127.0.0.1:19092 \
          --advertised-listener-url tcp://127.0.0.1:19092 --storage-engine memory://tansu/ \
          > "$log" 2>&1 &
      broker_pid=$!; url=127.0.0.1:19092; wait_port 19092
      "$tansu" topic create trades --partitions 1 --broker tcp://127.0.0.1:19092 >> "$log" 2>&1 ;;
    *) echo "unknown source $source" >&2; return 1 ;;
  esac
}

start_gateway() {
  local log=$1
  WSGATE_LOG=info "$wsgate" serve --listen 127.0.0.1:9110 --admin-listen 127.0.0.1:9111 \
      --admin-token bench --config bench/config/source-idle.json \
      --mappers-dir target/mappers 2> "$log" > /dev/null &
  gateway_pid=$!
  wait_port 9111
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:9111/readyz)" = 200 ] && return 0
    sleep 0.1
  done
  echo "wsgate never became ready; see $log" >&2
  return 1
}

echo "# $(date -u +%FT%TZ) commit $commit nproc=$(nproc) messages=$messages rate=$rate warmup=$warmup duration=$duration" | tee -a "$results"
for source in "${sources[@]}"; do
  for mode in "${modes[@]}"; do
    for path in broker wsgate; do
      for run in $(seq "$repeat"); do
        tag=$source-$mode-$path-$run
        echo "== $tag =="
        start_broker "$source" "$out/$tag.broker.log" || { stop; continue; }
        args=(--source "$source" --mode "$mode" --broker "$url" --messages "$messages"
              --rate "$rate" --warmup "$warmup" --duration "$duration")
        [ "$source" != kafka ] || args+=("${kafka_set[@]}")
        pids="broker=$broker_pid"
        if [ "$path" = wsgate ]; then
          start_gateway "$out/$tag.wsgate.log" || { stop; continue; }
          args+=(--gateway ws://127.0.0.1:9110 --admin http://127.0.0.1:9111 --token bench)
          pids="wsgate=$gateway_pid,$pids"
        fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        if "$bench" "${args[@]}" --pids "$pids" > "$out/$tag.out" 2> "$out/$tag.err"; then
          echo "$(grep '^RESULT' "$out/$tag.out") loadavg_before=$load" | tee -a "$results"
        else
          echo "FAILED $tag: $(tail -3 "$out/$tag.err" | tr '\n' ' ')" | tee -a "$results"
        fi
        if [ "$path" = wsgate ]; then
          curl -s 127.0.0.1:9111/metrics \
            | grep -E '^wsgate_(source_events|messages_out|socket_writes|messages_dropped|mapper_calls|mapper_events)_total|^wsgate_(publish_lag|delivery_latency|mapper_duration)_seconds' \
            > "$out/$tag.metrics" || true
        fi
        stop
      done
    done
  done
done
