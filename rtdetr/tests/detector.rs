//! `Detector`, the library's front door: the reference predictor's detections through
//! `Detector::detect`, options checked against the weights, the training size read from the
//! metadata, and EXIF-rotated images read upright.

use std::collections::HashMap;

use candle::Device;
use rtdetr::{Detector, DetectorOptions, Error};

/// Score and box tolerances of the CLI's end-to-end test (`cli/tests/detect.rs`).
const TOL_SCORE: f32 = 1e-4;
const TOL_BOX_PX: f32 = 0.05;

fn weights() -> std::path::PathBuf {
    fixtures::data_dir().join("detector_tiny.weights.safetensors")
}

#[test]
fn detect_equals_the_reference_predictor() {
    let options = DetectorOptions {
        conf: 0.0,
        imgsz: Some(256),
        ..Default::default()
    };
    let detector = Detector::from_file(weights(), options).unwrap();
    let image = image::open(fixtures::data_dir().join("detect/e2e.png")).unwrap();
    let got = detector.detect(&image).unwrap();
    let want = fixtures::load("detect_e2e", &Device::Cpu).unwrap();
    let want: Vec<Vec<f32>> = want.get("expected").unwrap().to_vec2().unwrap();
    assert_eq!(got.len(), want.len());
    let names = ["cat", "dog", "traffic light"];
    for (i, (d, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(d.class_id, w[5] as usize, "detection {i}");
        assert_eq!(d.class_name, names[d.class_id], "names from the metadata");
        assert!(
            (d.score - w[4]).abs() <= TOL_SCORE,
            "{i}: {} vs {}",
            d.score,
            w[4]
        );
        for (k, (got, want)) in d.bbox.iter().zip(w).enumerate() {
            assert!(
                (got - want).abs() <= TOL_BOX_PX,
                "{i} box[{k}]: {got} vs {want}"
            );
        }
    }
    let batch = detector.detect_batch(&[image.clone(), image]).unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0], got);
    assert_eq!(batch[1], got);
}

fn options_error(options: DetectorOptions) -> String {
    match Detector::from_file(weights(), options) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn options_that_do_not_fit_the_weights_are_errors() {
    let err = options_error(DetectorOptions {
        conf: 1.5,
        ..Default::default()
    });
    assert!(err.contains("conf 1.5 is outside [0, 1]"), "{err}");
    let err = options_error(DetectorOptions {
        classes: Some(vec![0, 5]),
        ..Default::default()
    });
    assert!(
        err.contains("class 5 does not exist: the model has 3 classes"),
        "{err}"
    );
    let err = options_error(DetectorOptions {
        imgsz: Some(100),
        ..Default::default()
    });
    assert!(err.contains("imgsz 100"), "{err}");
    let err = options_error(DetectorOptions {
        variant: Some(rtdetr::Variant::Xl),
        ..Default::default()
    });
    assert!(err.contains("not variant xl"), "{err}");
}

#[test]
fn errors_work_with_a_boxed_main() {
    fn main_like() -> Result<(), Box<dyn std::error::Error>> {
        Detector::from_file("no/such/weights.safetensors", DetectorOptions::default())?;
        Ok(())
    }
    let err = main_like().unwrap_err();
    assert!(
        err.to_string().contains("no/such/weights.safetensors"),
        "{err}"
    );
    assert!(err.downcast_ref::<Error>().is_some());
}

#[test]
fn imgsz_comes_from_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let tensors = candle::safetensors::load(weights(), &Device::Cpu).unwrap();
    let mut meta: HashMap<String, String> = rtdetr::read_metadata(weights()).unwrap();
    meta.insert("imgsz".into(), "128".into());
    let tensors: Vec<(String, candle::Tensor)> = tensors.into_iter().collect();
    rtdetr::checkpoint::save_atomic(&path, &tensors, meta).unwrap();
    let detector = Detector::from_file(&path, DetectorOptions::default()).unwrap();
    assert_eq!(
        (detector.imgsz(), detector.stored_imgsz()),
        (128, Some(128))
    );
    let options = DetectorOptions {
        imgsz: Some(256),
        ..Default::default()
    };
    let detector = Detector::from_file(&path, options).unwrap();
    assert_eq!(detector.imgsz(), 256, "the option wins");
    let plain = Detector::from_file(weights(), DetectorOptions::default()).unwrap();
    assert_eq!(plain.imgsz(), rtdetr::DEFAULT_IMGSZ);
}

/// A 4×2 JPEG stored sideways with EXIF Orientation=6 (rotate 90° clockwise to view) reads as
/// the upright 2×4 image, as `cv2.imread` returns it.
#[test]
fn exif_orientation_is_applied() {
    use image::ImageEncoder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.jpg");
    let (w, h) = (32u32, 16u32);
    // Left half black, right half white, as stored.
    let stored = image::RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            image::Rgb([0, 0, 0])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    // A minimal big-endian TIFF block with one IFD entry: Orientation (0x0112) = 6.
    let exif: Vec<u8> = vec![
        b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0,
    ];
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(stored.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&path, bytes).unwrap();

    let upright = rtdetr::image_io::open_upright(&path).unwrap().to_rgb8();
    assert_eq!(upright.dimensions(), (h, w), "rotated to portrait");
    assert_eq!(
        rtdetr::image_io::upright_dimensions(&path).unwrap(),
        (h, w),
        "the header-only size agrees"
    );
    // Rotating 90° clockwise puts the stored left (black) half on top.
    assert!(upright.get_pixel(h / 2, 2).0[0] < 60);
    assert!(upright.get_pixel(h / 2, w - 3).0[0] > 200);
}
