//! A small synthetic detection dataset in the YOLO format: filled rectangles (class 0) and
//! ellipses (class 1) of random colours and sizes on noisy gradient backgrounds; some images
//! have no objects. For tests and the quick start.

use std::path::Path;

use image::{Rgb, RgbImage};

/// Writes `train` and `val` images of `size × size` with labels and a `data.yaml` under `root`.
pub fn write_dataset(
    root: &Path,
    train: usize,
    val: usize,
    size: u32,
    seed: u64,
) -> std::io::Result<()> {
    let rng = rtdetr_ops::SplitMix64::new(seed);
    let mut u = || rng.uniform() as f32;
    for (split, count) in [("train", train), ("val", val)] {
        let images = root.join("images").join(split);
        let labels = root.join("labels").join(split);
        std::fs::create_dir_all(&images)?;
        std::fs::create_dir_all(&labels)?;
        for i in 0..count {
            let (mut img, lines) = scene(size, &mut u);
            if i % 7 == 6 {
                img = background(size, &mut u);
            }
            let text = if i % 7 == 6 { String::new() } else { lines };
            img.save(images.join(format!("{split}{i:04}.png")))
                .map_err(std::io::Error::other)?;
            std::fs::write(labels.join(format!("{split}{i:04}.txt")), text)?;
        }
    }
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: rectangle\n  1: ellipse\n",
    )
}

fn background(size: u32, u: &mut impl FnMut() -> f32) -> RgbImage {
    let base = [u() * 200.0, u() * 200.0, u() * 200.0];
    let tilt = [u() * 0.3, u() * 0.3];
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let g = (x as f32 * tilt[0] + y as f32 * tilt[1]) * 128.0 / size as f32;
        *px = Rgb(base.map(|b| (b + g + u() * 30.0).clamp(0.0, 255.0) as u8));
    }
    img
}

fn scene(size: u32, u: &mut impl FnMut() -> f32) -> (RgbImage, String) {
    let mut img = background(size, u);
    let mut lines = String::new();
    let s = size as f32;
    for _ in 0..1 + (u() * 3.0) as usize {
        let (w, h) = (s * (0.15 + u() * 0.3), s * (0.15 + u() * 0.3));
        let (x0, y0) = (u() * (s - w), u() * (s - h));
        let class = (u() * 2.0) as usize % 2;
        let colour = Rgb([
            (u() * 255.0) as u8,
            (u() * 255.0) as u8,
            (u() * 255.0) as u8,
        ]);
        for y in y0 as u32..(y0 + h) as u32 {
            for x in x0 as u32..(x0 + w) as u32 {
                let (dx, dy) = (
                    (x as f32 + 0.5 - x0 - w / 2.0) / (w / 2.0),
                    (y as f32 + 0.5 - y0 - h / 2.0) / (h / 2.0),
                );
                if class == 0 || dx * dx + dy * dy <= 1.0 {
                    img.put_pixel(x.min(size - 1), y.min(size - 1), colour);
                }
            }
        }
        lines.push_str(&format!(
            "{class} {:.6} {:.6} {:.6} {:.6}\n",
            (x0 + w / 2.0) / s,
            (y0 + h / 2.0) / s,
            w / s,
            h / s
        ));
    }
    (img, lines)
}
