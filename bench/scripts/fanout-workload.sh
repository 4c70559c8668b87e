# The fan-out workload shared by bench-fanout.sh and bench-compare.sh (sourced, not run):
# `fanout_workload CONNECTIONS RATE` sets `bench` (the wsgate-bench command: every connection
# takes the five @trade streams) and `config` (bench/config/trades-RATE.json, or idle.json with
# no traffic for RATE=idle); `wait_port PORT` waits until something listens on 127.0.0.1:PORT;
# `bench_round LABEL BINARY CONFIG` runs one round: BINARY serving CONFIG on 127.0.0.1:9100
# under `bench`, its summary line labelled LABEL (and the caller's `$round`).

wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }

fanout_workload() {
  local connections=$1 rate=$2
  local streams=btcusdt@trade,ethusdt@trade,solusdt@trade,bnbusdt@trade,xrpusdt@trade
  local procs=$(( (connections + 7999) / 8000 ))
  bench=(./target/release/wsgate-bench --connections "$connections" --streams "$streams"
         --streams-per-conn 5 --duration 20s --warmup 5s --procs "$procs"
         --source-ips 127.0.0.2-127.0.0.60 --quiet)
  if [ "$rate" = idle ]; then
    bench+=(--idle)
    config=bench/config/idle.json
  else
    config=bench/config/trades-$rate.json
  fi
}

bench_round() {
  local label=$1 binary=$2 file=$3
  echo "== round ${round:-1}: $label ($binary, $file) =="
  "$binary" serve --listen 127.0.0.1:9100 --admin-listen 127.0.0.1:9101 \
      --config "$file" --mappers-dir target/mappers 2>/dev/null &
  local gateway=$!
  wait_port 9100
  "${bench[@]}" --url ws://127.0.0.1:9100 --gateway-pid "$gateway" || true
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}
