#!/usr/bin/env bash
# Installs every dependency from Debian's packages (skipped when all are present), then configures
# and builds Bouquet into build/. Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential cmake ninja-build git pkg-config
  libtorch-dev libsimgrid-dev libopendht-dev libasio-dev libyaml-cpp-dev libfmt-dev
  libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev sentencepiece
  libjsoncpp-dev libssl-dev libmsgpack-dev libpcre2-dev libcpp-httplib-dev clang-format
  python3-numpy python3-sentencepiece python3-matplotlib python3-venv curl chromium
  slurmctld slurmd slurm-client munge iproute2)

bash scripts/apt-install.sh setup "${packages[@]}"

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
