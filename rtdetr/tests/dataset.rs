//! YOLO-format datasets: folders and list files, backgrounds, and every kind of label problem
//! reported with its file and line.

use std::path::Path;

use rtdetr::data::{label_path, YoloDataset};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn save_image(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 99]))
        .save(path)
        .unwrap();
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
        save_image(&root.join("images/train").join(name), 16, 12);
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
        .to_string()
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
    // Relative paths, the last `images` folder, and a file itself called `images.jpg`.
    assert_eq!(
        label_path(Path::new("images/train/x.jpg")),
        Path::new("labels/train/x.txt")
    );
    assert_eq!(
        label_path(Path::new("images/a/images/x.png")),
        Path::new("images/a/labels/x.txt")
    );
    assert_eq!(
        label_path(Path::new("images/images.jpg")),
        Path::new("labels/images.txt")
    );
}

/// A name that is not UTF-8 keeps its labels; two images sharing a stem (and so one label
/// file) are both skipped with a problem naming them, not trained on one another's boxes.
#[cfg(unix)]
#[test]
fn odd_names_keep_their_labels() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("data.yaml"),
        "train: images\nval: images\nnames: [thing]\n",
    );
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let mut image = root.join("images").join(odd);
    image.set_extension("png");
    save_image(&image, 16, 16);
    let mut labels = root.join("labels").join(odd);
    labels.set_extension("txt");
    write(&labels, "0 0.5 0.5 0.2 0.2\n");
    save_image(&root.join("images/twin.png"), 16, 16);
    save_image(&root.join("images/twin.jpg"), 16, 16);
    write(&root.join("labels/twin.txt"), "0 0.5 0.5 0.2 0.2\n");
    save_image(&root.join("images/bg.png"), 16, 16);
    save_image(&root.join("images/bg.jpg"), 16, 16);

    let train = YoloDataset::from_yaml(&root.join("data.yaml"), "train").unwrap();
    let odd_sample = train.samples.iter().find(|s| s.image == image).unwrap();
    assert_eq!(
        odd_sample.labels.len(),
        1,
        "the non-UTF-8 name lost its label"
    );
    assert_eq!(train.samples.len(), 3, "{:?}", train.samples);
    assert_eq!(
        train.backgrounds(),
        2,
        "two label-less images may share a stem"
    );
    let report: Vec<String> = train.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(report.len(), 2, "{report:#?}");
    assert!(
        report
            .iter()
            .all(|r| r.contains("twin.jpg, ") && r.contains("labels/twin.txt")),
        "{report:#?}"
    );
}

#[test]
fn coco_instances_with_an_image_folder() {
    use rtdetr::data::{open_split, split_file};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("images/train")).unwrap();
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    for (name, w, h) in [
        ("a.png", 100, 50),
        ("b.png", 40, 40),
        ("c.png", 20, 10),
        ("d.png", 8, 8),
    ] {
        image::RgbImage::new(w, h)
            .save(root.join("images/train").join(name))
            .unwrap();
    }
    // categories out of order and not contiguous: ids 1, 3, 7 → classes 0, 1, 2
    let json = r#"{
      "images": [
        {"id": 1, "file_name": "a.png", "width": 100, "height": 50},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 40},
        {"id": 3, "file_name": "c.png"},
        {"id": 4, "file_name": "d.png", "width": 8, "height": 8},
        {"id": 5, "file_name": "missing.png", "width": 8, "height": 8}
      ],
      "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 50], "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [50, 25, 0, 10]},
        {"id": 4, "image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 5]},
        {"id": 5, "image_id": 4, "category_id": 9, "bbox": [0, 0, 4, 4]},
        {"id": 6, "image_id": 9, "category_id": 1, "bbox": [0, 0, 4, 4]}
      ],
      "categories": [{"id": 7, "name": "bird"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]
    }"#;
    write(&root.join("annotations/instances_train.json"), json);
    write(&root.join("annotations/instances_val.json"), json);
    let path = root.join("annotations/instances_train.json");
    assert_eq!(
        split_file(&path, "val"),
        root.join("annotations/instances_val.json")
    );
    let data = open_split(&path, "train").unwrap();
    assert_eq!(data.names, ["cat", "dog", "bird"]);
    let files: Vec<String> = data
        .samples
        .iter()
        .map(|s| s.image.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        files,
        ["a.png", "b.png", "c.png"],
        "d: bad category, missing file"
    );
    // a: the crowd box and the zero-width box are left out; xywh pixels → normalised cxcywh
    assert_eq!(data.samples[0].labels.len(), 1);
    assert_eq!(data.samples[0].labels[0].class, 2);
    let want = [
        (10.0 + 20.0 / 2.0) / 100.0,
        (5.0 + 10.0 / 2.0) / 50.0,
        20.0 / 100.0,
        10.0 / 50.0,
    ];
    for (g, w) in data.samples[0].labels[0].bbox.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-7, "{g} vs {w}");
    }
    assert!(data.samples[1].labels.is_empty(), "b is a background image");
    assert_eq!(data.backgrounds(), 1);
    // c has no size in the json: read from the file (20×10)
    let c = data.samples[2].labels[0].bbox;
    assert!(
        (c[0] - 0.25).abs() < 1e-7 && (c[1] - 0.25).abs() < 1e-7,
        "{c:?}"
    );
    let messages: Vec<String> = data.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("category 9 is not listed")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("names image 9")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("missing file")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("d.png") && m.contains("skipped")),
        "{messages:?}"
    );
    assert!(messages
        .iter()
        .all(|m| m.contains("instances_train.json") || m.contains("d.png")));
    // the val split: instances_val.json, its images in images/val
    std::fs::create_dir_all(root.join("images/val")).unwrap();
    std::fs::copy(
        root.join("images/train/a.png"),
        root.join("images/val/a.png"),
    )
    .unwrap();
    let val = open_split(&path, "val").unwrap();
    assert_eq!(val.samples.len(), 1);
    assert_eq!(
        val.samples[0].image,
        root.join("annotations/../images/val/a.png")
    );
    let err = open_split(&root.join("annotations/nothing_train.json"), "val")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no val split"), "{err}");
}

/// A data.yaml or COCO file claiming absurdly many classes is refused with a message, before
/// any table of that size is built (`names: {100000000: z}` used to allocate 10⁸ names).
#[test]
fn class_bombs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    for (file, body) in [
        (
            "map.yaml",
            "train: images\nval: images\nnames: {100000000: z}\n",
        ),
        ("nc.yaml", "train: images\nval: images\nnc: 1000000000\n"),
    ] {
        let yaml = dir.path().join(file);
        write(&yaml, body);
        let err = YoloDataset::from_yaml(&yaml, "train")
            .unwrap_err()
            .to_string();
        assert!(err.contains(file) && err.contains("at most 10000"), "{err}");
    }
    let categories: Vec<String> = (0..10_001)
        .map(|i| format!(r#"{{"id": {i}, "name": "c{i}"}}"#))
        .collect();
    let json = dir.path().join("instances_train.json");
    write(
        &json,
        &format!(
            r#"{{"images": [], "annotations": [], "categories": [{}]}}"#,
            categories.join(",")
        ),
    );
    let err = rtdetr::data::from_coco_json(&json).unwrap_err().to_string();
    assert!(err.contains("10001 categories"), "{err}");
}

/// Broken images are found by the scan, reported with their file and skipped like images with bad
/// labels; a mis-named one is read by its content; training then reads every kept image.
#[test]
fn broken_images_are_skipped_at_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        &root.join("data.yaml"),
        "train: images\nval: images\nnames: [thing]\n",
    );
    let images = root.join("images");
    save_image(&images.join("good1.jpg"), 40, 30);
    save_image(&images.join("good2.png"), 40, 30);
    save_image(&images.join("source.png"), 40, 30);
    save_image(&images.join("source.jpg"), 40, 30);
    save_image(&images.join("source.webp"), 40, 30);
    let png = std::fs::read(images.join("source.png")).unwrap();
    let jpeg = std::fs::read(images.join("source.jpg")).unwrap();
    let webp = std::fs::read(images.join("source.webp")).unwrap();
    for source in ["source.png", "source.jpg", "source.webp"] {
        std::fs::remove_file(images.join(source)).unwrap();
    }
    std::fs::write(images.join("png_named.jpg"), &png).unwrap();
    std::fs::write(images.join("cut.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(images.join("cut.jpg"), &jpeg[..jpeg.len() - 100]).unwrap();
    std::fs::write(images.join("cut.webp"), &webp[..webp.len() - 8]).unwrap();
    let mut flipped = png.clone();
    let middle = png.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(images.join("crc.png"), &flipped).unwrap();
    std::fs::write(images.join("text.jpg"), "not an image").unwrap();
    // A whole JPEG whose second DC Huffman table is renumbered: the header reads, the scan cannot
    // be decoded (found by rtdetr/tests/robustness.rs).
    let mut tables = std::fs::read(fixtures::data_dir().join("fuzz/8x8.jpg")).unwrap();
    let dht: Vec<usize> = (0..tables.len() - 1)
        .filter(|&i| tables[i..i + 2] == [0xFF, 0xC4])
        .collect();
    let second_dc = dht
        .iter()
        .map(|&i| i + 4)
        .find(|&i| tables[i] == 0x01)
        .unwrap();
    tables[second_dc] = 0x03;
    std::fs::write(images.join("tables.jpg"), &tables).unwrap();
    // A PNG whose header declares 20000 × 20000 (400 M pixels) over 40 × 30 of data.
    let mut huge = png.clone();
    huge[16..24].copy_from_slice(&[0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20]);
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(images.join("huge.png"), &huge).unwrap();
    for name in [
        "good1",
        "good2",
        "png_named",
        "cut",
        "crc",
        "text",
        "tables",
        "huge",
    ] {
        write(
            &root.join("labels").join(format!("{name}.txt")),
            "0 0.5 0.5 0.2 0.2\n",
        );
    }

    let train = YoloDataset::from_yaml(&root.join("data.yaml"), "train").unwrap();
    let kept: Vec<String> = train
        .samples
        .iter()
        .map(|s| s.image.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["good1.jpg", "good2.png", "png_named.jpg"]);
    let report: Vec<String> = train.problems.iter().map(|p| p.to_string()).collect();
    let said = |file: &str, words: &str| {
        assert!(
            report
                .iter()
                .any(|r| r.contains(file) && r.contains("skipped") && r.contains(words)),
            "{file}: {words:?} not in {report:#?}"
        )
    };
    said("cut.png", "unexpected end of file");
    said("cut.jpg", "truncated JPEG");
    said("cut.webp", "WebP");
    said("crc.png", "CRC error");
    said("text.jpg", "cannot read image");
    said("huge.png", "20000×20000");
    said("tables.jpg", "cannot read image");
    assert_eq!(report.len(), 7, "{report:#?}");
    for sample in &train.samples {
        rtdetr::data::load_sample(sample, 32, None).unwrap();
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 14000 × 14000 RGB PNG (588 MB of pixels, past the image crate's default 512 MiB cap) is
/// read, as cv2 reads it.
#[test]
fn a_large_legitimate_png_is_read() {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.png");
    let side = 14000u32;
    let pixels = vec![90u8; (side * side * 3) as usize];
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    PngEncoder::new_with_quality(file, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
    drop(pixels);
    assert_eq!(rtdetr::image_io::verify_image(&path).unwrap(), (side, side));
    let image = rtdetr::image_io::open_upright(&path).unwrap();
    assert_eq!((image.width(), image.height()), (side, side));
}
