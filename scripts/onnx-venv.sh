#!/usr/bin/env bash
# Makes target/onnx-venv once (onnx, onnxruntime, safetensors, numpy from scripts/onnx-requirements.txt; no torch)
# and prints its python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/onnx-venv
if ! "$venv/bin/python" -c 'import onnx, onnxruntime, safetensors, numpy' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/onnx-requirements.txt >&2
fi
echo "$PWD/$venv/bin/python"
