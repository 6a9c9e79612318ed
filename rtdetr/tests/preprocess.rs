//! The stretch resize is bit-exact with OpenCV's `cv2.resize(INTER_LINEAR)` (upscaling,
//! downscaling, the 2× case, one-pixel-high images, same size). Fixtures: `fixtures/gen/regen.sh`
//! (gen_preprocess.py writes fixtures/data/resize.safetensors).

use candle::{DType, Device};
use rtdetr::preprocess::{resize_linear, to_batch};

#[test]
fn resize_is_bit_exact_with_opencv() {
    let fx = fixtures::load("resize", &Device::Cpu).unwrap();
    let cases: usize = fx.meta("cases").unwrap().parse().unwrap();
    let mut failures = Vec::new();
    for i in 0..cases {
        let input = fx.get(&format!("in.{i}")).unwrap();
        let want = fx.get(&format!("out.{i}")).unwrap();
        let (h, w, c) = input.dims3().unwrap();
        let (oh, ow, _) = want.dims3().unwrap();
        let pixels: Vec<u8> = input.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<u8> = want.flatten_all().unwrap().to_vec1().unwrap();
        let got = resize_linear(&pixels, (h, w, c), (oh, ow));
        let wrong = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        if wrong > 0 {
            failures.push(format!(
                "{h}×{w} -> {oh}×{ow}: {wrong} of {} bytes differ",
                want.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn batch_is_rgb_nchw_over_255() {
    // one 1×2 image: red then white, stretched to 32×32
    let pixels = [255u8, 0, 0, 255, 255, 255];
    let batch = to_batch(&[(&pixels, 1, 2)], 32, &Device::Cpu).unwrap();
    assert_eq!(batch.dims(), &[1, 3, 32, 32]);
    assert_eq!(batch.dtype(), DType::F32);
    let first: Vec<f32> = batch
        .get(0)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .get_on_dim(1, 0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(first, [1.0, 0.0, 0.0]);
}
