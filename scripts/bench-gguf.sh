#!/usr/bin/env bash
# Decode speed of `bouquet generate --local` against llama.cpp (llama-cpp-python, built from
# source from PyPI into ${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/venv-llamacpp), one thread each (BOUQUET_BENCH_THREADS),
# in one run, format against format on the same weights. Copies of the model are made once with
# llama.cpp's own quantizer (cached beside the model):
#   f32:   bouquet (--quant none) and llama.cpp both on an F32 copy;
#   bf16:  bouquet --dtype bf16 (from the F32 copy) against llama.cpp on a BF16 copy;
#   8-bit: bouquet --quant int8 (per-row int8 quantized on load from the F32 copy) against
#          llama.cpp on a Q8_0 copy;
#   4-bit: bouquet --quant nf4 and llama.cpp on a Q4_0 copy.
# Prints ms per generated token after the first (the prefill is left out of both), the ratio
# bouquet / llama.cpp per format, and the machine's load average (other work moves absolute times:
# the two alternate for BOUQUET_BENCH_ROUNDS rounds, default 3, and the medians are compared).
# BOUQUET_LLAMACPP_NO_EXTRA_BUFFERS=1 loads llama.cpp's weights without its extra buffer types
# (weight repacking, AMX), as a run that fails is retried: a native build on a CPU that reports
# AMX crashed in its AMX product inside a VM here. That leaves llama.cpp its plain quantized dot
# products; stderr says when it happened.
# MODEL `7b-shaped` is a random-weight model of Llama-2-7B's shapes with 2 blocks (hidden 4096,
# MLP 11008, 32 heads, vocabulary 32000: ~2.7 GB in f32), made once in the cache with
# `bouquet make-tiny-model --no-tokenizer` and tests/reference/gguf_make.py (a stand-in
# vocabulary); there the LM head is half the bytes. BOUQUET_BENCH_THREADS (default 1) sets both
# sides' threads.
# Usage: scripts/bench-gguf.sh [MODEL.gguf | 7b-shaped] [TOKENS]   (default: SmolLM2 from fetch-smollm2.sh, 64)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}"
model=${1:-$(scripts/fetch-smollm2.sh)}
if [[ $model == 7b-shaped ]]; then
  model="$cache/llama2-7b-shaped-2blocks.F32.gguf"
  if ! [[ -s $model ]]; then
    gguf_py=$(scripts/gguf-venv.sh)
    hf=$(mktemp -d)
    build/bouquet make-tiny-model --family llama --layers 2 --hidden 4096 --intermediate 11008 --heads 32 \
      --kv-heads 32 --vocab 32000 --no-tokenizer --seed 7 --out "$hf" >&2
    "$gguf_py" tests/reference/gguf_make.py llama "$hf" "$model.part" F32
    rm -rf "$hf"
    mv "$model.part" "$model"
  fi
fi
tokens=${2:-64}
threads=${BOUQUET_BENCH_THREADS:-1}
py=${BOUQUET_LLAMACPP_PYTHON:-$cache/venv-llamacpp/bin/python}  # another Python with llama_cpp importable
if ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$cache/venv-llamacpp"
  CMAKE_BUILD_PARALLEL_LEVEL=2 "$cache/venv-llamacpp/bin/pip" install -q llama-cpp-python
fi
prompt="Once upon a time"
bouquet() {  # MODEL QUANT [DTYPE] -> ms/token
  build/bouquet generate --local --model "$1" --prompt "$prompt" --max-new-tokens "$tokens" --ignore-eos \
    --threads "$threads" --quant "$2" --dtype "${3:-f32}" --json |
    python3 -c "import json,sys; j=json.load(sys.stdin); n=len(j['ids']); print(f'{1000*j[\"decode_s\"]/(n-1):.1f}')"
}
llama_py=$(
  cat <<'PY'
import os, sys, time
import llama_cpp.llama_cpp as api
from llama_cpp import Llama
model, tokens, prompt, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if os.environ.get("BOUQUET_LLAMACPP_NO_EXTRA_BUFFERS"):
    defaults = api.llama_model_default_params
    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params
    api.llama_model_default_params = without_extra_buffers
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False)
llm.reset()
llm.eval(ids)
llm.eval([llm.sample(temp=0.0)])  # the first generated token, as bouquet's prefill_s holds it
start = time.perf_counter()
for _ in range(tokens - 1):
    llm.eval([llm.sample(temp=0.0)])
elapsed = time.perf_counter() - start
print(f"{1000 * elapsed / (tokens - 1):.1f}")
PY
)
llama() {  # MODEL -> ms/token; retried without llama.cpp's extra buffer types if it fails
  if [[ -z ${BOUQUET_LLAMACPP_NO_EXTRA_BUFFERS:-} ]] && "$py" -c "$llama_py" "$1" "$tokens" "$prompt" "$threads" 2>/dev/null; then
    return
  fi
  [[ -n ${BOUQUET_LLAMACPP_NO_EXTRA_BUFFERS:-} ]] || echo "llama.cpp failed on $(basename "$1"): again without extra buffer types" >&2
  BOUQUET_LLAMACPP_NO_EXTRA_BUFFERS=1 "$py" -c "$llama_py" "$1" "$tokens" "$prompt" "$threads"
}
copy() {  # FTYPE_NAME SUFFIX -> path of the model converted by llama.cpp's quantizer (made once)
  local out="$cache/$(basename "${model%.gguf}").$2.gguf"
  if ! [[ -s $out ]]; then
    "$py" - "$model" "$out" "$1" <<'PY'
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, sys.argv[3])
params.allow_requantize = True
params.nthread = 2
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), (sys.argv[2] + ".part").encode(), ctypes.byref(params))
sys.exit(rc)
PY
    mv "$out.part" "$out"
  fi
  echo "$out"
}
f32=$(copy LLAMA_FTYPE_ALL_F32 F32)
q8_0=$(copy LLAMA_FTYPE_MOSTLY_Q8_0 Q8_0)
q4_0=$(copy LLAMA_FTYPE_MOSTLY_Q4_0 Q4_0)
bf16=$(copy LLAMA_FTYPE_MOSTLY_BF16 BF16)
rounds=${BOUQUET_BENCH_ROUNDS:-3}
echo "$(basename "$model"), $tokens tokens, $threads thread(s), $rounds rounds (bouquet and llama.cpp alternate;" \
  "medians), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
compare() {  # LABEL BOUQUET_MODEL QUANT LLAMA_MODEL [BOUQUET_DTYPE]
  local b=() l=() r
  for ((r = 0; r < rounds; r++)); do
    b+=("$(bouquet "$2" "$3" "${5:-f32}")")
    l+=("$(llama "$4")")
  done
  python3 - "$1" "${b[*]}" "${l[*]}" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[2].split()]
l = [float(x) for x in sys.argv[3].split()]
bm, lm = statistics.median(b), statistics.median(l)
print(f"{sys.argv[1]:<40} bouquet {bm:7.1f} ms/token  llama.cpp {lm:7.1f}  ratio {bm / lm:.2f}"
      f"  (bouquet {min(b):.1f}-{max(b):.1f}, llama.cpp {min(l):.1f}-{max(l):.1f})")
PY
}
compare "f32: --quant none vs F32" "$f32" none "$f32"
compare "bf16: --dtype bf16 (from F32) vs BF16" "$f32" none "$bf16" bf16
compare "8-bit: --quant int8 (from F32) vs Q8_0" "$f32" int8 "$q8_0"
compare "4-bit: --quant nf4 vs Q4_0 (same file)" "$q4_0" nf4 "$q4_0"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
