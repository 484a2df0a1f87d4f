#!/usr/bin/env bash
# Sim and real side by side: scripts/fidelity.sh SCENARIO [--out DIR] [--rows A,B] [--tolerance X]
# runs each row of a fidelity scenario for real (processes on this machine, every client-server
# connection through `bouquet link`) and in `bouquet sim` with this machine's device profile, and
# prints real, simulated, ratio and whether the decisions matched (scripts/fidelity.py says more).
# The binary: $BOUQUET, else build/bouquet of this checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bouquet="${BOUQUET:-$here/../build/bouquet}"
[[ -x "$bouquet" ]] || { echo "fidelity.sh: no bouquet binary at $bouquet (build it, or set BOUQUET)" >&2; exit 2; }
exec python3 "$here/fidelity.py" --bouquet "$bouquet" "$@"
