//! YOLO-format datasets: folders and list files, backgrounds, and every kind of label problem
//! reported with its file and line.

use std::path::Path;

use rtdetr::data::{label_path, YoloDataset};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn splits_backgrounds_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n",
    );
    for name in ["a.jpg", "b.png", "c.jpg", "d.jpg"] {
        write(&root.join("images/train").join(name), "not decoded here");
    }
    write(
        &root.join("labels/train/a.txt"),
        "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
    );
    // b has no label file: a background image
    write(
        &root.join("labels/train/c.txt"),
        "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n",
    );
    write(&root.join("labels/train/d.txt"), "");
    write(
        &root.join("val.txt"),
        "images/train/a.jpg\nimages/val/missing.jpg\n",
    );

    let train = YoloDataset::from_yaml(&root.join("data.yaml"), "train").unwrap();
    assert_eq!(train.names, ["cat", "dog"]);
    let kept: Vec<String> = train
        .samples
        .iter()
        .map(|s| s.image.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        kept,
        ["a.jpg", "b.png", "d.jpg"],
        "c is skipped for its class-2 line"
    );
    assert_eq!(train.backgrounds(), 2);
    assert_eq!(train.samples[0].labels.len(), 2);
    let report: Vec<String> = train.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        report[0].ends_with("c.txt:2: class 2 is not one of the 2 classes"),
        "{report:?}"
    );
    assert!(
        report[1].contains("c.jpg") && report[1].contains("skipped"),
        "{report:?}"
    );

    let val = YoloDataset::from_yaml(&root.join("data.yaml"), "val").unwrap();
    assert_eq!(val.samples.len(), 1);
    assert!(
        val.problems[0]
            .to_string()
            .contains("val.txt:2: missing image"),
        "{:?}",
        val.problems
    );
    assert!(YoloDataset::from_yaml(&root.join("data.yaml"), "test").is_err());
    assert!(YoloDataset::from_yaml(&root.join("nope.yaml"), "train")
        .unwrap_err()
        .contains("nope.yaml"));
}

#[test]
fn label_paths() {
    let sep = std::path::MAIN_SEPARATOR;
    let image = format!("{sep}d{sep}images{sep}train{sep}x.jpg");
    assert_eq!(
        label_path(Path::new(&image)),
        Path::new(&format!("{sep}d{sep}labels{sep}train{sep}x.txt"))
    );
}
