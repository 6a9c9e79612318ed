//! Whether an image file is whole: a dataset scan reads every image once, and a broken one must
//! be found there, not in the middle of an epoch. Every image is decoded (a header can be
//! valid over tables or data that are not), and a JPEG must also end its last scan with an end
//! marker, since JPEG decoders fill a truncated scan with grey rather than fail.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::{bad, bounded_decoder};
use crate::{Error, Result};

/// The upright `(width, height)` of the image at `path` once it is known to decode: the format is
/// told from the content (a `.jpg` holding a PNG is read as a PNG), the size must be within
/// [`super::MAX_IMAGE_PIXELS`], and a JPEG must be complete. The file is read once.
pub fn verify_image(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::from(e).in_file(path))?;
    if image::guess_format(&bytes).ok() == Some(ImageFormat::Jpeg) {
        jpeg_is_whole(&bytes).map_err(|problem| Error::Data(problem).in_file(path))?;
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::from(e).in_file(path))?;
    let (decoder, orientation) = bounded_decoder(reader, path)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(path, e))?;
    image.apply_orientation(orientation);
    Ok((image.width(), image.height()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_jpegs_pass_and_cut_ones_do_not() {
        let image = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 5, (x * y) as u8])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, ImageFormat::Jpeg).unwrap();
        let jpeg = bytes.into_inner();
        assert!(jpeg_is_whole(&jpeg).is_ok());
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"appended by a camera");
        assert!(jpeg_is_whole(&trailing).is_ok());
        for cut in [jpeg.len() - 2, jpeg.len() / 2] {
            assert!(jpeg_is_whole(&jpeg[..cut])
                .unwrap_err()
                .contains("truncated"));
        }
    }
}
