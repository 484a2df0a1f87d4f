#!/usr/bin/env bash
# Decode speed of `bouquet generate --local` on a GGUF (f32 weights, --quant int8 and --quant nf4)
# against llama.cpp (llama-cpp-python, built from source from PyPI into
# ${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/venv-llamacpp) on the same file, one thread each, in
# one run; then both on a Q4_0 copy of the file (made once with llama.cpp's quantizer), bouquet
# with --quant nf4: 4-bit against 4-bit on the same weights. Prints ms per generated token after
# the first (the prefill is left out of both).
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
bouquet() {  # MODEL QUANT
  build/bouquet generate --local --model "$1" --prompt "$prompt" --max-new-tokens "$tokens" --ignore-eos \
    --threads 1 --quant "$2" --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); n=len(j['ids']); print(f'bouquet $(basename "$1") --quant $2: {1000*j[\"decode_s\"]/(n-1):.1f} ms/token')"
}
llama() {  # MODEL
  "$py" - "$1" "$tokens" "$prompt" <<'PY'
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
}
for quant in none int8 nf4; do bouquet "$model" "$quant"; done
llama "$model"
q4_0="$cache/$(basename "${model%.gguf}").Q4_0.gguf"
[[ $model == *Q4_0.gguf ]] && q4_0="$model"
if ! [[ -s $q4_0 ]]; then
  "$py" - "$model" "$q4_0" <<'PY'
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
params.allow_requantize = True
params.nthread = 2
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), (sys.argv[2] + ".part").encode(), ctypes.byref(params))
sys.exit(rc)
PY
  mv "$q4_0.part" "$q4_0"
fi
bouquet "$q4_0" nf4
llama "$q4_0"
