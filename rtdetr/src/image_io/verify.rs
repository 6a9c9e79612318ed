//! Whether an image file is whole, without decoding its pixels where the format allows: a
//! dataset scan reads every image once, and a broken one must be found there, not in the middle
//! of an epoch. JPEG decoders fill a truncated scan with grey, so a JPEG needs its end marker
//! after its last scan; a PNG needs every chunk's CRC and its `IEND` (what PIL's `verify` checks);
//! BMP and WebP, rare in datasets, are decoded in full.

use std::path::Path;

use image::{ImageFormat, ImageReader};

use super::{open_upright, upright_dimensions};
use crate::{Error, Result};

/// The upright `(width, height)` of the image at `path` once it is known to decode: the format is
/// told from the content (a `.jpg` holding a PNG is read as a PNG), the size must be within
/// [`super::MAX_IMAGE_PIXELS`], and the file must be complete.
pub fn verify_image(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let dimensions = upright_dimensions(path)?;
    let format = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .map_err(|e| Error::from(e).in_file(path))?
        .format();
    let whole = match format {
        Some(ImageFormat::Jpeg) => jpeg_is_whole(&read(path)?),
        Some(ImageFormat::Png) => png_is_whole(&read(path)?),
        _ => return open_upright(path).map(|_| dimensions),
    };
    whole.map_err(|problem| Error::Data(problem).in_file(path))?;
    Ok(dimensions)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::from(e).in_file(path))
}

/// Entropy-coded data stuffs every `FF` with `00` (or is a restart marker), so `FF DA` (start of
/// scan) and `FF D9` (end of image) occur only as markers; an embedded thumbnail's come first.
fn jpeg_is_whole(bytes: &[u8]) -> std::result::Result<(), String> {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) if end > scan => Ok(()),
        (None, _) => Err("corrupt JPEG: no image scan".into()),
        _ => Err("truncated JPEG: no end-of-image marker after its last scan".into()),
    }
}

fn png_is_whole(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut at = 8;
    loop {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(format!(
                "truncated PNG: ends at byte {} before its IEND chunk",
                bytes.len()
            ));
        };
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let Some(body) = bytes.get(at + 4..(at + 8).saturating_add(length)) else {
            return Err(format!(
                "truncated PNG: chunk {} at byte {at} declares {length} bytes, the file ends first",
                String::from_utf8_lossy(kind)
            ));
        };
        let end = at + 8 + length;
        let Some(stored) = bytes.get(end..end + 4) else {
            return Err(format!(
                "truncated PNG: ends inside the CRC of chunk {}",
                String::from_utf8_lossy(kind)
            ));
        };
        if crc32fast::hash(body).to_be_bytes() != stored {
            return Err(format!(
                "corrupt PNG: CRC mismatch in chunk {} at byte {at}",
                String::from_utf8_lossy(kind)
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at = end + 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let image = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 5, (x * y) as u8])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn whole_files_pass_and_cut_ones_do_not() {
        let jpeg = encoded(ImageFormat::Jpeg);
        assert!(jpeg_is_whole(&jpeg).is_ok());
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"appended by a camera");
        assert!(jpeg_is_whole(&trailing).is_ok());
        for cut in [jpeg.len() - 2, jpeg.len() / 2] {
            assert!(jpeg_is_whole(&jpeg[..cut])
                .unwrap_err()
                .contains("truncated"));
        }
        let png = encoded(ImageFormat::Png);
        assert!(png_is_whole(&png).is_ok());
        for cut in [png.len() - 1, png.len() - 12, png.len() / 2, 20] {
            assert!(
                png_is_whole(&png[..cut]).unwrap_err().contains("truncated"),
                "{cut}"
            );
        }
        let mut flipped = png.clone();
        let middle = png.len() / 2;
        flipped[middle] ^= 0x55;
        assert!(png_is_whole(&flipped).unwrap_err().contains("CRC"));
    }
}
