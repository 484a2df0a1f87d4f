#!/usr/bin/env bash
# Command (2) of the README: set up, build, and run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
# Every libFuzzer harness for 10 s on its committed corpus (fuzz/README.md): an input that once
# passed and now crashes, leaks or hits UB fails the tests.
bash scripts/fuzz.sh 10
