//! Milliseconds of the decoder and of its pieces at the shapes of a 640×640 input (random
//! weights, eval). Run: `cargo run --release -p rtdetr-decoder --example profile_decoder`.

use std::time::Instant;

use candle::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rtdetr_decoder::{DecoderConfig, DecoderLayer, MsDeformAttn, RtDetrDecoder};
use rtdetr_neck::MultiheadAttention;

fn best(what: &str, f: &dyn Fn() -> candle::Result<Tensor>) -> candle::Result<()> {
    let mut best = f64::MAX;
    f()?;
    for _ in 0..5 {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    println!("{what}: {best:.2} ms");
    Ok(())
}

fn main() -> candle::Result<()> {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
    let cfg = DecoderConfig::rtdetr(80);
    let mut decoder = RtDetrDecoder::new(&cfg, vb.pp("decoder"))?;
    decoder.set_fused(true)?;
    let maps: Vec<Tensor> = [80, 40, 20]
        .iter()
        .map(|&s| Tensor::randn(0f32, 1., (1, 256, s, s), &dev))
        .collect::<candle::Result<_>>()?;
    best("decoder forward", &|| {
        Ok(decoder.forward(&maps, false)?.detections)
    })?;
    best("  encoder input", &|| {
        Ok(decoder.encoder_input(&maps, false)?.0)
    })?;
    let (feats, shapes) = decoder.encoder_input(&maps, false)?;
    best("  select queries", &|| {
        Ok(decoder.select_queries(&feats, &shapes, false)?.embed)
    })?;
    let init = decoder.select_queries(&feats, &shapes, false)?;
    let (boxes, logits) =
        decoder.forward_queries(&init.embed, &init.ref_logits, &feats, &shapes, None, false)?;
    let (last_boxes, last_logits) = (boxes.get(5)?, logits.get(5)?);
    best("  postprocess", &|| {
        decoder.postprocess(&last_boxes, &last_logits)
    })?;
    best("  topk 300 of 8400", &|| {
        Ok(rtdetr_ops::topk(&init.enc_logits.max(candle::D::Minus1)?, 300)?.0)
    })?;
    best("  layers", &|| {
        Ok(decoder
            .forward_queries(&init.embed, &init.ref_logits, &feats, &shapes, None, false)?
            .0)
    })?;

    let shapes = [(80, 80), (40, 40), (20, 20)];
    let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let feats = Tensor::randn(0f32, 1., (1, s, 256), &dev)?;
    let embed = Tensor::randn(0f32, 1., (1, 300, 256), &dev)?;
    let pos = Tensor::randn(0f32, 1., (1, 300, 256), &dev)?;
    let boxes = Tensor::rand(0f32, 1., (1, 300, 4), &dev)?;
    let layer = DecoderLayer::new(256, 8, 1024, 3, 4, vb.pp("layer"))?;
    best("decoder layer", &|| {
        layer.forward(&embed, &boxes, &feats, &shapes, None, &pos, false)
    })?;
    let attn = MsDeformAttn::new(256, 3, 8, 4, vb.pp("cross"))?;
    best("  deformable attention", &|| {
        attn.forward(&embed, &boxes, &feats, &shapes, false)
    })?;
    let proj = candle_nn::linear(256, 256, vb.pp("proj"))?;
    best("    value projection 8400×256×256", &|| {
        proj.forward(&feats)
    })?;
    let mha = MultiheadAttention::new(256, 8, vb.pp("mha"))?;
    best("  self-attention", &|| {
        mha.forward(&embed, &embed, &embed, None)
    })?;
    let l1 = candle_nn::linear(256, 1024, vb.pp("l1"))?;
    let l2 = candle_nn::linear(1024, 256, vb.pp("l2"))?;
    best("  feed-forward", &|| {
        l2.forward(&l1.forward(&embed)?.relu()?)
    })?;
    let norm = rtdetr_ops::LayerNorm::new(256, vb.pp("norm"))?;
    best("  layer norm", &|| norm.forward(&embed))?;
    best("  add", &|| &embed + &pos)?;
    Ok(())
}
