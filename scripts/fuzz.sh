#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang with ASan + UBSan, in build-fuzz/) and runs each on
# its committed corpus. Usage:
#   scripts/fuzz.sh [SECONDS] [HARNESS...]   run each for SECONDS (default 10: the smoke run
#                                            scripts/test.sh makes); new inputs go to
#                                            build-fuzz/found/HARNESS, crashes to build-fuzz/crashes/
#   scripts/fuzz.sh --merge [HARNESS...]     fold build-fuzz/found/HARNESS into fuzz/corpus/HARNESS,
#                                            minimized (what to commit after a campaign)
# Exits non-zero when a harness finds a crash, a leak or undefined behaviour; the input that did
# it is printed and kept under build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(clang-16 libclang-rt-16-dev)
bash scripts/apt-install.sh fuzz "${packages[@]}"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CXX=clang++-16 cmake -S . -B build-fuzz -G Ninja -DBOUQUET_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "${launcher[@]}" >/dev/null
cmake --build build-fuzz -j"$(nproc)"

all=(wire_decode frame_reader dht_record block_server inference_session scenario_yaml
  gguf_file safetensors_header tokenizer_json sentencepiece_model)
# Model files and tokenizers hold whole vocabularies: their seeds need more room than messages do.
max_len() {
  case $1 in
    gguf_file | safetensors_header | tokenizer_json | sentencepiece_model) echo 16384 ;;
    *) echo 4096 ;;
  esac
}
merge=0
if [[ ${1:-} == --merge ]]; then
  merge=1
  shift
else
  seconds=${1:-10}
  shift || true
fi
harnesses=("$@")
((${#harnesses[@]})) || harnesses=("${all[@]}")
if ((merge)); then
  for h in "${harnesses[@]}"; do
    fresh=$(mktemp -d)
    mkdir -p "build-fuzz/found/$h"
    build-fuzz/fuzz/fuzz_$h -merge=1 -max_len="$(max_len "$h")" "$fresh" "fuzz/corpus/$h" "build-fuzz/found/$h" \
      >"build-fuzz/merge-$h.log" 2>&1
    rm -rf "fuzz/corpus/$h" && mv "$fresh" "fuzz/corpus/$h"
    echo "fuzz: fuzz/corpus/$h holds $(ls "fuzz/corpus/$h" | wc -l) inputs"
  done
  exit 0
fi

mkdir -p build-fuzz/crashes
status=0
for h in "${harnesses[@]}"; do
  mkdir -p "build-fuzz/found/$h"
  log="build-fuzz/fuzz-$h.log"
  # New inputs go to found/ (the first directory); the committed corpus is only read.
  if build-fuzz/fuzz/fuzz_$h -max_total_time="$seconds" -max_len="$(max_len "$h")" -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="build-fuzz/crashes/$h-" "build-fuzz/found/$h" "fuzz/corpus/$h" >"$log" 2>&1; then
    echo "fuzz: $h: $(grep -E '^#[0-9]+.*DONE' "$log" | tail -1 | sed -E 's/^#([0-9]+)\s+DONE\s+/\1 runs, /')"
  else
    status=1
    echo "fuzz: $h FAILED (log $log):"
    grep -E "ERROR|SUMMARY|internal error|runtime error|Test unit written" "$log" | head -8
  fi
done
exit $status
