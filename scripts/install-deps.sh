#!/usr/bin/env bash
# Installs every Debian package peft.cpp needs to build and test (idempotent, non-interactive).
# Product: compiler, CMake, OpenBLAS, oneDNN, nlohmann-json, CLI11, fmt, utf8proc, PCRE2,
# SentencePiece, yaml-cpp, OpenMP (libgomp, with g++), OpenMPI (optional for the build: it enables
# data-parallel training, `mpirun -np N peft train`, and its test). Tests: GoogleTest, Google Benchmark, and
# the Python references (Debian's PyTorch, SentencePiece, NumPy; see tests/requirements.txt).
# Fuzzing (fuzz/, .ci/run's fuzz smoke): clang for libFuzzer and its sanitizers, libomp-dev for
# OpenMP under clang.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers nlohmann-json3-dev libcli11-dev libfmt-dev libutf8proc-dev
  libpcre2-dev libsentencepiece-dev libyaml-cpp-dev
  libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-pip python3-numpy python3-torch python3-sentencepiece
  clang libomp-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#packages[@]} packages present"
