//! Our own forward pass on the reduced detector fixture in the ONNX export's output form
//! (`[N, queries, 4 + nc]`: last-layer boxes, sigmoid scores), for `scripts/check-onnx.sh` to
//! compare ONNX Runtime's result with.
//!
//! `cargo run --release -p rtdetr --example onnx_reference -- OUT.safetensors`

use candle::{DType, Device, Tensor};
use rtdetr::RtDetr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: onnx_reference OUT.safetensors")?;
    let dev = Device::Cpu;
    let weights = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let model = RtDetr::load(weights, &dev, None, None)?;
    let io = fixtures::load("detector_tiny.io", &dev)?;
    let images = (io.get("input_u8")?.to_dtype(DType::F32)? / 255.0)?;
    let decoder = model.forward_t(&images, false)?.decoder;
    let last = decoder.boxes.dim(0)? - 1;
    let scores = candle_nn::ops::sigmoid(&decoder.logits.get(last)?)?;
    let ours = Tensor::cat(&[decoder.boxes.get(last)?, scores], 2)?;
    candle::safetensors::save(&[("ours".to_string(), ours)].into_iter().collect(), out)?;
    Ok(())
}
