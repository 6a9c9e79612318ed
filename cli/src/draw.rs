use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

/// ultralytics' plotting palette.
const PALETTE: [u32; 20] = [
    0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334,
    0x00D4BB, 0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC, 0x8438FF, 0x520085, 0xCB38FF,
    0xFF95C8, 0xFF37C7,
];

fn colour(class_id: usize) -> Rgb<u8> {
    let c = PALETTE[class_id % PALETTE.len()];
    Rgb([(c >> 16) as u8, (c >> 8) as u8, c as u8])
}

/// Black or white, whichever reads better on `background`.
fn text_colour(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0.map(f32::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

fn draw_text(image: &mut RgbImage, x: i32, y: i32, scale: i32, text: &str, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    let px = x + (i as i32 * 8 + col) * scale;
                    let py = y + row as i32 * scale;
                    draw_filled_rect_mut(
                        image,
                        Rect::at(px, py).of_size(scale as u32, scale as u32),
                        colour,
                    );
                }
            }
        }
    }
}

/// Draws `detections` (best first, as the detector returns them) with `class score` labels, in
/// ascending score so that the best box and its label end on top.
pub fn annotate_all(image: &mut RgbImage, detections: &[rtdetr::Detection]) {
    for d in detections.iter().rev() {
        annotate(
            image,
            d.bbox,
            d.class_id,
            &format!("{} {:.2}", d.class_name, d.score),
        );
    }
}

/// Draws a box with a `label` above it (inside the image when the box touches the top).
pub fn annotate(image: &mut RgbImage, bbox: [f32; 4], class_id: usize, label: &str) {
    let (w, h) = image.dimensions();
    let line = ((w + h) as f32 / 600.0).round().max(2.0) as i32;
    let [x1, y1, x2, y2] = bbox.map(|v| v.round() as i32);
    let (x1, y1) = (x1.clamp(0, w as i32 - 1), y1.clamp(0, h as i32 - 1));
    let (x2, y2) = (x2.clamp(x1 + 1, w as i32), y2.clamp(y1 + 1, h as i32));
    let c = colour(class_id);
    for t in 0..line {
        let (bw, bh) = (
            (x2 - x1 - 2 * t).max(1) as u32,
            (y2 - y1 - 2 * t).max(1) as u32,
        );
        draw_hollow_rect_mut(image, Rect::at(x1 + t, y1 + t).of_size(bw, bh), c);
    }
    let chars = label.chars().count() as i32;
    // Glyphs scale with the image, but never past what fits its width (the label is cut there).
    let fit = (w as i32 / (8 * chars + 2)).max(1);
    let scale = ((line / 2).max(1) + 1).min(fit);
    let visible = ((w as i32 - 2 * scale) / (8 * scale)).clamp(0, chars) as usize;
    let label: String = label.chars().take(visible).collect();
    let (tw, th) = (
        label.chars().count() as i32 * 8 * scale + 2 * scale,
        8 * scale + 2 * scale,
    );
    let tx = x1.min(w as i32 - tw).max(0);
    let ty = if y1 - th >= 0 {
        y1 - th
    } else {
        y1.min(h as i32 - th).max(0)
    };
    draw_filled_rect_mut(image, Rect::at(tx, ty).of_size(tw as u32, th as u32), c);
    draw_text(image, tx + scale, ty + scale, scale, &label, text_colour(c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_box_is_drawn_last() {
        let det = |class_id: usize, score: f32| rtdetr::Detection {
            bbox: [10.0, 20.0, 40.0, 40.0],
            score,
            class_id,
            class_name: class_id.to_string(),
        };
        let mut image = RgbImage::new(64, 64);
        annotate_all(&mut image, &[det(3, 0.9), det(5, 0.4)]);
        assert_eq!(*image.get_pixel(10, 30), colour(3), "the 0.9 box is on top");
    }

    /// On a small image the label shrinks to fit its width and stays inside, even for a box at
    /// the right edge.
    #[test]
    fn labels_fit_small_images() {
        let mut image = RgbImage::new(40, 40);
        annotate(
            &mut image,
            [30.0, 20.0, 39.0, 39.0],
            2,
            "traffic light 0.87",
        );
        let painted = |x: u32, y: u32| *image.get_pixel(x, y) != Rgb([0, 0, 0]);
        // The label band (1× glyphs: 10 px high) sits right above the box, moved left so that
        // the part that fits the width shows; a 2× label would reach up to y = 0.
        let band: Vec<u32> = (0..40).filter(|&x| painted(x, 15)).collect();
        assert!(band.len() >= 30 && band[0] <= 6, "{band:?}");
        assert!(!painted(20, 5), "the label is sized to the image");
        // The box's interior far from the label is untouched.
        assert!(!painted(34, 30));
    }

    #[test]
    fn draws_inside_the_image() {
        let mut image = RgbImage::new(64, 48);
        annotate(&mut image, [-5.0, -5.0, 100.0, 30.0], 0, "person 0.91");
        annotate(&mut image, [10.0, 20.0, 30.0, 40.0], 7, "cat");
        assert_eq!(*image.get_pixel(20, 20), colour(7));
        assert!(image.pixels().any(|p| *p == colour(0)));
    }
}
