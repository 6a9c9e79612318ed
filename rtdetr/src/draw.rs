//! Annotated copies of images, drawn as ultralytics' `Annotator` draws them: its palette, a line
//! width of `max(round((w + h) / 2 · 0.003), 2)`, a filled label above each box, best box on top.
//! Labels are anti-aliased text in DejaVu Sans Bold (a Latin-1 subset bundled in
//! `assets/`, Bitstream Vera licence beside it); characters outside it draw as the font's
//! missing-glyph box.

use ab_glyph::{FontRef, PxScale};
use image::{DynamicImage, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;
use std::sync::OnceLock;

use crate::Detection;

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-Bold-Latin1.ttf");

/// ultralytics' plotting palette (`ultralytics.utils.plotting.Colors`, 8.4.190).
const PALETTE: [u32; 20] = [
    0x042AFF, 0x0BDBEB, 0xF3F3F3, 0x00DFB7, 0x111F68, 0xFF6FDD, 0xFF444F, 0xCCED00, 0x00F344,
    0xBD00FF, 0x00B4FF, 0xDD00BA, 0x00FFFF, 0x26C000, 0x01FFB3, 0x7D24FF, 0x7B0068, 0xFF1B6C,
    0xFC6D2F, 0xA2FF0B,
];

/// The palette entries that ultralytics labels in dark text (`Annotator.dark_colors`).
const DARK_TEXT_ON: [u32; 9] = [
    0x0BDBEB, 0xF3F3F3, 0x00DFB7, 0xFF6FDD, 0xCCED00, 0x00F344, 0x00FFFF, 0x01FFB3, 0xA2FF0B,
];

/// ultralytics' dark label text, (104, 31, 17) in its BGR.
const DARK_TEXT: Rgb<u8> = Rgb([17, 31, 104]);

/// The smallest label text, in pixels, before a label is cut instead of shrunk further.
const MIN_TEXT_PX: f32 = 7.0;

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the bundled font parses"))
}

/// The colour ultralytics gives `class_id`.
pub fn colour(class_id: usize) -> Rgb<u8> {
    let c = PALETTE[class_id % PALETTE.len()];
    Rgb([(c >> 16) as u8, (c >> 8) as u8, c as u8])
}

/// ultralytics' text colour on a label band of `background`: dark on its light palette
/// entries, white otherwise.
fn text_colour(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0.map(u32::from);
    if DARK_TEXT_ON.contains(&(r << 16 | g << 8 | b)) {
        DARK_TEXT
    } else {
        Rgb([255, 255, 255])
    }
}

/// An RGB copy of `image` with `detections` drawn on it (see [`annotate`]).
pub fn annotated(image: &DynamicImage, detections: &[Detection]) -> RgbImage {
    let mut copy = image.to_rgb8();
    annotate(&mut copy, detections);
    copy
}

/// Draws `detections` with `class score` labels in ascending score, so that the best box and
/// its label end on top whatever order they come in.
pub fn annotate(image: &mut RgbImage, detections: &[Detection]) {
    let mut order: Vec<&Detection> = detections.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score));
    for d in order {
        draw_box(
            image,
            d.bbox,
            d.class_id,
            &format!("{} {:.2}", d.class_name, d.score),
        );
    }
}

/// Line width for an image, as ultralytics' `Annotator` computes it.
pub fn line_width(width: u32, height: u32) -> i32 {
    (((width + height) as f32 / 2.0 * 0.003).round() as i32).max(2)
}

/// Draws one box in `class_id`'s colour with `label` on a filled band above it (inside the
/// image when the box touches the top). The label's text height follows the image's line width
/// (ultralytics' cv2 text scale, at least 12 px) and shrinks to fit the image's width; when even
/// the smallest text does not fit, the label is cut at the width.
pub fn draw_box(image: &mut RgbImage, bbox: [f32; 4], class_id: usize, label: &str) {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return;
    }
    let line = line_width(w, h);
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
    if label.is_empty() {
        return;
    }
    let pad = (line / 2).max(1);
    let room = (w as i32 - 2 * pad).max(1) as f32;
    let mut px = (22.0 * line as f32 / 3.0).max(12.0);
    let (text_w, _) = text_size(PxScale::from(px), font(), label);
    if text_w as f32 > room {
        px = (px * room / text_w as f32).max(MIN_TEXT_PX);
    }
    let scale = PxScale::from(px);
    let mut label = label.to_string();
    while label.chars().count() > 1 && text_size(scale, font(), &label).0 as f32 > room {
        label.pop();
    }
    let (text_w, text_h) = text_size(scale, font(), &label);
    let (tw, th) = (
        (text_w as i32 + 2 * pad).min(w as i32),
        (text_h as i32 + 2 * pad).min(h as i32),
    );
    let tx = x1.min(w as i32 - tw).max(0);
    let ty = if y1 - th >= 0 {
        y1 - th
    } else {
        y1.min(h as i32 - th).max(0)
    };
    draw_filled_rect_mut(image, Rect::at(tx, ty).of_size(tw as u32, th as u32), c);
    draw_text_mut(
        image,
        text_colour(c),
        tx + pad,
        ty + pad,
        scale,
        font(),
        &label,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: usize, score: f32) -> Detection {
        Detection {
            bbox: [10.0, 20.0, 40.0, 40.0],
            score,
            class_id,
            class_name: class_id.to_string(),
        }
    }

    #[test]
    fn the_best_box_is_drawn_last_in_any_order() {
        for detections in [[det(3, 0.9), det(5, 0.4)], [det(5, 0.4), det(3, 0.9)]] {
            let mut image = RgbImage::new(64, 64);
            annotate(&mut image, &detections);
            assert_eq!(*image.get_pixel(10, 30), colour(3), "the 0.9 box is on top");
        }
    }

    /// On a small image the label shrinks to fit its width and stays inside, even for a box at
    /// the right edge.
    #[test]
    fn labels_fit_small_images() {
        let mut image = RgbImage::new(40, 40);
        draw_box(
            &mut image,
            [30.0, 20.0, 39.0, 39.0],
            2,
            "traffic light 0.87",
        );
        let painted = |x: u32, y: u32| *image.get_pixel(x, y) != Rgb([0, 0, 0]);
        // The band sits right above the box, moved left so that it shows whole; at the
        // 12 px text of a large image it would reach up to y = 0.
        let band: Vec<u32> = (0..40).filter(|&x| painted(x, 17)).collect();
        assert!(band.len() >= 30 && band[0] <= 6, "{band:?}");
        assert!(!painted(20, 5), "the label is sized to the image");
        assert!(!painted(34, 30), "the box's interior stays clear");
    }

    #[test]
    fn labels_are_anti_aliased() {
        let mut image = RgbImage::new(200, 100);
        draw_box(&mut image, [20.0, 40.0, 180.0, 90.0], 0, "person 0.91");
        let (band, text) = (colour(0), text_colour(colour(0)));
        let blended = image
            .enumerate_pixels()
            .filter(|(_, y, p)| *y < 40 && **p != band && **p != text && **p != Rgb([0, 0, 0]))
            .count();
        assert!(
            blended > 20,
            "only {blended} edge pixels between text and band"
        );
    }

    #[test]
    fn palette_and_text_are_ultralytics() {
        assert_eq!(colour(0), Rgb([4, 42, 255]));
        assert_eq!(colour(1), Rgb([11, 219, 235]));
        assert_eq!(colour(21), colour(1));
        assert_eq!(text_colour(colour(0)), Rgb([255, 255, 255]));
        assert_eq!(text_colour(colour(1)), DARK_TEXT);
    }

    #[test]
    fn draws_inside_the_image() {
        let mut image = RgbImage::new(64, 48);
        draw_box(&mut image, [-5.0, -5.0, 100.0, 30.0], 0, "person 0.91");
        draw_box(&mut image, [10.0, 20.0, 30.0, 40.0], 7, "cat");
        assert_eq!(*image.get_pixel(20, 20), colour(7));
        assert!(image.pixels().any(|p| *p == colour(0)));
        draw_box(
            &mut RgbImage::new(3, 2),
            [0.0, 0.0, 3.0, 2.0],
            1,
            "tiny image",
        );
    }
}
