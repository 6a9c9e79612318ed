#!/usr/bin/env bash
# Compile-checks the whole workspace with `--features cuda` on a machine without a GPU: installs nvcc and the
# CUDA headers from PyPI wheels (pinned 13.0, whose PTX a CUDA 13.0 driver accepts) into target/cuda-venv and
# runs `cargo check --workspace --all-targets --features cuda` for compute capability 9.0 (Hopper).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/cuda-venv
if [ ! -x "$venv/bin/nvcc-ok" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*"
  touch "$venv/bin/nvcc-ok" && chmod +x "$venv/bin/nvcc-ok"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda="$site/nvidia/cu13"
[ -x "$cuda/bin/nvcc" ] || { echo "check-cuda: no nvcc in $cuda/bin" >&2; exit 1; }
export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
nvcc --version | tail -1
cargo check --workspace --all-targets --features cuda
