//! Every parameter of the detector receives a gradient in training mode: no op on the way drops
//! it silently (candle's fused LayerNorm and softmax_last_dim do; see candle-gaps.md). Values are
//! checked against PyTorch in the loss issue's parity tests; this guards the graph itself.

mod common;

use candle::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rtdetr::RtDetr;

#[test]
fn every_parameter_gets_a_gradient() {
    let io = fixtures::load("detector_tiny.io", &Device::Cpu).unwrap();
    let cfg = common::tiny_config(&io);
    let varmap = VarMap::new();
    let model = RtDetr::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let images = common::input(&io);
    let out = model.forward_t(&images, true).unwrap();
    let q = &out.decoder.queries;
    let terms = [
        &out.decoder.boxes,
        &out.decoder.logits,
        &q.enc_boxes,
        &q.enc_logits,
    ];
    let loss = terms
        .iter()
        .map(|t| t.sqr().unwrap().mean_all().unwrap())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();

    let vars = varmap.data().lock().unwrap();
    let mut missing: Vec<&String> = vars
        .iter()
        .filter(|(name, _)| !name.contains("running_"))
        // Denoising queries exist only with ground truth (the loss issue).
        .filter(|(name, _)| !name.contains("denoising_class_embed"))
        .filter(|(_, var)| {
            grads.get(var).is_none_or(|g| {
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    == 0.0
            })
        })
        .map(|(name, _)| name)
        .collect();
    missing.sort();
    assert!(missing.is_empty(), "no gradient reaches: {missing:?}");
    let count = vars.keys().filter(|n| !n.contains("running_")).count();
    let manifest = rtdetr::Manifest::model(&cfg).unwrap();
    assert_eq!(
        count,
        manifest.entries.iter().filter(|e| !e.is_buffer()).count(),
        "every parameter was checked"
    );
}
