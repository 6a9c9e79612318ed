//! The COCO evaluator against pycocotools' COCOeval on a synthetic set with every area range,
//! images without boxes, false positives, a category the ground truth lacks and more than 100
//! detections on one image. Fixture: `fixtures/gen/regen.sh` (gen_coco.py writes fixtures/data/coco).

use rtdetr::coco::{evaluate, Dataset, Detection};

/// The bound for equality with pycocotools.
const TOL: f64 = 5e-4;

#[test]
fn summary_equals_pycocotools() {
    let dir = fixtures::data_dir().join("coco");
    let gt: Dataset =
        serde_json::from_str(&std::fs::read_to_string(dir.join("instances.json")).unwrap())
            .unwrap();
    let dts: Vec<Detection> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let got = evaluate(&gt, &dts).unwrap();
    let mut worst = 0f64;
    for (i, w) in want["stats"].as_array().unwrap().iter().enumerate() {
        let w = w.as_f64().unwrap();
        assert!(
            (got.stats[i] - w).abs() <= TOL,
            "stats[{i}]: {} vs {w}",
            got.stats[i]
        );
        worst = worst.max((got.stats[i] - w).abs());
    }
    for (cat, ap, ap50) in &got.per_class {
        let w = &want["per_class"][cat.to_string()];
        assert!(
            (ap - w["ap50_95"].as_f64().unwrap()).abs() <= TOL,
            "class {cat} AP"
        );
        assert!(
            (ap50 - w["ap50"].as_f64().unwrap()).abs() <= TOL,
            "class {cat} AP50"
        );
    }
    eprintln!("largest difference from pycocotools: {worst:.1e}");
}

#[test]
fn results_for_unknown_images_are_an_error() {
    let gt = Dataset::default();
    let dts = vec![Detection {
        image_id: 7,
        category_id: 1,
        bbox: [0.0, 0.0, 1.0, 1.0],
        score: 0.5,
    }];
    assert!(evaluate(&gt, &dts)
        .unwrap_err()
        .to_string()
        .contains("image 7"));
}
