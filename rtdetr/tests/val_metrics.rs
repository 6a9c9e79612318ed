//! ultralytics' validation metrics against the reference's own code path
//! (`fixtures/gen/gen_val_metrics.py`: box_iou, match_predictions, DetMetrics, print_results).

use rtdetr::val_metrics::{iou_thresholds, match_predictions, Accumulator};
use rtdetr::Detection;
use serde_json::Value;

/// The f64 sums of the interpolation and the means run in numpy's pairwise order there, in
/// sequence here: they may differ in the last bits.
const SUM_ORDER: f64 = 1e-12;

fn fixture() -> Value {
    let path = fixtures::data_dir().join("val_metrics.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn image(im: &Value) -> (Vec<Detection>, Vec<([f32; 4], usize)>) {
    let boxes = floats(&im["pred_boxes"]);
    let predictions = floats(&im["pred_scores"])
        .into_iter()
        .zip(ints(&im["pred_classes"]))
        .enumerate()
        .map(|(i, (score, class_id))| Detection {
            bbox: std::array::from_fn(|k| boxes[4 * i + k]),
            score,
            class_id,
            class_name: String::new(),
        })
        .collect();
    let gt = floats(&im["boxes"]);
    let targets = ints(&im["classes"])
        .into_iter()
        .enumerate()
        .map(|(i, c)| (std::array::from_fn(|k| gt[4 * i + k]), c))
        .collect();
    (predictions, targets)
}

#[test]
fn thresholds_equal_torch_linspace() {
    assert_eq!(
        iou_thresholds().to_vec(),
        floats(&fixture()["expected"]["iouv"])
    );
}

#[test]
fn matches_equal_the_reference_image_by_image() {
    let fixture = fixture();
    let mut positives = 0;
    for (i, im) in fixture["images"].as_array().unwrap().iter().enumerate() {
        let (predictions, targets) = image(im);
        let got: Vec<usize> = match_predictions(&predictions, &targets)
            .iter()
            .flatten()
            .map(|&b| b as usize)
            .collect();
        assert_eq!(got, ints(&im["tp"]), "image {i}");
        positives += got.iter().sum::<usize>();
    }
    assert!(positives > 100, "the fixture exercises matching");
}

#[test]
fn table_equals_the_reference() {
    let fixture = fixture();
    let names: Vec<String> = fixture["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let mut acc = Accumulator::new();
    for im in fixture["images"].as_array().unwrap() {
        let (mut predictions, targets) = image(im);
        predictions.reverse(); // any order: the accumulator sorts by score
        acc.add_image(&predictions, &targets);
    }
    let metrics = acc.metrics();
    let want = &fixture["expected"];
    let close = |got: f64, want: &Value, what: &str| {
        let want = want.as_f64().unwrap();
        assert!((got - want).abs() <= SUM_ORDER, "{what}: {got} vs {want}");
    };
    let classes = want["classes"].as_array().unwrap();
    assert_eq!(metrics.classes.len(), classes.len());
    for (got, want) in metrics.classes.iter().zip(classes) {
        let c = got.class;
        assert_eq!(c, want["class"].as_u64().unwrap() as usize);
        assert_eq!(got.images, want["images"].as_u64().unwrap() as usize);
        assert_eq!(got.instances, want["instances"].as_u64().unwrap() as usize);
        close(got.precision, &want["p"], &format!("P of {c}"));
        close(got.recall, &want["r"], &format!("R of {c}"));
        for (t, (g, w)) in got
            .ap
            .iter()
            .zip(want["ap"].as_array().unwrap())
            .enumerate()
        {
            close(*g, w, &format!("AP of {c} at threshold {t}"));
        }
    }
    close(metrics.precision(), &want["mp"], "mean P");
    close(metrics.recall(), &want["mr"], "mean R");
    close(metrics.map50(), &want["map50"], "mAP50");
    close(metrics.map50_95(), &want["map50_95"], "mAP50-95");
    assert_eq!(metrics.table(&names), want["table"].as_str().unwrap());
}
