#!/usr/bin/env bash
# Creates the AdapterHub reference environment: a venv at ${1:-build}/.venv-adapters with the pinned
# packages of tests/requirements-adapters.txt (adapters 1.3.0, transformers 4.57.6, torch 2.4.1
# from PyPI). Idempotent: does nothing when the venv already holds exactly these requirements. The
# adapter reference test calls it itself when the packages are missing, so `ctest` needs no extra
# step; without network it fails and the test reports itself skipped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/build}/.venv-adapters"
req="$root/tests/requirements-adapters.txt"
python="${PEFT_SYSTEM_PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "setup-adapters-python: $venv ready"
