#!/usr/bin/env bash
# Installs every dependency from Debian's packages (skipped when all are present), then configures
# and builds Bouquet into build/. Sourced by demo.sh and test.sh; safe to run again.
#
# BOUQUET_TORCH=pip builds against PyPI's torch instead of Debian's libtorch 1.13: a libtorch 2.x
# with CUDA (it runs on machines without a GPU too). The wheel goes into .deps/torch-pip/ (a venv,
# ~4.6 GB with its nvidia-* libraries), the build into build-cuda/; CUDA's toolkit is looked for at
# ${CUDA_HOME:-/usr/local/cuda}. BOUQUET_TORCH_VERSION picks the wheel (default 2.11.0: CUDA 13, what
# the lent GPU machines run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential cmake ninja-build git pkg-config
  libtorch-dev libsimgrid-dev libopendht-dev libasio-dev libyaml-cpp-dev libfmt-dev
  libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev sentencepiece
  libjsoncpp-dev libssl-dev libmsgpack-dev libpcre2-dev libcpp-httplib-dev clang-format
  python3-numpy python3-sentencepiece python3-matplotlib python3-venv curl chromium
  slurmctld slurmd slurm-client munge iproute2
  libopenblas0-openmp)
# libopenblas0-openmp: Debian's libtorch multiplies matrices through libblas.so.3, which without it
# is the reference BLAS (~1.6 GFLOP/s); OpenBLAS takes that name when installed, and its OpenMP
# build follows the thread count libtorch sets (README: "BLAS").

bash scripts/apt-install.sh setup "${packages[@]}"

jobs=$(nproc)
case "${BOUQUET_TORCH:-debian}" in
  debian)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$jobs"
    ;;
  pip)
    bash scripts/torch-pip.sh
    torch_dir=$(.deps/torch-pip/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
    cuda=${CUDA_HOME:-/usr/local/cuda}
    [[ -x $cuda/bin/nvcc ]] || { echo "setup: BOUQUET_TORCH=pip needs CUDA's toolkit (nvcc) at $cuda; set CUDA_HOME" >&2; exit 1; }
    launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # CMAKE_PREFIX_PATH makes torch's own libraries win over Debian's /usr/lib/libtorch.so (TorchConfig
    # searches the system's folders first); no .cu files are built, so the CUDA standard and
    # architecture only need to be ones this nvcc accepts.
    cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
      -DCMAKE_PREFIX_PATH="$torch_dir" -DTorch_DIR="$torch_dir/share/cmake/Torch" \
      -DCUDAToolkit_ROOT="$cuda" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" -DCMAKE_CUDA_STANDARD=17 \
      -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" >/dev/null
    cmake --build build-cuda -j"$jobs"
    ;;
  *)
    echo "setup: BOUQUET_TORCH=${BOUQUET_TORCH} is neither debian (the default) nor pip" >&2
    exit 1
    ;;
esac
