#!/usr/bin/env bash
# What TLS costs the gateway: the same workload without and with TLS on the client listener, in
# one run, rounds alternating (plain, tls, plain, tls, ...) so a machine's drift weighs on both.
#
#   bench/scripts/bench-tls.sh fanout     [CONNECTIONS] [TAKERS_PER_SEC] [ROUNDS]
#   bench/scripts/bench-tls.sh saturation [CONNECTIONS] [ROUNDS]
#   bench/scripts/bench-tls.sh handshake  [CONNECTIONS] [ROUNDS]
#
# fanout: bench-fanout.sh's workload (every connection takes the five @trade streams of the demo
#   market in bench/config/trades-TAKERS_PER_SEC.json: 0.2 or 1), against ws:// and then wss://
#   (an ECDSA P-256 certificate). Each round prints wsgate-bench's report, whose `gateway cpu`
#   line is the gateway's CPU time over the window; the summary at the end lists delivered msg/s,
#   loss, p50/p99 and the gateway's CPU per delivered message. Both servers are ramped with at
#   most MAX_CONNECTING connections in their handshake at once and a 30 s connect timeout: at the
#   workload's 5,000 connections per second, TLS handshakes on a busy machine queue past the
#   bench's 10 s timeout, and the retries of clients that gave up cost the server handshakes
#   nobody waits for.
# saturation: the same with trades-8.json (more than two cores can deliver), but the clients
#   connect while the demo market is idle (the node starts with bench/config/idle.json) and the
#   script switches it to 8 taker orders per second through the operator API (`wsgate config
#   apply`) once all are connected; the bench warms up 15 s, then measures 20 s. Connecting
#   10,000 clients into a node that is already saturated starves their handshakes (TLS ones
#   above all: minutes for a few thousand on this machine), so the rounds would not compare.
# handshake: the gateway on one tokio worker (`--worker-threads 1`), pinned to core 0; the bench
#   pinned to core 1 opens CONNECTIONS connections (default 10,000) as fast as the gateway takes
#   them: no ramp pacing, at most MAX_CONNECTING (default 256) in connect + handshake at once, so
#   the gateway's listen queue (4,096) never overflows. A connection counts when its TCP connect,
#   TLS handshake (wss), WebSocket upgrade and subscription (five @trade streams in the URL, the
#   demo market without trades: bench/config/idle.json) are done. Rounds alternate plain, TLS with
#   an ECDSA P-256 certificate, the same with an RSA 2048 one (both key exchanges X25519, what
#   browsers and OpenSSL clients offer first), and the ECDSA one again with the client offering
#   P-384 first, as a rustls 0.23.48 client with the ring provider does by default. Reported:
#   connections per second of wall time, and per second of gateway CPU time (the gateway's user +
#   system time over the ramp, from /proc, so it does not depend on whether the bench or the
#   gateway was the slower side).
#
# The certificates (a throwaway CA and a leaf for 127.0.0.1 and localhost, per key type) are made
# with the openssl command in a temporary directory, removed at exit. Every TLS connection makes a
# full handshake (wsgate-bench does not resume sessions). Needs `make build` (or
# `cargo build --release --workspace --bins && make mappers`), openssl, jq; taskset for pinning.
# WSGATE and WSGATE_BENCH name other binaries than target/release/wsgate and wsgate-bench (e.g.
# copies, so that a build during the run does not swap them between rounds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root, from any working directory
mode=${1:-}
case "$mode" in
  fanout)
    connections=${2:-10000}
    rate=${3:-1}
    rounds=${4:-3}
    ;;
  saturation)
    connections=${2:-10000}
    rate=8
    rounds=${3:-3}
    ;;
  handshake)
    connections=${2:-10000}
    rounds=${3:-3}
    ;;
  *)
    sed -n '2,7p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
max_connecting=${MAX_CONNECTING:-256}
source bench/scripts/fanout-workload.sh
wsgate=${WSGATE:-./target/release/wsgate}
wsgate_bench=${WSGATE_BENCH:-./target/release/wsgate-bench}

dir=$(mktemp -d /tmp/wsgate-bench-tls.XXXXXX)
gateway=
cleanup() {
  if [ -n "$gateway" ]; then kill "$gateway" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# A CA and a server certificate signed by it, both with key type $1 (ec: P-256, rsa: 2048 bits).
make_pki() {
  local kind=$1 newkey
  case "$kind" in
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
  esac
  local d=$dir/$kind
  mkdir -p "$d"
  openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj "/CN=wsgate bench CA ($kind)" \
      -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -new "${newkey[@]}" -nodes -subj "/CN=localhost" \
      -keyout "$d/key.pem" -out "$d/leaf.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
      > "$d/leaf.ext"
  openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial 2 \
      -days 2 -extfile "$d/leaf.ext" -out "$d/cert.pem" 2>/dev/null
}
make_pki ec
make_pki rsa

# Starts the gateway (extra arguments: TLS flags, worker threads); sets $gateway.
start_gateway() {
  local config=$1; shift
  "${pin_gateway[@]}" "$wsgate" serve --listen 127.0.0.1:9100 \
      --admin-listen 127.0.0.1:9101 --config "$config" --mappers-dir target/mappers "$@" \
      2>/dev/null &
  gateway=$!
  wait_port 9100
}

stop_gateway() {
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
  gateway=
}

# The TLS parameters the gateway negotiates with a client offering the key exchange group $2
# first (x25519, secp256r1, secp384r1; default x25519), seen through openssl's client.
show_tls_parameters() {
  local group
  case "${2:-x25519}" in
    secp256r1*) group=P-256:X25519 ;;
    secp384r1*) group=P-384:X25519 ;;
    *) group=X25519:P-256:P-384 ;;
  esac
  openssl s_client -connect 127.0.0.1:9100 -CAfile "$1/ca.pem" -servername localhost \
      -groups "$group" < /dev/null 2>/dev/null \
      | grep -E '^(New|Peer signature type|Server Temp Key|Verify return code)' | sed 's/^/  /' || true
}

tls_args() { echo --tls-cert "$dir/$1/cert.pem" --tls-key "$dir/$1/key.pem"; }

summary=()

# Waits until the gateway holds $1 connections (or the bench, $2, has exited), then switches the
# demo market to trades-8.json.
start_trades_when_connected() {
  local want=$1 bench_pid=$2 have
  while kill -0 "$bench_pid" 2>/dev/null; do
    have=$(curl -s 127.0.0.1:9101/metrics | awk '$1 == "wsgate_connections" { print $2 }')
    if [ "${have:-0}" -ge "$want" ]; then
      "$wsgate" config --admin-url http://127.0.0.1:9101 --token bench-tls \
          apply bench/config/trades-8.json | sed 's/^/  /'
      return
    fi
    sleep 0.2
  done
}

if [ "$mode" = fanout ] || [ "$mode" = saturation ]; then
  pin_gateway=()
  fanout_workload "$connections" "$rate"
  bench[0]=$wsgate_bench
  start_config=$config
  if [ "$mode" = saturation ]; then
    start_config=bench/config/idle.json
    for i in "${!bench[@]}"; do [ "${bench[$i]}" != --warmup ] || bench[i + 1]=15s; done
  fi
  run() {
    local label=$1 url=$2; shift 2
    echo "== round $round: $label ($config, load $(cut -d' ' -f1-3 /proc/loadavg)) =="
    start_gateway "$start_config" --admin-token bench-tls "$@"
    [ "$label" = plain ] || [ "$round" != 1 ] || show_tls_parameters "$dir/ec"
    "${bench[@]}" --url "$url" --ca-cert "$dir/ec/ca.pem" --gateway-pid "$gateway" \
        --max-connecting "$max_connecting" --connect-timeout 30s --json "$dir/report.json" &
    local bench_pid=$!
    if [ "$mode" = saturation ]; then start_trades_when_connected "$connections" "$bench_pid"; fi
    wait "$bench_pid" || true
    curl -s 127.0.0.1:9101/metrics \
        | grep -E '^wsgate_(socket_writes_total|messages_out_total) ' | sed 's/^/  /' || true
    stop_gateway
    summary+=("$(jq -r --arg l "$label" --arg r "$round" '
      [$r, $l, (.messages.per_sec | round), .messages.lost,
       ((.latency_us.p50 // 0) / 1000 * 10 | round / 10),
       ((.latency_us.p99 // 0) / 1000 * 10 | round / 10),
       ((.gateway.cpu_window_s // 0) / .messages.window_s * 100 | round),
       ((.gateway.cpu_window_s // 0) * 1e6 / ([.messages.delivered, 1] | max) * 100 | round / 100),
       (.bench.cpu_per_proc_core_share * 100 | round),
       .connections.failed, (.connections.ramp_s * 10 | round / 10)]
      | @tsv' "$dir/report.json")")
  }
  for round in $(seq "$rounds"); do
    run plain ws://127.0.0.1:9100
    # shellcheck disable=SC2046
    run tls wss://127.0.0.1:9100 $(tls_args ec)
  done
  echo
  echo "== summary: $connections connections × 5 streams, trades-$rate =="
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' round server 'msg/s' lost 'p50 ms' \
      'p99 ms' 'gateway cpu %' 'gateway µs/msg' 'bench cpu %/proc' 'failed conns' 'ramp s'
  printf '%s\n' "${summary[@]}"
else
  if command -v taskset > /dev/null; then
    pin_gateway=(taskset -c 0)
    pin_bench=(taskset -c 1)
  else
    echo "(no taskset: gateway and bench not pinned)"
    pin_gateway=()
    pin_bench=()
  fi
  streams=btcusdt@trade,ethusdt@trade,solusdt@trade,bnbusdt@trade,xrpusdt@trade
  # run LABEL URL KEY GROUPS: KEY is the certificate's key type (ec, rsa; none for ws://),
  # GROUPS the key exchange groups the bench offers.
  run() {
    local label=$1 url=$2 key=$3 groups=$4 tls=()
    echo "== round $round: $label (load $(cut -d' ' -f1-3 /proc/loadavg)) =="
    # shellcheck disable=SC2207
    [ "$key" = none ] || tls=($(tls_args "$key"))
    start_gateway bench/config/idle.json --worker-threads 1 "${tls[@]}"
    if [ "$key" != none ] && [ "$round" = 1 ]; then show_tls_parameters "$dir/$key" "$groups"; fi
    local ca=$dir/ec/ca.pem
    [ "$key" != rsa ] || ca=$dir/rsa/ca.pem
    "${pin_bench[@]}" "$wsgate_bench" --url "$url" --ca-cert "$ca" --tls-groups "$groups" \
        --connections "$connections" --streams "$streams" --streams-per-conn 5 --idle \
        --warmup 0 --duration 1s --ramp-per-sec 1000000 --max-connecting "$max_connecting" \
        --source-ips 127.0.0.2-127.0.0.60 --quiet --gateway-pid "$gateway" \
        --json "$dir/report.json" || true
    stop_gateway
    summary+=("$(jq -r --arg l "$label" --arg r "$round" '
      (.connections.target - .connections.failed) as $ok
      | [$r, $l, $ok, .connections.connect_errors, (.connections.ramp_s * 1000 | round / 1000),
         ($ok / .connections.ramp_s | round),
         (.gateway.cpu_ramp_s / .connections.ramp_s * 100 | round),
         (.gateway.cpu_ramp_s * 1e6 / $ok | round),
         ($ok / .gateway.cpu_ramp_s | round),
         (.bench.cpu_s / .connections.ramp_s * 100 | round),
         (.gateway.bytes_per_conn | round)]
      | @tsv' "$dir/report.json")")
  }
  default_groups=x25519,secp256r1,secp384r1
  for round in $(seq "$rounds"); do
    run plain ws://127.0.0.1:9100 none "$default_groups"
    run tls-ecdsa wss://127.0.0.1:9100 ec "$default_groups"
    run tls-rsa wss://127.0.0.1:9100 rsa "$default_groups"
    run tls-ecdsa-p384 wss://127.0.0.1:9100 ec secp384r1,x25519,secp256r1
  done
  echo
  echo "== summary: $connections connections, at most $max_connecting connecting, gateway on one worker =="
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' round server connected \
      'connect errors' 'ramp s' 'conn/s' 'gateway cpu %' 'gateway µs/conn' 'conn/s per core' \
      'bench cpu %' 'gateway RSS B/conn'
  printf '%s\n' "${summary[@]}"
fi
