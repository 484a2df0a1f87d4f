#!/usr/bin/env bash
# The device check of README "GPU servers": runs on a GPU machine that has PyTorch (the version
# the bundle was built against) and none of Bouquet's other libraries, from the bundle that
# scripts/device-bundle.sh makes here, and prints a summary, one line per check:
#   1. the engine's CUDA tests (gpu_tests CudaEngine.*, net_tests CudaSpanCompute.*) on the GPU;
#   2. greedy ids on the GPU equal those on the CPU: 32 tokens of a tiny model (f32), 16 tokens of
#      a 2-block Llama-2-7B-shaped model (f32); bf16 logits within 5% of f32's (in 1);
#   3. three `serve --device cuda` processes sharing the GPU and a client: the ids of --local;
#   4. bench-block --blocks 16 (Llama-2-7B's block shape) in bf16 and f32: the decode step against
#      the read floor (summing the same bytes) measured in the same run; target bf16 <= 1.5x.
#
# Usage: bash scripts/device-check.sh [--bundle DIR] [--device cuda|cpu] [--small] [--out DIR]
#                                     [--only 1,2,3,4] [--dry-run]
#   --device cpu --small rehearses every step on a CPU with small shapes (what can be checked
#   without a GPU); --dry-run prints the plan and runs nothing. Logs go to --out (default $OUT,
#   which the device tool brings back, else /tmp/device-check): summary.txt and one log per check (6 files).
# Exit status: 0 when every check passed, 1 when one failed, 2 when the machine is unfit (a library
# missing, another torch version, no GPU) before any check ran.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bundle=build-cuda/device-bundle
device=cuda
small=no
out=${OUT:-/tmp/device-check}
only=1,2,3,4
dry_run=no
usage() { sed -n '12,16p' "$0" | sed 's/^# \{0,1\}//' >&2; }
while (($#)); do
  case $1 in
    --bundle) bundle=${2:?--bundle needs a folder}; shift 2 ;;
    --device) device=${2:?--device needs cuda or cpu}; shift 2 ;;
    --small) small=yes; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --only) only=${2:?--only needs check numbers, e.g. 1,3}; shift 2 ;;
    --dry-run) dry_run=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "device-check: unknown argument '$1'" >&2; usage; exit 2 ;;
  esac
done
case $device in cuda | cpu) ;; *) echo "device-check: --device $device: expected cuda or cpu" >&2; exit 2 ;; esac
[[ $only =~ ^[1-4](,[1-4])*$ ]] || { echo "device-check: --only $only: expected numbers 1-4, e.g. 1,3" >&2; exit 2; }

# Shapes: Llama-2-7B's block, or small ones for a CPU rehearsal.
if [[ $small == yes ]]; then
  big=(--hidden 256 --intermediate 688 --heads 8 --kv-heads 8)
  span_blocks=4
  shapes=small
else
  big=(--hidden 4096 --intermediate 11008 --heads 32 --kv-heads 32)
  span_blocks=16
  shapes=Llama-2-7B
fi
prompt=1,45,300,12,7
bin=$bundle/bin
work=${TMPDIR:-/tmp}/device-check-work

plan() {
  cat <<EOF
device-check plan (device $device, shapes $shapes, bundle $bundle, logs $out)
  0. preflight: python3's torch (version = $bundle/TORCH_VERSION), its lib folder + $bundle/lib on
     LD_LIBRARY_PATH, every library of $bin/* found, nvidia-smi, the GPU's name and memory
  1. $bin/gpu_tests --gtest_filter=$(gtest_filter gpu); $bin/net_tests --gtest_filter=$(gtest_filter net)
  2. make-tiny-model (4 layers); generate --local --prompt-ids $prompt --max-new-tokens 32 --ignore-eos
     on cpu and on $device (f32): same ids. make-tiny-model --layers 2 ${big[*]};
     16 tokens, cpu vs $device (f32): same ids; $device bf16 vs f32 ids (reported)
  3. make-tiny-model (6 layers); serve --blocks 0:2 / 2:4 / 4:6 --device $device (3 processes);
     generate --peers A,B,C: same 32 ids as generate --local --device cpu
  4. bench-block --device $device --blocks $span_blocks ${big[*]} --dtype bf16, then f32:
     step vs read floor; target bf16 <= 1.5
  checks run: $only
EOF
}

gtest_filter() {
  if [[ $device == cuda ]]; then
    [[ $1 == gpu ]] && echo 'CudaEngine.*:CudaErrors.DeviceIndexPastTheGpusNamesHowManyThereAre' || echo 'CudaSpanCompute.*'
  else
    # No GPU: the tests of the errors --device cuda gets instead.
    [[ $1 == gpu ]] && echo 'CudaErrors.*' || echo 'CudaSpanCompute.*'
  fi
}

if [[ $dry_run == yes ]]; then
  plan
  exit 0
fi

mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"
summary=$out/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
failed=0
result() {  # result NAME PASS|FAIL|INFO|SKIP DETAILS
  [[ $2 == FAIL ]] && failed=1
  say "$(printf '%-44s %-4s %s' "$1" "$2" "$3")"
}
unfit() {
  say "UNFIT: $*"
  exit 2
}
SECONDS=0

# --- 0. preflight -----------------------------------------------------------------------------
python=${PYTHON:-python3}
if [[ -f $bundle/bouquet-bundle.tar.xz ]]; then
  # The carried form (scripts/device-bundle.sh): unpacked with python's tarfile, which needs no xz.
  unpacked=${TMPDIR:-/tmp}/device-bundle
  rm -rf "$unpacked"
  mkdir -p "$unpacked"
  "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$bundle/bouquet-bundle.tar.xz" "$unpacked" || unfit "could not unpack $bundle/bouquet-bundle.tar.xz"
  bundle=$unpacked
  bin=$bundle/bin
fi
[[ -x $bin/bouquet ]] || unfit "no $bin/bouquet: make the bundle here with scripts/device-bundle.sh and carry build-cuda/device-bundle"
torch_info=$("$python" -c 'import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__) + "/lib")' 2>/dev/null) ||
  unfit "$python cannot import torch (set PYTHON to the python that has it)"
torch_version=$(sed -n 1p <<<"$torch_info")
torch_lib=$(sed -n 2p <<<"$torch_info")
want=$(cat "$bundle/TORCH_VERSION" 2>/dev/null || echo unknown)
[[ $torch_version == "$want" ]] || unfit "this machine's torch is $torch_version, the bundle was built against $want"
bundle=$(cd "$bundle" && pwd)
bin=$bundle/bin
export LD_LIBRARY_PATH=$bundle/lib:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$bin:$PATH
for f in "$bin"/*; do
  if ldd "$f" | grep -q "not found"; then
    unfit "$(basename "$f") misses libraries: $(ldd "$f" | awk '/not found/ {print $1}' | tr '\n' ' ')"
  fi
done
say "device-check of bundle $(cat "$bundle/COMMIT" 2>/dev/null || echo '?') on $(hostname), torch $torch_version, device $device$([[ $small == yes ]] && echo ', small shapes')"
if [[ $device == cuda ]]; then
  command -v nvidia-smi >/dev/null && say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
  "$python" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || unfit "torch sees no GPU here"
  say "$("$python" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}: compute capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 1e9:.1f} GB")' 2>/dev/null)"
fi
runs() { [[ ,$only, == *,$1,* ]]; }

# The ids of `generate --json`'s output.
json_ids() { sed -n 's/.*"ids":\[\([^]]*\)\].*/\1/p' | tail -1; }
generate_ids() {  # generate_ids LOG ARGS...
  local log=$1
  shift
  timeout 300 "$bin/bouquet" generate --prompt-ids "$prompt" --ignore-eos --json "$@" 2>>"$log" | tee -a "$log" | json_ids
}
same_ids() {  # same_ids NAME A B
  if [[ -n $2 && $2 == "$3" ]]; then
    result "$1" PASS "$(tr ',' '\n' <<<"$2" | wc -l) ids equal"
  else
    result "$1" FAIL "cpu [$2] vs $device [$3]"
  fi
}

# --- 1. the engine's CUDA tests ---------------------------------------------------------------
if runs 1; then
  for suite in gpu net; do
    log=$out/check1-$suite.log
    filter=$(gtest_filter $suite)
    timeout 300 "$bin/${suite}_tests" --gtest_filter="$filter" >"$log" 2>&1
    rc=$?
    counts=$(grep -E '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$log" | sed 's/^\[ *\([A-Z]*\) *\] \([0-9]*\).*/\1 \2/' | tr '\n' ' ')
    skipped=$(sed -n 's/^\[ *SKIPPED *\] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    detail="${suite}_tests --gtest_filter=$filter: ${counts:-no gtest summary}"
    if ((rc != 0)); then
      result "1. ${suite}_tests CUDA variants" FAIL "exit $rc; $detail"
    elif [[ $device == cuda && -n $skipped && $skipped != 0 ]]; then
      result "1. ${suite}_tests CUDA variants" FAIL "skipped on the GPU; $detail"
    else
      result "1. ${suite}_tests CUDA variants" PASS "$detail"
    fi
  done
  ratio=$(grep -o 'bf16 vs f32 logits: .*' "$out/check1-gpu.log" | tail -1)
  [[ -n $ratio ]] && result "1. bf16 logits vs f32 (tolerance 5%)" INFO "$ratio"
fi

# --- 2. greedy ids, device vs CPU -------------------------------------------------------------
if runs 2; then
  log=$out/check2.log
  "$bin/bouquet" make-tiny-model --out "$work/tiny" --layers 4 --seed 7 >>"$log" 2>&1 ||
    result "2. make-tiny-model" FAIL "see check2.log"
  a=$(generate_ids "$log" --model "$work/tiny" --local --max-new-tokens 32 --device cpu --dtype f32)
  b=$(generate_ids "$log" --model "$work/tiny" --local --max-new-tokens 32 --device "$device" --dtype f32)
  same_ids "2. tiny model, 32 ids, f32" "$a" "$b"
  start=$SECONDS
  "$bin/bouquet" make-tiny-model --out "$work/big" --layers 2 "${big[@]}" --seed 7 >>"$log" 2>&1 ||
    result "2. make-tiny-model (7B-shaped)" FAIL "see check2.log"
  made=$((SECONDS - start))
  a=$(generate_ids "$log" --model "$work/big" --local --max-new-tokens 16 --device cpu --dtype f32)
  b=$(generate_ids "$log" --model "$work/big" --local --max-new-tokens 16 --device "$device" --dtype f32)
  same_ids "2. 2 blocks ${big[1]}-wide, 16 ids, f32" "$a" "$b"
  c=$(generate_ids "$log" --model "$work/big" --local --max-new-tokens 16 --device "$device" --dtype bf16)
  agree=0
  IFS=, read -ra fa <<<"$b"
  IFS=, read -ra fc <<<"$c"
  for i in "${!fa[@]}"; do
    [[ ${fa[$i]} == "${fc[$i]:-}" ]] || break
    agree=$((agree + 1))
  done
  result "2. same, bf16 vs f32 on $device" INFO "first $agree of ${#fa[@]} ids agree (random weights: near-flat logits)"
  echo "made the 7B-shaped model in ${made}s" >>"$log"
fi

# --- 3. three servers on the device and a client ----------------------------------------------
if runs 3; then
  log=$out/check3.log
  "$bin/bouquet" make-tiny-model --out "$work/six" --layers 6 --seed 9 >>"$log" 2>&1
  pids=()
  addrs=()
  for span in 0:2 2:4 4:6; do
    "$bin/bouquet" serve --model "$work/six" --blocks "$span" --listen 127.0.0.1:0 --device "$device" \
      >"$work/serve-$span.out" 2>"$work/serve-$span.err" &
    pids+=($!)
  done
  for span in 0:2 2:4 4:6; do
    for _ in $(seq 240); do
      grep -q "listening on" "$work/serve-$span.out" 2>/dev/null && break
      sleep 0.5
    done
    addrs+=("$(sed -n 's/^listening on //p' "$work/serve-$span.out")")
  done
  peers=$(IFS=,; echo "${addrs[*]}")
  a=$(generate_ids "$log" --model "$work/six" --local --max-new-tokens 32 --device cpu)
  b=$(generate_ids "$log" --model "$work/six" --peers "$peers" --max-new-tokens 32 --device "$device")
  same_ids "3. 3 servers on $device + client vs --local" "$a" "$b"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait "${pids[@]}" 2>/dev/null
  for span in 0:2 2:4 4:6; do
    { echo "--- serve $span"; cat "$work/serve-$span.out" "$work/serve-$span.err"; } >>"$log"
  done
fi

# --- 4. a span's decode step against the read floor -------------------------------------------
if runs 4; then
  log=$out/check4.log
  for dtype in bf16 f32; do
    text=$(timeout 300 "$bin/bouquet" bench-block --device "$device" --blocks "$span_blocks" "${big[@]}" \
      --dtype "$dtype" --steps 20 --cached-tokens 128 2>&1)
    echo "$text" >>"$log"
    step=$(sed -n 's/^decode step.*: \([0-9.]*\) ms median.*/\1/p' <<<"$text")
    floor=$(sed -n 's/^weight streaming.*: \([0-9.]*\) ms median = \([0-9.]*\) GB\/s.*/\1 ms (\2 GB\/s)/p' <<<"$text")
    ratio=$(sed -n 's/^ratio step \/ weight streaming: \([0-9.]*\) (medians), \([0-9.]*\) (bests).*/\1/p' <<<"$text")
    best=$(sed -n 's/^ratio step \/ weight streaming: \([0-9.]*\) (medians), \([0-9.]*\) (bests).*/\2/p' <<<"$text")
    if [[ -z $ratio ]]; then
      result "4. bench-block $span_blocks blocks $dtype" FAIL "no result; see check4.log: $(tail -1 <<<"$text")"
      continue
    fi
    detail="step ${step} ms, read floor ${floor}, ratio ${ratio} (best ${best})"
    if [[ $dtype == bf16 && $device == cuda ]]; then
      if awk -v r="$ratio" 'BEGIN { exit !(r <= 1.5) }'; then
        result "4. bench-block $span_blocks blocks $dtype" PASS "$detail; target <= 1.5"
      else
        result "4. bench-block $span_blocks blocks $dtype" FAIL "$detail; target <= 1.5"
      fi
    else
      result "4. bench-block $span_blocks blocks $dtype" INFO "$detail"
    fi
  done
fi

if ((failed == 0)); then
  say "device-check: every check passed, in ${SECONDS}s; logs in $out"
else
  say "device-check: FAILED (the lines marked FAIL), in ${SECONDS}s; logs in $out"
fi
exit $failed
