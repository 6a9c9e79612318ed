//! Detects objects in images with the library's front door and prints them.
//!
//! `cargo run --release -p rtdetr --example detect -- best.safetensors bus.jpg [more.jpg ...]`

use rtdetr::{Detector, DetectorOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(weights), images) = (args.next(), args.collect::<Vec<_>>()) else {
        return Err("usage: detect WEIGHTS.safetensors IMAGE...".into());
    };
    let detector = Detector::from_file(&weights, DetectorOptions::default())?;
    eprintln!(
        "{weights}: {} classes at {}×{0}",
        detector.names().len(),
        detector.imgsz()
    );
    for path in images {
        let image = rtdetr::image_io::open_upright(&path)?;
        for d in detector.detect(&image)? {
            let [x1, y1, x2, y2] = d.bbox;
            println!(
                "{path}: {} {:.2} [{x1:.1}, {y1:.1}, {x2:.1}, {y2:.1}]",
                d.class_name, d.score
            );
        }
    }
    Ok(())
}
