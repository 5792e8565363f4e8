#!/usr/bin/env bash
# Creates the benchmark peers' environment: a venv at ${1:-build}/.venv-bench with the latest
# PyTorch, transformers and PEFT from PyPI (what users install today), for bench/lora_train_peers.py
# and bench_gemm's peer (PEFT_BENCH_PYTHON=build/.venv-bench/bin/python). Nothing in the build or
# the tests uses it.
#
# Size: PyPI's Linux x86-64 torch wheel (2.15.0: 539 MB) pulls about 3 GB of nvidia-* CUDA wheels;
# the venv takes 5.6 GB. They cannot be left out: `pip install --no-deps torch` installs, but
# `import torch` then fails on libcufile.so.0 (tried). PyTorch's CPU-only wheels live on its own
# index, not on PyPI, so they are not used here.
# PEER_TORCH=torch==X.Y.Z pins a version. PEER_IPEX=1 also makes ${venv}-ipex with Intel Extension
# for PyTorch (the latest, 2.8.0, pins torch 2.8, so it gets its own venv; pass
# --ipex-python build/.venv-bench-ipex/bin/python --peer f32,autocast,bf16,ipex to the bench).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/build}/.venv-bench"
python="${PEFT_SYSTEM_PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "${PEER_TORCH:-torch}" transformers peft accelerate safetensors psutil
if [ "${PEER_IPEX:-0}" = 1 ]; then
  [ -x "$venv-ipex/bin/python" ] || "$python" -m venv "$venv-ipex"
  "$venv-ipex/bin/python" -m pip install --quiet --disable-pip-version-check \
    intel-extension-for-pytorch transformers peft accelerate safetensors psutil ||
    echo "IPEX did not install here; bench without the ipex mode"
fi
"$venv/bin/python" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
