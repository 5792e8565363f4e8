#!/usr/bin/env bash
# Creates the Python environment of the reference tests: a venv at ${1:-build}/.venv on Debian's
# python3 with --system-site-packages (so Debian's python3-torch and numpy are used) and the
# pinned PyPI packages of tests/requirements.txt (all but torch and numpy). Idempotent: does
# nothing when the venv already holds exactly these requirements. The reference tests call it
# themselves (ensure_env in tests/python/model_ref.py) when their packages are missing, so `ctest`
# needs no extra step.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/build}/.venv"
req="$root/tests/requirements.txt"
python="${PEFT_SYSTEM_PYTHON:-/usr/bin/python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$python" -m venv --system-site-packages "$venv"
# torch and numpy come from Debian (python3-torch, python3-numpy): pip would otherwise replace
# Debian's torch "1.13.0a0" with a 1 GB wheel to satisfy the pin.
pypi_req="$venv/requirements-pypi.txt"
grep -vE '^[[:space:]]*(torch|numpy)([<>=!~ ;[]|$)' "$req" | grep -v '# no-deps' > "$pypi_req"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$pypi_req"
# Lines marked "# no-deps" are installed without their declared dependencies (see the file).
nodeps_req="$venv/requirements-nodeps.txt"
grep '# no-deps' "$req" | sed 's/[[:space:]]*#.*//' > "$nodeps_req"
if [ -s "$nodeps_req" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$nodeps_req"
fi
echo "$want" > "$stamp"
echo "setup-python: $venv ready ($(wc -l < "$req") requirement lines)"
