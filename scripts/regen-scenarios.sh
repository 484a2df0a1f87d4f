#!/usr/bin/env bash
# Regenerates scenarios/NAME.expected from scenarios/NAME.yaml with the current build, for review:
# each line of an expected file carries simulated figures, so `git diff scenarios/` shows exactly
# which predictions a change moved. Usage: scripts/regen-scenarios.sh [BUILD_DIR] [NAME...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
shift || true
bouquet="$build/bouquet"
[[ -x $bouquet ]] || { echo "regen-scenarios: no $bouquet; build it first" >&2; exit 1; }
names=("$@")
if ((${#names[@]} == 0)); then
  # The fidelity scenarios have no expected output: they need this machine's device file, which
  # scripts/fidelity.sh measures at run time.
  for f in scenarios/*.yaml; do
    [[ $(basename "$f") == fidelity-* ]] || names+=("$(basename "$f" .yaml)")
  done
fi
for name in "${names[@]}"; do
  # The path is relative so that the reproduce line printed in the output is the same everywhere.
  "$bouquet" sim "scenarios/$name.yaml" > "scenarios/$name.expected"
  echo "regen-scenarios: scenarios/$name.expected"
done
git --no-pager diff --stat -- scenarios/ || true
