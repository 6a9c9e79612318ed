#!/usr/bin/env bash
# Exports the reduced detector fixture with `rtdetr export` in every form (batch 1, dynamic batch, gather sampling,
# opset 16 and 21, f16) and has ONNX Runtime run each file from a small venv (scripts/onnx-requirements.txt, no
# torch; made once in target/onnx-venv): onnx.checker passes, outputs equal the PyTorch reference's and our own
# forward pass (scripts/check_onnx.py names the tolerances).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/onnx-venv
if ! "$venv/bin/python" -c 'import onnx, onnxruntime, safetensors, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/onnx-requirements.txt
fi
out=target/onnx-check
rm -rf "$out" && mkdir -p "$out"
cargo build --release -q -p rtdetr-cli --bin rtdetr
cargo run --release -q -p rtdetr --example onnx_reference -- "$out/ours.safetensors"
export_tiny() {
  local name=$1; shift
  target/release/rtdetr export --weights fixtures/data/detector_tiny.weights.safetensors --imgsz 256,320 \
    -o "$out/$name.onnx" "$@"
}
export_tiny batch1
export_tiny dynamic --dynamic
export_tiny gather --dynamic --sampler gather
export_tiny opset16 --dynamic --opset 16
export_tiny opset21 --dynamic --opset 21
export_tiny half --dynamic --half
target/release/rtdetr info "$out/dynamic.onnx" > "$out/dynamic.txt"
"$venv/bin/python" scripts/check_onnx.py "$out"
