#!/usr/bin/env bash
# Compile-checks the whole workspace with `--features cuda` on a machine without a GPU: nvcc and the CUDA headers
# come from PyPI wheels (scripts/cuda-env.sh), and `cargo check --workspace --all-targets --features cuda` runs
# every build script, so the project's own kernels (rtdetr-ops/kernels) are compiled to
# PTX for sm_90 by nvcc and a syntax error in them fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-env.sh
nvcc --version | tail -1
cargo check --workspace --all-targets --features cuda
