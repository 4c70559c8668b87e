#!/usr/bin/env bash
# The private side's numbers (docs/benchmarks.md, "The private side"):
#
#   bench/scripts/bench-private.sh orders    # order round trip: demo exchange in process, then NATS
#   bench/scripts/bench-private.sh users [N] # private routing at N users (default 10000) against
#                                            # the same deliveries on one public stream
#
# Needs `make build` first (release binaries of the workspace and target/mappers), and
# nats-server on the PATH (a private one is started on port 4333).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=${1:-orders}
users=${2:-10000}
rate=${RATE:-200}

wait_port() { for _ in $(seq 1200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

nats-server -p 4333 >/dev/null 2>&1 &
nats=$!
gateway=
trap 'kill $nats $gateway 2>/dev/null || true' EXIT
wait_port 4333

serve() { # serve CONFIG EXTRA_ARGS...
  local config=$1; shift
  WSGATE_ADMIN_TOKEN=bench ./target/release/wsgate serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
      --config "$config" --mappers-dir target/mappers "$@" 2>>"${GATEWAY_LOG:-/dev/null}" &
  gateway=$!
  wait_port 9100
  # Ready: every source is up (the NATS source subscribed), so nothing published is missed.
  for _ in $(seq 600); do curl -sf 127.0.0.1:9101/readyz >/dev/null && break; sleep 0.1; done
  sleep 3
}
stop() {
  curl -s 127.0.0.1:9101/metrics | grep -E '^wsgate_(source_events_total|messages_in_total|messages_dropped_total)' || true
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}

case "$what" in
orders)
  echo "== in-process demo exchange, $rate orders/s =="
  serve config/gateway.json
  ./target/release/private-bench orders --url ws://127.0.0.1:9100/ws-api/v3 --rate "$rate" --duration 20s
  stop
  echo "== NATS request/reply to a stand-in backend, $rate orders/s =="
  serve bench/config/private.json --trade-nats nats://127.0.0.1:4333 --listen-key-requests-per-ip 100000
  key=$(./target/release/wsgate key --admin-url http://127.0.0.1:9101 --token bench create \
          --user alice --permissions user-stream,trade)
  api_key=$(echo "$key" | sed -n 's/^api key: *//p'); secret=$(echo "$key" | sed -n 's/^secret: *//p')
  ./target/release/private-bench orders --url ws://127.0.0.1:9100/ws-api/v3 --key "$api_key" \
      --secret "$secret" --rate "$rate" --duration 20s --responder nats://127.0.0.1:4333
  stop
  ;;
users)
  for mode in ws-api listen-key public; do
    echo "== $users users, $mode =="
    serve bench/config/private.json --listen-key-requests-per-ip 1000000
    flag=()
    [ "$mode" = public ] && flag=(--public)
    [ "$mode" = listen-key ] && flag=(--listen-keys)
    ./target/release/private-bench users --addr 127.0.0.1:9100 --admin 127.0.0.1:9101 \
        --nats nats://127.0.0.1:4333 --users "$users" --rate "${USERS_RATE:-5000}" --duration 20s \
        --gateway-pid "$gateway" "${flag[@]}"
    stop
  done
  ;;
*) echo "usage: $0 orders|users [N]" >&2; exit 2 ;;
esac
