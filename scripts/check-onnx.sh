#!/usr/bin/env bash
# Exports the reduced detector fixture with `rtdetr export` in every form (batch 1, dynamic batch, gather sampling,
# opset 16 and 21, f16, ultralytics 8.4's top-k output) and has ONNX Runtime run each file from a small venv (scripts/onnx-requirements.txt, no
# torch; made once in target/onnx-venv by scripts/onnx-venv.sh): onnx.checker passes, outputs equal the PyTorch reference's and our own
# forward pass (scripts/check_onnx.py names the tolerances).
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(bash scripts/onnx-venv.sh)
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
export_tiny topk --dynamic --topk
target/release/rtdetr info "$out/dynamic.onnx" > "$out/dynamic.txt"
"$python" scripts/check_onnx.py "$out"
