#!/usr/bin/env bash
# Decode speed of `bouquet generate --local` on a GGUF (f32 weights, and --quant int8) against
# llama.cpp (llama-cpp-python, built from source from PyPI into
# ${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/venv-llamacpp) on the same file, one thread each, in
# one run. Prints ms per generated token after the first (the prefill is left out of both).
# Usage: scripts/bench-gguf.sh [MODEL.gguf] [TOKENS]   (default: SmolLM2 from fetch-smollm2.sh, 64)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:-$(scripts/fetch-smollm2.sh)}
tokens=${2:-64}
cache="${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}"
py="$cache/venv-llamacpp/bin/python"
if ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$cache/venv-llamacpp"
  CMAKE_BUILD_PARALLEL_LEVEL=2 "$cache/venv-llamacpp/bin/pip" install -q llama-cpp-python
fi
prompt="Once upon a time"
for quant in none int8; do
  build/bouquet generate --local --model "$model" --prompt "$prompt" --max-new-tokens "$tokens" --ignore-eos \
    --threads 1 --quant "$quant" --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); n=len(j['ids']); print(f'bouquet --quant $quant: {1000*j[\"decode_s\"]/(n-1):.1f} ms/token')"
done
"$py" - "$model" "$tokens" "$prompt" <<'PY'
import sys, time
from llama_cpp import Llama
model, tokens, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
llm = Llama(model_path=model, n_threads=1, n_threads_batch=1, n_ctx=512, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False)
llm.reset()
llm.eval(ids)
llm.eval([llm.sample(temp=0.0)])  # the first generated token, as bouquet's prefill_s holds it
start = time.perf_counter()
for _ in range(tokens - 1):
    llm.eval([llm.sample(temp=0.0)])
elapsed = time.perf_counter() - start
print(f"llama.cpp ({model.rsplit('.', 2)[-2]} kernels): {1000 * elapsed / (tokens - 1):.1f} ms/token")
PY
