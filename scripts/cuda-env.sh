# Sourced by check-cuda.sh and gpu-suite.sh: installs nvcc and the CUDA headers from PyPI wheels (pinned 13.0,
# whose PTX a CUDA 13.0 driver accepts) into target/cuda-venv once, and exports PATH, CUDA_HOME, CUDA_PATH,
# CUDA_COMPUTE_CAP=90 (Hopper) and CUDARC_CUDA_VERSION=13000 for `cargo ... --features cuda`.
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
[ -x "$cuda/bin/nvcc" ] || { echo "cuda-env: no nvcc in $cuda/bin" >&2; exit 1; }
export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
