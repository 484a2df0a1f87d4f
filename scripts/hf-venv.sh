#!/usr/bin/env bash
# Creates (once) a Python virtual environment with Hugging Face transformers, torch and gguf from
# PyPI, for the oracle tests that compare Bouquet with transformers on a GGUF file, and prints its
# python. torch's PyPI wheels are large (several GB with their CUDA libraries): the slow tests never
# run this themselves, they use the venv when it is there and skip, naming this script, when not.
set -euo pipefail
cache="${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}"
venv="$cache/venv-hf"
check='import torch, transformers, accelerate, gguf'
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/venv-hf.lock"
flock 9
if ! [[ -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  python3 -m venv "$venv" >&2 || { echo "hf-venv: python3 -m venv failed" >&2; exit 1; }
  "$venv/bin/pip" install -q --disable-pip-version-check torch transformers accelerate gguf numpy sentencepiece >&2 ||
    { echo "hf-venv: pip install torch transformers gguf failed (is PyPI reachable?)" >&2; exit 1; }
fi
echo "$venv/bin/python"
