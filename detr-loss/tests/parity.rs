//! The loss against ultralytics 8.4.190's RTDETRDetectionLoss on fixed predictions: three images
//! with 0, 2 and 12 boxes (more boxes than the 10 queries), 7 matching layers, 6 denoising
//! layers. Fixture: `fixtures/gen/regen.sh` (gen_loss.py writes fixtures/data/loss_tiny.safetensors).

use candle::{DType, Device, Tensor, Var};
use detr_loss::{DetrLoss, DnMeta, Targets};
use fixtures::{assert_close, check_close, Fixture, Tol};

fn indices(t: &Tensor) -> Vec<usize> {
    t.to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

fn setup() -> (Fixture, DetrLoss, Targets, DnMeta) {
    let fx = fixtures::load("loss_tiny", &Device::Cpu).unwrap();
    let nc: usize = fx.meta("nc").unwrap().parse().unwrap();
    let groups: Vec<usize> = serde_json::from_str(fx.meta("groups").unwrap()).unwrap();
    let num_group: usize = fx.meta("dn_num_group").unwrap().parse().unwrap();
    let targets = Targets {
        cls: indices(fx.get("gt_cls").unwrap()),
        boxes: fx.get("gt_boxes").unwrap().clone(),
        groups: groups.clone(),
    };
    let meta = DnMeta {
        pos_idx: (0..groups.len())
            .map(|b| indices(fx.get(&format!("dn.pos.{b}")).unwrap()))
            .collect(),
        gt_idx: (0..groups.len())
            .map(|b| indices(fx.get(&format!("dn.gt.{b}")).unwrap()))
            .collect(),
        num_group,
        num_split: (
            fx.get("dn_boxes").unwrap().dim(2).unwrap(),
            fx.get("boxes").unwrap().dim(2).unwrap(),
        ),
    };
    (fx, DetrLoss::new(nc), targets, meta)
}

#[test]
fn matches_equal_the_reference_on_every_layer() {
    let (fx, loss, targets, _) = setup();
    let boxes = fx.get("boxes").unwrap();
    let logits = fx.get("logits").unwrap();
    for layer in 0..boxes.dim(0).unwrap() {
        let got = loss
            .matcher
            .match_layer(
                &boxes.get(layer).unwrap(),
                &logits.get(layer).unwrap(),
                &targets,
            )
            .unwrap();
        for (b, (queries, gts)) in got.iter().enumerate() {
            let want_q = indices(fx.get(&format!("match.{layer}.{b}.query")).unwrap());
            let want_g = indices(fx.get(&format!("match.{layer}.{b}.gt")).unwrap());
            assert_eq!(
                (queries, gts),
                (&want_q, &want_g),
                "layer {layer} image {b}"
            );
        }
    }
}

#[test]
fn every_term_and_the_gradients_equal_the_reference() {
    let (fx, loss, targets, meta) = setup();
    let vars: Vec<Var> = ["boxes", "logits", "dn_boxes", "dn_logits"]
        .iter()
        .map(|k| Var::from_tensor(fx.get(k).unwrap()).unwrap())
        .collect();
    let terms = loss
        .forward(
            &vars[0],
            &vars[1],
            Some((&vars[2], &vars[3], &meta)),
            &targets,
        )
        .unwrap();
    let mut failures = Vec::new();
    for (name, value) in terms.named() {
        let want = fx.get(&format!("term.{name}")).unwrap().squeeze(0).unwrap();
        match check_close(&value, &want, Tol::Close, &name) {
            Ok(diff) => {
                let w = want.to_scalar::<f32>().unwrap().abs() as f64;
                eprintln!("{name}: relative error {:.1e}", diff / w.max(1e-12));
            }
            Err(m) => failures.push(m.to_string()),
        }
    }
    let total = terms.total().unwrap();
    assert_close(
        &total,
        &fx.get("total").unwrap().squeeze(0).unwrap(),
        Tol::Close,
        "total",
    );
    let grads = total.backward().unwrap();
    for (var, name) in vars
        .iter()
        .zip(["boxes", "logits", "dn_boxes", "dn_logits"])
    {
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        if let Err(m) = check_close(
            got,
            fx.get(&format!("grad.{name}")).unwrap(),
            Tol::Grad,
            name,
        ) {
            failures.push(m.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_batch_without_boxes_uses_focal_loss_and_zero_box_terms() {
    let (fx, loss, _, _) = setup();
    let targets = Targets {
        cls: vec![],
        boxes: Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap(),
        groups: vec![0, 0, 0],
    };
    let terms = loss
        .forward(
            fx.get("boxes").unwrap(),
            fx.get("logits").unwrap(),
            None,
            &targets,
        )
        .unwrap();
    for (name, value) in terms.named() {
        let v = value.to_scalar::<f32>().unwrap();
        assert!(v.is_finite(), "{name}");
        if !name.starts_with("loss_class") || name.ends_with("dn") {
            assert_eq!(v, 0.0, "{name}");
        } else {
            assert!(v > 0.0, "{name}");
        }
    }
}
