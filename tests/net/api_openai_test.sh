#!/usr/bin/env bash
# Runs tests/net/api_openai_test.py with the official `openai` package, in a virtual environment
# made once under the build folder (PyPI) and reused; curl comes from Debian (scripts/setup.sh).
# Usage: api_openai_test.sh BOUQUET_BINARY BUILD_DIR
set -euo pipefail
bouquet=$1
build=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$build/venv-api-test"
python=/usr/bin/python3
[[ -x $python ]] || python=python3
if ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openai>=1.40,<3"
fi
command -v curl >/dev/null || { echo "api test: curl is missing (scripts/setup.sh installs it)"; exit 1; }
scratch=$(mktemp -d "${TMPDIR:-/tmp}/bouquet-api-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
"$venv/bin/python" "$here/api_openai_test.py" "$bouquet" "$scratch" || {
  status=$?
  for log in "$scratch"/*.log; do echo "--- $log"; tail -n 30 "$log"; done
  exit $status
}
