//! Mosaic and random affine against ultralytics 8.4.190 (`Mosaic`, `RandomPerspective` with the
//! RT-DETR defaults, OpenCV 5 `warpAffine`), replaying the reference's recorded draws.
//! Fixtures: `fixtures/gen/regen.sh` (gen_augment.py writes fixtures/data/augment.safetensors).

use candle::{Device, Tensor};
use fixtures::{assert_close, Tol};
use rtdetr::data::geometry::{
    affine_matrix, mosaic4, to_pixels, transform_boxes, warp_affine, AffineDraws, PixelBox,
};
use rtdetr::data::Label;

fn bytes(fx: &fixtures::Fixture, key: &str) -> Vec<u8> {
    fx.get(key)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn rows(fx: &fixtures::Fixture, key: &str) -> Vec<Vec<f32>> {
    fx.get(key).unwrap().to_vec2().unwrap()
}

fn labels(fx: &fixtures::Fixture, key: &str) -> Vec<Label> {
    rows(fx, key)
        .into_iter()
        .map(|r| Label {
            class: r[0] as usize,
            bbox: [r[1], r[2], r[3], r[4]],
        })
        .collect()
}

fn boxes_tensor(boxes: &[PixelBox]) -> Tensor {
    let flat: Vec<f32> = boxes
        .iter()
        .flat_map(|b| [b.class as f32, b.xyxy[0], b.xyxy[1], b.xyxy[2], b.xyxy[3]])
        .collect();
    Tensor::from_vec(flat, (boxes.len(), 5), &Device::Cpu).unwrap()
}

fn want_boxes(fx: &fixtures::Fixture, key: &str) -> Tensor {
    let t = fx.get(key).unwrap();
    if t.elem_count() == 0 {
        Tensor::zeros((0, 5), candle::DType::F32, &Device::Cpu).unwrap()
    } else {
        t.clone()
    }
}

fn draws(fx: &fixtures::Fixture, key: &str) -> AffineDraws {
    let d: Vec<f64> = fx.get(key).unwrap().to_vec1().unwrap();
    AffineDraws {
        angle: 0.0,
        scale: d[0],
        shear: [0.0, 0.0],
        translate: [d[1], d[2]],
    }
}

/// Checks the matrix built from the draws, the warped image (bit-exact, with the reference's
/// matrix) and the boxes.
fn check_affine(
    fx: &fixtures::Fixture,
    key: &str,
    src: &[u8],
    side: usize,
    boxes: &[PixelBox],
    out: usize,
) {
    let d = draws(fx, &format!("{key}.draws"));
    let m = affine_matrix(side, side, out, &d);
    let got_m = Tensor::new(&m, &Device::Cpu).unwrap();
    let want_m = fx.get(&format!("{key}.M")).unwrap();
    assert_close(&got_m, want_m, Tol::Close, &format!("{key} matrix"));
    let want_m: Vec<Vec<f32>> = want_m.to_vec2().unwrap();
    let mref = [0, 1, 2].map(|i| [want_m[i][0], want_m[i][1], want_m[i][2]]);
    let img = warp_affine(src, side, side, &mref, out);
    let want = bytes(fx, &format!("{key}.img"));
    let wrong = img.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(wrong, 0, "{key}: {wrong} of {} bytes differ", want.len());
    let got = transform_boxes(boxes, &mref, d.scale as f32, out);
    assert_close(
        &boxes_tensor(&got),
        &want_boxes(fx, &format!("{key}.boxes")),
        Tol::Close,
        &format!("{key} boxes"),
    );
}

#[test]
fn mosaic_and_affine_match_ultralytics() {
    let fx = fixtures::load("augment", &Device::Cpu).unwrap();
    let cases: usize = fx.meta("cases").unwrap().parse().unwrap();
    let s: usize = fx.meta("size").unwrap().parse().unwrap();
    for i in 0..cases {
        let images: Vec<Vec<u8>> = (0..4)
            .map(|j| bytes(&fx, &format!("mosaic.{i}.in.{j}")))
            .collect();
        let labs: Vec<Vec<Label>> = (0..4)
            .map(|j| labels(&fx, &format!("mosaic.{i}.labels.{j}")))
            .collect();
        let c: Vec<i64> = fx
            .get(&format!("mosaic.{i}.center"))
            .unwrap()
            .to_vec1()
            .unwrap();
        let inputs = [0, 1, 2, 3].map(|j| (images[j].as_slice(), labs[j].as_slice()));
        let (canvas, boxes) = mosaic4(inputs, s, (c[0] as usize, c[1] as usize));
        assert_eq!(
            canvas,
            bytes(&fx, &format!("mosaic.{i}.img")),
            "mosaic {i} canvas"
        );
        assert_close(
            &boxes_tensor(&boxes),
            &want_boxes(&fx, &format!("mosaic.{i}.boxes")),
            Tol::Close,
            &format!("mosaic {i} boxes"),
        );
        check_affine(&fx, &format!("affine.{i}"), &canvas, 2 * s, &boxes, s);

        // close_mosaic: the affine alone on one image
        let single = bytes(&fx, &format!("single.{i}.in"));
        let labs = labels(&fx, &format!("single.{i}.labels"));
        let boxes = to_pixels(&labs, 2 * s, 2 * s, (0.0, 0.0));
        check_affine(&fx, &format!("single.{i}"), &single, 2 * s, &boxes, 2 * s);
    }
}

#[test]
fn training_views_are_seeded_and_valid() {
    use rtdetr::data::{load_augmented, write_dataset, Augment, YoloDataset};
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 6, 1, 64, 3).unwrap();
    let data = YoloDataset::from_yaml(&dir.path().join("data.yaml"), "train").unwrap();
    let aug = Augment::default();
    for mosaic in [true, false] {
        for seed in 0..8u64 {
            let a =
                load_augmented(&data.samples, seed as usize % 6, 64, &aug, mosaic, seed).unwrap();
            let b =
                load_augmented(&data.samples, seed as usize % 6, 64, &aug, mosaic, seed).unwrap();
            assert_eq!(a.pixels, b.pixels, "same seed, same image");
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.pixels.len(), 64 * 64 * 3);
            for l in &a.labels {
                let [cx, cy, w, h] = l.bbox;
                assert!(w > 2.0 / 64.0 && h > 2.0 / 64.0, "{l:?}");
                assert!(cx - w / 2.0 >= -1e-6 && cx + w / 2.0 <= 1.0 + 1e-6, "{l:?}");
                assert!(cy - h / 2.0 >= -1e-6 && cy + h / 2.0 <= 1.0 + 1e-6, "{l:?}");
            }
        }
    }
}
