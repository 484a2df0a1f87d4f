#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (-DBOUQUET_SANITIZE=ON, in
# build-asan/): the parts 2 cores can afford — core, sim, and net with tiny models — or the test
# binaries named. Usage: scripts/sanitize.sh [core_tests sim_tests net_tests ...]
# Any report (a leak, an overflow, UB) fails the run: halt_on_error, and UBSan does not recover.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Dependencies: the Debian packages scripts/setup.sh installs (run it first on a fresh machine).
targets=("$@")
((${#targets[@]})) || targets=(core_tests sim_tests net_tests)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-asan -G Ninja -DBOUQUET_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
# Tests that run the CLI (sim's sweep and scenario tests, net's serve tests) need bouquet too.
extra=()
[[ " ${targets[*]} " == *" core_tests "* && ${#targets[@]} -eq 1 ]] || extra=(bouquet)
cmake --build build-asan -j"$(nproc)" --target "${extra[@]}" "${targets[@]}"
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# libtorch is not instrumented; its own allocations at exit are not our leaks.
export LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp
status=0
for t in "${targets[@]}"; do
  echo "sanitize: $t"
  build-asan/tests/$t --gtest_brief=1 || status=1
done
exit $status
