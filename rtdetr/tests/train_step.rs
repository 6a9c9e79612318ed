//! One training forward and backward of the reduced detector against the reference: the decoder's
//! training outputs (denoising queries replayed from the reference's own noise), the 12 loss terms,
//! and d(total loss)/d(weights) for weights of the backbone, neck and decoder. Fixtures:
//! `fixtures/gen/regen.sh` (gen_train.py writes fixtures/data/train_tiny.safetensors).

mod common;

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use detr_loss::{DetrLoss, Targets};
use fixtures::{assert_close, check_close, Tol};
use rtdetr::train::{clip_grad_norm, gradients, AdamW};
use rtdetr::{ModelConfig, RtDetr};
use rtdetr_decoder::{CdnNoise, DnMeta, GroundTruth};

fn indices(t: &Tensor) -> Vec<usize> {
    t.to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

#[test]
fn loss_terms_and_weight_gradients_equal_the_reference() {
    check(&Device::Cpu);
}

/// The whole comparison on `dev` (the GPU suite runs it on CUDA).
pub fn check(dev: &Device) {
    let dev = dev.clone();
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    let metadata = rtdetr::read_metadata(&path).unwrap();
    let cfg: ModelConfig = serde_json::from_str(&metadata[rtdetr::CONFIG_KEY]).unwrap();
    let varmap = VarMap::new();
    let model = RtDetr::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    let weights = fixtures::load("detector_tiny.weights", &dev).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        var.set(weights.get(name).unwrap()).unwrap();
    }

    let fx = fixtures::load("train_tiny", &dev).unwrap();
    let io = fixtures::load("detector_tiny.io", &dev).unwrap();
    let groups: Vec<usize> = serde_json::from_str(fx.meta("groups").unwrap()).unwrap();
    let gt_boxes = fx.get("gt_boxes").unwrap();
    let cls = indices(fx.get("gt_cls").unwrap());
    let gt = GroundTruth {
        cls: cls.clone(),
        boxes: gt_boxes
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect(),
        groups: groups.clone(),
    };
    let noise = CdnNoise {
        label_rand: fx.get("noise.label_rand").unwrap().to_vec1().unwrap(),
        new_labels: indices(fx.get("noise.new_labels").unwrap()),
        sign_bits: fx
            .get("noise.sign_bits")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        parts: fx
            .get("noise.parts")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        keep: vec![],
    };

    let out = model
        .forward_train(&common::input(&io), &gt, &noise)
        .unwrap();
    let meta = out.dn.clone().expect("the batch has boxes");
    let want_meta = DnMeta {
        pos_idx: (0..groups.len())
            .map(|b| indices(fx.get(&format!("dn.pos.{b}")).unwrap()))
            .collect(),
        gt_idx: (0..groups.len())
            .map(|b| indices(fx.get(&format!("dn.gt.{b}")).unwrap()))
            .collect(),
        num_group: fx.meta("dn_num_group").unwrap().parse().unwrap(),
        num_split: (meta.num_split.0, out.queries.embed.dim(1).unwrap()),
    };
    assert_eq!(meta, want_meta);
    assert_close(
        &out.queries.enc_boxes,
        fx.get("enc_boxes").unwrap(),
        Tol::Parity,
        "encoder boxes",
    );
    assert_close(
        &out.queries.enc_logits,
        fx.get("enc_logits").unwrap(),
        Tol::Parity,
        "encoder logits",
    );
    assert_close(
        &out.boxes,
        fx.get("dec_boxes").unwrap(),
        Tol::Parity,
        "every layer's boxes (denoising first)",
    );
    assert_close(
        &out.logits,
        fx.get("dec_logits").unwrap(),
        Tol::Parity,
        "every layer's logits",
    );

    let (ndn, k) = meta.num_split;
    let stack = |dec: &Tensor, enc: &Tensor| {
        Tensor::cat(
            &[&enc.unsqueeze(0).unwrap(), &dec.narrow(2, ndn, k).unwrap()],
            0,
        )
        .unwrap()
    };
    let boxes = stack(&out.boxes, &out.queries.enc_boxes);
    let logits = stack(&out.logits, &out.queries.enc_logits);
    let (dn_boxes, dn_logits) = (
        out.boxes.narrow(2, 0, ndn).unwrap(),
        out.logits.narrow(2, 0, ndn).unwrap(),
    );
    let targets = Targets {
        cls,
        boxes: gt_boxes.clone(),
        groups,
    };
    let terms = DetrLoss::new(cfg.nc())
        .forward(
            &boxes,
            &logits,
            Some((&dn_boxes, &dn_logits, &meta)),
            &targets,
        )
        .unwrap();
    let mut failures = Vec::new();
    for (name, value) in terms.named() {
        if let Err(m) = check_close(
            &value,
            &fx.get(&format!("term.{name}")).unwrap().squeeze(0).unwrap(),
            Tol::Parity,
            &name,
        ) {
            failures.push(m.to_string());
        }
    }
    let total = terms.total().unwrap();
    let grads = total.backward().unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    let mut compared = 0;
    for (key, want) in fx.with_prefix("grad.") {
        let got = grads
            .get(&vars[&key])
            .unwrap_or_else(|| panic!("no gradient reaches {key}"));
        compared += 1;
        if let Err(m) = check_close(got, &want, Tol::Grad, &key) {
            failures.push(m.to_string());
        }
    }
    assert!(compared >= 10, "{compared} weights compared");

    // One AdamW step with the trainer's groups, after clipping at norm 10.
    let lr: f64 = fx.meta("lr").unwrap().parse().unwrap();
    let decay: f64 = fx.meta("weight_decay").unwrap().parse().unwrap();
    let mut optimizer = AdamW::new(&varmap, lr, decay).unwrap();
    let mut grads = gradients(&grads, &optimizer.vars());
    let norm = clip_grad_norm(&mut grads, 10.0).unwrap();
    let want_norm = fx.get("grad_norm").unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    assert!(
        (norm - want_norm).abs() <= 1e-3 * want_norm,
        "gradient norm {norm} vs {want_norm}"
    );
    optimizer.step(&grads).unwrap();
    for (key, want) in fx.with_prefix("step.") {
        if let Err(m) = check_close(
            vars[&key].as_tensor(),
            &want,
            Tol::Parity,
            &format!("{key} after one step"),
        ) {
            failures.push(m.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
