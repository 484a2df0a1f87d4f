#!/usr/bin/env bash
# Installs (once) PyPI's torch ${BOUQUET_TORCH_VERSION:-2.11.0} into the venv .deps/torch-pip/, whose
# libtorch (headers, libraries, CMake config; CUDA 13 for 2.11.0) BOUQUET_TORCH=pip builds against.
# Skips the download when that version is there already.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=${BOUQUET_TORCH_VERSION:-2.11.0}
venv=.deps/torch-pip
have=$("$venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [[ ${have%%+*} == "$version" ]]; then
  exit 0
fi
# Debian's python (python3-venv) rather than whichever python3 is first on PATH.
python=/usr/bin/python3
[[ -x $python ]] || python=python3
echo "torch-pip: installing torch==$version into $venv (several GB with its nvidia-* libraries)"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir "torch==$version" ||
  { echo "torch-pip: pip install torch==$version failed (is PyPI reachable?)" >&2; exit 1; }
