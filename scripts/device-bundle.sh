#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that has PyTorch (same version as
# .deps/torch-pip) but none of Bouquet's other libraries: bouquet, gpu_tests and net_tests from
# build-cuda/ (BOUQUET_TORCH=pip scripts/setup.sh), stripped, plus every shared library they load
# that is neither torch's (the GPU machine's own torch provides libtorch*, libc10*, the nvidia-*
# libraries) nor glibc's or the compiler runtime's, and spm_train (make-tiny-model trains its
# tokenizer with it). SimGrid's ns-3 libraries make that ~72 MiB, more than the device tool
# carries (64 MiB with the working tree), so it travels as one xz tarball (~19 MiB):
# build-cuda/device-bundle/{bouquet-bundle.tar.xz,TORCH_VERSION,COMMIT}; the files themselves stay
# in build-cuda/device-bundle-files/. Usage: bash scripts/device-bundle.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=build-cuda
carry=$build/device-bundle
out=$build/device-bundle-files
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
git diff --quiet HEAD -- . ':!README.md' 2>/dev/null || echo "$(cat "$out/COMMIT") with uncommitted changes" >"$out/COMMIT"
rm -rf "$carry"
mkdir -p "$carry"
cp "$out/TORCH_VERSION" "$out/COMMIT" "$carry/"
tar -C "$out" -cf - . | xz -T2 -6 >"$carry/bouquet-bundle.tar.xz"
files_kib=$(du -sk "$out" | cut -f1)
carry_kib=$(du -sk "$carry" | cut -f1)
echo "device-bundle: $(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries, $((files_kib / 1024)) MiB;" \
  "$carry/bouquet-bundle.tar.xz $((carry_kib / 1024)) MiB (torch $(cat "$out/TORCH_VERSION"), commit $(cat "$out/COMMIT"))"
if ((carry_kib > 48 * 1024)); then
  echo "device-bundle: $carry is over 48 MiB: the device tool carries 64 MiB at most with the working tree" >&2
  exit 1
fi
