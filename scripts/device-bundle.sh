#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that has PyTorch (same version as
# .deps/torch-pip) but none of Bouquet's other libraries: bouquet, gpu_tests and net_tests from
# build-cuda/ (BOUQUET_TORCH=pip scripts/setup.sh), stripped, plus every shared library they load
# that is neither torch's (the GPU machine's own torch provides libtorch*, libc10*, the nvidia-*
# libraries) nor glibc's or the compiler runtime's, and spm_train (make-tiny-model trains its
# tokenizer with it). Output: build-cuda/device-bundle/{bin,lib,TORCH_VERSION}, under 64 MiB (the
# device tool's limit for what a run may carry). Usage: bash scripts/device-bundle.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-build-cuda/device-bundle}
build=build-cuda
python=.deps/torch-pip/bin/python
[[ -x $python ]] || { echo "device-bundle: no $python; run BOUQUET_TORCH=pip bash scripts/setup.sh first" >&2; exit 1; }
torch_lib=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)/lib
site=$(dirname "$(dirname "$torch_lib")")  # site-packages: torch/ and nvidia/ live here
binaries=(bouquet tests/gpu_tests tests/net_tests)
for b in "${binaries[@]}"; do
  [[ -x $build/$b ]] || { echo "device-bundle: $build/$b is missing; cmake --build $build --target bouquet gpu_tests net_tests" >&2; exit 1; }
done

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for b in "${binaries[@]}"; do strip --strip-unneeded -o "$out/bin/$(basename "$b")" "$build/$b"; done
cp "$(command -v spm_train)" "$out/bin/spm_train"

# Libraries the GPU machine has by itself: glibc, the compiler runtime, and torch with its CUDA.
system_lib='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libstdc\+\+|libgcc_s)\.'
missing=0
for f in "$out"/bin/*; do
  while read -r name _ path _; do
    if [[ $path == "not" ]]; then
      echo "device-bundle: $(basename "$f") needs $name, which is not found here" >&2
      missing=1
      continue
    fi
    [[ -n $path && -e $path ]] || continue
    [[ $name =~ $system_lib ]] && continue
    case $(readlink -f "$path") in "$site"/*) continue ;; esac
    [[ -e $out/lib/$name ]] || strip --strip-unneeded -o "$out/lib/$name" "$(readlink -f "$path")"
  done < <(LD_LIBRARY_PATH=$torch_lib ldd "$f" | awk '/=>/ {print $1, $2, $3, $4} !/=>/ {print $1, "", "", ""}')
done
((missing == 0)) || exit 1
"$python" -c 'import torch; print(torch.__version__)' 2>/dev/null >"$out/TORCH_VERSION"
git rev-parse --short HEAD >"$out/COMMIT" 2>/dev/null || true
size_kib=$(du -sk "$out" | cut -f1)
echo "device-bundle: $out: $(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries, $((size_kib / 1024)) MiB" \
  "(torch $(cat "$out/TORCH_VERSION"))"
if ((size_kib > 60 * 1024)); then
  echo "device-bundle: over 60 MiB: the device tool carries 64 MiB at most with the working tree" >&2
  exit 1
fi
