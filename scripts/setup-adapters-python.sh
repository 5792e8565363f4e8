#!/usr/bin/env bash
# Creates the AdapterHub reference environment: a venv with the pinned packages of
# tests/requirements-adapters.txt (adapters 1.3.0, transformers 4.57.6, torch 2.4.1 from PyPI, whose
# CUDA runtime wheels make it about 5 GB and several minutes to install). It lives in the user's
# cache, not in a build folder, so every clone and CI run on the machine shares one copy:
# ${PEFT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/peft.cpp}/venv-adapters-<hash of the requirements>,
# or the folder given as $1. Idempotent: does nothing when the venv already holds exactly these
# requirements. The
# adapter reference test calls it itself when the packages are missing, so `ctest` needs no extra
# step; without network it fails and the test reports itself skipped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/tests/requirements-adapters.txt"
cache="${PEFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/peft.cpp}"
venv="${1:-$cache/venv-adapters-$(sha256sum "$req" | cut -c1-12)}"
python="${PEFT_SYSTEM_PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# The stamp is written last: a venv without it (an interrupted install) is made anew.
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "setup-adapters-python: $venv ready"
