#!/usr/bin/env bash
# Creates (once) a Python virtual environment with PyPI's `gguf` package (llama.cpp's gguf-py, pure
# Python + numpy) for the tests that check Bouquet's GGUF reader against it, and prints its python.
# The venv lives in ${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/venv-gguf. Exits non-zero, saying
# why on stderr, when it cannot be made (no python3 venv module, PyPI unreachable).
set -euo pipefail
cache="${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}"
venv="$cache/venv-gguf"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
mkdir -p "$cache"
# Concurrent test processes may each get here: one builds, the others wait for its lock.
exec 9>"$cache/venv-gguf.lock"
flock 9
if ! [[ -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
  python3 -m venv "$venv" >&2 || { echo "gguf-venv: python3 -m venv failed" >&2; exit 1; }
  "$venv/bin/pip" install -q --disable-pip-version-check gguf numpy >&2 ||
    { echo "gguf-venv: pip install gguf numpy failed (is PyPI reachable?)" >&2; exit 1; }
fi
echo "$venv/bin/python"
