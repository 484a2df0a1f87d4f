#!/usr/bin/env bash
# Command (1) of the README: install and build (setup.sh), make a tiny random-weight Llama once
# under build/demo-model, and generate text with every block in this process.
# Usage: bash scripts/demo.sh ["prompt"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

model=build/demo-model
if [[ ! -f $model/config.json ]]; then
  ./build/bouquet make-tiny-model --family llama --out "$model" --seed 1
fi
prompt=${1:-"Once upon a time"}
echo "prompt: $prompt"
./build/bouquet generate --model "$model" --local --prompt "$prompt" --max-new-tokens 48
