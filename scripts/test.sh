#!/usr/bin/env bash
# Command (2) of the README: set up, build, and run the whole test suite.
# BOUQUET_TORCH=pip runs it on the build against PyPI's libtorch 2.x (build-cuda/, see setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if [[ ${BOUQUET_TORCH:-debian} == pip ]]; then
  # The fuzz harnesses link no torch: the default configuration runs them.
  ctest --test-dir build-cuda --output-on-failure -j"$(nproc)" "$@"
  exit 0
fi
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
# Every libFuzzer harness for 10 s on its committed corpus (fuzz/README.md): an input that once
# passed and now crashes, leaks or hits UB fails the tests.
bash scripts/fuzz.sh 10
