//! `results.png`: one small line chart per column of `results.csv` (losses, metrics, learning
//! rate) against the epoch, as ultralytics plots its results; drawn with the 8×8 bitmap font,
//! no system fonts.

use std::path::Path;

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Panel size in pixels.
pub const PANEL: (u32, u32) = (320, 240);
/// Panels per row.
pub const COLUMNS: u32 = 3;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LINE: Rgb<u8> = Rgb([31, 119, 180]);

/// The image size for `n` series.
pub fn size(n: usize) -> (u32, u32) {
    let rows = (n as u32).div_ceil(COLUMNS).max(1);
    (PANEL.0 * COLUMNS, PANEL.1 * rows)
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, colour: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    put(img, x + i as i64 * 8 + col, y + row as i64, colour);
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

/// A 2-pixel-wide segment (Bresenham).
fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, colour);
        put(img, x, y + 1, colour);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws `series` (title, one value per epoch), panel by panel, left to right and top to bottom.
pub fn draw(series: &[(String, Vec<f64>)]) -> RgbImage {
    let (w, h) = size(series.len());
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    for (k, (title, values)) in series.iter().enumerate() {
        let (px, py) = (
            (k as u32 % COLUMNS * PANEL.0) as i64,
            (k as u32 / COLUMNS * PANEL.1) as i64,
        );
        let (left, top) = (px + 64, py + 24);
        let (right, bottom) = (px + PANEL.0 as i64 - 12, py + PANEL.1 as i64 - 24);
        let title_x = px + (PANEL.0 as i64 - 8 * title.len() as i64) / 2;
        text(&mut img, title_x.max(px), py + 8, title, INK);
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if finite.is_empty() {
            (0.0, 1.0)
        } else if hi - lo < 1e-12 {
            (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3))
        } else {
            (lo, hi)
        };
        for g in 0..=4 {
            let y = bottom - (bottom - top) * g / 4;
            for x in left..=right {
                put(&mut img, x, y, GRID);
            }
            let v = lo + (hi - lo) * g as f64 / 4.0;
            text(&mut img, px + 2, y - 4, &label(v), INK);
        }
        for y in top..=bottom {
            put(&mut img, left, y, INK);
        }
        for x in left..=right {
            put(&mut img, x, bottom, INK);
        }
        let n = values.len();
        text(&mut img, left, bottom + 8, "1", INK);
        let last = n.max(1).to_string();
        text(
            &mut img,
            right - 8 * last.len() as i64,
            bottom + 8,
            &last,
            INK,
        );
        let at = |i: usize, v: f64| {
            let x = if n > 1 {
                left + (right - left) * i as i64 / (n - 1) as i64
            } else {
                (left + right) / 2
            };
            let y = bottom - ((v - lo) / (hi - lo) * (bottom - top) as f64).round() as i64;
            (x, y)
        };
        let mut previous = None;
        for (i, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                previous = None;
                continue;
            }
            let p = at(i, v);
            match previous {
                Some(q) => line(&mut img, q, p, LINE),
                None => {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        put(&mut img, p.0 + dx, p.1 + dy, LINE);
                    }
                }
            }
            previous = Some(p);
        }
    }
    img
}

/// Draws `series` and writes the PNG to `path` atomically (a temporary file, then a rename).
pub fn write_png(path: &Path, series: &[(String, Vec<f64>)]) -> std::io::Result<()> {
    let img = draw(series);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(std::io::Error::other)?;
    crate::checkpoint::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_and_lines() {
        let series: Vec<(String, Vec<f64>)> = (0..7)
            .map(|k| (format!("s{k}"), (0..5).map(|i| (i * k) as f64).collect()))
            .collect();
        let img = draw(&series);
        assert_eq!(img.dimensions(), (3 * PANEL.0, 3 * PANEL.1));
        assert!(img.pixels().any(|p| *p == LINE));
        let one = draw(&[("x".into(), vec![f64::NAN, 1.0])]);
        assert_eq!(one.dimensions(), (3 * PANEL.0, PANEL.1));
    }
}
